import { writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { rawEcdsaSignRate } from "../crypto/pkcs11/raw-sign-baseline.js";
import { embeddedTokenPaths } from "../crypto/pkcs11/softhsm-token.js";
import { startBenchSam, type BenchSam } from "./bench-sam.js";
import { BenchSca } from "./bench-sca.js";
import { bracket, idlePercent, machineCpu, threadShare, unreliableLoadChange, watchLoad, type Bracketed, type ThreadCpu, type ThreadShare, type Throughput } from "./measure.js";
import { loadWarning, quietLoad, medianOfRuns, parseRuns, summaryLines, type Figures } from "./runs.js";
import { rssOf } from "./sam-host.js";
import { pinCheckCpu, sdkVerifyParallelRate, sdkVerifyRate, signHashThroughput, signStreamThroughput, singleTransactionLatency, singleTxCpuLine, transactionCpu, transactionCpuGoal, type Latency, type MeasureWindow, type RssWindow } from "./workloads.js";

/**
 * `npm run bench [-- --json FILE] [--runs N]`: the SAP's figures against the raw crypto-module work, all
 * measured in one run on one machine (never a timed test: these machines are shared and noisy).
 * The SAM runs in this process as the product does (`inkan init` data directory, `serve()` over
 * TLS with client certificates, SoftHSM2, SQLite); its SCA clients share the process and its CPUs.
 * ECDSA P-256 over SHA-256 throughout. Each workload's ratio is against the raw figure measured
 * right before and right after it, with the load average sampled throughout (issue 20). About
 * 3 minutes on two shared cores, plus the 100,000-signature stream and enrolling 64 signers.
 * `--runs N` (default 1): the whole bench N times, each on a fresh SAM, each figure reported as the
 * median of the runs with every run's value (runs.ts); the load average is printed at each run's
 * start, with a warning when it is not below 1.0 (not a quiet run).
 */
const { values: args } = parseArgs({ options: { json: { type: "string" }, "in-process": { type: "boolean", default: false }, runs: { type: "string" } } });
const runCount = parseRuns(args.runs);
/** SCA clients calling at once, and callers of the raw figure: the server's crypto-module sessions (the pool's default). */
const concurrency = 4;
const moduleSessions = 4;
const phase = { warmupMs: 1_000, measureMs: 5_000 };
/** The raw figure measured between workloads (issue 20): shorter, it only brackets them. */
const rawPhase = { warmupMs: 500, measureMs: 3_000 };
const streamHashes = 100_000;
/** PIN checks timed for pin_check_ms (odd: the median is one observed check). */
const pinChecks = 31;

/** How long `--runs` waits between runs for the 1-minute load average to fall below quiet. */
const quietWaitMs = 240_000;

/** Waits until the 1-minute load average is below {@link quietLoad}, or `maxMs` passed (then the run starts anyway, with its warning). */
async function waitForQuiet(maxMs: number): Promise<void> {
  const until = Date.now() + maxMs;
  if (loadavg()[0]! >= quietLoad) console.log(`waiting up to ${maxMs / 1000} s for the load average (${load()}) to fall below ${quietLoad.toFixed(1)}`);
  while (loadavg()[0]! >= quietLoad && Date.now() < until) await new Promise((r) => setTimeout(r, 5_000));
}

const figures: Figures[] = [];
try {
  for (let run = 1; run <= runCount; run++) {
    // Issue 20: a quiet run needs a 1-minute load average below 1.0 at its start; a busy start is said, not refused.
    // The previous run's own load takes a minute or two to decay: wait for it (bounded) between runs.
    if (run > 1) await waitForQuiet(quietWaitMs);
    const load1m = loadavg()[0]!;
    console.log(`${runCount > 1 ? `\n=== run ${run} of ${runCount}: ` : ""}load average at the start ${load()}`);
    const warning = loadWarning(run, load1m);
    if (warning) console.warn(warning);
    figures.push(await benchOnce());
  }
  const result = runCount === 1 ? { ...figures[0]!, runs: figures } : medianOfRuns(figures);
  if (runCount > 1) {
    console.log(`\nmedian of ${runCount} runs (each run's value in brackets, in run order):`);
    for (const line of summaryLines(figures)) console.log(`  ${line}`);
    const cpuLine = singleTxCpuLine(result, "the median");
    if (cpuLine) console.log(`  ${cpuLine}`);
  }
  if (args.json) {
    // npm runs scripts from the package root: a relative FILE means the caller's directory.
    const file = resolve(process.env["INIT_CWD"] ?? process.cwd(), args.json);
    writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
    console.log(`figures written to ${file}`);
  }
} catch (err) {
  console.error(err);
  process.exitCode = 1;
}
process.exit(); // the HTTP/2 client sessions would keep the process alive until their idle timeout

/** The whole bench once, on a SAM of its own (a fresh data directory): every figure of the run. */
async function benchOnce(): Promise<Figures> {
  const began = performance.now();
  const loadStart = loadavg()[0]!;
  let sam: BenchSam | undefined;
  try {
    sam = await startBenchSam({ ownProcess: !args["in-process"] });
    const host = sam.host;
    const where = host.ownProcess ? `server in its own process (pid ${host.pid}), SCA clients and devices in this one` : "server in this process";
    console.log(`Inkan SAP benchmark: ECDSA P-256 / SHA-256 on SoftHSM2, SQLite store, ${where}, over TLS (gRPC), ${availableParallelism()} CPUs, load average ${load()}`);
    console.log(`setup (init, serve, enrol and activate a signer): ${seconds(performance.now() - began)}`);

    // The raw work without the SAM: the server's crypto module (its token, its 4-session pool), the credential's own key.
    const token = embeddedTokenPaths(sam.dataDir);
    const pkcs11jsSign = await rawEcdsaSignRate({ library: token.library, tokenLabel: token.tokenLabel, pinFile: token.userPinFile, keyId: sam.signer.keyId, sessions: moduleSessions, signatures: 20_000 });
    const keyId = sam.signer.keyId;
    const moduleSign = await host.raw(keyId, concurrency, { warmupMs: phase.warmupMs, measureMs: 3_000 }, false);
    const loadAtRaw = loadavg()[0]!;
    const raw = await host.raw(keyId, concurrency, phase, true);
    console.log(`\nraw, ${moduleSessions} module sessions, ${concurrency} callers:`);
    console.log(`  pkcs11js C_SignAsync, sign only            ${rate(pkcs11jsSign)}   (20,000 signatures)`);
    console.log(`  crypto module adapter, sign only           ${rate(moduleSign.perSecond)}   ${counts(moduleSign)}`);
    console.log(`  crypto module, sign + verify = raw         ${rate(raw.perSecond)}   ${counts(raw)}   <- denominator`);

    const { limits } = await createClient(SignatureActivationService, sam.scaTransport()).getInfo({});
    const chunk = limits!.maxHashesPerChunk; // lists longer than this go up in chunks (AppendHashes)
    const clients = (n: number) => Array.from({ length: n }, () => new BenchSca(sam!.scaTransport(), sam!.signer, chunk));

    // Issue 20: every ratio is taken against the raw figure measured just before and just after its
    // workload (their mean), with the load average sampled throughout; a ratio whose run saw the
    // load move by more than 1.0 is marked unreliable. Each raw run serves the workloads on both sides.
    let rawPrevious = raw.perSecond;
    let loadsPrevious: number[] = [loadAtRaw, loadavg()[0]!];
    const bracketed: Record<string, Bracketed> = {};
    const cpu: Record<string, { server: number; client: number }> = {};
    /** Issue 20: the machine's idle share during each workload (a workload bound by waiting leaves cores idle). */
    const idle: Record<string, number | undefined> = {};
    /** Issue 20: the SAM's main thread over a workload's measured phase (its event loop: a serial bound). */
    const mainThread: Record<string, ThreadShare | undefined> = {};
    const measured = async <T>(name: string, run: (w: MeasureWindow) => Promise<T>, figure: (t: T) => number, signatures?: (t: T) => number): Promise<{ result: T; b: Bracketed }> => {
      const watch = watchLoad();
      const [server0, client0] = [(await host.usage()).cpu, process.cpuUsage()];
      const machine0 = machineCpu();
      // With --in-process the main thread runs the clients too: no figure of the SAM's own.
      const at: { thread?: ThreadCpu | undefined; ms: number }[] = [];
      const mark = async () => void at.push({ thread: (await host.usage()).mainThread, ms: performance.now() });
      const window: MeasureWindow = { start: mark, stop: mark };
      const result = await run(window);
      const [w0, w1] = at;
      if (host.ownProcess && w0 && w1 && signatures) mainThread[name] = threadShare(w0.thread, w1.thread, w1.ms - w0.ms, signatures(result));
      idle[name] = idlePercent(machine0, machineCpu());
      const [server1, client1] = [(await host.usage()).cpu, process.cpuUsage()];
      // Each process's CPU time during the workload (on two cores they still share the machine).
      cpu[name] = { server: cpuSeconds(server0, server1), client: host.ownProcess ? cpuSeconds(client0, client1) : 0 };
      const after = await host.raw(keyId, concurrency, rawPhase, true);
      const loads = watch.stop();
      const b = bracket(figure(result), rawPrevious, after.perSecond, [...loadsPrevious, ...loads]);
      bracketed[name] = b;
      rawPrevious = after.perSecond;
      loadsPrevious = loads;
      return { result, b };
    };

    console.log(`\nSignHash, ${concurrency} SCA clients at once, each signing its own transactions of max(100, 10 x k) hashes, k per call:`);
    const signHash: Record<number, Throughput> = {};
    for (const perCall of [1, 100, 1_000]) {
      const { result: r, b } = await measured(`signhash_${perCall}`, (w) => signHashThroughput(clients(concurrency), perCall, phase, w), (t) => t.perSecond, (t) => t.signatures);
      signHash[perCall] = r;
      console.log(`  ${String(perCall).padStart(5)} hash${perCall === 1 ? " " : "es"} per call                   ${rate(r.perSecond)}   ${ratioText(b, idle[`signhash_${perCall}`])}   ${counts(r)}, ${r.checked} spot-checked`);
      console.log(mainThreadText(mainThread[`signhash_${perCall}`]));
    }

    // The server's own RSS during the stream (the SignStream calls, apart from the upload of the
    // list before them), sampled from /proc when it runs in its own process.
    const watchServer = host.ownProcess ? () => sampleRss(host.pid) : undefined;
    const { result: stream, b: streamB } = await measured("stream_100k", (w) => signStreamThroughput(clients(1)[0]!, streamHashes, watchServer, w), (t) => t.perSecond, (t) => t.signatures);
    const serverStreamRss = stream.serverStream;
    const serverUploadRss = stream.serverUpload;
    console.log(`\nSignStream of ${streamHashes.toLocaleString("en")} hashes: ${rate(stream.perSecond)}   ${ratioText(streamB, idle["stream_100k"])}   ${counts(stream)} in ${stream.streams} stream(s), ${stream.checked} spot-checked`);
    console.log(mainThreadText(mainThread["stream_100k"]));
    if (serverStreamRss) {
      console.log(`  server process RSS during the stream ${serverStreamRss.beforeMib.toFixed(0)} MiB before, peak ${serverStreamRss.peakMib.toFixed(0)} MiB (+${(serverStreamRss.peakMib - serverStreamRss.beforeMib).toFixed(0)} MiB); client process peak ${stream.peakRssMib.toFixed(0)} MiB`);
      if (serverUploadRss) console.log(`  server process RSS during the upload and Authorize of the list before it: ${serverUploadRss.beforeMib.toFixed(0)} MiB before, peak ${serverUploadRss.peakMib.toFixed(0)} MiB (+${(serverUploadRss.peakMib - serverUploadRss.beforeMib).toFixed(0)} MiB)`);
    } else {
      console.log(`  peak RSS during the stream ${stream.peakRssMib.toFixed(0)} MiB (${stream.rssBeforeMib.toFixed(0)} MiB before it; client and server share the process)`);
    }

    console.log("\nsingle-document transaction (BeginTransaction 1 hash -> buildRSad -> Authorize -> SignHash):");
    // Issue 20: the decided PIN check's CPU (Authorize checks the PIN once), in the same run as the transaction's CPU below.
    const pinCheck = await pinCheckCpu(pinChecks);
    console.log(`  one PIN check (verifyPin, the default policy's scrypt N = 2^${Math.log2(pinCheck.cost.N)}, r = ${pinCheck.cost.r}, p = ${pinCheck.cost.p}): median ${pinCheck.medianMs.toFixed(2)} ms of CPU over ${pinCheck.checks} checks, one at a time in this process   load ${load()}`);
    const latency1 = await singleTransactionLatency(clients(1), 100, 3);
    console.log(`  ${latencyLine(latency1)}   load ${load()}`);
    // Issue 20: 64 SCAs at once act for 64 different signers, as 64 people would: one signer's factor
    // checks in flight are bounded by the policy's lockout_threshold (issue 13), so one person cannot
    // authorize 64 transactions at once and would serialize the run on their own attempt budget.
    const signers = [sam.signer, ...(await sam.moreSigners(63))];
    const { result: latency64, b: single64 } = await measured("single_tx_64", () => singleTransactionLatency(signers.map((s) => new BenchSca(sam!.scaTransport(), s, chunk)), 3, 1), (t) => t.perSecond);
    console.log(`  ${latencyLine(latency64)} for ${signers.length} signers   ${ratioText(single64, idle["single_tx_64"])}`);
    // Issue 20: the CPU per transaction against what the goal rate allows on these cores. The CPU
    // window spans the whole call: each client's GetInfo, its warm-up transactions and the measured ones.
    const cores = availableParallelism();
    const txInCpuWindow = latency64.transactions + latency64.warmupTransactions;
    const txCpu = transactionCpu(cpu["single_tx_64"]!, txInCpuWindow, cores);
    const goal = transactionCpuGoal((single64.rawBefore + single64.rawAfter) / 2, cores);
    const singleTxCpu = {
      single_tx_cpu_ms_64: round(txCpu.cpuMs, 2),
      // With --in-process the server's CPU includes the clients': only the sum is the transaction's.
      single_tx_server_cpu_ms_64: host.ownProcess ? round(txCpu.serverCpuMs, 2) : null,
      single_tx_cpu_ceiling_per_s_64: round(txCpu.ceilingPerSecond, 1),
      single_tx_cpu_transactions_64: txInCpuWindow,
      single_tx_goal_per_s_64: round(goal.goalPerSecond, 1),
      single_tx_goal_cpu_ms_64: round(goal.allowedCpuMs, 2),
      pin_check_ms: round(pinCheck.medianMs, 2),
      pin_check_scrypt: { log2_n: Math.log2(pinCheck.cost.N), r: pinCheck.cost.r, p: pinCheck.cost.p },
    };
    console.log(`  ${singleTxCpuLine({ ...singleTxCpu, cpus: cores })}`);

    // T-2.2.1.8: the SDK checks every signature it returns; its rate is compared with the SAM's stream.
    const sdk = await sdkVerifyRate(host, keyId, sam.signer.publicKeySpki, 2_000, 3_000);
    console.log(`\nSDK check of returned signatures (createSignatureVerifier, P-256, one thread): ${Math.round(sdk.perSecond).toLocaleString("en")} checks/s   (${(sdk.perSecond / stream.perSecond).toFixed(2)} x the SAM's stream rate)   load ${load()}`);
    // Issue 20: the SDK's batch check (signAll's, on its default worker threads) must keep up with the stream.
    const sdkParallel = await sdkVerifyParallelRate(host, keyId, sam.signer.publicKeySpki, 2_000, 3_000);
    console.log(`SDK check of returned signatures (batches of 500 on ${sdkParallel.concurrency} worker threads, signAll's default): ${Math.round(sdkParallel.perSecond).toLocaleString("en")} checks/s   (${(sdkParallel.perSecond / stream.perSecond).toFixed(2)} x the SAM's stream rate)   load ${load()}`);

    const unreliable = Object.entries(bracketed).filter(([, b]) => b.unreliable).map(([name]) => name);
    if (unreliable.length > 0) console.log(`\nratios marked unreliable (the load moved by more than ${unreliableLoadChange} during their run): ${unreliable.join(", ")}`);

    const result = {
      raw_sigs_per_s: round(raw.perSecond, 1),
      signhash_1_sigs_per_s: round(signHash[1]!.perSecond, 1),
      signhash_100_sigs_per_s: round(signHash[100]!.perSecond, 1),
      signhash_1000_sigs_per_s: round(signHash[1_000]!.perSecond, 1),
      stream_100k_sigs_per_s: round(stream.perSecond, 1),
      signhash_1_ratio: round(bracketed["signhash_1"]!.ratio, 3),
      signhash_100_ratio: round(bracketed["signhash_100"]!.ratio, 3),
      signhash_1000_ratio: round(bracketed["signhash_1000"]!.ratio, 3),
      stream_100k_ratio: round(streamB.ratio, 3),
      single_tx_p50_ms_1: round(latency1.p50Ms, 1),
      single_tx_p99_ms_1: round(latency1.p99Ms, 1),
      single_tx_p50_ms_64: round(latency64.p50Ms, 1),
      single_tx_p99_ms_64: round(latency64.p99Ms, 1),
      single_tx_per_s_64: round(latency64.perSecond, 2),
      single_tx_ratio_64: round(single64.ratio, 4),
      // CPU per transaction (server + client, warm-up included), its ceiling on these cores, issue 20's goal and the PIN check's CPU.
      ...singleTxCpu,
      sdk_verify_per_s: round(sdk.perSecond, 1),
      sdk_verify_parallel_per_s: round(sdkParallel.perSecond, 1),
      sdk_verify_parallel_threads: sdkParallel.concurrency,
      stream_peak_rss_mb: round(stream.peakRssMib, 1),
      // The server alone (its own process); null when it shared this process (--in-process).
      stream_server_rss_growth_mb: serverStreamRss ? round(serverStreamRss.peakMib - serverStreamRss.beforeMib, 1) : null,
      stream_server_peak_rss_mb: serverStreamRss ? round(serverStreamRss.peakMib, 1) : null,
      // The upload (BeginTransaction, AppendHashes, SealTransaction) and Authorize of the 100,000 hashes, before the stream.
      stream_upload_server_rss_growth_mb: serverUploadRss ? round(serverUploadRss.peakMib - serverUploadRss.beforeMib, 1) : null,
      server_own_process: host.ownProcess,
      // Ratios whose run saw the load move by more than 1.0 (issue 20), and each bracketed run's raw figures and load.
      unreliable_ratios: unreliable,
      brackets: Object.fromEntries(Object.entries(bracketed).map(([name, b]) => [name, {
        raw_before: round(b.rawBefore, 1), raw_after: round(b.rawAfter, 1), load_start: b.loadStart, load_end: b.loadEnd, load_change: round(b.loadChange, 2), unreliable: b.unreliable,
        server_cpu_s: round(cpu[name]!.server, 2), client_cpu_s: host.ownProcess ? round(cpu[name]!.client, 2) : null,
        machine_idle_pct: idle[name] === undefined ? null : round(idle[name]!, 1),
        // The SAM's main thread over the measured phase (SignHash, SignStream; null in-process or off Linux).
        server_main_thread_busy_pct: mainThread[name] ? round(mainThread[name]!.busyPct, 1) : null,
        server_main_thread_runq_wait_pct: mainThread[name] ? round(mainThread[name]!.runqWaitPct, 1) : null,
        server_main_thread_us_per_sig: mainThread[name] ? round(mainThread[name]!.cpuUsPerItem, 1) : null,
      }])),
      // Beyond the required figures: the raw ceilings without verify, and how the runs were made.
      pkcs11js_sign_per_s: round(pkcs11jsSign, 1),
      module_sign_per_s: round(moduleSign.perSecond, 1),
      single_tx_per_s_1: round(latency1.perSecond, 2),
      single_tx_signers_64: signers.length,
      stream_rss_before_mb: round(stream.rssBeforeMib, 1),
      concurrency,
      module_sessions: moduleSessions,
      cpus: availableParallelism(),
      load_avg_1m_start: loadStart,
      quiet_start: loadStart < quietLoad,
      load_avg_1m_end: loadavg()[0]!,
    };
    console.log(`\ntotal ${seconds(performance.now() - began)}, load average ${load()}`);
    await sam.close();
    return result;
  } catch (err) {
    if (sam) {
      console.error(`the data directory is kept for its server.log: ${sam.dataDir}`);
      await sam.close(true).catch(() => undefined);
    }
    throw err;
  }
}

function rate(perSecond: number): string {
  return `${Math.round(perSecond).toLocaleString("en").padStart(7)} sig/s`;
}

/** The ratio to the mean of the raw figures around the run, with the load it saw (issue 20). */
function ratioText(b: Bracketed, idlePct?: number): string {
  const idleText = idlePct === undefined ? "" : `; machine idle ${idlePct.toFixed(0)} %`;
  return `${b.ratio.toFixed(3)} x raw (raw ${Math.round(b.rawBefore)} / ${Math.round(b.rawAfter)}; load ${b.loadStart.toFixed(2)} -> ${b.loadEnd.toFixed(2)}${b.unreliable ? `, moved ${b.loadChange.toFixed(2)}: UNRELIABLE` : ""}${idleText})`;
}

/** The SAM main thread's line under a workload (issue 20), or a reason there is none. */
function mainThreadText(m: ThreadShare | undefined): string {
  if (!m) return "        SAM main thread: no figure (--in-process, or no /proc/thread-self/schedstat)";
  return `        SAM main thread: on a CPU ${m.busyPct.toFixed(0)} % of the measured time, waiting for one ${m.runqWaitPct.toFixed(0)} %; ${m.cpuUsPerItem.toFixed(0)} µs of its CPU per signature`;
}

function counts(t: Throughput): string {
  return `(${t.signatures.toLocaleString("en")} signatures in ${t.seconds.toFixed(1)} s)`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function latencyLine(l: Latency): string {
  const who = `${l.clients} SCA client${l.clients === 1 ? ": " : "s:"}`.padEnd(16);
  return `${who} p50 ${l.p50Ms.toFixed(1)} ms, p99 ${l.p99Ms.toFixed(1)} ms   (${l.transactions} transactions in ${l.seconds.toFixed(1)} s, ${l.perSecond.toFixed(1)} tx/s)`;
}

/** The 1-, 5- and 15-minute load averages: the machine is shared, so say how busy it was. */
function load(): string {
  return loadavg().map((l) => l.toFixed(2)).join(" ");
}

function cpuSeconds(from: NodeJS.CpuUsage, to: NodeJS.CpuUsage): number {
  return (to.user - from.user + to.system - from.system) / 1e6;
}

/** The peak of process `pid`'s RSS (MiB), sampled every 20 ms until stop(), and its RSS at the start. */
function sampleRss(pid: number): { stop(): RssWindow } {
  const before = rssOf(pid) ?? 0;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(pid) ?? 0)), 20);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, rssOf(pid) ?? 0);
      return { beforeMib: before / 2 ** 20, peakMib: peak / 2 ** 20 };
    },
  };
}

function round(x: number, digits: number): number {
  return Number(x.toFixed(digits));
}
