/**
 * `inkan restore` (issue 22, ROLLBACK.md "Backup and restore"): puts a backup back, keeps what
 * happened since, and leaves the SAM refusing to sign until two security officers acknowledge.
 *
 * 1. The backup is checked whole (every file's SHA-256, the snapshot id) before anything changes.
 * 2. Refused while a server runs on the data directory (its serving.pid names a live process) or,
 *    for PostgreSQL, while another session is connected to the database.
 * 3. The audit tail written after the snapshot is kept: every node's records and checkpoints after
 *    the snapshot's high-water marks are read from the live store, written to
 *    `restore-<id>.audit-tail.jsonl` in the data directory (before anything is overwritten), and
 *    appended to the restored store, which then holds the whole chain again: the crypto module's
 *    checkpoints still match it, `inkan audit verify` says OK, and the rollback check (issue 14)
 *    knows every head the tail journaled. The live chain must continue the snapshot's (the same
 *    record hash at each mark); otherwise nothing is restored.
 * 4. Every one-time object and open transaction in the restored store is voided at once, before
 *    any server runs on it (the acknowledgement does it again).
 * 5. "store.restored" (restore id, snapshot id, old and new high-water marks) is appended on the
 *    CLI's audit chain of the restored store and checkpointed into the crypto module: from then on
 *    every start finds the restore unacknowledged until "store.restore_acknowledged" follows.
 * 6. SQLite: the old database file is kept beside it (`store.sqlite3.before-restore-<time>`).
 *
 * One exception to "the acknowledgement re-bases the heads": the privileged users and their keys
 * changed after the snapshot are re-sealed above their heads here (journaled on the CLI chain),
 * because the officers must be able to authenticate to acknowledge; a user record below its head
 * would refuse every request of that officer (INTEGRITY_VIOLATION) and could leave nobody able to.
 */
import { randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { AuditLog } from "../audit/audit-log.js";
import { recordVersioned, storeRestored } from "../audit/events.js";
import { RECORD_VERSIONED, versionedEntryOf } from "../audit/versioned-journal.js";
import { RecordSealer } from "../integrity/record-sealer.js";
import { recordsOfEvent } from "../integrity/restore-state.js";
import type { Config } from "../config/config.js";
import { InkanError } from "../errors.js";
import { equalBytes } from "../audit/record-form.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";
import type { AuditCheckpoint, AuditRecord, RecordKind, SealedRecord, Store } from "../store/port.js";
import { maxPageSize } from "../store/port.js";
import { STORE_ENTRY, readBundle, type BundleManifest } from "./backup-bundle.js";
import { auditOnCliChain, excludedPaths, type Opener } from "./backup.js";
import type { HighWaterMarks } from "../integrity/restore-state.js";
import { servingPid } from "../integrity/serve-marker.js";
import { otherSessions, restorePostgres } from "../store/postgres/postgres-snapshot.js";

export interface RestoreResult {
  restoreId: string;
  snapshotId: string;
  /** The audit log before the restore. */
  oldHighWaterMarks: HighWaterMarks;
  /** The snapshot's. */
  newHighWaterMarks: HighWaterMarks;
  /** Audit records kept from after the snapshot. */
  keptRecords: number;
  tailFile: string;
  /** SQLite: where the database from before the restore was kept. */
  keptDatabase?: string;
}

interface Tail {
  /** Per node, the hash of the live record at the snapshot's mark: the restored chain must end with it. */
  atMark: Map<string, Uint8Array>;
  records: AuditRecord[];
  checkpoints: AuditCheckpoint[];
  oldHighWaterMarks: HighWaterMarks;
}

/** Restores `from` into `config.dataDir`; see the module comment. `openStore` opens a store at the configured place. */
export async function restoreBackup(config: Config, from: string, open: Opener, now: () => Date = () => new Date()): Promise<RestoreResult> {
  const pid = servingPid(config.dataDir);
  if (pid !== undefined) throw new InkanError("STATE_CONFLICT", `a server (pid ${pid}) serves ${config.dataDir}: stop it (every node) before restoring (if none runs, remove ${config.dataDir}/serving.pid)`);
  if (config.store.kind === "mongodb") throw new InkanError("INVALID_REQUEST", "inkan restore supports SQLite and PostgreSQL stores");
  const work = mkdtempSync(join(config.dataDir, ".inkan-restore-"));
  try {
    // 1. The whole backup is checked before anything changes.
    const extracted = new Map<string, string>();
    const manifest = readBundle(from, (f, bytes) => {
      const file = join(work, "files", ...f.path.split("/"));
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, bytes, { mode: f.mode & 0o777 });
      extracted.set(f.path, file);
    });
    const kind = config.store.kind;
    if (manifest.store !== kind) throw new InkanError("INVALID_REQUEST", `the backup holds a ${manifest.store} store; this data directory is configured for ${kind}`);
    const snapshot = extracted.get(STORE_ENTRY[kind]);
    if (!snapshot) throw new InkanError("INVALID_REQUEST", "the backup holds no store snapshot");
    if (kind === "postgres") {
      const n = await otherSessions(config.store.uri);
      if (n > 0) throw new InkanError("STATE_CONFLICT", `${n} other session(s) are connected to the database: stop every SAM node before restoring`);
    }

    // 3. The tail after the snapshot, from the live store, kept in a file before anything is overwritten.
    const restoreId = `rst_${randomUUID()}`;
    const opened = await open(config);
    let tail: Tail;
    try {
      tail = await readTail(opened.store, manifest);
    } finally {
      await opened.store.close().catch(() => undefined);
      await opened.cryptoModule.close().catch(() => undefined);
    }
    const tailFile = join(config.dataDir, `restore-${restoreId}.audit-tail.jsonl`);
    writeTailFile(tailFile, tail);

    let target: string | undefined;
    if (kind === "sqlite") {
      target = join(work, "store.sqlite3");
      renameSync(snapshot, target);
    } else {
      await restorePostgres(config.store.uri, snapshot);
    }
    const restoredStore = target ? await createSqliteStore({ file: target }) : undefined;
    const result = { restoreId, snapshotId: manifest.snapshotId, oldHighWaterMarks: tail.oldHighWaterMarks, newHighWaterMarks: manifest.highWaterMarks };
    const opened2 = await open(config);
    const store = restoredStore ?? opened2.store;
    try {
      await appendTail(store, tail);
      // 4. Nothing the snapshot held that may have been consumed since serves again.
      await store.voidOneTimeState({ now: now() });
      // 5. The restore is in the audit log, anchored in the crypto module.
      await auditOnCliChain({ cryptoModule: opened2.cryptoModule, store }, async (log) => {
        await rebasePrivilegedUsers(store, new RecordSealer({ keys: opened2.cryptoModule }), log, manifest.highWaterMarks, tail.oldHighWaterMarks);
        await log.record(storeRestored(result));
      });
    } finally {
      await restoredStore?.close().catch(() => undefined);
      await opened2.store.close().catch(() => undefined);
      await opened2.cryptoModule.close().catch(() => undefined);
    }
    // 6. SQLite: the restored file takes the live one's place; the live one is kept.
    let keptDatabase: string | undefined;
    if (target && config.store.kind === "sqlite") {
      const live = config.store.file;
      keptDatabase = `${live}.before-restore-${now().toISOString().replace(/[:.]/g, "-")}`;
      for (const suffix of ["", "-wal", "-shm"]) if (existsSync(live + suffix)) renameSync(live + suffix, keptDatabase + suffix);
      renameSync(target, live);
      chmodSync(live, 0o600);
    }
    // The data directory's other files (configuration, PKI, policy files...); never the token.
    const excluded = excludedPaths(config);
    for (const [path, file] of extracted) {
      if (path.startsWith("store/") || excluded.some((e) => path === e || path.startsWith(`${e}/`))) continue;
      const dest = join(config.dataDir, ...path.split("/"));
      mkdirSync(dirname(dest), { recursive: true });
      renameSync(file, dest);
    }
    return { ...result, keptRecords: tail.records.length, tailFile, ...(keptDatabase ? { keptDatabase } : {}) };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The privileged-user kinds re-based at restore time (see the module comment). */
const officerKinds = new Set(["privileged-user", "privileged-user-key"]);

/** Re-seals each privileged user and user key below its head (from the kept tail's versioned events) at head + 1, journaled on `log`. */
async function rebasePrivilegedUsers(store: Store, sealer: RecordSealer, log: AuditLog, from: HighWaterMarks, to: HighWaterMarks): Promise<void> {
  const heads = new Map<string, number>();
  for await (const r of recordsOfEvent(store, RECORD_VERSIONED, from, to)) {
    const entry = versionedEntryOf(r);
    if (entry && officerKinds.has(entry.key.slice(0, entry.key.indexOf(":")))) heads.set(entry.key, Math.max(heads.get(entry.key) ?? 0, entry.version));
  }
  for (const [key, head] of heads) {
    const colon = key.indexOf(":");
    const stored = await store.getRecord(key.slice(0, colon) as RecordKind, key.slice(colon + 1));
    if (!stored || stored.version >= head) continue;
    let current: SealedRecord = await sealer.verify(stored);
    while (current.version <= head) {
      const { seal: _seal, ...unsealed } = current;
      const next = await sealer.seal<SealedRecord>({ ...unsealed, version: current.version + 1 } as Omit<SealedRecord, "seal">);
      if (!(await store.updateRecord(next, current.version))) throw new InkanError("STATE_CONFLICT", `${key} changed while it was re-based`);
      current = next;
    }
    await log.record(recordVersioned({ key, version: current.version }));
  }
}

/** The records and checkpoints after the snapshot's marks; refuses when the live chain does not continue the snapshot's. */
async function readTail(store: Store, manifest: BundleManifest): Promise<Tail> {
  const marks = manifest.highWaterMarks;
  const records: AuditRecord[] = [];
  const checkpoints: AuditCheckpoint[] = [];
  const oldHighWaterMarks: HighWaterMarks = {};
  const atMark = new Map<string, Uint8Array>();
  const nodes = new Set([...(await store.listAuditNodes()), ...Object.keys(marks)]);
  for (const nodeId of [...nodes].sort()) {
    const mark = marks[nodeId] ?? 0;
    const latest = await store.latestAuditRecord(nodeId);
    oldHighWaterMarks[nodeId] = latest?.sequence ?? 0;
    if ((latest?.sequence ?? 0) < mark) {
      throw new InkanError("STATE_CONFLICT", `the live audit log of node ${nodeId} ends at ${latest?.sequence ?? 0}, before the snapshot's ${mark}: it is not a later state of this snapshot; nothing was restored`);
    }
    if (mark > 0) {
      const [record] = await store.readAuditRecords({ nodeId, fromSequence: mark, limit: 1 });
      if (record?.sequence !== mark) throw new InkanError("STATE_CONFLICT", `the live audit log of node ${nodeId} has no record ${mark}: nothing was restored`);
      // The live chain must continue the snapshot's: checked here, before anything is overwritten.
      if (Buffer.from(record.hash).toString("hex") !== manifest.highWaterHashes[nodeId]) {
        throw new InkanError("STATE_CONFLICT", `the live audit log of node ${nodeId} is not a later state of the snapshot's (record ${mark} differs): nothing was restored`);
      }
      atMark.set(nodeId, record.hash);
    }
    for (let next = mark + 1; ; ) {
      const page = await store.readAuditRecords({ nodeId, fromSequence: next, limit: maxPageSize });
      records.push(...page);
      if (page.length < maxPageSize) break;
      next = page.at(-1)!.sequence + 1;
    }
    for (let next = mark + 1; ; ) {
      const page = await store.readAuditCheckpoints({ nodeId, fromSequence: next, limit: maxPageSize });
      checkpoints.push(...page);
      if (page.length < maxPageSize) break;
      next = page.at(-1)!.sequence + 1;
    }
  }
  return { atMark, records, checkpoints, oldHighWaterMarks };
}

/** Appends the kept tail: the store checks that each record extends its node's chain (prevHash), so a snapshot the live log does not continue fails here. */
async function appendTail(store: Store, tail: Tail): Promise<void> {
  for (const [nodeId, hash] of tail.atMark) {
    const head = await store.latestAuditRecord(nodeId);
    if (!head || !equalBytes(head.hash, hash)) {
      throw new InkanError("STATE_CONFLICT", `the live audit log of node ${nodeId} is not a later state of the snapshot's (record ${head?.sequence ?? 0} differs): nothing was restored`);
    }
  }
  const byNode = new Map<string, AuditRecord[]>();
  for (const r of tail.records) byNode.set(r.nodeId, [...(byNode.get(r.nodeId) ?? []), r]);
  for (const [nodeId, records] of byNode) {
    const head = await store.latestAuditRecord(nodeId);
    const first = records[0]!;
    if ((head?.sequence ?? 0) + 1 !== first.sequence || (head && !equalBytes(head.hash, first.prevHash))) {
      throw new InkanError("STATE_CONFLICT", `the live audit log of node ${nodeId} does not continue the snapshot's at ${first.sequence}: nothing was restored`);
    }
    for (let i = 0; i < records.length; i += maxPageSize) await store.appendAuditRecords(records.slice(i, i + maxPageSize));
  }
  for (const c of tail.checkpoints) {
    const stored = await store.latestAuditCheckpoint(c.nodeId);
    if (!stored || stored.sequence < c.sequence) await store.appendAuditCheckpoint(c);
  }
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

/** The kept tail as JSON lines (records, then checkpoints), so it survives whatever follows. */
function writeTailFile(file: string, tail: Tail): void {
  const lines = [
    JSON.stringify({ format: "inkan-restore-tail/1", oldHighWaterMarks: tail.oldHighWaterMarks }),
    ...tail.records.map((r) => JSON.stringify({ record: { ...r, time: r.time.toISOString(), prevHash: b64(r.prevHash), hash: b64(r.hash) } })),
    ...tail.checkpoints.map((c) => JSON.stringify({ checkpoint: { ...c, time: c.time.toISOString(), signature: b64(c.signature) } })),
  ];
  writeFileSync(file, `${lines.join("\n")}\n`, { mode: 0o600 });
}

export type { BundleManifest };
