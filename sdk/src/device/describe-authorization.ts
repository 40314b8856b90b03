/**
 * What a signer is asked to authorize, for the signer's device to show before it builds R.SAD
 * (sam.proto SadChallenge; R-3.2.1.4: the signer approves exactly this count, hash algorithm,
 * description and DTBS/R digest, and the R.SAD binds each of them). Only a challenge the SAM
 * signed is described (T-2.2.1.7). Browser-safe.
 */
import { base64url } from "jose";
import type { SadChallenge } from "../gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "../gen/inkan/sam/v1/types_pb.js";
import { dtbsrDigest } from "../sca/dtbsr-digest.js";
import { verifySadChallenge, type ChallengeSigningKeyInput } from "./sad-challenge.js";

const hashNames: Partial<Record<HashAlgorithm, string>> = {
  [HashAlgorithm.SHA256]: "SHA-256",
  [HashAlgorithm.SHA384]: "SHA-384",
  [HashAlgorithm.SHA512]: "SHA-512",
  [HashAlgorithm.NONE]: "no hash (pure EdDSA)",
};

export interface AuthorizationSummary {
  /** How many signatures the R.SAD will authorize (claim "n"). */
  count: number;
  /** The SCA's description of what is signed (the R.SAD's "desc" is its digest). */
  description: string;
  /** The hash algorithm of the DTBS/R, e.g. "SHA-256" (the R.SAD's "halg"). */
  hashAlgorithm: string;
  /** The DTBS/R digest as the "dtbsr" claim carries it (base64url). */
  digest: string;
  /** The digest in hex groups of four, for comparing by eye. */
  digestFingerprint: string;
  signerId: string;
  credentialId: string;
  /** When the transaction expires (undefined if the challenge has no expiry). */
  expiresAt: Date | undefined;
  /** With `hashes`: whether they are exactly the list the challenge binds; undefined without. */
  matchesHashes: boolean | undefined;
  /** One line to show, e.g. `Sign 3 documents: "Invoices 2026-11" (SHA-256, DTBS/R b66e 39f1 …)`. */
  text: string;
}

/**
 * Describes a SadChallenge for the signer, after verifying the SAM's signature on it against the
 * key the device pinned (`challengeSigningKey`, GetInfoResponse.challenge_signing_key): an
 * unsigned, foreign-signed or altered challenge throws SadChallengeRefused and nothing is shown.
 * Pass the DTBS/R list the device received from the SCA (or computed from the documents it
 * displays) as `hashes` to check that the digest binds exactly that list.
 *
 * @example
 * const what = await describeAuthorization(challenge, { challengeSigningKey: pinnedKey, hashes });
 * if (what.matchesHashes === false || !(await confirm(what.text))) return;
 * const rSad = await buildRSadFor(challenge, { deviceKey, pin, challengeSigningKey: pinnedKey });
 */
export async function describeAuthorization(challenge: SadChallenge, options: { challengeSigningKey: ChallengeSigningKeyInput; hashes?: readonly Uint8Array[] }): Promise<AuthorizationSummary> {
  // T-2.2.1.7: what the signer is shown is what the SAM issued (and what the R.SAD will bind).
  await verifySadChallenge(challenge, options.challengeSigningKey);
  const hashAlgorithm = hashNames[challenge.hashAlgorithm] ?? `hash algorithm ${challenge.hashAlgorithm}`;
  const hex = Array.from(challenge.dtbsrDigest, (b) => b.toString(16).padStart(2, "0")).join("");
  const digestFingerprint = hex.match(/.{1,4}/g)?.join(" ") ?? "";
  const matchesHashes = options.hashes
    ? equal(await dtbsrDigest(challenge.hashAlgorithm, options.hashes), challenge.dtbsrDigest) && options.hashes.length === challenge.numSignatures
    : undefined;
  const n = challenge.numSignatures;
  const expires = challenge.expiresAt ? new Date(Number(challenge.expiresAt.seconds) * 1000 + Math.floor(challenge.expiresAt.nanos / 1e6)) : undefined;
  return {
    count: n,
    description: challenge.description,
    hashAlgorithm,
    digest: base64url.encode(challenge.dtbsrDigest),
    digestFingerprint,
    signerId: challenge.signerId,
    credentialId: challenge.credentialId,
    expiresAt: expires,
    matchesHashes,
    text: `Sign ${n} ${n === 1 ? "document" : "documents"}: "${challenge.description}" (${hashAlgorithm}, DTBS/R ${digestFingerprint.slice(0, 19)} …)`,
  };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
