/**
 * Issue 21 (found by the killed-node test in multi-node-processes.test.ts): a claim of a SignStream
 * range on PostgreSQL counts the claimable entries, then claims them with an UPDATE, in one
 * database transaction. When both statements read clock_timestamp(), a lease of another node that
 * ran out between them made the UPDATE claim more entries than were counted, and the claim failed
 * with HASH_NOT_AUTHORIZED: the stream resumed on another node ended with an error.
 *
 * Here the gap is made deterministic: a second session holds the stream token's row, so the claim
 * waits between its count and its update (FOR SHARE of the token, "while token unused") until the
 * killed node's lease has run out by the database's clock.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ClaimHolder, Store } from "../port.js";
import { findPostgresBinaries, startTestCluster, type TestCluster } from "../testing/postgres-cluster.js";
import { createPostgresStore } from "./postgres-store.js";

const binaries = findPostgresBinaries();
const skipReason = "missing" in binaries ? binaries.missing : undefined;
if (skipReason) console.warn(skipReason);

const holder = (nodeId: string, leaseMs: number): ClaimHolder => ({ claimId: `${nodeId}-${leaseMs}-${Math.random()}`, nodeId, bootId: `${nodeId}-boot`, leaseMs });

describe.skipIf(skipReason !== undefined)(skipReason ?? "PostgreSQL claim leases across nodes (issue 21)", () => {
  let cluster: TestCluster;
  let uri: string;
  let store: Store;
  let locker: pg.Client;
  let watcher: pg.Client;

  beforeAll(async () => {
    cluster = await startTestCluster((binaries as { bindir: string }).bindir);
    uri = await cluster.createDatabase();
    store = await createPostgresStore({ uri, poolSize: 4 });
    locker = new pg.Client({ connectionString: uri });
    watcher = new pg.Client({ connectionString: uri });
    await locker.connect();
    await watcher.connect();
  }, 60_000);

  afterAll(async () => {
    await locker?.end();
    await watcher?.end();
    await store?.close();
    await cluster?.stop();
  });

  it("T-2.2.1.6, issue 17: a lease that runs out between a claim's count and its update neither fails the claim nor claims uncounted entries; the next claim takes them over", async () => {
    const now = () => new Date();
    const hashes = Array.from({ length: 4 }, (_, i) => new Uint8Array(createHash("sha256").update(`lease-${i}`).digest()));
    const id = "tx-lease";
    await store.createTransaction({ id, credentialId: "cred-1", signerId: "signer-1", sca: "CN=sca-1", hashAlgorithm: "SHA256", numSignatures: hashes.length, body: "{}", createdAt: now(), expiresAt: new Date(Date.now() + 600_000) });
    expect(await store.appendDtbsr({ transactionId: id, startIndex: 0, hashes, macs: hashes.map(() => new Uint8Array([1])), now: now() })).toMatchObject({ ok: true });
    expect(await store.completeDtbsrUpload({ transactionId: id, hashCount: hashes.length, digest: new Uint8Array([1]), challengeHash: "challenge", now: now() })).toBe(true);
    expect(await store.transitionTransaction({ id, from: ["PENDING"], to: "AUTHORIZED", authorization: { body: "{}", seal: new Uint8Array([1]) }, now: now() })).toBe(true);
    await store.issueSadToken({ hash: "stream-token", transactionId: id, generation: 1, previousHash: undefined, issuedAt: now(), expiresAt: new Date(Date.now() + 600_000), mac: new Uint8Array([1]) });

    // node-k claims every entry with a 1 s lease, and dies before recording anything.
    expect(await store.markRangeSigned({ transactionId: id, fromIndex: 0, count: 4, now: now(), claim: holder("node-k", 1_000) })).toMatchObject({ ok: true, indices: [0, 1, 2, 3] });

    // node-a's claim (a resumed stream) counts while the lease is live, then waits for the token row held by another session.
    await locker.query("BEGIN");
    await locker.query("SELECT 1 FROM sad_tokens WHERE hash = $1 FOR UPDATE", ["stream-token"]);
    const claiming = store.markRangeSigned({ transactionId: id, fromIndex: 0, count: 4, now: now(), claim: holder("node-a", 30_000), whileTokenUnused: "stream-token" });
    for (;;) {
      const waiting = await watcher.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM sad_tokens%FOR SHARE%'");
      if (waiting.rowCount) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    // The lease runs out by the database's clock while node-a's claim waits between its two statements.
    for (;;) {
      const live = await watcher.query("SELECT 1 FROM dtbsr WHERE transaction_id = $1 AND lease_until > (extract(epoch FROM clock_timestamp()) * 1000)::bigint", [id]);
      if (!live.rowCount) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await locker.query("COMMIT");
    // The claim sees the leases as its transaction began: live, so it claims nothing (and fails nothing).
    expect(await claiming).toMatchObject({ ok: true, indices: [], reclaimed: 0 });
    // Its next claim (the stream polls) takes the expired entries over, counted once.
    expect(await store.markRangeSigned({ transactionId: id, fromIndex: 0, count: 4, now: now(), claim: holder("node-a", 30_000), whileTokenUnused: "stream-token" })).toMatchObject({
      ok: true, indices: [0, 1, 2, 3], reclaimed: 4, signaturesCreated: 4,
    });
  }, 60_000);
});
