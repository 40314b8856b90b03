import { createHash } from "node:crypto";
import type { RandomSource } from "../crypto/port.js";

/** Crockford base32: digits and capitals without I, L, O and U. */
const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const codeLength = 25; // 25 × 5 = 125 bits
const groupLength = 5;

/**
 * A fresh activation code (inkan.admin.v1.ActivationCode.code): 125 bits from the crypto module's
 * RNG (R-3.2.2.2, T-2.1.1.1) as 25 Crockford base32 characters in five groups of five separated
 * by "-", e.g. "7K3QF-2M9XD-ABCDE-FGHJK-MNPQR".
 */
export async function newActivationCode(random: RandomSource): Promise<string> {
  const bytes = await random.randomBytes(16); // 128 bits; the first 125 are used
  let bits = 0n;
  for (const b of bytes) bits = (bits << 8n) | BigInt(b);
  bits >>= 3n;
  const chars: string[] = [];
  for (let i = codeLength - 1; i >= 0; i--) chars.push(alphabet[Number((bits >> BigInt(5 * i)) & 31n)]!);
  const groups: string[] = [];
  for (let i = 0; i < codeLength; i += groupLength) groups.push(chars.slice(i, i + groupLength).join(""));
  return groups.join("-");
}

/**
 * A code as entered, in its canonical form: case and "-" (and spaces) ignored, I and L read as 1,
 * O as 0. Returns undefined when it cannot be a code (wrong length or a character outside the
 * alphabet), so a typo is never hashed and compared.
 */
export function normalizeActivationCode(entered: string): string | undefined {
  const text = entered.toUpperCase().replace(/[\s-]/g, "").replace(/[IL]/g, "1").replace(/O/g, "0");
  if (text.length !== codeLength) return undefined;
  for (const c of text) if (!alphabet.includes(c)) return undefined;
  return text;
}

/**
 * What the store keeps of a code: base64url(SHA-256) over a domain-separated, normalized code.
 * A plain hash suffices because the code has 125 bits of entropy: nobody can search that space
 * offline, so a leaked store gives no code (T-2.1.1.3); a keyed hash would only add a module call
 * on every activation attempt. The activation side compares the hash of what the signer entered.
 */
export function activationCodeHash(code: string): string {
  const normalized = normalizeActivationCode(code) ?? code;
  return createHash("sha256").update(`inkan-activation-code-v1\n${normalized}`).digest("base64url");
}

/**
 * Split knowledge (T-2.2.2.1, T-2.2.2.3): a code issued to two privileged users is two halves, each
 * a fresh 125-bit code of its own (so the holder of one half still faces 125 unknown bits). The
 * SAM never holds both: the requester's half is drawn when the request is held and only its hash
 * is kept with the pending request; the approver's half is drawn at the approval. The code record
 * stores {@link activationCodePairHash} of the two half hashes, so only the pair activates.
 */
export function activationCodeHalfHash(half: string): string {
  const normalized = normalizeActivationCode(half) ?? half;
  return createHash("sha256").update(`inkan-activation-code-half-v1\n${normalized}`).digest("base64url");
}

/** What the store keeps of a split code: a hash over both half hashes, in sorted order, so the signer may enter the halves in either order. */
export function activationCodePairHash(halfHashA: string, halfHashB: string): string {
  const [first, second] = [halfHashA, halfHashB].sort();
  return createHash("sha256").update(`inkan-activation-code-pair-v1\n${first}\n${second}`).digest("base64url");
}

/** A fresh half (the format of {@link newActivationCode}) and its hash. */
export async function newActivationCodeHalf(random: RandomSource): Promise<{ half: string; halfHash: string }> {
  const half = await newActivationCode(random);
  return { half, halfHash: activationCodeHalfHash(half) };
}

/**
 * The hash of a code as the signer entered it, to compare with the stored one: a whole code (25
 * characters) or the two halves one after the other (50 characters, either order). Undefined when
 * it is neither, so a typo is never hashed and compared.
 */
export function enteredActivationCodeHash(entered: string): string | undefined {
  const whole = normalizeActivationCode(entered);
  if (whole) return activationCodeHash(whole);
  const text = entered.replace(/[\s-]/g, "");
  if (text.length !== 2 * codeLength) return undefined;
  const a = normalizeActivationCode(text.slice(0, codeLength));
  const b = normalizeActivationCode(text.slice(codeLength));
  return a && b ? activationCodePairHash(activationCodeHalfHash(a), activationCodeHalfHash(b)) : undefined;
}
