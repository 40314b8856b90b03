/**
 * The store for several SAM nodes: a MongoDB replica set through the official driver (the only
 * importer of `mongodb`).
 *
 * - Majority write concern with journaling: an acknowledged consumption survives a primary
 *   failover, so a consumed one-time object never becomes usable again (T-2.2.1.3).
 * - Every one-time object is consumed by one `findOneAndUpdate` whose filter says "not consumed and
 *   not expired": the server applies it atomically to one document, so exactly one node wins. A
 *   pending approval is decided the same way (filter: still PENDING, on the right side of expiry).
 * - Unique indexes back every uniqueness rule (ids, public-key fingerprints T-2.1.4.4, audit
 *   sequences); TTL indexes delete expired one-time objects and transactions.
 * - Multi-document changes (DTBS/R chunks, marking hashes signed) run in transactions, which need
 *   a replica set (a single-node replica set is enough for tests).
 * - Index creation is the migration: versioned, idempotent, run at open, recorded in
 *   `schemaMigrations`.
 */
import {
  Binary,
  MongoClient,
  MongoServerError,
  type ClientSession,
  type Collection,
  type Db,
  type Document,
  type Filter,
  type MongoClientOptions,
  type TransactionOptions,
} from "mongodb";
import { InkanError } from "../../errors.js";
import {
  AuditChainError,
  RecordExistsError,
  StoreFailureError,
  checkAttemptReservation,
  checkLimit,
  checkNewPendingApproval,
  checkNextVersion,
  checkPendingCompletion,
  checkPendingDecision,
  checkAuthorizationGiven,
  checkClaimHolder,
  checkTransition,
  queryableFields,
  uniqueFields,
  type ActivationAttempt,
  type ActivationCodeRecord,
  type AppendDtbsrResult,
  type AuditCheckpoint,
  type AuditRecord,
  type ChallengePurpose,
  type ClaimHolder,
  type ChallengeRecord,
  type CompletePendingApproval,
  type DecidePendingApproval,
  type DtbsrEntry,
  type DtbsrRefusal,
  type ListQuery,
  type MarkSignedResult,
  type NewActivationCode,
  type NewChallenge,
  type NewPendingApproval,
  type NewSadToken,
  type NewTransaction,
  type Page,
  type PendingApprovalQuery,
  type PendingApprovalRecord,
  type PendingApprovalState,
  type PolicyRecord,
  type PurgeCounts,
  type VoidedCounts,
  type RecordKind,
  type RecordSignaturesResult,
  type RecordOf,
  type SadTokenRecord,
  type SealedAuthorization,
  type SealedRecord,
  type Store,
  type TransactionRecord,
  type TransactionState,
  type UniqueFields,
} from "../port.js";

export interface MongoStoreOptions {
  /** A replica set (transactions need one), e.g. mongodb://h1,h2,h3/?replicaSet=rs0. */
  uri: string;
  /** Database name (default "inkan"). */
  dbName?: string;
  /** Extra driver options (TLS, credentials...); the write concern stays majority. */
  clientOptions?: MongoClientOptions;
}

/** Connects, brings the indexes up to date and returns the store. */
export async function createMongoStore(options: MongoStoreOptions): Promise<MongoStore> {
  const client = new MongoClient(options.uri, {
    ...options.clientOptions,
    writeConcern: { w: "majority", journal: true },
    // Reads go to the primary with "local" so a node always sees its own acknowledged writes (the
    // audit chain head, the latest policy version). Every decision that must hold across nodes is
    // made on the write path instead: conditional updates, unique indexes, transactions.
    readConcern: { level: "local" },
    readPreference: "primary",
    retryWrites: true, // the server applies a retried write once (it is keyed by the session's txnNumber)
  });
  try {
    await client.connect();
    const db = client.db(options.dbName ?? "inkan");
    await migrate(db);
    return new MongoStore(client, db);
  } catch (e) {
    await client.close().catch(() => undefined);
    throw e instanceof InkanError ? e : new StoreFailureError(e);
  }
}

type Bytes = Uint8Array | Binary;

interface TransactionDoc {
  _id: string;
  credentialId: string;
  signerId: string;
  sca: string;
  hashAlgorithm: string;
  numSignatures: number;
  body: string;
  state: TransactionState;
  hashCount: number;
  dtbsrDigest: Bytes | null;
  /** Hash (base64url) of the one-time challenge; null while uploading, absent on documents older than migration 3. */
  challengeHash?: string | null;
  signaturesCreated: number;
  /** Issue 17: entries with a recorded signature; absent on older documents (0). */
  signaturesRecorded?: number;
  /** Failed Authorize attempts; absent on documents older than migration 5. */
  authorizeFailures?: number;
  createdAt: Date;
  expiresAt: Date;
  authorizedAt: Date | null;
  updatedAt: Date;
  /** The sealed authorization (issue 14), set with the move to AUTHORIZED. */
  authorization?: { body: string; seal: Bytes } | null;
}

interface DtbsrDoc {
  transactionId: string;
  index: number;
  hash: Bytes;
  signed: boolean;
  /** Recorded after verification (recordSignatures); absent while unsigned or in flight. */
  signature?: Bytes;
  /** The SAM's MAC of the entry (issue 14). */
  mac?: Bytes;
  /** The transaction's expiry, so the TTL index removes the list with it. */
  expiresAt: Date;
  /** Issue 17: the current claim (request, node, boot) and its lease. */
  claimId?: string;
  claimNode?: string;
  claimBoot?: string;
  leaseUntil?: Date | null;
}

interface PolicyDoc {
  policyId: string;
  version: number;
  body: string;
  seal: Bytes;
}

interface ChallengeDoc {
  _id: string;
  purpose: ChallengePurpose;
  subject: string;
  createdAt: Date;
  expiresAt: Date;
  consumedAt: Date | null;
}

interface SadTokenDoc {
  _id: string;
  transactionId: string;
  generation: number;
  previousHash: string | null;
  /** A SignStream token's lowest start index; absent on documents older than migration 5. */
  minIndex?: number;
  /** Issue 14: the SAM's MAC of the token. */
  mac?: Bytes;
  issuedAt: Date;
  expiresAt: Date;
  consumedAt: Date | null;
  revokedAt: Date | null;
  /** Issue 17: the claim this token's consumption made (a SignHash retried after a crash takes it over). */
  claimId?: string;
}

interface ActivationCodeDoc {
  _id: string;
  signerId: string;
  codeHash: string;
  attemptsLeft: number;
  createdAt: Date;
  expiresAt: Date;
  consumedAt: Date | null;
  revokedAt: Date | null;
}

interface JtiDoc {
  _id: string;
  usedAt: Date;
  expiresAt: Date;
}

interface AuditDoc {
  nodeId: string;
  sequence: number;
  time: Date;
  event: string;
  body: string;
  prevHash: Bytes;
  hash: Bytes;
}

interface CheckpointDoc {
  nodeId: string;
  sequence: number;
  time: Date;
  body: string;
  signature: Bytes;
}

/** A sealed record: _id is its id; the queryable fields, version, body and seal sit beside it. */
interface SealedDoc extends Document {
  _id: string;
  version: number;
  body: string;
  seal: Bytes;
}

/** A pending approval (dual control): _id is its id; every field of the record sits beside it. */
interface PendingApprovalDoc {
  _id: string;
  version: number;
  method: string;
  requestDigest: string;
  request: string;
  requestedBy: string;
  requestedAt: Date;
  expiresAt: Date;
  state: PendingApprovalState;
  decidedBy: string | null;
  decidedAt: Date | null;
  body: string;
  seal: Bytes;
}

interface MigrationDoc {
  _id: number;
  name: string;
}

/**
 * One subject's attempt reservations, all in one document (_id is the subject), so a reservation
 * is pushed and counted by one atomic single-document update on any node: no transaction, and no
 * TTL (an expired reservation still counts until the domain clears it).
 */
interface AttemptsDoc {
  _id: string;
  held: { id: string; reservedAt: Date; expiresAt: Date }[];
}

const recordCollections: { readonly [K in RecordKind]: string } = {
  signer: "signers",
  factor: "factors",
  credential: "credentials",
  "privileged-user": "privilegedUsers",
  "privileged-user-key": "privilegedUserKeys",
};

const fieldsOf = (kind: RecordKind): string[] => Object.keys(queryableFields[kind]);

function toBytes(v: unknown): Uint8Array {
  if (v instanceof Binary) return new Uint8Array(v.buffer.subarray(0, v.position));
  if (v instanceof Uint8Array) return new Uint8Array(v);
  throw new TypeError("stored value is not binary data");
}
const bin = (u: Uint8Array): Binary => new Binary(u);
const hex = (u: Uint8Array): string => Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString("hex");
const orUndefined = <T>(v: T | null | undefined): T | undefined => v ?? undefined;
const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function checkDate(d: Date): Date {
  if (!Number.isFinite(d.getTime())) throw new RangeError("invalid date");
  return d;
}

/** The field a duplicate-key error (E11000) is about ("id" for _id), or undefined for other errors. */
function duplicateKey(e: unknown): string | undefined {
  if (!(e instanceof MongoServerError) || e.code !== 11000) return undefined;
  const pattern: unknown = e.keyPattern;
  const first = pattern !== null && typeof pattern === "object" ? Object.keys(pattern)[0] : undefined;
  return first === undefined || first === "_id" ? "id" : first;
}

/** Thrown inside a transaction to abort it and report a refusal instead of an error. */
class Refusal extends Error {
  constructor(readonly reason: DtbsrRefusal, readonly index?: number, readonly hashCount?: number) {
    super(reason);
  }
}

const transactionOptions: TransactionOptions = {
  readConcern: { level: "snapshot" },
  writeConcern: { w: "majority", journal: true },
  readPreference: "primary",
};

export class MongoStore implements Store {
  private closed = false;
  private readonly transactions: Collection<TransactionDoc>;
  private readonly dtbsr: Collection<DtbsrDoc>;
  private readonly policies: Collection<PolicyDoc>;
  private readonly challenges: Collection<ChallengeDoc>;
  private readonly sadTokens: Collection<SadTokenDoc>;
  private readonly activationCodes: Collection<ActivationCodeDoc>;
  private readonly jtis: Collection<JtiDoc>;
  private readonly audit: Collection<AuditDoc>;
  private readonly checkpoints: Collection<CheckpointDoc>;
  private readonly pendingApprovals: Collection<PendingApprovalDoc>;
  private readonly attempts: Collection<AttemptsDoc>;

  constructor(private readonly client: MongoClient, private readonly db: Db) {
    this.transactions = db.collection<TransactionDoc>("transactions");
    this.dtbsr = db.collection<DtbsrDoc>("dtbsr");
    this.policies = db.collection<PolicyDoc>("policyVersions");
    this.challenges = db.collection<ChallengeDoc>("challenges");
    this.sadTokens = db.collection<SadTokenDoc>("sadTokens");
    this.activationCodes = db.collection<ActivationCodeDoc>("activationCodes");
    this.jtis = db.collection<JtiDoc>("usedJtis");
    this.audit = db.collection<AuditDoc>("auditRecords");
    this.checkpoints = db.collection<CheckpointDoc>("auditCheckpoints");
    this.pendingApprovals = db.collection<PendingApprovalDoc>("pendingApprovals");
    this.attempts = db.collection<AttemptsDoc>("attemptReservations");
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client.close();
  }

  // --- plumbing --------------------------------------------------------------------------------

  /** Driver errors become STORE_FAILURE (the cause kept for the log): the caller fails closed. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreFailureError(new Error("the store is closed"));
    try {
      return await fn();
    } catch (e) {
      if (e instanceof InkanError) throw e;
      throw new StoreFailureError(e);
    }
  }

  /** Like guard, for a write that may hit a unique index: that becomes RecordExistsError. */
  private guardUnique<T>(kind: string, fn: () => Promise<T>, fieldNames: Record<string, string> = {}): Promise<T> {
    return this.guard(async () => {
      try {
        return await fn();
      } catch (e) {
        const key = duplicateKey(e);
        if (key !== undefined) throw new RecordExistsError(kind, fieldNames[key] ?? key);
        throw e;
      }
    });
  }

  /** Runs `fn` in a snapshot transaction (retried by the driver on transient errors). */
  private inTransaction<T>(fn: (session: ClientSession) => Promise<T>): Promise<T> {
    return this.client.withSession((session) => session.withTransaction(() => fn(session), transactionOptions));
  }

  private records(kind: RecordKind): Collection<SealedDoc> {
    return this.db.collection<SealedDoc>(recordCollections[kind]);
  }

  // --- sealed records --------------------------------------------------------------------------

  private recordDoc(record: SealedRecord): SealedDoc {
    const doc: SealedDoc = { _id: record.id, version: record.version, body: record.body, seal: bin(record.seal) };
    for (const f of fieldsOf(record.kind)) doc[f] = (record as unknown as Document)[f];
    return doc;
  }

  private recordFromDoc<K extends RecordKind>(kind: K, doc: SealedDoc): RecordOf<K> {
    const rec: Document = { kind, id: doc._id, version: doc.version };
    for (const f of fieldsOf(kind)) rec[f] = doc[f];
    rec.body = doc.body;
    rec.seal = toBytes(doc.seal);
    return rec as RecordOf<K>;
  }

  async createRecord(record: SealedRecord): Promise<void> {
    if (record.version !== 1) throw new RangeError(`a new record has version 1, got ${record.version}`);
    // T-2.1.4.4: the unique index on publicKeyFingerprint refuses a public key the SAM already knows.
    await this.guardUnique(record.kind, () => this.records(record.kind).insertOne(this.recordDoc(record)));
  }

  async getRecord<K extends RecordKind>(kind: K, id: string): Promise<RecordOf<K> | undefined> {
    const doc = await this.guard(() => this.records(kind).findOne({ _id: id }));
    return doc ? this.recordFromDoc(kind, doc) : undefined;
  }

  async updateRecord(record: SealedRecord, expectedVersion: number): Promise<boolean> {
    checkNextVersion(record.version, expectedVersion);
    const { _id, ...fields } = this.recordDoc(record);
    const result = await this.guardUnique(record.kind, () =>
      // compare-and-set on the version
      this.records(record.kind).updateOne({ _id, version: expectedVersion }, { $set: fields }),
    );
    return result.matchedCount === 1;
  }

  async listRecords<K extends RecordKind>(query: ListQuery<K>): Promise<Page<RecordOf<K>>> {
    checkLimit(query.limit);
    const allowed = fieldsOf(query.kind);
    const filter: Filter<SealedDoc> = {};
    for (const [field, value] of Object.entries(query.where as Document)) {
      if (value === undefined) continue;
      if (!allowed.includes(field)) throw new RangeError(`${query.kind} cannot be listed by ${field}`);
      if (typeof value !== "string") throw new RangeError(`${field} must be a string`);
      filter[field] = value;
    }
    if (query.after !== undefined) filter._id = { $gt: query.after };
    const docs = await this.guard(() =>
      this.records(query.kind).find(filter).sort({ _id: 1 }).limit(query.limit + 1).toArray(),
    );
    const more = docs.length > query.limit;
    const items = docs.slice(0, query.limit).map((d) => this.recordFromDoc(query.kind, d));
    return { items, next: more ? items[items.length - 1]?.id : undefined };
  }

  async findRecord<K extends keyof UniqueFields>(kind: K, field: UniqueFields[K], value: string): Promise<RecordOf<K> | undefined> {
    if (uniqueFields[kind] !== field) throw new RangeError(`${field} is not the unique field of ${kind}`);
    const doc = await this.guard(() => this.records(kind).findOne({ [field]: value }));
    return doc ? this.recordFromDoc(kind, doc) : undefined;
  }

  private policyFromDoc(doc: PolicyDoc): PolicyRecord {
    return { kind: "policy", id: doc.policyId, version: doc.version, body: doc.body, seal: toBytes(doc.seal) };
  }

  async appendPolicyVersion(record: PolicyRecord): Promise<boolean> {
    if (!Number.isSafeInteger(record.version) || record.version < 1) throw new RangeError(`invalid policy version ${record.version}`);
    return this.guard(async () => {
      const latest = await this.policies.findOne({ policyId: record.id }, { sort: { version: -1 }, projection: { version: 1 } });
      if (record.version !== (latest?.version ?? 0) + 1) return false; // versions follow each other, never rewritten
      try {
        await this.policies.insertOne({ policyId: record.id, version: record.version, body: record.body, seal: bin(record.seal) });
        return true;
      } catch (e) {
        if (duplicateKey(e) !== undefined) return false; // another writer appended this version first
        throw e;
      }
    });
  }

  async getPolicyVersion(id: string, version: number): Promise<PolicyRecord | undefined> {
    const doc = await this.guard(() => this.policies.findOne({ policyId: id, version }));
    return doc ? this.policyFromDoc(doc) : undefined;
  }

  async latestPolicyVersion(id: string): Promise<PolicyRecord | undefined> {
    const doc = await this.guard(() => this.policies.findOne({ policyId: id }, { sort: { version: -1 } }));
    return doc ? this.policyFromDoc(doc) : undefined;
  }

  async listPolicyVersions(id: string, afterVersion: number, limit: number): Promise<PolicyRecord[]> {
    checkLimit(limit);
    const docs = await this.guard(() =>
      this.policies.find({ policyId: id, version: { $gt: afterVersion } }).sort({ version: 1 }).limit(limit).toArray(),
    );
    return docs.map((d) => this.policyFromDoc(d));
  }

  // --- transactions ----------------------------------------------------------------------------

  private transactionFromDoc(d: TransactionDoc): TransactionRecord {
    return {
      id: d._id,
      credentialId: d.credentialId,
      signerId: d.signerId,
      sca: d.sca,
      hashAlgorithm: d.hashAlgorithm,
      numSignatures: d.numSignatures,
      body: d.body,
      createdAt: d.createdAt,
      expiresAt: d.expiresAt,
      state: d.state,
      hashCount: d.hashCount,
      dtbsrDigest: d.dtbsrDigest === null ? undefined : toBytes(d.dtbsrDigest),
      challengeHash: d.challengeHash ?? undefined,
      signaturesCreated: d.signaturesCreated,
      signaturesRecorded: d.signaturesRecorded ?? 0,
      authorizeFailures: d.authorizeFailures ?? 0,
      authorizedAt: orUndefined(d.authorizedAt),
      updatedAt: d.updatedAt,
      authorization: d.authorization ? { body: d.authorization.body, seal: toBytes(d.authorization.seal) } : undefined,
    };
  }

  async createTransaction(tx: NewTransaction): Promise<void> {
    if (!Number.isSafeInteger(tx.numSignatures) || tx.numSignatures < 1) throw new RangeError("numSignatures must be at least 1");
    const doc: TransactionDoc = {
      _id: tx.id,
      credentialId: tx.credentialId,
      signerId: tx.signerId,
      sca: tx.sca,
      hashAlgorithm: tx.hashAlgorithm,
      numSignatures: tx.numSignatures,
      body: tx.body,
      state: "PENDING",
      hashCount: 0,
      dtbsrDigest: null,
      challengeHash: tx.challengeHash ?? null,
      signaturesCreated: 0,
      createdAt: checkDate(tx.createdAt),
      expiresAt: checkDate(tx.expiresAt),
      authorizedAt: null,
      updatedAt: tx.createdAt,
    };
    await this.guardUnique("transaction", () => this.transactions.insertOne(doc));
  }

  async getTransaction(id: string): Promise<TransactionRecord | undefined> {
    const doc = await this.guard(() => this.transactions.findOne({ _id: id }));
    return doc ? this.transactionFromDoc(doc) : undefined;
  }

  async appendDtbsr(req: { transactionId: string; startIndex: number; hashes: readonly Uint8Array[]; macs: readonly Uint8Array[]; now: Date }): Promise<AppendDtbsrResult> {
    checkLimit(req.hashes.length, "hashes.length");
    if (req.macs.length !== req.hashes.length) throw new RangeError("one MAC per hash");
    const now = checkDate(req.now);
    return this.guard(async () => {
      try {
        return await this.inTransaction(async (session): Promise<AppendDtbsrResult> => {
          const tx = await this.transactions.findOne({ _id: req.transactionId }, { session });
          if (!tx) throw new Refusal("TRANSACTION_NOT_FOUND");
          if (tx.state !== "PENDING" || tx.dtbsrDigest !== null) throw new Refusal("TRANSACTION_STATE"); // frozen once complete
          if (tx.expiresAt.getTime() <= now.getTime()) throw new Refusal("EXPIRED");
          if (req.startIndex !== tx.hashCount) throw new Refusal("INVALID_REQUEST", undefined, tx.hashCount); // ordered, no gap, no overlap
          await this.dtbsr.insertMany(
            req.hashes.map((hash, i) => ({
              transactionId: req.transactionId,
              index: tx.hashCount + i,
              hash: bin(hash),
              signed: false,
              mac: bin(req.macs[i]!),
              expiresAt: tx.expiresAt,
            })),
            { session, ordered: true },
          );
          const moved = await this.transactions.updateOne(
            { _id: req.transactionId, hashCount: tx.hashCount, state: "PENDING", dtbsrDigest: null },
            { $inc: { hashCount: req.hashes.length }, $set: { updatedAt: now } },
            { session },
          );
          if (moved.matchedCount !== 1) throw new Refusal("INVALID_REQUEST");
          return { ok: true, hashCount: tx.hashCount + req.hashes.length };
        });
      } catch (e) {
        if (e instanceof Refusal) {
          return e.hashCount === undefined ? { ok: false, reason: e.reason } : { ok: false, reason: e.reason, hashCount: e.hashCount };
        }
        throw e;
      }
    });
  }

  async completeDtbsrUpload(req: { transactionId: string; hashCount: number; digest: Uint8Array; challengeHash: string; now: Date }): Promise<boolean> {
    if (typeof req.challengeHash !== "string" || req.challengeHash.length === 0) throw new RangeError("challengeHash is required");
    if (req.hashCount < 1) return false;
    const now = checkDate(req.now);
    // One document update: the list is frozen and the challenge's hash recorded together, or neither.
    // `challengeHash: null` also matches a document without the field; one given at creation is kept.
    const result = await this.guard(() =>
      this.transactions.updateOne(
        {
          _id: req.transactionId,
          state: "PENDING",
          dtbsrDigest: null,
          hashCount: req.hashCount,
          expiresAt: { $gt: now },
          $or: [{ challengeHash: null }, { challengeHash: req.challengeHash }],
        },
        { $set: { dtbsrDigest: bin(req.digest), challengeHash: req.challengeHash, updatedAt: now } },
      ),
    );
    return result.matchedCount === 1;
  }

  async hasUnsignedEntries(req: { transactionId: string; hashes: readonly Uint8Array[] }): Promise<boolean[]> {
    checkLimit(req.hashes.length, "hashes.length");
    const docs = await this.guard(() =>
      this.dtbsr.find({ transactionId: req.transactionId, hash: { $in: req.hashes.map(bin) }, signed: false }, { projection: { _id: 0, hash: 1 } }).toArray(),
    );
    const found = new Set(docs.map((d) => Buffer.from(toBytes(d.hash)).toString("hex")));
    return req.hashes.map((h) => found.has(Buffer.from(h).toString("hex")));
  }

  async readDtbsr(req: { transactionId: string; fromIndex: number; limit: number }): Promise<DtbsrEntry[]> {
    checkLimit(req.limit);
    const docs = await this.guard(() =>
      this.dtbsr
        .find({ transactionId: req.transactionId, index: { $gte: req.fromIndex } }, { projection: { _id: 0, index: 1, hash: 1, signed: 1, signature: 1, mac: 1 } })
        .sort({ index: 1 })
        .limit(req.limit)
        .toArray(),
    );
    return docs.map((d) => ({
      index: d.index,
      hash: toBytes(d.hash),
      signed: d.signed,
      signature: d.signature === undefined ? undefined : toBytes(d.signature),
      mac: d.mac === undefined ? undefined : toBytes(d.mac),
    }));
  }

  async transitionTransaction(req: { id: string; from: readonly TransactionState[]; to: TransactionState; now: Date; authorization?: SealedAuthorization }): Promise<boolean> {
    checkTransition(req.from, req.to);
    checkAuthorizationGiven(req.to, req.authorization);
    const now = checkDate(req.now);
    const filter: Filter<TransactionDoc> = { _id: req.id, state: { $in: [...req.from] } };
    const set: Partial<TransactionDoc> = { state: req.to, updatedAt: now };
    if (req.to === "AUTHORIZED") {
      // R-3.2.1.1: authorized once, only with the complete list and before expiry (compare-and-set).
      filter.dtbsrDigest = { $ne: null };
      filter.expiresAt = { $gt: now };
      set.authorizedAt = now;
      set.authorization = { body: req.authorization!.body, seal: bin(req.authorization!.seal) };
    }
    const result = await this.guard(() => this.transactions.updateOne(filter, { $set: set }));
    return result.matchedCount === 1;
  }

  async revokeSignerTransactions(req: { signerId: string; now: Date }): Promise<string[]> {
    const now = checkDate(req.now);
    return this.guard(() =>
      this.inTransaction(async (session) => {
        const open = await this.transactions.find({ signerId: req.signerId, state: { $in: ["PENDING", "AUTHORIZED"] } }, { session, projection: { _id: 1 } }).toArray();
        const ids = open.map((d) => d._id);
        if (ids.length === 0) return [];
        await this.transactions.updateMany({ _id: { $in: ids }, state: { $in: ["PENDING", "AUTHORIZED"] } }, { $set: { state: "REVOKED", updatedAt: now } }, { session });
        await this.sadTokens.updateMany({ transactionId: { $in: ids }, consumedAt: null, revokedAt: null }, { $set: { revokedAt: now } }, { session });
        return ids;
      }),
    );
  }

  /** Checks the transaction may take `count` more signatures; throws a Refusal otherwise. */
  private async checkSignable(session: ClientSession, transactionId: string, count: number, now: Date, completedToo = false): Promise<TransactionDoc> {
    const tx = await this.transactions.findOne({ _id: transactionId }, { session });
    if (!tx) throw new Refusal("TRANSACTION_NOT_FOUND");
    // T-2.2.1.2: nothing is signed without authorization; a COMPLETED one only has claims taken over.
    if (tx.state !== "AUTHORIZED" && !(completedToo && tx.state === "COMPLETED" && count === 0)) throw new Refusal("TRANSACTION_STATE");
    if (tx.expiresAt.getTime() <= now.getTime()) throw new Refusal("EXPIRED");
    if (tx.signaturesCreated + count > tx.numSignatures) throw new Refusal("SIGNATURE_COUNT_EXCEEDED"); // T-2.2.1.6
    return tx;
  }

  /** Compare-and-set of the counter, completing the transaction when the authorized number is reached. */
  private async countSignatures(session: ClientSession, tx: TransactionDoc, count: number, now: Date): Promise<{ signaturesCreated: number; state: TransactionState }> {
    const signaturesCreated = tx.signaturesCreated + count;
    const state: TransactionState = signaturesCreated >= tx.numSignatures ? "COMPLETED" : "AUTHORIZED";
    const result = await this.transactions.updateOne(
      { _id: tx._id, state: "AUTHORIZED", signaturesCreated: tx.signaturesCreated },
      { $set: { signaturesCreated, state, updatedAt: now } },
      { session },
    );
    if (result.matchedCount !== 1) throw new Refusal("SIGNATURE_COUNT_EXCEEDED"); // T-2.2.1.6: the counter moved under us
    return { signaturesCreated, state };
  }

  /** Issue 17 item 2: consumes the SAD token in the claim's own transaction, remembering the claim. */
  private async consumeForClaim(session: ClientSession, transactionId: string, hash: string, claimId: string, now: Date): Promise<void> {
    const result = await this.sadTokens.updateOne(
      { _id: hash, transactionId, consumedAt: null, revokedAt: null, expiresAt: { $gt: now } },
      { $set: { consumedAt: now, claimId } },
      { session },
    );
    if (result.modifiedCount !== 1) throw new Refusal("SAD_TOKEN"); // T-2.2.1.3
  }

  /** Issue 17: unsigned, or claimed, unrecorded and free (lease expired, or an earlier boot of this node). */
  private static claimable(claim: ClaimHolder, clock: Date): Filter<DtbsrDoc> {
    return {
      $or: [
        { signed: false },
        { signature: { $exists: false }, $or: [{ leaseUntil: { $exists: false } }, { leaseUntil: null }, { leaseUntil: { $lte: clock } }, { claimNode: claim.nodeId, claimBoot: { $ne: claim.bootId } }] },
      ],
    };
  }

  /** The claim's fields; the lease from this node's clock (the MongoDB adapter has no shared clock read: one node per database). */
  private static claimFields(claim: ClaimHolder): Partial<DtbsrDoc> {
    return { claimId: claim.claimId, claimNode: claim.nodeId, claimBoot: claim.bootId, leaseUntil: new Date(Date.now() + claim.leaseMs) };
  }

  private async markResult(fn: (session: ClientSession) => Promise<MarkSignedResult>): Promise<MarkSignedResult> {
    return this.guard(async () => {
      try {
        return await this.inTransaction(fn);
      } catch (e) {
        if (e instanceof Refusal) return e.index === undefined ? { ok: false, reason: e.reason } : { ok: false, reason: e.reason, index: e.index };
        throw e;
      }
    });
  }

  async markHashesSigned(req: { transactionId: string; hashes: readonly Uint8Array[]; now: Date; claim: ClaimHolder; consumeToken?: string; retryToken?: string }): Promise<MarkSignedResult> {
    checkLimit(req.hashes.length, "hashes.length");
    checkClaimHolder(req.claim);
    if (req.consumeToken !== undefined && req.retryToken !== undefined) throw new RangeError("consumeToken or retryToken, not both");
    const now = checkDate(req.now);
    if (req.retryToken !== undefined) return this.markResult((session) => this.retakeHashes(session, req.transactionId, req.hashes, req.retryToken!, req.claim, now));
    return this.markResult(async (session) => {
      const tx = await this.checkSignable(session, req.transactionId, req.hashes.length, now);
      if (req.consumeToken !== undefined) await this.consumeForClaim(session, req.transactionId, req.consumeToken, req.claim.claimId, now);
      const wanted = new Map<string, number>();
      const distinct: Uint8Array[] = [];
      for (const h of req.hashes) {
        const key = hex(h);
        if (!wanted.has(key)) distinct.push(h);
        wanted.set(key, (wanted.get(key) ?? 0) + 1);
      }
      // T-2.2.1.6: each hash takes the lowest unsigned entries with its value, never more than it appears.
      const claimed = new Map<string, number[]>();
      const macOf = new Map<number, Uint8Array | undefined>();
      let missing = req.hashes.length;
      const cursor = this.dtbsr
        .find({ transactionId: req.transactionId, hash: { $in: distinct.map(bin) }, signed: false }, { session, projection: { _id: 0, index: 1, hash: 1, mac: 1 } })
        .sort({ index: 1 });
      for await (const doc of cursor) {
        const key = hex(toBytes(doc.hash));
        const list = claimed.get(key) ?? [];
        if (list.length < (wanted.get(key) ?? 0)) {
          list.push(doc.index);
          macOf.set(doc.index, doc.mac === undefined ? undefined : toBytes(doc.mac));
          claimed.set(key, list);
          if (--missing === 0) break; // memory stays bounded by the batch, not by the list
        }
      }
      await cursor.close();
      const indices = req.hashes.map((h, i) => {
        const index = claimed.get(hex(h))?.shift();
        if (index === undefined) throw new Refusal("HASH_NOT_AUTHORIZED", i); // aborts the whole batch
        return index;
      });
      const marked = await this.dtbsr.updateMany(
        { transactionId: req.transactionId, index: { $in: indices }, signed: false },
        { $set: { signed: true, ...MongoStore.claimFields(req.claim) } },
        { session },
      );
      if (marked.modifiedCount !== indices.length) throw new Refusal("HASH_NOT_AUTHORIZED"); // never signed twice
      const macs = indices.map((i) => macOf.get(i));
      const counted = await this.countSignatures(session, tx, req.hashes.length, now);
      return { ok: true, indices, hashes: req.hashes.map((h) => new Uint8Array(h)), macs, reclaimed: 0, signaturesRecorded: tx.signaturesRecorded ?? 0, unrecordedBefore: 0, ...counted };
    });
  }

  /** A SignHash retried after a crash (issue 17): the consumed token's claim, expired and unrecorded, taken over whole. */
  private async retakeHashes(session: ClientSession, transactionId: string, hashes: readonly Uint8Array[], tokenHash: string, claim: ClaimHolder, now: Date): Promise<MarkSignedResult> {
    const tx = await this.checkSignable(session, transactionId, 0, now, true);
    const token = await this.sadTokens.findOne({ _id: tokenHash, transactionId }, { session });
    if (!token || token.consumedAt === null || token.revokedAt !== null || !token.claimId) throw new Refusal("SAD_TOKEN");
    const rows = await this.dtbsr.find({ transactionId, claimId: token.claimId }, { session }).sort({ index: 1 }).toArray();
    const clock = Date.now();
    const free = (d: DtbsrDoc) => !d.leaseUntil || d.leaseUntil.getTime() <= clock || (d.claimNode === claim.nodeId && d.claimBoot !== claim.bootId);
    const recorded = rows.length > 0 && rows.every((d) => d.signature !== undefined);
    if (rows.length !== hashes.length || rows.some((d) => !free(d)) || (!recorded && rows.some((d) => d.signature !== undefined))) throw new Refusal("SAD_TOKEN");
    const taken = new Set<number>();
    const order = hashes.map((h) => {
      const k = rows.findIndex((d, j) => !taken.has(j) && hex(toBytes(d.hash)) === hex(h));
      if (k < 0) throw new Refusal("SAD_TOKEN"); // not the same request
      taken.add(k);
      return rows[k]!;
    });
    if (recorded) {
      const macs = order.map((d) => (d.mac === undefined ? undefined : toBytes(d.mac)));
      return { ok: true, indices: order.map((d) => d.index), hashes: order.map((d) => toBytes(d.hash)), macs, reclaimed: 0, signaturesCreated: tx.signaturesCreated, signaturesRecorded: tx.signaturesRecorded ?? 0, unrecordedBefore: 0, state: tx.state, signatures: order.map((d) => toBytes(d.signature!)) };
    }
    const unrecordedBefore = await this.dtbsr.countDocuments({ transactionId, signed: true, signature: { $exists: false } }, { session });
    await this.dtbsr.updateMany({ transactionId, claimId: token.claimId }, { $set: MongoStore.claimFields(claim) }, { session });
    await this.sadTokens.updateOne({ _id: tokenHash }, { $set: { claimId: claim.claimId } }, { session });
    return {
      ok: true,
      indices: order.map((d) => d.index),
      hashes: order.map((d) => toBytes(d.hash)),
      macs: order.map((d) => (d.mac === undefined ? undefined : toBytes(d.mac))),
      reclaimed: order.length,
      signaturesCreated: tx.signaturesCreated,
      signaturesRecorded: tx.signaturesRecorded ?? 0,
      unrecordedBefore,
      state: tx.state,
    };
  }

  async recordAuthorizeFailure(req: { id: string; maxFailures: number; now: Date }): Promise<{ failures: number; state: TransactionState } | undefined> {
    if (!Number.isSafeInteger(req.maxFailures) || req.maxFailures < 1) throw new RangeError("maxFailures must be at least 1");
    const now = checkDate(req.now);
    // One conditional update (an aggregation pipeline): concurrent failures each count once.
    const doc = await this.guard(() =>
      this.transactions.findOneAndUpdate(
        { _id: req.id, state: "PENDING", dtbsrDigest: { $ne: null } },
        [
          { $set: { authorizeFailures: { $add: [{ $ifNull: ["$authorizeFailures", 0] }, 1] }, updatedAt: now } },
          { $set: { state: { $cond: [{ $gte: ["$authorizeFailures", req.maxFailures] }, "FAILED", "$state"] } } },
        ],
        { returnDocument: "after" },
      ),
    );
    return doc ? { failures: doc.authorizeFailures ?? 0, state: doc.state } : undefined;
  }

  async markRangeSigned(req: { transactionId: string; fromIndex: number; count: number; now: Date; claim: ClaimHolder; whileTokenUnused?: string; consumeToken?: string }): Promise<MarkSignedResult> {
    checkLimit(req.count, "count");
    checkClaimHolder(req.claim);
    if (!Number.isSafeInteger(req.fromIndex) || req.fromIndex < 0) throw new RangeError("fromIndex must be a non-negative integer");
    const now = checkDate(req.now);
    const end = req.fromIndex + req.count;
    return this.markResult(async (session) => {
      const range = { transactionId: req.transactionId, index: { $gte: req.fromIndex, $lt: end } };
      const candidates = await this.dtbsr.find({ ...range, ...MongoStore.claimable(req.claim, new Date()) }, { session, projection: { _id: 0, index: 1, hash: 1, mac: 1, signed: 1 } }).sort({ index: 1 }).toArray();
      const fresh = candidates.filter((d) => !d.signed).length;
      const tx = await this.checkSignable(session, req.transactionId, fresh, now, true);
      if (req.whileTokenUnused !== undefined) {
        const token = await this.sadTokens.findOne({ _id: req.whileTokenUnused }, { session, projection: { consumedAt: 1, revokedAt: 1 } });
        if (!token || token.consumedAt !== null || token.revokedAt !== null) throw new Refusal("TRANSACTION_STATE");
      }
      if (req.consumeToken !== undefined) await this.consumeForClaim(session, req.transactionId, req.consumeToken, req.claim.claimId, now);
      if (end > tx.hashCount) throw new Refusal("HASH_NOT_AUTHORIZED", Math.max(tx.hashCount, req.fromIndex)); // outside the list
      const reclaimed = candidates.length - fresh;
      const unrecordedBefore = reclaimed > 0 ? await this.dtbsr.countDocuments({ transactionId: req.transactionId, signed: true, signature: { $exists: false } }, { session }) : 0;
      const indices = candidates.map((d) => d.index);
      const marked = await this.dtbsr.updateMany({ transactionId: req.transactionId, index: { $in: indices } }, { $set: { signed: true, ...MongoStore.claimFields(req.claim) } }, { session });
      if (marked.matchedCount !== indices.length) throw new Refusal("HASH_NOT_AUTHORIZED");
      const counted = fresh > 0 ? await this.countSignatures(session, tx, fresh, now) : { signaturesCreated: tx.signaturesCreated, state: tx.state };
      return {
        ok: true,
        indices,
        hashes: candidates.map((d) => toBytes(d.hash)),
        macs: candidates.map((d) => (d.mac === undefined ? undefined : toBytes(d.mac))),
        reclaimed,
        signaturesRecorded: tx.signaturesRecorded ?? 0,
        unrecordedBefore,
        ...counted,
      };
    });
  }

  async recordSignatures(req: { transactionId: string; claimId: string; signatures: readonly { index: number; signature: Uint8Array }[] }): Promise<RecordSignaturesResult> {
    checkLimit(req.signatures.length, "signatures.length");
    return this.guard(() =>
      this.inTransaction(async (session) => {
        // Issue 17: only under the current claim.
        const recorded: number[] = [];
        for (const s of req.signatures) {
          const r = await this.dtbsr.updateOne(
            { transactionId: req.transactionId, index: s.index, claimId: req.claimId, signed: true, signature: { $exists: false } },
            { $set: { signature: bin(s.signature) } },
            { session },
          );
          if (r.modifiedCount === 1) recorded.push(s.index);
        }
        const doc = await this.transactions.findOneAndUpdate({ _id: req.transactionId }, { $inc: { signaturesRecorded: recorded.length } }, { session, returnDocument: "after" });
        if (!doc) throw new StoreFailureError(new Error("the transaction of recorded signatures is missing"));
        return { recorded, signaturesRecorded: doc.signaturesRecorded ?? 0 };
      }),
    );
  }

  // --- one-time objects ------------------------------------------------------------------------

  private challengeFromDoc(d: ChallengeDoc): ChallengeRecord {
    return { hash: d._id, purpose: d.purpose, subject: d.subject, createdAt: d.createdAt, expiresAt: d.expiresAt, consumedAt: orUndefined(d.consumedAt) };
  }

  async issueChallenge(c: NewChallenge, limit?: { maxOpen: number; now: Date }): Promise<boolean> {
    const doc: ChallengeDoc = {
      _id: c.hash,
      purpose: c.purpose,
      subject: c.subject,
      createdAt: checkDate(c.createdAt),
      expiresAt: checkDate(c.expiresAt),
      consumedAt: null,
    };
    if (!limit) {
      await this.guardUnique("challenge", () => this.challenges.insertOne(doc), { id: "hash" });
      return true;
    }
    // Counted and inserted in one transaction: concurrent callers never exceed the limit.
    return this.guardUnique(
      "challenge",
      () =>
        this.inTransaction(async (session) => {
          const open = await this.challenges.countDocuments({ purpose: c.purpose, subject: c.subject, consumedAt: null, expiresAt: { $gt: checkDate(limit.now) } }, { session });
          if (open >= limit.maxOpen) return false;
          await this.challenges.insertOne(doc, { session });
          return true;
        }),
      { id: "hash" },
    );
  }

  async consumeChallenge(req: { hash: string; purpose: ChallengePurpose; now: Date }): Promise<ChallengeRecord | undefined> {
    const now = checkDate(req.now);
    const doc = await this.guard(() =>
      // T-2.2.1.3: one atomic conditional update; only the caller that sets consumedAt gets the document.
      this.challenges.findOneAndUpdate(
        { _id: req.hash, purpose: req.purpose, consumedAt: null, expiresAt: { $gt: now } },
        { $set: { consumedAt: now } },
        { returnDocument: "after" },
      ),
    );
    return doc ? this.challengeFromDoc(doc) : undefined;
  }

  private sadTokenFromDoc(d: SadTokenDoc): SadTokenRecord {
    return {
      hash: d._id,
      transactionId: d.transactionId,
      generation: d.generation,
      previousHash: orUndefined(d.previousHash),
      minIndex: d.minIndex ?? 0,
      mac: d.mac === undefined ? undefined : toBytes(d.mac),
      issuedAt: d.issuedAt,
      expiresAt: d.expiresAt,
      consumedAt: orUndefined(d.consumedAt),
      revokedAt: orUndefined(d.revokedAt),
    };
  }

  async issueSadToken(t: NewSadToken): Promise<void> {
    const doc: SadTokenDoc = {
      _id: t.hash,
      transactionId: t.transactionId,
      generation: t.generation,
      previousHash: t.previousHash ?? null,
      minIndex: t.minIndex ?? 0,
      mac: bin(t.mac),
      issuedAt: checkDate(t.issuedAt),
      expiresAt: checkDate(t.expiresAt),
      consumedAt: null,
      revokedAt: null,
    };
    // T-2.2.1.3: the partial unique index on previousHash lets a token be rotated at most once.
    await this.guardUnique("sad-token", () => this.sadTokens.insertOne(doc), { id: "hash" });
  }

  async consumeSadToken(req: { hash: string; now: Date }): Promise<SadTokenRecord | undefined> {
    const now = checkDate(req.now);
    const doc = await this.guard(() =>
      // T-2.2.1.3 / R-3.2.1.2: consumed before anything is signed; exactly one caller wins.
      this.sadTokens.findOneAndUpdate(
        { _id: req.hash, consumedAt: null, revokedAt: null, expiresAt: { $gt: now } },
        { $set: { consumedAt: now } },
        { returnDocument: "after" },
      ),
    );
    return doc ? this.sadTokenFromDoc(doc) : undefined;
  }

  async findSadToken(hash: string): Promise<SadTokenRecord | undefined> {
    const doc = await this.guard(() => this.sadTokens.findOne({ _id: hash }));
    return doc ? this.sadTokenFromDoc(doc) : undefined;
  }

  async revokeSadTokens(req: { transactionId: string; now: Date }): Promise<number> {
    const now = checkDate(req.now);
    const result = await this.guard(() =>
      this.sadTokens.updateMany({ transactionId: req.transactionId, consumedAt: null, revokedAt: null }, { $set: { revokedAt: now } }),
    );
    return result.modifiedCount;
  }

  private activationCodeFromDoc(d: ActivationCodeDoc): ActivationCodeRecord {
    return {
      id: d._id,
      signerId: d.signerId,
      codeHash: d.codeHash,
      attemptsLeft: d.attemptsLeft,
      createdAt: d.createdAt,
      expiresAt: d.expiresAt,
      consumedAt: orUndefined(d.consumedAt),
      revokedAt: orUndefined(d.revokedAt),
    };
  }

  async issueActivationCode(c: NewActivationCode): Promise<void> {
    if (!Number.isSafeInteger(c.attemptsLeft) || c.attemptsLeft < 1) throw new RangeError("attemptsLeft must be at least 1");
    const doc: ActivationCodeDoc = {
      _id: c.id,
      signerId: c.signerId,
      codeHash: c.codeHash,
      attemptsLeft: c.attemptsLeft,
      createdAt: checkDate(c.createdAt),
      expiresAt: checkDate(c.expiresAt),
      consumedAt: null,
      revokedAt: null,
    };
    await this.guardUnique("activation-code", () => this.activationCodes.insertOne(doc));
  }

  async attemptActivationCode(req: { id: string; codeHash: string; now: Date }): Promise<ActivationAttempt> {
    const now = checkDate(req.now);
    return this.guard(async (): Promise<ActivationAttempt> => {
      const live = { consumedAt: null, revokedAt: null, attemptsLeft: { $gt: 0 }, expiresAt: { $gt: now } };
      // R-3.1.1.2: a matching code is consumed by exactly one caller.
      const accepted = await this.activationCodes.findOneAndUpdate(
        { _id: req.id, codeHash: req.codeHash, ...live },
        { $set: { consumedAt: now } },
        { returnDocument: "after" },
      );
      if (accepted) return { outcome: "accepted", code: this.activationCodeFromDoc(accepted) };
      // T-2.1.1.1: a wrong code burns one attempt, atomically; at 0 the code is dead.
      const rejected = await this.activationCodes.findOneAndUpdate(
        { _id: req.id, codeHash: { $ne: req.codeHash }, ...live },
        { $inc: { attemptsLeft: -1 } },
        { returnDocument: "after", projection: { attemptsLeft: 1 } },
      );
      if (rejected) return { outcome: "rejected", attemptsLeft: rejected.attemptsLeft };
      return { outcome: "unavailable" };
    });
  }

  async revokeActivationCodes(req: { signerId: string; now: Date }): Promise<number> {
    const now = checkDate(req.now);
    const result = await this.guard(() =>
      this.activationCodes.updateMany({ signerId: req.signerId, consumedAt: null, revokedAt: null }, { $set: { revokedAt: now } }),
    );
    return result.modifiedCount;
  }

  async useJti(req: { key: string; expiresAt: Date; now: Date }): Promise<boolean> {
    const now = checkDate(req.now);
    const expiresAt = checkDate(req.expiresAt);
    return this.guard(async () => {
      try {
        // T-2.2.1.3: inserts the key, or takes over an expired one; an unexpired key makes the upsert hit the unique _id.
        const result = await this.jtis.updateOne(
          { _id: req.key, expiresAt: { $lte: now } },
          { $set: { usedAt: now, expiresAt } },
          { upsert: true },
        );
        return result.upsertedCount === 1 || result.modifiedCount === 1;
      } catch (e) {
        if (duplicateKey(e) !== undefined) return false;
        throw e;
      }
    });
  }

  async purgeExpired(before: Date): Promise<PurgeCounts> {
    const expired = { expiresAt: { $lte: checkDate(before) } };
    return this.guard(async () => {
      const counts: PurgeCounts = {
        challenges: (await this.challenges.deleteMany(expired)).deletedCount,
        sadTokens: (await this.sadTokens.deleteMany(expired)).deletedCount,
        activationCodes: (await this.activationCodes.deleteMany(expired)).deletedCount,
        jtis: (await this.jtis.deleteMany(expired)).deletedCount,
        transactions: (await this.transactions.deleteMany(expired)).deletedCount,
      };
      await this.dtbsr.deleteMany(expired); // entries carry their transaction's expiry
      return counts;
    });
  }

  // --- restore fence (issue 22) ------------------------------------------------------------------

  async voidOneTimeState(req: { now: Date }): Promise<VoidedCounts> {
    const now = checkDate(req.now);
    return this.guard(() =>
      this.inTransaction(async (session) => {
        const unconsumed = { consumedAt: null };
        const consumed = { $set: { consumedAt: now } };
        const objects =
          (await this.challenges.updateMany(unconsumed, consumed, { session })).modifiedCount +
          (await this.sadTokens.updateMany(unconsumed, consumed, { session })).modifiedCount +
          (await this.activationCodes.updateMany(unconsumed, consumed, { session })).modifiedCount;
        const transactions = (await this.transactions.updateMany({ state: { $in: ["PENDING", "AUTHORIZED"] } }, { $set: { state: "REVOKED", updatedAt: now } }, { session })).modifiedCount;
        return { oneTimeObjects: objects, transactions };
      }),
    );
  }

  // --- pending approvals (dual control) --------------------------------------------------------

  private pendingApprovalFromDoc(d: PendingApprovalDoc): PendingApprovalRecord {
    return {
      kind: "pending-approval",
      id: d._id,
      version: d.version,
      method: d.method,
      requestDigest: d.requestDigest,
      request: d.request,
      requestedBy: d.requestedBy,
      requestedAt: d.requestedAt,
      expiresAt: d.expiresAt,
      state: d.state,
      decidedBy: orUndefined(d.decidedBy),
      decidedAt: orUndefined(d.decidedAt),
      body: d.body,
      seal: toBytes(d.seal),
    };
  }

  async createPendingApproval(p: NewPendingApproval): Promise<void> {
    checkNewPendingApproval(p);
    const doc: PendingApprovalDoc = {
      _id: p.id,
      version: 1,
      method: p.method,
      requestDigest: p.requestDigest,
      request: p.request,
      requestedBy: p.requestedBy,
      requestedAt: checkDate(p.requestedAt),
      expiresAt: checkDate(p.expiresAt),
      state: "PENDING",
      decidedBy: null,
      decidedAt: null,
      body: p.body,
      seal: bin(p.seal),
    };
    // R-3.2.1.6: the partial unique index keeps one PENDING document per (method, digest, requester).
    await this.guardUnique("pending-approval", () => this.pendingApprovals.insertOne(doc), { method: "requestDigest" });
  }

  async getPendingApproval(id: string): Promise<PendingApprovalRecord | undefined> {
    const doc = await this.guard(() => this.pendingApprovals.findOne({ _id: id }));
    return doc ? this.pendingApprovalFromDoc(doc) : undefined;
  }

  async findPendingApproval(req: { method: string; requestDigest: string; requestedBy: string; now: Date }): Promise<PendingApprovalRecord | undefined> {
    const now = checkDate(req.now);
    const doc = await this.guard(() =>
      this.pendingApprovals.findOne({
        method: req.method,
        requestDigest: req.requestDigest,
        requestedBy: req.requestedBy,
        state: "PENDING",
        expiresAt: { $gt: now },
      }),
    );
    return doc ? this.pendingApprovalFromDoc(doc) : undefined;
  }

  async listPendingApprovals(query: PendingApprovalQuery): Promise<Page<PendingApprovalRecord>> {
    checkLimit(query.limit);
    const now = checkDate(query.now);
    const descending = query.order === "desc";
    if (query.order !== undefined && query.order !== "asc" && !descending) throw new RangeError(`invalid order ${String(query.order)}`);
    const filter: Filter<PendingApprovalDoc> = {};
    if (query.state === "PENDING") {
      filter.state = "PENDING";
      filter.expiresAt = { $gt: now };
    } else if (query.state === "EXPIRED") {
      filter.$or = [{ state: "EXPIRED" }, { state: "PENDING", expiresAt: { $lte: now } }];
    } else if (query.state !== undefined) {
      if (typeof query.state !== "string") throw new RangeError("state must be a string");
      filter.state = query.state;
    }
    if (query.requestedBy !== undefined) {
      if (typeof query.requestedBy !== "string") throw new RangeError("requestedBy must be a string");
      filter.requestedBy = query.requestedBy;
    }
    if (query.after !== undefined) filter._id = descending ? { $lt: query.after } : { $gt: query.after };
    const docs = await this.guard(() =>
      this.pendingApprovals.find(filter).sort({ _id: descending ? -1 : 1 }).limit(query.limit + 1).toArray(),
    );
    const more = docs.length > query.limit;
    const items = docs.slice(0, query.limit).map((d) => this.pendingApprovalFromDoc(d));
    return { items, next: more ? items[items.length - 1]?.id : undefined };
  }

  async decidePendingApproval(req: DecidePendingApproval): Promise<PendingApprovalRecord | undefined> {
    checkPendingDecision(req);
    const now = checkDate(req.now);
    const decidedAt = req.decidedAt === undefined ? null : checkDate(req.decidedAt);
    const doc = await this.guard(() =>
      // R-3.2.1.6: one atomic conditional update; only the caller that moves it out of PENDING gets
      // the document. Approve and reject only before expiry; expire only after it.
      this.pendingApprovals.findOneAndUpdate(
        { _id: req.id, state: req.from, expiresAt: req.to === "EXPIRED" ? { $lte: now } : { $gt: now } },
        {
          $set: {
            state: req.to,
            decidedBy: req.decidedBy ?? null,
            decidedAt,
            body: req.body,
            seal: bin(req.seal),
          },
          $inc: { version: 1 },
        },
        { returnDocument: "after" },
      ),
    );
    return doc ? this.pendingApprovalFromDoc(doc) : undefined;
  }

  async completePendingApproval(req: CompletePendingApproval): Promise<PendingApprovalRecord | undefined> {
    checkPendingCompletion(req);
    checkDate(req.now);
    const doc = await this.guard(() =>
      // R-3.2.1.6: the outcome is recorded once, by the caller that performed the approved request.
      this.pendingApprovals.findOneAndUpdate(
        { _id: req.id, state: req.from },
        { $set: { state: req.to, body: req.body, seal: bin(req.seal) }, $inc: { version: 1 } },
        { returnDocument: "after" },
      ),
    );
    return doc ? this.pendingApprovalFromDoc(doc) : undefined;
  }

  // --- audit -----------------------------------------------------------------------------------

  private auditFromDoc(d: AuditDoc): AuditRecord {
    return { nodeId: d.nodeId, sequence: d.sequence, time: d.time, event: d.event, body: d.body, prevHash: toBytes(d.prevHash), hash: toBytes(d.hash) };
  }

  private checkpointFromDoc(d: CheckpointDoc): AuditCheckpoint {
    return { nodeId: d.nodeId, sequence: d.sequence, time: d.time, body: d.body, signature: toBytes(d.signature) };
  }

  async appendAuditRecord(r: AuditRecord): Promise<void> {
    return this.appendAuditRecords([r]);
  }

  async appendAuditRecords(records: readonly AuditRecord[]): Promise<void> {
    checkLimit(records.length, "records.length");
    const first = records[0]!;
    await this.guard(() =>
      this.inTransaction(async (session) => {
        const latest = await this.audit.findOne({ nodeId: first.nodeId }, { session, sort: { sequence: -1 }, projection: { sequence: 1, hash: 1 } });
        let previous = latest && { sequence: latest.sequence, hash: toBytes(latest.hash) };
        for (const r of records) {
          // R-3.2.2.4: the chain only grows by records that each link to the one before.
          const expected = (previous?.sequence ?? 0) + 1;
          if (r.nodeId !== first.nodeId) throw new AuditChainError(r.nodeId, r.sequence, "a batch holds one node's records");
          if (r.sequence !== expected) throw new AuditChainError(r.nodeId, r.sequence, `expected sequence ${expected}`);
          if (previous && !equalBytes(r.prevHash, previous.hash)) throw new AuditChainError(r.nodeId, r.sequence, "prevHash is not the previous record's hash");
          previous = { sequence: r.sequence, hash: r.hash };
        }
        try {
          await this.audit.insertMany(
            records.map((r) => ({ nodeId: r.nodeId, sequence: r.sequence, time: checkDate(r.time), event: r.event, body: r.body, prevHash: bin(r.prevHash), hash: bin(r.hash) })),
            { session, ordered: true },
          );
        } catch (e) {
          // The unique (nodeId, sequence) index: another writer took a sequence first.
          if (duplicateKey(e) !== undefined) throw new AuditChainError(first.nodeId, first.sequence, "sequence already written");
          throw e;
        }
      }),
    );
  }

  async readAuditRecords(req: { nodeId: string; fromSequence: number; limit: number }): Promise<AuditRecord[]> {
    checkLimit(req.limit);
    const docs = await this.guard(() =>
      this.audit.find({ nodeId: req.nodeId, sequence: { $gte: req.fromSequence } }).sort({ sequence: 1 }).limit(req.limit).toArray(),
    );
    return docs.map((d) => this.auditFromDoc(d));
  }

  async readAuditRecordsByEvent(req: { nodeId: string; event: string; fromSequence: number; limit: number }): Promise<AuditRecord[]> {
    checkLimit(req.limit);
    const docs = await this.guard(() =>
      this.audit.find({ nodeId: req.nodeId, event: req.event, sequence: { $gte: req.fromSequence } }).sort({ sequence: 1 }).limit(req.limit).toArray(),
    );
    return docs.map((d) => this.auditFromDoc(d));
  }

  async latestAuditRecord(nodeId: string): Promise<AuditRecord | undefined> {
    const doc = await this.guard(() => this.audit.findOne({ nodeId }, { sort: { sequence: -1 } }));
    return doc ? this.auditFromDoc(doc) : undefined;
  }

  async listAuditNodes(): Promise<string[]> {
    const nodes = await this.guard(() => this.audit.distinct("nodeId"));
    return nodes.map(String).sort();
  }

  async appendAuditCheckpoint(c: AuditCheckpoint): Promise<void> {
    const time = checkDate(c.time);
    await this.guard(async () => {
      const latest = await this.checkpoints.findOne({ nodeId: c.nodeId }, { sort: { sequence: -1 }, projection: { sequence: 1 } });
      if (latest && c.sequence <= latest.sequence) throw new AuditChainError(c.nodeId, c.sequence, `a checkpoint at ${latest.sequence} exists`);
      if (!(await this.audit.findOne({ nodeId: c.nodeId, sequence: c.sequence }, { projection: { _id: 1 } }))) {
        throw new AuditChainError(c.nodeId, c.sequence, "no audit record at this sequence");
      }
      try {
        await this.checkpoints.insertOne({ nodeId: c.nodeId, sequence: c.sequence, time, body: c.body, signature: bin(c.signature) });
      } catch (e) {
        if (duplicateKey(e) !== undefined) throw new AuditChainError(c.nodeId, c.sequence, "checkpoint already written");
        throw e;
      }
    });
  }

  async latestAuditCheckpoint(nodeId: string): Promise<AuditCheckpoint | undefined> {
    const doc = await this.guard(() => this.checkpoints.findOne({ nodeId }, { sort: { sequence: -1 } }));
    return doc ? this.checkpointFromDoc(doc) : undefined;
  }

  async readAuditCheckpoints(req: { nodeId: string; fromSequence: number; limit: number }): Promise<AuditCheckpoint[]> {
    checkLimit(req.limit);
    const docs = await this.guard(() =>
      this.checkpoints.find({ nodeId: req.nodeId, sequence: { $gte: req.fromSequence } }).sort({ sequence: 1 }).limit(req.limit).toArray(),
    );
    return docs.map((d) => this.checkpointFromDoc(d));
  }

  // --- attempt reservations --------------------------------------------------------------------

  async reserveAttempt(req: { subject: string; id: string; now: Date; expiresAt: Date }): Promise<number> {
    checkAttemptReservation(req);
    const entry = { id: req.id, reservedAt: checkDate(req.now), expiresAt: checkDate(req.expiresAt) };
    return this.guard(async () => {
      for (let tries = 0; tries < 3; tries++) {
        try {
          // T-2.1.2.2: pushed and counted in one atomic update of the subject's document, so each
          // concurrent caller on any node sees a distinct count; expired entries count too.
          const doc = await this.attempts.findOneAndUpdate(
            { _id: req.subject, "held.id": { $ne: req.id } },
            { $push: { held: entry } },
            { upsert: true, returnDocument: "after" },
          );
          if (!doc) throw new Error("the reservation upsert returned no document");
          return doc.held.length;
        } catch (e) {
          if (duplicateKey(e) === undefined) throw e;
          // Either the id is taken, or two first reservations raced to create the document: retry.
          if ((await this.attempts.countDocuments({ _id: req.subject, "held.id": req.id })) > 0) throw new RecordExistsError("attempt-reservation", "id");
        }
      }
      throw new Error("the subject's reservation document could not be created");
    });
  }

  async releaseAttempt(req: { subject: string; id: string }): Promise<boolean> {
    return this.guard(async () => {
      const res = await this.attempts.updateOne({ _id: req.subject, "held.id": req.id }, { $pull: { held: { id: req.id } } });
      if (res.modifiedCount !== 1) return false;
      await this.attempts.deleteOne({ _id: req.subject, held: { $size: 0 } }); // atomic: only while still empty
      return true;
    });
  }

  async releaseExpiredAttempts(req: { subject: string; now: Date }): Promise<number> {
    const now = checkDate(req.now);
    return this.guard(async () => {
      const before = await this.attempts.findOneAndUpdate({ _id: req.subject }, { $pull: { held: { expiresAt: { $lte: now } } } }, { returnDocument: "before" });
      const removed = before ? before.held.filter((h) => h.expiresAt.getTime() <= now.getTime()).length : 0;
      if (removed > 0) await this.attempts.deleteOne({ _id: req.subject, held: { $size: 0 } });
      return removed;
    });
  }
}

// --- migrations: versioned index sets ------------------------------------------------------------

interface MongoMigration {
  version: number;
  name: string;
  apply(db: Db): Promise<void>;
}

const ttl = { expireAfterSeconds: 0 }; // deleted once expiresAt has passed (the TTL monitor runs about once a minute)

export const mongoMigrations: readonly MongoMigration[] = [
  {
    version: 1,
    name: "initial indexes",
    async apply(db) {
      await db.collection("signers").createIndex({ status: 1, _id: 1 });
      await db.collection("factors").createIndex({ signerId: 1, _id: 1 });
      await db.collection("credentials").createIndex({ signerId: 1, _id: 1 });
      await db.collection("credentials").createIndex({ status: 1, _id: 1 });
      // T-2.1.4.4: a public key known to the SAM cannot be added twice.
      await db.collection("credentials").createIndex({ publicKeyFingerprint: 1 }, { unique: true });
      await db.collection("privilegedUsers").createIndex({ role: 1, _id: 1 });
      await db.collection("privilegedUsers").createIndex({ certificateFingerprint: 1 }, { unique: true });
      await db.collection("privilegedUserKeys").createIndex({ userId: 1, _id: 1 });
      await db.collection("privilegedUserKeys").createIndex({ keyFingerprint: 1 }, { unique: true });
      await db.collection("policyVersions").createIndex({ policyId: 1, version: 1 }, { unique: true });

      await db.collection("transactions").createIndex({ expiresAt: 1 }, ttl);
      await db.collection("dtbsr").createIndex({ transactionId: 1, index: 1 }, { unique: true });
      await db.collection("dtbsr").createIndex({ transactionId: 1, hash: 1, signed: 1, index: 1 });
      await db.collection("dtbsr").createIndex({ expiresAt: 1 }, ttl);

      await db.collection("challenges").createIndex({ expiresAt: 1 }, ttl);
      await db.collection("sadTokens").createIndex({ transactionId: 1 });
      // T-2.2.1.3: a token is rotated at most once.
      await db.collection("sadTokens").createIndex(
        { previousHash: 1 },
        { unique: true, partialFilterExpression: { previousHash: { $type: "string" } } },
      );
      await db.collection("sadTokens").createIndex({ expiresAt: 1 }, ttl);
      await db.collection("activationCodes").createIndex({ signerId: 1 });
      await db.collection("activationCodes").createIndex({ expiresAt: 1 }, ttl);
      await db.collection("usedJtis").createIndex({ expiresAt: 1 }, ttl);

      // R-3.2.2.4: one record per (node, sequence).
      await db.collection("auditRecords").createIndex({ nodeId: 1, sequence: 1 }, { unique: true });
      await db.collection("auditCheckpoints").createIndex({ nodeId: 1, sequence: 1 }, { unique: true });
    },
  },
  {
    version: 2,
    name: "pending approvals (dual control)",
    async apply(db) {
      // R-3.2.1.6: the same request of the same requester is pending at most once. No TTL index:
      // decided and expired requests are history, kept like the audit log that refers to them.
      await db.collection("pendingApprovals").createIndex(
        { method: 1, requestDigest: 1, requestedBy: 1 },
        { unique: true, partialFilterExpression: { state: "PENDING" } },
      );
      await db.collection("pendingApprovals").createIndex({ state: 1, _id: 1 });
      await db.collection("pendingApprovals").createIndex({ requestedBy: 1, _id: 1 });
    },
  },
  {
    version: 3,
    name: "transaction challenge hash",
    async apply(db) {
      // R-3.2.2.2, T-2.2.1.3: the challenge's hash is now a field of the transaction (set at
      // creation or when the list is frozen). Transactions sealed before kept it in their body:
      // copy it. Idempotent: only documents without the field are touched.
      const transactions = db.collection<TransactionDoc>("transactions");
      const legacy = transactions.find({ challengeHash: { $exists: false } }, { projection: { _id: 1, body: 1 } });
      for await (const doc of legacy) {
        let hash: string | null = null;
        try {
          const body = JSON.parse(doc.body) as { challengeHash?: unknown };
          if (typeof body.challengeHash === "string") hash = body.challengeHash;
        } catch {
          // not JSON: no challenge hash to carry over
        }
        await transactions.updateOne({ _id: doc._id, challengeHash: { $exists: false } }, { $set: { challengeHash: hash } });
      }
    },
  },
  {
    version: 4,
    name: "open challenges by subject",
    async apply(db) {
      // auth.proto CreateRequestNonce: a user's unused nonces are counted at each issue.
      await db.collection("challenges").createIndex({ purpose: 1, subject: 1, consumedAt: 1, expiresAt: 1 });
    },
  },
  {
    version: 10,
    name: "audit records by event",
    async apply(db) {
      // Issue 14: a node reads only the "record.versioned" events of each chain at start.
      await db.collection("auditRecords").createIndex({ nodeId: 1, event: 1, sequence: 1 });
    },
  },
];

/** Applies the migrations not yet recorded; createIndex is idempotent, so nodes starting together are safe. */
async function migrate(db: Db): Promise<void> {
  const recorded = db.collection<MigrationDoc>("schemaMigrations");
  const latestKnown = mongoMigrations[mongoMigrations.length - 1]?.version ?? 0;
  const applied = (await recorded.find().sort({ _id: -1 }).limit(1).next())?._id ?? 0;
  if (applied > latestKnown) {
    throw new StoreFailureError(new Error(`the database schema is at version ${applied}, newer than this Inkan knows (${latestKnown})`));
  }
  for (const m of mongoMigrations) {
    if (m.version <= applied) continue;
    await m.apply(db);
    try {
      await recorded.updateOne({ _id: m.version }, { $setOnInsert: { name: m.name } }, { upsert: true });
    } catch (e) {
      if (duplicateKey(e) === undefined) throw e; // another node recorded it at the same moment
    }
  }
}
