import { describe, expect, it } from "vitest";
import { hotp, matchTotpStep, totpStep } from "./totp-check.js";

const rfcSecret = new TextEncoder().encode("12345678901234567890");

describe("TOTP check (RFC 4226, RFC 6238; R-3.1.4 PIN + TOTP)", () => {
  it("R-3.1.4: HOTP matches the RFC 4226 appendix D values", () => {
    const want = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
    expect(want.map((_, i) => hotp(rfcSecret, i, 6))).toEqual(want);
  });

  it("R-3.1.4: TOTP (SHA-1, 30 s, 8 digits) matches the RFC 6238 appendix B values", () => {
    const vectors: [number, string][] = [[59, "94287082"], [1111111109, "07081804"], [1111111111, "14050471"], [1234567890, "89005924"], [2000000000, "69279037"], [20000000000, "65353130"]];
    for (const [t, code] of vectors) expect(hotp(rfcSecret, totpStep(new Date(t * 1000), 30), 8), String(t)).toBe(code);
  });

  it("R-3.1.4: matches the current step and one either side, nothing further, nor a code of another length", () => {
    const now = new Date(1111111111 * 1000);
    const step = totpStep(now, 30);
    const o = { now, periodSeconds: 30, digits: 6, window: 1 };
    for (const d of [-1, 0, 1]) expect(matchTotpStep(rfcSecret, hotp(rfcSecret, step + d, 6), o)).toBe(step + d);
    for (const d of [-3, -2, 2, 3]) expect(matchTotpStep(rfcSecret, hotp(rfcSecret, step + d, 6), o)).toBeUndefined();
    expect(matchTotpStep(rfcSecret, hotp(rfcSecret, step, 8), o)).toBeUndefined();
    expect(matchTotpStep(rfcSecret, "", o)).toBeUndefined();
  });
});
