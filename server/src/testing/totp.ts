/** The TOTP secret of an otpauth:// URI (RFC 4648 base32, no padding), as an authenticator app reads it. */
export function totpSecretOf(otpauthUri: string): Uint8Array {
  const text = /secret=([A-Z2-7]+)/.exec(otpauthUri)?.[1];
  if (!text) throw new Error("no base32 secret in the otpauth URI");
  return base32Decode(text);
}

/** RFC 4648 base32 without padding (the inverse of registration/totp.ts base32). */
export function base32Decode(text: string): Uint8Array {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const c of text) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}
