/**
 * `npx tsc -b && node server/dist/bench/commit-latency.js [--writes 300] [--body 1000] [--concurrent 64] [--dir DIR]`:
 * what one durable SQLite write costs (issue 20), the store as shipped (`synchronous = NORMAL`,
 * the -wal file's fdatasync on the thread pool before the write is acknowledged) against the
 * earlier setting (`synchronous = FULL`: SQLite's fsync inside COMMIT, on the event loop, and
 * SQLite's automatic checkpoint every 1,000 pages inside a COMMIT; emulated here by switching the
 * same store's connection back to both and its WAL sync off). Never a test.
 *
 * Per mode: sequential writes (audit records of `--body` bytes, each awaited: the latency a caller
 * sees, p50/p99/max; a max over a checkpoint shows the checkpoint's cost), the event loop's busy
 * time per write (performance.eventLoopUtilization: what every other call of the process waits
 * for), and `--concurrent` writers at once (writes/s, syncs per group). DIR defaults to the
 * OS temporary directory: make sure it is on the disk the store would use (not tmpfs).
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { createSqliteStore, type SqliteStore } from "../store/sqlite/sqlite-store.js";

const { values: args } = parseArgs({
  options: { writes: { type: "string", default: "300" }, body: { type: "string", default: "1000" }, concurrent: { type: "string", default: "64" }, dir: { type: "string" } },
});
const writes = Number(args.writes);
const body = "x".repeat(Number(args.body));
const hashOf = (sequence: number) => new Uint8Array(createHash("sha256").update(`bench/${sequence}`).digest());
const audit = (sequence: number) => ({
  nodeId: "bench", sequence, time: new Date(0), event: "bench", body,
  prevHash: sequence === 1 ? new Uint8Array(32) : hashOf(sequence - 1), hash: hashOf(sequence),
});
const concurrent = Number(args.concurrent);

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const challenge = (hash: string) => ({ hash, purpose: "transaction" as const, subject: "bench", createdAt: new Date(0), expiresAt: new Date(8.64e15) });

async function measure(mode: "FULL (before)" | "NORMAL + fdatasync (now)"): Promise<Record<string, string | number>> {
  const dir = await mkdtemp(join(args.dir ?? tmpdir(), "inkan-commit-latency-"));
  try {
    const full = mode.startsWith("FULL");
    const store: SqliteStore = await createSqliteStore({ file: join(dir, "store.sqlite3"), ...(full ? { walSync: async () => undefined } : {}) });
    if (full) {
      const db = (store as unknown as { db: { pragma(s: string): unknown } }).db;
      db.pragma("synchronous = FULL"); // the settings before issue 20's WAL sync and checkpointer
      db.pragma("wal_autocheckpoint = 1000");
    }
    for (let i = 0; i < 20; i++) await store.issueChallenge(challenge(`warm-${i}`));

    const latencies: number[] = [];
    const elu0 = performance.eventLoopUtilization();
    for (let i = 0; i < writes; i++) {
      const t0 = performance.now();
      await store.appendAuditRecord(audit(i + 1));
      latencies.push(performance.now() - t0);
    }
    const elu = performance.eventLoopUtilization(elu0);
    latencies.sort((a, b) => a - b);

    const groups0 = store.groupCommitStats.groups;
    const syncs0 = store.walSyncStats.finished;
    const t0 = performance.now();
    let issued = 0;
    await Promise.all(
      Array.from({ length: concurrent }, async (_, w) => {
        while (issued < writes * 2) await store.issueChallenge(challenge(`con-${w}-${issued++}`));
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const groups = store.groupCommitStats.groups - groups0;
    const syncs = store.walSyncStats.finished - syncs0;
    await store.close();
    return {
      mode,
      write_p50_ms: +quantile(latencies, 0.5).toFixed(3),
      write_p99_ms: +quantile(latencies, 0.99).toFixed(3),
      write_max_ms: +latencies[latencies.length - 1]!.toFixed(3),
      event_loop_busy_per_write_ms: +(elu.active / writes).toFixed(3),
      [`writes_per_s_${concurrent}_concurrent`]: Math.round(issued / seconds),
      groups,
      wal_syncs: full ? "(in COMMIT)" : syncs,
      checkpoints: full ? "(in COMMIT)" : store.checkpointStats.passive + store.checkpointStats.truncate,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const load = (await import("node:os")).loadavg()[0]!.toFixed(2);
const results = [];
for (const mode of ["FULL (before)", "NORMAL + fdatasync (now)", "FULL (before)", "NORMAL + fdatasync (now)"] as const) results.push(await measure(mode));
console.table(results);
console.log(`load average at start ${load}, at end ${(await import("node:os")).loadavg()[0]!.toFixed(2)}`);
