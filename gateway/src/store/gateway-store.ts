/**
 * The gateway's own store (issue 15): the SQLite file of its data directory by default, or, when the
 * SAM runs on several nodes, the shared PostgreSQL database (INKAN_STORE=postgres://..., the SAM
 * nodes' setting) in a schema of its own (`inkan_gateway`) with its own migrations, applied under an
 * advisory lock. One asynchronous interface for both; the SQL is written once with `?` placeholders
 * and table names that both schemas have (requests, portal_sessions).
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { migrations, pgMigrations } from "./migrations.js";

export interface GatewayStore {
  /** True when other gateway nodes may share it (PostgreSQL): changes may come from elsewhere. */
  readonly shared: boolean;
  /** Runs a statement; the number of rows it changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
  get<T>(sql: string, params?: readonly unknown[]): Promise<T | undefined>;
  all<T>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

/** The gateway's own SQLite file in the data directory (beside the SAM's, never shared with it). */
export function gatewayStoreFile(dataDir: string): string {
  return join(dataDir, "gateway.sqlite");
}

export const isPostgresStore = (store: string) => /^postgres(ql)?:\/\//.test(store);

/** The store a gateway uses: `store` a postgres:// URI (INKAN_STORE), otherwise (no setting, or a store the gateway
 * cannot share, e.g. MongoDB: the CLI says so) the data directory's SQLite file. */
export async function openGatewayStore(options: { dataDir: string; store?: string | undefined }): Promise<GatewayStore> {
  const s = options.store;
  if (s !== undefined && isPostgresStore(s)) return openPostgresGatewayStore(s);
  return new SqliteGatewayStore(openGatewayDatabase(gatewayStoreFile(options.dataDir)));
}

export class SqliteGatewayStore implements GatewayStore {
  readonly shared = false;
  constructor(readonly db: Database.Database) {}
  async run(sql: string, params: readonly unknown[] = []): Promise<number> {
    return this.db.prepare(sql).run(...params).changes;
  }
  async get<T>(sql: string, params: readonly unknown[] = []): Promise<T | undefined> {
    return this.db.prepare(sql).get(...params) as T | undefined;
  }
  async all<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return this.db.prepare(sql).all(...params) as T[];
  }
  async close(): Promise<void> {
    this.db.close();
  }
}

/** Opens (creating and migrating as needed) the gateway's SQLite store. */
export function openGatewayDatabase(file: string): Database.Database {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("busy_timeout = 5000");
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT");
  const applied = new Set((db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map((r) => r.version));
  const known = Math.max(...migrations.map((m) => m.version));
  const newest = Math.max(0, ...applied);
  // A store written by a newer gateway: refuse rather than run on a schema we do not know.
  if (newest > known) throw new Error(`gateway store ${file} has schema version ${newest}; this gateway knows up to ${known}`);
  for (const m of migrations) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(m.version, Date.now());
    })();
  }
  return db;
}

/** The gateway's schema in the shared database: apart from the SAM's tables (public schema). */
export const gatewaySchema = "inkan_gateway";
/** Advisory lock key for the gateway's migrations (the SAM's store uses 0x494e4b00 to 0x494e4b04). */
const migrateLock = 0x494e4b10;

/** `?` placeholders to PostgreSQL's `$n` (the gateway's SQL has no `?` inside literals). */
const numbered = (sql: string) => {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
};

/** BIGINT (ms timestamps) as numbers, as SQLite returns them. */
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
};

export async function openPostgresGatewayStore(uri: string): Promise<GatewayStore> {
  const pool = new pg.Pool({ connectionString: uri, max: 5, types, options: `-c search_path=${gatewaySchema}` });
  pool.on("error", () => undefined); // an idle connection lost: the next query reports it
  try {
    await migratePostgres(pool);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  return {
    shared: true,
    async run(sql, params = []) {
      return (await pool.query(numbered(sql), [...params])).rowCount ?? 0;
    },
    async get<T>(sql: string, params: readonly unknown[] = []) {
      return (await pool.query(numbered(sql), [...params])).rows[0] as T | undefined;
    },
    async all<T>(sql: string, params: readonly unknown[] = []) {
      return (await pool.query(numbered(sql), [...params])).rows as T[];
    },
    async close() {
      await pool.end();
    },
  };
}

/** Gateway nodes starting together: one migrates, the others wait on the lock and find it done. */
async function migratePostgres(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock($1, 0)", [migrateLock]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${gatewaySchema}`);
    await client.query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
    const newest = (await client.query<{ v: number | null }>("SELECT MAX(version) AS v FROM schema_migrations")).rows[0]?.v ?? 0;
    const known = Math.max(...pgMigrations.map((m) => m.version));
    if (newest > known) throw new Error(`the gateway's schema in the shared database has version ${newest}; this gateway knows up to ${known}`);
    for (const m of pgMigrations) {
      if (m.version <= newest) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [m.version, Date.now()]);
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
