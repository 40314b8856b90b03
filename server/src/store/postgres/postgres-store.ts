/**
 * The networked store for several SAM nodes: PostgreSQL through node-postgres (`pg`), the only
 * importer of that driver. Selected by `INKAN_STORE=postgres://…`.
 *
 * - Every one-time object is consumed, and every pending approval decided, by one conditional
 *   `UPDATE … WHERE consumed_at IS NULL … RETURNING`: under READ COMMITTED a concurrent updater
 *   waits for the row lock and re-checks the WHERE clause on the committed row, so exactly one
 *   caller on any node wins (T-2.2.1.3).
 * - Multi-statement steps run in one transaction at READ COMMITTED that first takes the lock
 *   their decision depends on: the transaction row (`SELECT … FOR UPDATE`) for DTBS/R uploads and
 *   claims, the stream's SAD token row (`FOR SHARE`) for a range claim, and a transaction-level
 *   advisory lock for what has no row yet (a subject's open challenges or attempt reservations, a
 *   node's audit chain). Each statement after the lock sees every commit made before it. A
 *   serialization failure or deadlock is retried a bounded number of times, then fails closed:
 *   the whole transaction, or a single statement run on its own (its own transaction).
 * - The schema is migrated at start under an advisory lock (see migrations.ts).
 * - Time is passed in by the caller, never read from either clock (the port's rule).
 * - Every driver error becomes StoreFailureError (fail closed); the connection string never
 *   appears in an error (it may hold a password).
 */
import pg from "pg";
import { InkanError } from "../../errors.js";
import {
  AuditChainError,
  RecordExistsError,
  StoreFailureError,
  checkAttemptReservation,
  checkAuthorizationGiven,
  checkClaimHolder,
  checkLimit,
  checkNewPendingApproval,
  checkNextVersion,
  checkPendingCompletion,
  checkPendingDecision,
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
import { pgMigrations } from "./migrations.js";

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database (libpq URI; sslmode etc. as query parameters). */
  uri: string;
  /** Connections in this node's pool (default 10): concurrent store calls beyond it wait. */
  poolSize?: number;
  /** How long a call waits for a free connection or a new one, in ms (default 10,000). */
  connectionTimeoutMs?: number;
  /**
   * How long one statement may run or wait for a lock, in ms (default 30,000): a database that
   * stops answering fails the call (STORE_FAILURE) instead of holding it forever.
   */
  statementTimeoutMs?: number;
}

/** Opens a pool to the database and brings its schema up to date (once, whatever the nodes starting). */
export async function createPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  return PostgresStore.open(options);
}

type Row = Record<string, unknown>;
type Client = pg.PoolClient;

/** Advisory lock keys (first int4 of the two-key form) of each kind of lock this store takes. */
const lockSpace = { migrate: 0x494e4b00, challenges: 0x494e4b01, attempts: 0x494e4b02, audit: 0x494e4b03, checkpoints: 0x494e4b04 } as const;

/** How often a transaction that lost a serialization race or a deadlock is retried before failing closed. */
const maxRetries = 5;

const tables: { readonly [K in RecordKind]: string } = {
  signer: "signers",
  factor: "factors",
  credential: "credentials",
  "privileged-user": "privileged_users",
  "privileged-user-key": "privileged_user_keys",
};

/** The field each unique constraint reports in RecordExistsError. */
const constraintFields: Readonly<Record<string, string>> = {
  credentials_public_key_fingerprint_key: "publicKeyFingerprint",
  privileged_users_certificate_fingerprint_key: "certificateFingerprint",
  privileged_user_keys_key_fingerprint_key: "keyFingerprint",
  challenges_pkey: "hash",
  sad_tokens_pkey: "hash",
  sad_tokens_previous_hash_key: "previousHash",
  pending_approvals_one_pending: "requestDigest",
};

const toColumn = (field: string): string => field.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
const fieldsOf = (kind: RecordKind): string[] => Object.keys(queryableFields[kind]);

function ms(date: Date): number {
  const t = date.getTime();
  if (!Number.isFinite(t)) throw new RangeError("invalid date");
  return t;
}
const dateOrUndefined = (v: unknown): Date | undefined => (v === null || v === undefined ? undefined : new Date(v as number));
/** A plain Uint8Array copy of a BYTEA value (pg returns Buffers). */
const bytes = (v: unknown): Uint8Array => new Uint8Array(v as Uint8Array);
const bytesOrUndefined = (v: unknown): Uint8Array | undefined => (v === null || v === undefined ? undefined : bytes(v));
/** Bytes as pg sends them (a Buffer view, no copy). */
const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
/** A caller's string, stored exactly as UTF-8 in a BYTEA column (TEXT cannot hold U+0000). */
const utf8 = (s: string): Buffer => Buffer.from(s, "utf8");
const text = (v: unknown): string => (v as Buffer).toString("utf8");
const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** int8 (BIGINT: times, versions, sequences) as a JavaScript number: every value we store is a safe integer. */
const typeParsers = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
};

/** Thrown inside a transaction to roll it back and report a refusal instead of an error. */
/** Issue 17: a lease's time, from the database server's clock (shared by every node), in ms. */
const dbClock = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";
const leaseEnd = (leaseParam: string): string => `(${dbClock} + ${leaseParam}::bigint)`;
/**
 * Issue 21: the database's time at the start of the current transaction, the same in each of its
 * statements: a claim's count and its UPDATE must see the same leases as expired (with
 * clock_timestamp() a lease that ran out between them made the claim fail).
 */
const dbTransactionClock = "(extract(epoch FROM transaction_timestamp()) * 1000)::bigint";

class Refusal {
  constructor(readonly reason: DtbsrRefusal, readonly index?: number, readonly hashCount?: number) {}
}

const sqlState = (e: unknown): string | undefined => {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
};

/** A deadlock victim or a lost serialization race: rolled back whole by PostgreSQL, so safe to run again. */
const lostRace = (e: unknown): boolean => {
  const state = sqlState(e);
  return state === "40001" || state === "40P01";
};

export class PostgresStore implements Store {
  private closed = false;

  private constructor(private readonly pool: pg.Pool) {}

  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const poolSize = options.poolSize ?? 10;
    if (!Number.isInteger(poolSize) || poolSize < 1) throw new RangeError("poolSize must be a positive integer");
    const pool = new pg.Pool({
      connectionString: options.uri,
      max: poolSize,
      connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
      statement_timeout: options.statementTimeoutMs ?? 30_000,
      // The client-side bound too, for a server that no longer answers at all.
      query_timeout: (options.statementTimeoutMs ?? 30_000) + 5_000,
      keepAlive: true,
      types: typeParsers,
    });
    // An idle connection that dies (server restart, network) is dropped by the pool; the next call
    // gets a new one or fails with STORE_FAILURE. Without a listener the error would end the process.
    pool.on("error", () => undefined);
    try {
      await migrate(pool);
      return new PostgresStore(pool);
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw e instanceof InkanError ? e : new StoreFailureError(e);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  /** The schema version and pool size, for diagnostics and tests. */
  async settings(): Promise<{ schemaVersion: number; poolSize: number }> {
    const row = await this.one("SELECT MAX(version) AS v FROM schema_migrations");
    return { schemaVersion: (row?.v as number | null) ?? 0, poolSize: this.pool.options.max };
  }

  // --- plumbing --------------------------------------------------------------------------------

  private ensureOpen(): void {
    if (this.closed) throw new StoreFailureError(new Error("the PostgreSQL store is closed"));
  }

  /** Driver errors become STORE_FAILURE (the cause kept for the log): the caller fails closed. */
  private async guard<T>(fn: () => Promise<T>, unique?: string): Promise<T> {
    this.ensureOpen();
    try {
      return await fn();
    } catch (e) {
      if (e instanceof InkanError || e instanceof RangeError) throw e;
      if (unique !== undefined && sqlState(e) === "23505") {
        const constraint = (e as { constraint?: string }).constraint ?? "";
        throw new RecordExistsError(unique, constraintFields[constraint] ?? "id");
      }
      throw new StoreFailureError(e);
    }
  }

  private async rows(sql: string, values: unknown[] = [], client: pg.Pool | Client = this.pool): Promise<Row[]> {
    return (await this.statement(sql, values, client)).rows;
  }
  private async one(sql: string, values: unknown[] = [], client: pg.Pool | Client = this.pool): Promise<Row | undefined> {
    return (await this.statement(sql, values, client)).rows[0];
  }
  private async count(sql: string, values: unknown[] = [], client: pg.Pool | Client = this.pool): Promise<number> {
    return (await this.statement(sql, values, client)).rowCount ?? 0;
  }

  /**
   * One statement. On the pool it is a transaction of its own: one that lost a deadlock or a
   * serialization race was rolled back whole (nothing of it happened), so it is run again, bounded
   * as {@link tx} does (T-2.2.1.3: under a replay storm a revocation or a transition is a deadlock
   * victim now and then, and a refusal must stay a refusal, not STORE_FAILURE). Inside a
   * transaction, tx() runs the whole transaction again instead.
   */
  private async statement(sql: string, values: unknown[], client: pg.Pool | Client): Promise<pg.QueryResult<Row>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await client.query<Row>(sql, values);
      } catch (e) {
        if (client === this.pool && lostRace(e) && attempt < maxRetries) continue;
        throw e;
      }
    }
  }

  /**
   * Runs `fn` in one READ COMMITTED transaction on one connection, committed if it returns and
   * rolled back if it throws. Serialization failures and deadlocks are retried (bounded).
   */
  private async tx<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      let broken = false;
      try {
        await client.query("BEGIN ISOLATION LEVEL READ COMMITTED");
        const result = await fn(client);
        await client.query("COMMIT");
        return result;
      } catch (e) {
        await client.query("ROLLBACK").catch(() => {
          broken = true;
        });
        if (lostRace(e) && attempt < maxRetries) continue;
        throw e;
      } finally {
        client.release(broken);
      }
    }
  }

  /** A transaction whose Refusal becomes a `{ ok: false }` result. */
  private async refusable<T>(fn: (c: Client) => Promise<T>, refused: (r: Refusal) => T): Promise<T> {
    return this.guard(async () => {
      try {
        return await this.tx(fn);
      } catch (e) {
        if (e instanceof Refusal) return refused(e);
        throw e;
      }
    });
  }

  // --- sealed records --------------------------------------------------------------------------

  private recordColumns(record: SealedRecord): { columns: string[]; values: unknown[] } {
    const fields = fieldsOf(record.kind);
    return {
      columns: ["id", "version", ...fields.map(toColumn), "body", "seal"],
      values: [record.id, record.version, ...fields.map((f) => (record as unknown as Row)[f]), utf8(record.body), buf(record.seal)],
    };
  }

  private recordFromRow<K extends RecordKind>(kind: K, row: Row): RecordOf<K> {
    const rec: Row = { kind, id: row.id, version: row.version };
    for (const f of fieldsOf(kind)) rec[f] = row[toColumn(f)];
    rec.body = text(row.body);
    rec.seal = bytes(row.seal);
    return rec as unknown as RecordOf<K>;
  }

  async createRecord(record: SealedRecord): Promise<void> {
    if (record.version !== 1) throw new RangeError(`a new record has version 1, got ${record.version}`);
    const { columns, values } = this.recordColumns(record);
    const sql = `INSERT INTO ${tables[record.kind]} (${columns.join(", ")}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(", ")})`;
    // T-2.1.4.4: UNIQUE(public_key_fingerprint) refuses a public key the SAM already knows.
    await this.guard(() => this.count(sql, values), record.kind);
  }

  async getRecord<K extends RecordKind>(kind: K, id: string): Promise<RecordOf<K> | undefined> {
    const row = await this.guard(() => this.one(`SELECT * FROM ${tables[kind]} WHERE id = $1`, [id]));
    return row && this.recordFromRow(kind, row);
  }

  async updateRecord(record: SealedRecord, expectedVersion: number): Promise<boolean> {
    checkNextVersion(record.version, expectedVersion);
    const { columns, values } = this.recordColumns(record);
    const set = columns.slice(1).map((c, i) => `${c} = $${i + 2}`).join(", ");
    // Compare-and-set on the version.
    const sql = `UPDATE ${tables[record.kind]} SET ${set} WHERE id = $1 AND version = $${columns.length + 1}`;
    return (await this.guard(() => this.count(sql, [...values, expectedVersion]), record.kind)) === 1;
  }

  async listRecords<K extends RecordKind>(query: ListQuery<K>): Promise<Page<RecordOf<K>>> {
    checkLimit(query.limit);
    const allowed = fieldsOf(query.kind);
    const conditions: string[] = [];
    const values: unknown[] = [];
    for (const [field, value] of Object.entries(query.where as Row)) {
      if (value === undefined) continue;
      if (!allowed.includes(field)) throw new RangeError(`${query.kind} cannot be listed by ${field}`);
      values.push(value);
      conditions.push(`${toColumn(field)} = $${values.length}`);
    }
    if (query.after !== undefined) {
      values.push(query.after);
      conditions.push(`id > $${values.length}`);
    }
    const where = conditions.length > 0 ? `WHERE ${conditions.join(" AND ")}` : "";
    values.push(query.limit + 1);
    const rows = await this.guard(() => this.rows(`SELECT * FROM ${tables[query.kind]} ${where} ORDER BY id LIMIT $${values.length}`, values));
    const more = rows.length > query.limit;
    const items = rows.slice(0, query.limit).map((r) => this.recordFromRow(query.kind, r));
    return { items, next: more ? items[items.length - 1]?.id : undefined };
  }

  async findRecord<K extends keyof UniqueFields>(kind: K, field: UniqueFields[K], value: string): Promise<RecordOf<K> | undefined> {
    if (uniqueFields[kind] !== field) throw new RangeError(`${field} is not the unique field of ${kind}`);
    const row = await this.guard(() => this.one(`SELECT * FROM ${tables[kind]} WHERE ${toColumn(field)} = $1`, [value]));
    return row && this.recordFromRow(kind, row);
  }

  private policyFromRow(row: Row): PolicyRecord {
    return { kind: "policy", id: row.id as string, version: row.version as number, body: text(row.body), seal: bytes(row.seal) };
  }

  async appendPolicyVersion(record: PolicyRecord): Promise<boolean> {
    if (!Number.isSafeInteger(record.version) || record.version < 1) throw new RangeError(`invalid policy version ${record.version}`);
    // R-3.2.2.3: one statement: inserted only as the latest + 1; a concurrent writer of the same
    // version waits on the primary key and then does nothing. Versions are never rewritten.
    const inserted = await this.guard(() =>
      this.count(
        `INSERT INTO policy_versions (id, version, body, seal)
         SELECT $1, $2, $3, $4 WHERE COALESCE((SELECT MAX(version) FROM policy_versions WHERE id = $1), 0) + 1 = $2
         ON CONFLICT (id, version) DO NOTHING`,
        [record.id, record.version, utf8(record.body), buf(record.seal)],
      ),
    );
    return inserted === 1;
  }

  async getPolicyVersion(id: string, version: number): Promise<PolicyRecord | undefined> {
    const row = await this.guard(() => this.one("SELECT * FROM policy_versions WHERE id = $1 AND version = $2", [id, version]));
    return row && this.policyFromRow(row);
  }

  async latestPolicyVersion(id: string): Promise<PolicyRecord | undefined> {
    const row = await this.guard(() => this.one("SELECT * FROM policy_versions WHERE id = $1 ORDER BY version DESC LIMIT 1", [id]));
    return row && this.policyFromRow(row);
  }

  async listPolicyVersions(id: string, afterVersion: number, limit: number): Promise<PolicyRecord[]> {
    checkLimit(limit);
    const rows = await this.guard(() =>
      this.rows("SELECT * FROM policy_versions WHERE id = $1 AND version > $2 ORDER BY version LIMIT $3", [id, afterVersion, limit]),
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
      body: text(row.body),
      createdAt: new Date(row.created_at as number),
      expiresAt: new Date(row.expires_at as number),
      state: row.state as TransactionState,
      hashCount: row.hash_count as number,
      dtbsrDigest: bytesOrUndefined(row.dtbsr_digest),
      challengeHash: (row.challenge_hash as string | null) ?? undefined,
      signaturesCreated: row.signatures_created as number,
      signaturesRecorded: (row.signatures_recorded as number | undefined) ?? 0,
      authorizeFailures: row.authorize_failures as number,
      authorizedAt: dateOrUndefined(row.authorized_at),
      updatedAt: new Date(row.updated_at as number),
      authorization: row.authorization_body === null ? undefined : { body: text(row.authorization_body), seal: bytes(row.authorization_seal) },
    };
  }

  async createTransaction(tx: NewTransaction): Promise<void> {
    if (!Number.isSafeInteger(tx.numSignatures) || tx.numSignatures < 1) throw new RangeError("numSignatures must be at least 1");
    const values = [tx.id, tx.credentialId, tx.signerId, tx.sca, tx.hashAlgorithm, tx.numSignatures, utf8(tx.body), tx.challengeHash ?? null, ms(tx.createdAt), ms(tx.expiresAt)];
    await this.guard(
      () =>
        this.count(
          `INSERT INTO transactions (id, credential_id, signer_id, sca, hash_algorithm, num_signatures, body, challenge_hash, state,
             hash_count, signatures_created, created_at, expires_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'PENDING', 0, 0, $9, $10, $9)`,
          values,
        ),
      "transaction",
    );
  }

  async getTransaction(id: string): Promise<TransactionRecord | undefined> {
    const row = await this.guard(() => this.one("SELECT * FROM transactions WHERE id = $1", [id]));
    return row && this.transactionFromRow(row);
  }

  async appendDtbsr(req: { transactionId: string; startIndex: number; hashes: readonly Uint8Array[]; macs: readonly Uint8Array[]; now: Date }): Promise<AppendDtbsrResult> {
    checkLimit(req.hashes.length, "hashes.length");
    if (req.macs.length !== req.hashes.length) throw new RangeError("one MAC per hash");
    const now = ms(req.now);
    return this.refusable(
      async (c): Promise<AppendDtbsrResult> => {
        // The transaction row's lock orders concurrent chunks: each sees the hashCount the previous one left.
        const tx = await this.one("SELECT state, hash_count, dtbsr_digest, expires_at FROM transactions WHERE id = $1 FOR UPDATE", [req.transactionId], c);
        if (!tx) throw new Refusal("TRANSACTION_NOT_FOUND");
        if (tx.state !== "PENDING" || tx.dtbsr_digest !== null) throw new Refusal("TRANSACTION_STATE"); // the list is frozen once complete
        if ((tx.expires_at as number) <= now) throw new Refusal("EXPIRED");
        const hashCount = tx.hash_count as number;
        if (req.startIndex !== hashCount) throw new Refusal("INVALID_REQUEST", undefined, hashCount); // ordered, no gap, no overlap
        await c.query(
          `INSERT INTO dtbsr (transaction_id, idx, hash, mac)
           SELECT $1, $2 + (u.n - 1)::int, u.h, u.m FROM unnest($3::bytea[], $4::bytea[]) WITH ORDINALITY AS u(h, m, n)`,
          [req.transactionId, hashCount, req.hashes.map(buf), req.macs.map(buf)],
        );
        await c.query("UPDATE transactions SET hash_count = hash_count + $1, updated_at = $2 WHERE id = $3", [req.hashes.length, now, req.transactionId]);
        return { ok: true, hashCount: hashCount + req.hashes.length };
      },
      (r) => (r.hashCount === undefined ? { ok: false, reason: r.reason } : { ok: false, reason: r.reason, hashCount: r.hashCount }),
    );
  }

  async completeDtbsrUpload(req: { transactionId: string; hashCount: number; digest: Uint8Array; challengeHash: string; now: Date }): Promise<boolean> {
    if (typeof req.challengeHash !== "string" || req.challengeHash.length === 0) throw new RangeError("challengeHash is required");
    const now = ms(req.now);
    // One statement: the list is frozen and the challenge's hash recorded together, or neither.
    const changes = await this.guard(() =>
      this.count(
        `UPDATE transactions SET dtbsr_digest = $1, challenge_hash = $2, updated_at = $3
         WHERE id = $4 AND state = 'PENDING' AND dtbsr_digest IS NULL AND hash_count = $5 AND hash_count > 0 AND expires_at > $3
           AND (challenge_hash IS NULL OR challenge_hash = $2)`,
        [buf(req.digest), req.challengeHash, now, req.transactionId, req.hashCount],
      ),
    );
    return changes === 1;
  }

  async hasUnsignedEntries(req: { transactionId: string; hashes: readonly Uint8Array[] }): Promise<boolean[]> {
    checkLimit(req.hashes.length, "hashes.length");
    const rows = await this.guard(() =>
      this.rows(
        `SELECT u.n, EXISTS (SELECT 1 FROM dtbsr d WHERE d.transaction_id = $1 AND d.hash = u.h AND NOT d.signed) AS unsigned
         FROM unnest($2::bytea[]) WITH ORDINALITY AS u(h, n) ORDER BY u.n`,
        [req.transactionId, req.hashes.map(buf)],
      ),
    );
    return rows.map((r) => r.unsigned === true);
  }

  async readDtbsr(req: { transactionId: string; fromIndex: number; limit: number }): Promise<DtbsrEntry[]> {
    checkLimit(req.limit);
    const rows = await this.guard(() =>
      this.rows("SELECT idx, hash, signed, signature, mac FROM dtbsr WHERE transaction_id = $1 AND idx >= $2 ORDER BY idx LIMIT $3", [req.transactionId, req.fromIndex, req.limit]),
    );
    return rows.map((r) => ({ index: r.idx as number, hash: bytes(r.hash), signed: r.signed === true, signature: bytesOrUndefined(r.signature), mac: bytesOrUndefined(r.mac) }));
  }

  async transitionTransaction(req: { id: string; from: readonly TransactionState[]; to: TransactionState; now: Date; authorization?: SealedAuthorization }): Promise<boolean> {
    checkTransition(req.from, req.to);
    checkAuthorizationGiven(req.to, req.authorization);
    const now = ms(req.now);
    const from = [...req.from];
    const changes = await this.guard(() =>
      req.to === "AUTHORIZED"
        ? // R-3.2.1.1: authorized once, only with the complete list and before expiry (compare-and-set),
          // together with the sealed authorization (issue 14).
          this.count(
            `UPDATE transactions SET state = 'AUTHORIZED', authorized_at = $1, updated_at = $1, authorization_body = $2, authorization_seal = $3
             WHERE id = $4 AND state = ANY($5::text[]) AND dtbsr_digest IS NOT NULL AND expires_at > $1`,
            [now, utf8(req.authorization!.body), buf(req.authorization!.seal), req.id, from],
          )
        : this.count("UPDATE transactions SET state = $1, updated_at = $2 WHERE id = $3 AND state = ANY($4::text[])", [req.to, now, req.id, from]),
    );
    return changes === 1;
  }

  async revokeSignerTransactions(req: { signerId: string; now: Date }): Promise<string[]> {
    const now = ms(req.now);
    return this.guard(() =>
      this.tx(async (c) => {
        const ids = (
          await this.rows(
            "UPDATE transactions SET state = 'REVOKED', updated_at = $1 WHERE signer_id = $2 AND state IN ('PENDING', 'AUTHORIZED') RETURNING id",
            [now, req.signerId],
            c,
          )
        ).map((r) => r.id as string);
        await c.query("UPDATE sad_tokens SET revoked_at = $1 WHERE transaction_id = ANY($2::text[]) AND consumed_at IS NULL AND revoked_at IS NULL", [now, ids]);
        return ids;
      }),
    );
  }

  /** Locks the transaction row and checks it may take `count` more signatures; throws a Refusal otherwise. */
  private async checkSignable(c: Client, transactionId: string, count: number, now: number, completedToo = false): Promise<{ hashCount: number; signaturesCreated: number; signaturesRecorded: number; state: TransactionState }> {
    const tx = await this.one(
      "SELECT state, expires_at, num_signatures, signatures_created, signatures_recorded, hash_count FROM transactions WHERE id = $1 FOR UPDATE",
      [transactionId],
      c,
    );
    if (!tx) throw new Refusal("TRANSACTION_NOT_FOUND");
    // T-2.2.1.2: nothing is signed without authorization; a COMPLETED one only has claims taken over.
    if (tx.state !== "AUTHORIZED" && !(completedToo && tx.state === "COMPLETED" && count === 0)) throw new Refusal("TRANSACTION_STATE");
    if ((tx.expires_at as number) <= now) throw new Refusal("EXPIRED");
    if ((tx.signatures_created as number) + count > (tx.num_signatures as number)) throw new Refusal("SIGNATURE_COUNT_EXCEEDED"); // T-2.2.1.6
    return { hashCount: tx.hash_count as number, signaturesCreated: tx.signatures_created as number, signaturesRecorded: tx.signatures_recorded as number, state: tx.state as TransactionState };
  }

  /** Adds `count` to the counter, completing the transaction when the authorized number is reached. */
  private async countSignatures(c: Client, transactionId: string, count: number, now: number): Promise<{ signaturesCreated: number; state: TransactionState }> {
    const row = await this.one(
      `UPDATE transactions SET signatures_created = signatures_created + $1,
         state = CASE WHEN signatures_created + $1 >= num_signatures THEN 'COMPLETED' ELSE state END, updated_at = $2
       WHERE id = $3 AND state = 'AUTHORIZED' AND signatures_created + $1 <= num_signatures
       RETURNING signatures_created, state`,
      [count, now, transactionId],
      c,
    );
    if (!row) throw new Refusal("SIGNATURE_COUNT_EXCEEDED"); // T-2.2.1.6 (unreachable under the row lock; kept as a guard)
    return { signaturesCreated: row.signatures_created as number, state: row.state as TransactionState };
  }

  /** Issue 17 item 2: consumes the SAD token in the claim's own transaction, remembering the claim; SAD_TOKEN if it cannot be. */
  private async consumeForClaim(c: Client, transactionId: string, hash: string, claimId: string, now: number): Promise<void> {
    const changes = await this.count(
      `UPDATE sad_tokens SET consumed_at = $1, claim_id = $2
       WHERE hash = $3 AND transaction_id = $4 AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > $1`,
      [now, claimId, hash, transactionId],
      c,
    );
    if (changes !== 1) throw new Refusal("SAD_TOKEN"); // T-2.2.1.3: exactly one caller on any node consumes
  }

  private async unrecorded(c: Client, transactionId: string): Promise<number> {
    return (await this.one("SELECT COUNT(*) AS n FROM dtbsr WHERE transaction_id = $1 AND signed AND signature IS NULL", [transactionId], c))?.n as number;
  }

  private static markRefused(r: Refusal): MarkSignedResult {
    return r.index === undefined ? { ok: false, reason: r.reason } : { ok: false, reason: r.reason, index: r.index };
  }

  async markHashesSigned(req: { transactionId: string; hashes: readonly Uint8Array[]; now: Date; claim: ClaimHolder; consumeToken?: string; retryToken?: string }): Promise<MarkSignedResult> {
    checkLimit(req.hashes.length, "hashes.length");
    checkClaimHolder(req.claim);
    if (req.consumeToken !== undefined && req.retryToken !== undefined) throw new RangeError("consumeToken or retryToken, not both");
    const now = ms(req.now);
    const { claim } = req;
    if (req.retryToken !== undefined) return this.refusable((c) => this.retakeHashes(c, req.transactionId, req.hashes, req.retryToken!, claim, now), PostgresStore.markRefused);
    return this.refusable(async (c): Promise<MarkSignedResult> => {
      const tx = await this.checkSignable(c, req.transactionId, req.hashes.length, now);
      if (req.consumeToken !== undefined) await this.consumeForClaim(c, req.transactionId, req.consumeToken, claim.claimId, now);
      // T-2.2.1.6: each hash takes the lowest unsigned entry with that value; none left = not authorized.
      const indices: number[] = [];
      const macs: (Uint8Array | undefined)[] = [];
      for (const [i, hash] of req.hashes.entries()) {
        const row = await this.one(
          `UPDATE dtbsr SET signed = TRUE, claim_id = $3, claim_node = $4, claim_boot = $5, lease_until = ${leaseEnd("$6")}
           WHERE transaction_id = $1 AND NOT signed AND idx =
             (SELECT idx FROM dtbsr WHERE transaction_id = $1 AND hash = $2 AND NOT signed ORDER BY idx LIMIT 1)
           RETURNING idx, mac`,
          [req.transactionId, buf(hash), claim.claimId, claim.nodeId, claim.bootId, claim.leaseMs],
          c,
        );
        if (!row) throw new Refusal("HASH_NOT_AUTHORIZED", i); // rolls back every claim of this batch (and the consume)
        indices.push(row.idx as number);
        macs.push(bytesOrUndefined(row.mac));
      }
      const counted = await this.countSignatures(c, req.transactionId, req.hashes.length, now);
      return { ok: true, indices, hashes: req.hashes.map((h) => new Uint8Array(h)), macs, reclaimed: 0, signaturesRecorded: tx.signaturesRecorded, unrecordedBefore: 0, ...counted };
    }, PostgresStore.markRefused);
  }

  /** A SignHash retried after a crash (issue 17): the consumed token's claim, expired and unrecorded, taken over whole. */
  private async retakeHashes(c: Client, transactionId: string, hashes: readonly Uint8Array[], tokenHash: string, claim: ClaimHolder, now: number): Promise<MarkSignedResult> {
    const tx = await this.checkSignable(c, transactionId, 0, now, true);
    const token = await this.one("SELECT consumed_at, revoked_at, claim_id FROM sad_tokens WHERE hash = $1 AND transaction_id = $2 FOR UPDATE", [tokenHash, transactionId], c);
    if (!token || token.consumed_at === null || token.revoked_at !== null || token.claim_id === null) throw new Refusal("SAD_TOKEN");
    const rows = await this.rows(
      `SELECT idx, hash, mac, signature, (lease_until IS NULL OR lease_until <= ${dbClock} OR (claim_node = $3 AND claim_boot <> $4)) AS free
       FROM dtbsr WHERE transaction_id = $1 AND claim_id = $2 ORDER BY idx FOR UPDATE`,
      [transactionId, token.claim_id, claim.nodeId, claim.bootId],
      c,
    );
    const recorded = rows.length > 0 && rows.every((r) => r.signature !== null);
    // Only a claim nobody still holds (expired, or an earlier boot of this node): never a call still under way.
    if (rows.length !== hashes.length || rows.some((r) => r.free !== true) || (!recorded && rows.some((r) => r.signature !== null))) throw new Refusal("SAD_TOKEN");
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
      return { ok: true, indices, hashes: order.map((r) => bytes(r.hash)), macs: order.map((r) => bytesOrUndefined(r.mac)), reclaimed: 0, signaturesCreated: tx.signaturesCreated, signaturesRecorded: tx.signaturesRecorded, unrecordedBefore: 0, state: tx.state, signatures: order.map((r) => bytes(r.signature)) };
    }
    const unrecordedBefore = await this.unrecorded(c, transactionId);
    await c.query(
      `UPDATE dtbsr SET claim_id = $3, claim_node = $4, claim_boot = $5, lease_until = ${leaseEnd("$6")} WHERE transaction_id = $1 AND claim_id = $2`,
      [transactionId, token.claim_id, claim.claimId, claim.nodeId, claim.bootId, claim.leaseMs],
    );
    await c.query("UPDATE sad_tokens SET claim_id = $1 WHERE hash = $2", [claim.claimId, tokenHash]);
    return {
      ok: true,
      indices: order.map((r) => r.idx as number),
      hashes: order.map((r) => bytes(r.hash)),
      macs: order.map((r) => bytesOrUndefined(r.mac)),
      reclaimed: order.length,
      signaturesCreated: tx.signaturesCreated,
      signaturesRecorded: tx.signaturesRecorded,
      unrecordedBefore,
      state: tx.state,
    };
  }

  async recordAuthorizeFailure(req: { id: string; maxFailures: number; now: Date }): Promise<{ failures: number; state: TransactionState } | undefined> {
    if (!Number.isSafeInteger(req.maxFailures) || req.maxFailures < 1) throw new RangeError("maxFailures must be at least 1");
    const row = await this.guard(() =>
      // One conditional UPDATE: concurrent failures each count once, and exactly one reaches the limit.
      this.one(
        `UPDATE transactions SET authorize_failures = authorize_failures + 1,
           state = CASE WHEN authorize_failures + 1 >= $1 THEN 'FAILED' ELSE state END, updated_at = $2
         WHERE id = $3 AND state = 'PENDING' AND dtbsr_digest IS NOT NULL
         RETURNING authorize_failures, state`,
        [req.maxFailures, ms(req.now), req.id],
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
    const { claim } = req;
    // Issue 17: unsigned, or claimed, unrecorded and free (lease expired by the database's clock, or an earlier boot of this node).
    const claimable = `(NOT signed OR (signature IS NULL AND (lease_until IS NULL OR lease_until <= ${dbTransactionClock} OR (claim_node = $4 AND claim_boot <> $5))))`;
    return this.refusable(async (c): Promise<MarkSignedResult> => {
      // The row lock first (checkSignable), so that concurrent claims of one transaction take turns.
      await this.one("SELECT 1 FROM transactions WHERE id = $1 FOR UPDATE", [req.transactionId], c);
      const counts = (await this.one(
        `SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE NOT signed) AS fresh FROM dtbsr WHERE transaction_id = $1 AND idx >= $2 AND idx < $3 AND ${claimable}`,
        [req.transactionId, req.fromIndex, end, claim.nodeId, claim.bootId],
        c,
      ))!;
      const fresh = counts.fresh as number;
      const reclaimed = (counts.n as number) - fresh;
      const tx = await this.checkSignable(c, req.transactionId, fresh, now, true);
      if (req.whileTokenUnused !== undefined) {
        // FOR SHARE holds off a concurrent consume of the stream's token until this claim commits,
        // and sees a consume that committed first: the claim and "token unused" are one atomic step.
        const token = await this.one("SELECT consumed_at, revoked_at FROM sad_tokens WHERE hash = $1 FOR SHARE", [req.whileTokenUnused], c);
        if (!token || token.consumed_at !== null || token.revoked_at !== null) throw new Refusal("TRANSACTION_STATE");
      }
      if (req.consumeToken !== undefined) await this.consumeForClaim(c, req.transactionId, req.consumeToken, claim.claimId, now);
      if (end > tx.hashCount) throw new Refusal("HASH_NOT_AUTHORIZED", Math.max(tx.hashCount, req.fromIndex)); // outside the list
      const unrecordedBefore = reclaimed > 0 ? await this.unrecorded(c, req.transactionId) : 0;
      const claimed = (
        await this.rows(
          `UPDATE dtbsr SET signed = TRUE, claim_id = $6, claim_node = $4, claim_boot = $5, lease_until = ${leaseEnd("$7")}
           WHERE transaction_id = $1 AND idx >= $2 AND idx < $3 AND ${claimable} RETURNING idx, hash, mac`,
          [req.transactionId, req.fromIndex, end, claim.nodeId, claim.bootId, claim.claimId, claim.leaseMs],
          c,
        )
      ).sort((a, b) => (a.idx as number) - (b.idx as number));
      // Unreachable under the row lock; kept so that a claim never covers fewer entries than it counts.
      if (claimed.length !== fresh + reclaimed) throw new Refusal("HASH_NOT_AUTHORIZED", req.fromIndex);
      const counted = fresh > 0 ? await this.countSignatures(c, req.transactionId, fresh, now) : { signaturesCreated: tx.signaturesCreated, state: tx.state };
      return {
        ok: true,
        indices: claimed.map((r) => r.idx as number),
        hashes: claimed.map((r) => bytes(r.hash)),
        macs: claimed.map((r) => bytesOrUndefined(r.mac)),
        reclaimed,
        signaturesRecorded: tx.signaturesRecorded,
        unrecordedBefore,
        ...counted,
      };
    }, PostgresStore.markRefused);
  }

  async recordSignatures(req: { transactionId: string; claimId: string; signatures: readonly { index: number; signature: Uint8Array }[] }): Promise<RecordSignaturesResult> {
    checkLimit(req.signatures.length, "signatures.length");
    return this.guard(() =>
      this.tx(async (c) => {
        // Issue 17: only under the current claim; an entry taken over by another request (any node) is not written.
        const recorded = (
          await this.rows(
            `UPDATE dtbsr d SET signature = s.sig
             FROM (SELECT DISTINCT ON (idx) idx, sig FROM unnest($2::int[], $3::bytea[]) WITH ORDINALITY AS u(idx, sig, n) ORDER BY idx, n) s
             WHERE d.transaction_id = $1 AND d.idx = s.idx AND d.claim_id = $4 AND d.signed AND d.signature IS NULL
             RETURNING d.idx`,
            [req.transactionId, req.signatures.map((s) => s.index), req.signatures.map((s) => buf(s.signature)), req.claimId],
            c,
          )
        ).map((r) => r.idx as number);
        const row = await this.one("UPDATE transactions SET signatures_recorded = signatures_recorded + $1 WHERE id = $2 RETURNING signatures_recorded", [recorded.length, req.transactionId], c);
        if (!row) throw new StoreFailureError(new Error("the transaction of recorded signatures is missing"));
        const order = new Map(req.signatures.map((s, i) => [s.index, i]));
        recorded.sort((x, y) => order.get(x)! - order.get(y)!);
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

  async issueChallenge(ch: NewChallenge, limit?: { maxOpen: number; now: Date }): Promise<boolean> {
    const values = [ch.hash, ch.purpose, ch.subject, ms(ch.createdAt), ms(ch.expiresAt)];
    const insert = "INSERT INTO challenges (hash, purpose, subject, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
    if (!limit) {
      await this.guard(() => this.count(insert, values), "challenge");
      return true;
    }
    const now = ms(limit.now);
    return this.guard(
      () =>
        this.tx(async (c) => {
          // Counted and inserted under a lock on (purpose, subject): concurrent issuers on any node never exceed maxOpen.
          await c.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [lockSpace.challenges, `${ch.purpose}\u0001${ch.subject}`]);
          const open = (await this.one(
            "SELECT COUNT(*)::int AS n FROM challenges WHERE purpose = $1 AND subject = $2 AND consumed_at IS NULL AND expires_at > $3",
            [ch.purpose, ch.subject, now],
            c,
          ))!.n as number;
          if (open >= limit.maxOpen) return false;
          await c.query(insert, values);
          return true;
        }),
      "challenge",
    );
  }

  async consumeChallenge(req: { hash: string; purpose: ChallengePurpose; now: Date }): Promise<ChallengeRecord | undefined> {
    const now = ms(req.now);
    const row = await this.guard(() =>
      // T-2.2.1.3: one conditional UPDATE; only the caller that sets consumed_at gets the row back.
      this.one(
        "UPDATE challenges SET consumed_at = $1 WHERE hash = $2 AND purpose = $3 AND consumed_at IS NULL AND expires_at > $1 RETURNING *",
        [now, req.hash, req.purpose],
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
      minIndex: row.min_index as number,
      mac: bytesOrUndefined(row.mac),
      issuedAt: new Date(row.issued_at as number),
      expiresAt: new Date(row.expires_at as number),
      consumedAt: dateOrUndefined(row.consumed_at),
      revokedAt: dateOrUndefined(row.revoked_at),
    };
  }

  async issueSadToken(t: NewSadToken): Promise<void> {
    const values = [t.hash, t.transactionId, t.generation, t.previousHash ?? null, t.minIndex ?? 0, buf(t.mac), ms(t.issuedAt), ms(t.expiresAt)];
    await this.guard(
      () =>
        this.count(
          "INSERT INTO sad_tokens (hash, transaction_id, generation, previous_hash, min_index, mac, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
          values,
        ),
      "sad-token",
    );
  }

  async consumeSadToken(req: { hash: string; now: Date }): Promise<SadTokenRecord | undefined> {
    const now = ms(req.now);
    const row = await this.guard(() =>
      // T-2.2.1.3 / R-3.2.1.2: the token is consumed before anything is signed; exactly one caller on any node wins.
      this.one(
        "UPDATE sad_tokens SET consumed_at = $1 WHERE hash = $2 AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > $1 RETURNING *",
        [now, req.hash],
      ),
    );
    return row && this.sadTokenFromRow(row);
  }

  async findSadToken(hash: string): Promise<SadTokenRecord | undefined> {
    const row = await this.guard(() => this.one("SELECT * FROM sad_tokens WHERE hash = $1", [hash]));
    return row && this.sadTokenFromRow(row);
  }

  async revokeSadTokens(req: { transactionId: string; now: Date }): Promise<number> {
    const now = ms(req.now);
    return this.guard(() =>
      this.count("UPDATE sad_tokens SET revoked_at = $1 WHERE transaction_id = $2 AND consumed_at IS NULL AND revoked_at IS NULL", [now, req.transactionId]),
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

  async issueActivationCode(code: NewActivationCode): Promise<void> {
    if (!Number.isSafeInteger(code.attemptsLeft) || code.attemptsLeft < 1) throw new RangeError("attemptsLeft must be at least 1");
    const values = [code.id, code.signerId, code.codeHash, code.attemptsLeft, ms(code.createdAt), ms(code.expiresAt)];
    await this.guard(
      () => this.count("INSERT INTO activation_codes (id, signer_id, code_hash, attempts_left, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)", values),
      "activation-code",
    );
  }

  async attemptActivationCode(req: { id: string; codeHash: string; now: Date }): Promise<ActivationAttempt> {
    const now = ms(req.now);
    const values = [now, req.id, req.codeHash];
    const live = "consumed_at IS NULL AND revoked_at IS NULL AND attempts_left > 0 AND expires_at > $1";
    return this.guard(async (): Promise<ActivationAttempt> => {
      // R-3.1.1.2: a matching code is consumed by exactly one caller.
      const accepted = await this.one(`UPDATE activation_codes SET consumed_at = $1 WHERE id = $2 AND code_hash = $3 AND ${live} RETURNING *`, values);
      if (accepted) return { outcome: "accepted", code: this.activationCodeFromRow(accepted) };
      // T-2.1.1.1: a wrong code burns one attempt, atomically; at 0 the code is dead.
      const rejected = await this.one(
        `UPDATE activation_codes SET attempts_left = attempts_left - 1 WHERE id = $2 AND code_hash <> $3 AND ${live} RETURNING attempts_left`,
        values,
      );
      if (rejected) return { outcome: "rejected", attemptsLeft: rejected.attempts_left as number };
      return { outcome: "unavailable" };
    });
  }

  async revokeActivationCodes(req: { signerId: string; now: Date }): Promise<number> {
    const now = ms(req.now);
    return this.guard(() =>
      this.count("UPDATE activation_codes SET revoked_at = $1 WHERE signer_id = $2 AND consumed_at IS NULL AND revoked_at IS NULL", [now, req.signerId]),
    );
  }

  async useJti(req: { key: string; expiresAt: Date; now: Date }): Promise<boolean> {
    const now = ms(req.now);
    const expiresAt = ms(req.expiresAt);
    const changes = await this.guard(() =>
      // T-2.2.1.3: the first use inserts the key; a later use changes nothing while it is unexpired.
      this.count(
        `INSERT INTO used_jtis (key, used_at, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at
         WHERE used_jtis.expires_at <= $2`,
        [req.key, now, expiresAt],
      ),
    );
    return changes === 1;
  }

  async purgeExpired(before: Date): Promise<PurgeCounts> {
    const t = ms(before);
    return this.guard(() =>
      this.tx(async (c) => ({
        challenges: await this.count("DELETE FROM challenges WHERE expires_at <= $1", [t], c),
        sadTokens: await this.count("DELETE FROM sad_tokens WHERE expires_at <= $1", [t], c),
        activationCodes: await this.count("DELETE FROM activation_codes WHERE expires_at <= $1", [t], c),
        jtis: await this.count("DELETE FROM used_jtis WHERE expires_at <= $1", [t], c),
        transactions: await this.count("DELETE FROM transactions WHERE expires_at <= $1", [t], c), // DTBS/R rows go by ON DELETE CASCADE
      })),
    );
  }

  // --- restore fence (issue 22) ------------------------------------------------------------------

  async voidOneTimeState(req: { now: Date }): Promise<VoidedCounts> {
    const now = ms(req.now);
    return this.guard(() =>
      this.tx(async (c) => ({
        oneTimeObjects:
          (await this.count("UPDATE challenges SET consumed_at = $1 WHERE consumed_at IS NULL", [now], c)) +
          (await this.count("UPDATE sad_tokens SET consumed_at = $1 WHERE consumed_at IS NULL", [now], c)) +
          (await this.count("UPDATE activation_codes SET consumed_at = $1 WHERE consumed_at IS NULL", [now], c)),
        transactions: await this.count("UPDATE transactions SET state = 'REVOKED', updated_at = $1 WHERE state IN ('PENDING', 'AUTHORIZED')", [now], c),
      })),
    );
  }

  // --- attempt reservations --------------------------------------------------------------------

  async reserveAttempt(req: { subject: string; id: string; now: Date; expiresAt: Date }): Promise<number> {
    checkAttemptReservation(req);
    const values = [req.subject, req.id, ms(req.now), ms(req.expiresAt)];
    return this.guard(
      () =>
        this.tx(async (c) => {
          // T-2.1.2.2: inserted and counted under a lock on the subject, so each concurrent caller
          // (any node) sees a distinct count; expired rows count too (a crash mid-check fails closed).
          await c.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [lockSpace.attempts, req.subject]);
          await c.query("INSERT INTO attempt_reservations (subject, id, reserved_at, expires_at) VALUES ($1, $2, $3, $4)", values);
          return (await this.one("SELECT COUNT(*)::int AS n FROM attempt_reservations WHERE subject = $1", [req.subject], c))!.n as number;
        }),
      "attempt-reservation",
    );
  }

  async releaseAttempt(req: { subject: string; id: string }): Promise<boolean> {
    return (await this.guard(() => this.count("DELETE FROM attempt_reservations WHERE subject = $1 AND id = $2", [req.subject, req.id]))) === 1;
  }

  async releaseExpiredAttempts(req: { subject: string; now: Date }): Promise<number> {
    const now = ms(req.now);
    return this.guard(() => this.count("DELETE FROM attempt_reservations WHERE subject = $1 AND expires_at <= $2", [req.subject, now]));
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
      body: text(row.body),
      seal: bytes(row.seal),
    };
  }

  async createPendingApproval(p: NewPendingApproval): Promise<void> {
    checkNewPendingApproval(p);
    const values = [p.id, p.method, p.requestDigest, p.request, p.requestedBy, ms(p.requestedAt), ms(p.expiresAt), utf8(p.body), buf(p.seal)];
    // R-3.2.1.6: the partial unique index keeps one PENDING record per (method, digest, requester).
    await this.guard(
      () =>
        this.count(
          `INSERT INTO pending_approvals (id, version, method, request_digest, request, requested_by, requested_at, expires_at,
             state, decided_by, decided_at, body, seal)
           VALUES ($1, 1, $2, $3, $4, $5, $6, $7, 'PENDING', NULL, NULL, $8, $9)`,
          values,
        ),
      "pending-approval",
    );
  }

  async getPendingApproval(id: string): Promise<PendingApprovalRecord | undefined> {
    const row = await this.guard(() => this.one("SELECT * FROM pending_approvals WHERE id = $1", [id]));
    return row && this.pendingApprovalFromRow(row);
  }

  async findPendingApproval(req: { method: string; requestDigest: string; requestedBy: string; now: Date }): Promise<PendingApprovalRecord | undefined> {
    const now = ms(req.now);
    const row = await this.guard(() =>
      this.one(
        `SELECT * FROM pending_approvals
         WHERE method = $1 AND request_digest = $2 AND requested_by = $3 AND state = 'PENDING' AND expires_at > $4`,
        [req.method, req.requestDigest, req.requestedBy, now],
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
    const values: unknown[] = [];
    const param = (v: unknown): string => {
      values.push(v);
      return `$${values.length}`;
    };
    if (query.state === "PENDING") conditions.push(`state = 'PENDING' AND expires_at > ${param(now)}`);
    else if (query.state === "EXPIRED") conditions.push(`(state = 'EXPIRED' OR (state = 'PENDING' AND expires_at <= ${param(now)}))`);
    else if (query.state !== undefined) conditions.push(`state = ${param(query.state)}`);
    if (query.requestedBy !== undefined) conditions.push(`requested_by = ${param(query.requestedBy)}`);
    if (query.after !== undefined) conditions.push(`id ${descending ? "<" : ">"} ${param(query.after)}`);
    const where = conditions.length > 0 ? `WHERE ${conditions.join(" AND ")}` : "";
    const limit = param(query.limit + 1);
    const rows = await this.guard(() => this.rows(`SELECT * FROM pending_approvals ${where} ORDER BY id ${descending ? "DESC" : "ASC"} LIMIT ${limit}`, values));
    const more = rows.length > query.limit;
    const items = rows.slice(0, query.limit).map((r) => this.pendingApprovalFromRow(r));
    return { items, next: more ? items[items.length - 1]?.id : undefined };
  }

  async decidePendingApproval(req: DecidePendingApproval): Promise<PendingApprovalRecord | undefined> {
    checkPendingDecision(req);
    const now = ms(req.now);
    const decidedAt = req.decidedAt === undefined ? null : ms(req.decidedAt);
    const row = await this.guard(() =>
      // R-3.2.1.6: one conditional UPDATE; only the caller that moves it out of PENDING gets the row.
      // Approve and reject only before expiry; expire only after it.
      this.one(
        `UPDATE pending_approvals
         SET state = $1, version = version + 1, decided_by = $2, decided_at = $3, body = $4, seal = $5
         WHERE id = $6 AND state = $7
           AND (($1 <> 'EXPIRED' AND expires_at > $8) OR ($1 = 'EXPIRED' AND expires_at <= $8))
         RETURNING *`,
        [req.to, req.decidedBy ?? null, decidedAt, utf8(req.body), buf(req.seal), req.id, req.from, now],
      ),
    );
    return row && this.pendingApprovalFromRow(row);
  }

  async completePendingApproval(req: CompletePendingApproval): Promise<PendingApprovalRecord | undefined> {
    checkPendingCompletion(req);
    ms(req.now);
    const row = await this.guard(() =>
      // R-3.2.1.6: the outcome is recorded once, by the caller that performed the approved request.
      this.one(
        "UPDATE pending_approvals SET state = $1, version = version + 1, body = $2, seal = $3 WHERE id = $4 AND state = $5 RETURNING *",
        [req.to, utf8(req.body), buf(req.seal), req.id, req.from],
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
      body: text(row.body),
      prevHash: bytes(row.prev_hash),
      hash: bytes(row.hash),
    };
  }

  private checkpointFromRow(row: Row): AuditCheckpoint {
    return {
      nodeId: row.node_id as string,
      sequence: row.sequence as number,
      time: new Date(row.time as number),
      body: text(row.body),
      signature: bytes(row.signature),
    };
  }

  async appendAuditRecord(r: AuditRecord): Promise<void> {
    return this.appendAuditRecords([r]);
  }

  async appendAuditRecords(records: readonly AuditRecord[]): Promise<void> {
    checkLimit(records.length, "records.length");
    const first = records[0]!;
    const times = records.map((r) => ms(r.time));
    await this.guard(() =>
      this.tx(async (c) => {
        // R-3.2.2.4: one writer per node chain at a time (any connection), so the head read here is the head.
        await c.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [lockSpace.audit, first.nodeId]);
        const latest = await this.one("SELECT sequence, hash FROM audit_records WHERE node_id = $1 ORDER BY sequence DESC LIMIT 1", [first.nodeId], c);
        let previous = latest && { sequence: latest.sequence as number, hash: bytes(latest.hash) };
        for (const r of records) {
          // R-3.2.2.4: the chain only grows by records that each link to the one before.
          const expected = (previous?.sequence ?? 0) + 1;
          if (r.nodeId !== first.nodeId) throw new AuditChainError(r.nodeId, r.sequence, "a batch holds one node's records");
          if (r.sequence !== expected) throw new AuditChainError(r.nodeId, r.sequence, `expected sequence ${expected}`);
          if (previous && !equalBytes(r.prevHash, previous.hash)) throw new AuditChainError(r.nodeId, r.sequence, "prevHash is not the previous record's hash");
          previous = { sequence: r.sequence, hash: r.hash };
        }
        await c.query(
          `INSERT INTO audit_records (node_id, sequence, time, event, body, prev_hash, hash)
           SELECT $1, u.sequence, u.time, u.event, u.body, u.prev_hash, u.hash
           FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bytea[], $6::bytea[], $7::bytea[]) AS u(sequence, time, event, body, prev_hash, hash)`,
          [
            first.nodeId,
            records.map((r) => r.sequence),
            times,
            records.map((r) => r.event),
            records.map((r) => utf8(r.body)),
            records.map((r) => buf(r.prevHash)),
            records.map((r) => buf(r.hash)),
          ],
        );
      }),
    );
  }

  async readAuditRecords(req: { nodeId: string; fromSequence: number; limit: number }): Promise<AuditRecord[]> {
    checkLimit(req.limit);
    const rows = await this.guard(() =>
      this.rows("SELECT * FROM audit_records WHERE node_id = $1 AND sequence >= $2 ORDER BY sequence LIMIT $3", [req.nodeId, req.fromSequence, req.limit]),
    );
    return rows.map((r) => this.auditFromRow(r));
  }

  async readAuditRecordsByEvent(req: { nodeId: string; event: string; fromSequence: number; limit: number }): Promise<AuditRecord[]> {
    checkLimit(req.limit);
    const rows = await this.guard(() =>
      this.rows(
        "SELECT * FROM audit_records WHERE node_id = $1 AND event = $2 AND sequence >= $3 ORDER BY sequence LIMIT $4",
        [req.nodeId, req.event, req.fromSequence, req.limit],
      ),
    );
    return rows.map((r) => this.auditFromRow(r));
  }

  async latestAuditRecord(nodeId: string): Promise<AuditRecord | undefined> {
    const row = await this.guard(() => this.one("SELECT * FROM audit_records WHERE node_id = $1 ORDER BY sequence DESC LIMIT 1", [nodeId]));
    return row && this.auditFromRow(row);
  }

  async listAuditNodes(): Promise<string[]> {
    // One index seek per node (a recursive "loose index scan") rather than a scan of every record.
    const rows = await this.guard(() =>
      this.rows(
        `WITH RECURSIVE nodes (id) AS (
           SELECT MIN(node_id) FROM audit_records
           UNION ALL
           SELECT (SELECT MIN(node_id) FROM audit_records WHERE node_id > nodes.id) FROM nodes WHERE nodes.id IS NOT NULL
         )
         SELECT id FROM nodes WHERE id IS NOT NULL`,
      ),
    );
    return rows.map((r) => r.id as string);
  }

  async appendAuditCheckpoint(cp: AuditCheckpoint): Promise<void> {
    const time = ms(cp.time);
    await this.guard(() =>
      this.tx(async (c) => {
        await c.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [lockSpace.checkpoints, cp.nodeId]);
        const latest = (await this.one("SELECT MAX(sequence) AS s FROM audit_checkpoints WHERE node_id = $1", [cp.nodeId], c))?.s as number | null;
        if (latest !== null && cp.sequence <= latest) throw new AuditChainError(cp.nodeId, cp.sequence, `a checkpoint at ${latest} exists`);
        if (!(await this.one("SELECT 1 FROM audit_records WHERE node_id = $1 AND sequence = $2", [cp.nodeId, cp.sequence], c))) {
          throw new AuditChainError(cp.nodeId, cp.sequence, "no audit record at this sequence");
        }
        await c.query("INSERT INTO audit_checkpoints (node_id, sequence, time, body, signature) VALUES ($1, $2, $3, $4, $5)", [
          cp.nodeId, cp.sequence, time, utf8(cp.body), buf(cp.signature),
        ]);
      }),
    );
  }

  async latestAuditCheckpoint(nodeId: string): Promise<AuditCheckpoint | undefined> {
    const row = await this.guard(() => this.one("SELECT * FROM audit_checkpoints WHERE node_id = $1 ORDER BY sequence DESC LIMIT 1", [nodeId]));
    return row && this.checkpointFromRow(row);
  }

  async readAuditCheckpoints(req: { nodeId: string; fromSequence: number; limit: number }): Promise<AuditCheckpoint[]> {
    checkLimit(req.limit);
    const rows = await this.guard(() =>
      this.rows("SELECT * FROM audit_checkpoints WHERE node_id = $1 AND sequence >= $2 ORDER BY sequence LIMIT $3", [req.nodeId, req.fromSequence, req.limit]),
    );
    return rows.map((r) => this.checkpointFromRow(r));
  }
}

/**
 * Applies the pending migrations in one transaction under an advisory lock: nodes starting
 * together wait for the first, then find the schema up to date. A schema newer than this build
 * knows is refused (fail closed: an older node must not write into a newer schema).
 */
async function migrate(pool: pg.Pool): Promise<void> {
  const latestKnown = pgMigrations[pgMigrations.length - 1]?.version ?? 0;
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock($1, 0)", [lockSpace.migrate]);
    await client.query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)");
    const applied = ((await client.query<{ v: number | null }>("SELECT MAX(version) AS v FROM schema_migrations")).rows[0]?.v) ?? 0;
    if (applied > latestKnown) {
      throw new Error(`the database schema is at version ${applied}, newer than this Inkan knows (${latestKnown}): refusing to use it`);
    }
    for (const m of pgMigrations) {
      if (m.version <= applied) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
    }
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {
      broken = true;
    });
    throw e;
  } finally {
    client.release(broken);
  }
}
