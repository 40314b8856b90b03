/**
 * Issue 20 (batched audit records): events recorded while an append is in flight go into the store
 * together, in one atomic append, in the order they were recorded. On a real SoftHSM2 token and a
 * real SQLite file: fewer store appends than records, the chain intact and verified, a checkpoint
 * still at least every `checkpointEveryRecords` records, and fail closed: when a batched append
 * fails, every caller in it gets AUDIT_FAILURE and none of its records is in the store.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InkanError } from "../errors.js";
import type { Pkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import type { AuditRecord, Store } from "../store/port.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";
import { createAuditLog, type ChainedAuditLog } from "./audit-log.js";
import { readHighWaterMarks } from "./checkpoint.js";
import { signerEnrolled, systemActor } from "./events.js";
import { verifyAuditLog } from "./verify.js";

let dataDir: string;
let hsm: Pkcs11CryptoModule;
let auditSpki: Uint8Array;
const closers: (() => Promise<void>)[] = [];
let counter = 0;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-audit-batch-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
  auditSpki = await hsm.systemPublicKey("audit-signing");
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await hsm?.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** A fresh store whose audit appends are counted, and can be made to fail. */
async function countedNode(): Promise<{ store: Store; nodeId: string; appends: number[]; failNext: { on: boolean } }> {
  const store = await createSqliteStore({ file: join(dataDir, `store-${++counter}.sqlite3`) });
  closers.push(() => store.close());
  const appends: number[] = [];
  const failNext = { on: false };
  const counted = new Proxy(store, {
    get(target, prop) {
      if (prop === "appendAuditRecords" || prop === "appendAuditRecord") {
        return async (r: AuditRecord | readonly AuditRecord[]) => {
          const records = Array.isArray(r) ? (r as AuditRecord[]) : [r as AuditRecord];
          if (failNext.on) {
            failNext.on = false;
            throw new Error("disk full");
          }
          appends.push(records.length);
          return target.appendAuditRecords(records);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store: counted, nodeId: `batch-node-${counter}`, appends, failNext };
}

async function open(store: Store, nodeId: string, checkpointEveryRecords = 1000): Promise<ChainedAuditLog> {
  const log = await createAuditLog({ cryptoModule: hsm, store, nodeId, checkpointTimer: false, checkpointEveryRecords });
  closers.push(() => log.close());
  return log;
}

const event = (i: number) => signerEnrolled({ actor: systemActor, signerId: `signer-${i}`, requestId: `req-${i}` });
const signerOf = (r: AuditRecord) => (JSON.parse(r.body) as { signerId?: string }).signerId;

describe("batched audit records (issue 20)", () => {
  it("R-3.2.2.4: 50 records from concurrent callers take fewer than 50 store appends, in call order, and the chain verifies", async () => {
    const { store, nodeId, appends } = await countedNode();
    const log = await open(store, nodeId);
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.record(event(i))));
    expect(appends.reduce((a, b) => a + b, 0)).toBe(50);
    expect(appends.length).toBeLessThan(50);
    const rows = await store.readAuditRecords({ nodeId, fromSequence: 1, limit: 100 });
    expect(rows.map((r) => r.sequence)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(rows.map(signerOf)).toEqual(Array.from({ length: 50 }, (_, i) => `signer-${i}`));
    expect((await verifyAuditLog(store, auditSpki, await readHighWaterMarks(hsm, [nodeId]), { nodeId })).ok).toBe(true);
  });

  it("R-3.2.2.4 (issue 13 finding 5): a batch never runs past a due checkpoint: 23 concurrent records, a checkpoint every 5", async () => {
    const { store, nodeId, appends } = await countedNode();
    const log = await open(store, nodeId, 5);
    await Promise.all(Array.from({ length: 23 }, (_, i) => log.record(event(i))));
    const checkpoints = await store.readAuditCheckpoints({ nodeId, fromSequence: 1, limit: 100 });
    expect(checkpoints.map((c) => c.sequence)).toEqual([5, 10, 15, 20]);
    expect(Math.max(...appends)).toBeLessThanOrEqual(5);
  });

  it("R-3.2.2.4 fail closed: when a batched append fails, every caller in it gets AUDIT_FAILURE, none of its records is stored, and the log goes on", async () => {
    const { store, nodeId, appends, failNext } = await countedNode();
    const log = await open(store, nodeId);
    await log.record(event(0));
    failNext.on = true; // the next append fails: the 6 records recorded together are one batch
    const outcomes = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => log.record(event(1 + i))));
    expect(outcomes.every((o) => o.status === "rejected" && (o.reason as InkanError).code === "AUDIT_FAILURE")).toBe(true);
    const rows = await store.readAuditRecords({ nodeId, fromSequence: 1, limit: 100 });
    expect(rows.map(signerOf)).toEqual(["signer-0"]);
    await log.record(event(99));
    expect((await store.readAuditRecords({ nodeId, fromSequence: 1, limit: 100 })).map(signerOf)).toEqual(["signer-0", "signer-99"]);
    expect(appends).toEqual([1, 1]);
    expect((await verifyAuditLog(store, auditSpki, await readHighWaterMarks(hsm, [nodeId]), { nodeId })).ok).toBe(true);
  });
});
