/**
 * Issue 21: the key sets the nodes share in the crypto module, updated by three processes at once.
 * The key-import transport key set is read, extended with a key generated in the module and
 * written back (read-modify-write). Without a lock across the nodes, three nodes asking for the
 * current key at the same moment each generated one and published it, and the set kept only the
 * last writer's: an ImportKey wrapped to either of the others was refused. With the PostgreSQL
 * advisory lock one node generates the key and the others read it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../../crypto/pkcs11/softhsm-token.js";
import { KeyImportTransportKeys } from "../../keys/key-import-transport-key.js";
import { findPostgresBinaries, startTestCluster, type TestCluster } from "../testing/postgres-cluster.js";

const binaries = findPostgresBinaries();
const skipReason = "missing" in binaries ? binaries.missing : undefined;
if (skipReason) console.warn(skipReason);

const dist = fileURLToPath(new URL("../../../dist", import.meta.url));
const worker = fileURLToPath(new URL("../testing/key-set-worker.mjs", import.meta.url));

/** Starts a worker and resolves once it has opened the module ("ready"). */
function startWorker(dataDir: string, lockUri: string): Promise<{ proc: ChildProcess; result: Promise<{ kid?: string; error?: string }> }> {
  return new Promise((ready, fail) => {
    const proc = spawn(process.execPath, [worker, dist, dataDir], { env: { ...process.env, LOCK_URI: lockUri }, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let resolveResult!: (r: { kid?: string; error?: string }) => void;
    const result = new Promise<{ kid?: string; error?: string }>((r) => (resolveResult = r));
    proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.startsWith("ready\n")) ready({ proc, result });
      const json = out.split("\n").find((l) => l.startsWith("{"));
      if (json) resolveResult(JSON.parse(json) as { kid?: string; error?: string });
    });
    proc.on("exit", (code) => {
      fail(new Error(`worker exited ${code}: ${err.slice(-2000)}`));
      resolveResult({ error: `exited ${code}: ${err.slice(-500)}` });
    });
  });
}

describe.skipIf(skipReason !== undefined)(skipReason ?? "the shared key sets in the module, three nodes at once (issue 21)", () => {
  let cluster: TestCluster;
  let uri: string;
  const dataDir = mkdtempSync(join(tmpdir(), "inkan-key-sets-"));

  beforeAll(async () => {
    cluster = await startTestCluster((binaries as { bindir: string }).bindir);
    uri = await cluster.createDatabase();
    await initEmbeddedToken(dataDir);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("T-2.1.4.1: three nodes asking for the key-import transport key at once publish one key, and it is the one in the set", async () => {
    const workers = await Promise.all([0, 1, 2].map(() => startWorker(dataDir, uri)));
    for (const w of workers) w.proc.stdin!.write("go\n");
    const results = await Promise.all(workers.map((w) => w.result));
    for (const r of results) expect(r.error).toBeUndefined();
    const kids = new Set(results.map((r) => r.kid));
    expect(kids.size, `published: ${[...kids].join(", ")}`).toBe(1);
    const module = await openEmbeddedCryptoModule(dataDir);
    try {
      // Every published key is in the set (an import wrapped to it is accepted).
      const keys = new KeyImportTransportKeys({ crypto: module });
      for (const kid of kids) await expect(keys.unwrapKeyId(kid!, new Date())).resolves.toBeTruthy();
    } finally {
      await module.close();
    }
  }, 60_000);
});
