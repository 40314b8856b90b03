import { createECDH } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { InkanError } from "../errors.js";
import { assertP256Point, isP256Point } from "./ec-point.js";

interface Vector {
  tcId: number;
  comment: string;
  public: string;
  result: "valid" | "invalid" | "acceptable";
  flags: string[];
}
const wycheproof = JSON.parse(readFileSync(new URL("./testdata/wycheproof-ecdh-secp256r1-ecpoint-subset.json", import.meta.url), "utf8")) as {
  testGroups: { tests: Vector[] }[];
};
const vectors = wycheproof.testGroups.flatMap((g) => g.tests);

describe("P-256 peer point validation (invalid-curve attack, R-3.2.1.2)", () => {
  for (const v of vectors) {
    // Only uncompressed points are accepted: a JWE epk carries x and y, and "acceptable"
    // compressed encodings are refused on purpose.
    const expected = v.result === "valid";
    it(`Wycheproof tcId ${v.tcId} (${v.result}; ${v.flags.join(",")}) is ${expected ? "accepted" : "refused"}`, () => {
      expect(isP256Point(Buffer.from(v.public, "hex"))).toBe(expected);
    });
  }

  it("accepts points node:crypto generates", () => {
    for (let i = 0; i < 50; i++) {
      const ecdh = createECDH("prime256v1");
      expect(isP256Point(ecdh.generateKeys())).toBe(true);
    }
  });

  it("refuses a secp256k1 point of the same length (foreign curve)", () => {
    const k1 = createECDH("secp256k1");
    const point = k1.generateKeys();
    expect(point.length).toBe(65);
    expect(isP256Point(point)).toBe(false);
  });

  it("refuses a P-384 point, the point at infinity, a flipped coordinate bit and x, y >= p", () => {
    expect(isP256Point(createECDH("secp384r1").generateKeys())).toBe(false);
    expect(isP256Point(Uint8Array.of(0))).toBe(false);
    expect(isP256Point(new Uint8Array(0))).toBe(false);
    const point = createECDH("prime256v1").generateKeys();
    const flipped = Buffer.from(point);
    flipped[64] = (flipped[64] ?? 0) ^ 1;
    expect(isP256Point(flipped)).toBe(false);
    const p = Buffer.from("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff", "hex");
    expect(isP256Point(Buffer.concat([Buffer.of(4), p, point.subarray(33)]))).toBe(false);
    const wrongPrefix = Buffer.from(point);
    wrongPrefix[0] = 0x06; // hybrid encoding
    expect(isP256Point(wrongPrefix)).toBe(false);
  });

  it("assertP256Point throws INVALID_REQUEST", () => {
    expect(() => assertP256Point(Uint8Array.of(0))).toThrow(InkanError);
    try {
      assertP256Point(Uint8Array.of(0));
    } catch (err) {
      expect((err as InkanError).code).toBe("INVALID_REQUEST");
    }
  });
});
