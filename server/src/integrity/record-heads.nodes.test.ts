/**
 * Several SAM nodes sharing one store and one crypto module (issue 14): each journals its heads in
 * its own audit chain; a node learns the others' heads at start (checked against their
 * checkpoints) and by tailing their versioned events. Real SoftHSM2 token and SQLite file.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAuditLog, type ChainedAuditLog } from "../audit/audit-log.js";
import type { Pkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import type { Store } from "../store/port.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";
import { openRecordHeads, type RecordHeads } from "./record-heads.js";
import { IntegrityViolationError } from "./record-sealer.js";

let dataDir: string;
let hsm: Pkcs11CryptoModule;
const stores: Store[] = [];
const logs: ChainedAuditLog[] = [];
const opened: RecordHeads[] = [];
let counter = 0;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-heads-nodes-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
});

afterAll(async () => {
  for (const h of opened) h.stop();
  for (const log of logs) await log.close().catch(() => undefined);
  for (const s of stores) await s.close();
  await hsm?.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** A node: its own connection to the shared store file, its audit log and its heads. */
async function node(file: string, nodeId: string): Promise<{ store: Store; log: ChainedAuditLog; heads: RecordHeads }> {
  const store = await createSqliteStore({ file });
  stores.push(store);
  const log = await createAuditLog({ store, nodeId, cryptoModule: hsm, checkpointEveryRecords: 3, checkpointTimer: false });
  logs.push(log);
  const heads = await openRecordHeads({ nodeId, audit: log, store, cryptoModule: hsm, ownHeads: log.takeStartHeads(), tailIntervalMs: 0 });
  opened.push(heads);
  return { store, log, heads };
}

function shared(): { file: string; a: string; b: string } {
  counter++;
  return { file: join(dataDir, `store-${counter}.sqlite3`), a: `n${counter}-a`, b: `n${counter}-b` };
}

const rejection = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

describe("issue 14: heads across nodes", () => {
  it("a node learns another node's heads at start and by its tail, and refuses an older copy of what that node wrote", async () => {
    const { file, a, b } = shared();
    const nodeB = await node(file, b);
    for (let v = 1; v <= 4; v++) await nodeB.heads.advance("signer:s1", v); // 4 records: a checkpoint at 3
    const nodeA = await node(file, a);
    expect(nodeA.heads.head("signer:s1")).toBe(4);
    expect(await rejection(nodeA.heads.check("signer:s1", 3))).toBeInstanceOf(IntegrityViolationError);
    await nodeB.heads.advance("credential:c1", 2);
    expect(nodeA.heads.head("credential:c1")).toBe(0); // the window until the tail reads it
    await nodeA.heads.tail();
    expect(nodeA.heads.head("credential:c1")).toBe(2);
    expect(await rejection(nodeA.heads.check("credential:c1", 1))).toBeInstanceOf(IntegrityViolationError);
  });

  it("another node's versioned event deleted before its checkpoint stops this node's start (INTEGRITY_VIOLATION), recorded in this node's chain", async () => {
    const { file, a, b } = shared();
    const nodeB = await node(file, b);
    for (let v = 1; v <= 7; v++) await nodeB.heads.advance("factor:f1", v); // checkpoints at 3 and 6
    const raw = new Database(file);
    raw.exec("DROP TRIGGER IF EXISTS audit_records_no_delete");
    raw.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence = 5").run(b);
    raw.close();
    const store = await createSqliteStore({ file });
    stores.push(store);
    const log = await createAuditLog({ store, nodeId: a, cryptoModule: hsm, checkpointEveryRecords: 3, checkpointTimer: false });
    logs.push(log);
    const err = await rejection(openRecordHeads({ nodeId: a, audit: log, store, cryptoModule: hsm, ownHeads: log.takeStartHeads(), tailIntervalMs: 0 }));
    expect(err).toMatchObject({ code: "INTEGRITY_VIOLATION" });
    expect(String((err as Error).message)).toMatch(new RegExp(`node ${b}: .*do not match`));
    const latest = await store.latestAuditRecord(a);
    expect(latest?.event).toBe("integrity.failed");
    expect(JSON.parse(latest!.body)).toMatchObject({ details: { record_kind: "audit-chain", record_id: b } });
  });

  it("another node's chain cut behind the checkpoint the crypto module keeps stops this node's start", async () => {
    const { file, a, b } = shared();
    const nodeB = await node(file, b);
    for (let v = 1; v <= 6; v++) await nodeB.heads.advance("signer:s9", v); // module checkpoint at 6
    const raw = new Database(file);
    raw.exec("DROP TRIGGER IF EXISTS audit_records_no_delete; DROP TRIGGER IF EXISTS audit_checkpoints_no_delete");
    raw.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence > 4").run(b);
    raw.prepare("DELETE FROM audit_checkpoints WHERE node_id = ? AND sequence > 4").run(b);
    raw.close();
    const store = await createSqliteStore({ file });
    stores.push(store);
    const log = await createAuditLog({ store, nodeId: a, cryptoModule: hsm, checkpointTimer: false });
    logs.push(log);
    const err = await rejection(openRecordHeads({ nodeId: a, audit: log, store, cryptoModule: hsm, ownHeads: log.takeStartHeads(), tailIntervalMs: 0 }));
    expect(err).toMatchObject({ code: "INTEGRITY_VIOLATION" });
    expect(String((err as Error).message)).toMatch(/truncated or rewritten/);
  });
});
