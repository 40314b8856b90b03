/**
 * Issue 20: `synchronous = NORMAL` plus an fdatasync of the -wal file on the thread pool before
 * any write is acknowledged (wal-sync.ts). The sync goes through a seam (`walSync`) that these
 * tests hold, slow down, count or fail: a write is never acknowledged before the sync that started
 * after its COMMIT finished; commits made meanwhile share one next sync; a failed sync fails that
 * write, every later write and every read barrier (the store is poisoned), and close() then leaves
 * the WAL un-checkpointed; reads whose results leave the SAM wait for the sync of what they saw,
 * also of another connection's commits. No timings: the order of events is what is checked.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { StoreFailureError, type AuditRecord } from "../port.js";
import { snapshotSqlite } from "./sqlite-snapshot.js";
import { createSqliteStore } from "./sqlite-store.js";
import type { SyncFn } from "./wal-sync.js";

const dir = mkdtempSync(join(tmpdir(), "inkan-wal-sync-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const freshFile = () => join(dir, `store-${++files}.sqlite3`);
const now = new Date("2026-01-01T00:00:00Z");
const challenge = (hash: string) => ({ hash, purpose: "transaction" as const, subject: "s", createdAt: now, expiresAt: new Date(now.getTime() + 60_000) });
const hashOf = (sequence: number) => new Uint8Array(createHash("sha256").update(`n/${sequence}`).digest());
const audit = (sequence: number): AuditRecord => ({
  nodeId: "n", sequence, time: now, event: "signature.created", body: "{}",
  prevHash: sequence === 1 ? new Uint8Array(32) : hashOf(sequence - 1), hash: hashOf(sequence),
});
const count = (file: string, sql: string): number => {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(sql).get() as { n: number }).n;
  } finally {
    db.close();
  }
};
/** Lets the event loop run a few turns (the group's setImmediate, the sync's callbacks). */
const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

/** A sync the test releases (or fails) by hand, one call at a time, counting the calls. */
function heldSync(): { sync: SyncFn; calls: number; release: () => void; fail: (e: Error) => void; held: () => number; passThrough: boolean } {
  const waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const h = {
    calls: 0,
    passThrough: false,
    sync: (() => {
      h.calls += 1;
      if (h.passThrough) return Promise.resolve();
      return new Promise<void>((resolve, reject) => waiting.push({ resolve, reject }));
    }) as SyncFn,
    release: () => waiting.shift()!.resolve(),
    fail: (e: Error) => waiting.shift()!.reject(e),
    held: () => waiting.length,
  };
  return h;
}
const settledState = <T>(p: Promise<T>) => {
  const s = { done: false, ok: undefined as boolean | undefined, error: undefined as unknown };
  p.then(
    () => Object.assign(s, { done: true, ok: true }),
    (error: unknown) => Object.assign(s, { done: true, ok: false, error }),
  );
  return s;
};

describe("the WAL's fdatasync before acknowledgement (issue 20)", () => {
  it("a write is committed (visible to another connection) but not acknowledged until its fdatasync finished", async () => {
    const file = freshFile();
    const h = heldSync();
    h.passThrough = true;
    const store = await createSqliteStore({ file, walSync: h.sync });
    h.passThrough = false;
    const write = settledState(store.issueChallenge(challenge("c1")));
    await turns();
    expect(h.held()).toBe(1); // the sync was asked for ...
    expect(count(file, "SELECT COUNT(*) AS n FROM challenges WHERE hash = 'c1'")).toBe(1); // ... after the COMMIT
    expect(write.done).toBe(false); // ... and nobody was told yet
    h.release();
    await turns();
    expect(write).toMatchObject({ done: true, ok: true });
    h.passThrough = true;
    await store.close();
  });

  it("commits made while a sync runs wait for the NEXT sync and share it: 3 flushes, 2 syncs", async () => {
    const h = heldSync();
    h.passThrough = true;
    const store = await createSqliteStore({ file: freshFile(), walSync: h.sync });
    h.passThrough = false;
    const first = settledState(store.issueChallenge(challenge("a")));
    await turns();
    const callsBefore = h.calls;
    expect(h.held()).toBe(1);
    // Two later groups (separate turns), both committed while the first sync is in flight.
    const second = Array.from({ length: 4 }, (_, i) => settledState(store.issueChallenge(challenge(`b${i}`))));
    await turns();
    const third = Array.from({ length: 4 }, (_, i) => settledState(store.issueChallenge(challenge(`c${i}`))));
    await turns();
    expect(store.groupCommitStats.groups).toBeGreaterThanOrEqual(3);
    expect(h.calls).toBe(callsBefore); // not started yet: one sync at a time
    h.release(); // the first sync ends: it started before the later commits, so they still wait
    await turns();
    expect(first).toMatchObject({ done: true, ok: true });
    expect([...second, ...third].some((w) => w.done)).toBe(false);
    expect(h.calls).toBe(callsBefore + 1); // ONE next sync for both later groups
    h.release();
    await turns();
    expect([...second, ...third].every((w) => w.done && w.ok)).toBe(true);
    expect(h.calls).toBe(callsBefore + 1);
    h.passThrough = true;
    await store.close();
  });

  it("a failed sync fails its writes, every later write (not even run) and every read barrier with STORE_FAILURE; close() leaves the WAL un-checkpointed", async () => {
    const file = freshFile();
    const h = heldSync();
    h.passThrough = true;
    const store = await createSqliteStore({ file, walSync: h.sync });
    await store.appendAuditRecord(audit(1)); // synced
    h.passThrough = false;
    const lost = store.appendAuditRecord(audit(2));
    await turns();
    h.fail(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
    await expect(lost).rejects.toBeInstanceOf(StoreFailureError);
    // Fail closed from now on: writes do not run, barriers and the reads that use them fail.
    await expect(store.issueChallenge(challenge("after"))).rejects.toBeInstanceOf(StoreFailureError);
    expect(count(file, "SELECT COUNT(*) AS n FROM challenges")).toBe(0);
    await expect(store.durable()).rejects.toBeInstanceOf(StoreFailureError);
    await expect(store.readAuditRecords({ nodeId: "n", fromSequence: 1, limit: 10 })).rejects.toBeInstanceOf(StoreFailureError);
    await expect(store.readAuditRecordsByEvent({ nodeId: "n", event: "signature.created", fromSequence: 1, limit: 10 })).rejects.toBeInstanceOf(StoreFailureError);
    await expect(store.readDtbsr({ transactionId: "t", fromIndex: 0, limit: 10 })).rejects.toBeInstanceOf(StoreFailureError);
    await expect(store.readAuditCheckpoints({ nodeId: "n", fromSequence: 1, limit: 10 })).rejects.toBeInstanceOf(StoreFailureError);
    expect(h.held()).toBe(0); // no sync was tried after the failure
    const dbSize = statSync(file).size;
    await store.close();
    // No checkpoint at close: the WAL is still there, the database file unchanged.
    expect(existsSync(`${file}-wal`) && statSync(`${file}-wal`).size > 0).toBe(true);
    expect(statSync(file).size).toBe(dbSize);
  });

  it("a healthy close checkpoints and removes the WAL (the contrast to the poisoned close)", async () => {
    const file = freshFile();
    const store = await createSqliteStore({ file });
    await store.issueChallenge(challenge("x"));
    await store.close();
    expect(existsSync(`${file}-wal`)).toBe(false);
    expect(count(file, "SELECT COUNT(*) AS n FROM challenges")).toBe(1);
  });

  it("a read whose result leaves the SAM waits for the sync of the commits it saw: this connection's pending sync", async () => {
    const h = heldSync();
    h.passThrough = true;
    const store = await createSqliteStore({ file: freshFile(), walSync: h.sync });
    await store.durable(); // the first barrier syncs once for commits made before this connection
    h.passThrough = false;
    const write = settledState(store.appendAuditRecord(audit(1)));
    await turns();
    expect(h.held()).toBe(1);
    const read = settledState(store.readAuditRecords({ nodeId: "n", fromSequence: 1, limit: 10 }));
    await turns();
    expect(read.done).toBe(false); // it saw record 1, whose sync has not finished
    expect(write.done).toBe(false);
    h.release();
    await turns();
    expect(read).toMatchObject({ done: true, ok: true });
    expect(write).toMatchObject({ done: true, ok: true });
    // Nothing pending and nothing new from other connections: the barrier starts no sync.
    const calls = h.calls;
    await store.readAuditRecords({ nodeId: "n", fromSequence: 1, limit: 10 });
    await store.readDtbsr({ transactionId: "t", fromIndex: 0, limit: 10 });
    expect(h.calls).toBe(calls);
    h.passThrough = true;
    await store.close();
  });

  it("another connection's commit (another SAM process) seen by a read is synced by the reader before the read returns", async () => {
    const file = freshFile();
    const writerSync = heldSync();
    writerSync.passThrough = true;
    const writer = await createSqliteStore({ file, walSync: writerSync.sync });
    const readerSync = heldSync();
    readerSync.passThrough = true;
    const reader = await createSqliteStore({ file, walSync: readerSync.sync });
    await reader.durable();
    writerSync.passThrough = false;
    readerSync.passThrough = false;
    const write = settledState(writer.appendAuditRecord(audit(1)));
    await turns();
    expect(writerSync.held()).toBe(1); // committed, the writer's sync still in flight
    const read = settledState(reader.readAuditRecords({ nodeId: "n", fromSequence: 1, limit: 10 }));
    await turns();
    expect(readerSync.held()).toBe(1); // the reader syncs the same -wal file itself
    expect(read.done).toBe(false);
    readerSync.release();
    await turns();
    expect(read).toMatchObject({ done: true, ok: true });
    expect(write.done).toBe(false); // the writer's own caller still waits for the writer's sync
    writerSync.release();
    await turns();
    expect(write).toMatchObject({ done: true, ok: true });
    writerSync.passThrough = true;
    readerSync.passThrough = true;
    await writer.close();
    await reader.close();
  });

  it("the real fdatasync: writes are acknowledged and counted as synced", async () => {
    const store = await createSqliteStore({ file: freshFile() });
    const before = store.walSyncStats;
    await Promise.all(Array.from({ length: 8 }, (_, i) => store.issueChallenge(challenge(`r${i}`))));
    const after = store.walSyncStats;
    expect(after.finished - before.finished).toBe(1); // one group, one sync
    await store.close();
  });

  it("inkan backup's copy syncs the live WAL after copying, and fails when that sync fails: a copy never holds what the live store may lose", async () => {
    const live = freshFile();
    const h = heldSync();
    h.passThrough = true;
    const store = await createSqliteStore({ file: live, walSync: h.sync });
    await store.appendAuditRecord(audit(1));
    h.passThrough = false;
    const pending = settledState(store.appendAuditRecord(audit(2))); // committed, its sync held
    await turns();
    expect(pending.done).toBe(false);
    const failing: SyncFn = async () => {
      throw Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
    };
    await expect(snapshotSqlite(live, join(dir, "copy-failed.sqlite3"), failing)).rejects.toThrow(/EIO/);
    let backupSyncs = 0;
    const marks = await snapshotSqlite(live, join(dir, "copy.sqlite3"), async () => {
      backupSyncs += 1;
    });
    expect(backupSyncs).toBe(1);
    expect(marks.highWaterMarks).toEqual({ n: 2 }); // the copy holds record 2: synced by the backup itself
    h.release();
    await turns();
    expect(pending).toMatchObject({ done: true, ok: true });
    h.passThrough = true;
    await store.close();
  });
});
