/**
 * The store port: everything the SAM persists, shaped by what the SAM asks of it.
 *
 * Six capabilities, one interface each, all async so that an embedded store (SQLite) and a
 * networked one (MongoDB replica set, several SAM nodes) fit the same port:
 * - {@link SealedRecords}: signers, factors, credentials, privileged users and their keys, and the
 *   versioned security policy. The store is dumb about seals: it persists every field exactly and
 *   returns it exactly; another module seals on write and verifies on every read.
 * - {@link Transactions}: SAP transactions with their ordered DTBS/R list and compare-and-set state.
 * - {@link OneTimeObjects}: challenges, SAD tokens, activation codes and used jti values, each
 *   consumed by one atomic conditional update, so exactly one caller wins under any concurrency.
 * - {@link AuditRecords}: the append-only audit chain of each node and its signed checkpoints.
 * - {@link PendingApprovals}: requests under dual control (R-3.2.1.6), sealed like the records
 *   above and decided by one atomic compare-and-set, so exactly one approver wins.
 *
 * Rules every adapter follows:
 * - Time is passed in (`now`), never read inside the store, so tests use a fixed clock.
 * - A failure of the database (driver error, closed connection, timeout) throws
 *   {@link StoreFailureError} (`STORE_FAILURE`, the driver error in `cause` only): the caller fails
 *   closed. Expected outcomes (a lost race, an expired object) are return values, not errors.
 * - Secrets never reach the store: one-time objects are stored and looked up by a hash the caller
 *   computes (e.g. base64url(SHA-256(secret))).
 * - Caller bugs (a page larger than {@link maxPageSize}, a version that does not follow the
 *   expected one) throw `RangeError` before the database is touched.
 */
import { InkanError } from "../errors.js";

/** The largest page any read or list returns, and the largest DTBS/R chunk or mark-signed batch. */
export const maxPageSize = 10_000;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** The database failed; the operation did not happen (or its outcome is unknown): fail closed. */
export class StoreFailureError extends InkanError {
  constructor(cause: unknown) {
    super("STORE_FAILURE", "the store is unavailable", { cause });
    this.name = "StoreFailureError";
  }
}

/**
 * A create was refused because a unique key is taken: the id, or a unique queryable field such as
 * a credential's public-key fingerprint (T-2.1.4.4). `field` names which one.
 */
export class RecordExistsError extends InkanError {
  constructor(readonly kind: string, field: string) {
    super("ALREADY_EXISTS", `${kind} already exists`, { field });
    this.name = "RecordExistsError";
  }
}

/**
 * An audit record or checkpoint does not extend its node's chain: its sequence is taken, skips
 * one, or its prevHash is not the hash of the record before it. Two writers share a node id, or
 * the chain head in memory is wrong; either way nothing may be signed (fail closed, R-3.2.2.4).
 */
export class AuditChainError extends InkanError {
  constructor(nodeId: string, sequence: number, reason: string) {
    super("AUDIT_FAILURE", `audit chain of node ${nodeId} not extended at sequence ${sequence}: ${reason}`);
    this.name = "AuditChainError";
  }
}

// ---------------------------------------------------------------------------------------------
// Sealed records
// ---------------------------------------------------------------------------------------------

export type SignerStatus = "PENDING_ACTIVATION" | "ACTIVE" | "SUSPENDED" | "DISABLED";
export type FactorType = "DEVICE_KEY" | "PIN" | "TOTP";
export type FactorStatus = "ACTIVE" | "REVOKED";
export type CredentialStatus = "PENDING" | "ACTIVE" | "SUSPENDED" | "LOCKED" | "DESTROYED";
export type PrivilegedRole = "SECURITY_OFFICER" | "REGISTRATION_OPERATOR" | "AUDITOR";
export type PrivilegedUserStatus = "ACTIVE" | "DISABLED" | "REMOVED";
export type PrivilegedUserKeyStatus = "ACTIVE" | "REVOKED";

/**
 * What every sealed record has. The seal (computed by the caller) covers the whole record: kind,
 * id, version, the queryable fields and the body. The store keeps each field exactly as given.
 */
export interface RecordBase {
  id: string;
  /** 1 when created; each update stores expectedVersion + 1. */
  version: number;
  /** Canonical JSON of everything that is not a queryable field, produced by the caller. */
  body: string;
  seal: Uint8Array;
}

export interface SignerRecord extends RecordBase {
  kind: "signer";
  status: SignerStatus;
}

/** A signer's factor: device key, PIN hash or TOTP secret (the secret encrypted in the body). */
export interface FactorRecord extends RecordBase {
  kind: "factor";
  signerId: string;
  type: FactorType;
  status: FactorStatus;
}

export interface CredentialRecord extends RecordBase {
  kind: "credential";
  signerId: string;
  status: CredentialStatus;
  /** Fingerprint of the public key (SPKI). Unique across all credentials, destroyed ones included. */
  publicKeyFingerprint: string;
}

export interface PrivilegedUserRecord extends RecordBase {
  kind: "privileged-user";
  role: PrivilegedRole;
  status: PrivilegedUserStatus;
  /** Fingerprint of the admin client certificate; unique. */
  certificateFingerprint: string;
}

/** A key a privileged user signs admin requests with (the second factor, R-3.1.2.1). */
export interface PrivilegedUserKeyRecord extends RecordBase {
  kind: "privileged-user-key";
  userId: string;
  status: PrivilegedUserKeyStatus;
  /** Fingerprint of the public key; unique. */
  keyFingerprint: string;
}

export type SealedRecord =
  | SignerRecord
  | FactorRecord
  | CredentialRecord
  | PrivilegedUserRecord
  | PrivilegedUserKeyRecord;
export type RecordKind = SealedRecord["kind"];
export type RecordOf<K extends RecordKind> = Extract<SealedRecord, { kind: K }>;

/** The fields of a kind that the store keeps as real columns (beside id, version, body and seal). */
export type QueryableField<K extends RecordKind> = Exclude<keyof RecordOf<K>, keyof RecordBase | "kind">;

/**
 * Every queryable field of every kind (the compiler checks none is missing). Adapters derive their
 * columns from this table, so each field of a record is persisted and returned exactly.
 */
export const queryableFields: { readonly [K in RecordKind]: { readonly [F in QueryableField<K>]: true } } = {
  signer: { status: true },
  factor: { signerId: true, type: true, status: true },
  credential: { signerId: true, status: true, publicKeyFingerprint: true },
  "privileged-user": { role: true, status: true, certificateFingerprint: true },
  "privileged-user-key": { userId: true, status: true, keyFingerprint: true },
};

/** The equality filters each kind can be listed by; all given filters must match. */
export interface ListFilters {
  signer: { status?: SignerStatus };
  factor: { signerId: string; type?: FactorType; status?: FactorStatus };
  credential: { signerId?: string; status?: CredentialStatus };
  /** certificateFingerprint: every user a certificate binding names (one, unless the unique index is gone). */
  "privileged-user": { role?: PrivilegedRole; status?: PrivilegedUserStatus; certificateFingerprint?: string };
  "privileged-user-key": { userId: string; status?: PrivilegedUserKeyStatus };
}

/** The unique queryable field of each kind that has one (besides the id). */
export interface UniqueFields {
  credential: "publicKeyFingerprint";
  "privileged-user": "certificateFingerprint";
  "privileged-user-key": "keyFingerprint";
}

/** The unique field of each kind, as a value adapters can read. */
export const uniqueFields: { readonly [K in keyof UniqueFields]: UniqueFields[K] } = {
  credential: "publicKeyFingerprint",
  "privileged-user": "certificateFingerprint",
  "privileged-user-key": "keyFingerprint",
};

/** Records ordered by id; `after` is the cursor (the last id of the previous page). */
export interface ListQuery<K extends RecordKind> {
  kind: K;
  where: ListFilters[K];
  after?: string | undefined;
  /** 1 to {@link maxPageSize}. */
  limit: number;
}

export interface Page<T> {
  items: T[];
  /** Pass as `after` to read the next page; undefined when this page is the last. */
  next: string | undefined;
}

/**
 * A version of the security policy (or another configuration stream named by `id`). Versions
 * are never changed: a change appends version n + 1, so every past version stays readable.
 */
export interface PolicyRecord {
  kind: "policy";
  /** The stream, e.g. "security-policy". */
  id: string;
  version: number;
  body: string;
  seal: Uint8Array;
}

export interface SealedRecords {
  /** Stores a new record (its version must be 1). Throws {@link RecordExistsError} if its id or unique field is taken. */
  createRecord(record: SealedRecord): Promise<void>;
  getRecord<K extends RecordKind>(kind: K, id: string): Promise<RecordOf<K> | undefined>;
  /**
   * Replaces the record if its stored version is still `expectedVersion` (compare-and-set);
   * `record.version` must be `expectedVersion + 1`. Returns false when the version moved or the
   * record does not exist. Throws {@link RecordExistsError} if a unique field would collide.
   */
  updateRecord(record: SealedRecord, expectedVersion: number): Promise<boolean>;
  listRecords<K extends RecordKind>(query: ListQuery<K>): Promise<Page<RecordOf<K>>>;
  /** The record whose unique field has this value, e.g. a credential by public-key fingerprint. */
  findRecord<K extends keyof UniqueFields>(kind: K, field: UniqueFields[K], value: string): Promise<RecordOf<K> | undefined>;

  /**
   * Appends a policy version: `record.version` must be the stream's latest version + 1 (1 for a
   * new stream). Returns false otherwise: that version exists already (another writer won) or
   * the version skips one.
   */
  appendPolicyVersion(record: PolicyRecord): Promise<boolean>;
  getPolicyVersion(id: string, version: number): Promise<PolicyRecord | undefined>;
  latestPolicyVersion(id: string): Promise<PolicyRecord | undefined>;
  /** Versions in ascending order, starting after `afterVersion` (0 for all). */
  listPolicyVersions(id: string, afterVersion: number, limit: number): Promise<PolicyRecord[]>;
}

// ---------------------------------------------------------------------------------------------
// Transactions and their DTBS/R lists
// ---------------------------------------------------------------------------------------------

/**
 * PENDING (uploading, then awaiting the SAD) -> AUTHORIZED -> COMPLETED (every authorized
 * signature marked), or CANCELLED / REVOKED from PENDING or AUTHORIZED, or FAILED from PENDING
 * (only by {@link Transactions.recordAuthorizeFailure}). Expiry is not a state: an
 * expired transaction is one whose expiresAt has passed, whatever its state.
 */
export type TransactionState = "PENDING" | "AUTHORIZED" | "COMPLETED" | "CANCELLED" | "REVOKED" | "FAILED";

export interface NewTransaction {
  id: string;
  credentialId: string;
  signerId: string;
  /** The SCA that opened it, as identified by its client certificate (R-3.2.1.2). */
  sca: string;
  hashAlgorithm: string;
  /** Signatures the signer is asked to authorize; never exceeded (T-2.2.1.6). At least 1. */
  numSignatures: number;
  /** Canonical JSON of the rest (e.g. the description the signer sees); opaque to the store. */
  body: string;
  createdAt: Date;
  expiresAt: Date;
  /**
   * Hash (base64url) of the transaction's one-time challenge, when it is drawn before the record
   * exists (a list sealed at once). Otherwise {@link Transactions.completeDtbsrUpload} stores it.
   * Only the hash, never the challenge.
   */
  challengeHash?: string | undefined;
}

/**
 * What Authorize verified, sealed with a module-held key (T-2.2.2.2, R-3.1.1.1, R-3.2.1.1): the
 * caller seals, the store keeps both fields exactly. Signing trusts nothing of a transaction row
 * that is not also in here.
 */
export interface SealedAuthorization {
  /** Canonical JSON of the authorization's facts; opaque to the store. */
  body: string;
  seal: Uint8Array;
}

export interface TransactionRecord extends NewTransaction {
  state: TransactionState;
  /** Set by the PENDING -> AUTHORIZED transition, in the same atomic update; never changed afterwards. */
  authorization: SealedAuthorization | undefined;
  /** DTBS/R entries uploaded so far. */
  hashCount: number;
  /** Set once by {@link Transactions.completeDtbsrUpload}; the list is frozen from then on. */
  dtbsrDigest: Uint8Array | undefined;
  /**
   * Hash (base64url) of the one-time challenge: set at creation or, at the latest, by
   * {@link Transactions.completeDtbsrUpload} together with dtbsrDigest; never changed afterwards.
   * Authorize reads it from here. Undefined while uploading (and for rows older than the column).
   */
  challengeHash: string | undefined;
  /** Entries claimed so far, each counted once (a claim taken over is not counted again); never above numSignatures. */
  signaturesCreated: number;
  /** Entries whose signature is recorded ({@link Transactions.recordSignatures}); never above signaturesCreated. */
  signaturesRecorded: number;
  /** Failed Authorize attempts so far (sam.proto Limits.max_authorize_attempts). */
  authorizeFailures: number;
  authorizedAt: Date | undefined;
  updatedAt: Date;
}

export interface DtbsrEntry {
  /** Position in the ordered list, from 0. */
  index: number;
  hash: Uint8Array;
  /** Claimed (and counted in signaturesCreated): by a request that may still be signing it, or recorded. */
  signed: boolean;
  /** The signature recorded by {@link Transactions.recordSignatures}; undefined while unsigned or claimed. */
  signature: Uint8Array | undefined;
  /**
   * The MAC the SAM computed over (transaction, index, hash) when the entry was uploaded, with a
   * key derived in the crypto module; stored exactly. Undefined only for rows written before it existed.
   */
  mac: Uint8Array | undefined;
}

export type DtbsrRefusal =
  | "TRANSACTION_NOT_FOUND"
  /** Not in a state that allows it (e.g. not PENDING, upload already complete, not AUTHORIZED). */
  | "TRANSACTION_STATE"
  | "EXPIRED"
  /** appendDtbsr: startIndex is not the current hashCount (a retried or out-of-order chunk). */
  | "INVALID_REQUEST"
  /** The batch would take signaturesCreated above numSignatures (T-2.2.1.6). */
  | "SIGNATURE_COUNT_EXCEEDED"
  /** A hash not in the list, or in it fewer times than asked, or an index already signed (T-2.2.1.6). */
  | "HASH_NOT_AUTHORIZED"
  /**
   * The SAD token named by `consumeToken` could not be consumed (unknown, consumed, revoked or
   * expired), or the token named by `retryToken` holds no claim that may be taken over: nothing
   * was consumed or claimed. The caller reads the token to tell a replay from the rest.
   */
  | "SAD_TOKEN";

export type AppendDtbsrResult =
  | { ok: true; hashCount: number }
  | { ok: false; reason: DtbsrRefusal; hashCount?: number };

/**
 * Who claims DTBS/R entries (issue 17, T-2.2.1.6). A claim is held until its lease expires; the
 * expiry is computed inside the store from the time source every node shares (PostgreSQL: the
 * database server's clock; SQLite: the local clock of the one machine that opens the file), never
 * from a caller's clock. A claimed entry without a recorded signature can be claimed again once its
 * lease has expired, or at once by a later boot of the node that holds it (its earlier boot crashed
 * or stopped: nothing of it is still signing). Recording needs the current claim
 * ({@link Transactions.recordSignatures}), so of two requests that both signed one entry exactly one
 * records, and only a recorded signature is released: no DTBS/R ever has more than one signature released.
 */
export interface ClaimHolder {
  /** Fresh for each call (SignHash) or each claimed range (SignStream); recording must name it. */
  claimId: string;
  /** The SAM node that claims, and its boot (fresh at every start of the process). */
  nodeId: string;
  bootId: string;
  /** How long the claim is held, from the store's clock, in ms (at least 1). */
  leaseMs: number;
}

export type MarkSignedResult =
  | {
      ok: true;
      /** The list index claimed for each requested hash, in request order (ranges: ascending). */
      indices: number[];
      /** The hash of each claimed entry, in the order of `indices`. */
      hashes: Uint8Array[];
      /** The stored MAC of each claimed entry ({@link DtbsrEntry.mac}), in the order of `indices`. */
      macs: (Uint8Array | undefined)[];
      /** Counted claims after this one: entries taken over from an expired claim are not counted again (T-2.2.1.6). */
      signaturesCreated: number;
      /** Of `indices`, how many were taken over from an expired or released claim (already counted). */
      reclaimed: number;
      /** Recorded signatures of the transaction ({@link TransactionRecord.signaturesRecorded}), read in the same atomic step. */
      signaturesRecorded: number;
      /**
       * When `reclaimed` > 0: the entries claimed and unrecorded before this claim, counted over the
       * whole list. Never more than signaturesCreated (before) - signaturesRecorded, unless a row was
       * edited (an entry's signature removed to sign it again): the caller refuses that (issue 14).
       */
      unrecordedBefore: number;
      /** COMPLETED when this batch used up numSignatures. */
      state: TransactionState;
      /**
       * `retryToken` only, when the token's claim was already recorded (the call completed but its
       * response was lost): the recorded signatures, in the order of `indices`; nothing was claimed.
       * They are the same signatures, so sending them again releases no second one.
       */
      signatures?: Uint8Array[];
    }
  | {
      ok: false;
      reason: DtbsrRefusal;
      /** For HASH_NOT_AUTHORIZED: the position in the request (or the list index, for ranges). */
      index?: number;
    };

export interface RecordSignaturesResult {
  /** The indices written: those whose current claim is the caller's and had no signature yet. */
  recorded: number[];
  /** The transaction's recorded signatures after this write. */
  signaturesRecorded: number;
}

/**
 * The transaction store. Invariant (T-2.2.1.6, issue 17): no DTBS/R ever has more than one signature
 * released. An entry is claimed (counted, at most numSignatures) before the crypto module signs it,
 * and its signature is released only after {@link Transactions.recordSignatures} wrote it under the
 * caller's current claim; a claim lost to a crash is taken over by a later claim, never counted twice.
 */
export interface Transactions {
  /** Stores a PENDING transaction with an empty DTBS/R list. Throws {@link RecordExistsError} if the id is taken. */
  createTransaction(tx: NewTransaction): Promise<void>;
  getTransaction(id: string): Promise<TransactionRecord | undefined>;
  /**
   * Appends one chunk of DTBS/R hashes at `startIndex`, which must equal the current hashCount
   * (so chunks are ordered and a retried chunk is refused, with the current hashCount). Only
   * while PENDING, unexpired and the upload is not complete. At most {@link maxPageSize} hashes.
   */
  appendDtbsr(req: { transactionId: string; startIndex: number; hashes: readonly Uint8Array[]; macs: readonly Uint8Array[]; now: Date }): Promise<AppendDtbsrResult>;
  /**
   * Freezes the list: compare-and-set on hashCount (the caller saw exactly this many hashes)
   * while PENDING, unexpired and not yet complete; stores the DTBS/R digest and the challenge's
   * hash in the same atomic update. False otherwise, and also when the transaction already holds
   * a different challenge hash (one given at creation is never replaced).
   */
  completeDtbsrUpload(req: { transactionId: string; hashCount: number; digest: Uint8Array; challengeHash: string; now: Date }): Promise<boolean>;
  /**
   * For each hash, whether the list holds an unsigned entry with that value: SignHash's read-only
   * pre-check, by index (never a scan of the list). At most {@link maxPageSize} hashes.
   */
  hasUnsignedEntries(req: { transactionId: string; hashes: readonly Uint8Array[] }): Promise<boolean[]>;
  /** Up to `limit` entries from `fromIndex`, in list order (bounded memory: read page by page). */
  readDtbsr(req: { transactionId: string; fromIndex: number; limit: number }): Promise<DtbsrEntry[]>;
  /**
   * Compare-and-set of the state: moves `id` from one of `from` to `to` and returns true, or
   * returns false when the state was not one of `from`. Allowed edges: PENDING -> AUTHORIZED
   * (also requires a complete upload and an unexpired transaction), PENDING|AUTHORIZED ->
   * CANCELLED|REVOKED, AUTHORIZED -> COMPLETED. Any other edge is a RangeError. The move to
   * AUTHORIZED stores `authorization` in the same update (required for it, refused for any other).
   */
  transitionTransaction(req: { id: string; from: readonly TransactionState[]; to: TransactionState; now: Date; authorization?: SealedAuthorization }): Promise<boolean>;
  /**
   * T-2.1.2.2 (RevokeDevice, ResetFactors): moves every PENDING or AUTHORIZED transaction
   * of the signer to REVOKED and revokes their unconsumed SAD tokens, atomically; returns their ids.
   */
  revokeSignerTransactions(req: { signerId: string; now: Date }): Promise<string[]>;
  /**
   * Claims list entries for `hashes` (SignHash) under `claim`, atomically and all or nothing: the
   * transaction must be AUTHORIZED and unexpired; signaturesCreated + hashes.length must not exceed
   * numSignatures; each hash takes the lowest unsigned entry with that value, so a hash is never
   * claimed more often than it appears. Reaching numSignatures moves the transaction to COMPLETED.
   * Call it before the crypto module signs.
   *
   * With `consumeToken` (issue 17 item 2): that SAD token (hash) is consumed in the same atomic step
   * (unconsumed, unrevoked, unexpired at `now`) and remembers this claim; otherwise SAD_TOKEN and
   * nothing changes. So of concurrent presentations of one token exactly one consumes and claims.
   *
   * With `retryToken` instead (a SignHash retried after a crash): that token must be consumed and
   * unrevoked, and the claim it remembers must hold exactly `hashes` (the same request) and be
   * expired or held by an earlier boot of `claim.nodeId` (never a call still under way). If none
   * of them is recorded, the entries are taken over by `claim` (not counted again) and the token
   * remembers the new claim; if all of them are recorded, their signatures are returned
   * (`signatures`) and nothing changes.
   * SAD_TOKEN otherwise. The transaction may then be AUTHORIZED or COMPLETED (not expired).
   */
  markHashesSigned(req: { transactionId: string; hashes: readonly Uint8Array[]; now: Date; claim: ClaimHolder; consumeToken?: string; retryToken?: string }): Promise<MarkSignedResult>;
  /**
   * Counts one failed Authorize of a sealed PENDING transaction, atomically; the failure that
   * reaches `maxFailures` moves it to FAILED (sam.proto Limits.max_authorize_attempts). Undefined
   * when the transaction is not PENDING (e.g. authorized or failed meanwhile).
   */
  recordAuthorizeFailure(req: { id: string; maxFailures: number; now: Date }): Promise<{ failures: number; state: TransactionState } | undefined>;
  /**
   * Claims, under `claim`, every claimable entry of [fromIndex, fromIndex + count) (SignStream):
   * unsigned entries (counted; signaturesCreated must stay within numSignatures, else
   * SIGNATURE_COUNT_EXCEEDED and nothing is claimed) and claimed entries without a signature whose
   * claim expired or belongs to an earlier boot of `claim.nodeId` (taken over, not counted again).
   * Recorded entries and entries under another live claim are left out (possibly every entry: then
   * `indices` is empty). The range must lie in the list (HASH_NOT_AUTHORIZED otherwise). The
   * transaction must be AUTHORIZED, or COMPLETED when only take-overs are claimed; unexpired.
   * With `whileTokenUnused`, only while that SAD token (hash) is neither consumed nor revoked, in
   * the same atomic step (TRANSACTION_STATE otherwise): a stream resumed with one of its tokens
   * claims nothing more. With `consumeToken`, that token is consumed in the same atomic step (as
   * for markHashesSigned): the start of a stream consumes its token and claims its first range at once.
   */
  markRangeSigned(req: { transactionId: string; fromIndex: number; count: number; now: Date; claim: ClaimHolder; whileTokenUnused?: string; consumeToken?: string }): Promise<MarkSignedResult>;
  /**
   * Records signatures, conditionally on the claim: only entries whose current claim is `claimId`
   * and that hold no signature yet are written (a recorded signature is never replaced; an entry
   * taken over by another claim is not written). Whatever the transaction's state (a claim made
   * before a revocation still records). Returns the indices written; only those signatures may be
   * released. At most {@link maxPageSize} entries.
   */
  recordSignatures(req: { transactionId: string; claimId: string; signatures: readonly { index: number; signature: Uint8Array }[] }): Promise<RecordSignaturesResult>;
}

// ---------------------------------------------------------------------------------------------
// One-time objects
// ---------------------------------------------------------------------------------------------

/** What a challenge (or admin nonce) was issued for; consumption must name the same purpose. */
export type ChallengePurpose = "transaction" | "activation" | "signer-request" | "admin-nonce";

export interface NewChallenge {
  /** Hash of the challenge value; the value itself is not stored. */
  hash: string;
  purpose: ChallengePurpose;
  /** What it is bound to: a transaction id, signer id, privileged user id... */
  subject: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface ChallengeRecord extends NewChallenge {
  consumedAt: Date | undefined;
}

export interface NewSadToken {
  /** Hash of the token; the token itself is not stored. */
  hash: string;
  transactionId: string;
  /** 0 for the token issued at Authorize, then + 1 for each rotation. */
  generation: number;
  /** Hash of the token this one replaces (the rotation chain); undefined for generation 0. */
  previousHash: string | undefined;
  /**
   * A SignStream's token: the lowest start_index it may resume from (the stream's own start), so
   * that the index written in a resume token cannot be lowered by the client. 0 otherwise.
   */
  minIndex?: number | undefined;
  issuedAt: Date;
  expiresAt: Date;
  /** The SAM's MAC over every field above, with the transaction's module-derived key; stored exactly. */
  mac: Uint8Array;
}

export interface SadTokenRecord extends Omit<NewSadToken, "mac"> {
  /** Undefined only for rows written before it existed (refused by the SAM). */
  mac: Uint8Array | undefined;
  consumedAt: Date | undefined;
  revokedAt: Date | undefined;
}

export interface NewActivationCode {
  /** Public id the signer's device presents with the code (so wrong guesses can be counted). */
  id: string;
  signerId: string;
  /** Hash of the code; the code itself is not stored. */
  codeHash: string;
  attemptsLeft: number;
  createdAt: Date;
  expiresAt: Date;
}

export interface ActivationCodeRecord extends NewActivationCode {
  consumedAt: Date | undefined;
  revokedAt: Date | undefined;
}

export type ActivationAttempt =
  /** The code matched: consumed now, by this caller only. */
  | { outcome: "accepted"; code: ActivationCodeRecord }
  /** The code did not match; one attempt was used up. */
  | { outcome: "rejected"; attemptsLeft: number }
  /** Unknown id, expired, already used, revoked or out of attempts. */
  | { outcome: "unavailable" };

export interface PurgeCounts {
  challenges: number;
  sadTokens: number;
  activationCodes: number;
  jtis: number;
  transactions: number;
}

export interface OneTimeObjects {
  /**
   * Stores a challenge; true. With `limit`: false, and nothing stored, when its subject already
   * holds `maxOpen` unconsumed, unexpired challenges of this purpose (counted and inserted
   * atomically: concurrent callers never exceed the limit). Throws {@link RecordExistsError} if the
   * hash exists.
   */
  issueChallenge(challenge: NewChallenge, limit?: { maxOpen: number; now: Date }): Promise<boolean>;
  /** Returns the challenge to exactly one caller while unconsumed and unexpired; undefined to every other (T-2.2.1.3). */
  consumeChallenge(req: { hash: string; purpose: ChallengePurpose; now: Date }): Promise<ChallengeRecord | undefined>;

  /** Throws {@link RecordExistsError} if the hash exists or the previous token was already rotated. */
  issueSadToken(token: NewSadToken): Promise<void>;
  /**
   * Returns the token to exactly one caller while unconsumed, unrevoked and unexpired; undefined
   * to every other (T-2.2.1.3).
   * @example
   * const token = await store.consumeSadToken({ hash, now });        // before the crypto module is touched
   * if (!token) {
   *   const seen = await store.findSadToken(hash);
   *   if (seen?.consumedAt) await revokeTransaction(seen.transactionId); // reuse detection
   *   throw new SadReplayedError();
   * }
   */
  consumeSadToken(req: { hash: string; now: Date }): Promise<SadTokenRecord | undefined>;
  /** After a failed consume: a token found with consumedAt set is a replay (revoke its transaction). */
  findSadToken(hash: string): Promise<SadTokenRecord | undefined>;
  /** Revokes every unconsumed token of the transaction; returns how many. */
  revokeSadTokens(req: { transactionId: string; now: Date }): Promise<number>;

  /** Throws {@link RecordExistsError} if the id exists. */
  issueActivationCode(code: NewActivationCode): Promise<void>;
  /**
   * One activation attempt, atomically: a matching code is consumed (exactly one caller gets
   * "accepted"); a wrong one uses up one attempt (attempts never go below 0 and each value is
   * reported to exactly one caller).
   */
  attemptActivationCode(req: { id: string; codeHash: string; now: Date }): Promise<ActivationAttempt>;
  /** Revokes the signer's unconsumed codes (e.g. before a reset issues a new one); returns how many. */
  revokeActivationCodes(req: { signerId: string; now: Date }): Promise<number>;

  /**
   * Records the use of a jti (or any once-only key the caller builds, e.g. issuer + jti). Returns
   * true to exactly one caller; false if the key was used before and has not expired (T-2.2.1.3).
   */
  useJti(req: { key: string; expiresAt: Date; now: Date }): Promise<boolean>;

  /**
   * Deletes one-time objects and transactions (with their DTBS/R lists and SAD tokens) whose
   * expiresAt is at or before `before`. Pass `now` minus a retention period to keep them longer.
   */
  purgeExpired(before: Date): Promise<PurgeCounts>;
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

export interface AuditRecord {
  /** The SAM node that wrote it; each node has its own chain. */
  nodeId: string;
  /** 1, 2, 3... per node, without gaps. */
  sequence: number;
  time: Date;
  /** Past-tense event name, e.g. "signature.created". */
  event: string;
  body: string;
  /** Hash of the previous record of this node (not checked for sequence 1). */
  prevHash: Uint8Array;
  hash: Uint8Array;
}

/** A signed statement about the head of a node's chain at `sequence`. */
export interface AuditCheckpoint {
  nodeId: string;
  sequence: number;
  time: Date;
  /** Canonical JSON of what was signed (head hash, sequence, time, key id...). */
  body: string;
  signature: Uint8Array;
}

/** Append-only: there is no method to change or delete an audit record or checkpoint. */
export interface AuditRecords {
  /**
   * Appends the next record of its node: sequence must be the latest + 1 (1 for a new node) and
   * prevHash the latest record's hash; otherwise {@link AuditChainError} (R-3.2.2.4).
   */
  appendAuditRecord(record: AuditRecord): Promise<void>;
  /**
   * Appends consecutive records of one node in one atomic step, all or none, by the rules of
   * {@link appendAuditRecord} (the first links to the latest, each next one to the one before).
   * One commit for a batch: SignStream audits every signature. 1 to {@link maxPageSize} records.
   */
  appendAuditRecords(records: readonly AuditRecord[]): Promise<void>;
  /** Records of one node in sequence order, from `fromSequence`, at most `limit`. */
  readAuditRecords(req: { nodeId: string; fromSequence: number; limit: number }): Promise<AuditRecord[]>;
  /**
   * Records of one node with this event name (e.g. "record.versioned"), in sequence order, from
   * `fromSequence`, at most `limit`. Served by an index on (node, event, sequence), so a node
   * rebuilds its rollback heads at start without reading the whole chain (integrity/ROLLBACK.md).
   */
  readAuditRecordsByEvent(req: { nodeId: string; event: string; fromSequence: number; limit: number }): Promise<AuditRecord[]>;
  latestAuditRecord(nodeId: string): Promise<AuditRecord | undefined>;
  /** Every node that has written an audit record, sorted. */
  listAuditNodes(): Promise<string[]>;
  /** Throws {@link AuditChainError} if the node has a checkpoint at this sequence already. */
  appendAuditCheckpoint(checkpoint: AuditCheckpoint): Promise<void>;
  latestAuditCheckpoint(nodeId: string): Promise<AuditCheckpoint | undefined>;
  readAuditCheckpoints(req: { nodeId: string; fromSequence: number; limit: number }): Promise<AuditCheckpoint[]>;
}

// ---------------------------------------------------------------------------------------------
// Pending approvals (dual control)
// ---------------------------------------------------------------------------------------------

/**
 * PENDING -> APPROVED -> EXECUTED | FAILED, or PENDING -> REJECTED | EXPIRED. APPROVED is the
 * store's intermediate state between the approval and the outcome of performing the request (the
 * admin API reports only PENDING, EXECUTED, FAILED, REJECTED and EXPIRED). Every other state is final.
 */
export type PendingApprovalState = "PENDING" | "APPROVED" | "EXECUTED" | "FAILED" | "REJECTED" | "EXPIRED";

/**
 * A request under dual control (R-3.2.1.6): a guarded admin RPC stored until a second security
 * officer approves or rejects it, or it expires.
 *
 * Sealed like a {@link SealedRecord}: the caller seals every field but `seal` (RFC 8785 canonical
 * JSON, `kind` included for domain separation) and the store persists and returns each field
 * exactly. So that the record canonicalizes as JSON, the request and its digest are base64url
 * STRINGS (RFC 4648 section 5, no padding), not Uint8Array; dates canonicalize as ISO 8601 with
 * milliseconds, which the store keeps exactly.
 *
 * `version` follows the state: 1 while PENDING, 2 once decided (APPROVED, REJECTED, EXPIRED), 3
 * once completed (EXECUTED, FAILED). Each transition stores the version the caller sealed with:
 * the previous version + 1.
 */
export interface PendingApprovalRecord {
  kind: "pending-approval";
  /** Server-assigned, opaque printable ASCII; also the listing order (use time-ordered ids for newest first). */
  id: string;
  version: number;
  /** Full RPC path of the guarded request, e.g. "/inkan.admin.v1.PolicyService/UpdateSecurityPolicy". */
  method: string;
  /** base64url(SHA-256(request bytes)): 43 characters. */
  requestDigest: string;
  /** base64url of the serialized request message exactly as received; opaque to the store. */
  request: string;
  /** User id of the security officer who made the request. */
  requestedBy: string;
  requestedAt: Date;
  expiresAt: Date;
  state: PendingApprovalState;
  /** Who approved or rejected it (the requester, if withdrawn); undefined while PENDING and once EXPIRED. */
  decidedBy: string | undefined;
  /** When it was approved or rejected; undefined while PENDING and once EXPIRED. */
  decidedAt: Date | undefined;
  /** Canonical JSON of the rest (comment, result, error...), produced by the caller; opaque to the store. */
  body: string;
  seal: Uint8Array;
}

/** A new pending approval: the record exactly as the caller sealed it and as it will be read back. */
export type NewPendingApproval = Omit<PendingApprovalRecord, "state" | "version" | "decidedBy" | "decidedAt"> & {
  state: "PENDING";
  version: 1;
  decidedBy?: undefined;
  decidedAt?: undefined;
};

/** What a decision sets: who and when for an approval or rejection, nobody for an expiry. */
export type PendingApprovalDecision =
  | { to: "APPROVED" | "REJECTED"; decidedBy: string; decidedAt: Date }
  | { to: "EXPIRED"; decidedBy?: undefined; decidedAt?: undefined };

export type DecidePendingApproval = PendingApprovalDecision & {
  id: string;
  from: "PENDING";
  /** The body of the decided record (e.g. with the decision comment). */
  body: string;
  /** The seal of the decided record: state `to`, version + 1, decidedBy, decidedAt and body. */
  seal: Uint8Array;
  now: Date;
};

export interface CompletePendingApproval {
  id: string;
  from: "APPROVED";
  to: "EXECUTED" | "FAILED";
  /** The body of the completed record, holding the result or the error; opaque to the store. */
  body: string;
  /** The seal of the completed record: state `to`, version + 1 and body; the rest unchanged. */
  seal: Uint8Array;
  now: Date;
}

export interface PendingApprovalQuery {
  /**
   * Only records in this state, with expiry applied at `now`: PENDING means PENDING and unexpired;
   * EXPIRED also matches records still stored as PENDING whose expiresAt has passed (they keep
   * state PENDING until the caller marks them EXPIRED: the store never rewrites a sealed record).
   * Undefined: every record.
   */
  state?: PendingApprovalState | undefined;
  /** Only records made by this user. */
  requestedBy?: string | undefined;
  /** The cursor: the last id of the previous page. */
  after?: string | undefined;
  /** Id order (default "asc"); "desc" lists newest first when ids are time-ordered. */
  order?: "asc" | "desc" | undefined;
  /** 1 to {@link maxPageSize}. */
  limit: number;
  now: Date;
}

/**
 * Dual control (R-3.2.1.6). The store keeps at most one PENDING record per (method, requestDigest,
 * requestedBy), so sending the same request again while it is pending finds the first one
 * instead of opening a second. Decisions are one atomic conditional update each: under any
 * concurrency exactly one caller gets the updated record, every other gets undefined.
 *
 * @example
 * const live = await store.findPendingApproval({ method, requestDigest, requestedBy, now });
 * if (live) return approvalRequired(live);                          // the same request, still pending
 * await store.createPendingApproval(await sealer.seal(newRecord));  // RecordExistsError: see below
 * // later, by a second security officer:
 * const approved = await store.decidePendingApproval({ id, from: "PENDING", to: "APPROVED", decidedBy, decidedAt: now, body, seal, now });
 * if (!approved) throw alreadyDecidedOrExpired();                   // lost the race, or too late
 * const outcome = await perform(approved);
 * await store.completePendingApproval({ id, from: "APPROVED", to: outcome.ok ? "EXECUTED" : "FAILED", body, seal, now });
 */
export interface PendingApprovals {
  /**
   * Stores a new PENDING record (version 1, undecided). Throws {@link RecordExistsError} with
   * field "id" if the id is taken, or field "requestDigest" if a record with the same method,
   * requestDigest and requestedBy is PENDING. That record is either live (findPendingApproval
   * returns it) or expired but not yet marked EXPIRED (listPendingApprovals with state EXPIRED
   * and requestedBy returns it): mark it EXPIRED, then create again.
   */
  createPendingApproval(p: NewPendingApproval): Promise<void>;
  getPendingApproval(id: string): Promise<PendingApprovalRecord | undefined>;
  /** The PENDING, unexpired record for this request of this requester, if any. */
  findPendingApproval(req: { method: string; requestDigest: string; requestedBy: string; now: Date }): Promise<PendingApprovalRecord | undefined>;
  /** Records in id order, page by page. */
  listPendingApprovals(query: PendingApprovalQuery): Promise<Page<PendingApprovalRecord>>;
  /**
   * PENDING -> APPROVED | REJECTED while unexpired (expiresAt > now), PENDING -> EXPIRED once
   * expired (expiresAt <= now): one atomic compare-and-set that stores the new state, decidedBy,
   * decidedAt, body and seal and bumps the version. Returns the updated record to exactly one
   * caller; undefined when the record is unknown, no longer PENDING, or on the wrong side of its
   * expiry. Any other edge is a RangeError.
   */
  decidePendingApproval(req: DecidePendingApproval): Promise<PendingApprovalRecord | undefined>;
  /**
   * APPROVED -> EXECUTED | FAILED: the same atomic compare-and-set, recording the outcome (the
   * body holds the result or the error). Returns the updated record to exactly one caller;
   * undefined otherwise. Any other edge is a RangeError.
   */
  completePendingApproval(req: CompletePendingApproval): Promise<PendingApprovalRecord | undefined>;
}

/** base64url without padding: the only encoding of bytes in a pending approval. */
const base64url = /^[A-Za-z0-9_-]*$/;

/** Throws RangeError unless `p` is a well-formed new pending approval (version 1, PENDING, undecided). */
export function checkNewPendingApproval(p: NewPendingApproval): void {
  const record = p as Partial<PendingApprovalRecord>;
  if (record.kind !== "pending-approval") throw new RangeError("a pending approval has kind pending-approval");
  if (record.version !== 1) throw new RangeError(`a new pending approval has version 1, got ${String(record.version)}`);
  if (record.state !== "PENDING") throw new RangeError("a new pending approval is PENDING");
  if (record.decidedBy !== undefined || record.decidedAt !== undefined) throw new RangeError("a new pending approval is undecided");
  if (p.requestDigest.length !== 43 || !base64url.test(p.requestDigest)) throw new RangeError("requestDigest must be base64url of 32 bytes");
  if (p.request.length % 4 === 1 || !base64url.test(p.request)) throw new RangeError("request must be base64url without padding");
  if (!(p.expiresAt.getTime() > p.requestedAt.getTime())) throw new RangeError("expiresAt must be after requestedAt");
}

/** Throws RangeError unless the decision is an edge out of PENDING with the fields it needs. */
export function checkPendingDecision(req: DecidePendingApproval): void {
  if (req.from !== "PENDING") throw new RangeError(`a pending approval is decided from PENDING, not ${String(req.from)}`);
  if (req.to === "APPROVED" || req.to === "REJECTED") {
    if (typeof req.decidedBy !== "string" || req.decidedBy === "" || !(req.decidedAt instanceof Date)) {
      throw new RangeError(`${req.to} needs decidedBy and decidedAt`);
    }
  } else if (req.to === "EXPIRED") {
    if (req.decidedBy !== undefined || req.decidedAt !== undefined) throw new RangeError("EXPIRED has no decidedBy or decidedAt");
  } else {
    throw new RangeError(`a pending approval cannot move from PENDING to ${String((req as { to: unknown }).to)}`);
  }
}

/** Throws RangeError unless the completion is an edge out of APPROVED. */
export function checkPendingCompletion(req: CompletePendingApproval): void {
  if (req.from !== "APPROVED") throw new RangeError(`a pending approval is completed from APPROVED, not ${String(req.from)}`);
  if (req.to !== "EXECUTED" && req.to !== "FAILED") throw new RangeError(`a pending approval cannot move from APPROVED to ${String(req.to)}`);
}

// ---------------------------------------------------------------------------------------------
// Attempt reservations
// ---------------------------------------------------------------------------------------------

/**
 * A budget of checks per subject ("signer:<id>", "txn:<id>", ...), shared by every SAM node
 * (T-2.1.2.2, T-2.2.1.3): a caller reserves one attempt BEFORE it checks a factor, reads the
 * subject's settled failure count AFTER reserving, and checks only while settled failures plus
 * the reservations held stay within the budget; it persists the outcome, then releases. So every
 * earlier check is counted either as settled or as still reserved, whatever the concurrency.
 *
 * A reservation has a lease (expiresAt) but an expired one is NOT released by the store and still
 * counts: a node that crashed mid-check may have tested a secret (fail closed). Only the caller
 * clears expired ones, at a point that resets the budget (a success, a lockout reset). Expired
 * reservations are not purged by {@link OneTimeObjects.purgeExpired}.
 *
 * @example
 * const held = await store.reserveAttempt({ subject, id, now, expiresAt });   // atomic insert + count
 * if (settledFailures + held > threshold) { await store.releaseAttempt({ subject, id }); throw refused(); }
 * const ok = await check();                                                    // the slow part
 * if (!ok) await persistFailure();                                              // before the release
 * await store.releaseAttempt({ subject, id });
 */
export interface AttemptReservations {
  /**
   * Reserves one attempt for `subject`, atomically: inserts the reservation and returns how many
   * unreleased reservations the subject holds now, this one included (expired ones still count).
   * Concurrent callers on any connection each see a distinct count. Throws
   * {@link RecordExistsError} (field "id") if the subject already holds a reservation with this
   * id; RangeError for an empty subject or id, or an expiresAt not after now.
   */
  reserveAttempt(req: { subject: string; id: string; now: Date; expiresAt: Date }): Promise<number>;
  /** Removes one reservation (after its outcome was persisted); false when the subject holds no such id. */
  releaseAttempt(req: { subject: string; id: string }): Promise<boolean>;
  /**
   * Removes the subject's reservations whose expiresAt is at or before `now` (reservations of
   * checks that never finished: a crashed node); returns how many. Call it only where the budget
   * resets (a success, a lockout reset).
   */
  releaseExpiredAttempts(req: { subject: string; now: Date }): Promise<number>;
}

/** Throws RangeError unless `req` is a well-formed reservation. */
export function checkAttemptReservation(req: { subject: string; id: string; now: Date; expiresAt: Date }): void {
  if (typeof req.subject !== "string" || req.subject === "") throw new RangeError("an attempt reservation needs a subject");
  if (typeof req.id !== "string" || req.id === "") throw new RangeError("an attempt reservation needs an id");
  if (!(req.expiresAt.getTime() > req.now.getTime())) throw new RangeError("expiresAt must be after now");
}

// ---------------------------------------------------------------------------------------------

// Restore fence (issue 22: backup and restore, integrity/ROLLBACK.md)
// ---------------------------------------------------------------------------------------------

/** What {@link RestoreFence.voidOneTimeState} ended. */
export interface VoidedCounts {
  /** Challenges (admin nonces included), SAD tokens and activation codes marked consumed. */
  oneTimeObjects: number;
  /** Transactions PENDING or AUTHORIZED set to REVOKED. */
  transactions: number;
}

/**
 * After a restore from a backup, the store may hold one-time objects and open transactions that
 * were consumed or ended after the snapshot was taken: none of them may serve again.
 */
export interface RestoreFence {
  /**
   * Marks every unconsumed challenge, SAD token and activation code consumed (at `now`), and sets
   * every PENDING or AUTHORIZED transaction to REVOKED, in one atomic write. Used jti values and attempt reservations are kept.
   * Idempotent: a second call voids nothing more.
   */
  voidOneTimeState(req: { now: Date }): Promise<VoidedCounts>;
}

// ---------------------------------------------------------------------------------------------

export interface Store extends SealedRecords, Transactions, OneTimeObjects, AuditRecords, PendingApprovals, AttemptReservations, RestoreFence {
  /** Releases the connection; any later call fails with STORE_FAILURE. */
  close(): Promise<void>;
}

/** Throws RangeError unless `limit` is an integer in 1..maxPageSize. */
export function checkLimit(limit: number, what = "limit"): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > maxPageSize) {
    throw new RangeError(`${what} must be an integer from 1 to ${maxPageSize}, got ${limit}`);
  }
}

/** Checks a {@link ClaimHolder}: non-empty ids (at most 128 characters) and a positive, bounded lease. */
export function checkClaimHolder(claim: ClaimHolder): void {
  for (const id of [claim.claimId, claim.nodeId, claim.bootId]) {
    if (typeof id !== "string" || id.length === 0 || id.length > 128) throw new RangeError("claim ids must be 1 to 128 characters");
  }
  if (!Number.isSafeInteger(claim.leaseMs) || claim.leaseMs < 1 || claim.leaseMs > 24 * 3_600_000) throw new RangeError("leaseMs must be from 1 ms to 24 h");
}

const allowedTransitions: Record<TransactionState, readonly TransactionState[]> = {
  PENDING: ["AUTHORIZED", "CANCELLED", "REVOKED"],
  AUTHORIZED: ["COMPLETED", "CANCELLED", "REVOKED"],
  COMPLETED: [],
  CANCELLED: [],
  REVOKED: [],
  FAILED: [],
};

/** Throws RangeError unless every `from -> to` is an edge of the transaction state machine. */
export function checkTransition(from: readonly TransactionState[], to: TransactionState): void {
  if (from.length === 0) throw new RangeError("transition needs at least one source state");
  for (const f of from) {
    if (!allowedTransitions[f].includes(to)) throw new RangeError(`transaction cannot move from ${f} to ${to}`);
  }
}

/** Throws RangeError unless an authorization comes with the move to AUTHORIZED, and only with it. */
export function checkAuthorizationGiven(to: TransactionState, authorization: SealedAuthorization | undefined): void {
  if ((to === "AUTHORIZED") !== (authorization !== undefined)) throw new RangeError("a sealed authorization comes with the move to AUTHORIZED, and only with it");
  if (authorization && (typeof authorization.body !== "string" || !(authorization.seal instanceof Uint8Array))) throw new RangeError("a sealed authorization has a body and a seal");
}

/** Throws RangeError unless `next` may replace `expectedVersion`. */
export function checkNextVersion(next: number, expectedVersion: number): void {
  if (!Number.isSafeInteger(expectedVersion) || expectedVersion < 1 || next !== expectedVersion + 1) {
    throw new RangeError(`version ${next} does not follow version ${expectedVersion}`);
  }
}
