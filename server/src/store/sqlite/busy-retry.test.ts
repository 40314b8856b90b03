import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { createRequire } from "node:module";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { PrivilegedSessionService } from "@inkan/sdk/gen/inkan/admin/v1/auth_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorOf, startTestServer, type TestServer } from "../../testing/harness.js";
import { StoreFailureError } from "../port.js";
import { isBusy, retryWhileBusy } from "./busy-retry.js";

// Issue 17.4: one write lock held by another process on the SQLite file must not freeze the SAM.

/** Another process that takes the store's write lock (BEGIN EXCLUSIVE) and holds it until `release()`. */
async function holdWriteLock(file: string): Promise<{ release(): Promise<void> }> {
  const driver = createRequire(import.meta.url).resolve("better-sqlite3");
  const script = `
    const Database = require(${JSON.stringify(driver)});
    const db = new Database(${JSON.stringify(file)});
    db.exec("BEGIN EXCLUSIVE");
    process.stdout.write("locked\\n");
    process.stdin.once("data", () => { db.exec("ROLLBACK"); db.close(); process.exit(0); });`;
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ["-e", script]);
  const [line] = (await once(child.stdout, "data")) as [Buffer];
  expect(line.toString()).toContain("locked");
  return {
    async release() {
      child.stdin.write("go\n");
      await once(child, "exit");
    },
  };
}

function tracked<T>(p: Promise<T>) {
  const state = { settled: false };
  void p.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

describe("a write lock held by another process (issue 17.4)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ storeBusyWaitMs: "30000" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("leaves health and reads answering while a write waits for the lock, and the write succeeds once it is released", async () => {
    const lock = await holdWriteLock(join(t.dataDir, "store.sqlite3"));
    let released = false;
    try {
      const nonces = createClient(PrivilegedSessionService, t.transport("grpc", t.pki.admin));
      const write = nonces.createRequestNonce({}); // a one-time nonce: a store write
      const writing = tracked(write);
      await new Promise((r) => setTimeout(r, 200)); // let the write reach the busy store
      const started = performance.now();
      expect((await createClient(Health, t.transport("grpc", t.pki.sca)).check({})).status).toBe(Status.SERVING);
      expect((await createClient(SignatureActivationService, t.transport("grpc", t.pki.sca)).getInfo({})).name).toBe("Inkan");
      console.log(`health and GetInfo answered in ${Math.round(performance.now() - started)} ms while the write lock was held`);
      expect(writing.settled, "the write still waits for the lock (before the fix the event loop was blocked and it had failed)").toBe(false);
      await lock.release();
      released = true;
      expect((await write).nonce.length).toBeGreaterThan(0);
    } finally {
      if (!released) await lock.release();
    }
  }, 60_000);
});

describe("a write lock held past the bounded wait (issue 17.4)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ storeBusyWaitMs: "300" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("fails the write with UNAVAILABLE STORE_FAILURE, keeps health SERVING, and writes again once the lock is gone", async () => {
    const lock = await holdWriteLock(join(t.dataDir, "store.sqlite3"));
    const nonces = createClient(PrivilegedSessionService, t.transport("grpc", t.pki.admin));
    try {
      const err = await errorOf(nonces.createRequestNonce({}));
      expect(err.code).toBe(Code.Unavailable);
      // The store or the audit log (the same database): whichever write comes first waits out the bound.
      expect([Reason.STORE_FAILURE, Reason.AUDIT_FAILURE]).toContain(inkanErrorReason(err));
      expect((await createClient(Health, t.transport("grpc", t.pki.sca)).check({})).status).toBe(Status.SERVING);
    } finally {
      await lock.release();
    }
    expect((await nonces.createRequestNonce({})).nonce.length).toBeGreaterThan(0);
  }, 60_000);
});

describe("retryWhileBusy", () => {
  const busy = () => new StoreFailureError(Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" }));

  it("retries a busy store until it answers, and nothing else", async () => {
    let calls = 0;
    expect(await retryWhileBusy(async () => (++calls < 3 ? Promise.reject(busy()) : "ok"), 5_000)).toBe("ok");
    expect(calls).toBe(3);
    const other = new StoreFailureError(Object.assign(new Error("disk I/O error"), { code: "SQLITE_IOERR" }));
    calls = 0;
    await expect(retryWhileBusy(async () => (calls++, Promise.reject(other)), 5_000)).rejects.toBe(other);
    expect(calls).toBe(1);
    expect([isBusy(busy()), isBusy(other), isBusy(new Error("x"))]).toEqual([true, false, false]);
  });

  it("gives up after the bounded wait with the store's failure", async () => {
    const err = busy();
    await expect(retryWhileBusy(async () => Promise.reject(err), 50)).rejects.toBe(err);
  });
});
