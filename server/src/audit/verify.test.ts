/**
 * `verifyAuditLog` against an attacker with write access to the SQLite file (R-3.2.2.4): each
 * tampering is done with raw SQL after dropping the append-only triggers, on a real SoftHSM2
 * token and a real SQLite file, and must be reported as the first break with the right sequence
 * and kind. Small pages (4 records) make every check cross page boundaries.
 */
import { generateKeyPairSync, sign as nodeSign } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { base64url } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import type { AuditRecord, Store } from "../store/port.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";
import { createAuditLog } from "./audit-log.js";
import { auditKeyFromSpki, parseCheckpointJson, readHighWaterMarks } from "./checkpoint.js";
import { signerEnrolled, systemActor, type AuditEvent } from "./events.js";
import { canonicalJson, newStoredRecord, recordHash, recordJsonOf, type AuditRecordJson } from "./record-form.js";
import { verifyAuditLog, type AuditVerification } from "./verify.js";

let dataDir: string;
let hsm: Pkcs11CryptoModule;
let auditSpki: Uint8Array;
const stores: Store[] = [];
let counter = 0;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-audit-verify-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
  auditSpki = await hsm.systemPublicKey("audit-signing");
});

afterAll(async () => {
  for (const s of stores) await s.close();
  await hsm?.close();
  await rm(dataDir, { recursive: true, force: true });
});

const RECORDS = 25;
const event = (i: number): AuditEvent => signerEnrolled({ actor: systemActor, signerId: `signer-${i}`, requestId: `req-${i}` });

/** A node with 25 records, checkpoints at 10, 20 and (on close) 25; the module holds 25. */
async function seeded(options: { close?: boolean } = {}): Promise<{ file: string; store: Store; nodeId: string }> {
  counter++;
  const file = join(dataDir, `store-${counter}.sqlite3`);
  const store = await createSqliteStore({ file });
  stores.push(store);
  const nodeId = `node-${counter}`;
  const log = await createAuditLog({ store, nodeId, cryptoModule: hsm, checkpointEveryRecords: 10, checkpointTimer: false });
  for (let i = 1; i <= RECORDS; i++) await log.record(event(i));
  if (options.close ?? true) await log.close();
  return { file, store, nodeId };
}

async function verify(store: Store, nodeId: string, pageSize = 4): Promise<AuditVerification> {
  return verifyAuditLog(store, auditSpki, await readHighWaterMarks(hsm, [nodeId]), { nodeId, pageSize });
}

async function firstBreak(store: Store, nodeId: string): Promise<{ kind: string; sequence: number } | undefined> {
  const result = await verify(store, nodeId);
  expect(result.nodes).toHaveLength(1);
  const problem = result.nodes[0]?.problem;
  expect(result.ok).toBe(problem === undefined);
  return problem && { kind: problem.kind, sequence: problem.firstBadSequence };
}

/** Raw SQL on the store file, as an attacker with file access (drops the append-only triggers). */
function tamper(file: string, sql: (db: Database.Database) => void): void {
  const db = new Database(file);
  try {
    db.exec("DROP TRIGGER IF EXISTS audit_records_no_update; DROP TRIGGER IF EXISTS audit_records_no_delete;");
    db.exec("DROP TRIGGER IF EXISTS audit_checkpoints_no_update; DROP TRIGGER IF EXISTS audit_checkpoints_no_delete;");
    db.transaction(() => sql(db))();
  } finally {
    db.close();
  }
}

async function row(store: Store, nodeId: string, sequence: number): Promise<AuditRecord> {
  const r = (await store.readAuditRecords({ nodeId, fromSequence: sequence, limit: 1 }))[0];
  if (r?.sequence !== sequence) throw new Error(`no record ${sequence}`);
  return r;
}

/** The event fields of a record's JSON, as the store's body (JCS). */
function bodyOf(json: AuditRecordJson): string {
  const { hash: _h, nodeId: _n, sequence: _s, occurredAt: _o, eventType: _e, prevHash: _p, ...fields } = json;
  return canonicalJson(fields);
}

describe("R-3.2.2.4 verifyAuditLog on an intact log", () => {
  it("R-3.2.2.4: reports OK with the counts, streaming in pages", async () => {
    const { store, nodeId } = await seeded();
    for (const pageSize of [1, 4, 1000]) {
      const result = await verify(store, nodeId, pageSize);
      expect(result.ok).toBe(true);
      expect(result.nodes).toEqual([
        { nodeId, ok: true, recordsChecked: 25, lastSequence: 25, lastCheckpointSequence: 25, moduleCheckpointSequence: 25 },
      ]);
    }
  });

  it("R-3.2.2.4: an unsigned tail after a crash (records after the last checkpoint) still verifies", async () => {
    const { store, nodeId } = await seeded({ close: false });
    expect((await verify(store, nodeId)).nodes[0]).toMatchObject({ ok: true, lastSequence: 25, lastCheckpointSequence: 20, moduleCheckpointSequence: 20 });
  });

  it("R-3.2.2.4: an unknown node is refused with INVALID_REQUEST on node_id", async () => {
    const { store } = await seeded();
    await expect(verifyAuditLog(store, auditSpki, [], { nodeId: "no-such-node" })).rejects.toMatchObject({ code: "INVALID_REQUEST", field: "node_id" });
  });
});

describe("R-3.2.2.4 each kind of tampering is detected at the right sequence", () => {
  it.each([
    ["body (a changed signer id)", "body", (r: AuditRecord) => r.body.replace("signer-5", "signer-X")],
    ["event type", "event", () => "signer.disabled"],
    ["time", "time", (r: AuditRecord) => r.time.getTime() + 1],
    ["prevHash", "prev_hash", () => Buffer.alloc(32, 7)],
    ["hash", "hash", () => Buffer.alloc(32, 9)],
  ] as const)("R-3.2.2.4: an edited field (%s) of record 5 is EDITED at 5", async (_name, column, value) => {
    const { file, store, nodeId } = await seeded();
    const r5 = await row(store, nodeId, 5);
    tamper(file, (db) => db.prepare(`UPDATE audit_records SET ${column} = ? WHERE node_id = ? AND sequence = 5`).run(value(r5), nodeId));
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "EDITED", sequence: 5 });
  });

  it("R-3.2.2.4: a body edited to hold a lone surrogate (no canonical form) is EDITED at 5, not a crash", async () => {
    const { file, store, nodeId } = await seeded();
    const r5 = await row(store, nodeId, 5);
    tamper(file, (db) => db.prepare("UPDATE audit_records SET body = ? WHERE node_id = ? AND sequence = 5").run(r5.body.replace("signer-5", "signer-\\ud800"), nodeId));
    expect((await row(store, nodeId, 5)).body).toContain("\\ud800");
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "EDITED", sequence: 5 });
  });

  it("R-3.2.2.4: an edited record whose hash and all later hashes were recomputed is caught by the signed checkpoint (EDITED at 10)", async () => {
    const { file, store, nodeId } = await seeded();
    const rows = await store.readAuditRecords({ nodeId, fromSequence: 1, limit: 100 });
    const rewritten: { sequence: number; body: string; prevHash: Uint8Array; hash: Uint8Array }[] = [];
    let prev = rows[3]!.hash;
    for (const r of rows.slice(4)) {
      const json = { ...recordJsonOf(r)!, prevHash: Buffer.from(prev).toString("base64") };
      const edited = r.sequence === 5 ? { ...json, signerId: "signer-X" } : json;
      const hash = recordHash(edited);
      rewritten.push({ sequence: r.sequence, body: bodyOf(edited), prevHash: prev, hash });
      prev = hash;
    }
    tamper(file, (db) => {
      const update = db.prepare("UPDATE audit_records SET body = ?, prev_hash = ?, hash = ? WHERE node_id = ? AND sequence = ?");
      for (const w of rewritten) update.run(w.body, w.prevHash, w.hash, nodeId, w.sequence);
    });
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "EDITED", sequence: 10 });
  });

  it("R-3.2.2.4: a deleted record 5 is DELETED at 5", async () => {
    const { file, store, nodeId } = await seeded();
    tamper(file, (db) => db.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence = 5").run(nodeId));
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "DELETED", sequence: 5 });
  });

  it("R-3.2.2.4: a deleted record with the later ones renumbered is DELETED at 5", async () => {
    const { file, store, nodeId } = await seeded();
    tamper(file, (db) => {
      db.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence = 5").run(nodeId);
      db.prepare("UPDATE audit_records SET sequence = sequence + 1000 WHERE node_id = ? AND sequence > 5").run(nodeId);
      db.prepare("UPDATE audit_records SET sequence = sequence - 1001 WHERE node_id = ? AND sequence > 1000").run(nodeId);
    });
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "DELETED", sequence: 5 });
  });

  it("R-3.2.2.4: a record inserted at 6 (later ones renumbered, the forged record correctly hashed and linked) is INSERTED at 6", async () => {
    const { file, store, nodeId } = await seeded();
    const r5 = await row(store, nodeId, 5);
    const { eventType, ...fields } = signerEnrolled({ actor: systemActor, signerId: "intruder" });
    const forged = newStoredRecord({ nodeId, sequence: 6, time: r5.time, eventType, fields, prevHash: r5.hash });
    tamper(file, (db) => {
      db.prepare("UPDATE audit_records SET sequence = sequence + 1000 WHERE node_id = ? AND sequence >= 6").run(nodeId);
      db.prepare("UPDATE audit_records SET sequence = sequence - 999 WHERE node_id = ? AND sequence > 1000").run(nodeId);
      db.prepare("INSERT INTO audit_records (node_id, sequence, time, event, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)").run(
        nodeId, 6, forged.time.getTime(), forged.event, forged.body, forged.prevHash, forged.hash,
      );
    });
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "INSERTED", sequence: 6 });
  });

  it("R-3.2.2.4: a junk record inserted at 6 (later ones renumbered) is INSERTED at 6", async () => {
    const { file, store, nodeId } = await seeded();
    tamper(file, (db) => {
      db.prepare("UPDATE audit_records SET sequence = sequence + 1000 WHERE node_id = ? AND sequence >= 6").run(nodeId);
      db.prepare("UPDATE audit_records SET sequence = sequence - 999 WHERE node_id = ? AND sequence > 1000").run(nodeId);
      db.prepare("INSERT INTO audit_records (node_id, sequence, time, event, body, prev_hash, hash) VALUES (?, 6, 0, 'signer.enrolled', '{}', ?, ?)").run(
        nodeId, Buffer.alloc(32, 1), Buffer.alloc(32, 2),
      );
    });
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "INSERTED", sequence: 6 });
  });

  it("R-3.2.2.4: a junk record appended after the tail is INSERTED at 26", async () => {
    const { file, store, nodeId } = await seeded();
    tamper(file, (db) =>
      db.prepare("INSERT INTO audit_records (node_id, sequence, time, event, body, prev_hash, hash) VALUES (?, 26, 0, 'sam.stopped', '{}', ?, ?)").run(
        nodeId, Buffer.alloc(32, 1), Buffer.alloc(32, 2),
      ),
    );
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "INSERTED", sequence: 26 });
  });

  it.each([
    [5, 6],
    [5, 8],
    [12, 23],
  ])("R-3.2.2.4: two records' contents swapped (%i and %i) are REORDERED at the first", async (a, b) => {
    const { file, store, nodeId } = await seeded();
    const ra = await row(store, nodeId, a);
    const rb = await row(store, nodeId, b);
    tamper(file, (db) => {
      const put = db.prepare("UPDATE audit_records SET time = ?, event = ?, body = ?, prev_hash = ?, hash = ? WHERE node_id = ? AND sequence = ?");
      put.run(rb.time.getTime(), rb.event, rb.body, rb.prevHash, rb.hash, nodeId, a);
      put.run(ra.time.getTime(), ra.event, ra.body, ra.prevHash, ra.hash, nodeId, b);
    });
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "REORDERED", sequence: a });
  });

  it("R-3.2.2.4: a deleted tail (records 16 to 25) is TRUNCATED at 16, found by the store's checkpoints", async () => {
    const { file, store, nodeId } = await seeded();
    tamper(file, (db) => db.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence >= 16").run(nodeId));
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "TRUNCATED", sequence: 16 });
  });

  it("R-3.2.2.4: a deleted tail with its checkpoints is TRUNCATED at 16, found by the crypto module's checkpoint", async () => {
    const { file, store, nodeId } = await seeded();
    tamper(file, (db) => {
      db.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence >= 16").run(nodeId);
      db.prepare("DELETE FROM audit_checkpoints WHERE node_id = ? AND sequence >= 16").run(nodeId);
    });
    const result = await verify(store, nodeId);
    expect(result.nodes[0]?.problem).toMatchObject({ kind: "TRUNCATED", firstBadSequence: 16 });
    expect(result.nodes[0]?.problem?.description).toMatch(/crypto module checkpoint covers record 25/);
  });

  it("R-3.2.2.4: every record and checkpoint of a node deleted: the node is still verified (from the module) and TRUNCATED at 1", async () => {
    const { file, store, nodeId } = await seeded();
    tamper(file, (db) => {
      db.prepare("DELETE FROM audit_records WHERE node_id = ?").run(nodeId);
      db.prepare("DELETE FROM audit_checkpoints WHERE node_id = ?").run(nodeId);
    });
    const all = await verifyAuditLog(store, auditSpki, await readHighWaterMarks(hsm), { pageSize: 4 });
    expect(all.ok).toBe(false);
    expect(all.nodes.find((n) => n.nodeId === nodeId)?.problem).toMatchObject({ kind: "TRUNCATED", firstBadSequence: 1 });
  });

  it("R-3.2.2.4: a checkpoint whose signature column was replaced is CHECKPOINT_INVALID at 10", async () => {
    const { file, store, nodeId } = await seeded();
    tamper(file, (db) => db.prepare("UPDATE audit_checkpoints SET signature = ? WHERE node_id = ? AND sequence = 10").run(Buffer.alloc(64, 3), nodeId));
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "CHECKPOINT_INVALID", sequence: 10 });
  });

  it("R-3.2.2.4: a checkpoint re-signed with another key (same kid, forged JWS, consistent row) is CHECKPOINT_INVALID at 10", async () => {
    const { file, store, nodeId } = await seeded();
    const rows = await store.readAuditCheckpoints({ nodeId, fromSequence: 10, limit: 1 });
    const claim = parseCheckpointJson(rows[0]?.body)!;
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const [header, payload] = claim.json.jws.split(".");
    const signingInput = `${header}.${payload}`;
    const forgedSig = nodeSign("sha256", Buffer.from(signingInput), { key: privateKey, dsaEncoding: "ieee-p1363" });
    const body = canonicalJson({ ...claim.json, jws: `${signingInput}.${base64url.encode(forgedSig)}` });
    tamper(file, (db) => db.prepare("UPDATE audit_checkpoints SET body = ?, signature = ? WHERE node_id = ? AND sequence = 10").run(body, forgedSig, nodeId));
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "CHECKPOINT_INVALID", sequence: 10 });
  });

  it("R-3.2.2.4: a checkpoint over a forged chain head (another record hash, signed by a foreign key) is CHECKPOINT_INVALID at its sequence", async () => {
    const { file, store, nodeId } = await seeded();
    const key = await auditKeyFromSpki(auditSpki);
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const header = base64url.encode(JSON.stringify({ alg: "ES256", typ: "inkan-audit-checkpoint+jwt", kid: key.keyId }));
    const payload = base64url.encode(JSON.stringify({ nod: nodeId, seq: 15, hsh: base64url.encode(Buffer.alloc(32, 5)), iat: 1_900_000_000 }));
    const sig = nodeSign("sha256", Buffer.from(`${header}.${payload}`), { key: privateKey, dsaEncoding: "ieee-p1363" });
    const body = canonicalJson({
      nodeId,
      sequence: "15",
      recordHash: Buffer.alloc(32, 5).toString("base64"),
      signedAt: "2030-03-17T17:46:40Z",
      keyId: key.keyId,
      jws: `${header}.${payload}.${base64url.encode(sig)}`,
    });
    tamper(file, (db) =>
      db.prepare("INSERT INTO audit_checkpoints (node_id, sequence, time, body, signature) VALUES (?, 15, ?, ?, ?)").run(nodeId, 1_900_000_000_000, body, sig),
    );
    expect(await firstBreak(store, nodeId)).toEqual({ kind: "CHECKPOINT_INVALID", sequence: 15 });
  });
});
