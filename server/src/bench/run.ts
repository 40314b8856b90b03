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
import { forDuration, type Throughput } from "./measure.js";
import { rawSignAndVerify, signHashThroughput, signStreamThroughput, singleTransactionLatency, type Latency } from "./workloads.js";

/**
 * `npm run bench [-- --json FILE]`: the SAP's figures against the raw crypto-module work, all
 * measured in one run on one machine (never a timed test: these machines are shared and noisy).
 * The SAM runs in this process as the product does (`inkan init` data directory, `serve()` over
 * TLS with client certificates, SoftHSM2, SQLite); its SCA clients share the process and its CPUs.
 * ECDSA P-256 over SHA-256 throughout. About 1.5 minutes on two shared cores, plus the
 * 100,000-signature stream.
 */
const { values: args } = parseArgs({ options: { json: { type: "string" } } });
/** SCA clients calling at once, and callers of the raw figure: the server's crypto-module sessions (the pool's default). */
const concurrency = 4;
const moduleSessions = 4;
const phase = { warmupMs: 1_000, measureMs: 5_000 };
const streamHashes = 100_000;

const began = performance.now();
const loadStart = loadavg()[0]!;
let sam: BenchSam | undefined;
try {
  sam = await startBenchSam();
  console.log(`Inkan SAP benchmark: ECDSA P-256 / SHA-256 on SoftHSM2, SQLite store, server in this process over TLS (gRPC), ${availableParallelism()} CPUs, load average ${load()}`);
  console.log(`setup (init, serve, enrol and activate a signer): ${seconds(performance.now() - began)}`);

  // The raw work without the SAM: the server's crypto module (its token, its 4-session pool), the credential's own key.
  const token = embeddedTokenPaths(sam.dataDir);
  const pkcs11jsSign = await rawEcdsaSignRate({ library: token.library, tokenLabel: token.tokenLabel, pinFile: token.userPinFile, keyId: sam.signer.keyId, sessions: moduleSessions, signatures: 20_000 });
  const module = sam.crypto;
  const signOnly = () => module.sign({ keyId: sam!.signer.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: new Uint8Array(32).fill(7), format: "der" }).then(() => 1);
  await forDuration(concurrency, phase.warmupMs, signOnly);
  const moduleSign = await forDuration(concurrency, 3_000, signOnly);
  const raw = await rawSignAndVerify(module, sam.signer.keyId, concurrency, phase);
  console.log(`\nraw, ${moduleSessions} module sessions, ${concurrency} callers:`);
  console.log(`  pkcs11js C_SignAsync, sign only            ${rate(pkcs11jsSign)}   (20,000 signatures)`);
  console.log(`  crypto module adapter, sign only           ${rate(moduleSign.perSecond)}   ${counts(moduleSign)}`);
  console.log(`  crypto module, sign + verify = raw         ${rate(raw.perSecond)}   ${counts(raw)}   <- denominator`);

  const { limits } = await createClient(SignatureActivationService, sam.scaTransport()).getInfo({});
  const chunk = limits!.maxHashesPerChunk; // lists longer than this go up in chunks (AppendHashes)
  const clients = (n: number) => Array.from({ length: n }, () => new BenchSca(sam!.scaTransport(), sam!.signer, chunk));

  console.log(`\nSignHash, ${concurrency} SCA clients at once, each signing its own transactions of max(100, 10 x k) hashes, k per call:`);
  const signHash: Record<number, Throughput> = {};
  for (const perCall of [1, 100, 1_000]) {
    const r = await signHashThroughput(clients(concurrency), perCall, phase);
    signHash[perCall] = r;
    console.log(`  ${String(perCall).padStart(5)} hash${perCall === 1 ? " " : "es"} per call                   ${rate(r.perSecond)}   ${ratio(r.perSecond, raw.perSecond)}   ${counts(r)}, ${r.checked} spot-checked`);
  }

  const stream = await signStreamThroughput(clients(1)[0]!, streamHashes);
  console.log(`\nSignStream of ${streamHashes.toLocaleString("en")} hashes: ${rate(stream.perSecond)}   ${ratio(stream.perSecond, raw.perSecond)}   ${counts(stream)} in ${stream.streams} stream(s), ${stream.checked} spot-checked`);
  console.log(`  peak RSS during the stream ${stream.peakRssMib.toFixed(0)} MiB (${stream.rssBeforeMib.toFixed(0)} MiB before it; client and server share the process)`);

  console.log("\nsingle-document transaction (BeginTransaction 1 hash -> buildRSad -> Authorize -> SignHash):");
  const latency1 = await singleTransactionLatency(clients(1), 100, 3);
  console.log(`  ${latencyLine(latency1)}`);
  // 64 SCAs at once act for 16 signers, 4 each: a signer's factor checks in flight are bounded by the
  // policy's lockout_threshold (5 by default; issue 13), so one person cannot authorize 64 at once.
  const signers = [sam.signer, ...(await sam.moreSigners(15))];
  const latency64 = await singleTransactionLatency(Array.from({ length: 64 }, (_, i) => new BenchSca(sam!.scaTransport(), signers[i % signers.length]!, chunk)), 3, 0);
  console.log(`  ${latencyLine(latency64)} for ${signers.length} signers`);

  const result = {
    raw_sigs_per_s: round(raw.perSecond, 1),
    signhash_1_sigs_per_s: round(signHash[1]!.perSecond, 1),
    signhash_100_sigs_per_s: round(signHash[100]!.perSecond, 1),
    signhash_1000_sigs_per_s: round(signHash[1_000]!.perSecond, 1),
    stream_100k_sigs_per_s: round(stream.perSecond, 1),
    signhash_1_ratio: round(signHash[1]!.perSecond / raw.perSecond, 3),
    signhash_100_ratio: round(signHash[100]!.perSecond / raw.perSecond, 3),
    signhash_1000_ratio: round(signHash[1_000]!.perSecond / raw.perSecond, 3),
    stream_100k_ratio: round(stream.perSecond / raw.perSecond, 3),
    single_tx_p50_ms_1: round(latency1.p50Ms, 1),
    single_tx_p99_ms_1: round(latency1.p99Ms, 1),
    single_tx_p50_ms_64: round(latency64.p50Ms, 1),
    single_tx_p99_ms_64: round(latency64.p99Ms, 1),
    stream_peak_rss_mb: round(stream.peakRssMib, 1),
    // Beyond the required figures: the raw ceilings without verify, and how the runs were made.
    pkcs11js_sign_per_s: round(pkcs11jsSign, 1),
    module_sign_per_s: round(moduleSign.perSecond, 1),
    single_tx_per_s_1: round(latency1.perSecond, 2),
    single_tx_per_s_64: round(latency64.perSecond, 2),
    stream_rss_before_mb: round(stream.rssBeforeMib, 1),
    concurrency,
    module_sessions: moduleSessions,
    cpus: availableParallelism(),
    load_avg_1m_start: loadStart,
    load_avg_1m_end: loadavg()[0]!,
  };
  console.log(`\ntotal ${seconds(performance.now() - began)}, load average ${load()}`);
  if (args.json) {
    // npm runs scripts from the package root: a relative FILE means the caller's directory.
    const file = resolve(process.env["INIT_CWD"] ?? process.cwd(), args.json);
    writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
    console.log(`figures written to ${file}`);
  }
  await sam.close();
} catch (err) {
  console.error(err);
  if (sam) {
    console.error(`the data directory is kept for its server.log: ${sam.dataDir}`);
    await sam.close(true).catch(() => undefined);
  }
  process.exitCode = 1;
}
process.exit(); // the HTTP/2 client sessions would keep the process alive until their idle timeout

function rate(perSecond: number): string {
  return `${Math.round(perSecond).toLocaleString("en").padStart(7)} sig/s`;
}

function ratio(perSecond: number, raw: number): string {
  return `${(perSecond / raw).toFixed(3)} x raw`;
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

function round(x: number, digits: number): number {
  return Number(x.toFixed(digits));
}
