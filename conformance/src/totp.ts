/**
 * The signer's TOTP generator (RFC 6238 over RFC 4226 HOTP), as the SAM enrolled it at activation:
 * the suite computes the codes a signer's authenticator app would show (AUTHENTICATION_METHOD_PIN_AND_TOTP).
 */
import { createHmac } from "node:crypto";

export interface TotpGenerator {
  secret: Uint8Array;
  digits: number;
  periodSeconds: number;
  /** The HMAC hash, as node:crypto names it ("sha1", "sha256", "sha512"). */
  hash: string;
}

function base32Decode(text: string): Uint8Array {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const c of text.replace(/=+$/, "").toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new TypeError("the TOTP secret is not base32");
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}

/** The generator of an otpauth://totp/... URI (the Key Uri Format: secret, digits, period, algorithm). */
export function parseOtpauth(uri: string): TotpGenerator {
  const url = new URL(uri);
  if (url.protocol !== "otpauth:" || url.host !== "totp") throw new TypeError("not an otpauth://totp URI");
  const secret = url.searchParams.get("secret");
  if (!secret) throw new TypeError("the otpauth URI carries no secret");
  return {
    secret: base32Decode(secret),
    digits: Number(url.searchParams.get("digits") ?? 6),
    periodSeconds: Number(url.searchParams.get("period") ?? 30),
    hash: (url.searchParams.get("algorithm") ?? "SHA1").toLowerCase(),
  };
}

/** The HOTP value of `counter` (RFC 4226 section 5.3). */
export function hotp(g: TotpGenerator, counter: number): string {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(g.hash, g.secret).update(msg).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  return ((mac.readUInt32BE(offset) & 0x7fffffff) % 10 ** g.digits).toString().padStart(g.digits, "0");
}

/** The code the generator shows now, or `steps` time steps away. */
export const totpNow = (g: TotpGenerator, steps = 0, now = new Date()) => hotp(g, Math.floor(now.getTime() / 1000 / g.periodSeconds) + steps);

/** A well-formed code that is none of the codes within `window` steps of now (a wrong OTP). */
export function wrongTotp(g: TotpGenerator, window = 2): string {
  const near = new Set(Array.from({ length: 2 * window + 1 }, (_, i) => totpNow(g, i - window)));
  for (let v = 0; ; v++) {
    const code = String(v * 7919 % 10 ** g.digits).padStart(g.digits, "0");
    if (!near.has(code)) return code;
  }
}
