import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { transportFor } from "../testing/harness.js";

const bin = fileURLToPath(new URL("../../bin/inkan.js", import.meta.url));
const built = existsSync(fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url)));
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
}

async function output(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = run(args, env);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => child.on("close", r));
  return { code, stdout, stderr };
}

describe("the inkan command", () => {
  it("is built (npm test builds it first; run `npm run build` when testing by hand)", () => {
    expect(built).toBe(true);
  });

  it("init --json creates the PKI, the token with the SAM's keys and the store, and prints every path (R-3.1.1.3)", async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), "inkan-cli-")), "data");
    dirs.push(dataDir);
    const { code, stdout } = await output(["init", "--data-dir", dataDir, "--json"]);
    expect(code).toBe(0);
    const paths = JSON.parse(stdout) as Record<string, string>;
    for (const key of [
      "caCert", "serverCert", "serverKey", "scaCert", "scaKey", "adminCert", "adminKey",
      "pkcs11Module", "pkcs11Conf", "pkcs11PinFile", "pkcs11SoPinFile", "store", "signerIssuingCaCert",
    ]) {
      expect(isAbsolute(paths[key]!), key).toBe(true);
      expect(existsSync(paths[key]!), key).toBe(true);
    }
    expect(paths["pkcs11Token"]).toMatch(/^pkcs11:token=inkan/);
    for (const key of ["serverKey", "scaKey", "adminKey", "scaCaKey", "adminCaKey", "signerIssuingCaKey", "pkcs11PinFile", "pkcs11SoPinFile", "store"]) {
      expect(statSync(paths[key]!).mode & 0o077, `${key} must not be readable by others`).toBe(0);
    }
    // A second init changes nothing and reports the same files.
    const again = await output(["init", "--data-dir", dataDir, "--json"]);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual(paths);
    expect(again.stderr).toMatch(/already initialized; nothing was changed/);
  });

  it("serve prints its address, answers over mTLS, and stops cleanly on SIGTERM", async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), "inkan-cli-")), "data");
    dirs.push(dataDir);
    const init = await output(["init", "--json"], { INKAN_DATA_DIR: dataDir });
    const paths = JSON.parse(init.stdout) as Record<string, string>;
    const child = run(["serve", "--listen", "127.0.0.1:0"], { INKAN_DATA_DIR: dataDir });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on("close", r));
    const firstLine = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout }).once("line", resolve);
      child.once("close", () => reject(new Error(`inkan serve exited early:\n${stderr}`)));
    });
    const url = /^listening on (https:\/\/127\.0\.0\.1:\d+)$/.exec(firstLine)?.[1];
    expect(url, firstLine).toBeDefined();
    const read = (k: string) => readFileSync(paths[k]!, "utf8");
    const health = createClient(Health, transportFor("grpc", url!, { ca: read("caCert"), cert: read("scaCert"), key: read("scaKey") }));
    expect((await health.check({})).status).toBe(Status.SERVING);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/"msg":"stopped"/);
  });

  it("a start that fails names what lies under it (the module's CKR_* code), never the secret involved, and exits 1", async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), "inkan-cli-")), "data");
    dirs.push(dataDir);
    const paths = JSON.parse((await output(["init", "--json"], { INKAN_DATA_DIR: dataDir })).stdout) as Record<string, string>;
    const wrongPin = "wrong-pin-4711-secret";
    writeFileSync(paths["pkcs11PinFile"]!, wrongPin, { mode: 0o600 });
    const { code, stdout, stderr } = await output(["serve", "--listen", "127.0.0.1:0"], { INKAN_DATA_DIR: dataDir });
    expect(code).toBe(1);
    expect(stderr).toMatch(/inkan serve: .*\(CRYPTO_MODULE_FAILURE; cause: CKR_PIN_INCORRECT\)/);
    expect(stdout + stderr).not.toContain(wrongPin);
  });

  it("R-3.2.2.4: a SIGTERM while serve starts stops it cleanly once started (exit 0, its audit tail anchored in the module), not by the signal's default", async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), "inkan-cli-")), "data");
    dirs.push(dataDir);
    await output(["init", "--json"], { INKAN_DATA_DIR: dataDir });
    const child = run(["serve", "--listen", "127.0.0.1:0"], { INKAN_DATA_DIR: dataDir });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on("close", (code, signal) => r({ code, signal })));
    let stderr = "";
    await new Promise<void>((resolve, reject) => {
      child.stderr.on("data", (d) => {
        stderr += d;
        if (stderr.includes('"msg":"starting"')) resolve();
      });
      child.once("close", () => reject(new Error(`inkan serve exited before it said it was starting:\n${stderr}`)));
    });
    child.kill("SIGTERM"); // the SAM is still opening its module, store and audit log
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(stderr).toMatch(/"signal":"SIGTERM","msg":"shutting down"/);
    const verify = JSON.parse((await output(["audit", "verify", "--json"], { INKAN_DATA_DIR: dataDir })).stdout) as { ok: boolean; nodes: { lastSequence: number; moduleCheckpointSequence: number }[] };
    expect(verify.ok).toBe(true);
    expect(verify.nodes[0]!.lastSequence).toBeGreaterThanOrEqual(2); // sam.started and sam.stopped
    expect(verify.nodes[0]!.moduleCheckpointSequence).toBe(verify.nodes[0]!.lastSequence);
  });

  it("reports configuration problems by path and exits 2", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "inkan-cli-"));
    dirs.push(dataDir);
    const { code, stderr } = await output(["serve", "--data-dir", dataDir, "--listen", "nonsense"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/listen: "nonsense" is not HOST:PORT/);
    expect(stderr).toMatch(/tls\.certFile: /);
  });
});
