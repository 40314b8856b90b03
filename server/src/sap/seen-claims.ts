/**
 * What the signer saw (sam.proto AuthorizeRequest.r_sad, SadChallenge.description; issue 13,
 * finding 6): the R.SAD carries the digest of the description and the hash algorithm the device
 * displayed, beside the count ("n"), so an SCA cannot show the signer one description and have
 * the transaction (and the audit log) hold another. R-3.2.1.1, T-2.2.1.7.
 */
import { createHash } from "node:crypto";
import { DeviceProofRefused } from "../registration/device-jws.js";

/** The R.SAD claims that bind what the device displayed, beside "n" (sam.proto). */
export const seenClaims = ["halg", "desc"] as const;

/** What a transaction holds of what its signer was shown. */
export interface SeenByTheSigner {
  /** BeginTransactionRequest.description, as recorded. */
  description: string;
  /** The sam.proto HashAlgorithm enum number (1 SHA-256, 2 SHA-384, 3 SHA-512, 4 NONE). */
  hashAlgorithm: number;
}

/**
 * The "desc" claim: base64url (no padding) of SHA-256 over the UTF-8 bytes of the description,
 * exactly as stored (no normalization).
 *
 * @example
 * descriptionDigest("Invoices 2025-03") // "MRLkBrJPuE2wzCexd92Uhfp5fRyte6I5khQ-hhopx9s"
 */
export function descriptionDigest(description: string): string {
  return createHash("sha256").update(Buffer.from(description, "utf8")).digest("base64url");
}

/**
 * R-3.2.1.1, T-2.2.1.7: "desc" and "halg" are present and equal the transaction's description digest
 * and hash algorithm; throws DeviceProofRefused otherwise (the caller refuses the R.SAD as
 * SAD_INVALID, like any other claim that does not match).
 */
export function checkSeenClaims(claims: Record<string, unknown>, tx: SeenByTheSigner): void {
  if (claims.halg !== tx.hashAlgorithm) throw new DeviceProofRefused("claim halg does not match");
  if (claims.desc !== descriptionDigest(tx.description)) throw new DeviceProofRefused("claim desc does not match");
}
