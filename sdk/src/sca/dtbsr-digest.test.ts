import { describe, expect, it } from "vitest";
import { dtbsrDigest } from "./dtbsr-digest.js";

const sha256 = async (s: string) => new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

describe("dtbsrDigest (SDK, WebCrypto)", () => {
  it("T-2.2.1.6: matches the sam.proto SadChallenge.dtbsr_digest test vector", async () => {
    const digest = await dtbsrDigest(1, [await sha256(""), await sha256("abc")]);
    expect(hex(digest)).toBe("b66e39f17e49ce653aed80495c0645f35099576a32c25bf99a167b751bcede40");
  });

  it("digests an empty list and refuses an algorithm number that is not a u32", async () => {
    expect(await dtbsrDigest(1, [])).toHaveLength(32);
    await expect(dtbsrDigest(-1, [])).rejects.toThrow(RangeError);
  });
});
