import { describe, expect, it } from "vitest";
import { hotp, parseOtpauth, totpNow, wrongTotp } from "./totp.js";

// The suite's TOTP generator against the published vectors (RFC 4226 appendix D, RFC 6238 appendix B).
describe("the suite's TOTP generator", () => {
  // base32("12345678901234567890")
  const sha1 = parseOtpauth("otpauth://totp/Inkan:x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Inkan");

  it("reads the otpauth URI, defaulting to 6 digits, 30 s and SHA-1", () => {
    expect(Buffer.from(sha1.secret).toString("utf8")).toBe("12345678901234567890");
    expect({ digits: sha1.digits, periodSeconds: sha1.periodSeconds, hash: sha1.hash }).toEqual({ digits: 6, periodSeconds: 30, hash: "sha1" });
  });

  it("computes the RFC 4226 HOTP values and the RFC 6238 TOTP values", () => {
    expect([0, 1, 9].map((c) => hotp(sha1, c))).toEqual(["755224", "287082", "520489"]);
    const eight = parseOtpauth("otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=8&period=30&algorithm=SHA1");
    expect(totpNow(eight, 0, new Date(59_000))).toBe("94287082");
    expect(totpNow(eight, 0, new Date(1_111_111_109_000))).toBe("07081804");
  });

  it("a wrong code is well formed and none of the codes near now", () => {
    const code = wrongTotp(sha1);
    expect(code).toMatch(/^[0-9]{6}$/);
    expect([-2, -1, 0, 1, 2].map((s) => totpNow(sha1, s))).not.toContain(code);
  });

  it("refuses what is not an otpauth TOTP URI", () => {
    expect(() => parseOtpauth("otpauth://hotp/x?secret=GEZDGNBV")).toThrow(TypeError);
    expect(() => parseOtpauth("otpauth://totp/x")).toThrow(TypeError);
  });
});
