/**
 * CreateCsr's SAP half (registration.proto RegistrationService.CreateCsr; R-3.1.3.1, R-3.1.3.2,
 * R-3.1.1.4; T-2.1.3.1, T-2.1.3.2, T-2.1.1.2): the signer approved a CertificationRequestInfo from
 * PrepareCsr through the SAP (a transaction with exactly that one DTBS/R, the R.SAD, Authorize); a
 * registration operator now redeems the SAD token, and the credential's key signs the request
 * inside the crypto module.
 *
 * Order of checks (IDs say what each closes); everything before step 4 is read-only, so a refused
 * request leaves the approval usable:
 *  1. The credential exists; certification_request_info is a well-formed DER
 *     CertificationRequestInfo whose public key is byte for byte the credential's (T-2.1.3.1,
 *     T-2.1.1.2, R-3.1.1.4): INVALID_REQUEST / KEY_MISMATCH.
 *  2. transaction_id names a transaction on this credential (TRANSACTION_NOT_FOUND); this
 *     transaction's consumed token is a replay in any state (SAD_REPLAYED: reuse detection as in
 *     SignHash; after its CSR the transaction is COMPLETED); the transaction is AUTHORIZED
 *     (TRANSACTION_STATE) and unexpired (EXPIRED); its only DTBS/R is the DTBS/R of these bytes
 *     under hash_algorithm (R-3.1.3.2, T-2.1.3.2: a subject or key changed after approval is
 *     HASH_NOT_AUTHORIZED); signature_algorithm is the transaction's (else INVALID_REQUEST).
 *  3. sad_token is that transaction's token (SAD_INVALID: a made-up token, or another
 *     transaction's, which stays untouched), not revoked, unexpired; the credential and signer
 *     may use it (R-3.3.1; KEY_GENERATED too: this is the one use of such a credential).
 *  4. T-2.2.1.3: the token is consumed atomically before the crypto module is touched; then the
 *     DTBS/R entry is claimed (markHashesSigned), so the approval works once, and never also
 *     through SignHash or SignStream (which refuse KEY_GENERATED credentials anyway).
 *  5. The module signs; the signature is verified against the credential's public key before
 *     anything leaves (R-3.2.1.5: SIGNATURE_CHECK_FAILED); signature.created is audited (fail
 *     closed, R-3.2.2.4) and the PKCS#10 CertificationRequest returned.
 *
 * Unlike SignHash, the caller is a privileged user, not the SCA that opened the transaction
 * (registration.proto CreateCsrRequest.sad_token): no SCA-ownership check, but the token must
 * belong to the named transaction and the transaction to the named credential. The audit
 * records of the signature name the transaction's SCA (the operator is on the
 * privileged-operation records of the same request id).
 */
import type { HashAlgorithm, SignatureScheme } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import { certificationRequest, parseCertificationRequestInfo } from "../registration/certificates.js";
import { csrDtbsr } from "../registration/certificates-csr.js";
import { isCsrApproval } from "../registration/credential-usability.js";
import type { CredentialBody } from "../registration/credentials.js";
import { sadTokenHash, stateError } from "./authorize.js";
import { invalidToken, SigningCore, type SigningCoreOptions } from "./signing-core.js";
import type { ScaCaller } from "./transactions.js";

export interface CreateCsrInput {
  credentialId: string;
  /** The DER CertificationRequestInfo exactly as PrepareCsr returned it and the signer approved it. */
  certificationRequestInfo: Uint8Array;
  hashAlgorithm: HashAlgorithm;
  signatureScheme: SignatureScheme;
  transactionId: string;
  /** The transaction's current SAD token; never logged or stored in clear. */
  sadToken: string;
  requestId?: string | undefined;
}

const equal = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.from(a).equals(b);
const hashNotAuthorized = () =>
  new InkanError("HASH_NOT_AUTHORIZED", "the transaction did not authorize exactly this CertificationRequestInfo", { field: "certification_request_info" });

export class SapCsrApproval {
  private readonly core: SigningCore;

  constructor(private readonly o: SigningCoreOptions) {
    this.core = new SigningCore(o);
  }

  /** CreateCsr: the signed PKCS#10 CertificationRequest (DER), or the contract's error with nothing changed before step 4. */
  async createCsr(input: CreateCsrInput): Promise<Uint8Array> {
    const now = this.core.clock();
    const info = input.certificationRequestInfo;

    // 1. R-3.1.1.4, T-2.1.3.1, T-2.1.1.2: a well-formed request for exactly the credential's key.
    const credential = await this.o.records.get("credential", input.credentialId);
    if (!credential) throw new InkanError("CREDENTIAL_NOT_FOUND", "no such credential", { field: "credential_id" });
    const { spki } = parseCertificationRequestInfo(info);
    const body = JSON.parse(credential.body) as CredentialBody;
    if (!equal(spki, Buffer.from(body.publicKeySpki, "base64"))) {
      throw new InkanError("KEY_MISMATCH", "the public key in certification_request_info is not the credential's", { field: "certification_request_info" });
    }

    // 2. The transaction on this credential, authorized, unexpired, for exactly this DTBS/R (R-3.1.3.2, T-2.1.3.2).
    const record = await this.o.store.getTransaction(input.transactionId);
    if (!record || record.credentialId !== credential.id) throw new InkanError("TRANSACTION_NOT_FOUND", "no such transaction on this credential", { field: "transaction_id" });
    const tx = this.o.transactions.view(record, now);
    const presented = { hash: sadTokenHash(input.sadToken), resumeIndex: 0 };
    const caller: ScaCaller = { certificateSha256: record.sca, subject: "", ...(input.requestId ? { requestId: input.requestId } : {}) };
    const token = await this.o.store.findSadToken(presented.hash);
    const ours = token !== undefined && token.transactionId === record.id;
    // T-2.2.1.3: this transaction's consumed token is a replay whatever the state now (COMPLETED after its CSR), as in SignHash.
    if (ours && token.consumedAt) return this.core.replayed(token, caller, now);
    if (tx.state !== "AUTHORIZED") throw stateError(tx, "authorized");
    // T-2.2.2.2 (issue 14): what Authorize verified, sealed; the row must agree, and its counter not be rolled back.
    const authorization = await this.o.seals.open(record);
    await this.core.checkProgress(record);
    const entryKey = await this.o.seals.entryKey(record.id);
    const dtbsr = csrDtbsr(info, input.hashAlgorithm);
    if (!isCsrApproval(authorization.numSignatures) || authorization.hashAlgorithm !== input.hashAlgorithm || record.signaturesCreated !== 0) throw hashNotAuthorized();
    const entries = await this.o.store.readDtbsr({ transactionId: record.id, fromIndex: 0, limit: 2 });
    if (entries.length !== 1 || !equal(entries[0]!.hash, dtbsr)) throw hashNotAuthorized(); // T-2.1.3.2: subject or key changed after approval
    await entryKey.checkEntry(0, entries[0]!.hash, entries[0]!.mac); // T-2.2.2.2: the entry the SAM stored
    if (input.signatureScheme !== authorization.signatureScheme) {
      throw new InkanError("INVALID_REQUEST", "signature_algorithm is not the approval transaction's", { field: "signature_algorithm" });
    }

    // 3. The SAD token of exactly this transaction (T-2.2.1.2), unused (checked above, T-2.2.1.3); read-only so far.
    if (!ours) throw invalidToken(); // made up, or another transaction's: that one stays untouched
    await entryKey.checkToken(token); // T-2.2.2.2: a token row written by hand is refused
    if (token.revokedAt) throw stateError(tx, "authorized");
    if (token.expiresAt <= now) throw new InkanError("EXPIRED", "the SAD token expired");
    // credential and signer usable; KEY_GENERATED is, for its CSR (R-3.1.3.2).
    const usable = await this.core.usableCredential(record, { csrApproval: true, authorization });

    // 4. T-2.2.1.3: consume before the module is touched; then claim the one entry (works once).
    await this.core.consume(caller, presented, now, entryKey);
    const claim = this.core.newClaim(); // issue 17: recorded (and released) only under this claim
    const recordedHead = this.core.recordedHead(record.id);
    const marked = await this.o.store.markHashesSigned({ transactionId: record.id, hashes: [dtbsr], now, claim });
    if (!marked.ok) return this.core.claimRefused(record, caller, marked.reason === "SAD_TOKEN" ? "TRANSACTION_STATE" : marked.reason, marked.index);
    await this.core.checkClaim(entryKey, marked, 0, recordedHead);

    // 5. Sign and verify in the module (R-3.2.1.5); audit before release (R-3.2.2.4). X.509 takes DER ECDSA signatures.
    const request = (data: Uint8Array) => ({ keyId: usable.keyId, scheme: input.signatureScheme, hashAlgorithm: input.hashAlgorithm, data, format: "der" as const });
    const [signature] = await this.core.signVerified(record, caller, request, [dtbsr]);
    await this.core.auditCreated(tx, caller, [dtbsr]);
    const recorded = await this.core.recordClaimed(record.id, claim.claimId, marked.indices.map((index) => ({ index, signature: signature! })));
    if (recorded.size !== marked.indices.length) throw new InkanError("TRANSACTION_STATE", "the approval's claim was taken over; nothing is released");
    return certificationRequest(info, input.signatureScheme, input.hashAlgorithm, signature!);
  }
}
