/**
 * Issue 20: the SAM's own cost per signature on the signing path, without the crypto module.
 * `npx tsc -b && node server/dist/bench/signing-path-cost.js [--signatures 20000] [--rounds 3] [--shuffle] [--json]`
 * (never a timed test). Each step is what SignHash (by hash, 100 hashes per call) and SignStream
 * (by range, 500 entries per claim) do per batch in the SQLite store and in Node (SignHash asks
 * for the list's hashes in order, as `npm run bench` does; with --shuffle in a scattered order):
 *
 * - precheck (by hash): SignHash's read-only pre-check, hasUnsignedEntries;
 * - claim: markRangeSigned / markHashesSigned, one group commit each;
 * - entry MACs: the claimed entries' MACs checked (T-2.2.2.2), as SigningCore.checkClaimed does;
 * - record: recordSignatures under the claim (64-byte signatures), one group commit;
 * - audit build: signature.created events and their chained records (events.ts, record-form.ts),
 *   as SigningCore.auditCreated and ChainedAuditLog's append build them;
 * - audit store: appendAuditRecords of those records, one group commit.
 *
 * The module's sign and verify (and the one module HMAC per call for the entry key) are left out:
 * they are the raw figure's, not the SAM's. Printed per signature: wall time and this process's
 * CPU time (user + system, so an fsync's kernel time is in it), the median of `rounds` rounds, each
 * on a fresh transaction of `signatures` entries in one store file.
 *
 * Measured on main c4d1d02 (WAL fdatasync) before and after, alternated, medians of 3 runs, 2 cores
 * at load average 6 to 7 from other work (so CPU time is the figure to compare): by range 41.6 ->
 * 26.2 µs CPU per signature (wall 58 -> 40), by hash 71.4 -> 45.1 (wall 117 -> 72), from migration
 * 12 (a claim no longer moves a lookup-index entry), signature.created from a per-call template,
 * and a claim's entry MACs checked in one pass.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { signatureCreated, type AuditEvent } from "../audit/events.js";
import { newStoredRecord, timestampJson, toBase64, ZERO_HASH } from "../audit/record-form.js";
import { EntryKey } from "../sap/authorization-seal.js";
import type { AuditRecord, ClaimHolder, MarkSignedResult } from "../store/port.js";
import { createSqliteStore, type SqliteStore } from "../store/sqlite/sqlite-store.js";

const { values: args } = parseArgs({ options: { signatures: { type: "string", default: "20000" }, rounds: { type: "string", default: "3" }, json: { type: "boolean", default: false }, shuffle: { type: "boolean", default: false } } });
const total = Number(args.signatures);
const rounds = Number(args.rounds);
const rangeBatch = 500; // sign-stream.ts streamBatchSize
const hashBatch = 100; // SignHash, 100 hashes per call

type Step = "precheck" | "claim" | "entryMacs" | "record" | "auditBuild" | "auditStore";
const steps: readonly Step[] = ["precheck", "claim", "entryMacs", "record", "auditBuild", "auditStore"];
interface Cost {
  wallUs: number;
  cpuUs: number;
}
type Timings = Record<Step, Cost>;

const zero = (): Timings => Object.fromEntries(steps.map((s) => [s, { wallUs: 0, cpuUs: 0 }])) as Timings;

async function timed<T>(into: Cost, fn: () => Promise<T> | T): Promise<T> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const out = await fn();
  into.wallUs += (performance.now() - start) * 1000;
  const used = process.cpuUsage(cpu);
  into.cpuUs += used.user + used.system;
  return out;
}

const now = new Date(Date.now());
const expiresAt = new Date(now.getTime() + 3_600_000);
let txCounter = 0;
let claimCounter = 0;
const claim = (): ClaimHolder => ({ claimId: `c${claimCounter++}`, nodeId: "bench", bootId: "boot", leaseMs: 30_000 });

/** An AUTHORIZED transaction of `n` entries (distinct random SHA-256 hashes, MACed), and its entry key. */
async function authorizedTransaction(store: SqliteStore, n: number): Promise<{ id: string; hashes: Uint8Array[]; key: EntryKey }> {
  const id = `tx-bench-${txCounter++}`;
  const key = new EntryKey(id, randomBytes(32), async () => {
    throw new Error("entry MAC mismatch");
  });
  await store.createTransaction({ id, credentialId: "cred", signerId: "signer", sca: "sca", hashAlgorithm: "SHA256", numSignatures: n, body: "{}", createdAt: now, expiresAt });
  const hashes = Array.from({ length: n }, () => new Uint8Array(randomBytes(32)));
  for (let from = 0; from < n; from += 10_000) {
    const chunk = hashes.slice(from, from + 10_000);
    const appended = await store.appendDtbsr({ transactionId: id, startIndex: from, hashes: chunk, macs: key.macs(from, chunk), now });
    if (!appended.ok) throw new Error(`append refused: ${appended.reason}`);
  }
  if (!(await store.completeDtbsrUpload({ transactionId: id, hashCount: n, digest: new Uint8Array(32), challengeHash: `ch-${id}`, now }))) throw new Error("upload not completed");
  if (!(await store.transitionTransaction({ id, from: ["PENDING"], to: "AUTHORIZED", now, authorization: { body: "{}", seal: new Uint8Array(32) } }))) throw new Error("not authorized");
  return { id, hashes, key };
}

let auditHead = { sequence: 0, hash: ZERO_HASH };
const sca = { kind: "sca", subject: "CN=bench-sca", certificateSha256: new Uint8Array(randomBytes(32)) } as const;

/** After a claim: entry MACs, record, audit (build, then store), as the signing path does. */
async function afterClaim(store: SqliteStore, t: Timings, txId: string, key: EntryKey, claimed: Extract<MarkSignedResult, { ok: true }>, claimId: string): Promise<void> {
  await timed(t.entryMacs, async () => {
    await key.checkEntries(claimed.indices, claimed.hashes, claimed.macs);
  });
  const records = await timed(t.auditBuild, () => {
    const events: AuditEvent[] = claimed.hashes.map((hash) =>
      signatureCreated({ sca, requestId: "req-bench", signerId: "signer", credentialId: "cred", transactionId: txId, hash, hashAlgorithm: "SHA256", signatureAlgorithm: "ECDSA" }),
    );
    const time = new Date();
    const occurredAt = timestampJson(time);
    const out: AuditRecord[] = [];
    let prevHashBase64 = toBase64(auditHead.hash);
    for (const event of events) {
      const record = newStoredRecord({ nodeId: "bench", sequence: auditHead.sequence + 1, time, eventType: event.eventType, fields: event, prevHash: auditHead.hash, prevHashBase64, occurredAt });
      out.push(record);
      auditHead = { sequence: record.sequence, hash: record.hash };
      prevHashBase64 = toBase64(record.hash);
    }
    return out;
  });
  await timed(t.auditStore, () => store.appendAuditRecords(records));
  const signature = new Uint8Array(64).fill(7);
  const recorded = await timed(t.record, () => store.recordSignatures({ transactionId: txId, claimId, signatures: claimed.indices.map((index) => ({ index, signature })) }));
  if (recorded.recorded.length !== claimed.indices.length) throw new Error("not all recorded");
}

async function byRange(store: SqliteStore): Promise<Timings> {
  const t = zero();
  const { id, key } = await authorizedTransaction(store, total);
  for (let from = 0; from < total; from += rangeBatch) {
    const holder = claim();
    const claimed = await timed(t.claim, () => store.markRangeSigned({ transactionId: id, fromIndex: from, count: Math.min(rangeBatch, total - from), now, claim: holder }));
    if (!claimed.ok) throw new Error(`range claim refused: ${claimed.reason}`);
    await afterClaim(store, t, id, key, claimed, holder.claimId);
  }
  return t;
}

async function byHash(store: SqliteStore): Promise<Timings> {
  const t = zero();
  const { id, hashes, key } = await authorizedTransaction(store, total);
  // In the list's order, as the bench's SignHash workload asks; --shuffle: in another order (an SCA may).
  const order = args.shuffle ? hashes.map((h, i) => ({ h, k: (i * 7919) % hashes.length })).sort((a, b) => a.k - b.k).map((x) => x.h) : hashes;
  for (let from = 0; from < total; from += hashBatch) {
    const batch = order.slice(from, from + hashBatch);
    const holder = claim();
    const unsigned = await timed(t.precheck, () => store.hasUnsignedEntries({ transactionId: id, hashes: batch })); // SignHash's read-only pre-check
    if (unsigned.includes(false)) throw new Error("a hash is not unsigned");
    const claimed = await timed(t.claim, () => store.markHashesSigned({ transactionId: id, hashes: batch, now, claim: holder }));
    if (!claimed.ok) throw new Error(`hash claim refused: ${claimed.reason}`);
    await afterClaim(store, t, id, key, claimed, holder.claimId);
  }
  return t;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function summary(runs: Timings[]): Record<Step | "total", Cost> {
  const out = {} as Record<Step | "total", Cost>;
  for (const s of steps) out[s] = { wallUs: median(runs.map((r) => r[s].wallUs / total)), cpuUs: median(runs.map((r) => r[s].cpuUs / total)) };
  out.total = {
    wallUs: median(runs.map((r) => steps.reduce((a, s) => a + r[s].wallUs, 0) / total)),
    cpuUs: median(runs.map((r) => steps.reduce((a, s) => a + r[s].cpuUs, 0) / total)),
  };
  return out;
}

const dir = await mkdtemp(join(tmpdir(), "inkan-signing-path-"));
try {
  const store = await createSqliteStore({ file: join(dir, "store.sqlite3") });
  // One warm-up round of each (statement cache, JIT), not counted.
  const saved = total;
  await byRange(store);
  await byHash(store);
  const range: Timings[] = [];
  const hash: Timings[] = [];
  for (let r = 0; r < rounds; r++) {
    range.push(await byRange(store));
    hash.push(await byHash(store));
  }
  await store.close();
  const result = { signatures: saved, rounds, load: (await import("node:os")).loadavg()[0]!, range: summary(range), hash: summary(hash) };
  if (args.json) {
    console.log(JSON.stringify(result));
  } else {
    console.log(`SAM-side cost per signature, module excluded (${saved} signatures${args.shuffle ? ", hashes shuffled" : ""}, median of ${rounds} rounds, load ${result.load.toFixed(2)}):`);
    console.log(`${"step".padEnd(12)} ${"range wall".padStart(11)} ${"range cpu".padStart(10)} ${"hash wall".padStart(10)} ${"hash cpu".padStart(9)}   (µs/signature)`);
    for (const s of [...steps, "total"] as const) {
      console.log(`${s.padEnd(12)} ${result.range[s].wallUs.toFixed(1).padStart(11)} ${result.range[s].cpuUs.toFixed(1).padStart(10)} ${result.hash[s].wallUs.toFixed(1).padStart(10)} ${result.hash[s].cpuUs.toFixed(1).padStart(9)}`);
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
