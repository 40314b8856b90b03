/**
 * The PostgreSQL side of `inkan backup` and `inkan restore` (issue 22, cli/backup.ts, restore.ts):
 * `pg_dump` of one consistent state whose audit high-water marks are read in the same snapshot,
 * `pg_restore`, and the check that no other session uses the database.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import pg from "pg";
import { InkanError } from "../../errors.js";
import { auditMarksOf, auditMarksQuery, type AuditMarks } from "../sqlite/sqlite-snapshot.js";

const run = promisify(execFile);

function missingTool(err: unknown, tool: string): unknown {
  return (err as { code?: string }).code === "ENOENT" ? new InkanError("STORE_FAILURE", `${tool} is not installed (apt-get install -y postgresql-client)`, { cause: err }) : err;
}

/**
 * `pg_dump --format=custom --snapshot=S` into `copy`, where S is exported by a REPEATABLE READ
 * transaction that also reads the audit marks: the dump and the marks are one state.
 */
export async function snapshotPostgres(uri: string, copy: string): Promise<AuditMarks> {
  const client = new pg.Client({ connectionString: uri });
  await client.connect();
  try {
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const snapshot = (await client.query("SELECT pg_export_snapshot() AS s")).rows[0].s as string;
    const marks = auditMarksOf((await client.query(auditMarksQuery)).rows as { node_id: string; seq: string; hash: Uint8Array }[]);
    await run("pg_dump", ["--format=custom", `--snapshot=${snapshot}`, "--no-owner", "--file", copy, "--dbname", uri]).catch((err: unknown) => {
      throw missingTool(err, "pg_dump");
    });
    await client.query("COMMIT");
    return marks;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Replaces the database's content with a `snapshotPostgres` dump, in one transaction. */
export async function restorePostgres(uri: string, dump: string): Promise<void> {
  await run("pg_restore", ["--clean", "--if-exists", "--no-owner", "--single-transaction", "--dbname", uri, dump]).catch((err: unknown) => {
    throw missingTool(err, "pg_restore");
  });
}

/** The number of other sessions connected to the database (SAM nodes, tools). */
export async function otherSessions(uri: string): Promise<number> {
  const client = new pg.Client({ connectionString: uri });
  await client.connect();
  try {
    return Number((await client.query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")).rows[0].n);
  } finally {
    await client.end().catch(() => undefined);
  }
}
