/**
 * What a signer is asked to authorize, for the signer's device to show before it builds R.SAD
 * (sam.proto SadChallenge; R-3.2.1.4: the signer approves exactly this count, description and
 * DTBS/R digest). Browser-safe.
 */
import { base64url } from "jose";
import type { SadChallenge } from "../gen/inkan/sam/v1/sam_pb.js";
import { dtbsrDigest } from "../sca/dtbsr-digest.js";

export interface AuthorizationSummary {
  /** How many signatures the R.SAD will authorize (claim "n"). */
  count: number;
  /** The SCA's description of what is signed. */
  description: string;
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
  /** One line to show, e.g. `Sign 3 documents: "Invoices 2026-11" (DTBS/R b66e 39f1 …)`. */
  text: string;
}

/**
 * Describes a SadChallenge for the signer. Pass the DTBS/R list the device received from the SCA
 * (or computed from the documents it displays) as `hashes` to check that the digest binds exactly
 * that list.
 *
 * @example
 * const what = await describeAuthorization(challenge, { hashes });
 * if (what.matchesHashes === false || !(await confirm(what.text))) return;
 * const rSad = await buildRSad({ ... });
 */
export async function describeAuthorization(challenge: SadChallenge, options: { hashes?: readonly Uint8Array[] } = {}): Promise<AuthorizationSummary> {
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
    digest: base64url.encode(challenge.dtbsrDigest),
    digestFingerprint,
    signerId: challenge.signerId,
    credentialId: challenge.credentialId,
    expiresAt: expires,
    matchesHashes,
    text: `Sign ${n} ${n === 1 ? "document" : "documents"}: "${challenge.description}" (DTBS/R ${digestFingerprint.slice(0, 19)} …)`,
  };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
