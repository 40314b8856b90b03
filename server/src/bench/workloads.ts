import { createHmac, randomBytes } from "node:crypto";
import { createBatchSignatureVerifier, createSignatureVerifier, defaultVerifyThreads } from "@inkan/sdk";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { defaultSecurityPolicy, pinHashCostOf, type PinHashCost } from "../admin/security-policy.js";
import type { SigningKeys } from "../crypto/port.js";
import { hashPin, verifyPin } from "../registration/pin-hash.js";
import { benchPin } from "./bench-sam.js";
import { Documents, signatureVerifies, type BenchSca } from "./bench-sca.js";
import { forDuration, peakRss, percentile, type Throughput } from "./measure.js";
import { median, type Figures } from "./runs.js";

/** Phase lengths: a warm-up (JIT, connections, caches), then the measured run. */
export interface Durations {
  warmupMs: number;
  measureMs: number;
}

/** Checks a few signatures after a run (outside the measured time) so no figure counts garbage. */
class SpotCheck {
  private readonly samples: { message: string; signature: Uint8Array; sca: BenchSca }[] = [];

  constructor(private readonly max = 64) {}

  /** A signature made for `sca`'s signer. */
  add(sca: BenchSca, message: string, signature: Uint8Array): void {
    if (this.samples.length < this.max) this.samples.push({ message, signature, sca });
  }

  /** How many were checked, each against its signer's key; throws if any does not verify. */
  verify(): number {
    for (const s of this.samples) {
      if (!signatureVerifies(s.sca.signer, s.message, s.signature)) throw new Error("a signature returned by the SAM does not verify");
    }
    return this.samples.length;
  }
}

/**
 * The raw work without the SAM, the denominator of every ratio: what SignHash does in the crypto
 * module per hash (sign, then verify before release, R-3.2.1.5), with the crypto-module adapter,
 * the credential's own key and the SAM's request shape (ECDSA over SHA-256, DER), by
 * `concurrency` callers at once. `verify` false: sign only (the adapter's ceiling).
 */
export async function rawSignAndVerify(keys: Pick<SigningKeys, "sign" | "verify">, keyId: string, concurrency: number, d: Durations, verify = true): Promise<Throughput> {
  const op = async () => {
    const req = { keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: randomBytes(32), format: "der" } as const;
    const signature = await keys.sign(req);
    if (verify && !(await keys.verify({ ...req, signature }))) throw new Error("verify-before-release failed");
    return 1;
  };
  await forDuration(concurrency, d.warmupMs, op);
  return forDuration(concurrency, d.measureMs, op);
}

/**
 * Called right before and right after a workload's measured phase (issue 20): figures taken over
 * that phase alone, not over its preparation or warm-up (the SAM main thread's share, run.ts).
 */
export interface MeasureWindow {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** An authorized transaction a SignHash worker signs through, `perCall` hashes per call. */
interface Prepared {
  docs: Documents;
  next: number;
  token: string;
}

/**
 * SignHash throughput with `perCall` hashes per call: one worker per SCA client, each signing its
 * own authorized transactions of max(100, 10 x perCall) hashes (rounded up to a multiple of
 * perCall, so every call signs exactly perCall) in list order, perCall per call,
 * with the rotated token (method 2). Transactions are begun and authorized before the clock starts; how
 * many the measured run needs is sized from the warm-up's rate (x1.5), so preparing them stays
 * out of the figure. A worker that runs out of work stops (the figure is then over fewer seconds).
 */
export async function signHashThroughput(clients: BenchSca[], perCall: number, d: Durations, window?: MeasureWindow): Promise<Throughput & { checked: number }> {
  const txSize = perCall * Math.ceil(Math.max(100, 10 * perCall) / perCall); // a multiple of perCall: every call signs perCall
  const queues: Prepared[][] = clients.map(() => []);
  const check = new SpotCheck();
  const prepare = async (w: number, hashesWanted: number) => {
    let have = queues[w]!.reduce((n, p) => n + p.docs.count - p.next, 0);
    while (have < hashesWanted) {
      const docs = new Documents(txSize);
      queues[w]!.push({ docs, next: 0, token: await clients[w]!.authorized(docs.hashes) });
      have += txSize;
    }
  };
  const op = async (w: number) => {
    const tx = queues[w]![0];
    if (!tx) return 0;
    const batch = tx.docs.hashes.slice(tx.next, tx.next + perCall);
    const res = await clients[w]!.sam.signHash({ authorization: { case: "sadToken", value: tx.token }, hashes: batch });
    if (res.signatures.length !== batch.length) throw new Error(`SignHash returned ${res.signatures.length} signatures for ${batch.length} hashes`);
    check.add(clients[w]!, tx.docs.message(tx.next), res.signatures[0]!);
    tx.token = res.nextSadToken;
    tx.next += batch.length;
    if (tx.next === tx.docs.count) queues[w]!.shift();
    return batch.length;
  };
  await Promise.all(clients.map((_, w) => prepare(w, txSize)));
  const warm = await forDuration(clients.length, d.warmupMs, op);
  const perWorker = Math.ceil((warm.perSecond * (d.measureMs / 1000) * 1.5) / clients.length);
  await Promise.all(clients.map((_, w) => prepare(w, perWorker)));
  await window?.start();
  const run = await forDuration(clients.length, d.measureMs, op);
  await window?.stop();
  return { ...run, checked: check.verify() };
}

/** A process's RSS over a window: at its start and its peak (MiB). */
export interface RssWindow {
  beforeMib: number;
  peakMib: number;
}

export type StreamResult = Throughput & {
  streams: number;
  checked: number;
  peakRssMib: number;
  rssBeforeMib: number;
  /** The server's RSS (when `watchServer` was given) over the upload and Authorize of the list, and over the SignStream calls alone. */
  serverUpload?: RssWindow | undefined;
  serverStream?: RssWindow | undefined;
};

/**
 * SignStream of `count` hashes (uploaded in chunks, sealed, authorized): signatures/s from the
 * call to the last signature, and the process's peak RSS meanwhile. Messages are read as they
 * arrive and only counted (HTTP/2 flow control does the rest): nothing is buffered. When a stream
 * ends with signatures remaining, it resumes with the newest resume token from the next index
 * (sam.proto SignStream). A 1,000-hash stream warms up first. `watchServer` samples the server's
 * RSS from a start until stop(): the upload and the stream are watched apart (issue 20: the
 * stream's figure is the stream's, not the upload's that comes before it).
 */
export async function signStreamThroughput(sca: BenchSca, count: number, watchServer?: () => { stop(): RssWindow }, window?: MeasureWindow): Promise<StreamResult> {
  const warm = new Documents(1_000);
  await streamAll(sca.sam, warm.count, await sca.authorized(warm.hashes));
  const docs = new Documents(count);
  const uploadWatch = watchServer?.();
  const token = await sca.authorized(docs.hashes);
  const serverUpload = uploadWatch?.stop();
  const check = new SpotCheck();
  const streamWatch = watchServer?.();
  await window?.start();
  const started = performance.now();
  const { result: streams, peakMib, beforeMib } = await peakRss(() =>
    streamAll(sca.sam, count, token, (i, signature) => {
      if (i % 10_000 === 0) check.add(sca, docs.message(i), signature);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await window?.stop();
  const serverStream = streamWatch?.stop();
  return { signatures: count, seconds, perSecond: count / seconds, concurrency: 1, streams, checked: check.verify(), peakRssMib: peakMib, rssBeforeMib: beforeMib, serverUpload, serverStream };
}

/**
 * Streams every signature of a `count`-hash transaction in index order, resuming with the newest
 * resume token when a stream ends early; returns how many streams it took. `onSignature` sees
 * each signature as it arrives (nothing is kept here).
 */
export async function streamAll(sam: Pick<BenchSca["sam"], "signStream">, count: number, sadToken: string, onSignature: (index: number, signature: Uint8Array) => void = () => undefined): Promise<number> {
  let next = 0;
  let streams = 0;
  let resume = { token: sadToken, index: 0 };
  while (next < count) {
    streams += 1;
    const startedAt = next;
    let remaining = Number.NaN;
    for await (const msg of sam.signStream({ sadToken: resume.token, startIndex: next })) {
      for (const s of msg.signatures) {
        if (s.index !== next) throw new Error(`SignStream sent index ${s.index}, expected ${next}`);
        onSignature(next, s.signature);
        next += 1;
      }
      if (msg.resumeToken) resume = { token: msg.resumeToken, index: msg.resumeIndex };
      remaining = msg.signaturesRemaining;
    }
    if (next < count && (next === startedAt || remaining === 0 || resume.index > next)) throw new Error(`SignStream stopped at index ${next} of ${count}`);
  }
  return streams;
}

export interface Latency {
  clients: number;
  /** Measured transactions (the percentiles' samples). */
  transactions: number;
  /** Unmeasured warm-up transactions run before them (clients x warmup): a CPU window around the whole call spans both. */
  warmupTransactions: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  perSecond: number;
}

/**
 * Latency of a full single-document transaction: BeginTransaction with one hash, the device's
 * R.SAD (SDK `buildRSad`, in this process), Authorize, SignHash; from the first call's start to the
 * signature's arrival. Each client first connects (GetInfo) and runs `warmup` transactions
 * unmeasured, then `perClient` measured ones, all clients at once. Every signature is checked
 * afterwards.
 */
export async function singleTransactionLatency(clients: BenchSca[], perClient: number, warmup: number): Promise<Latency> {
  const check = new SpotCheck(Number.MAX_SAFE_INTEGER);
  const once = async (sca: BenchSca): Promise<number> => {
    const docs = new Documents(1);
    const started = performance.now();
    const token = await sca.authorized(docs.hashes);
    const { signatures } = await sca.sam.signHash({ authorization: { case: "sadToken", value: token }, hashes: docs.hashes });
    const ms = performance.now() - started;
    check.add(sca, docs.message(0), signatures[0]!);
    return ms;
  };
  await Promise.all(clients.map(async (sca) => {
    await sca.sam.getInfo({});
    for (let i = 0; i < warmup; i++) await once(sca);
  }));
  const samples: number[] = [];
  const started = performance.now();
  await Promise.all(clients.map(async (sca) => { for (let i = 0; i < perClient; i++) samples.push(await once(sca)); }));
  const seconds = (performance.now() - started) / 1000;
  check.verify();
  return { clients: clients.length, transactions: samples.length, warmupTransactions: clients.length * warmup, seconds, p50Ms: percentile(samples, 50), p99Ms: percentile(samples, 99), perSecond: samples.length / seconds };
}

/**
 * How many returned signatures per second the SDK checks (T-2.2.1.8: the SCA helpers check every
 * one), with the SDK's own verifier for the credential's key, on one thread of this process:
 * `signatures` made by the crypto module (`keys`), checked round after round for `durationMs`.
 * Every check must pass, and an altered hash must fail, or the figure is refused.
 */
export async function sdkVerifyRate(keys: Pick<SigningKeys, "sign">, keyId: string, spki: Uint8Array, signatures: number, durationMs: number): Promise<Throughput> {
  const items: { hash: Uint8Array; signature: Uint8Array }[] = [];
  for (let i = 0; i < signatures; i++) {
    const hash = new Uint8Array(randomBytes(32));
    items.push({ hash, signature: await keys.sign({ keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: hash, format: "der" }) });
  }
  const check = createSignatureVerifier({ spki, hashAlgorithm: HashAlgorithm.SHA256, expectedSignatures: 100_000 });
  const altered = new Uint8Array(items[0]!.hash);
  altered[0]! ^= 1;
  if (check(altered, items[0]!.signature)) throw new Error("the SDK accepted a signature over another hash");
  let checked = 0;
  const started = performance.now();
  while (performance.now() - started < durationMs) {
    for (const it of items) {
      if (!check(it.hash, it.signature)) throw new Error("the SDK refused a signature the module made");
      checked += 1;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  return { signatures: checked, seconds, perSecond: checked / seconds, concurrency: 1 };
}

/**
 * Issue 20: the same check as {@link sdkVerifyRate} in the SDK's batch form on its default threads
 * (createBatchSignatureVerifier, as signAll checks each stream message of `batch` signatures: min(4,
 * cores) worker threads from 64 signatures on). Every batch must verify, and one with an altered
 * hash must fail, or the figure is refused. `concurrency` is the worker threads used.
 */
export async function sdkVerifyParallelRate(keys: Pick<SigningKeys, "sign">, keyId: string, spki: Uint8Array, signatures: number, durationMs: number, batch = 500): Promise<Throughput> {
  const hashes: Uint8Array[] = [];
  const sigs: Uint8Array[] = [];
  for (let i = 0; i < signatures; i++) {
    const hash = new Uint8Array(randomBytes(32));
    hashes.push(hash);
    sigs.push(await keys.sign({ keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: hash, format: "der" }));
  }
  const threads = defaultVerifyThreads();
  const verifier = createBatchSignatureVerifier({ spki, hashAlgorithm: HashAlgorithm.SHA256, expectedSignatures: 100_000, threads });
  try {
    const altered = hashes.slice(0, batch);
    altered[altered.length - 1] = new Uint8Array(altered[altered.length - 1]!).map((b, i) => (i === 0 ? b ^ 1 : b));
    if ((await verifier.check(altered, sigs.slice(0, batch))) !== altered.length - 1) throw new Error("the SDK accepted a signature over another hash");
    let checked = 0;
    const started = performance.now();
    while (performance.now() - started < durationMs) {
      for (let at = 0; at < signatures; at += batch) {
        const n = Math.min(batch, signatures - at);
        if ((await verifier.check(hashes.slice(at, at + n), sigs.slice(at, at + n))) !== -1) throw new Error("the SDK refused a signature the module made");
        checked += n;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    return { signatures: checked, seconds, perSecond: checked / seconds, concurrency: threads };
  } finally {
    await verifier.close();
  }
}

/** Issue 20's goal for the single-document transaction with 64 SCAs at once: this fraction of the raw rate. */
export const singleTxGoalRatio = 0.04;

/** The PIN hash cost of the policy `inkan init` writes (the bench's SAM runs with it): read from that policy, not copied. */
export function defaultPolicyPinHashCost(): PinHashCost {
  return pinHashCostOf(defaultSecurityPolicy({ trustedScaCaCertificates: [], trustedAdminCaCertificates: [] }));
}

export interface PinCheckCpu {
  /** The median CPU time of one check (ms). */
  medianMs: number;
  checks: number;
  cost: PinHashCost;
}

/**
 * Issue 20: the CPU time of one PIN check, the product's `verifyPin` at `cost` (by default the
 * default policy's), `checks` checks one after another in this process (one at a time: scrypt runs
 * on one libuv pool thread, whose CPU counts to the process). Each is timed by process.cpuUsage, so
 * waiting on a busy machine does not count; the median is the figure. The pepper's HMAC is
 * node:crypto's here, not the crypto module's (microseconds beside scrypt). The right PIN must
 * pass and a wrong one fail, or the figure is refused.
 */
export async function pinCheckCpu(checks: number, cost: PinHashCost = defaultPolicyPinHashCost()): Promise<PinCheckCpu> {
  if (!Number.isInteger(checks) || checks < 1) throw new RangeError(`checks must be a whole number of at least 1, not ${checks}`);
  const pepperKey = randomBytes(32);
  const crypto = {
    hmacSha256: async (_key: "record-seal", data: Uint8Array) => new Uint8Array(createHmac("sha256", pepperKey).update(data).digest()),
    randomBytes: async (n: number) => new Uint8Array(randomBytes(n)),
  };
  const body = await hashPin(crypto, benchPin, new Date(), cost);
  if (await verifyPin(crypto, `${benchPin}0`, body)) throw new Error("verifyPin accepted a wrong PIN");
  const samples: number[] = [];
  for (let i = 0; i < checks; i++) {
    const before = process.cpuUsage();
    const ok = await verifyPin(crypto, benchPin, body);
    const used = process.cpuUsage(before);
    if (!ok) throw new Error("verifyPin refused the right PIN");
    samples.push((used.user + used.system) / 1000);
  }
  return { medianMs: median(samples), checks, cost };
}

/** CPU per transaction over a window of `transactions` transactions (issue 20). */
export interface TransactionCpu {
  /** Server + client CPU milliseconds per transaction. */
  cpuMs: number;
  serverCpuMs: number;
  /** cores x 1000 / cpuMs: the most transactions a second the machine's cores could give at that cost. */
  ceilingPerSecond: number;
}

/** CPU per transaction from the CPU seconds a window used (server and client processes) and the transactions it ran. */
export function transactionCpu(cpuSeconds: { server: number; client: number }, transactions: number, cores: number): TransactionCpu {
  if (!(transactions > 0)) throw new RangeError(`no transactions in the window (${transactions})`);
  const cpuMs = ((cpuSeconds.server + cpuSeconds.client) * 1000) / transactions;
  return { cpuMs, serverCpuMs: (cpuSeconds.server * 1000) / transactions, ceilingPerSecond: (cores * 1000) / cpuMs };
}

/** Issue 20's goal rate (goal ratio x the mean raw rate around the run) and the CPU per transaction it allows on `cores` cores (ms). */
export function transactionCpuGoal(rawMean: number, cores: number, ratio = singleTxGoalRatio): { goalPerSecond: number; allowedCpuMs: number } {
  const goalPerSecond = ratio * rawMean;
  return { goalPerSecond, allowedCpuMs: (cores * 1000) / goalPerSecond };
}

/**
 * Issue 20's CPU budget for the single-document transaction with 64 SCAs, as one line from a run's
 * figures (or their medians, `of` "the median"): the goal rate, the CPU per transaction that rate
 * allows on the run's cores, the CPU per transaction measured (server + client, every transaction
 * of the CPU window, warm-up included) and the share of one PIN check in each. Undefined when a
 * figure is missing (e.g. a JSON file from before these figures).
 */
export function singleTxCpuLine(f: Figures, of = "this run"): string | undefined {
  const n = (k: string) => (typeof f[k] === "number" ? (f[k] as number) : undefined);
  const [goal, allowed, used, ceiling, pin, cores, transactions] = ["single_tx_goal_per_s_64", "single_tx_goal_cpu_ms_64", "single_tx_cpu_ms_64", "single_tx_cpu_ceiling_per_s_64", "pin_check_ms", "cpus", "single_tx_cpu_transactions_64"].map(n);
  if ([goal, allowed, used, ceiling, pin, cores, transactions].some((v) => v === undefined)) return undefined;
  const pct = (part: number, whole: number) => `${Math.round((100 * part) / whole)}%`;
  return (
    `CPU per transaction: the goal (${singleTxGoalRatio} x raw) is ${goal!.toFixed(1)} tx/s, which allows ${allowed!.toFixed(2)} ms of CPU per transaction on ${cores} cores; ` +
    `${of} used ${used!.toFixed(2)} ms (server + client, over all ${transactions} transactions of its CPU window, warm-up included; at most ${ceiling!.toFixed(1)} tx/s on these cores at that cost); ` +
    `one PIN check ${pin!.toFixed(2)} ms = ${pct(pin!, allowed!)} of the allowed, ${pct(pin!, used!)} of the used`
  );
}
