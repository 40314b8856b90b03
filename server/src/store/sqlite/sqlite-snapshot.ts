/**
 * The SQLite side of `inkan backup` (issue 22, cli/backup.ts): a copy of the live database by the
 * online backup API (page by page while the server keeps writing; one consistent state), and the
 * audit high-water marks of that copy.
 */
import Database from "better-sqlite3";
import { syncWalOf, type SyncFn } from "./wal-sync.js";

/** Per node: the newest audit sequence, and that record's hash (hex). */
export interface AuditMarks {
  highWaterMarks: Record<string, number>;
  highWaterHashes: Record<string, string>;
}

/** The newest record of each node: its sequence and hash. */
export const auditMarksQuery =
  "SELECT a.node_id, a.sequence AS seq, a.hash FROM audit_records a JOIN (SELECT node_id, MAX(sequence) AS m FROM audit_records GROUP BY node_id) b ON a.node_id = b.node_id AND a.sequence = b.m";

export function auditMarksOf(rows: readonly { node_id: string; seq: number | string; hash: Uint8Array }[]): AuditMarks {
  return {
    highWaterMarks: Object.fromEntries(rows.map((r) => [r.node_id, Number(r.seq)])),
    highWaterHashes: Object.fromEntries(rows.map((r) => [r.node_id, Buffer.from(r.hash).toString("hex")])),
  };
}

/** The audit marks of a SQLite database file (opened read only). */
export function sqliteAuditMarks(file: string): AuditMarks {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return auditMarksOf(db.prepare(auditMarksQuery).all() as { node_id: string; seq: number; hash: Uint8Array }[]);
  } finally {
    db.close();
  }
}

/**
 * Copies the live store file to `copy` with the online backup API; returns the copy's audit marks.
 * Issue 20: the server acknowledges a commit only after its WAL sync, but others can read it
 * before; so the live -wal file is synced AFTER the copy was taken (every frame the copy read was
 * written before that sync starts; a frame already checkpointed away was synced by the checkpoint),
 * and a failed sync fails the backup: a copy never holds a state the live store may lose on power
 * loss. `sync` is the tests' seam.
 */
export async function snapshotSqlite(live: string, copy: string, sync?: SyncFn): Promise<AuditMarks> {
  const db = new Database(live, { fileMustExist: true });
  try {
    db.pragma("busy_timeout = 10000");
    await db.backup(copy);
    await syncWalOf(live, sync); // while this connection keeps the -wal file from being removed
  } finally {
    db.close();
  }
  return sqliteAuditMarks(copy);
}
