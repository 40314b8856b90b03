/**
 * R-3.2.2.4, issue 20: the record texts are now made in one pass (record-form.ts recordTexts). A
 * chain written by the previous form (body = JCS(fields), hash = SHA-256(JCS of the whole record
 * without hash)) must still open, be continued by the new code, and verify end to end, on a real
 * SoftHSM2 token and a real SQLite file.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Pkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import type { AuditRecord } from "../store/port.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";
import { createAuditLog } from "./audit-log.js";
import { readHighWaterMarks } from "./checkpoint.js";
import { signatureCreated, signerEnrolled, systemActor, type AuditEvent } from "./events.js";
import { canonicalJson, sha256, timestampJson, toBase64, ZERO_HASH } from "./record-form.js";
import { verifyAuditLog } from "./verify.js";

let dataDir: string;
let hsm: Pkcs11CryptoModule;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-legacy-chain-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
});

afterAll(async () => {
  await hsm?.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** The record as the code before issue 20 built it (newStoredRecord, two canonicalize passes). */
function legacyStoredRecord(nodeId: string, sequence: number, time: Date, event: AuditEvent, prevHash: Uint8Array): AuditRecord {
  const { eventType, ...fields } = event;
  const json = { ...fields, nodeId, sequence: String(sequence), occurredAt: timestampJson(time), eventType, prevHash: toBase64(prevHash) };
  return { nodeId, sequence, time, event: eventType, body: canonicalJson(fields), prevHash, hash: sha256(canonicalJson(json)) };
}

const sca = { kind: "sca", subject: "CN=Bénédicte \"SCA\" \\ 日本 \ud83d\ude00\u2028,O=Example", certificateSha256: new Uint8Array(32).fill(7) } as const;
const eventAt = (i: number): AuditEvent =>
  i % 3 === 0
    ? signerEnrolled({ actor: systemActor, signerId: `signer-ü-${i}`, requestId: `req\t${i}` })
    : signatureCreated({ sca, signerId: "s-1", credentialId: "c-1", transactionId: `tx-${i}`, requestId: "r", hash: new Uint8Array(32).fill(i & 0xff), hashAlgorithm: "SHA256", signatureAlgorithm: "ECDSA_P256_SHA256" });

it("R-3.2.2.4: a chain written by the previous record form opens, is continued by the new form, and verifies", async () => {
  const store = await createSqliteStore({ file: join(dataDir, "store.sqlite3") });
  const nodeId = "node-légacy";
  try {
    const old: AuditRecord[] = [];
    let prevHash = ZERO_HASH;
    for (let sequence = 1; sequence <= 300; sequence++) {
      const record = legacyStoredRecord(nodeId, sequence, new Date(Date.UTC(2026, 11, 1, 0, 0, 0, sequence * 7)), eventAt(sequence), prevHash);
      old.push(record);
      prevHash = record.hash;
    }
    await store.appendAuditRecords(old);
    // Opening checks the unsigned tail (all 300 records here), recomputing each hash.
    const log = await createAuditLog({ nodeId, store, cryptoModule: hsm, checkpointTimer: false, checkpointEveryRecords: 100 });
    expect(log.startState.headSequence).toBe(300);
    await log.recordAll(Array.from({ length: 250 }, (_, i) => eventAt(301 + i)));
    await log.close();
    const result = await verifyAuditLog(store, await hsm.systemPublicKey("audit-signing"), await readHighWaterMarks(hsm, [nodeId]), { nodeId });
    expect(result.ok).toBe(true);
    expect(result.nodes[0]).toMatchObject({ nodeId, ok: true, recordsChecked: 550, lastSequence: 550 });
    // The new records are what the previous form would have written for the same events.
    const written = await store.readAuditRecords({ nodeId, fromSequence: 301, limit: 250 });
    let prev = old.at(-1)!.hash;
    for (const r of written) {
      const again = legacyStoredRecord(nodeId, r.sequence, r.time, eventAt(r.sequence), prev);
      expect(r.body).toBe(again.body);
      expect(toBase64(r.hash)).toBe(toBase64(again.hash));
      prev = r.hash;
    }
  } finally {
    await store.close();
  }
});
