/** TOTP enrollment (RFC 6238) for AUTHENTICATION_METHOD_PIN_AND_TOTP: the secret and its otpauth:// URI. */

/** The TOTP factor's body: the secret only encrypted (FieldCipher, the module's AES key), never in clear. */
export interface TotpFactorBody {
  /** FieldCipher ciphertext (bound to the factor record's kind and id) of the 20-byte secret. */
  encryptedSecret: string;
  algorithm: "SHA1";
  digits: 6;
  periodSeconds: 30;
  enrolledAt: string;
}

export const totpSecretBytes = 20; // 160 bits, RFC 4226's recommended length

const base32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 base32 without padding, as authenticator apps read it. */
export function base32(bytes: Uint8Array): string {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += base32Alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += base32Alphabet[(value << (5 - bits)) & 31];
  return out;
}

/** The otpauth:// URI an authenticator imports (Key Uri Format): issuer "Inkan", label the signer id. */
export function otpauthUri(signerId: string, secret: Uint8Array): string {
  const label = encodeURIComponent(`Inkan:${signerId}`);
  return `otpauth://totp/${label}?secret=${base32(secret)}&issuer=Inkan&algorithm=SHA1&digits=6&period=30`;
}
