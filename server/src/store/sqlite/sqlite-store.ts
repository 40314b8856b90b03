/**
 * The embedded store: one SQLite file in the data directory, through better-sqlite3 (the only
 * importer of that driver).
 *
 * - WAL journal, so readers never wait for the writer and several SAM processes can share the file.
 * - Every acknowledged commit is on the disk: a lost commit can be a consumed SAD token or
 *   challenge that becomes usable again (T-2.2.1.3) or a missing audit record (R-3.2.2.4), so
 *   durability of consumption is a security property here. Issue 20: `synchronous = NORMAL`, and
 *   no write is acknowledged before an fdatasync of the -wal file on the thread pool, started after
 *   its COMMIT, finished (wal-sync.ts argues why this is FULL's guarantee). Reads whose results
 *   leave the SAM wait for the sync of what they saw ({@link SqliteStore.durable}). A failed sync
 *   poisons the store: every later write and barrier fails with STORE_FAILURE, and close() leaves
 *   the WAL un-checkpointed for the next start's recovery.
 * - `foreign_keys = ON` (the DTBS/R list belongs to its transaction), `busy_timeout` so that
 *   writers from other processes are waited for rather than failed.
 * - Every one-time object is consumed, and every pending approval decided, by one conditional
 *   `UPDATE ... RETURNING`; multi-statement
 *   changes run in `BEGIN IMMEDIATE` transactions (the write lock is taken first, so a read never
 *   goes stale before the write that depends on it).
 *
 * better-sqlite3 is synchronous: each call blocks the event loop for one short statement or one
 * bounded transaction (DTBS/R chunks and batches are at most `maxPageSize` entries).
 * - Issue 20, group commit (group-commit.ts): every write runs in the next group, one BEGIN
 *   IMMEDIATE ... COMMIT for all writes issued in the same turn of the event loop, each in its own
 *   savepoint; its promise settles only once that COMMIT is durable. Reads run at once and see
 *   only committed state.
 */
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
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
  type RecordSignaturesResult,
  type VoidedCounts,
  type RecordKind,
  type RecordOf,
  type SadTokenRecord,
  type SealedAuthorization,
  type SealedRecord,
  type Store,
  type TransactionRecord,
  type TransactionState,
  type UniqueFields,
} from "../port.js";
import { Checkpointer, type CheckpointerOptions } from "./checkpointer.js";
import { GroupCommit, transactionRunner, type TransactionRunner } from "./group-commit.js";
import { migrations } from "./migrations.js";
import { WalSync, type SyncFn } from "./wal-sync.js";

export interface SqliteStoreOptions {
  /** The database file; created (mode 0600) if absent. See {@link sqliteStoreFile}. */
  file: string;
  /** How long a statement waits for another connection's write lock, in ms (default 10,000). */
  busyTimeoutMs?: number;
  /** Tests only: replaces the fdatasync of the -wal file (to slow it down, count it or fail it). */
  walSync?: SyncFn;
  /** Tests and benches: the checkpointer's thresholds (checkpointer.ts; defaults 100 ms, 4 MiB, 64 MiB). */
  checkpoint?: Pick<CheckpointerOptions, "intervalMs" | "passiveAtBytes" | "truncateAtBytes" | "injectFailure">;
}

/** Where the embedded store lives inside the data directory. */
export function sqliteStoreFile(dataDir: string): string {
  return join(dataDir, "store.sqlite3");
}

/** Opens (creating if needed) the SQLite store and brings its schema up to date. */
export async function createSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  return SqliteStore.open(options);
}

type Row = Record<string, unknown>;

const tables: { readonly [K in RecordKind]: string } = {
  signer: "signers",
  factor: "factors",
  credential: "credentials",
  "privileged-user": "privileged_users",
  "privileged-user-key": "privileged_user_keys",
};

const toColumn = (field: string): string => field.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
const toField = (column: string): string => column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
const fieldsOf = (kind: RecordKind): string[] => Object.keys(queryableFields[kind]);

function ms(date: Date): number {
  const t = date.getTime();
  if (!Number.isFinite(t)) throw new RangeError("invalid date");
  return t;
}
const dateOrUndefined = (v: unknown): Date | undefined => (v === null || v === undefined ? undefined : new Date(v as number));
/** A plain Uint8Array copy (better-sqlite3 returns Buffers that may share a pool). */
const bytes = (v: unknown): Uint8Array => new Uint8Array(v as Uint8Array);
const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b); // no callback per byte

/** The column(s) a UNIQUE or PRIMARY KEY violation names, or undefined for other errors. */
function uniqueViolation(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (code !== "SQLITE_CONSTRAINT_UNIQUE" && code !== "SQLITE_CONSTRAINT_PRIMARYKEY") return undefined;
  const m = /constraint failed: \w+\.(\w+)/.exec((e as Error).message);
  return m?.[1] ?? "id";
}

/** Thrown inside a transaction to roll it back and report a refusal instead of an error. */
/** A claim's columns; the lease's end from this machine's clock (SQLite: one machine opens the file). */
function claimParams(claim: ClaimHolder): { claim: string; node: string; boot: string; until: number } {
  return { claim: claim.claimId, node: claim.nodeId, boot: claim.bootId, until: Date.now() + claim.leaseMs };
}

class Refusal {
  constructor(readonly reason: DtbsrRefusal, readonly index?: number, readonly hashCount?: number) {}
}

export class SqliteStore implements Store {
  private readonly statements = new Map<string, Database.Statement>();
  /** Issue 20: the connection's transaction wrapper, made once (group-commit.ts, transactionRunner). */
  private readonly transaction: TransactionRunner;
  /** Issue 20: concurrent writes share one commit (one fsync); see group-commit.ts. */
  readonly #group: GroupCommit;
  /**
   * `PRAGMA data_version` when this connection last made sure other connections' commits were
   * synced. (TypeScript-private, not #private, like `wal`: the read methods that use them stay
   * callable on an object derived from the store, as tests' fakes do.)
   */
  private seenDataVersion: number | undefined;
  /** Issue 20: checkpoints on a worker thread (`wal_autocheckpoint = 0` on this connection). */
  private readonly checkpointer: Checkpointer;

  private constructor(
    private readonly db: Database.Database,
    /** Issue 20: the -wal file's fdatasync on the thread pool, before any write is acknowledged. */
    private readonly wal: WalSync,
    private readonly file: string,
    checkpoint: SqliteStoreOptions["checkpoint"],
  ) {
    this.#group = new GroupCommit(db, wal);
    this.transaction = transactionRunner(db);
    this.checkpointer = new Checkpointer({
      ...checkpoint,
      file,
      walBytes: () => wal.walBytes(),
      activity: () => this.#group.stats.groups + (db.pragma("data_version", { simple: true }) as number),
      onFailure: (error) => wal.poison(error), // a failed checkpoint poisons the store
    });
    wal.onPoison = () => void this.checkpointer.stop(); // nothing is checkpointed after a failed sync
  }

  /** Checkpoints run by the worker so far (issue 20; tests and diagnostics). */
  get checkpointStats(): { passive: number; truncate: number; busy: number } {
    return { ...this.checkpointer.stats };
  }

  /** The WAL syncs started and finished so far (issue 20; tests and diagnostics). */
  get walSyncStats(): { started: number; finished: number } {
    return { ...this.wal.stats };
  }

  /** Groups committed so far and the write operations in them (issue 20; tests and diagnostics). */
  get groupCommitStats(): { groups: number; operations: number } {
    return { ...this.#group.stats };
  }

  static open(options: SqliteStoreOptions): SqliteStore {
    let db: Database.Database | undefined;
    let wal: WalSync | undefined;
    try {
      try {
        closeSync(openSync(options.file, "wx", 0o600)); // the store holds hashes and sealed records: owner only
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const timeout = options.busyTimeoutMs ?? 10_000;
      db = new Database(options.file, { timeout });
      db.pragma(`busy_timeout = ${Math.trunc(timeout)}`);
      const mode: unknown = db.pragma("journal_mode = WAL", { simple: true });
      if (mode !== "wal") throw new Error(`journal_mode is ${String(mode)}, not wal`);
      db.pragma("synchronous = NORMAL"); // issue 20: with the WAL's fdatasync before every acknowledgement (wal-sync.ts)
      db.pragma("wal_autocheckpoint = 0"); // issue 20: checkpoints run on a worker thread (checkpointer.ts), not in a COMMIT
      db.pragma("foreign_keys = ON");
      db.pragma("trusted_schema = OFF");
      migrate(db);
      // The -wal file exists now (migrate's transaction opened it) and stays while `db` is open.
      wal = new WalSync(`${options.file}-wal`, options.walSync);
      return new SqliteStore(db, wal, options.file, options.checkpoint);
    } catch (e) {
      void wal?.close();
      db?.close();
      throw e instanceof InkanError ? e : new StoreFailureError(e);
    }
  }

  async close(): Promise<void> {
    this.#group.flush(); // writes already queued commit (or fail) before the connection goes
    await this.checkpointer.stop(); // its connection closes first: ours is the last one
    await this.wal.close(); // ... and are synced (or fail) before it
    this.statements.clear();
    if (this.wal.failure === undefined) {
      this.db.close(); // the last connection checkpoints (syncing both files) and removes the WAL
      return;
    }
    // Poisoned: after a failed fsync the page cache may not say what the disk holds, so no
    // checkpoint copies it into the database file; the next open recovers from the WAL on disk.
    // A checkpoint at close needs the exclusive lock; a read-only connection holds a shared lock
    // meanwhile and never checkpoints itself (SQLITE_READONLY), so neither close checkpoints.
    let guard: Database.Database | undefined;
    try {
      guard = new Database(this.file, { readonly: true, fileMustExist: true });
      guard.prepare("SELECT COUNT(*) FROM sqlite_master").get(); // its shared lock, in WAL mode held while open
    } catch {
      guard?.close();
      return; // no guard: leave the connection open rather than let it checkpoint
    }
    try {
      this.db.close();
    } finally {
      guard.close();
    }
  }

  /**
   * Issue 20, the read barrier: resolves once every commit this connection may have read is on
   * the disk; STORE_FAILURE once poisoned. Call it AFTER the read and BEFORE its result leaves the
   * SAM. Why: a commit is visible to readers as soon as its COMMIT returns, before the fdatasync
   * that makes it durable (with FULL it was synced before it became visible). A read that released
   * what such a commit wrote (a signature from the DTBS/R list, an audit record) and then lost it
   * on power loss would have given a client something the SAM no longer records (a signature
   * without its record; an exported audit record missing from the chain, R-3.2.2.4).
   * This connection's own commits are covered by the newest pending sync (requested in the same
   * synchronous turn as each COMMIT); another connection's or process's commits change
   * `PRAGMA data_version`, and then a sync of our own descriptor of the same -wal file covers their
   * frames too (fdatasync flushes the file, not the descriptor). Reads that only feed a decision
   * followed by a write need no barrier: that write's own sync covers every earlier frame.
   */
  async durable(): Promise<void> {
    let pending: Promise<void>;
    try {
      const version = this.db.pragma("data_version", { simple: true }) as number;
      if (version !== this.seenDataVersion) {
        this.seenDataVersion = version; // another connection committed since: a sync started from now covers it
        pending = this.wal.afterCommit();
      } else {
        pending = this.wal.settled();
      }
    } catch (e) {
      throw new StoreFailureError(e);
    }
    await pending.catch((e: unknown) => {
      throw new StoreFailureError(e);
    });
  }

  /** This connection's settings and schema version, for diagnostics (`inkan` status) and tests. */
  settings(): { journalMode: string; synchronous: "OFF" | "NORMAL" | "FULL" | "EXTRA"; walFdatasync: boolean; foreignKeys: boolean; busyTimeoutMs: number; schemaVersion: number } {
    return this.guard(() => {
      const sync = this.db.pragma("synchronous", { simple: true }) as number;
      return {
        journalMode: String(this.db.pragma("journal_mode", { simple: true })),
        synchronous: (["OFF", "NORMAL", "FULL", "EXTRA"] as const)[sync] ?? "OFF",
        walFdatasync: true, // issue 20: every write acknowledged only after the -wal file's fdatasync
        foreignKeys: this.db.pragma("foreign_keys", { simple: true }) === 1,
        busyTimeoutMs: this.db.pragma("busy_timeout", { simple: true }) as number,
        schemaVersion: (this.get("SELECT MAX(version) AS v FROM schema_migrations")?.v as number | null) ?? 0,
      };
    });
  }

  // --- plumbing --------------------------------------------------------------------------------

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }
  private get(sql: string, ...params: unknown[]): Row | undefined {
    return this.stmt(sql).get(...params) as Row | undefined;
  }
  private all(sql: string, ...params: unknown[]): Row[] {
    return this.stmt(sql).all(...params) as Row[];
  }
  private run(sql: string, ...params: unknown[]): number {
    return this.stmt(sql).run(...params).changes;
  }
  /** Runs `fn` in BEGIN IMMEDIATE ... COMMIT, or in a SAVEPOINT inside a group (rolled back if it throws). */
  private immediate<T>(fn: () => T): T {
    return this.transaction.immediate(fn) as T;
  }
  /** Driver errors become STORE_FAILURE (the cause kept for the log): the caller fails closed. */
  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof InkanError) throw e;
      throw new StoreFailureError(e);
    }
  }
  /**
   * A write: `fn` runs in the next group commit (group-commit.ts), in its own savepoint, and the
   * promise settles once that group's COMMIT is durable. Driver errors become STORE_FAILURE.
   */
  private write<T>(fn: () => T): Promise<T> {
    return this.#group.run(fn).catch((e: unknown) => {
      throw e instanceof InkanError ? e : new StoreFailureError(e);
    });
  }
  /** {@link write} for a write that may hit a unique key: RecordExistsError, as {@link guardUnique}. */
  private writeUnique<T>(kind: string, fn: () => T, fieldNames: Readonly<Record<string, string>> = {}): Promise<T> {
    return this.write(() => this.guardUnique(kind, fn, fieldNames));
  }
  /**
   * Like guard, for a write that may hit a unique key: that becomes RecordExistsError, naming the
   * field (`fieldNames` maps the first column of a multi-column index to the field reported).
   */
  private guardUnique<T>(kind: string, fn: () => T, fieldNames: Readonly<Record<string, string>> = {}): T {
    return this.guard(() => {
      try {
        return fn();
      } catch (e) {
        const column = uniqueViolation(e);
        if (column !== undefined) throw new RecordExistsError(kind, fieldNames[column] ?? toField(column));
        throw e;
      }
    });
  }

  // --- sealed records --------------------------------------------------------------------------

  private recordParams(record: SealedRecord): Row {
    const params: Row = { id: record.id, version: record.version, body: record.body, seal: record.seal };
    for (const f of fieldsOf(record.kind)) params[toColumn(f)] = (record as unknown as Row)[f];
    return params;
  }

  private recordFromRow<K extends RecordKind>(kind: K, row: Row): RecordOf<K> {
    const rec: Row = { kind, id: row.id, version: row.version };
    for (const f of fieldsOf(kind)) rec[f] = row[toColumn(f)];
    rec.body = row.body;
    rec.seal = bytes(row.seal);
    return rec as unknown as RecordOf<K>;
  }

  async createRecord(record: SealedRecord): Promise<void> {
    if (record.version !== 1) throw new RangeError(`a new record has version 1, got ${record.version}`);
    const columns = ["id", "version", ...fieldsOf(record.kind).map(toColumn), "body", "seal"];
    const sql = `INSERT INTO ${tables[record.kind]} (${columns.join(", ")}) VALUES (${columns.map((c) => "@" + c).join(", ")})`;
    // T-2.1.4.4: UNIQUE(public_key_fingerprint) refuses a public key the SAM already knows.
    await this.writeUnique(record.kind, () => this.run(sql, this.recordParams(record)));
  }

  async getRecord<K extends RecordKind>(kind: K, id: string): Promise<RecordOf<K> | undefined> {
    const row = this.guard(() => this.get(`SELECT * FROM ${tables[kind]} WHERE id = ?`, id));
    return row && this.recordFromRow(kind, row);
  }

  async updateRecord(record: SealedRecord, expectedVersion: number): Promise<boolean> {
    checkNextVersion(record.version, expectedVersion);
    const columns = ["version", ...fieldsOf(record.kind).map(toColumn), "body", "seal"];
    const sql =
      `UPDATE ${tables[record.kind]} SET ${columns.map((c) => `${c} = @${c}`).join(", ")} ` +
      `WHERE id = @id AND version = @expected_version`; // compare-and-set on the version
    const changes = await this.writeUnique(record.kind, () =>
      this.run(sql, { ...this.recordParams(record), expected_version: expectedVersion }),
    );
    return changes === 1;
  }

  async listRecords<K extends RecordKind>(query: ListQuery<K>): Promise<Page<RecordOf<K>>> {
    checkLimit(query.limit);
    const allowed = fieldsOf(query.kind);
    const conditions: string[] = [];
    const params: unknown[] = [];
    for (const [field, value] of Object.entries(query.where as Row)) {
      if (value === undefined) continue;
      if (!allowed.includes(field)) throw new RangeError(`${query.kind} cannot be listed by ${field}`);
      conditions.push(`${toColumn(field)} = ?`);
      params.push(value);
    }
    if (query.after !== undefined) {
      conditions.push("id > ?");
      params.push(query.after);
    }
    const where = conditions.length > 0 ? `WHERE ${conditions.join(" AND ")}` : "";
    const rows = this.guard(() =>
      this.all(`SELECT * FROM ${tables[query.kind]} ${where} ORDER BY id LIMIT ?`, ...params, query.limit + 1),
    );
    const more = rows.length > query.limit;
    const items = rows.slice(0, query.limit).map((r) => this.recordFromRow(query.kind, r));
    return { items, next: more ? items[items.length - 1]?.id : undefined };
  }

  async findRecord<K extends keyof UniqueFields>(kind: K, field: UniqueFields[K], value: string): Promise<RecordOf<K> | undefined> {
    if (uniqueFields[kind] !== field) throw new RangeError(`${field} is not the unique field of ${kind}`);
    const row = this.guard(() => this.get(`SELECT * FROM ${tables[kind]} WHERE ${toColumn(field)} = ?`, value));
    return row && this.recordFromRow(kind, row);
  }

  private policyFromRow(row: Row): PolicyRecord {
    return { kind: "policy", id: row.id as string, version: row.version as number, body: row.body as string, seal: bytes(row.seal) };
  }

  async appendPolicyVersion(record: PolicyRecord): Promise<boolean> {
    if (!Number.isSafeInteger(record.version) || record.version < 1) throw new RangeError(`invalid policy version ${record.version}`);
    return this.write(() =>
      this.immediate(() => {
        const latest = this.get("SELECT MAX(version) AS v FROM policy_versions WHERE id = ?", record.id)?.v as number | null;
        if (record.version !== (latest ?? 0) + 1) return false; // versions follow each other, never rewritten
        this.run("INSERT INTO policy_versions (id, version, body, seal) VALUES (?, ?, ?, ?)", record.id, record.version, record.body, record.seal);
        return true;
      }),
    );
  }

  async getPolicyVersion(id: string, version: number): Promise<PolicyRecord | undefined> {
    const row = this.guard(() => this.get("SELECT * FROM policy_versions WHERE id = ? AND version = ?", id, version));
    return row && this.policyFromRow(row);
  }

  async latestPolicyVersion(id: string): Promise<PolicyRecord | undefined> {
    const row = this.guard(() => this.get("SELECT * FROM policy_versions WHERE id = ? ORDER BY version DESC LIMIT 1", id));
    return row && this.policyFromRow(row);
  }

  async listPolicyVersions(id: string, afterVersion: number, limit: number): Promise<PolicyRecord[]> {
    checkLimit(limit);
    const rows = this.guard(() =>
      this.all("SELECT * FROM policy_versions WHERE id = ? AND version > ? ORDER BY version LIMIT ?", id, afterVersion, limit),
    );
    return rows.map((r) => this.policyFromRow(r));
  }

  // --- transactions ----------------------------------------------------------------------------

  private transactionFromRow(row: Row): TransactionRecord {
    return {
      id: row.id as string,
      credentialId: row.credential_id as string,
      signerId: row.signer_id as string,
      sca: row.sca as string,
      hashAlgorithm: row.hash_algorithm as string,
      numSignatures: row.num_signatures as number,
      body: row.body as string,
      createdAt: new Date(row.created_at as number),
      expiresAt: new Date(row.expires_at as number),
      state: row.state as TransactionState,
      hashCount: row.hash_count as number,
      dtbsrDigest: row.dtbsr_digest === null ? undefined : bytes(row.dtbsr_digest),
      challengeHash: (row.challenge_hash as string | null) ?? undefined,
      signaturesCreated: row.signatures_created as number,
      signaturesRecorded: (row.signatures_recorded as number | undefined) ?? 0,
      authorizeFailures: (row.authorize_failures as number | undefined) ?? 0,
      authorizedAt: dateOrUndefined(row.authorized_at),
      updatedAt: new Date(row.updated_at as number),
      authorization: row.authorization_body === null || row.authorization_body === undefined
        ? undefined
        : { body: row.authorization_body as string, seal: bytes(row.authorization_seal) },
    };
  }

  async createTransaction(tx: NewTransaction): Promise<void> {
    if (!Number.isSafeInteger(tx.numSignatures) || tx.numSignatures < 1) throw new RangeError("numSignatures must be at least 1");
    const params = {
      id: tx.id,
      credential_id: tx.credentialId,
      signer_id: tx.signerId,
      sca: tx.sca,
      hash_algorithm: tx.hashAlgorithm,
      num_signatures: tx.numSignatures,
      body: tx.body,
      challenge_hash: tx.challengeHash ?? null,
      created_at: ms(tx.createdAt),
      expires_at: ms(tx.expiresAt),
    };
    await this.writeUnique("transaction", () =>
      this.run(
        `INSERT INTO transactions (id, credential_id, signer_id, sca, hash_algorithm, num_signatures, body, challenge_hash, state,
           hash_count, signatures_created, created_at, expires_at, updated_at)
         VALUES (@id, @credential_id, @signer_id, @sca, @hash_algorithm, @num_signatures, @body, @challenge_hash, 'PENDING',
           0, 0, @created_at, @expires_at, @created_at)`,
        params,
      ),
    );
  }

  async getTransaction(id: string): Promise<TransactionRecord | undefined> {
    const row = this.guard(() => this.get("SELECT * FROM transactions WHERE id = ?", id));
    return row && this.transactionFromRow(row);
  }

  async appendDtbsr(req: { transactionId: string; startIndex: number; hashes: readonly Uint8Array[]; macs: readonly Uint8Array[]; now: Date }): Promise<AppendDtbsrResult> {
    checkLimit(req.hashes.length, "hashes.length");
    if (req.macs.length !== req.hashes.length) throw new RangeError("one MAC per hash");
    const now = ms(req.now);
    return this.write(() => {
      try {
        return this.immediate((): AppendDtbsrResult => {
          const tx = this.get("SELECT state, hash_count, dtbsr_digest, expires_at FROM transactions WHERE id = ?", req.transactionId);
          if (!tx) throw new Refusal("TRANSACTION_NOT_FOUND");
          if (tx.state !== "PENDING" || tx.dtbsr_digest !== null) throw new Refusal("TRANSACTION_STATE"); // the list is frozen once complete
          if ((tx.expires_at as number) <= now) throw new Refusal("EXPIRED");
          const hashCount = tx.hash_count as number;
          if (req.startIndex !== hashCount) throw new Refusal("INVALID_REQUEST", undefined, hashCount); // ordered, no gap, no overlap
          const insert = this.stmt("INSERT INTO dtbsr (transaction_id, idx, hash, mac) VALUES (?, ?, ?, ?)");
          req.hashes.forEach((hash, i) => insert.run(req.transactionId, hashCount + i, hash, req.macs[i]!));
          this.run(
            "UPDATE transactions SET hash_count = hash_count + ?, updated_at = ? WHERE id = ?",
            req.hashes.length, now, req.transactionId,
          );
          return { ok: true, hashCount: hashCount + req.hashes.length };
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
    const now = ms(req.now);
    // One statement: the list is frozen and the challenge's hash recorded together, or neither.
    const changes = await this.write(() =>
      this.run(
        `UPDATE transactions SET dtbsr_digest = @digest, challenge_hash = @challenge_hash, updated_at = @now
         WHERE id = @id AND state = 'PENDING' AND dtbsr_digest IS NULL AND hash_count = @hash_count AND hash_count > 0 AND expires_at > @now
           AND (challenge_hash IS NULL OR challenge_hash = @challenge_hash)`,
        { digest: req.digest, challenge_hash: req.challengeHash, now, id: req.transactionId, hash_count: req.hashCount },
      ),
    );
    return changes === 1;
  }

  async hasUnsignedEntries(req: { transactionId: string; hashes: readonly Uint8Array[] }): Promise<boolean[]> {
    checkLimit(req.hashes.length, "hashes.length");
    return this.guard(() => {
      const unsigned = this.stmt(dtbsrSql.unsignedByHash);
      return this.transaction(() => req.hashes.map((h) => unsigned.get(req.transactionId, h) !== undefined)) as boolean[];
    });
  }

  async readDtbsr(req: { transactionId: string; fromIndex: number; limit: number }): Promise<DtbsrEntry[]> {
    checkLimit(req.limit);
    const rows = this.guard(() =>
      this.all("SELECT idx, hash, signed, signature, mac FROM dtbsr WHERE transaction_id = ? AND idx >= ? ORDER BY idx LIMIT ?", req.transactionId, req.fromIndex, req.limit),
    );
    await this.durable(); // issue 20: recorded signatures leave the SAM only once durable
    return rows.map((r) => ({
      index: r.idx as number,
      hash: bytes(r.hash),
      signed: r.signed === 1,
      signature: r.signature === null ? undefined : bytes(r.signature),
      mac: r.mac === null ? undefined : bytes(r.mac),
    }));
  }

  async transitionTransaction(req: { id: string; from: readonly TransactionState[]; to: TransactionState; now: Date; authorization?: SealedAuthorization }): Promise<boolean> {
    checkTransition(req.from, req.to);
    checkAuthorizationGiven(req.to, req.authorization);
    const now = ms(req.now);
    const inFrom = req.from.map(() => "?").join(", ");
    const changes = await this.write(() =>
      req.to === "AUTHORIZED"
        ? // R-3.2.1.1: authorized once, only with the complete list and before expiry (compare-and-set),
          // together with the sealed authorization (issue 14).
          this.run(
            `UPDATE transactions SET state = 'AUTHORIZED', authorized_at = ?, updated_at = ?, authorization_body = ?, authorization_seal = ?
             WHERE id = ? AND state IN (${inFrom}) AND dtbsr_digest IS NOT NULL AND expires_at > ?`,
            now, now, req.authorization!.body, req.authorization!.seal, req.id, ...req.from, now,
          )
        : this.run(`UPDATE transactions SET state = ?, updated_at = ? WHERE id = ? AND state IN (${inFrom})`, req.to, now, req.id, ...req.from),
    );
    return changes === 1;
  }

  async revokeSignerTransactions(req: { signerId: string; now: Date }): Promise<string[]> {
    const now = ms(req.now);
    return this.write(() =>
      this.immediate(() => {
        const ids = this.all(
          "UPDATE transactions SET state = 'REVOKED', updated_at = ? WHERE signer_id = ? AND state IN ('PENDING', 'AUTHORIZED') RETURNING id",
          now, req.signerId,
        ).map((r) => r.id as string);
        const revoke = this.stmt("UPDATE sad_tokens SET revoked_at = ? WHERE transaction_id = ? AND consumed_at IS NULL AND revoked_at IS NULL");
        for (const id of ids) revoke.run(now, id);
        return ids;
      }),
    );
  }

  /** Checks the transaction may take `count` more signatures; throws a Refusal otherwise. */
  private checkSignable(transactionId: string, count: number, now: number, completedToo = false): { hashCount: number; signaturesCreated: number; signaturesRecorded: number; state: TransactionState } {
    const tx = this.get("SELECT state, expires_at, num_signatures, signatures_created, signatures_recorded, hash_count FROM transactions WHERE id = ?", transactionId);
    if (!tx) throw new Refusal("TRANSACTION_NOT_FOUND");
    // T-2.2.1.2: nothing is signed without authorization; a COMPLETED one only has claims taken over.
    if (tx.state !== "AUTHORIZED" && !(completedToo && tx.state === "COMPLETED" && count === 0)) throw new Refusal("TRANSACTION_STATE");
    if ((tx.expires_at as number) <= now) throw new Refusal("EXPIRED");
    if ((tx.signatures_created as number) + count > (tx.num_signatures as number)) throw new Refusal("SIGNATURE_COUNT_EXCEEDED"); // T-2.2.1.6
    return { hashCount: tx.hash_count as number, signaturesCreated: tx.signatures_created as number, signaturesRecorded: tx.signatures_recorded as number, state: tx.state as TransactionState };
  }

  /** Adds `count` to the counter, completing the transaction when the authorized number is reached. */
  private countSignatures(transactionId: string, count: number, now: number): { signaturesCreated: number; state: TransactionState } {
    const row = this.get(
      `UPDATE transactions SET signatures_created = signatures_created + @count,
         state = CASE WHEN signatures_created + @count >= num_signatures THEN 'COMPLETED' ELSE state END, updated_at = @now
       WHERE id = @id AND state = 'AUTHORIZED' AND signatures_created + @count <= num_signatures
       RETURNING signatures_created, state`,
      { count, now, id: transactionId },
    );
    if (!row) throw new Refusal("SIGNATURE_COUNT_EXCEEDED"); // T-2.2.1.6 (unreachable under the write lock; kept as a guard)
    return { signaturesCreated: row.signatures_created as number, state: row.state as TransactionState };
  }

  /** Issue 17 item 2: consumes the SAD token in the claim's own write transaction, remembering the claim; SAD_TOKEN if it cannot be. */
  private consumeForClaim(transactionId: string, hash: string, claimId: string, now: number): void {
    const changes = this.run(
      `UPDATE sad_tokens SET consumed_at = @now, claim_id = @claim
       WHERE hash = @hash AND transaction_id = @tx AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > @now`,
      { now, claim: claimId, hash, tx: transactionId },
    );
    if (changes !== 1) throw new Refusal("SAD_TOKEN"); // T-2.2.1.3: exactly one caller consumes
  }

  /** Claimed and unrecorded entries of the whole list (the rows an insider could try to reopen are counted too). */
  private unrecorded(transactionId: string): number {
    return this.get(dtbsrSql.unrecorded, transactionId)?.n as number;
  }

  private markResult(fn: () => MarkSignedResult): Promise<MarkSignedResult> {
    return this.write(() => {
      try {
        return this.immediate(fn);
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
    const now = ms(req.now);
    const holder = claimParams(req.claim);
    if (req.retryToken !== undefined) return this.markResult(() => this.retakeHashes(req.transactionId, req.hashes, req.retryToken!, holder, now));
    return this.markResult(() => {
      const tx = this.checkSignable(req.transactionId, req.hashes.length, now);
      if (req.consumeToken !== undefined) this.consumeForClaim(req.transactionId, req.consumeToken, req.claim.claimId, now);
      // T-2.2.1.6: each hash takes the lowest unsigned entry with that value; none left = not authorized.
      const claim = this.stmt(dtbsrSql.claimByHash);
      const macs: (Uint8Array | undefined)[] = [];
      const indices = req.hashes.map((hash, i) => {
        const row = claim.get({ tx: req.transactionId, hash, ...holder }) as Row | undefined;
        if (!row) throw new Refusal("HASH_NOT_AUTHORIZED", i); // rolls back every claim of this batch (and the consume)
        macs.push(row.mac === null ? undefined : bytes(row.mac));
        return row.idx as number;
      });
      const counted = this.countSignatures(req.transactionId, req.hashes.length, now);
      return { ok: true, indices, hashes: req.hashes.map((h) => new Uint8Array(h)), macs, reclaimed: 0, signaturesRecorded: tx.signaturesRecorded, unrecordedBefore: 0, ...counted };
    });
  }

  /** A SignHash retried after a crash (issue 17): the consumed token's claim, expired and unrecorded, taken over whole. */
  private retakeHashes(transactionId: string, hashes: readonly Uint8Array[], tokenHash: string, holder: ReturnType<typeof claimParams>, now: number): MarkSignedResult {
    const tx = this.checkSignable(transactionId, 0, now, true);
    const token = this.get("SELECT consumed_at, revoked_at, claim_id FROM sad_tokens WHERE hash = ? AND transaction_id = ?", tokenHash, transactionId);
    if (!token || token.consumed_at === null || token.revoked_at !== null || token.claim_id === null) throw new Refusal("SAD_TOKEN");
    const rows = this.all(
      dtbsrSql.byClaim,
      { tx: transactionId, old: token.claim_id, clock: Date.now(), node: holder.node, boot: holder.boot },
    );
    const recorded = rows.length > 0 && rows.every((r) => r.signature !== null);
    // Only a claim nobody still holds (expired, or an earlier boot of this node): never a call still under way.
    if (rows.length !== hashes.length || rows.some((r) => r.free !== 1) || (!recorded && rows.some((r) => r.signature !== null))) throw new Refusal("SAD_TOKEN");
    const taken = new Set<number>();
    const order = hashes.map((h) => {
      const k = rows.findIndex((r, j) => !taken.has(j) && equalBytes(bytes(r.hash), h));
      if (k < 0) throw new Refusal("SAD_TOKEN"); // not the same request
      taken.add(k);
      return rows[k]!;
    });
    if (recorded) {
      // The call completed and its response was lost: the same signatures again, nothing claimed.
      const indices = order.map((r) => r.idx as number);
      return { ok: true, indices, hashes: order.map((r) => bytes(r.hash)), macs: order.map((r) => (r.mac === null ? undefined : bytes(r.mac))), reclaimed: 0, signaturesCreated: tx.signaturesCreated, signaturesRecorded: tx.signaturesRecorded, unrecordedBefore: 0, state: tx.state, signatures: order.map((r) => bytes(r.signature)) };
    }
    const unrecordedBefore = this.unrecorded(transactionId);
    this.run(dtbsrSql.retakeClaim, { ...holder, tx: transactionId, old: token.claim_id });
    this.run("UPDATE sad_tokens SET claim_id = ? WHERE hash = ?", holder.claim, tokenHash);
    return {
      ok: true,
      indices: order.map((r) => r.idx as number),
      hashes: order.map((r) => bytes(r.hash)),
      macs: order.map((r) => (r.mac === null ? undefined : bytes(r.mac))),
      reclaimed: order.length,
      signaturesCreated: tx.signaturesCreated,
      signaturesRecorded: tx.signaturesRecorded,
      unrecordedBefore,
      state: tx.state,
    };
  }

  async recordAuthorizeFailure(req: { id: string; maxFailures: number; now: Date }): Promise<{ failures: number; state: TransactionState } | undefined> {
    if (!Number.isSafeInteger(req.maxFailures) || req.maxFailures < 1) throw new RangeError("maxFailures must be at least 1");
    const row = await this.write(() =>
      // One conditional UPDATE: concurrent failures each count once, and exactly one reaches the limit.
      this.get(
        `UPDATE transactions SET authorize_failures = authorize_failures + 1,
           state = CASE WHEN authorize_failures + 1 >= @max THEN 'FAILED' ELSE state END, updated_at = @now
         WHERE id = @id AND state = 'PENDING' AND dtbsr_digest IS NOT NULL
         RETURNING authorize_failures, state`,
        { max: req.maxFailures, now: ms(req.now), id: req.id },
      ),
    );
    return row && { failures: row.authorize_failures as number, state: row.state as TransactionState };
  }

  async markRangeSigned(req: { transactionId: string; fromIndex: number; count: number; now: Date; claim: ClaimHolder; whileTokenUnused?: string; consumeToken?: string }): Promise<MarkSignedResult> {
    checkLimit(req.count, "count");
    checkClaimHolder(req.claim);
    if (!Number.isSafeInteger(req.fromIndex) || req.fromIndex < 0) throw new RangeError("fromIndex must be a non-negative integer");
    const now = ms(req.now);
    const end = req.fromIndex + req.count;
    const holder = claimParams(req.claim);
    const range = { tx: req.transactionId, from: req.fromIndex, end, clock: Date.now(), node: holder.node, boot: holder.boot };
    // Issue 17: unsigned, or claimed, unrecorded and free (lease expired, or an earlier boot of this node).
    const claimable = "(signed = 0 OR (signature IS NULL AND (lease_until IS NULL OR lease_until <= @clock OR (claim_node = @node AND claim_boot <> @boot))))";
    return this.markResult(() => {
      const counts = this.get(
        `SELECT COUNT(*) AS n, COALESCE(SUM(signed = 0), 0) AS fresh FROM dtbsr WHERE transaction_id = @tx AND idx >= @from AND idx < @end AND ${claimable}`,
        range,
      )!;
      const fresh = counts.fresh as number;
      const reclaimed = (counts.n as number) - fresh;
      const tx = this.checkSignable(req.transactionId, fresh, now, true);
      if (req.whileTokenUnused !== undefined) {
        const token = this.get("SELECT consumed_at, revoked_at FROM sad_tokens WHERE hash = ?", req.whileTokenUnused);
        if (!token || token.consumed_at !== null || token.revoked_at !== null) throw new Refusal("TRANSACTION_STATE");
      }
      if (req.consumeToken !== undefined) this.consumeForClaim(req.transactionId, req.consumeToken, req.claim.claimId, now);
      if (end > tx.hashCount) throw new Refusal("HASH_NOT_AUTHORIZED", Math.max(tx.hashCount, req.fromIndex)); // outside the list
      const unrecordedBefore = reclaimed > 0 ? this.unrecorded(req.transactionId) : 0;
      const claimed = this.all(
        `UPDATE dtbsr SET signed = 1, claim_id = @claim, claim_node = @node, claim_boot = @boot, lease_until = @until
         WHERE transaction_id = @tx AND idx >= @from AND idx < @end AND ${claimable} RETURNING idx, hash, mac`,
        { ...range, ...holder },
      ).sort((a, b) => (a.idx as number) - (b.idx as number));
      const counted = fresh > 0 ? this.countSignatures(req.transactionId, fresh, now) : { signaturesCreated: tx.signaturesCreated, state: tx.state };
      return {
        ok: true,
        indices: claimed.map((r) => r.idx as number),
        hashes: claimed.map((r) => bytes(r.hash)),
        macs: claimed.map((r) => (r.mac === null ? undefined : bytes(r.mac))),
        reclaimed,
        signaturesRecorded: tx.signaturesRecorded,
        unrecordedBefore,
        ...counted,
      };
    });
  }

  async recordSignatures(req: { transactionId: string; claimId: string; signatures: readonly { index: number; signature: Uint8Array }[] }): Promise<RecordSignaturesResult> {
    checkLimit(req.signatures.length, "signatures.length");
    return this.write(() =>
      this.immediate(() => {
        // Issue 17: only under the current claim; an entry taken over by another request is not written.
        // Issue 20: positional parameters, no parameter object per signature (one row per call of a stream).
        const write = this.stmt("UPDATE dtbsr SET signature = ? WHERE transaction_id = ? AND idx = ? AND claim_id = ? AND signed = 1 AND signature IS NULL");
        const recorded: number[] = [];
        for (const s of req.signatures) if (write.run(s.signature, req.transactionId, s.index, req.claimId).changes === 1) recorded.push(s.index);
        const row = this.get(
          "UPDATE transactions SET signatures_recorded = signatures_recorded + ? WHERE id = ? RETURNING signatures_recorded",
          recorded.length, req.transactionId,
        );
        if (!row) throw new StoreFailureError(new Error("the transaction of recorded signatures is missing"));
        return { recorded, signaturesRecorded: row.signatures_recorded as number };
      }),
    );
  }

  // --- one-time objects ------------------------------------------------------------------------

  private challengeFromRow(row: Row): ChallengeRecord {
    return {
      hash: row.hash as string,
      purpose: row.purpose as ChallengePurpose,
      subject: row.subject as string,
      createdAt: new Date(row.created_at as number),
      expiresAt: new Date(row.expires_at as number),
      consumedAt: dateOrUndefined(row.consumed_at),
    };
  }

  async issueChallenge(c: NewChallenge, limit?: { maxOpen: number; now: Date }): Promise<boolean> {
    const params = [c.hash, c.purpose, c.subject, ms(c.createdAt), ms(c.expiresAt)];
    return this.writeUnique("challenge", () =>
      this.immediate(() => {
        if (limit) {
          const open = this.get(
            "SELECT COUNT(*) AS n FROM challenges WHERE purpose = ? AND subject = ? AND consumed_at IS NULL AND expires_at > ?",
            c.purpose, c.subject, ms(limit.now),
          )?.n as number;
          if (open >= limit.maxOpen) return false;
        }
        this.run("INSERT INTO challenges (hash, purpose, subject, created_at, expires_at) VALUES (?, ?, ?, ?, ?)", ...params);
        return true;
      }),
    );
  }

  async consumeChallenge(req: { hash: string; purpose: ChallengePurpose; now: Date }): Promise<ChallengeRecord | undefined> {
    const now = ms(req.now);
    const row = await this.write(() =>
      // T-2.2.1.3: one conditional UPDATE; only the caller that flips consumed_at gets the row back.
      this.get(
        `UPDATE challenges SET consumed_at = @now
         WHERE hash = @hash AND purpose = @purpose AND consumed_at IS NULL AND expires_at > @now RETURNING *`,
        { now, hash: req.hash, purpose: req.purpose },
      ),
    );
    return row && this.challengeFromRow(row);
  }

  private sadTokenFromRow(row: Row): SadTokenRecord {
    return {
      hash: row.hash as string,
      transactionId: row.transaction_id as string,
      generation: row.generation as number,
      previousHash: (row.previous_hash as string | null) ?? undefined,
      minIndex: (row.min_index as number | undefined) ?? 0,
      mac: row.mac === null || row.mac === undefined ? undefined : bytes(row.mac),
      issuedAt: new Date(row.issued_at as number),
      expiresAt: new Date(row.expires_at as number),
      consumedAt: dateOrUndefined(row.consumed_at),
      revokedAt: dateOrUndefined(row.revoked_at),
    };
  }

  async issueSadToken(t: NewSadToken): Promise<void> {
    const params = [t.hash, t.transactionId, t.generation, t.previousHash ?? null, t.minIndex ?? 0, t.mac, ms(t.issuedAt), ms(t.expiresAt)];
    await this.writeUnique("sad-token", () =>
      this.run(
        "INSERT INTO sad_tokens (hash, transaction_id, generation, previous_hash, min_index, mac, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ...params,
      ),
    );
  }

  async consumeSadToken(req: { hash: string; now: Date }): Promise<SadTokenRecord | undefined> {
    const now = ms(req.now);
    const row = await this.write(() =>
      // T-2.2.1.3 / R-3.2.1.2: the token is consumed before anything is signed; exactly one caller wins.
      this.get(
        `UPDATE sad_tokens SET consumed_at = @now
         WHERE hash = @hash AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > @now RETURNING *`,
        { now, hash: req.hash },
      ),
    );
    return row && this.sadTokenFromRow(row);
  }

  async findSadToken(hash: string): Promise<SadTokenRecord | undefined> {
    const row = this.guard(() => this.get("SELECT * FROM sad_tokens WHERE hash = ?", hash));
    return row && this.sadTokenFromRow(row);
  }

  async revokeSadTokens(req: { transactionId: string; now: Date }): Promise<number> {
    const now = ms(req.now);
    return this.write(() =>
      this.run(
        "UPDATE sad_tokens SET revoked_at = ? WHERE transaction_id = ? AND consumed_at IS NULL AND revoked_at IS NULL",
        now, req.transactionId,
      ),
    );
  }

  private activationCodeFromRow(row: Row): ActivationCodeRecord {
    return {
      id: row.id as string,
      signerId: row.signer_id as string,
      codeHash: row.code_hash as string,
      attemptsLeft: row.attempts_left as number,
      createdAt: new Date(row.created_at as number),
      expiresAt: new Date(row.expires_at as number),
      consumedAt: dateOrUndefined(row.consumed_at),
      revokedAt: dateOrUndefined(row.revoked_at),
    };
  }

  async issueActivationCode(c: NewActivationCode): Promise<void> {
    if (!Number.isSafeInteger(c.attemptsLeft) || c.attemptsLeft < 1) throw new RangeError("attemptsLeft must be at least 1");
    const params = [c.id, c.signerId, c.codeHash, c.attemptsLeft, ms(c.createdAt), ms(c.expiresAt)];
    await this.writeUnique("activation-code", () =>
      this.run(
        "INSERT INTO activation_codes (id, signer_id, code_hash, attempts_left, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        ...params,
      ),
    );
  }

  async attemptActivationCode(req: { id: string; codeHash: string; now: Date }): Promise<ActivationAttempt> {
    const now = ms(req.now);
    return this.write((): ActivationAttempt => {
      const params = { now, id: req.id, codeHash: req.codeHash };
      const live = "consumed_at IS NULL AND revoked_at IS NULL AND attempts_left > 0 AND expires_at > @now";
      // R-3.1.1.2: a matching code is consumed by exactly one caller.
      const accepted = this.get(
        `UPDATE activation_codes SET consumed_at = @now WHERE id = @id AND code_hash = @codeHash AND ${live} RETURNING *`,
        params,
      );
      if (accepted) return { outcome: "accepted", code: this.activationCodeFromRow(accepted) };
      // T-2.1.1.1: a wrong code burns one attempt, atomically; at 0 the code is dead.
      const rejected = this.get(
        `UPDATE activation_codes SET attempts_left = attempts_left - 1
         WHERE id = @id AND code_hash <> @codeHash AND ${live} RETURNING attempts_left`,
        params,
      );
      if (rejected) return { outcome: "rejected", attemptsLeft: rejected.attempts_left as number };
      return { outcome: "unavailable" };
    });
  }

  async revokeActivationCodes(req: { signerId: string; now: Date }): Promise<number> {
    const now = ms(req.now);
    return this.write(() =>
      this.run(
        "UPDATE activation_codes SET revoked_at = ? WHERE signer_id = ? AND consumed_at IS NULL AND revoked_at IS NULL",
        now, req.signerId,
      ),
    );
  }

  async useJti(req: { key: string; expiresAt: Date; now: Date }): Promise<boolean> {
    const now = ms(req.now);
    const expiresAt = ms(req.expiresAt);
    const changes = await this.write(() =>
      // T-2.2.1.3: the first use inserts the key; a later use changes nothing while it is unexpired.
      this.run(
        `INSERT INTO used_jtis (key, used_at, expires_at) VALUES (@key, @now, @expiresAt)
         ON CONFLICT (key) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at
         WHERE used_jtis.expires_at <= @now`,
        { key: req.key, now, expiresAt },
      ),
    );
    return changes === 1;
  }

  async purgeExpired(before: Date): Promise<PurgeCounts> {
    const t = ms(before);
    return this.write(() =>
      this.immediate(() => ({
        challenges: this.run("DELETE FROM challenges WHERE expires_at <= ?", t),
        sadTokens: this.run("DELETE FROM sad_tokens WHERE expires_at <= ?", t),
        activationCodes: this.run("DELETE FROM activation_codes WHERE expires_at <= ?", t),
        jtis: this.run("DELETE FROM used_jtis WHERE expires_at <= ?", t),
        transactions: this.run("DELETE FROM transactions WHERE expires_at <= ?", t), // DTBS/R rows go by ON DELETE CASCADE
      })),
    );
  }

  // --- restore fence (issue 22) ------------------------------------------------------------------

  async voidOneTimeState(req: { now: Date }): Promise<VoidedCounts> {
    const now = ms(req.now);
    return this.write(() =>
      this.immediate(() => ({
        oneTimeObjects:
          this.run("UPDATE challenges SET consumed_at = ? WHERE consumed_at IS NULL", now) +
          this.run("UPDATE sad_tokens SET consumed_at = ? WHERE consumed_at IS NULL", now) +
          this.run("UPDATE activation_codes SET consumed_at = ? WHERE consumed_at IS NULL", now),
        transactions: this.run("UPDATE transactions SET state = 'REVOKED', updated_at = ? WHERE state IN ('PENDING', 'AUTHORIZED')", now),
      })),
    );
  }

  // --- attempt reservations --------------------------------------------------------------------

  async reserveAttempt(req: { subject: string; id: string; now: Date; expiresAt: Date }): Promise<number> {
    checkAttemptReservation(req);
    const params = [req.subject, req.id, ms(req.now), ms(req.expiresAt)];
    return this.writeUnique(
      "attempt-reservation",
      () =>
        // T-2.1.2.2: inserted and counted under the write lock, so each concurrent caller (any
        // process) sees a distinct count; expired rows count too (a crash mid-check fails closed).
        this.immediate(() => {
          this.run("INSERT INTO attempt_reservations (subject, id, reserved_at, expires_at) VALUES (?, ?, ?, ?)", ...params);
          return this.get("SELECT COUNT(*) AS n FROM attempt_reservations WHERE subject = ?", req.subject)!.n as number;
        }),
      { subject: "id" },
    );
  }

  async releaseAttempt(req: { subject: string; id: string }): Promise<boolean> {
    return (await this.write(() => this.run("DELETE FROM attempt_reservations WHERE subject = ? AND id = ?", req.subject, req.id))) === 1;
  }

  async releaseExpiredAttempts(req: { subject: string; now: Date }): Promise<number> {
    const now = ms(req.now);
    return this.write(() => this.run("DELETE FROM attempt_reservations WHERE subject = ? AND expires_at <= ?", req.subject, now));
  }

  // --- pending approvals (dual control) --------------------------------------------------------

  private pendingApprovalFromRow(row: Row): PendingApprovalRecord {
    return {
      kind: "pending-approval",
      id: row.id as string,
      version: row.version as number,
      method: row.method as string,
      requestDigest: row.request_digest as string,
      request: row.request as string,
      requestedBy: row.requested_by as string,
      requestedAt: new Date(row.requested_at as number),
      expiresAt: new Date(row.expires_at as number),
      state: row.state as PendingApprovalState,
      decidedBy: (row.decided_by as string | null) ?? undefined,
      decidedAt: dateOrUndefined(row.decided_at),
      body: row.body as string,
      seal: bytes(row.seal),
    };
  }

  async createPendingApproval(p: NewPendingApproval): Promise<void> {
    checkNewPendingApproval(p);
    const params = {
      id: p.id,
      method: p.method,
      request_digest: p.requestDigest,
      request: p.request,
      requested_by: p.requestedBy,
      requested_at: ms(p.requestedAt),
      expires_at: ms(p.expiresAt),
      body: p.body,
      seal: p.seal,
    };
    // R-3.2.1.6: the partial unique index keeps one PENDING record per (method, digest, requester).
    await this.writeUnique(
      "pending-approval",
      () =>
        this.run(
          `INSERT INTO pending_approvals (id, version, method, request_digest, request, requested_by, requested_at, expires_at,
             state, decided_by, decided_at, body, seal)
           VALUES (@id, 1, @method, @request_digest, @request, @requested_by, @requested_at, @expires_at,
             'PENDING', NULL, NULL, @body, @seal)`,
          params,
        ),
      { method: "requestDigest" },
    );
  }

  async getPendingApproval(id: string): Promise<PendingApprovalRecord | undefined> {
    const row = this.guard(() => this.get("SELECT * FROM pending_approvals WHERE id = ?", id));
    return row && this.pendingApprovalFromRow(row);
  }

  async findPendingApproval(req: { method: string; requestDigest: string; requestedBy: string; now: Date }): Promise<PendingApprovalRecord | undefined> {
    const now = ms(req.now);
    const row = this.guard(() =>
      this.get(
        `SELECT * FROM pending_approvals
         WHERE method = ? AND request_digest = ? AND requested_by = ? AND state = 'PENDING' AND expires_at > ?`,
        req.method, req.requestDigest, req.requestedBy, now,
      ),
    );
    return row && this.pendingApprovalFromRow(row);
  }

  async listPendingApprovals(query: PendingApprovalQuery): Promise<Page<PendingApprovalRecord>> {
    checkLimit(query.limit);
    const now = ms(query.now);
    const descending = query.order === "desc";
    if (query.order !== undefined && query.order !== "asc" && !descending) throw new RangeError(`invalid order ${String(query.order)}`);
    const conditions: string[] = [];
    const params: unknown[] = [];
    if (query.state === "PENDING") {
      conditions.push("state = 'PENDING' AND expires_at > ?");
      params.push(now);
    } else if (query.state === "EXPIRED") {
      conditions.push("(state = 'EXPIRED' OR (state = 'PENDING' AND expires_at <= ?))");
      params.push(now);
    } else if (query.state !== undefined) {
      conditions.push("state = ?");
      params.push(query.state);
    }
    if (query.requestedBy !== undefined) {
      conditions.push("requested_by = ?");
      params.push(query.requestedBy);
    }
    if (query.after !== undefined) {
      conditions.push(descending ? "id < ?" : "id > ?");
      params.push(query.after);
    }
    const where = conditions.length > 0 ? `WHERE ${conditions.join(" AND ")}` : "";
    const rows = this.guard(() =>
      this.all(`SELECT * FROM pending_approvals ${where} ORDER BY id ${descending ? "DESC" : "ASC"} LIMIT ?`, ...params, query.limit + 1),
    );
    const more = rows.length > query.limit;
    const items = rows.slice(0, query.limit).map((r) => this.pendingApprovalFromRow(r));
    return { items, next: more ? items[items.length - 1]?.id : undefined };
  }

  async decidePendingApproval(req: DecidePendingApproval): Promise<PendingApprovalRecord | undefined> {
    checkPendingDecision(req);
    const now = ms(req.now);
    const params = {
      id: req.id,
      from: req.from,
      to: req.to,
      decided_by: req.decidedBy ?? null,
      decided_at: req.decidedAt === undefined ? null : ms(req.decidedAt),
      body: req.body,
      seal: req.seal,
      now,
    };
    const row = await this.write(() =>
      // R-3.2.1.6: one conditional UPDATE; only the caller that moves it out of PENDING gets the row.
      // Approve and reject only before expiry; expire only after it.
      this.get(
        `UPDATE pending_approvals
         SET state = @to, version = version + 1, decided_by = @decided_by, decided_at = @decided_at, body = @body, seal = @seal
         WHERE id = @id AND state = @from
           AND ((@to <> 'EXPIRED' AND expires_at > @now) OR (@to = 'EXPIRED' AND expires_at <= @now))
         RETURNING *`,
        params,
      ),
    );
    return row && this.pendingApprovalFromRow(row);
  }

  async completePendingApproval(req: CompletePendingApproval): Promise<PendingApprovalRecord | undefined> {
    checkPendingCompletion(req);
    ms(req.now);
    const row = await this.write(() =>
      // R-3.2.1.6: the outcome is recorded once, by the caller that performed the approved request.
      this.get(
        `UPDATE pending_approvals SET state = @to, version = version + 1, body = @body, seal = @seal
         WHERE id = @id AND state = @from RETURNING *`,
        { id: req.id, from: req.from, to: req.to, body: req.body, seal: req.seal },
      ),
    );
    return row && this.pendingApprovalFromRow(row);
  }

  // --- audit -----------------------------------------------------------------------------------

  private auditFromRow(row: Row): AuditRecord {
    return {
      nodeId: row.node_id as string,
      sequence: row.sequence as number,
      time: new Date(row.time as number),
      event: row.event as string,
      body: row.body as string,
      prevHash: bytes(row.prev_hash),
      hash: bytes(row.hash),
    };
  }

  private checkpointFromRow(row: Row): AuditCheckpoint {
    return {
      nodeId: row.node_id as string,
      sequence: row.sequence as number,
      time: new Date(row.time as number),
      body: row.body as string,
      signature: bytes(row.signature),
    };
  }

  async appendAuditRecord(r: AuditRecord): Promise<void> {
    return this.appendAuditRecords([r]);
  }

  async appendAuditRecords(records: readonly AuditRecord[]): Promise<void> {
    checkLimit(records.length, "records.length");
    await this.write(() =>
      this.immediate(() => {
        const first = records[0]!;
        const latest = this.get("SELECT sequence, hash FROM audit_records WHERE node_id = ? ORDER BY sequence DESC LIMIT 1", first.nodeId);
        let previous = latest && { sequence: latest.sequence as number, hash: bytes(latest.hash) };
        const insert = this.stmt("INSERT INTO audit_records (node_id, sequence, time, event, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)");
        for (const r of records) {
          // R-3.2.2.4: the chain only grows by records that each link to the one before.
          const expected = (previous?.sequence ?? 0) + 1;
          if (r.nodeId !== first.nodeId) throw new AuditChainError(r.nodeId, r.sequence, "a batch holds one node's records");
          if (r.sequence !== expected) throw new AuditChainError(r.nodeId, r.sequence, `expected sequence ${expected}`);
          if (previous && !equalBytes(r.prevHash, previous.hash)) throw new AuditChainError(r.nodeId, r.sequence, "prevHash is not the previous record's hash");
          insert.run(r.nodeId, r.sequence, ms(r.time), r.event, r.body, r.prevHash, r.hash);
          previous = { sequence: r.sequence, hash: r.hash };
        }
      }),
    );
  }

  async readAuditRecords(req: { nodeId: string; fromSequence: number; limit: number }): Promise<AuditRecord[]> {
    checkLimit(req.limit);
    const rows = this.guard(() =>
      this.all("SELECT * FROM audit_records WHERE node_id = ? AND sequence >= ? ORDER BY sequence LIMIT ?", req.nodeId, req.fromSequence, req.limit),
    );
    await this.durable(); // issue 20: audit records leave the SAM only once durable (R-3.2.2.4)
    return rows.map((r) => this.auditFromRow(r));
  }

  async readAuditRecordsByEvent(req: { nodeId: string; event: string; fromSequence: number; limit: number }): Promise<AuditRecord[]> {
    checkLimit(req.limit);
    const rows = this.guard(() => this.all(auditRecordsByEventSql, req.nodeId, req.event, req.fromSequence, req.limit));
    await this.durable(); // issue 20: as readAuditRecords
    return rows.map((r) => this.auditFromRow(r));
  }

  async latestAuditRecord(nodeId: string): Promise<AuditRecord | undefined> {
    const row = this.guard(() => this.get("SELECT * FROM audit_records WHERE node_id = ? ORDER BY sequence DESC LIMIT 1", nodeId));
    return row && this.auditFromRow(row);
  }

  async listAuditNodes(): Promise<string[]> {
    return this.guard(() => {
      const nodes: string[] = [];
      // One index seek per node rather than a scan of every record.
      for (let after = ""; ; ) {
        const row = this.get("SELECT node_id FROM audit_records WHERE node_id > ? ORDER BY node_id LIMIT 1", after);
        if (!row) return nodes;
        after = row.node_id as string;
        nodes.push(after);
      }
    });
  }

  async appendAuditCheckpoint(c: AuditCheckpoint): Promise<void> {
    const time = ms(c.time);
    await this.write(() =>
      this.immediate(() => {
        const latest = this.get("SELECT MAX(sequence) AS s FROM audit_checkpoints WHERE node_id = ?", c.nodeId)?.s as number | null;
        if (latest !== null && c.sequence <= latest) throw new AuditChainError(c.nodeId, c.sequence, `a checkpoint at ${latest} exists`);
        if (!this.get("SELECT 1 FROM audit_records WHERE node_id = ? AND sequence = ?", c.nodeId, c.sequence)) {
          throw new AuditChainError(c.nodeId, c.sequence, "no audit record at this sequence");
        }
        this.run(
          "INSERT INTO audit_checkpoints (node_id, sequence, time, body, signature) VALUES (?, ?, ?, ?, ?)",
          c.nodeId, c.sequence, time, c.body, c.signature,
        );
      }),
    );
  }

  async latestAuditCheckpoint(nodeId: string): Promise<AuditCheckpoint | undefined> {
    const row = this.guard(() => this.get("SELECT * FROM audit_checkpoints WHERE node_id = ? ORDER BY sequence DESC LIMIT 1", nodeId));
    return row && this.checkpointFromRow(row);
  }

  async readAuditCheckpoints(req: { nodeId: string; fromSequence: number; limit: number }): Promise<AuditCheckpoint[]> {
    checkLimit(req.limit);
    const rows = this.guard(() =>
      this.all("SELECT * FROM audit_checkpoints WHERE node_id = ? AND sequence >= ? ORDER BY sequence LIMIT ?", req.nodeId, req.fromSequence, req.limit),
    );
    await this.durable(); // issue 20: exported with the records (audit/export.ts), so only once durable
    return rows.map((r) => this.checkpointFromRow(r));
  }
}

/**
 * The DTBS/R lookups that name their index (issue 20). Without statistics the planner reads every
 * entry of the transaction by primary key for each of them (a 100,000-entry list per hash, or per
 * take-over), so each names the index it needs; a missing index fails the statement (closed).
 */
export const dtbsrSql = {
  /** SignHash's pre-check (T-2.2.1.6): an unsigned entry with this hash? Migration 12's index, signed read from the row. */
  unsignedByHash: "SELECT 1 FROM dtbsr INDEXED BY dtbsr_by_hash_idx WHERE transaction_id = ? AND hash = ? AND signed = 0 LIMIT 1",
  /** T-2.2.1.6: each hash claims the lowest unsigned entry with that value; no row = not authorized. */
  claimByHash: `UPDATE dtbsr SET signed = 1, claim_id = @claim, claim_node = @node, claim_boot = @boot, lease_until = @until WHERE transaction_id = @tx AND idx =
       (SELECT idx FROM dtbsr INDEXED BY dtbsr_by_hash_idx WHERE transaction_id = @tx AND hash = @hash AND signed = 0 ORDER BY idx LIMIT 1)
     RETURNING idx, mac`,
  /** Claimed and unrecorded entries of the whole list (migration 11's partial index). */
  unrecorded: "SELECT COUNT(*) AS n FROM dtbsr INDEXED BY dtbsr_unrecorded WHERE transaction_id = ? AND signed = 1 AND signature IS NULL",
  /** Issue 17: the entries of one claim (a SignHash retried after a crash), and whether each is free. */
  byClaim: `SELECT idx, hash, mac, signature, (lease_until IS NULL OR lease_until <= @clock OR (claim_node = @node AND claim_boot <> @boot)) AS free
       FROM dtbsr INDEXED BY dtbsr_by_claim WHERE transaction_id = @tx AND claim_id = @old ORDER BY idx`,
  /** Issue 17: a claim taken over whole by its retry. */
  retakeClaim: "UPDATE dtbsr INDEXED BY dtbsr_by_claim SET claim_id = @claim, claim_node = @node, claim_boot = @boot, lease_until = @until WHERE transaction_id = @tx AND claim_id = @old",
} as const;

/**
 * One node's records of one event from a sequence (migration 10's index). Without statistics the
 * planner would walk the node's whole chain by primary key and filter, so the index is named.
 */
export const auditRecordsByEventSql =
  "SELECT * FROM audit_records INDEXED BY audit_records_by_event WHERE node_id = ? AND event = ? AND sequence >= ? ORDER BY sequence LIMIT ?";

/** Applies the pending migrations in one BEGIN IMMEDIATE transaction; a no-op on an up-to-date file. */
function migrate(db: Database.Database): void {
  const latestKnown = migrations[migrations.length - 1]?.version ?? 0;
  db.transaction(() => {
    db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL) STRICT");
    const applied = (db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as { v: number | null }).v ?? 0;
    if (applied > latestKnown) {
      throw new Error(`the database schema is at version ${applied}, newer than this Inkan knows (${latestKnown}): refusing to use it`);
    }
    const record = db.prepare("INSERT INTO schema_migrations (version, name) VALUES (?, ?)");
    for (const m of migrations) {
      if (m.version <= applied) continue;
      db.exec(m.sql);
      record.run(m.version, m.name);
    }
  }).immediate();
}
