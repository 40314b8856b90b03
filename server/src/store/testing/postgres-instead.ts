/**
 * Test support (issue 21, issue 22): runs a test server on PostgreSQL. The harness initializes a
 * SQLite store; `postgresInstead` is its store hook that copies those rows into a migrated, empty
 * PostgreSQL database and answers every store call from a PostgresStore instead.
 */
import pg from "pg";
import type { Store } from "../port.js";

/** The part of a better-sqlite3 database the copy reads (typed here: drivers stay in their adapters). */
interface SqliteRows {
  prepare(sql: string): { all(): unknown[] };
}
import { createPostgresStore, type PostgresStore } from "../postgres/postgres-store.js";

/** Copies every row of an initialized SQLite store into the (migrated, empty) PostgreSQL database, table by table. */
export async function copySqliteToPostgres(db: SqliteRows, uri: string): Promise<void> {
  const client = new pg.Client({ connectionString: uri });
  await client.connect();
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'").all() as { name: string }[])
      .map((t) => t.name)
      .sort((a, b) => (a === "transactions" ? -1 : b === "transactions" ? 1 : 0)); // the DTBS/R list's parent first
    for (const table of tables) {
      const types = new Map(
        (await client.query<{ column_name: string; data_type: string }>("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1", [table])).rows.map((r) => [r.column_name, r.data_type]),
      );
      for (const row of db.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[]) {
        const columns = Object.keys(row);
        const values = columns.map((c) => {
          const v = row[c];
          if (v === null) return null;
          if (types.get(c) === "bytea" && typeof v === "string") return Buffer.from(v, "utf8");
          if (types.get(c) === "boolean") return v === 1;
          return v;
        });
        await client.query(`INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(", ")})`, values);
      }
    }
  } finally {
    await client.end();
  }
}

/**
 * The harness's store hook: copies the just-initialized SQLite store into PostgreSQL, closes it,
 * and answers every store call from a PostgresStore on `uri` (each call waits for the copy).
 */
export function postgresInstead(uri: string, poolSize = 8): (sqlite: Store) => Store {
  return (sqlite) => {
    const ready = (async (): Promise<PostgresStore> => {
      const store = await createPostgresStore({ uri, poolSize });
      await copySqliteToPostgres((sqlite as unknown as { db: SqliteRows }).db, uri);
      await sqlite.close();
      return store;
    })();
    return new Proxy({} as Store, {
      get(_, prop) {
        if (prop === "then") return undefined; // not a thenable
        return async (...args: unknown[]) => {
          const store = (await ready) as unknown as Record<PropertyKey, (...a: unknown[]) => unknown>;
          return store[prop]!(...args);
        };
      },
    });
  };
}

