/**
 * {@link CrossNodeLock} on PostgreSQL: a session advisory lock per name, held on a connection of
 * its own while `fn` runs. A lock that cannot be taken within 30 s, or a database that cannot be
 * reached, fails the call (STORE_FAILURE): the update does not run unlocked.
 */
import pg from "pg";
import { InkanError } from "../../errors.js";
import type { CrossNodeLock } from "../cross-node-lock.js";

/** The first key of the two-key advisory lock (the store's own locks use 0x494e4b00 to 0x494e4b04). */
const lockSpace = 0x494e4b10;

export interface PostgresLock {
  lock: CrossNodeLock;
  close(): Promise<void>;
}

export function createPostgresLock(uri: string): PostgresLock {
  const pool = new pg.Pool({ connectionString: uri, max: 2, connectionTimeoutMillis: 10_000, statement_timeout: 30_000, query_timeout: 35_000, keepAlive: true });
  pool.on("error", () => undefined);
  return {
    async lock<T>(name: string, fn: () => Promise<T>): Promise<T> {
      let connected: pg.PoolClient | undefined;
      try {
        connected = await pool.connect();
        await connected.query("SELECT pg_advisory_lock($1, hashtext($2))", [lockSpace, name]);
      } catch (err) {
        connected?.release(true);
        throw new InkanError("STORE_FAILURE", `the cross-node lock ${name} could not be taken`, { cause: err });
      }
      const client = connected;
      try {
        return await fn();
      } finally {
        // Releasing the connection with an error closes it, which also drops the lock if the unlock failed.
        await client.query("SELECT pg_advisory_unlock($1, hashtext($2))", [lockSpace, name]).then(
          () => client.release(),
          (err: unknown) => client.release(err instanceof Error ? err : true),
        );
      }
    },
    close: () => pool.end(),
  };
}
