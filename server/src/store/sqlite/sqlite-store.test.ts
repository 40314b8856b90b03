import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { at, describeStoreContract, raceRounds } from "../contract.js";
import { StoreFailureError, type Store } from "../port.js";
import { migrations } from "./migrations.js";
import { raceIds, type ApprovalWins, type RaceWins, type RaceWorkerData, type ReservationCounts } from "./race-worker.js";
import { SqliteStore, auditRecordsByEventSql, createSqliteStore, sqliteStoreFile } from "./sqlite-store.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "inkan-store-"));
  dirs.push(dir);
  return dir;
}

const files = new WeakMap<Store, string>();
describeStoreContract("SqliteStore", {
  async open() {
    const file = sqliteStoreFile(dataDir());
    const store = await createSqliteStore({ file });
    files.set(store, file);
    return store;
  },
  async connectAgain(store) {
    return createSqliteStore({ file: files.get(store)! });
  },
});

describe("SqliteStore", () => {
  it("opens in WAL mode with synchronous=NORMAL plus the WAL's fdatasync before every acknowledgement (issue 20), foreign keys and a busy timeout; the file is owner-only", async () => {
    const file = sqliteStoreFile(dataDir());
    const store = await createSqliteStore({ file, busyTimeoutMs: 2500 });
    expect(store.settings()).toEqual({
      journalMode: "wal",
      synchronous: "NORMAL",
      walFdatasync: true,
      foreignKeys: true,
      busyTimeoutMs: 2500,
      schemaVersion: migrations[migrations.length - 1]!.version,
    });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await store.close();
  });

  it("runs each migration once, records it in schema_migrations, and reopens without change", async () => {
    const file = sqliteStoreFile(dataDir());
    const first = await createSqliteStore({ file });
    await first.createRecord({ kind: "signer", id: "s1", version: 1, status: "ACTIVE", body: "{}", seal: new Uint8Array([1]) });
    await first.close();
    const again = await createSqliteStore({ file });
    expect((await again.getRecord("signer", "s1"))?.id).toBe("s1");
    await again.close();
    const raw = new Database(file, { readonly: true });
    expect(raw.prepare("SELECT version, name FROM schema_migrations ORDER BY version").all()).toEqual(
      migrations.map((m) => ({ version: m.version, name: m.name })),
    );
    raw.close();
  });

  it("refuses to open a database whose schema is newer than this code (STORE_FAILURE)", async () => {
    const file = sqliteStoreFile(dataDir());
    await (await createSqliteStore({ file })).close();
    const raw = new Database(file);
    raw.prepare("INSERT INTO schema_migrations (version, name) VALUES (?, 'from the future')").run(migrations[migrations.length - 1]!.version + 1);
    raw.close();
    await expect(createSqliteStore({ file })).rejects.toMatchObject({ code: "STORE_FAILURE" });
  });

  it("fails closed while another process holds the write lock past busy_timeout, and consumes nothing", async () => {
    const file = sqliteStoreFile(dataDir());
    const store = await createSqliteStore({ file, busyTimeoutMs: 50 });
    await store.issueChallenge({ hash: "c1", purpose: "transaction", subject: "tx1", createdAt: at(0), expiresAt: at(60) });
    const other = new Database(file);
    other.exec("BEGIN IMMEDIATE");
    const err = await store.consumeChallenge({ hash: "c1", purpose: "transaction", now: at(1) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreFailureError);
    expect((err as StoreFailureError).cause).toMatchObject({ code: "SQLITE_BUSY" });
    other.exec("ROLLBACK");
    other.close();
    expect(await store.consumeChallenge({ hash: "c1", purpose: "transaction", now: at(1) })).toBeDefined();
    await store.close();
  });

  it("R-3.2.2.4: audit tables refuse UPDATE and DELETE even through raw SQL (append-only triggers)", async () => {
    const file = sqliteStoreFile(dataDir());
    const store = await createSqliteStore({ file });
    await store.appendAuditRecord({ nodeId: "n", sequence: 1, time: at(1), event: "sam.started", body: "{}", prevHash: new Uint8Array(32), hash: new Uint8Array(32) });
    await store.appendAuditCheckpoint({ nodeId: "n", sequence: 1, time: at(1), body: "{}", signature: new Uint8Array([1]) });
    await store.close();
    const raw = new Database(file);
    expect(() => raw.prepare("UPDATE audit_records SET body = '{\"edited\":true}'").run()).toThrow(/append-only/);
    expect(() => raw.prepare("DELETE FROM audit_records").run()).toThrow(/append-only/);
    expect(() => raw.prepare("UPDATE audit_checkpoints SET sequence = 2").run()).toThrow(/append-only/);
    expect(() => raw.prepare("DELETE FROM audit_checkpoints").run()).toThrow(/append-only/);
    raw.close();
  });

  it("issue 14 (migration 10): one node's records of one event are read through the (node, event, sequence) index, not by a scan of the chain", async () => {
    const file = sqliteStoreFile(dataDir());
    await (await createSqliteStore({ file })).close();
    const raw = new Database(file, { readonly: true });
    const plan = raw.prepare(`EXPLAIN QUERY PLAN ${auditRecordsByEventSql}`).all("n", "record.versioned", 1, 10) as Array<{ detail: string }>;
    raw.close();
    expect(plan.map((p) => p.detail).join("\n")).toMatch(/USING (COVERING )?INDEX audit_records_by_event/);
    expect(plan.map((p) => p.detail).join("\n")).not.toMatch(/TEMP B-TREE/); // no sort: the index gives the order
  });

  it(`T-2.2.1.3 in parallel: 4 worker threads, each its own connection (4 SAM processes), race 64 consumers per object; exactly one wins, ${raceRounds} rounds`, async () => {
    const file = sqliteStoreFile(dataDir());
    const store = await SqliteStore.open({ file });
    const signal = new SharedArrayBuffer(4);
    const flag = new Int32Array(signal);
    const now = at(1);
    const entry = new URL("./race-worker.ts", import.meta.url).href;
    const workers = Array.from({ length: 4 }, () => {
      const workerData: RaceWorkerData = { entry, file, signal, attempts: 16, now: now.getTime() };
      return new Worker(new URL("../testing/ts-worker.mjs", import.meta.url), { workerData });
    });
    const next = (w: Worker) =>
      new Promise<unknown>((resolve, reject) => {
        const onMessage = (m: unknown) => {
          w.off("error", reject);
          resolve(m);
        };
        w.once("message", onMessage);
        w.once("error", reject);
      });
    try {
      expect(await Promise.all(workers.map(next))).toEqual(["ready", "ready", "ready", "ready"]);
      for (let round = 1; round <= raceRounds; round++) {
        const ids = raceIds(round);
        await store.issueChallenge({ hash: ids.challenge, purpose: "transaction", subject: "tx1", createdAt: at(0), expiresAt: at(60) });
        await store.issueSadToken({ hash: ids.sadToken, transactionId: "tx1", generation: 0, previousHash: undefined, issuedAt: at(0), expiresAt: at(60), mac: new Uint8Array([1]) });
        await store.issueActivationCode({ id: ids.activationCode, signerId: "s1", codeHash: "right", attemptsLeft: 3, createdAt: at(0), expiresAt: at(60) });
        const results = workers.map(next);
        Atomics.store(flag, 0, round);
        Atomics.notify(flag, 0); // release every worker at once
        const wins = (await Promise.all(results)) as RaceWins[];
        const total = (k: keyof Omit<RaceWins, "round">) => wins.reduce((sum, w) => sum + w[k], 0);
        expect(wins.map((w) => w.round)).toEqual([round, round, round, round]);
        expect({ challenge: total("challenge"), sadToken: total("sadToken"), activationCode: total("activationCode"), jti: total("jti") }, `round ${round}`).toEqual({
          challenge: 1,
          sadToken: 1,
          activationCode: 1,
          jti: 1,
        });
      }
    } finally {
      Atomics.store(flag, 0, -1);
      Atomics.notify(flag, 0);
      await Promise.all(workers.map((w) => new Promise((resolve) => w.once("exit", resolve))));
      await store.close();
    }
  });

  it("R-3.2.1.6 dual control: upgrades a schema-1 file in place to pending approvals, keeping its data", async () => {
    const file = sqliteStoreFile(dataDir());
    const raw = new Database(file);
    raw.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL) STRICT");
    raw.exec(migrations[0]!.sql);
    raw.prepare("INSERT INTO schema_migrations (version, name) VALUES (?, ?)").run(migrations[0]!.version, migrations[0]!.name);
    raw.prepare("INSERT INTO signers (id, version, status, body, seal) VALUES ('s1', 1, 'ACTIVE', '{}', x'01')").run();
    raw.close();
    const store = await createSqliteStore({ file });
    expect(store.settings().schemaVersion).toBe(migrations[migrations.length - 1]!.version);
    expect((await store.getRecord("signer", "s1"))?.status).toBe("ACTIVE");
    const request = Buffer.from("destroy cred-1");
    await store.createPendingApproval({
      kind: "pending-approval", id: "pa-1", version: 1, method: "/inkan.admin.v1.RegistrationService/DestroyCredential",
      requestDigest: createHash("sha256").update(request).digest("base64url"), request: request.toString("base64url"), requestedBy: "so-1",
      requestedAt: at(0), expiresAt: at(60), state: "PENDING", body: "{}", seal: new Uint8Array([1]),
    });
    expect((await store.getPendingApproval("pa-1"))?.state).toBe("PENDING");
    await store.close();
  });

  it("T-2.2.1.3: upgrades a schema-2 file in place to the transaction challenge_hash column, keeping its data (a hash kept in the body is carried over)", async () => {
    const file = sqliteStoreFile(dataDir());
    const raw = new Database(file);
    raw.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL) STRICT");
    const record = raw.prepare("INSERT INTO schema_migrations (version, name) VALUES (?, ?)");
    for (const m of migrations.filter((m) => m.version <= 2)) {
      raw.exec(m.sql);
      record.run(m.version, m.name);
    }
    raw.prepare("INSERT INTO signers (id, version, status, body, seal) VALUES ('s1', 1, 'ACTIVE', '{}', x'01')").run();
    const insertTx = raw.prepare(
      `INSERT INTO transactions (id, credential_id, signer_id, sca, hash_algorithm, num_signatures, body, state, hash_count, dtbsr_digest,
         signatures_created, created_at, expires_at, updated_at)
       VALUES (?, 'cred-1', 's1', 'sca-1', 'SHA256', 1, ?, 'PENDING', ?, ?, 0, ?, ?, ?)`,
    );
    // Sealed inline before the column existed: its challenge hash was in the body.
    insertTx.run("tx-inline", JSON.stringify({ description: "old", challengeHash: "-_old-hash_-" }), 1, Buffer.from("digest"), at(0).getTime(), at(600).getTime(), at(0).getTime());
    raw.prepare("INSERT INTO dtbsr (transaction_id, idx, hash) VALUES ('tx-inline', 0, x'0102')").run();
    // Still uploading: no challenge hash anywhere.
    insertTx.run("tx-uploading", JSON.stringify({ description: "open" }), 1, null, at(0).getTime(), at(600).getTime(), at(0).getTime());
    raw.prepare("INSERT INTO dtbsr (transaction_id, idx, hash) VALUES ('tx-uploading', 0, x'0304')").run();
    raw.close();

    const store = await createSqliteStore({ file });
    expect(store.settings().schemaVersion).toBe(migrations[migrations.length - 1]!.version);
    expect((await store.getRecord("signer", "s1"))?.status).toBe("ACTIVE");
    expect(await store.getTransaction("tx-inline")).toMatchObject({
      state: "PENDING", hashCount: 1, dtbsrDigest: new Uint8Array(Buffer.from("digest")), challengeHash: "-_old-hash_-", body: JSON.stringify({ description: "old", challengeHash: "-_old-hash_-" }),
    });
    expect((await store.readDtbsr({ transactionId: "tx-inline", fromIndex: 0, limit: 10 })).map((e) => [...e.hash])).toEqual([[1, 2]]);
    const uploading = await store.getTransaction("tx-uploading");
    expect(uploading).toMatchObject({ state: "PENDING", hashCount: 1, dtbsrDigest: undefined });
    expect(uploading?.challengeHash).toBeUndefined();
    // The upgraded row seals like a new one: digest and challenge hash in one update.
    expect(await store.completeDtbsrUpload({ transactionId: "tx-uploading", hashCount: 1, digest: new Uint8Array([9]), challengeHash: "new-hash", now: at(1) })).toBe(true);
    expect(await store.getTransaction("tx-uploading")).toMatchObject({ dtbsrDigest: new Uint8Array([9]), challengeHash: "new-hash" });
    await store.close();
    const again = new Database(file, { readonly: true });
    expect(again.prepare("SELECT version FROM schema_migrations ORDER BY version").all().map((r) => (r as { version: number }).version)).toEqual(migrations.map((m) => m.version));
    again.close();
  });

  it("T-2.2.1.6: upgrades a schema-4 file through the transaction tables' rebuild (FAILED state), keeping transactions, DTBS/R entries, recorded signatures and the cascade", async () => {
    const file = sqliteStoreFile(dataDir());
    const raw = new Database(file);
    raw.pragma("foreign_keys = ON");
    raw.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL) STRICT");
    const record = raw.prepare("INSERT INTO schema_migrations (version, name) VALUES (?, ?)");
    for (const m of migrations.filter((m) => m.version <= 4)) {
      raw.exec(m.sql);
      record.run(m.version, m.name);
    }
    raw.prepare(
      `INSERT INTO transactions (id, credential_id, signer_id, sca, hash_algorithm, num_signatures, body, state, hash_count, dtbsr_digest,
         signatures_created, created_at, expires_at, authorized_at, updated_at, challenge_hash)
       VALUES ('tx-4', 'cred-1', 's1', 'sca-1', 'SHA256', 2, '{}', 'AUTHORIZED', 2, x'0909', 1, ?, ?, ?, ?, 'chal-4')`,
    ).run(at(0).getTime(), at(600).getTime(), at(1).getTime(), at(1).getTime());
    raw.prepare("INSERT INTO dtbsr (transaction_id, idx, hash, signed, signature) VALUES ('tx-4', 0, x'0102', 1, x'5151'), ('tx-4', 1, x'0304', 0, NULL)").run();
    raw.prepare("INSERT INTO sad_tokens (hash, transaction_id, generation, previous_hash, issued_at, expires_at) VALUES ('tok-4', 'tx-4', 0, NULL, ?, ?)").run(at(1).getTime(), at(300).getTime());
    raw.close();

    const store = await createSqliteStore({ file });
    expect(await store.getTransaction("tx-4")).toMatchObject({ state: "AUTHORIZED", hashCount: 2, signaturesCreated: 1, signaturesRecorded: 1, challengeHash: "chal-4", authorizeFailures: 0, dtbsrDigest: new Uint8Array([9, 9]) });
    const entries = await store.readDtbsr({ transactionId: "tx-4", fromIndex: 0, limit: 10 });
    expect(entries.map((e) => [e.signed, e.signature && [...e.signature]])).toEqual([[true, [0x51, 0x51]], [false, undefined]]);
    expect(await store.findSadToken("tok-4")).toMatchObject({ transactionId: "tx-4", minIndex: 0 });
    // The rebuilt tables work as before: the remaining entry is claimed once; FAILED is a state now.
    expect(await store.markRangeSigned({ transactionId: "tx-4", fromIndex: 1, count: 1, now: at(2), claim: { claimId: "c1", nodeId: "n1", bootId: "b1", leaseMs: 60_000 } })).toMatchObject({ ok: true, state: "COMPLETED" });
    const db = new Database(file);
    expect(() => db.prepare("UPDATE transactions SET state = 'FAILED' WHERE id = 'tx-4'").run()).not.toThrow();
    expect(() => db.prepare("UPDATE transactions SET state = 'BOGUS' WHERE id = 'tx-4'").run()).toThrow(/CHECK/);
    db.pragma("foreign_keys = ON");
    db.prepare("DELETE FROM transactions WHERE id = 'tx-4'").run(); // the list goes with its transaction
    expect(db.prepare("SELECT COUNT(*) AS n FROM dtbsr WHERE transaction_id = 'tx-4'").get()).toEqual({ n: 0 });
    db.close();
    await store.close();
  });

  it("R-3.2.1.6 dual control: the pending_approvals table is STRICT, its states are checked, and one PENDING row per request and requester is enforced by a partial unique index", async () => {
    const file = sqliteStoreFile(dataDir());
    await (await createSqliteStore({ file })).close();
    const raw = new Database(file);
    try {
      expect(raw.prepare("SELECT strict FROM pragma_table_list WHERE name = 'pending_approvals'").get()).toEqual({ strict: 1 });
      const index = raw.prepare("SELECT sql FROM sqlite_schema WHERE name = 'pending_approvals_one_pending'").get() as { sql: string };
      expect(index.sql).toMatch(/UNIQUE INDEX .*\(method, request_digest, requested_by\)\s+WHERE state = 'PENDING'/s);
      const insert = raw.prepare(
        `INSERT INTO pending_approvals (id, version, method, request_digest, request, requested_by, requested_at, expires_at, state, body, seal)
         VALUES (?, 1, 'm', 'd', 'r', 'so-1', 0, 1, ?, '{}', x'01')`,
      );
      insert.run("a", "PENDING");
      insert.run("b", "REJECTED"); // decided rows do not take the slot
      insert.run("c", "EXPIRED");
      expect(() => insert.run("d", "PENDING")).toThrow(/UNIQUE constraint failed/);
      expect(() => insert.run("e", "LOST")).toThrow(/CHECK constraint failed/);
    } finally {
      raw.close();
    }
  });

  it(`R-3.2.1.6 dual control in parallel: 4 worker threads, each its own connection (4 SAM processes), 64 approvers of one pending approval; exactly one wins, ${raceRounds} rounds`, async () => {
    const file = sqliteStoreFile(dataDir());
    const store = await SqliteStore.open({ file });
    const signal = new SharedArrayBuffer(4);
    const flag = new Int32Array(signal);
    const now = at(1);
    const entry = new URL("./race-worker.ts", import.meta.url).href;
    const workers = Array.from({ length: 4 }, (_, w) => {
      const workerData: RaceWorkerData = { entry, file, signal, attempts: 16, now: now.getTime(), mode: "pending-approvals", name: `so-worker-${w}` };
      return new Worker(new URL("../testing/ts-worker.mjs", import.meta.url), { workerData });
    });
    const next = (w: Worker) =>
      new Promise<unknown>((resolve, reject) => {
        const onMessage = (m: unknown) => {
          w.off("error", reject);
          resolve(m);
        };
        w.once("message", onMessage);
        w.once("error", reject);
      });
    try {
      expect(await Promise.all(workers.map(next))).toEqual(["ready", "ready", "ready", "ready"]);
      for (let round = 1; round <= raceRounds; round++) {
        const id = raceIds(round).pendingApproval;
        const request = Buffer.from(`destroy cred-${round}`);
        await store.createPendingApproval({
          kind: "pending-approval", id, version: 1, method: "/inkan.admin.v1.RegistrationService/DestroyCredential",
          requestDigest: createHash("sha256").update(request).digest("base64url"), request: request.toString("base64url"), requestedBy: "so-1",
          requestedAt: at(0), expiresAt: at(60), state: "PENDING", body: "{}", seal: new Uint8Array([1]),
        });
        const results = workers.map(next);
        Atomics.store(flag, 0, round);
        Atomics.notify(flag, 0); // release every worker at once
        const wins = (await Promise.all(results)) as ApprovalWins[];
        expect(wins.map((w) => w.round)).toEqual([round, round, round, round]);
        expect(wins.reduce((sum, w) => sum + w.pendingApproval, 0), `round ${round}`).toBe(1);
        const approved = await store.getPendingApproval(id);
        expect(approved).toMatchObject({ state: "APPROVED", version: 2, decidedAt: now });
        expect(approved?.body).toBe(JSON.stringify({ approver: approved?.decidedBy })); // the winner's body, nobody else's
      }
    } finally {
      Atomics.store(flag, 0, -1);
      Atomics.notify(flag, 0);
      await Promise.all(workers.map((w) => new Promise((resolve) => w.once("exit", resolve))));
      await store.close();
    }
  });
  it("T-2.1.2.2 in parallel: 4 worker threads, each its own connection (4 SAM processes), 64 reservations of one signer's attempts; each count from 1 to 64 is seen exactly once, 10 rounds", async () => {
    const file = sqliteStoreFile(dataDir());
    const store = await SqliteStore.open({ file });
    const signal = new SharedArrayBuffer(4);
    const flag = new Int32Array(signal);
    const entry = new URL("./race-worker.ts", import.meta.url).href;
    const workers = Array.from({ length: 4 }, (_, w) => {
      const workerData: RaceWorkerData = { entry, file, signal, attempts: 16, now: at(1).getTime(), mode: "attempt-reservations", name: `node-${w}` };
      return new Worker(new URL("../testing/ts-worker.mjs", import.meta.url), { workerData });
    });
    const next = (w: Worker) =>
      new Promise<unknown>((resolve, reject) => {
        const onMessage = (m: unknown) => {
          w.off("error", reject);
          resolve(m);
        };
        w.once("message", onMessage);
        w.once("error", reject);
      });
    try {
      expect(await Promise.all(workers.map(next))).toEqual(["ready", "ready", "ready", "ready"]);
      for (let round = 1; round <= 10; round++) {
        const results = workers.map(next);
        Atomics.store(flag, 0, round);
        Atomics.notify(flag, 0); // release every worker at once
        const reports = (await Promise.all(results)) as ReservationCounts[];
        expect(reports.map((r) => r.round)).toEqual([round, round, round, round]);
        const counts = reports.flatMap((r) => r.counts).sort((a, b) => a - b);
        expect(counts, `round ${round}`).toEqual(Array.from({ length: 64 }, (_, i) => i + 1));
        expect(await store.releaseExpiredAttempts({ subject: raceIds(round).attemptSubject, now: at(61) })).toBe(64);
      }
    } finally {
      Atomics.store(flag, 0, -1);
      Atomics.notify(flag, 0);
      await Promise.all(workers.map((w) => new Promise((resolve) => w.once("exit", resolve))));
      await store.close();
    }
  });
});
