/**
 * The TOTP check of AUTHENTICATION_METHOD_PIN_AND_TOTP (RFC 6238 over RFC 4226 HOTP, HMAC-SHA-1,
 * as enrolled by activation: registration/totp.ts). Pure: the caller decrypts the secret, consumes
 * the matched step once and wipes the secret.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** The HOTP value of `counter` (RFC 4226 section 5.3), `digits` long with leading zeros. */
export function hotp(secret: Uint8Array, counter: number, digits: number): string {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac("sha1", secret).update(msg).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = (mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** digits;
  return binary.toString().padStart(digits, "0");
}

/** The RFC 6238 time step of `now`. */
export const totpStep = (now: Date, periodSeconds: number) => Math.floor(now.getTime() / 1000 / periodSeconds);

/**
 * The time step whose code `otp` is, looked for in the current step and `window` steps either side
 * (clock drift between the signer's generator and the SAM), or undefined. Every candidate is
 * compared in constant time, so the timing does not say which step matched.
 */
export function matchTotpStep(secret: Uint8Array, otp: string, o: { now: Date; periodSeconds: number; digits: number; window: number }): number | undefined {
  const given = Buffer.from(otp, "utf8");
  const current = totpStep(o.now, o.periodSeconds);
  let matched: number | undefined;
  for (let step = current - o.window; step <= current + o.window; step++) {
    const want = Buffer.from(hotp(secret, step, o.digits), "utf8");
    if (want.length === given.length && timingSafeEqual(want, given) && matched === undefined) matched = step;
  }
  return matched;
}
