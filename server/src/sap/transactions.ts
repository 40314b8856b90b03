import { timingSafeEqual } from "node:crypto";
import { durationMs, policyOncePerCall, type PolicyVersion, type ScaScopeKey, type SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { transactionCancelled, transactionCreated, type ScaActor } from "../audit/events.js";
import type { HashAlgorithm, KeyAlgorithm, RandomSource, SignatureScheme } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import { handled } from "../handled.js";
import type { PublishedSamKey, SamEncryptionKeys } from "../keys/sam-encryption-keys.js";
import { challengeHash } from "../registration/activation.js";
import { certificateRefusal, csrApprovalShapeRefusal } from "../registration/credential-usability.js";
import type { CredentialView } from "../registration/credentials.js";
import { newRecordId } from "../registration/ids.js";
import type { ScaCredentials, ScopedMethod } from "../registration/sca-view.js";
import { maxPageSize, type DtbsrRefusal, type OneTimeObjects, type TransactionRecord, type Transactions } from "../store/port.js";
import type { Freshness } from "../integrity/freshness.js";
import { closedProgress, progressKey, type AuthorizationSeals } from "./authorization-seal.js";
import { checkChunkLength } from "./chunk-rule.js";
import { createDtbsrDigester, dtbsrDigest } from "./dtbsr-digest.js";

/** The HashAlgorithm enum numbers of sam.proto, which the DTBS/R digest encodes. */
export const hashAlgorithmNumber: Record<HashAlgorithm, number> = { SHA256: 1, SHA384: 2, SHA512: 3, NONE: 4 };
/** The exact DTBS/R length of each hash algorithm; NONE (pure EdDSA) takes 1 to {@link maxDtbsrBytes} bytes. */
const hashLength: Record<Exclude<HashAlgorithm, "NONE">, number> = { SHA256: 32, SHA384: 48, SHA512: 64 };
/** The largest single DTBS/R for HASH_ALGORITHM_NONE (sam.proto Limits.max_dtbsr_bytes). */
export const maxDtbsrBytes = 8_192;
/** Bounds of BeginTransactionRequest.lifetime. */
const minLifetimeMs = 30_000;
const maxLifetimeMs = 86_400_000;

/** The calling SCA, as its client certificate identifies it (transport identity). */
export interface ScaCaller {
  /** SHA-256 of the client certificate (DER), lower-case hex: the transaction's owner. */
  certificateSha256: string;
  /** The certificate subject, for the audit log. */
  subject: string;
  requestId?: string;
  /** Issue 19: what the policy's SCA scopes name this SCA by; absent: no scope does (no signer is visible). */
  scope?: ScaScopeKey;
}

/** The lifecycle state as sam.proto reports it (TransactionState). Expiry is derived from the clock. */
export type SapTransactionState = "UPLOADING" | "PENDING" | "AUTHORIZED" | "COMPLETED" | "CANCELLED" | "EXPIRED" | "REVOKED" | "FAILED";

/** What a transaction keeps besides the store's columns (TransactionRecord.body, canonical JSON). */
export interface TransactionBody {
  description: string;
  signatureScheme: SignatureScheme;
  /** sam.proto SignatureFormat number (0: DER); meaningful for ECDSA only. */
  signatureFormat: number;
  /** ISO 8601: AppendHashes and SealTransaction are refused from this instant. */
  uploadExpiresAt: string;
  /**
   * The hashes BeginTransaction carried (chunk 0): all of them, or exactly chunkSize (issue 18; a
   * transaction begun before that rule may hold fewer, which nextChunkIndex still handles).
   */
  inlineCount: number;
  /** Every AppendHashes chunk but the last holds exactly this many hashes (the policy's max_hashes_per_chunk at begin). */
  chunkSize: number;
  /**
   * Opened on a credential without a certificate: the signer's CSR approval, redeemed by CreateCsr
   * only, for the transaction's whole life (R-3.1.3.2; sealed with the authorization).
   */
  csrOnly?: boolean;
  /** Issue 16: the party the SCA acts for (BeginTransactionRequest.on_behalf_of, e.g. a CSC client id). */
  onBehalfOf?: string;
  // The challenge's hash is not here: it is TransactionRecord.challengeHash (a store column), set at
  // creation for a list sealed at once and by completeDtbsrUpload for a chunked upload.
}

/**
 * A transaction of one SCA, as Authorize and signing need it: the store record (credentialId,
 * signerId, sca, hashAlgorithm, numSignatures, dtbsrDigest and challengeHash once sealed, expiresAt,
 * state) and its body. The challenge is not here: only its hash is stored, on the record and as a
 * one-time challenge of purpose "transaction" whose subject is the transaction id.
 */
export interface SapTransaction {
  record: TransactionRecord;
  body: TransactionBody;
  /** The state reported to clients: UPLOADING while the list is open, EXPIRED once expiresAt passed. */
  state: SapTransactionState;
  /** The HashAlgorithm enum number, as the DTBS/R digest encodes it. */
  hashAlgorithmNumber: number;
}

/** What the signer's device needs to build R.SAD (sam.proto SadChallenge). */
export interface SadChallenge {
  transactionId: string;
  signerId: string;
  credentialId: string;
  /** The SAM's id, the R.SAD audience. */
  audience: string;
  /** 32 bytes from the crypto module's RNG; returned once, only its hash is stored. */
  challenge: Uint8Array;
  dtbsrDigest: Uint8Array;
  hashAlgorithm: HashAlgorithm;
  numSignatures: number;
  description: string;
  expiresAt: Date;
  encryptionKey: PublishedSamKey;
  /** The credential, for its assurance level and authentication methods. */
  credential: CredentialView;
  /** The policy version the call read, once (issue 20), for the credential's authentication methods. */
  policy: PolicyVersion;
}

export interface BeginInput {
  caller: ScaCaller;
  credentialId: string;
  signerId: string;
  hashAlgorithm: HashAlgorithm;
  /** Undefined: the credential's default scheme. */
  signatureScheme?: SignatureScheme | undefined;
  signatureFormat: number;
  numSignatures: number;
  /** Chunk 0 of the ordered list: all numSignatures hashes, or exactly the policy's maxHashesPerChunk. */
  hashes: readonly Uint8Array[];
  description: string;
  /** Undefined: the policy's default transaction lifetime. */
  lifetimeMs?: number | undefined;
  /** Issue 16: on whose behalf the SCA acts; recorded, grants nothing. Empty or undefined: itself. */
  onBehalfOf?: string | undefined;
}

export type BeginResult =
  | { state: "PENDING"; transactionId: string; hashesReceived: number; sadChallenge: SadChallenge }
  | { state: "UPLOADING"; transactionId: string; hashesReceived: number; nextChunkIndex: number; uploadExpiresAt: Date };

export interface UploadProgress {
  hashesReceived: number;
  nextChunkIndex: number;
  uploadExpiresAt: Date;
}

export interface SapTransactionsOptions {
  store: Transactions & Pick<OneTimeObjects, "issueChallenge">;
  random: RandomSource;
  policies: Pick<SecurityPolicies, "current">;
  credentials: Pick<ScaCredentials, "get">;
  samKeys: Pick<SamEncryptionKeys, "audienceAndCurrentKey">;
  audit: AuditLog;
  /** Issue 14: each DTBS/R entry is stored with the SAM's MAC (T-2.2.2.2). */
  seals: Pick<AuthorizationSeals, "entryKey">;
  /** Issue 14: a cancelled authorization's progress is closed, so a row put back as AUTHORIZED signs nothing. */
  freshness: Pick<Freshness, "advance">;
  clock?: () => Date;
}

const schemesOf = (k: KeyAlgorithm): SignatureScheme[] =>
  k.startsWith("EC_") ? ["ECDSA"] : k.startsWith("RSA_") ? ["RSA_PKCS1_V1_5", "RSA_PSS"] : k === "ED25519" ? ["ED25519"] : [];

const notFound = () => new InkanError("TRANSACTION_NOT_FOUND", "no such transaction", { field: "transaction_id" });
const refusalError = (reason: DtbsrRefusal): InkanError =>
  reason === "TRANSACTION_NOT_FOUND" ? notFound()
  : reason === "EXPIRED" ? new InkanError("EXPIRED", "the upload did not finish in time")
  : reason === "INVALID_REQUEST" ? new InkanError("UPLOAD_INCOMPLETE", "the chunk does not follow the last accepted one", { field: "chunk_index" })
  : new InkanError("TRANSACTION_STATE", "the transaction is not uploading");

/**
 * The transaction half of the SAP (R-3.2.1.2): BeginTransaction, AppendHashes, SealTransaction and
 * CancelTransaction. A transaction binds one SCA (its certificate), one signer, one of that
 * signer's credentials, a hash algorithm and the ordered DTBS/R list; the list is frozen with its
 * digest (R-3.2.1.4) before the one-time challenge is drawn. Memory stays bounded whatever the
 * batch size: chunks are stored as they come and the digest is computed page by page.
 *
 * Store mapping: the store's PENDING with no digest is UPLOADING; PENDING with a digest is
 * PENDING (sealed). The store keeps one expiresAt: for an inline list `now + lifetime`; for a
 * chunked upload `uploadExpiresAt + lifetime`, so the signer always has at least the lifetime after
 * sealing (the port cannot move expiresAt at seal time).
 */
export class SapTransactions {
  private readonly clock: () => Date;

  constructor(private readonly o: SapTransactionsOptions) {
    this.clock = o.clock ?? (() => new Date());
  }

  /** BeginTransaction: opens a transaction; sealed at once when `hashes` holds all numSignatures. */
  async begin(input: BeginInput): Promise<BeginResult> {
    const now = this.clock();
    const policies = policyOncePerCall(this.o.policies); // issue 20: one policy version per call
    const policy = await policies.current();
    const n = input.numSignatures;
    if (!Number.isInteger(n) || n < 1) throw new InkanError("INVALID_REQUEST", "num_signatures must be at least 1", { field: "num_signatures" });
    if (n > policy.maxHashesPerTransaction) throw new InkanError("LIMIT_EXCEEDED", "num_signatures is above the limit", { field: "num_signatures" });
    if (input.hashes.length > n) throw new InkanError("INVALID_REQUEST", "hashes holds more entries than num_signatures", { field: "hashes" });
    if (input.hashes.length > policy.maxHashesPerChunk) throw new InkanError("LIMIT_EXCEEDED", "too many hashes in one message", { field: "hashes" });
    // R-3.2.1.4 (issue 18): chunk 0 holds the whole list or exactly max_hashes_per_chunk; refused before anything is created.
    checkChunkLength({ hashes: input.hashes.length, last: input.hashes.length === n }, policy.maxHashesPerChunk);
    const lifetimeMs = input.lifetimeMs ?? policy.defaultTransactionLifetimeMs;
    if (lifetimeMs < minLifetimeMs || lifetimeMs > maxLifetimeMs || lifetimeMs > policy.maxTransactionLifetimeMs) {
      throw new InkanError("INVALID_REQUEST", "lifetime is out of range", { field: "lifetime" });
    }
    // T-2.2.1.6: every DTBS/R as long as its algorithm says, none twice.
    checkHashes(input.hashAlgorithm, input.hashes, 0, "INVALID_REQUEST");
    if (new Set(input.hashes.map(hex)).size !== input.hashes.length) throw new InkanError("INVALID_REQUEST", "a hash occurs twice", { field: "hashes" });

    // T-2.2.1.4: the credential must be visible to this SCA, belong to the named signer and be usable.
    // Issue 19: and be within this SCA's scopes (a signer outside them is not found).
    const credential = await this.usableCredential(input.credentialId, input.signerId, now, policies, input.caller, "BeginTransaction");
    // R-3.1.3.2, T-2.1.3.2: on a KEY_GENERATED credential the only transaction is a CSR approval (one DTBS/R).
    const csrOnly = csrApprovalShapeRefusal(credential.credential.status, n);
    if (csrOnly) throw csrOnly;
    if (credential.credential.status === "PENDING") {
      // R-3.1.3.2 (issue 13.4): and that one DTBS/R is the one PrepareCsr produced, inline: never a document's hash.
      const prepared = credential.body.preparedCsr;
      const inline = input.hashes[0];
      if (!prepared || !inline || prepared.hashAlgorithm !== input.hashAlgorithm || Buffer.from(inline).toString("base64url") !== prepared.dtbsr) {
        throw new InkanError("INVALID_REQUEST", "a credential without a certificate only approves the DTBS/R of its last PrepareCsr", { field: "hashes" });
      }
    }
    const key = credential.body.keyAlgorithm;
    const schemes = schemesOf(key);
    const pure = key === "ED25519";
    if (!listed(policy.policy.allowedHashAlgorithms, `HASH_ALGORITHM_${input.hashAlgorithm}`) || (input.hashAlgorithm === "NONE") !== pure) {
      throw new InkanError("ALGORITHM_NOT_ALLOWED", "the hash algorithm is not allowed for this credential", { field: "hash_algorithm" });
    }
    const scheme = input.signatureScheme ?? schemes[0];
    if (!scheme || !schemes.includes(scheme) || !listed(policy.policy.allowedSignatureAlgorithms, `SIGNATURE_ALGORITHM_${scheme}`)) {
      throw new InkanError("ALGORITHM_NOT_ALLOWED", "the signature algorithm is not allowed for this credential", { field: "signature_algorithm" });
    }

    const sealed = input.hashes.length === n;
    // R-3.2.2.2: the challenge of a list sealed at once is drawn now, so its hash goes into the record.
    const challenge = sealed ? await this.o.random.randomBytes(32) : undefined;
    const uploadExpiresAt = new Date(now.getTime() + durationMs(policy.policy.uploadTimeout ?? "600s", "uploadTimeout"));
    const expiresAt = new Date((sealed ? now.getTime() : uploadExpiresAt.getTime()) + lifetimeMs);
    const body: TransactionBody = {
      description: input.description,
      signatureScheme: scheme,
      signatureFormat: input.signatureFormat,
      uploadExpiresAt: uploadExpiresAt.toISOString(),
      inlineCount: input.hashes.length,
      chunkSize: policy.maxHashesPerChunk,
      ...(credential.credential.status === "PENDING" ? { csrOnly: true } : {}),
      ...(input.onBehalfOf ? { onBehalfOf: input.onBehalfOf } : {}),
    };
    const id = await newRecordId("txn", this.o.random, now); // unpredictable (R-3.2.2.2)
    await this.o.store.createTransaction({
      id,
      credentialId: credential.credential.id,
      signerId: input.signerId,
      sca: input.caller.certificateSha256, // R-3.2.1.2: the transaction belongs to this certificate
      hashAlgorithm: input.hashAlgorithm,
      numSignatures: n,
      body: JSON.stringify(body),
      challengeHash: challenge ? challengeHash(challenge) : undefined,
      createdAt: now,
      expiresAt,
    });
    if (input.hashes.length > 0) {
      const macs = (await this.o.seals.entryKey(id)).macs(0, input.hashes); // T-2.2.2.2
      const appended = await this.o.store.appendDtbsr({ transactionId: id, startIndex: 0, hashes: input.hashes, macs, now });
      if (!appended.ok) throw refusalError(appended.reason);
    }
    // Fail closed: no challenge (and no transaction id) leaves before the record is written. Issue 20:
    // written while the list is frozen and the challenge issued (their commits overlap); awaited
    // before anything is returned.
    const audited = handled(this.o.audit.record(transactionCreated({
      sca: scaActor(input.caller),
      requestId: input.caller.requestId,
      signerId: input.signerId,
      credentialId: credential.credential.id,
      transactionId: id,
      hashCount: n,
      hashAlgorithm: input.hashAlgorithm,
      onBehalfOf: input.onBehalfOf,
    })));
    if (!sealed) {
      await audited;
      return { state: "UPLOADING", transactionId: id, hashesReceived: input.hashes.length, nextChunkIndex: 1, uploadExpiresAt };
    }
    const tx = await this.load(id, input.caller);
    const sadChallenge = await this.seal(tx, dtbsrDigest(tx.hashAlgorithmNumber, input.hashes), credential, now, policy, challenge);
    await audited;
    return { state: "PENDING", transactionId: id, hashesReceived: n, sadChallenge };
  }

  /** AppendHashes: the next chunk (1, 2, ...) of an uploading transaction of this SCA. */
  async append(input: { caller: ScaCaller; transactionId: string; chunkIndex: number; hashes: readonly Uint8Array[] }): Promise<UploadProgress> {
    const now = this.clock();
    const tx = await this.load(input.transactionId, input.caller, now);
    const { record, body } = tx;
    const uploadExpiresAt = new Date(body.uploadExpiresAt);
    this.checkUploading(tx, now);
    checkHashes(record.hashAlgorithm as HashAlgorithm, input.hashes, 0, "HASH_LENGTH_MISMATCH");
    const next = nextChunkIndex(record.hashCount, body);
    const progress = (hashesReceived: number): UploadProgress => ({ hashesReceived, nextChunkIndex: nextChunkIndex(hashesReceived, body), uploadExpiresAt });

    // A retry of the last accepted chunk with identical content changes nothing.
    if (input.chunkIndex === next - 1 && input.chunkIndex >= 1) {
      const start = body.inlineCount + (input.chunkIndex - 1) * body.chunkSize;
      if (start + input.hashes.length === record.hashCount) {
        const stored = await this.o.store.readDtbsr({ transactionId: record.id, fromIndex: start, limit: input.hashes.length });
        if (stored.length === input.hashes.length && stored.every((e, i) => equal(e.hash, input.hashes[i]!))) return progress(record.hashCount);
      }
    }
    // R-3.2.1.4: chunks arrive in order, without gaps; each but the last is full (issue 18).
    if (input.chunkIndex !== next) throw new InkanError("UPLOAD_INCOMPLETE", `chunk ${next} is expected`, { field: "chunk_index" });
    const after = record.hashCount + input.hashes.length;
    if (after > record.numSignatures) throw new InkanError("LIMIT_EXCEEDED", "the chunk takes the list past num_signatures", { field: "hashes" });
    if (input.hashes.length > body.chunkSize) throw new InkanError("LIMIT_EXCEEDED", "too many hashes in one message", { field: "hashes" });
    checkChunkLength({ hashes: input.hashes.length, last: after === record.numSignatures }, body.chunkSize); // R-3.2.1.4 (issue 18)
    await this.refuseDuplicates(record, input.hashes);
    const macs = (await this.o.seals.entryKey(record.id)).macs(record.hashCount, input.hashes); // T-2.2.2.2
    const appended = await this.o.store.appendDtbsr({ transactionId: record.id, startIndex: record.hashCount, hashes: input.hashes, macs, now });
    if (!appended.ok) throw refusalError(appended.reason);
    return progress(appended.hashCount);
  }

  /**
   * SealTransaction: R-3.2.1.4, the SAM's digest of what arrived (computed page by page) must equal
   * the SCA's; then the list is frozen and the one-time challenge drawn. The challenge is returned
   * once: a second Seal of a sealed transaction is TRANSACTION_STATE, since only its hash is kept.
   */
  async sealUpload(input: { caller: ScaCaller; transactionId: string; dtbsrDigest: Uint8Array }): Promise<SadChallenge> {
    const now = this.clock();
    const tx = await this.load(input.transactionId, input.caller, now);
    const { record } = tx;
    this.checkUploading(tx, now);
    if (record.hashCount !== record.numSignatures) {
      throw new InkanError("UPLOAD_INCOMPLETE", `${record.hashCount} of ${record.numSignatures} hashes arrived`, { field: "dtbsr_digest" });
    }
    const digester = createDtbsrDigester(tx.hashAlgorithmNumber, record.numSignatures);
    const entryKey = await this.o.seals.entryKey(record.id);
    for (let from = 0; from < record.hashCount; from += maxPageSize) {
      const page = await this.o.store.readDtbsr({ transactionId: record.id, fromIndex: from, limit: maxPageSize });
      if (page.length === 0) break;
      // T-2.2.2.2: the digest covers only entries the SAM stored (an entry edited or inserted in the database is refused).
      for (const e of page) await entryKey.checkEntry(e.index, e.hash, e.mac);
      digester.update(page.map((e) => e.hash));
    }
    let digest: Uint8Array;
    try {
      digest = digester.digest();
    } catch (err) {
      throw new InkanError("UPLOAD_INCOMPLETE", "the DTBS/R list is incomplete", { cause: err, field: "dtbsr_digest" });
    }
    // T-2.2.1.6: a lost, repeated or altered chunk changes the digest.
    if (input.dtbsrDigest.length !== digest.length || !timingSafeEqual(input.dtbsrDigest, digest)) {
      throw new InkanError("UPLOAD_INCOMPLETE", "the DTBS/R digest does not match what arrived", { field: "dtbsr_digest" });
    }
    const policies = policyOncePerCall(this.o.policies); // issue 20: one policy version per call
    const policy = await policies.current(); // read first, as before: a broken policy refuses before the credential is looked at
    const credential = await this.usableCredential(record.credentialId, record.signerId, now, policies, input.caller, "SealTransaction");
    return this.seal(tx, digest, credential, now, policy);
  }

  /** CancelTransaction: ends a transaction of this SCA; idempotent, reports the final state. */
  async cancel(input: { caller: ScaCaller; transactionId: string }): Promise<{ state: SapTransactionState; signaturesCreated: number }> {
    const now = this.clock();
    const tx = await this.load(input.transactionId, input.caller, now);
    if (tx.state === "UPLOADING" || tx.state === "PENDING" || tx.state === "AUTHORIZED") {
      const moved = await this.o.store.transitionTransaction({ id: tx.record.id, from: ["PENDING", "AUTHORIZED"], to: "CANCELLED", now });
      if (moved) {
        await this.o.freshness.advance(progressKey(tx.record.id), closedProgress); // issue 14: a row put back as AUTHORIZED signs nothing
        await this.o.audit.record(transactionCancelled({
          actor: scaActor(input.caller),
          requestId: input.caller.requestId,
          transactionId: tx.record.id,
          signerId: tx.record.signerId,
          credentialId: tx.record.credentialId,
        }));
        return { state: "CANCELLED", signaturesCreated: tx.record.signaturesCreated };
      }
    }
    const final = await this.load(input.transactionId, input.caller, now);
    return { state: final.state, signaturesCreated: final.record.signaturesCreated };
  }

  /**
   * One transaction of this SCA. TRANSACTION_NOT_FOUND when it does not exist or another SCA
   * opened it (R-3.2.1.2: a transaction belongs to the certificate that opened it; its existence
   * does not leak). For Authorize and signing: check `state`, then use record.dtbsrDigest,
   * numSignatures, credentialId, signerId and expiresAt.
   */
  async load(transactionId: string, caller: Pick<ScaCaller, "certificateSha256">, now = this.clock()): Promise<SapTransaction> {
    const record = await this.o.store.getTransaction(transactionId);
    if (!record || record.sca !== caller.certificateSha256) throw notFound();
    return this.view(record, now);
  }

  /** A transaction record already read (and already checked to be the caller's), as load() returns it. */
  view(record: TransactionRecord, now = this.clock()): SapTransaction {
    const body = JSON.parse(record.body) as TransactionBody;
    return { record, body, state: stateOf(record, now), hashAlgorithmNumber: hashAlgorithmNumber[record.hashAlgorithm as HashAlgorithm] };
  }

  private checkUploading(tx: SapTransaction, now: Date): void {
    if (tx.state === "EXPIRED" || (tx.state === "UPLOADING" && now >= new Date(tx.body.uploadExpiresAt))) {
      throw new InkanError("EXPIRED", "the upload did not finish before upload_expires_at");
    }
    if (tx.state !== "UPLOADING") throw new InkanError("TRANSACTION_STATE", "the transaction is not uploading");
  }

  /**
   * Draws the one-time challenge (unless drawn at begin), then freezes the list with its digest and
   * the challenge's hash in one atomic store update, then issues the challenge (only its hash).
   */
  private async seal(tx: SapTransaction, digest: Uint8Array, credential: CredentialView, now: Date, policy: PolicyVersion, drawn?: Uint8Array): Promise<SadChallenge> {
    const { record } = tx;
    // R-3.2.2.2: 32 bytes from the crypto module's RNG, drawn before anything is frozen (at begin for an inline list).
    const challenge = drawn ?? (await this.o.random.randomBytes(32));
    const hash = challengeHash(challenge);
    // R-3.2.1.4, T-2.2.1.3: digest and challenge hash are recorded together; Authorize reads both from the record.
    const frozen = handled(this.o.store.completeDtbsrUpload({ transactionId: record.id, hashCount: record.numSignatures, digest, challengeHash: hash, now }));
    // T-2.2.1.3: the challenge works once; the SAM keeps only its hash, bound to the transaction.
    // Issue 20: issued in the same write batch as the freeze (one commit). If the list did not
    // freeze, this challenge is never returned, and Authorize only consumes the challenge whose
    // hash the frozen record holds.
    const issued = handled(this.o.store.issueChallenge({ hash, purpose: "transaction", subject: record.id, createdAt: now, expiresAt: record.expiresAt }));
    if (!(await frozen)) {
      const again = await this.load(record.id, { certificateSha256: record.sca }, now);
      if (again.state === "EXPIRED") throw new InkanError("EXPIRED", "the transaction expired");
      throw new InkanError("TRANSACTION_STATE", "the transaction is not uploading");
    }
    await issued;
    const { audience, encryptionKey } = await this.o.samKeys.audienceAndCurrentKey(now);
    return {
      transactionId: record.id,
      signerId: record.signerId,
      credentialId: record.credentialId,
      audience,
      challenge,
      dtbsrDigest: digest,
      hashAlgorithm: record.hashAlgorithm as HashAlgorithm,
      numSignatures: record.numSignatures,
      description: tx.body.description,
      expiresAt: record.expiresAt,
      encryptionKey,
      credential,
      policy,
    };
  }

  private async usableCredential(credentialId: string, signerId: string, now: Date, policies: Pick<SecurityPolicies, "current">, caller: ScaCaller, method: ScopedMethod): Promise<CredentialView> {
    const view = await this.o.credentials.get(credentialId, caller, method, policies);
    // T-2.2.1.4: a credential of another signer is reported as not found, never as forbidden.
    if (view.credential.signerId !== signerId) throw new InkanError("CREDENTIAL_NOT_FOUND", "no such credential", { field: "credential_id" });
    switch (view.credential.status) {
      case "SUSPENDED":
        throw new InkanError("CREDENTIAL_SUSPENDED", "the credential is suspended", { field: "credential_id" });
      case "LOCKED":
        throw new InkanError("CREDENTIAL_LOCKED", "the credential is locked", { field: "credential_id" });
      case "DESTROYED":
        throw new InkanError("CREDENTIAL_DESTROYED", "the credential is destroyed", { field: "credential_id" });
    }
    // R-3.1.1.4, T-2.1.3.2: a certificate expired (beyond the policy's grace) or not valid yet certifies nothing.
    const expired = certificateRefusal(view.body.certificate, now, (await policies.current()).certificateExpiryGraceMs);
    if (expired) throw expired;
    return view;
  }

  /**
   * INVALID_REQUEST when a hash of the chunk is already in the list: looked up by index, not by
   * scanning the list (an upload of n hashes would read O(n²) rows). While uploading no entry is
   * signed, so "an unsigned entry with this hash" is "in the list".
   */
  private async refuseDuplicates(record: TransactionRecord, hashes: readonly Uint8Array[]): Promise<void> {
    if (new Set(hashes.map(hex)).size !== hashes.length) throw new InkanError("INVALID_REQUEST", "a hash occurs twice", { field: "hashes" });
    if (record.hashCount === 0) return;
    const present = await this.o.store.hasUnsignedEntries({ transactionId: record.id, hashes });
    if (present.includes(true)) throw new InkanError("INVALID_REQUEST", "a hash is already in the list", { field: "hashes" });
  }

}

/** The chunk_index the next AppendHashes must carry, given how many hashes the store holds. */
function nextChunkIndex(hashCount: number, body: TransactionBody): number {
  return 1 + Math.ceil(Math.max(0, hashCount - body.inlineCount) / body.chunkSize);
}

function stateOf(record: TransactionRecord, now: Date): SapTransactionState {
  const open = record.state === "PENDING" || record.state === "AUTHORIZED";
  if (open && now >= record.expiresAt) return "EXPIRED";
  if (record.state === "PENDING") return record.dtbsrDigest ? "PENDING" : "UPLOADING";
  return record.state;
}

/** T-2.2.1.6: each DTBS/R has the length its algorithm gives (NONE: 1 to 8 KiB of data). */
export function checkHashes(algorithm: HashAlgorithm, hashes: readonly Uint8Array[], offset: number, code: "INVALID_REQUEST" | "HASH_LENGTH_MISMATCH"): void {
  for (const [i, h] of hashes.entries()) {
    const ok = algorithm === "NONE" ? h.length >= 1 && h.length <= maxDtbsrBytes : h.length === hashLength[algorithm];
    if (!ok) throw new InkanError(code, "a hash's length does not match the hash algorithm", { field: `hashes[${offset + i}]`, index: offset + i });
  }
}

function listed(list: unknown, name: string): boolean {
  return Array.isArray(list) && list.includes(name);
}

export function scaActor(caller: Pick<ScaCaller, "certificateSha256" | "subject">): ScaActor {
  return { kind: "sca", subject: caller.subject, certificateSha256: Buffer.from(caller.certificateSha256, "hex") };
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const equal = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.from(a).equals(b);
