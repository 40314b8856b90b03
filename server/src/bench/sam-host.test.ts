import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBenchSam, type BenchSam } from "./bench-sam.js";
import { BenchSca } from "./bench-sca.js";
import { rssOf, samHostEntry } from "./sam-host.js";
import { singleTransactionLatency } from "./workloads.js";

// Issue 20: the bench's SAM in its own process (as deployed), driven over IPC for the raw figures
// and over mTLS gRPC for the SAP. Runs the build (server/dist/bench/sam-host.js). No timing asserted.
const built = existsSync(samHostEntry);
if (!built) console.warn(`sam-host test skipped: the server is not built (${samHostEntry} missing): run \`npm run build\``);

describe.skipIf(!built)("the bench SAM in its own process (issue 20)", () => {
  let sam: BenchSam;
  beforeAll(async () => {
    sam = await startBenchSam({ ownProcess: true });
  }, 90_000);
  afterAll(async () => {
    await sam?.close();
  });

  it("serves the SAP from another process; raw figures and the module's signatures come from that process", async () => {
    expect(sam.host.ownProcess).toBe(true);
    expect(sam.host.pid).not.toBe(process.pid);
    const raw = await sam.host.raw(sam.signer.keyId, 2, { warmupMs: 50, measureMs: 200 }, true);
    expect(raw.signatures).toBeGreaterThan(0);
    expect((await sam.host.sign({ keyId: sam.signer.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: new Uint8Array(32).fill(1), format: "der" })).length).toBeGreaterThan(60);
    const l = await singleTransactionLatency([new BenchSca(sam.scaTransport(), sam.signer, 10_000)], 2, 1);
    expect(l.transactions).toBe(2); // every signature checked against the credential's key
    const usage = await sam.host.usage();
    expect(usage.rssBytes).toBeGreaterThan(0);
    expect(usage.cpu.user).toBeGreaterThan(0);
    expect(rssOf(sam.host.pid)).toBeGreaterThan(0);
  });
});
