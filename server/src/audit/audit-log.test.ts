/**
 * The AuditLog on a real SoftHSM2 token and a real SQLite file (R-3.2.2.4): the chain, its
 * checkpoints (by count and by time, in the store and in the crypto module), resuming after a
 * restart, refusing to start on a truncated or rewritten store, serialized appends, and the
 * fail-closed contract when the store cannot write.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { InkanError } from "../errors.js";
import type { Pkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import type { Store } from "../store/port.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";
import { createAuditLog, type AuditLogOptions, type ChainedAuditLog } from "./audit-log.js";
import { checkpointLabel, parseCheckpointJson, readAuditNodeIndex, readHighWaterMark, readHighWaterMarks } from "./checkpoint.js";
import { recordVersioned, samStarted, signerEnrolled, systemActor } from "./events.js";
import { canonicalJson, recordHash, recordJsonOf, ZERO_HASH } from "./record-form.js";
import { verifyAuditLog } from "./verify.js";

let dataDir: string;
let hsm: Pkcs11CryptoModule;
let auditSpki: Uint8Array;
const stores: Store[] = [];
const logs: ChainedAuditLog[] = [];
let counter = 0;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-audit-log-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
  auditSpki = await hsm.systemPublicKey("audit-signing");
});

afterAll(async () => {
  for (const log of logs) await log.close().catch(() => undefined);
  for (const s of stores) await s.close();
  await hsm?.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** A fresh store file and a node id nobody used (the token's data objects are shared by the tests). */
async function freshNode(): Promise<{ file: string; store: Store; nodeId: string }> {
  counter++;
  const file = join(dataDir, `store-${counter}.sqlite3`);
  const store = await createSqliteStore({ file });
  stores.push(store);
  return { file, store, nodeId: `node-${counter}` };
}

async function open(options: Partial<AuditLogOptions> & Pick<AuditLogOptions, "store" | "nodeId">): Promise<ChainedAuditLog> {
  const log = await createAuditLog({ cryptoModule: hsm, checkpointTimer: false, ...options });
  logs.push(log);
  return log;
}

const event = (i: number) => signerEnrolled({ actor: systemActor, signerId: `signer-${i}`, requestId: `req-${i}` });

async function recordMany(log: ChainedAuditLog, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) await log.record(event(i));
}

async function failure(promise: Promise<unknown>): Promise<InkanError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof InkanError)) throw new Error(`expected an InkanError, got ${String(err)}`);
  return err;
}

/** Raw SQL on the store file, as an attacker with file access (drops the append-only triggers). */
function tamper(file: string, sql: (db: Database.Database) => void): void {
  const db = new Database(file);
  try {
    db.exec("DROP TRIGGER IF EXISTS audit_records_no_update; DROP TRIGGER IF EXISTS audit_records_no_delete;");
    db.exec("DROP TRIGGER IF EXISTS audit_checkpoints_no_update; DROP TRIGGER IF EXISTS audit_checkpoints_no_delete;");
    sql(db);
  } finally {
    db.close();
  }
}

describe("R-3.2.2.4 the hash chain", () => {
  it("R-3.2.2.4: records are numbered 1, 2, 3... per node, each linked to the one before, and the chain verifies", async () => {
    const { store, nodeId } = await freshNode();
    const log = await open({ store, nodeId, checkpointEveryRecords: 5 });
    expect(log.startState).toEqual({ headSequence: 0, moduleCheckpointSequence: 0 });
    await recordMany(log, 1, 12);
    const rows = await store.readAuditRecords({ nodeId, fromSequence: 1, limit: 100 });
    expect(rows.map((r) => r.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(rows[0]?.prevHash).toEqual(ZERO_HASH);
    for (let i = 1; i < rows.length; i++) expect(rows[i]?.prevHash).toEqual(rows[i - 1]?.hash);
    for (const row of rows) {
      const json = recordJsonOf(row);
      expect(json).toBeDefined();
      expect(recordHash(json!)).toEqual(row.hash); // the hash covers the proto3 JSON form
      expect(row.event).toBe("signer.enrolled");
    }
    const result = await verifyAuditLog(store, auditSpki, await readHighWaterMarks(hsm, [nodeId]), { nodeId });
    expect(result.ok).toBe(true);
    expect(result.nodes[0]).toMatchObject({ nodeId, ok: true, recordsChecked: 12, lastSequence: 12, lastCheckpointSequence: 10, moduleCheckpointSequence: 10 });
  });

  it("R-3.2.2.4: a checkpoint every N records, signed by the module's audit key, the newest also in the module's data object", async () => {
    const { store, nodeId } = await freshNode();
    const log = await open({ store, nodeId, checkpointEveryRecords: 4 });
    await recordMany(log, 1, 9);
    const checkpoints = await store.readAuditCheckpoints({ nodeId, fromSequence: 1, limit: 100 });
    expect(checkpoints.map((c) => c.sequence)).toEqual([4, 8]);
    const mark = await readHighWaterMark(hsm, nodeId);
    expect(mark?.sequence).toBe(8);
    expect(mark?.recordHash).toEqual((await store.readAuditRecords({ nodeId, fromSequence: 8, limit: 1 }))[0]?.hash);
    expect(new TextDecoder().decode(await hsm.readDataObject(checkpointLabel(nodeId)))).toBe(checkpoints[1]?.body);
    expect(await readAuditNodeIndex(hsm)).toContain(nodeId);
    const claim = parseCheckpointJson(checkpoints[0]?.body);
    const [header] = (claim?.json.jws ?? "").split(".");
    expect(JSON.parse(Buffer.from(header ?? "", "base64url").toString())).toEqual({ alg: "ES256", typ: "inkan-audit-checkpoint+jwt", kid: log.keyId });
    expect(checkpoints[0]?.signature).toHaveLength(64);
    // close() covers the tail with a final checkpoint.
    await log.close();
    expect((await store.latestAuditCheckpoint(nodeId))?.sequence).toBe(9);
    expect((await readHighWaterMark(hsm, nodeId))?.sequence).toBe(9);
  });

  it("R-3.2.2.4: a checkpoint once the interval has passed, on the next record or by the timer (fixed clock, fake timer)", async () => {
    const { store, nodeId } = await freshNode();
    let now = new Date("2030-01-01T00:00:00.250Z");
    const log = await open({ store, nodeId, checkpointEveryRecords: 1000, checkpointIntervalMs: 60_000, now: () => now });
    await recordMany(log, 1, 3);
    expect(await store.latestAuditCheckpoint(nodeId)).toBeUndefined();
    now = new Date("2030-01-01T00:01:00.250Z");
    await log.record(event(4));
    const cp = await store.latestAuditCheckpoint(nodeId);
    expect(cp?.sequence).toBe(4);
    expect(cp?.time.toISOString()).toBe("2030-01-01T00:01:00.000Z"); // whole seconds: equals the JWS iat
    await log.record(event(5));
    expect((await store.latestAuditCheckpoint(nodeId))?.sequence).toBe(4);

    const { store: store2, nodeId: node2 } = await freshNode();
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    try {
      let now2 = 0;
      const timed = await open({ store: store2, nodeId: node2, checkpointIntervalMs: 1000, checkpointTimer: true, now: () => new Date(now2) });
      await timed.record(event(1));
      await vi.advanceTimersByTimeAsync(1000); // the interval has not passed by the log's clock yet
      expect(await store2.latestAuditCheckpoint(node2)).toBeUndefined();
      now2 = 5000;
      await vi.advanceTimersByTimeAsync(1000);
      await expect.poll(async () => (await store2.latestAuditCheckpoint(node2))?.sequence).toBe(1);
      expect((await readHighWaterMark(hsm, node2))?.sequence).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it("R-3.2.2.4: appends are serialized: 50 concurrent records get 50 contiguous sequences", async () => {
    const { store, nodeId } = await freshNode();
    const log = await open({ store, nodeId, checkpointEveryRecords: 7 });
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.record(event(i))));
    const rows = await store.readAuditRecords({ nodeId, fromSequence: 1, limit: 100 });
    expect(rows.map((r) => r.sequence)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect((await verifyAuditLog(store, auditSpki, await readHighWaterMarks(hsm, [nodeId]), { nodeId })).ok).toBe(true);
  });

  it("R-3.2.2.4: nodes write separate chains in one store, verified together", async () => {
    const { store, nodeId } = await freshNode();
    const a = await open({ store, nodeId: `${nodeId}-a`, checkpointEveryRecords: 3 });
    const b = await open({ store, nodeId: `${nodeId}-b`, checkpointEveryRecords: 3 });
    await Promise.all([recordMany(a, 1, 7), recordMany(b, 1, 4)]);
    await a.close();
    await b.close();
    const result = await verifyAuditLog(store, auditSpki, await readHighWaterMarks(hsm));
    const mine = result.nodes.filter((n) => n.nodeId.startsWith(nodeId));
    expect(mine.map((n) => [n.nodeId, n.ok, n.lastSequence])).toEqual([
      [`${nodeId}-a`, true, 7],
      [`${nodeId}-b`, true, 4],
    ]);
  });
});

describe("R-3.2.2.4 restart", () => {
  it("R-3.2.2.4: a restarted log resumes the chain from the store's newest record", async () => {
    const { file, store, nodeId } = await freshNode();
    const first = await open({ store, nodeId, checkpointEveryRecords: 4 });
    await recordMany(first, 1, 6);
    // A crash: no close(), records 5 and 6 are not yet covered by a checkpoint.
    const reopenedStore = await createSqliteStore({ file });
    stores.push(reopenedStore);
    const second = await open({ store: reopenedStore, nodeId, checkpointEveryRecords: 4 });
    expect(second.startState).toEqual({ headSequence: 6, moduleCheckpointSequence: 4 });
    await second.record(samStarted({ version: "test", ...second.startState }));
    await recordMany(second, 8, 3);
    await second.close();
    const rows = await reopenedStore.readAuditRecords({ nodeId, fromSequence: 1, limit: 100 });
    expect(rows.map((r) => r.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(rows[6]?.event).toBe("sam.started");
    expect(rows[6]?.prevHash).toEqual(rows[5]?.hash);
    const result = await verifyAuditLog(reopenedStore, auditSpki, await readHighWaterMarks(hsm, [nodeId]), { nodeId });
    expect(result.nodes[0]).toMatchObject({ ok: true, lastSequence: 10, moduleCheckpointSequence: 10 });
  });

  it("R-3.2.2.4: a store truncated behind the crypto module's checkpoint refuses to start (INTEGRITY_VIOLATION)", async () => {
    const { file, store, nodeId } = await freshNode();
    const log = await open({ store, nodeId, checkpointEveryRecords: 5 });
    await recordMany(log, 1, 10);
    await log.close();
    // The attacker removes the tail and every checkpoint from the database; the module still has 10.
    tamper(file, (db) => {
      db.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence > 7").run(nodeId);
      db.prepare("DELETE FROM audit_checkpoints WHERE node_id = ?").run(nodeId);
    });
    const err = await failure(createAuditLog({ store, nodeId, cryptoModule: hsm, checkpointTimer: false }));
    expect(err.code).toBe("INTEGRITY_VIOLATION");
    expect(err.message).toMatch(/ends at record 7 .* covers record 10: truncated/);
  });

  it("R-3.2.2.4: a store whose records were all deleted refuses to start", async () => {
    const { file, store, nodeId } = await freshNode();
    const log = await open({ store, nodeId, checkpointEveryRecords: 2 });
    await recordMany(log, 1, 2);
    tamper(file, (db) => {
      db.prepare("DELETE FROM audit_records WHERE node_id = ?").run(nodeId);
      db.prepare("DELETE FROM audit_checkpoints WHERE node_id = ?").run(nodeId);
    });
    expect((await failure(createAuditLog({ store, nodeId, cryptoModule: hsm, checkpointTimer: false }))).code).toBe("INTEGRITY_VIOLATION");
  });

  it("R-3.2.2.4: a store rewritten before the module's checkpoint (hashes recomputed) refuses to start", async () => {
    const { file, store, nodeId } = await freshNode();
    const log = await open({ store, nodeId, checkpointEveryRecords: 3 });
    await recordMany(log, 1, 3);
    await log.close();
    // Rewrite record 3 with a new body and a correct new hash; the checkpoint in the module still names the old one.
    const row = (await store.readAuditRecords({ nodeId, fromSequence: 3, limit: 1 }))[0]!;
    const forged = { ...recordJsonOf(row)!, signerId: "someone-else" };
    tamper(file, (db) => {
      const { hash: _h, nodeId: _n, sequence: _s, occurredAt: _o, eventType: _e, prevHash: _p, ...fields } = forged;
      db.prepare("UPDATE audit_records SET body = ?, hash = ? WHERE node_id = ? AND sequence = 3").run(
        canonicalJson(fields),
        recordHash(forged),
        nodeId,
      );
      db.prepare("DELETE FROM audit_checkpoints WHERE node_id = ?").run(nodeId);
    });
    const err = await failure(createAuditLog({ store, nodeId, cryptoModule: hsm, checkpointTimer: false }));
    expect(err.code).toBe("INTEGRITY_VIOLATION");
    expect(err.message).toMatch(/EDITED at record 3/);
  });
});

describe("R-3.2.2.4 fail closed", () => {
  it("R-3.2.2.4: when the store's audit write fails, record() rejects with AUDIT_FAILURE and nothing is appended", async () => {
    const { store, nodeId } = await freshNode();
    let failing = false;
    // The one fake: the real store, with its audit write made to fail on demand.
    const flaky: Store = Object.create(store) as Store;
    flaky.appendAuditRecord = async (record) => {
      if (failing) throw new Error("disk full");
      return store.appendAuditRecord(record);
    };
    const log = await open({ store: flaky, nodeId, checkpointEveryRecords: 100 });
    await recordMany(log, 1, 3);
    failing = true;
    const err = await failure(log.record(event(4)));
    expect(err.code).toBe("AUDIT_FAILURE");
    expect((await store.latestAuditRecord(nodeId))?.sequence).toBe(3);
    // The caller's contract: nothing leaves when record() rejects.
    let signatureReleased = false;
    await log.record(event(5)).then(() => (signatureReleased = true), () => undefined);
    expect(signatureReleased).toBe(false);
    expect(await store.readAuditRecords({ nodeId, fromSequence: 4, limit: 10 })).toEqual([]);
    // Once the store works again the chain continues without a gap.
    failing = false;
    await log.record(event(6));
    expect((await store.latestAuditRecord(nodeId))?.sequence).toBe(4);
    expect((await verifyAuditLog(store, auditSpki, await readHighWaterMarks(hsm, [nodeId]), { nodeId })).ok).toBe(true);
  });

  it("R-3.2.2.4: when a due checkpoint cannot be stored, record() rejects with AUDIT_FAILURE", async () => {
    const { file, store, nodeId } = await freshNode();
    const log = await open({ store, nodeId, checkpointEveryRecords: 2 });
    await recordMany(log, 1, 1);
    // A real refusal by the store: someone planted a checkpoint row ahead of the chain.
    tamper(file, (db) => {
      db.prepare("INSERT INTO audit_checkpoints (node_id, sequence, time, body, signature) VALUES (?, 1000, 0, '{}', x'00')").run(nodeId);
    });
    expect((await failure(log.record(event(2)))).code).toBe("AUDIT_FAILURE");
    expect(await readHighWaterMark(hsm, nodeId)).toBeUndefined();
  });

  it("R-3.2.2.4: a second writer on the same node's chain makes the first fail closed", async () => {
    const { file, store, nodeId } = await freshNode();
    const first = await open({ store, nodeId, checkpointEveryRecords: 100 });
    await recordMany(first, 1, 2);
    const otherStore = await createSqliteStore({ file });
    stores.push(otherStore);
    const second = await open({ store: otherStore, nodeId, checkpointEveryRecords: 100 });
    await second.record(event(3));
    expect((await failure(first.record(event(4)))).code).toBe("AUDIT_FAILURE");
    expect((await failure(first.record(event(5)))).code).toBe("AUDIT_FAILURE"); // stays broken
    expect((await store.latestAuditRecord(nodeId))?.sequence).toBe(3);
  });
});

describe("issue 14: versioned heads in the chain", () => {
  const versioned = (key: string, version: number) => recordVersioned({ key, version });

  /** A log with versioned events around two checkpoints (every 4 records: at 6, after a batch, and 10). */
  async function journaled() {
    const node = await freshNode();
    const log = await open({ store: node.store, nodeId: node.nodeId, checkpointEveryRecords: 4 });
    await log.record(event(1));
    await log.record(versioned("signer:s1", 1)); // 2
    await log.record(versioned("signer:s1", 2)); // 3
    await log.recordAll([event(4), versioned("credential:c1", 5), versioned("signer:s1", 3)]); // 4, 5, 6
    await log.record(event(7));
    await log.record(versioned("policy:security-policy", 2)); // 8
    await log.record(event(9));
    await log.record(versioned("signer:s2", 1)); // 10
    await log.close();
    return { ...node, log };
  }

  it("every checkpoint signs the count and digest of the node's versioned events up to it; a restart recomputes them and hands over the heads", async () => {
    const { store, nodeId, log } = await journaled();
    const checkpoints = await store.readAuditCheckpoints({ nodeId, fromSequence: 1, limit: 10 });
    expect(checkpoints.map((c) => [c.sequence, parseCheckpointJson(c.body)?.versioned?.count])).toEqual([[6, 4], [10, 6]]);
    expect(parseCheckpointJson(checkpoints[1]!.body)?.versioned).toEqual(log.versionedDigest);
    expect((await readHighWaterMark(hsm, nodeId))?.checkpoint.versioned).toEqual(log.versionedDigest);
    const payload = JSON.parse(Buffer.from(parseCheckpointJson(checkpoints[1]!.body)!.json.jws.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
    expect(Object.keys(payload).sort()).toEqual(["hsh", "iat", "nod", "seq", "vct", "vdg"]);
    const again = await open({ store, nodeId });
    expect(again.versionedDigest).toEqual(log.versionedDigest);
    expect(Object.fromEntries(again.takeStartHeads())).toEqual({ "signer:s1": 3, "credential:c1": 5, "policy:security-policy": 2, "signer:s2": 1 });
    expect(again.takeStartHeads().size).toBe(0); // handed over once
    expect((await verifyAuditLog(store, auditSpki, await readHighWaterMarks(hsm, [nodeId]), { nodeId })).ok).toBe(true);
  });

  for (const [what, sql] of [
    ["deleted", "DELETE FROM audit_records WHERE node_id = ? AND sequence = 6"],
    ["edited to an older version", `UPDATE audit_records SET body = replace(body, '"version":"3"', '"version":"1"') WHERE node_id = ? AND sequence = 6`],
    ["hidden under another event name", "UPDATE audit_records SET event = 'signer.enrolled' WHERE node_id = ? AND sequence = 6"],
  ] as const) {
    it(`issue 14: a versioned event ${what} before the newest checkpoint stops the start (INTEGRITY_VIOLATION), audited, and no checkpoint signs the tampered digest`, async () => {
      const { file, store, nodeId } = await journaled();
      tamper(file, (db) => db.prepare(sql).run(nodeId));
      const err = await failure(createAuditLog({ store, nodeId, cryptoModule: hsm, checkpointTimer: false }));
      expect(err.code).toBe("INTEGRITY_VIOLATION");
      expect(err.message).toMatch(/versioned events up to record \d+ do not match/);
      const latest = await store.latestAuditRecord(nodeId);
      expect(latest?.event).toBe("integrity.failed");
      expect(JSON.parse(latest!.body)).toMatchObject({ details: { record_kind: "audit-chain", record_id: nodeId } });
      expect((await store.latestAuditCheckpoint(nodeId))?.sequence).toBe(10);
      expect((await readHighWaterMark(hsm, nodeId))?.sequence).toBe(10);
      // Every later start refuses too, until an operator acknowledges a restore (issues 21/22).
      expect((await failure(createAuditLog({ store, nodeId, cryptoModule: hsm, checkpointTimer: false }))).code).toBe("INTEGRITY_VIOLATION");
    });
  }

  it("issue 13 finding 5 (the window that remains): after a crash, versioned events at the end of the chain after the newest checkpoint can be deleted unnoticed", async () => {
    const { file, store, nodeId } = await freshNode();
    const log = await open({ store, nodeId, checkpointEveryRecords: 4 });
    await recordMany(log, 1, 4); // checkpoint at 4
    await log.record(versioned("factor:f1", 2)); // 5: a revocation, say
    // A crash: no close(), record 5 is not covered. The insider deletes it.
    tamper(file, (db) => db.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence = 5").run(nodeId));
    const again = await open({ store, nodeId, checkpointEveryRecords: 4 });
    expect(again.startState).toEqual({ headSequence: 4, moduleCheckpointSequence: 4 });
    expect(again.takeStartHeads().has("factor:f1")).toBe(false);
  });

  it("issue 13 finding 5: the timer writes a due checkpoint within a second of the interval (it looks every second, not once per interval)", async () => {
    const { store, nodeId } = await freshNode();
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    try {
      let now = 30_000;
      const timed = await open({ store, nodeId, checkpointIntervalMs: 60_000, checkpointTimer: true, now: () => new Date(now) });
      await timed.record(event(1));
      await timed.checkpoint(); // at 30 s: the next one is due at 90 s, out of phase with a 60 s timer
      now = 31_000;
      await timed.record(event(2));
      now = 89_000;
      await vi.advanceTimersByTimeAsync(89_000);
      expect((await store.latestAuditCheckpoint(nodeId))?.sequence).toBe(1);
      now = 90_000;
      await vi.advanceTimersByTimeAsync(1000);
      await expect.poll(async () => (await store.latestAuditCheckpoint(nodeId))?.sequence).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("issue 13 finding 5: a tail cut while the node runs", () => {
  for (const when of ["at the next record", "at a clean stop"] as const) {
    it(`R-3.2.2.4: records after the newest checkpoint deleted while the node runs are found ${when}: it fails closed, the crypto module's checkpoint moves to the node's real head, and the next start refuses (truncated)`, async () => {
      const { file, store, nodeId } = await freshNode();
      const log = await open({ store, nodeId, checkpointEveryRecords: 4 });
      await recordMany(log, 1, 4); // checkpoint at 4
      await log.record(recordVersioned({ key: "factor:f1", version: 2 })); // 5: a revocation, say
      await log.record(event(6));
      // A database-only insider deletes 5 and 6, then makes the node fail so that someone restarts it.
      tamper(file, (db) => db.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence > 4").run(nodeId));
      if (when === "at the next record") {
        expect((await failure(log.record(event(7)))).code).toBe("AUDIT_FAILURE");
        expect((await failure(log.record(event(8)))).message).toMatch(/ends at 4 in the store, before its head 6: truncated/);
      } else {
        expect((await failure(log.close())).code).toBe("AUDIT_FAILURE");
      }
      expect((await readHighWaterMark(hsm, nodeId))?.sequence).toBe(6);
      const err = await failure(createAuditLog({ store, nodeId, cryptoModule: hsm, checkpointTimer: false }));
      expect(err.code).toBe("INTEGRITY_VIOLATION");
      expect(err.message).toMatch(/ends at record 4 .* covers record 6: truncated/);
    });
  }
});
