/**
 * The database server's clock as the shared time source of the nodes on one PostgreSQL database
 * (issue 21, clock.ts). A pool of one connection of its own, so a busy store pool never delays a
 * time sample (a delayed sample would be refused for its round trip).
 */
import pg from "pg";

export interface PostgresTimeSource {
  /** The database server's `clock_timestamp()` (the time of the statement, not of a transaction). */
  read(): Promise<Date>;
  close(): Promise<void>;
}

export function createPostgresTimeSource(uri: string): PostgresTimeSource {
  const pool = new pg.Pool({ connectionString: uri, max: 1, idleTimeoutMillis: 0, connectionTimeoutMillis: 5_000, query_timeout: 5_000, keepAlive: true });
  pool.on("error", () => undefined); // a dead idle connection is replaced at the next sample
  return {
    async read() {
      // Epoch milliseconds as text: no time zone or date parsing on either side.
      const res = await pool.query<{ ms: string }>("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS ms");
      const ms = Number(res.rows[0]?.ms);
      if (!Number.isSafeInteger(ms)) throw new Error("clock_timestamp() answered no time");
      return new Date(ms);
    },
    close: () => pool.end(),
  };
}
