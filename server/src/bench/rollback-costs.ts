/**
 * `npm run build && node server/dist/bench/rollback-costs.js [--objects 0,2000,10000] [--events 100000]`:
 * the costs integrity/ROLLBACK.md states, measured on this machine (never a timed test).
 *
 * - a checkpoint (sign in the module, store row, the module's data object) on a token holding N
 *   key objects besides the system keys: SoftHSM2 finds objects by a scan, so the data-object
 *   write grows with the token;
 * - one record.versioned append (what every write of a versioned record adds) and one head check;
 * - a start that reads E versioned events (the AuditLog resuming with its digest check).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createAuditLog } from "../audit/audit-log.js";
import { recordVersioned, signerEnrolled, systemActor, type AuditEvent } from "../audit/events.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import { RecordHeads } from "../integrity/record-heads.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";

const { values: args } = parseArgs({ options: { objects: { type: "string", default: "0,2000,10000" }, events: { type: "string", default: "100000" } } });
const objectSteps = args.objects.split(",").map(Number);
const events = Number(args.events);

const dir = await mkdtemp(join(tmpdir(), "inkan-rollback-costs-"));
try {
  await initEmbeddedToken(dir);
  const hsm = await openEmbeddedCryptoModule(dir);
  const store = await createSqliteStore({ file: join(dir, "store.sqlite3") });
  const every = 100_000;
  const log = await createAuditLog({ store, nodeId: "costs", cryptoModule: hsm, checkpointEveryRecords: every, checkpointIntervalMs: 86_400_000, checkpointTimer: false });
  const mean = async (n: number, run: (i: number) => Promise<unknown>) => {
    const start = performance.now();
    for (let i = 0; i < n; i++) await run(i);
    return (performance.now() - start) / n;
  };
  let n = 0;
  let keyObjects = 0;
  for (const target of objectSteps) {
    while (keyObjects < target) {
      const batch = Math.min(50, (target - keyObjects) / 2);
      await Promise.all(Array.from({ length: batch }, () => hsm.generateKeyPair("EC_P256")));
      keyObjects += 2 * batch;
    }
    const checkpoint = await mean(10, async () => {
      await log.record(signerEnrolled({ actor: systemActor, signerId: `s${n++}` }));
      await log.checkpoint();
    });
    const write = await mean(10, (i) => hsm.writeDataObject("costs-probe", new TextEncoder().encode(String(i))));
    const read = await mean(10, () => hsm.readDataObject("costs-probe"));
    console.log(`token with ${keyObjects} key objects: checkpoint ${checkpoint.toFixed(1)} ms (data object write ${write.toFixed(1)} ms, read ${read.toFixed(1)} ms)`);
  }

  const heads = new RecordHeads({ nodeId: "costs", audit: log, store, cryptoModule: hsm, ownHeads: new Map(), tailIntervalMs: 0 });
  const advance = await mean(500, (i) => heads.advance(`signer:a${i}`, 1));
  const check = await mean(100_000, (i) => heads.check(`signer:a${i % 500}`, 1));
  const hmac = await mean(1000, () => hsm.hmacSha256("record-seal", new Uint8Array(300)));
  console.log(`advance (one record.versioned append) ${advance.toFixed(2)} ms; check (a head lookup) ${(check * 1000).toFixed(2)} µs; a seal's HMAC for comparison ${hmac.toFixed(3)} ms`);

  // E versioned events in batches (as one node's history), then a start that reads them all.
  for (let written = 0; written < events; written += 10_000) {
    const batch: AuditEvent[] = [];
    for (let i = written; i < Math.min(events, written + 10_000); i++) batch.push(recordVersioned({ key: `signer:sgn_${i % 20_000}`, version: 1 + Math.floor(i / 20_000) }));
    await log.recordAll(batch);
  }
  await log.close();
  const started = performance.now();
  const again = await createAuditLog({ store, nodeId: "costs", cryptoModule: hsm, checkpointTimer: false });
  const startMs = performance.now() - started;
  const keys = again.takeStartHeads().size;
  await again.close();
  console.log(`start reading ${again.versionedDigest.count} versioned events (${keys} keys): ${startMs.toFixed(0)} ms, ${((startMs / again.versionedDigest.count) * 100_000).toFixed(0)} ms per 100,000`);
  await store.close();
  await hsm.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
