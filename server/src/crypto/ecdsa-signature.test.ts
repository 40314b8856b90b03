import { generateKeyPairSync, randomBytes, sign, verify } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ECDSA_SCALAR_SIZE, ecdsaDerToRaw, ecdsaRawToDer } from "./ecdsa-signature.js";

describe("ECDSA signature encodings", () => {
  for (const curve of ["P-256", "P-384", "P-521"] as const) {
    it(`converts node:crypto ${curve} signatures both ways, and node verifies the result`, () => {
      const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: curve });
      const size = ECDSA_SCALAR_SIZE[curve];
      for (let i = 0; i < 200; i++) {
        const message = randomBytes(20);
        const der = sign("sha256", message, privateKey);
        const raw = ecdsaDerToRaw(der, size);
        expect(raw).toBeDefined();
        expect(verify("sha256", message, { key: publicKey, dsaEncoding: "ieee-p1363" }, raw as Uint8Array)).toBe(true);
        expect(Buffer.from(ecdsaRawToDer(raw as Uint8Array))).toEqual(der);
      }
    });
  }

  it("encodes short and high-bit integers minimally", () => {
    const raw = new Uint8Array(64);
    raw[31] = 1; // r = 1
    raw[32] = 0x80; // s has its high bit set: needs a leading zero
    const der = ecdsaRawToDer(raw);
    expect(Buffer.from(der).toString("hex")).toBe(`3026020101022100${"80" + "00".repeat(31)}`);
    expect(ecdsaDerToRaw(der, 32)).toEqual(raw);
  });

  it("rejects malformed DER: trailing bytes, non-minimal, negative, zero, oversized, wrong tags", () => {
    const good = ecdsaRawToDer(Uint8Array.from([...new Array(31).fill(0), 5, ...new Array(31).fill(0), 7]));
    expect(ecdsaDerToRaw(good, 32)).toBeDefined();
    const bad = (hex: string) => ecdsaDerToRaw(Buffer.from(hex, "hex"), 32);
    expect(bad(`${Buffer.from(good).toString("hex")}00`)).toBeUndefined(); // trailing
    expect(bad("3007020200050201070000")).toBeUndefined(); // length mismatch
    expect(bad("300702020005020107")).toBeUndefined(); // non-minimal r (00 05)
    expect(bad("30060201850201070")).toBeUndefined(); // odd hex / truncated
    expect(bad("3006020185020107")).toBeUndefined(); // negative r
    expect(bad("3006020100020107")).toBeUndefined(); // r = 0
    expect(bad("3106020105020107")).toBeUndefined(); // SET instead of SEQUENCE
    expect(bad("3006030105020107")).toBeUndefined(); // BIT STRING instead of INTEGER
    expect(bad(`3025022101${"11".repeat(32)}020107`)).toBeUndefined(); // r longer than the curve order
    expect(bad("30810602010502010700")).toBeUndefined(); // long-form length where short is due
  });

  it("refuses a raw signature of odd length", () => {
    expect(() => ecdsaRawToDer(new Uint8Array(63))).toThrow();
    expect(() => ecdsaRawToDer(new Uint8Array(0))).toThrow();
  });
});
