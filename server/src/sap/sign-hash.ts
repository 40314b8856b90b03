/**
 * SignHash (sam.proto SignatureActivationService.SignHash): guideline appendix 1 method 1 (many
 * hashes per call) combined with method 2 (each call consumes its SAD token and, while signatures
 * remain, returns a fresh one).
 *
 * Order of checks (IDs say what each closes):
 *  1. Request shape: 1 to max_hashes_per_chunk hashes, none twice.
 *  2. Read-only pre-checks, so that a refused request leaves the token valid (sam.proto: "refused
 *     as a whole, nothing is signed and the token stays valid"):
 *     - the token is known (else SAD_INVALID, T-2.2.1.2), not consumed (else replay, see 4), not
 *       revoked, not expired; its transaction was opened by this SCA (else SAD_INVALID: another
 *       SCA cannot burn or use the token, R-3.2.1.2);
 *     - the transaction is AUTHORIZED and unexpired (T-2.2.1.2: no signature before Authorize);
 *     - each hash has its algorithm's length, fits in the signatures remaining, and is an unsigned
 *       entry of the authorized list (T-2.2.1.6): SIGNATURE_COUNT_EXCEEDED / HASH_NOT_AUTHORIZED;
 *     - the credential is ACTIVE and the signer ACTIVE (also for tokens issued before a
 *       suspension). KEY_GENERATED credentials (no certificate yet) never sign: consistent with
 *       verifyRSad, which refuses them at Authorize.
 *     The credential check sits here rather than between 3 and 4 so that the claim (4) follows the
 *     consume (3) directly: of concurrent callers with one token, the winner claims before any
 *     loser's reuse detection revokes the transaction.
 *  3. T-2.2.1.3, T-2.2.1.2: the token is consumed atomically BEFORE the crypto module is touched.
 *     A failed consume is checked with findSadToken: a consumed token presented again is a replay
 *     -> every unconsumed token of the transaction is revoked, the transaction moves to REVOKED,
 *     SAD_REPLAYED (refresh-token reuse detection).
 *  4. T-2.2.1.6: markHashesSigned claims the entries atomically (authoritative over the pre-check:
 *     never a hash outside the list, never more often than listed, never past numSignatures).
 *  5. Sign each hash in the crypto module, then verify each in the module (R-3.2.1.5): a signature
 *     that does not verify is withheld, audited (signature.failed) -> SIGNATURE_CHECK_FAILED.
 *  6. R-3.2.2.4: audit signature.created for each hash BEFORE any signature is returned; the audit
 *     log is fail closed, so a failed write returns AUDIT_FAILURE and no signature.
 *  7. Method 2: while signatures remain, a fresh token (generation + 1, previousHash = the consumed
 *     one); none once the transaction is COMPLETED.
 * After step 3 a failure loses the claimed hashes (counted as signed, never signed twice) and
 * issues no next token; the remaining hashes need a new transaction (sam.proto).
 *
 * Not here: the one-call inline form (inline_authorization -> NOT_IMPLEMENTED), SignStream.
 */
import type { SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { signatureCreated, signatureFailed } from "../audit/events.js";
import type { HashAlgorithm, RandomSource, SigningKeys } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { CredentialBody } from "../registration/credentials.js";
import { maxPageSize, type OneTimeObjects, type SadTokenRecord, type TransactionRecord, type Transactions } from "../store/port.js";
import { issueSadToken, sadTokenHash, stateError } from "./authorize.js";
import { checkHashes, scaActor, type SapTransactions, type ScaCaller } from "./transactions.js";

export interface SignHashOptions {
  transactions: Pick<SapTransactions, "load" | "view">;
  store: Pick<Transactions, "getTransaction" | "readDtbsr" | "markHashesSigned" | "transitionTransaction"> &
    Pick<OneTimeObjects, "findSadToken" | "consumeSadToken" | "revokeSadTokens" | "issueSadToken">;
  records: Pick<VerifiedRecords, "get">;
  keys: Pick<SigningKeys, "sign" | "verify">;
  random: RandomSource;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
  clock?: () => Date;
}

export interface SignHashResult {
  /** One per requested hash, in request order. */
  signatures: Uint8Array[];
  /** Empty when no signatures remain. */
  nextSadToken: string;
  nextSadTokenExpiresAt: Date | undefined;
  signaturesRemaining: number;
}

const invalidToken = () => new InkanError("SAD_INVALID", "the SAD token is not valid");
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

export class SapSignHash {
  private readonly clock: () => Date;

  constructor(private readonly o: SignHashOptions) {
    this.clock = o.clock ?? (() => new Date());
  }

  async signHash(input: { caller: ScaCaller; sadToken: string; hashes: readonly Uint8Array[] }): Promise<SignHashResult> {
    const now = this.clock();
    const { hashes, caller } = input;
    // 1. Request shape.
    const policy = await this.o.policies.current();
    if (hashes.length === 0) throw new InkanError("INVALID_REQUEST", "hashes is empty", { field: "hashes" });
    if (hashes.length > policy.maxHashesPerChunk) throw new InkanError("LIMIT_EXCEEDED", "too many hashes in one message", { field: "hashes" });
    if (new Set(hashes.map(hex)).size !== hashes.length) throw new InkanError("INVALID_REQUEST", "a hash occurs twice", { field: "hashes" });

    // 2. Read-only pre-checks: a refusal here leaves the token valid.
    const tokenHash = sadTokenHash(input.sadToken);
    const seen = await this.o.store.findSadToken(tokenHash);
    if (!seen) throw invalidToken(); // T-2.2.1.2: a made-up token
    const owned = await this.o.store.getTransaction(seen.transactionId);
    if (!owned || owned.sca !== caller.certificateSha256) throw invalidToken(); // R-3.2.1.2: issued to another SCA
    if (seen.consumedAt) return this.replayed(seen, caller, now); // T-2.2.1.3
    const tx = this.o.transactions.view(owned, now); // read once, above
    if (seen.revokedAt) throw stateError(tx, "authorized");
    if (tx.state !== "AUTHORIZED") throw stateError(tx, "authorized");
    if (seen.expiresAt <= now) throw new InkanError("EXPIRED", "the SAD token expired");
    const { record } = tx;
    const hashAlgorithm = record.hashAlgorithm as HashAlgorithm;
    checkHashes(hashAlgorithm, hashes, 0, "HASH_LENGTH_MISMATCH"); // T-2.2.1.6
    if (hashes.length > record.numSignatures - record.signaturesCreated) {
      throw new InkanError("SIGNATURE_COUNT_EXCEEDED", "more hashes than signatures remain", { field: "hashes" });
    }
    await this.checkListed(record, hashes);
    const credential = await this.usableCredential(record);

    // 3. T-2.2.1.3 / T-2.2.1.2: consume the token atomically, before the crypto module is touched.
    const consumed = await this.o.store.consumeSadToken({ hash: tokenHash, now });
    if (!consumed) {
      const again = await this.o.store.findSadToken(tokenHash);
      if (again?.consumedAt) return this.replayed(again, caller, now);
      if (again && again.expiresAt <= now) throw new InkanError("EXPIRED", "the SAD token expired");
      throw invalidToken();
    }

    // 4. T-2.2.1.6: claim the entries atomically (all or nothing).
    const marked = await this.o.store.markHashesSigned({ transactionId: record.id, hashes, now });
    if (!marked.ok) {
      const reason = marked.reason;
      await this.audited(record, caller, { outcome: "DENIED", reason: reason === "EXPIRED" ? "EXPIRED" : reason === "TRANSACTION_NOT_FOUND" ? "TRANSACTION_STATE" : reason === "INVALID_REQUEST" ? "INVALID_REQUEST" : reason });
      if (reason === "HASH_NOT_AUTHORIZED") throw new InkanError("HASH_NOT_AUTHORIZED", "a hash is not authorized or was already signed", { field: "hashes", ...(marked.index !== undefined ? { index: marked.index } : {}) });
      if (reason === "SIGNATURE_COUNT_EXCEEDED") throw new InkanError("SIGNATURE_COUNT_EXCEEDED", "more hashes than signatures remain", { field: "hashes" });
      if (reason === "EXPIRED") throw new InkanError("EXPIRED", "the transaction expired");
      // Revoked by a concurrent reuse detection, cancelled meanwhile, ...
      throw new InkanError("TRANSACTION_STATE", "the transaction is not authorized");
    }

    // 5. Sign in the module, then verify in the module before anything leaves (R-3.2.1.5).
    const format = tx.body.signatureFormat === 2 ? "raw" : "der";
    const request = (data: Uint8Array) => ({ keyId: credential.keyId, scheme: tx.body.signatureScheme, hashAlgorithm, data, format } as const);
    let signatures: Uint8Array[];
    try {
      signatures = await Promise.all(hashes.map((h) => this.o.keys.sign(request(h))));
    } catch (err) {
      await this.audited(record, caller, { outcome: "FAILURE", reason: "CRYPTO_MODULE_FAILURE" }).catch(() => undefined);
      throw err instanceof InkanError ? err : new InkanError("CRYPTO_MODULE_FAILURE", "the crypto module could not sign", { cause: err });
    }
    let verified: boolean[];
    try {
      verified = await Promise.all(hashes.map((h, i) => this.o.keys.verify({ ...request(h), signature: signatures[i]! })));
    } catch (err) {
      await this.audited(record, caller, { outcome: "FAILURE", reason: "CRYPTO_MODULE_FAILURE" }).catch(() => undefined);
      throw err instanceof InkanError ? err : new InkanError("CRYPTO_MODULE_FAILURE", "the crypto module could not verify", { cause: err });
    }
    const bad = verified.indexOf(false);
    if (bad >= 0) {
      // R-3.2.1.5: withheld, every one of them (the request fails as a whole), and audited.
      await this.audited(record, caller, { outcome: "FAILURE", reason: "SIGNATURE_CHECK_FAILED" }, hashes[bad]);
      throw new InkanError("SIGNATURE_CHECK_FAILED", "a signature did not verify against the credential's public key and was withheld", { index: bad });
    }

    // 6. R-3.2.2.4: each signature is in the audit log before it leaves (fail closed).
    const sca = scaActor(caller);
    for (const h of hashes) {
      await this.o.audit.record(signatureCreated({
        sca,
        requestId: caller.requestId,
        signerId: record.signerId,
        credentialId: record.credentialId,
        transactionId: record.id,
        hash: h,
        hashAlgorithm,
        signatureAlgorithm: tx.body.signatureScheme,
      }));
    }

    // 7. Method 2: the next one-time token while signatures remain.
    const remaining = record.numSignatures - marked.signaturesCreated;
    if (remaining <= 0) return { signatures, nextSadToken: "", nextSadTokenExpiresAt: undefined, signaturesRemaining: 0 };
    const next = await issueSadToken(this.o, { transactionId: record.id, transactionExpiresAt: record.expiresAt, generation: consumed.generation + 1, previousHash: tokenHash, now });
    return { signatures, nextSadToken: next.token, nextSadTokenExpiresAt: next.expiresAt, signaturesRemaining: remaining };
  }

  /** T-2.2.1.3: a consumed token presented again revokes the rest of its transaction. */
  private async replayed(token: SadTokenRecord, caller: ScaCaller, now: Date): Promise<never> {
    await this.o.store.revokeSadTokens({ transactionId: token.transactionId, now });
    await this.o.store.transitionTransaction({ id: token.transactionId, from: ["PENDING", "AUTHORIZED"], to: "REVOKED", now });
    const record = await this.o.store.getTransaction(token.transactionId);
    if (record) await this.audited(record, caller, { outcome: "DENIED", reason: "SAD_REPLAYED" });
    throw new InkanError("SAD_REPLAYED", "the SAD token was already used; the transaction is revoked");
  }

  /** T-2.2.1.6 pre-check: every hash is an unsigned entry of the list (page by page, bounded memory). */
  private async checkListed(record: TransactionRecord, hashes: readonly Uint8Array[]): Promise<void> {
    const wanted = new Map(hashes.map((h, i) => [hex(h), i]));
    const found = new Set<string>();
    for (let from = 0; from < record.hashCount && found.size < wanted.size; from += maxPageSize) {
      const page = await this.o.store.readDtbsr({ transactionId: record.id, fromIndex: from, limit: maxPageSize });
      for (const e of page) if (!e.signed && wanted.has(hex(e.hash))) found.add(hex(e.hash));
      if (page.length < maxPageSize) break;
    }
    for (const [h, i] of wanted) {
      if (!found.has(h)) throw new InkanError("HASH_NOT_AUTHORIZED", "a hash is not authorized or was already signed", { field: `hashes[${i}]`, index: i });
    }
  }

  /** The credential's module key, if the credential and its signer can still sign. */
  private async usableCredential(record: TransactionRecord): Promise<CredentialBody> {
    const [credential, signer] = await Promise.all([this.o.records.get("credential", record.credentialId), this.o.records.get("signer", record.signerId)]);
    if (!signer || signer.status !== "ACTIVE") throw new InkanError("SIGNER_INACTIVE", "the signer is not active");
    if (!credential || credential.signerId !== record.signerId) throw new InkanError("CREDENTIAL_DESTROYED", "the credential is gone");
    switch (credential.status) {
      case "ACTIVE":
        return JSON.parse(credential.body) as CredentialBody;
      case "LOCKED":
        throw new InkanError("CREDENTIAL_LOCKED", "the credential is locked");
      case "DESTROYED":
        throw new InkanError("CREDENTIAL_DESTROYED", "the credential was destroyed");
      default:
        throw new InkanError("CREDENTIAL_SUSPENDED", "the credential is not active");
    }
  }

  private audited(record: TransactionRecord, caller: ScaCaller, refusal: { outcome: "DENIED" | "FAILURE"; reason: NonNullable<Parameters<typeof signatureFailed>[0]["refusal"]["reason"]> }, hash?: Uint8Array): Promise<void> {
    return this.o.audit.record(signatureFailed({
      sca: scaActor(caller),
      requestId: caller.requestId,
      signerId: record.signerId,
      credentialId: record.credentialId,
      transactionId: record.id,
      ...(hash ? { hash } : {}),
      refusal,
    })).then(() => undefined);
  }
}

