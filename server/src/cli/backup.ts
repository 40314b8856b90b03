/**
 * `inkan backup` (issue 22): a consistent online snapshot of the store plus the data directory's
 * files that are not the crypto module's token, in one file (backup-bundle.ts), audited when taken.
 *
 * - SQLite: the online backup API (better-sqlite3 `db.backup()`, store/sqlite/sqlite-snapshot.ts), page by page while the server
 *   keeps writing; the copy is one consistent state of the database.
 * - PostgreSQL: `pg_dump --format=custom --snapshot=S`, where S is exported by a REPEATABLE READ
 *   transaction that also reads the audit high-water marks: the dump and the marks are one state.
 * - Files: the configuration, the PKI, policy and other files of the data directory, never the
 *   token (`tokens/`), its PIN files (`hsm/`), its SoftHSM2 configuration, the live database
 *   files or logs. Keys are backed up with the HSM's own tools (ROLLBACK.md, README runbook).
 *
 * The snapshot's identity (SHA-256 of its content and the audit high-water marks) is in the file
 * and in a "store.backup_created" audit record, written on the CLI's own audit chain
 * (restore-state.ts CLI_NODE_ID) right after the snapshot, so it is not inside the snapshot.
 */
import { mkdtempSync, readdirSync, rmSync, statSync, lstatSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { createAuditLog, type ChainedAuditLog } from "../audit/audit-log.js";
import { storeBackupTaken } from "../audit/events.js";
import type { Config } from "../config/config.js";
import type { AuditSigning, DataObjects, SystemKeys } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { Store } from "../store/port.js";
import { snapshotPostgres } from "../store/postgres/postgres-snapshot.js";
import { snapshotSqlite } from "../store/sqlite/sqlite-snapshot.js";
import { BUNDLE_HEADER, STORE_ENTRY, sha256File, snapshotIdOf, writeBundle, type BundleFile, type BundleManifest } from "./backup-bundle.js";
import { CLI_NODE_ID, type HighWaterMarks } from "../integrity/restore-state.js";

/** What `inkan backup` and `inkan restore` open: the configured crypto module and store. */
export interface Opened {
  cryptoModule: AuditSigning & DataObjects & SystemKeys & { close(): Promise<void> };
  store: Store;
}
export type Opener = (config: Config) => Promise<Opened>;

/** Paths in the data directory that are never backed up (relative, "/"-separated), and why. */
export function excludedPaths(config: Config): string[] {
  const excluded = ["tokens", "hsm", "softhsm2.conf", "store.sqlite3", "store.sqlite3-wal", "store.sqlite3-shm", "store.sqlite3-journal", "serving.pid"];
  if (config.cryptoModule.kind !== "embedded" && config.cryptoModule.pinFile) {
    const rel = relative(config.dataDir, config.cryptoModule.pinFile);
    if (!rel.startsWith("..")) excluded.push(rel.split(sep).join("/"));
  }
  return excluded;
}

function isExcluded(rel: string, excluded: readonly string[]): boolean {
  const base = rel.split("/").pop() ?? "";
  return (
    excluded.some((e) => rel === e || rel.startsWith(`${e}/`)) ||
    base.endsWith(".log") ||
    base.startsWith("store.sqlite3.") || // kept databases of earlier restores
    base.startsWith(".inkan-")
  );
}

/** The data directory's regular files to back up, relative paths in sorted order. */
function dataDirFiles(dataDir: string, excluded: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const full = join(dir, name);
      const rel = relative(dataDir, full).split(sep).join("/");
      if (isExcluded(rel, excluded)) continue;
      const st = lstatSync(full);
      if (st.isDirectory()) walk(full);
      else if (st.isFile()) out.push(rel);
    }
  };
  walk(dataDir);
  return out;
}

export interface BackupResult {
  snapshotId: string;
  out: string;
  highWaterMarks: HighWaterMarks;
  files: number;
  excluded: string[];
}

/** Takes the backup of `config.dataDir` into `out` (which must not exist) and audits it. */
export async function takeBackup(config: Config, out: string, open: Opener, now: () => Date = () => new Date()): Promise<BackupResult> {
  if (config.store.kind === "mongodb") throw new InkanError("INVALID_REQUEST", "inkan backup supports SQLite and PostgreSQL stores; back up MongoDB with mongodump");
  const work = mkdtempSync(join(dirname(out), ".inkan-backup-"));
  try {
    const kind = config.store.kind;
    const copy = join(work, "store");
    const { highWaterMarks, highWaterHashes } = kind === "sqlite" ? await snapshotSqlite(config.store.file, copy) : await snapshotPostgres(config.store.uri, copy);
    const excluded = excludedPaths(config);
    const sources = new Map<string, string>([[STORE_ENTRY[kind], copy]]);
    for (const rel of dataDirFiles(config.dataDir, excluded)) sources.set(rel, join(config.dataDir, rel));
    const files: BundleFile[] = [...sources].map(([path, src]) => ({ path, ...sha256File(src), mode: statSync(src).mode & 0o777 }));
    const manifest: BundleManifest = { format: BUNDLE_HEADER, snapshotId: "", takenAt: now().toISOString(), store: kind, highWaterMarks, highWaterHashes, files, excluded };
    manifest.snapshotId = snapshotIdOf(manifest);
    writeBundle(out, manifest, (path) => sources.get(path)!);
    // Audited once the file is complete; if this fails the backup is not reported as taken.
    try {
      const opened = await open(config);
      try {
        await auditOnCliChain(opened, (log) => log.record(storeBackupTaken({ snapshotId: manifest.snapshotId, highWaterMarks, store: kind })));
      } finally {
        await opened.store.close().catch(() => undefined);
        await opened.cryptoModule.close().catch(() => undefined);
      }
    } catch (err) {
      rmSync(out, { force: true });
      throw err;
    }
    return { snapshotId: manifest.snapshotId, out, highWaterMarks, files: files.length, excluded };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Appends on the CLI's audit chain of `opened.store` and closes the chain (a checkpoint into the module); the caller closes what it opened. */
export async function auditOnCliChain(opened: Opened, write: (log: ChainedAuditLog) => Promise<void>): Promise<void> {
  const log = await createAuditLog({ nodeId: CLI_NODE_ID, store: opened.store, cryptoModule: opened.cryptoModule, checkpointTimer: false });
  try {
    await write(log);
  } finally {
    await log.close();
  }
}
