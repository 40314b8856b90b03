/**
 * Issue 20: WAL checkpoints on a worker thread (checkpointer.ts) instead of in a COMMIT on the
 * event loop (`wal_autocheckpoint = 0`). Small thresholds here so that a few hundred KiB of audit
 * records make a checkpoint due; the waits poll for an outcome (no timing is asserted).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { StoreFailureError, type AuditRecord } from "../port.js";
import { createSqliteStore, type SqliteStore } from "./sqlite-store.js";

const dir = mkdtempSync(join(tmpdir(), "inkan-checkpointer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const freshFile = () => join(dir, `store-${++files}.sqlite3`);
const hashOf = (sequence: number) => new Uint8Array(createHash("sha256").update(`n/${sequence}`).digest());
const body = "x".repeat(4000);
const audit = (sequence: number): AuditRecord => ({
  nodeId: "n", sequence, time: new Date(0), event: "e", body,
  prevHash: sequence === 1 ? new Uint8Array(32) : hashOf(sequence - 1), hash: hashOf(sequence),
});
async function appendMany(store: SqliteStore, from: number, to: number): Promise<void> {
  for (let s = from; s <= to; s++) await store.appendAuditRecord(audit(s));
}
async function until(what: string, done: () => boolean): Promise<void> {
  for (let waited = 0; !done(); waited += 10) {
    if (waited > 30_000) throw new Error(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
const walBytes = (file: string) => (existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0);

describe("WAL checkpoints on a worker thread (issue 20)", () => {
  it("no COMMIT checkpoints (wal_autocheckpoint = 0): with the checkpointer's threshold out of reach the WAL keeps growing past SQLite's 1,000 pages", async () => {
    const file = freshFile();
    const store = await createSqliteStore({ file, checkpoint: { passiveAtBytes: Number.MAX_SAFE_INTEGER } });
    const dbBefore = statSync(file).size;
    await appendMany(store, 1, 1200); // about 1,200 pages of 4 KiB
    expect(walBytes(file)).toBeGreaterThan(1000 * 4096);
    expect(statSync(file).size).toBe(dbBefore); // nothing was copied into the database file
    expect(store.checkpointStats).toEqual({ passive: 0, truncate: 0, busy: 0 });
    await store.close();
  });

  it("once the WAL reached the threshold the worker checkpoints it, and TRUNCATEs it when idle; every record stays readable", async () => {
    const file = freshFile();
    const store = await createSqliteStore({ file, checkpoint: { intervalMs: 10, passiveAtBytes: 256 * 1024 } });
    await appendMany(store, 1, 200);
    await until("a checkpoint", () => store.checkpointStats.passive + store.checkpointStats.truncate > 0);
    await until("the idle WAL truncated", () => walBytes(file) === 0);
    expect(store.checkpointStats.truncate).toBeGreaterThan(0);
    expect(statSync(file).size).toBeGreaterThan(200 * 4000); // the records are in the database file now
    await appendMany(store, 201, 210); // the WAL starts again
    expect((await store.readAuditRecords({ nodeId: "n", fromSequence: 1, limit: 1000 })).map((r) => r.sequence)).toEqual(Array.from({ length: 210 }, (_, i) => i + 1));
    await store.close();
    const db = new Database(file, { readonly: true });
    expect((db.prepare("SELECT COUNT(*) AS n FROM audit_records").get() as { n: number }).n).toBe(210);
    db.close();
  });

  it("a failed checkpoint poisons the store: later writes and read barriers fail with STORE_FAILURE, and close() does not checkpoint", async () => {
    const file = freshFile();
    const store = await createSqliteStore({ file, checkpoint: { intervalMs: 10, passiveAtBytes: 64 * 1024, injectFailure: true } });
    // Writes go on while the worker checkpoints: one of them is the first to fail.
    let failed: unknown;
    for (let s = 1; s <= 2000 && failed === undefined; s++) {
      await store.appendAuditRecord(audit(s)).catch((e: unknown) => (failed = e));
      if (s % 20 === 0) await new Promise((r) => setTimeout(r, 20)); // the checkpointer looks meanwhile
    }
    expect(failed).toBeInstanceOf(StoreFailureError);
    expect(store.checkpointStats.passive + store.checkpointStats.truncate).toBeGreaterThan(0);
    await expect(store.durable()).rejects.toBeInstanceOf(StoreFailureError);
    await expect(store.readAuditRecords({ nodeId: "n", fromSequence: 1, limit: 10 })).rejects.toBeInstanceOf(StoreFailureError);
    await expect(store.issueChallenge({ hash: "h", purpose: "transaction", subject: "s", createdAt: new Date(0), expiresAt: new Date(8.64e15) })).rejects.toBeInstanceOf(StoreFailureError);
    await store.close();
    expect(walBytes(file)).toBeGreaterThan(0); // left for the next start's recovery
  });
});

const dist = fileURLToPath(new URL("../../../dist", import.meta.url));
const built = existsSync(join(dist, "store/sqlite/checkpointer.js"));
if (!built) console.warn("checkpointer close test skipped: the server is not built (dist/store/sqlite/checkpointer.js missing): run `npm run build`");

/** A process whose only work left is close(): the worker (unref'd while idle) must still be waited for. */
const closeChild = `
const [dist, file] = process.argv.slice(1);
const { createSqliteStore } = await import(dist + "/store/sqlite/sqlite-store.js");
const store = await createSqliteStore({ file, checkpoint: { intervalMs: 10, passiveAtBytes: 64 * 1024 } });
await store.issueChallenge({ hash: "big", purpose: "transaction", subject: "x".repeat(200000), createdAt: new Date(0), expiresAt: new Date(8.64e15) });
while (store.checkpointStats.passive + store.checkpointStats.truncate === 0) await new Promise((r) => setTimeout(r, 10));
await store.close();
console.log("closed");
`;

describe.skipIf(!built)("the checkpointer's worker at close (issue 20)", () => {
  it("close() waits for the worker's connection to close: the process does not end first with close() unsettled", () => {
    const result = spawnSync(process.execPath, ["--input-type=module", "-e", closeChild, dist, freshFile()], { encoding: "utf8", timeout: 60_000 });
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("closed");
    expect(result.status).toBe(0);
  }, 60_000);
});
