/**
 * Issue 20, migration 12: the DTBS/R lookup by hash uses an index without the mutable signed flag
 * (a claim no longer moves an index entry), and every DTBS/R lookup names its index, since without
 * statistics the planner reads the transaction's whole list by primary key.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { at } from "../contract.js";
import { migrations } from "./migrations.js";
import { createSqliteStore, dtbsrSql, sqliteStoreFile } from "./sqlite-store.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function storeFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "inkan-dtbsr-lookup-"));
  dirs.push(dir);
  return sqliteStoreFile(dir);
}

const claim = (claimId: string) => ({ claimId, nodeId: "n1", bootId: "b1", leaseMs: 60_000 });
const hashA = new Uint8Array(32).fill(0xa);
const hashB = new Uint8Array(32).fill(0xb);
const hashC = new Uint8Array(32).fill(0xc);

/** A file at schema `version` (each migration as the store would have run it). */
function fileAtSchema(version: number): string {
  const file = storeFile();
  const raw = new Database(file);
  raw.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL) STRICT");
  const record = raw.prepare("INSERT INTO schema_migrations (version, name) VALUES (?, ?)");
  for (const m of migrations.filter((m) => m.version <= version)) {
    raw.exec(m.sql);
    record.run(m.version, m.name);
  }
  raw.close();
  return file;
}

describe("SqliteStore DTBS/R lookup (issue 20, migration 12)", () => {
  it("T-2.2.1.6: upgrades a schema-11 file in place: the lookup index loses the signed flag, and claims by hash on the old rows still take the lowest unsigned entry, once", async () => {
    const file = fileAtSchema(11);
    const raw = new Database(file);
    expect(raw.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'dtbsr_by_hash'").get()).toBeDefined();
    raw.prepare(
      `INSERT INTO transactions (id, credential_id, signer_id, sca, hash_algorithm, num_signatures, body, state, hash_count, dtbsr_digest,
         signatures_created, signatures_recorded, created_at, expires_at, authorized_at, updated_at, challenge_hash)
       VALUES ('tx-11', 'cred-1', 's1', 'sca-1', 'SHA256', 4, '{}', 'AUTHORIZED', 4, x'0909', 1, 1, ?, ?, ?, ?, 'chal-11')`,
    ).run(at(0).getTime(), at(600).getTime(), at(1).getTime(), at(1).getTime());
    // Entry 0 (hash A) signed and recorded; entries 1 (A again), 2 (B) and 3 (A again) unsigned.
    const entry = raw.prepare("INSERT INTO dtbsr (transaction_id, idx, hash, signed, signature, mac, claim_id, claim_node, claim_boot, lease_until) VALUES ('tx-11', ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    entry.run(0, hashA, 1, new Uint8Array([0x51]), new Uint8Array([0]), "old", "n0", "b0", at(2).getTime());
    entry.run(1, hashA, 0, null, new Uint8Array([1]), null, null, null, null);
    entry.run(2, hashB, 0, null, new Uint8Array([2]), null, null, null, null);
    entry.run(3, hashA, 0, null, new Uint8Array([3]), null, null, null, null);
    raw.close();

    const store = await createSqliteStore({ file });
    expect(store.settings().schemaVersion).toBe(migrations[migrations.length - 1]!.version);
    const db = new Database(file, { readonly: true });
    expect(db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'dtbsr_by_hash'").get()).toBeUndefined();
    expect((db.pragma("index_info(dtbsr_by_hash_idx)") as { name: string }[]).map((c) => c.name)).toEqual(["transaction_id", "hash", "idx"]);
    db.close();

    expect(await store.hasUnsignedEntries({ transactionId: "tx-11", hashes: [hashA, hashB, hashC] })).toEqual([true, true, false]);
    const first = await store.markHashesSigned({ transactionId: "tx-11", hashes: [hashA, hashB], now: at(3), claim: claim("c1") });
    expect(first).toMatchObject({ ok: true, indices: [1, 2], signaturesCreated: 3 });
    expect(first.ok && first.macs.map((m) => m && [...m])).toEqual([[1], [2]]);
    const second = await store.markHashesSigned({ transactionId: "tx-11", hashes: [hashA], now: at(3), claim: claim("c2") });
    expect(second).toMatchObject({ ok: true, indices: [3], signaturesCreated: 4 });
    // Every entry with hash A is signed now: none is claimed twice.
    expect(await store.hasUnsignedEntries({ transactionId: "tx-11", hashes: [hashA, hashB] })).toEqual([false, false]);
    const entries = await store.readDtbsr({ transactionId: "tx-11", fromIndex: 0, limit: 10 });
    expect(entries.map((e) => [e.index, e.signed, e.signature && [...e.signature]])).toEqual([[0, true, [0x51]], [1, true, undefined], [2, true, undefined], [3, true, undefined]]);
    await store.close();
  });

  it("a claim by hash refuses a hash whose entries are all signed, and takes nothing of its batch (HASH_NOT_AUTHORIZED)", async () => {
    const store = await createSqliteStore({ file: storeFile() });
    await store.createTransaction({ id: "tx", credentialId: "c", signerId: "s", sca: "sca", hashAlgorithm: "SHA256", numSignatures: 3, body: "{}", createdAt: at(0), expiresAt: at(600) });
    expect(await store.appendDtbsr({ transactionId: "tx", startIndex: 0, hashes: [hashA, hashB, hashC], macs: [new Uint8Array([0]), new Uint8Array([1]), new Uint8Array([2])], now: at(1) })).toMatchObject({ ok: true });
    expect(await store.completeDtbsrUpload({ transactionId: "tx", hashCount: 3, digest: new Uint8Array([9]), challengeHash: "ch", now: at(1) })).toBe(true);
    expect(await store.transitionTransaction({ id: "tx", from: ["PENDING"], to: "AUTHORIZED", now: at(2), authorization: { body: "{}", seal: new Uint8Array([1]) } })).toBe(true);
    expect(await store.markHashesSigned({ transactionId: "tx", hashes: [hashB], now: at(3), claim: claim("c1") })).toMatchObject({ ok: true, indices: [1] });
    expect(await store.markHashesSigned({ transactionId: "tx", hashes: [hashA, hashB], now: at(3), claim: claim("c2") })).toEqual({ ok: false, reason: "HASH_NOT_AUTHORIZED", index: 1 });
    expect(await store.hasUnsignedEntries({ transactionId: "tx", hashes: [hashA, hashB, hashC] })).toEqual([true, false, true]);
    await store.close();
  });

  it("every DTBS/R lookup that names its index is planned on it, never by reading the transaction's whole list", async () => {
    const file = storeFile();
    await (await createSqliteStore({ file })).close();
    const raw = new Database(file, { readonly: true });
    const expected: Record<keyof typeof dtbsrSql, RegExp> = {
      unsignedByHash: /SEARCH dtbsr USING INDEX dtbsr_by_hash_idx \(transaction_id=\? AND hash=\?\)/,
      claimByHash: /SEARCH dtbsr USING INDEX dtbsr_by_hash_idx \(transaction_id=\? AND hash=\?\)/,
      unrecorded: /USING (COVERING )?INDEX dtbsr_unrecorded/,
      byClaim: /SEARCH dtbsr USING INDEX dtbsr_by_claim \(transaction_id=\? AND claim_id=\?\)/,
      retakeClaim: /SEARCH dtbsr USING INDEX dtbsr_by_claim \(transaction_id=\? AND claim_id=\?\)/,
    };
    for (const [name, sql] of Object.entries(dtbsrSql) as [keyof typeof dtbsrSql, string][]) {
      const positional = sql.replace(/@\w+/g, "?");
      const params = Array.from({ length: positional.split("?").length - 1 }, () => 1);
      const plan = (raw.prepare(`EXPLAIN QUERY PLAN ${positional}`).all(...params) as { detail: string }[]).map((p) => p.detail).join("\n");
      expect(plan, name).toMatch(expected[name]);
      expect(plan, name).not.toMatch(/USING PRIMARY KEY \(transaction_id=\?\)$/m); // the whole list
      expect(plan, name).not.toMatch(/TEMP B-TREE/); // the index gives the order
    }
    raw.close();
  });
});
