import canonicalize from "canonicalize";
import { scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { defaultPinHashCost, type PinHashCost } from "../admin/security-policy.js";
import type { RandomSource, SystemKeys } from "../crypto/port.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { FactorRecord } from "../store/port.js";

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
const keyLength = 32;
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
 *
 * Why scrypt's cost is small and a policy setting (issue 20; default N = 2^12, r = 8, p = 1, about
 * 4 MiB and a few ms; floor N = 2^10): the PIN's secrecy rests on two things that scrypt does not
 * provide. (1) The pepper: without the module's HMAC, a stolen database yields no guess at all,
 * however cheap scrypt is. (2) The lockout (lockout.ts): online guesses through the SAM are
 * bounded by the signer's attempt budget, whatever a guess costs. scrypt only slows someone who
 * can already make the module compute HMACs with the record-seal key, that is, who controls a
 * host with the module logged in: that attacker can use every signing key directly and gains
 * nothing a PIN would give. A 32 MiB scrypt (the former N = 2^15) cost 100 to 300 ms of CPU per
 * Authorize on a busy two-core host and capped single-document transactions at a few per second,
 * for no protection that the pepper and the lockout do not give already. The floor keeps a
 * memory-hard step for the case of a leaked pepper key plus a stolen database (a 6-digit PIN
 * still costs 10^6 scrypt runs). The cost is stored with each hash, so a policy change takes
 * effect as each PIN is next verified (re-hashed then) or set.
 */
async function derive(crypto: Pick<SystemKeys, "hmacSha256">, pin: string, salt: Uint8Array, p: PinFactorBody["params"]): Promise<Buffer> {
  const peppered = await crypto.hmacSha256("record-seal", encoder.encode(pepperContext + pin.normalize("NFC")));
  const options: ScryptOptions = { N: p.N, r: p.r, p: p.p, maxmem: 256 * p.N * p.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(peppered, salt, p.keyLength, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * A new PIN factor body for `pin`, with a fresh salt from the module's RNG (R-3.2.2.2), hashed
 * with `cost` (the policy's pin_hash_cost; default N = 2^12, r = 8, p = 1).
 */
export async function hashPin(crypto: PinHashCrypto, pin: string, now: Date, cost: PinHashCost = defaultPinHashCost): Promise<PinFactorBody> {
  const salt = await crypto.randomBytes(16);
  const params = { N: cost.N, r: cost.r, p: cost.p, keyLength };
  const hash = await derive(crypto, pin, salt, params);
  return { algorithm: pinHashAlgorithm, params, salt: Buffer.from(salt).toString("base64url"), hash: hash.toString("base64url"), setAt: now.toISOString() };
}

/** True when `body` was hashed with exactly `cost` (otherwise its next successful check re-hashes it). */
export function hashedWith(body: PinFactorBody, cost: PinHashCost): boolean {
  return body.params.N === cost.N && body.params.r === cost.r && body.params.p === cost.p && body.params.keyLength === keyLength;
}

/**
 * Checks `pin` against the PIN factor `factor`; on success, a hash made with another cost than
 * the policy's `cost` is replaced by one made with it (issue 20), with a fresh salt and the same
 * setAt, as the factor's next version. A concurrent change of the factor (a PIN change, a reset,
 * another check that re-hashed first) wins: the re-hash is dropped. A store failure throws
 * (fail closed: the caller does not count the check as passed). The lockout is the caller's.
 */
export async function checkPinFactor(d: { crypto: PinHashCrypto; records: Pick<VerifiedRecords, "update"> }, factor: FactorRecord, pin: string, cost: PinHashCost): Promise<boolean> {
  const body = JSON.parse(factor.body) as PinFactorBody;
  if (!(await verifyPin(d.crypto, pin, body))) return false;
  if (!hashedWith(body, cost)) {
    const rehashed = { ...(await hashPin(d.crypto, pin, new Date(body.setAt), cost)), setAt: body.setAt };
    await d.records.update<FactorRecord>({ ...factor, version: factor.version + 1, body: canonicalize(rehashed)! }, factor.version);
  }
  return true;
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
