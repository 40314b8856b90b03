import { scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";
import type { RandomSource, SystemKeys } from "../crypto/port.js";

/**
 * The PIN factor's body (R-3.1.1.2): never the PIN, only a slow salted hash of the PIN peppered
 * by a key that never leaves the crypto module.
 */
export interface PinFactorBody {
  algorithm: typeof pinHashAlgorithm;
  params: { N: number; r: number; p: number; keyLength: number };
  /** 16 bytes from the module's RNG, base64url. */
  salt: string;
  /** base64url. */
  hash: string;
  /** ISO 8601. */
  setAt: string;
}

export const pinHashAlgorithm = "scrypt-hmac-sha256-pepper-v1";
/** N = 2^15, r = 8, p = 1: 32 MiB and roughly 50-100 ms per guess on a server core. */
const params = { N: 2 ** 15, r: 8, p: 1, keyLength: 32 } as const;
const pepperContext = "inkan-pin-pepper-v1\n";
const encoder = new TextEncoder();

export type PinHashCrypto = Pick<SystemKeys, "hmacSha256"> & RandomSource;

/**
 * Why this construction (R-3.1.1.2): the pepper is an HMAC with the module-resident "record-seal"
 * key under its own domain-separation prefix, so a stolen database alone allows no offline guess
 * at all (the key never leaves the module). scrypt then makes each guess slow and memory-hard for
 * someone who also got the module to compute HMACs, and the per-PIN salt stops precomputation and
 * equal PINs from looking equal. The PIN is hashed as its NFC form, so the same PIN typed on two
 * devices matches. node:crypto's scrypt keeps the dependency list as it is (no argon2 binding).
 */
async function derive(crypto: Pick<SystemKeys, "hmacSha256">, pin: string, salt: Uint8Array, p: PinFactorBody["params"]): Promise<Buffer> {
  const peppered = await crypto.hmacSha256("record-seal", encoder.encode(pepperContext + pin.normalize("NFC")));
  const options: ScryptOptions = { N: p.N, r: p.r, p: p.p, maxmem: 256 * p.N * p.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(peppered, salt, p.keyLength, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** A new PIN factor body for `pin`, with a fresh salt from the module's RNG (R-3.2.2.2). */
export async function hashPin(crypto: PinHashCrypto, pin: string, now: Date): Promise<PinFactorBody> {
  const salt = await crypto.randomBytes(16);
  const hash = await derive(crypto, pin, salt, params);
  return { algorithm: pinHashAlgorithm, params: { ...params }, salt: Buffer.from(salt).toString("base64url"), hash: hash.toString("base64url"), setAt: now.toISOString() };
}

/** True when `pin` is the PIN `body` was made from; compared in constant time. */
export async function verifyPin(crypto: Pick<SystemKeys, "hmacSha256">, pin: string, body: PinFactorBody): Promise<boolean> {
  if (body.algorithm !== pinHashAlgorithm) return false;
  const expected = Buffer.from(body.hash, "base64url");
  const actual = await derive(crypto, pin, Buffer.from(body.salt, "base64url"), body.params);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** The PIN policy (6 to 64 characters by default): a string whose length, in code points, is in range. */
export function pinAllowed(pin: unknown, min: number, max: number): pin is string {
  if (typeof pin !== "string") return false;
  const length = [...pin.normalize("NFC")].length;
  return length >= min && length <= max && !/[\u0000-\u001f\u007f]/.test(pin);
}
