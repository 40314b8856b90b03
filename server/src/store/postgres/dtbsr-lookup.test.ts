/**
 * Issue 20, PostgreSQL migration 3 (SQLite migration 12): the DTBS/R lookup by hash uses an index
 * without the mutable signed flag, and the store's by-hash queries are planned on it. PostgreSQL
 * has no INDEXED BY: the plans are checked on a table with statistics (ANALYZE), by EXPLAIN of the
 * very statements the store sends (text and values recorded from the driver).
 */
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { at } from "../contract.js";
import { findPostgresBinaries, startTestCluster, type TestCluster } from "../testing/postgres-cluster.js";
import { pgMigrations } from "./migrations.js";
import { createPostgresStore, type PostgresStore } from "./postgres-store.js";

const binaries = findPostgresBinaries();
const skipReason = "missing" in binaries ? binaries.missing : undefined;
if (skipReason) console.warn(skipReason);

const claim = (claimId: string) => ({ claimId, nodeId: "n1", bootId: "b1", leaseMs: 60_000 });
const hashA = new Uint8Array(32).fill(0xa);
const hashB = new Uint8Array(32).fill(0xb);
const hashC = new Uint8Array(32).fill(0xc);

/** Columns of an index, in order. */
async function indexColumns(raw: pg.Client, index: string): Promise<string[] | undefined> {
  const { rows } = await raw.query<{ cols: string[] | null }>(
    `SELECT array_agg(a.attname::text ORDER BY k.n) AS cols
     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE c.relname = $1`,
    [index],
  );
  return rows[0]?.cols ?? undefined;
}

/** Opens a raw client, runs fn, closes it. */
async function withClient<T>(uri: string, fn: (raw: pg.Client) => Promise<T>): Promise<T> {
  const raw = new pg.Client({ connectionString: uri });
  await raw.connect();
  try {
    return await fn(raw);
  } finally {
    await raw.end();
  }
}

/** A transaction with the given entries, authorized: the state SignHash claims in. */
async function authorizedTransaction(store: PostgresStore, id: string, hashes: Uint8Array[]): Promise<void> {
  await store.createTransaction({ id, credentialId: "c", signerId: "s", sca: "sca", hashAlgorithm: "SHA256", numSignatures: hashes.length, body: "{}", createdAt: at(0), expiresAt: at(600) });
  expect(await store.appendDtbsr({ transactionId: id, startIndex: 0, hashes, macs: hashes.map((_, i) => new Uint8Array([i])), now: at(1) })).toMatchObject({ ok: true });
  expect(await store.completeDtbsrUpload({ transactionId: id, hashCount: hashes.length, digest: new Uint8Array([9]), challengeHash: `ch-${id}`, now: at(1) })).toBe(true);
  expect(await store.transitionTransaction({ id, from: ["PENDING"], to: "AUTHORIZED", now: at(2), authorization: { body: "{}", seal: new Uint8Array([1]) } })).toBe(true);
}

describe.skipIf(skipReason !== undefined)(skipReason ?? "PostgresStore DTBS/R lookup (issue 20, migration 3)", () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startTestCluster((binaries as { bindir: string }).bindir);
  });
  afterAll(async () => {
    await cluster?.stop();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("T-2.2.1.6: upgrades a schema-2 database in place: the lookup index loses the signed flag, and claims by hash on the old rows still take the lowest unsigned entry, once", async () => {
    const uri = await cluster.createDatabase();
    try {
      // The database as a schema-2 store left it, with a transaction whose entry 0 (hash A) is
      // signed and recorded and entries 1 (A again), 2 (B) and 3 (A again) are not.
      await withClient(uri, async (raw) => {
        await raw.query("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)");
        for (const m of pgMigrations.filter((m) => m.version <= 2)) {
          await raw.query(m.sql);
          await raw.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
        }
        expect(await indexColumns(raw, "dtbsr_by_hash")).toEqual(["transaction_id", "hash", "signed", "idx"]);
        await raw.query(
          `INSERT INTO transactions (id, credential_id, signer_id, sca, hash_algorithm, num_signatures, body, state, hash_count, dtbsr_digest,
             signatures_created, signatures_recorded, created_at, expires_at, authorized_at, updated_at, challenge_hash)
           VALUES ('tx-2', 'cred-1', 's1', 'sca-1', 'SHA256', 4, '\\x7b7d', 'AUTHORIZED', 4, '\\x0909', 1, 1, $1, $2, $3, $3, 'chal-2')`,
          [at(0).getTime(), at(600).getTime(), at(1).getTime()],
        );
        const entry = "INSERT INTO dtbsr (transaction_id, idx, hash, signed, signature, mac, claim_id, claim_node, claim_boot, lease_until) VALUES ('tx-2', $1, $2, $3, $4, $5, $6, $7, $8, $9)";
        await raw.query(entry, [0, hashA, true, new Uint8Array([0x51]), new Uint8Array([0]), "old", "n0", "b0", at(2).getTime()]);
        await raw.query(entry, [1, hashA, false, null, new Uint8Array([1]), null, null, null, null]);
        await raw.query(entry, [2, hashB, false, null, new Uint8Array([2]), null, null, null, null]);
        await raw.query(entry, [3, hashA, false, null, new Uint8Array([3]), null, null, null, null]);
      });

      const store = await createPostgresStore({ uri, poolSize: 2 });
      try {
        expect((await store.settings()).schemaVersion).toBe(pgMigrations[pgMigrations.length - 1]!.version);
        await withClient(uri, async (raw) => {
          expect(await indexColumns(raw, "dtbsr_by_hash")).toBeUndefined();
          expect(await indexColumns(raw, "dtbsr_by_hash_idx")).toEqual(["transaction_id", "hash", "idx"]);
        });

        expect(await store.hasUnsignedEntries({ transactionId: "tx-2", hashes: [hashA, hashB, hashC] })).toEqual([true, true, false]);
        const first = await store.markHashesSigned({ transactionId: "tx-2", hashes: [hashA, hashB], now: at(3), claim: claim("c1") });
        expect(first).toMatchObject({ ok: true, indices: [1, 2], signaturesCreated: 3 });
        expect(first.ok && first.macs.map((m) => m && [...m])).toEqual([[1], [2]]);
        const second = await store.markHashesSigned({ transactionId: "tx-2", hashes: [hashA], now: at(3), claim: claim("c2") });
        expect(second).toMatchObject({ ok: true, indices: [3], signaturesCreated: 4 });
        // Every entry with hash A is signed now: none is claimed twice.
        expect(await store.hasUnsignedEntries({ transactionId: "tx-2", hashes: [hashA, hashB] })).toEqual([false, false]);
        const entries = await store.readDtbsr({ transactionId: "tx-2", fromIndex: 0, limit: 10 });
        expect(entries.map((e) => [e.index, e.signed, e.signature && [...e.signature]])).toEqual([[0, true, [0x51]], [1, true, undefined], [2, true, undefined], [3, true, undefined]]);
      } finally {
        await store.close();
      }
    } finally {
      await cluster.dropDatabase(uri);
    }
  });

  it("a claim by hash refuses a hash whose entries are all signed, and takes nothing of its batch (HASH_NOT_AUTHORIZED)", async () => {
    const uri = await cluster.createDatabase();
    const store = await createPostgresStore({ uri, poolSize: 2 });
    try {
      await authorizedTransaction(store, "tx", [hashA, hashB, hashC]);
      expect(await store.markHashesSigned({ transactionId: "tx", hashes: [hashB], now: at(3), claim: claim("c1") })).toMatchObject({ ok: true, indices: [1] });
      expect(await store.markHashesSigned({ transactionId: "tx", hashes: [hashA, hashB], now: at(3), claim: claim("c2") })).toEqual({ ok: false, reason: "HASH_NOT_AUTHORIZED", index: 1 });
      expect(await store.hasUnsignedEntries({ transactionId: "tx", hashes: [hashA, hashB, hashC] })).toEqual([true, false, true]);
    } finally {
      await store.close();
      await cluster.dropDatabase(uri);
    }
  });

  it("the store's lookups by hash (pre-check and claim) are planned on dtbsr_by_hash_idx, never by reading the transaction's whole list or sorting it", async () => {
    const uri = await cluster.createDatabase();
    const store = await createPostgresStore({ uri, poolSize: 2 });
    try {
      // Statistics as a store in use has them: 400 other transactions of 50 entries each (distinct
      // hashes, half of them signed), then ANALYZE. Without statistics the plan is a guess.
      await withClient(uri, async (raw) => {
        await raw.query(
          `INSERT INTO transactions (id, credential_id, signer_id, sca, hash_algorithm, num_signatures, body, state, hash_count, dtbsr_digest, created_at, expires_at, updated_at)
           SELECT 'bulk-' || t, 'c', 's', 'sca', 'SHA256', 50, '\\x7b7d', 'AUTHORIZED', 50, '\\x09', 0, 1, 0 FROM generate_series(1, 400) AS t`,
        );
        await raw.query(
          `INSERT INTO dtbsr (transaction_id, idx, hash, signed, mac)
           SELECT 'bulk-' || t, i, sha256(convert_to(t || '/' || i, 'UTF8')), i % 2 = 0, '\\x00'
           FROM generate_series(1, 400) AS t, generate_series(0, 49) AS i`,
        );
      });
      await authorizedTransaction(store, "tx", Array.from({ length: 50 }, (_, i) => new Uint8Array(32).fill(i)));
      await withClient(uri, (raw) => raw.query("ANALYZE dtbsr"));

      // The statements the store sends, with their values, recorded from the driver.
      const sent: { text: string; values: unknown[] }[] = [];
      const query = pg.Client.prototype.query;
      vi.spyOn(pg.Client.prototype, "query").mockImplementation(function (this: pg.Client, ...args: unknown[]) {
        if (typeof args[0] === "string" && Array.isArray(args[1])) sent.push({ text: args[0], values: args[1] as unknown[] });
        return (query as (...a: unknown[]) => unknown).apply(this, args);
      } as typeof query);
      expect(await store.hasUnsignedEntries({ transactionId: "tx", hashes: [new Uint8Array(32).fill(7), hashC] })).toEqual([true, true]);
      expect(await store.markHashesSigned({ transactionId: "tx", hashes: [new Uint8Array(32).fill(7)], now: at(3), claim: claim("c1") })).toMatchObject({ ok: true, indices: [7] });
      vi.restoreAllMocks();

      const byHash = sent.filter((s) => /\bFROM dtbsr\b/.test(s.text) && /\bhash = /.test(s.text));
      expect(byHash, "the pre-check and the claim").toHaveLength(2);
      await withClient(uri, async (raw) => {
        for (const { text, values } of byHash) {
          const plan = (await raw.query<{ "QUERY PLAN": string }>(`EXPLAIN ${text}`, values)).rows.map((r) => r["QUERY PLAN"]).join("\n");
          console.log(`${text.replace(/\s+/g, " ").slice(0, 90)}…\n${plan}`);
          expect(plan).toMatch(/Index (Only )?Scan using dtbsr_by_hash_idx on dtbsr[^\n]*\n\s+Index Cond: \(\(transaction_id = '[^']+'::text\) AND \(hash = /);
          expect(plan).not.toMatch(/Seq Scan on dtbsr/);
          expect(plan).not.toMatch(/\bSort\b/); // the index gives the order by idx
          // The primary key may find the claimed row by (transaction_id, idx), never a hash.
          expect(plan).not.toMatch(/using dtbsr_pkey[^\n]*\n\s+Index Cond: \(transaction_id = '[^']+'::text\)\n/);
        }
      });
    } finally {
      await store.close();
      await cluster.dropDatabase(uri);
    }
  });
});
