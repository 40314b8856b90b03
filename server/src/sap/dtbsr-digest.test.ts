import { createHash } from "node:crypto";
import { dtbsrDigest as sdkDtbsrDigest } from "@inkan/sdk";
import { describe, expect, it } from "vitest";
import { createDtbsrDigester, dtbsrDigest } from "./dtbsr-digest.js";

const sha256 = (s: string) => new Uint8Array(createHash("sha256").update(s).digest());
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("DTBS/R digest (R-3.2.1.4, T-2.2.1.6 R.DTBS/R integrity)", () => {
  it("T-2.2.1.6: matches the sam.proto test vector, on the server and in the SDK", async () => {
    const list = [sha256(""), sha256("abc")];
    const expected = "b66e39f17e49ce653aed80495c0645f35099576a32c25bf99a167b751bcede40";
    expect(hex(dtbsrDigest(1, list))).toBe(expected);
    expect(hex(await sdkDtbsrDigest(1, list))).toBe(expected);
    expect(Buffer.from(dtbsrDigest(1, list)).toString("base64url")).toBe("tm458X5JzmU67YBJXAZF81CZV2oywlv5mhZ7dRvO3kA");
  });

  it("T-2.2.1.6: the incremental server digest equals the SDK's one-shot digest, page by page, for every algorithm", async () => {
    for (const [alg, len] of [[1, 32], [2, 48], [3, 64], [4, 1000]] as const) {
      const list = Array.from({ length: 2_500 }, (_, i) => new Uint8Array(len).fill(i % 251).map((b, j) => (b + j * i) & 0xff));
      const d = createDtbsrDigester(alg, list.length);
      for (let i = 0; i < list.length; i += 1000) d.update(list.slice(i, i + 1000));
      expect(hex(d.digest())).toBe(hex(await sdkDtbsrDigest(alg, list)));
    }
  });

  it("T-2.2.1.6: binds algorithm, count, order and lengths (no two lists share a digest)", () => {
    const a = sha256("a");
    const b = sha256("b");
    const base = hex(dtbsrDigest(1, [a, b]));
    expect(hex(dtbsrDigest(2, [a, b]))).not.toBe(base);
    expect(hex(dtbsrDigest(1, [b, a]))).not.toBe(base);
    expect(hex(dtbsrDigest(1, [a]))).not.toBe(base);
    expect(hex(dtbsrDigest(1, [a, b, b]))).not.toBe(base);
    // Length prefixes: splitting the same bytes differently changes the digest.
    const joined = new Uint8Array([...a, ...b]);
    expect(hex(dtbsrDigest(4, [joined]))).not.toBe(hex(dtbsrDigest(4, [a, b])));
  });

  it("refuses to finish over fewer or more hashes than announced", () => {
    const d = createDtbsrDigester(1, 2);
    d.update([sha256("x")]);
    expect(() => d.digest()).toThrow(RangeError);
  });
});
