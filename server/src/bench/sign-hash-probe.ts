/**
 * Issue 20: what one SignHash x1 call (token rotation) and one single-document transaction cost,
 * counted inside the SAM: the real server in this process (SoftHSM2 token, SQLite store, served over
 * mTLS on 127.0.0.1, called over gRPC by one SCA, so no call shares a commit with another), with
 * its store and crypto module wrapped by counting proxies.
 *
 *   npx tsc -b && node server/dist/bench/sign-hash-probe.js [--calls N] [--docs M] [--json FILE]
 *
 * Per call it prints: crypto-module calls by kind (HMACs split by what they compute: record-seal
 * checks, authorization-seal checks, entry keys, other; sign; verify; data-object reads; RNG), the
 * PKCS#11 calls made on the main thread (C_FindObjectsInit, C_GetAttributeValue, ...: object
 * lookups), store reads and writes by method, group commits (each one fsync), policy reads (the
 * store's latestPolicyVersion), and wall-clock and process-CPU microseconds per call (client and
 * server share the process; a figure, never a test). Counts are the same on any machine.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { FullCryptoModule } from "../crypto/port.js";
import { pkcs11js } from "../crypto/pkcs11/library.js";
import type { Store } from "../store/port.js";
import { startBenchSam } from "./bench-sam.js";
import { BenchSca, Documents } from "./bench-sca.js";

const { values: args } = parseArgs({ options: { calls: { type: "string", default: "200" }, docs: { type: "string", default: "40" }, json: { type: "string" } } });
const calls = Number(args.calls);
const docsCount = Number(args.docs);

const counts = new Map<string, number>();
const bump = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
const snapshot = () => new Map(counts);

const decoder = new TextDecoder();
/** What a record-seal-key HMAC computes, from its domain-separation prefix. */
function hmacKind(data: Uint8Array): string {
  const head = decoder.decode(data.subarray(0, 40));
  if (head.startsWith("inkan-record-seal-v1\n")) return "module.hmac: record seal";
  if (head.startsWith("inkan-authorization-v1\n")) return "module.hmac: authorization seal";
  if (head.startsWith("inkan-transaction-entry-key-v1\n")) return "module.hmac: entry key";
  return "module.hmac: other";
}

const wrapCrypto = (crypto: FullCryptoModule): FullCryptoModule =>
  new Proxy(crypto, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      const f = (v as (...a: unknown[]) => unknown).bind(target);
      if (prop === "hmacSha256") return (key: unknown, data: Uint8Array) => (bump(hmacKind(data)), f(key, data));
      if (prop === "close" || prop === "onStateChange") return f;
      return (...a: unknown[]) => (bump(`module.${String(prop)}`), f(...a));
    },
  });

let store: (Store & { groupCommitStats?: { groups: number } }) | undefined;
const wrapStore = (s: Store): Store => {
  store = s;
  return new Proxy(s, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      const f = (v as (...a: unknown[]) => unknown).bind(target);
      if (prop === "close") return f;
      return (...a: unknown[]) => (bump(`store.${String(prop)}`), f(...a));
    },
  });
};

// The PKCS#11 calls the adapter makes on the main thread (object lookups, attribute reads); the
// sign, verify and HMAC operations themselves may run elsewhere and are counted at the port above.
// pkcs11js keeps most C_* methods on the native parent of PKCS11.prototype: patch each where it is.
for (let proto = (pkcs11js.PKCS11 as unknown as { prototype: Record<string, unknown> | null }).prototype; proto; proto = Object.getPrototypeOf(proto) as Record<string, unknown> | null) {
  for (const name of Object.getOwnPropertyNames(proto)) {
    if (!name.startsWith("C_") || typeof proto[name] !== "function") continue;
    const original = proto[name] as (...a: unknown[]) => unknown;
    proto[name] = function (this: unknown, ...a: unknown[]) {
      bump(`pkcs11.${name}`);
      return original.apply(this, a);
    };
  }
}

interface Phase {
  calls: number;
  perCall: Record<string, number>;
  commitsPerCall: number;
  policyReadsPerCall: number;
  wallUsMedian: number;
  wallUsMean: number;
  cpuUsPerCall: number;
}

async function measure(n: number, step: (i: number) => Promise<void>, only?: (i: number) => boolean): Promise<Phase> {
  const before = snapshot();
  const commits0 = store!.groupCommitStats?.groups ?? Number.NaN;
  const cpu0 = process.cpuUsage();
  const walls: number[] = [];
  for (let i = 0; i < n; i++) {
    if (only && !only(i)) continue;
    const t0 = performance.now();
    await step(i);
    walls.push((performance.now() - t0) * 1000);
  }
  const cpu = process.cpuUsage(cpu0);
  const m = walls.length;
  const perCall: Record<string, number> = {};
  for (const [k, v] of counts) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) perCall[k] = round(d / m);
  }
  walls.sort((a, b) => a - b);
  return {
    calls: m,
    perCall: Object.fromEntries(Object.entries(perCall).sort(([a], [b]) => a.localeCompare(b))),
    commitsPerCall: round(((store!.groupCommitStats?.groups ?? Number.NaN) - commits0) / m),
    policyReadsPerCall: perCall["store.latestPolicyVersion"] ?? 0,
    wallUsMedian: Math.round(walls[Math.floor(m / 2)]!),
    wallUsMean: Math.round(walls.reduce((a, b) => a + b, 0) / m),
    cpuUsPerCall: Math.round((cpu.user + cpu.system) / m),
  };
}

const round = (x: number) => Math.round(x * 100) / 100;

function print(name: string, p: Phase): void {
  console.log(`\n${name}: ${p.calls} calls; per call: ${p.commitsPerCall} commits, ${p.policyReadsPerCall} policy reads, wall ${p.wallUsMedian} µs median (${p.wallUsMean} mean), process CPU ${p.cpuUsPerCall} µs`);
  for (const [k, v] of Object.entries(p.perCall)) console.log(`  ${k.padEnd(40)} ${v}`);
}

const sam = await startBenchSam({ hooks: { wrapCrypto, wrapStore } });
try {
  const sca = new BenchSca(sam.scaTransport(), sam.signer, 1000);
  // Warm-up: connections, JIT, caches.
  const warm = new Documents(20);
  let token = await sca.authorized(warm.hashes);
  for (const h of warm.hashes) token = (await sca.sam.signHash({ authorization: { case: "sadToken", value: token }, hashes: [h] })).nextSadToken;

  // SignHash x1 with token rotation, through one authorized transaction of `calls` hashes.
  const docs = new Documents(calls);
  token = await sca.authorized(docs.hashes);
  const signHashX1 = await measure(calls, async (i) => {
    const res = await sca.sam.signHash({ authorization: { case: "sadToken", value: token }, hashes: [docs.hashes[i]!] });
    if (res.signatures.length !== 1) throw new Error("SignHash returned no signature");
    token = res.nextSadToken;
  });
  print("SignHash x1 (token rotation)", signHashX1);

  // Single-document transactions, one phase at a time.
  const singles = Array.from({ length: docsCount }, () => new Documents(1));
  const challenges: Awaited<ReturnType<BenchSca["begin"]>>[] = [];
  const rSads: string[] = [];
  const tokens: string[] = [];
  const begin = await measure(docsCount, async (i) => void challenges.push(await sca.begin(singles[i]!.hashes)));
  for (const ch of challenges) rSads.push(await sca.rSad(ch));
  const authorize = await measure(docsCount, async (i) => void tokens.push((await sca.sam.authorize({ transactionId: challenges[i]!.transactionId, rSad: rSads[i]! })).sadToken));
  const sign = await measure(docsCount, async (i) => {
    const res = await sca.sam.signHash({ authorization: { case: "sadToken", value: tokens[i]! }, hashes: singles[i]!.hashes });
    if (res.signatures.length !== 1 || res.nextSadToken !== "") throw new Error("unexpected SignHash result");
  });
  print("single document: BeginTransaction", begin);
  print("single document: Authorize", authorize);
  print("single document: SignHash (last signature)", sign);
  if (args.json) writeFileSync(args.json, JSON.stringify({ signHashX1, single: { begin, authorize, sign } }, null, 2));
} finally {
  await sam.close();
}
