import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { startBenchSam } from "./bench-sam.js";
import { BenchSca, Documents } from "./bench-sca.js";
import type { ProcessUsage } from "./sam-host.js";
import { streamAll } from "./workloads.js";

/**
 * `node server/dist/bench/stream-probe.js [--count N] [--slow-ms M] [--raw] [--live] [--allocations FILE]
 * [--cpu-prof DIR] [--node-arg=FLAG]...`: where the SAM's memory goes
 * during one SignStream (issue 20). The SAM runs in its own process; its memory (RSS, V8 heap,
 * external, array buffers) is sampled every 50 ms and reported per phase: the upload of the list,
 * Authorize, the stream. `--slow-ms`: the client pauses that long after each message (a slow reader).
 */
const { values: args } = parseArgs({ options: { count: { type: "string", default: "100000" }, raw: { type: "boolean", default: false }, "node-arg": { type: "string", multiple: true, default: [] }, allocations: { type: "string" }, live: { type: "boolean", default: false }, "cpu-prof": { type: "string" }, "slow-ms": { type: "string", default: "0" } } });
const count = Number(args.count);
const slowMs = Number(args["slow-ms"]);
const mib = (b: number) => (b / 2 ** 20).toFixed(0).padStart(4);
const line = (u: ProcessUsage) => `rss ${mib(u.rssBytes)}  heapUsed ${mib(u.heapUsedBytes)}  heapTotal ${mib(u.heapTotalBytes)}  external ${mib(u.externalBytes)}  arrayBuffers ${mib(u.arrayBuffersBytes)} MiB`;

const nodeArgs = [...args["node-arg"],...(args.live ? ["--expose-gc"] : []), ...(args["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${args["cpu-prof"]}`] : [])];
const sam = await startBenchSam({ ownProcess: true, nodeArgs });
try {
  const { limits } = await createClient(SignatureActivationService, sam.scaTransport()).getInfo({});
  const sca = new BenchSca(sam.scaTransport(), sam.signer, limits!.maxHashesPerChunk);
  const warm = new Documents(1_000);
  await streamAll(sca.sam, warm.count, await sca.authorized(warm.hashes));
  const peakOf = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
    const before = await sam.host.usage();
    const peak = { ...before };
    let stop = false;
    const sampler = (async () => {
      while (!stop) {
        const u = await sam.host.usage(args.live);
        for (const k of ["rssBytes", "heapUsedBytes", "heapTotalBytes", "externalBytes", "arrayBuffersBytes"] as const) peak[k] = Math.max(peak[k], u[k]);
        await new Promise((r) => setTimeout(r, args.live ? 500 : 50));
      }
    })();
    const started = performance.now();
    const result = await run();
    stop = true;
    await sampler;
    const after = await sam.host.usage();
    const cpuS = (after.cpu.user - before.cpu.user + after.cpu.system - before.cpu.system) / 1e6;
    console.log(`${name} (${((performance.now() - started) / 1000).toFixed(1)} s, server CPU ${cpuS.toFixed(1)} s)\n  before ${line(before)}\n  peak   ${line(peak)}\n  after  ${line(after)}`);
    return result;
  };
  const docs = await peakOf(`documents (client side only)`, async () => new Documents(count));
  const ch = await peakOf(`upload of ${count} hashes`, () => sca.begin(docs.hashes));
  const token = await peakOf("authorize", async () => (await sca.sam.authorize({ transactionId: ch.transactionId, rSad: await sca.rSad(ch) })).sadToken);
  const raw = () => sam.host.raw(sam.signer.keyId, 4, { warmupMs: 500, measureMs: 3_000 }, true);
  const rawBefore = args.raw ? (await raw()).perSecond : undefined;
  const started = performance.now();
  await peakOf(`stream of ${count}${slowMs ? `, client pausing ${slowMs} ms per message` : ""}`, async () => {
    if (args.allocations) await sam.host.allocations!(true);
    if (!slowMs) {
      await streamAll(sca.sam, count, token);
      if (args.allocations) writeFileSync(args.allocations, (await sam.host.allocations!(false)) as string);
      return;
    }
    for await (const _ of sca.sam.signStream({ sadToken: token, startIndex: 0 })) await new Promise((r) => setTimeout(r, slowMs));
  });
  const rate = count / ((performance.now() - started) / 1000);
  console.log(`stream rate ${rate.toFixed(0)} sig/s`);
  if (rawBefore !== undefined) {
    const rawAfter = (await raw()).perSecond;
    console.log(`raw (module sign + verify, 4 callers) ${rawBefore.toFixed(0)} before, ${rawAfter.toFixed(0)} after: stream ${(rate / ((rawBefore + rawAfter) / 2)).toFixed(3)} x raw`);
  }
} finally {
  await sam.close();
  process.exit();
}
