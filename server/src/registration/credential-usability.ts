/**
 * Whether a credential may be used by a SAP transaction: one pure function the SAP calls
 * at Authorize, SealTransaction, SignHash and SignStream with the records it has just read.
 *
 * Why a time and not only a status: a suspension followed by a resumption leaves the credential
 * ACTIVE again, yet "transactions and SAD tokens issued before the suspension stay unusable"
 * (registration.proto, ResumeCredential). Every suspension and resumption writes the instant into
 * the credential's sealed body (`usableSince`, credential-lifecycle.ts); a transaction created at
 * or before that instant is refused, and so is every SAD token of it. No store change is needed,
 * and a database edit of the instant breaks the seal.
 *
 * Time decides the certificate too (R-3.1.1.4): its validity period, sealed in the credential's
 * body at import, is checked against `now` on every call (so before every SignStream claim), with
 * the security policy's certificate_expiry_grace after notAfter: a certificate that expires in the
 * middle of a batch stops it.
 */
import { InkanError } from "../errors.js";
import type { CredentialRecord, SignerRecord } from "../store/port.js";

/** What this check reads from the bodies (sealed; written by credentials.ts, credential-lifecycle.ts, lockout.ts). */
interface UsabilityFacts {
  /** ISO 8601: the last suspension or resumption; transactions created up to it are unusable. */
  usableSince?: string;
  /** The certificate imported last (credentials.ts StoredCertificate). */
  certificate?: CertificateValidity;
}

/** A certificate's validity period as the credential's sealed body holds it (ISO 8601). */
export interface CertificateValidity {
  notBefore?: unknown;
  notAfter?: unknown;
}

interface SignerFacts {
  lockedAt?: string;
}

export interface CredentialUsabilityInput {
  /** The credential record as just read (undefined: gone). */
  credential: CredentialRecord | undefined;
  /** The credential's signer record as just read (undefined: gone). */
  signer: SignerRecord | undefined;
  /** The transaction that wants to use the credential: its signer and when it was created. */
  transaction: { signerId: string; createdAt: Date };
  /**
   * The transaction is the signer's approval of the credential's CSR ({@link isCsrApproval}), used by
   * Authorize or CreateCsr: a KEY_GENERATED credential is then usable. Never set by SignHash or
   * SignStream, so a CSR approval's SAD token signs nothing but the CSR.
   */
  csrApproval?: boolean;
  /** The SAM's present time (the SAP's clock), against which the certificate's validity is checked. */
  now: Date;
  /** The security policy's certificate_expiry_grace in milliseconds (0: none). */
  certificateExpiryGraceMs: number;
}

/**
 * R-3.1.3.2, T-2.1.3.2: a KEY_GENERATED credential (no certificate yet; store status PENDING) is
 * used for exactly one thing, the signer's approval of its CSR (registration.proto PrepareCsr and
 * CreateCsr). So the SAP opens a transaction on it only with exactly this many DTBS/R: the
 * CertificationRequestInfo's.
 */
export const csrApprovalSignatures = 1;

/** Whether a transaction of `numSignatures` DTBS/R is a CSR approval in shape (one DTBS/R). */
export const isCsrApproval = (numSignatures: number): boolean => numSignatures === csrApprovalSignatures;

/**
 * BeginTransaction's rule for KEY_GENERATED credentials (R-3.1.3.2, T-2.1.3.2): exactly one
 * DTBS/R, else INVALID_REQUEST on num_signatures; undefined for any other status or a CSR approval.
 */
export function csrApprovalShapeRefusal(status: CredentialRecord["status"], numSignatures: number): InkanError | undefined {
  if (status !== "PENDING" || isCsrApproval(numSignatures)) return undefined;
  return new InkanError("INVALID_REQUEST", "a credential without a certificate only approves its CSR: num_signatures must be 1", { field: "num_signatures" });
}

/**
 * R-3.1.1.4, T-2.1.3.2: CERTIFICATE_EXPIRED when the credential's certificate is outside its
 * validity period at `now`: after notAfter plus the policy's grace, or before notBefore (only a
 * clock set back, or another node's, gets there: ImportCertificate takes only a certificate valid
 * then; no grace, since the certificate does not vouch for the key yet). Inclusive bounds, as in
 * RFC 5280. A date that does not parse refuses (fail closed). Undefined for a credential without a
 * certificate (`certificate` undefined; KEY_GENERATED: {@link credentialRefusal} keeps it to its CSR approval).
 * BeginTransaction and SealTransaction call this directly; every other path through credentialRefusal.
 */
export function certificateRefusal(certificate: CertificateValidity | undefined, now: Date, graceMs: number): InkanError | undefined {
  if (certificate === undefined) return undefined;
  const notBefore = Date.parse(String(certificate.notBefore));
  const notAfter = Date.parse(String(certificate.notAfter));
  const t = now.getTime();
  if (!(t <= notAfter + Math.max(0, graceMs))) return new InkanError("CERTIFICATE_EXPIRED", "the credential's certificate has expired");
  if (!(t >= notBefore)) return new InkanError("CERTIFICATE_EXPIRED", "the credential's certificate is not valid yet");
  return undefined;
}

/**
 * The refusal to throw when the transaction may not use the credential, or undefined when it may.
 * SIGNER_INACTIVE, CREDENTIAL_DESTROYED (also for a missing credential or one of another signer),
 * CREDENTIAL_LOCKED, CREDENTIAL_SUSPENDED (also KEY_GENERATED: no certificate yet, never signs
 * anything but its own CSR, and that only when `csrApproval` is set),
 * CERTIFICATE_EXPIRED for a certificate outside its validity period at `now` ({@link certificateRefusal}),
 * and TRANSACTION_STATE for a transaction created before the credential's last suspension or
 * resumption (the SCA must start a new transaction).
 *
 * @example
 * const refusal = credentialRefusal({ credential, signer, transaction: record, now, certificateExpiryGraceMs: policy.certificateExpiryGraceMs });
 * if (refusal) throw refusal;
 */
export function credentialRefusal(input: CredentialUsabilityInput): InkanError | undefined {
  const { credential, signer, transaction } = input;
  if (!signer || signer.status !== "ACTIVE") return new InkanError("SIGNER_INACTIVE", "the signer is not active");
  if (!credential || credential.signerId !== transaction.signerId || signer.id !== transaction.signerId) {
    return new InkanError("CREDENTIAL_DESTROYED", "the credential is gone");
  }
  switch (credential.status) {
    case "DESTROYED":
      return new InkanError("CREDENTIAL_DESTROYED", "the credential was destroyed");
    case "LOCKED":
      return new InkanError("CREDENTIAL_LOCKED", "too many failed attempts; a registration operator must reset the lockout");
    case "SUSPENDED":
      return new InkanError("CREDENTIAL_SUSPENDED", "the credential is suspended");
    case "PENDING":
      // R-3.1.3.2, T-2.1.3.2: without a certificate the key signs only the CSR the signer approved.
      if (input.csrApproval) break;
      return new InkanError("CREDENTIAL_SUSPENDED", "the credential is not active yet");
    case "ACTIVE":
      break;
  }
  if (parse<SignerFacts>(signer.body).lockedAt !== undefined) {
    return new InkanError("CREDENTIAL_LOCKED", "too many failed attempts; a registration operator must reset the lockout");
  }
  // R-3.1.1.4, T-2.1.3.2: an expired (or not yet valid) certificate certifies nothing: the key signs nothing.
  const facts = parse<UsabilityFacts>(credential.body);
  const expired = certificateRefusal(facts.certificate, input.now, input.certificateExpiryGraceMs);
  if (expired) return expired;
  const since = facts.usableSince;
  // a transaction (and its SAD tokens) from before the last suspension never becomes usable
  // again; "at or before", so that a transaction of the very millisecond of a resumption is refused too.
  if (since !== undefined && !(transaction.createdAt.getTime() > Date.parse(since))) {
    return new InkanError("TRANSACTION_STATE", "the transaction was created before the credential was suspended; start a new one");
  }
  return undefined;
}

/** A sealed body; one that is not a JSON object (never written by the SAM) counts as empty. */
function parse<T>(body: string): T {
  const value: unknown = JSON.parse(body);
  return (typeof value === "object" && value !== null ? value : {}) as T;
}
