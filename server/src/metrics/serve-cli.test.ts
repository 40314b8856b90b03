/**
 * Issue 23: `inkan serve --metrics-listen HOST:PORT` (the real binary on a fresh `inkan init` data
 * directory) prints the listener's address and serves /healthz, /readyz and /metrics on it in plain
 * HTTP, and stops cleanly on SIGTERM.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const bin = fileURLToPath(new URL("../../bin/inkan.js", import.meta.url));
const built = existsSync(fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url)));
if (!built) console.warn("serve --metrics-listen test skipped: server/dist is not built (npx tsc -b)");
const root = mkdtempSync(join(tmpdir(), "inkan-serve-metrics-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function run(args: string[], env: NodeJS.ProcessEnv) {
  const e = { ...process.env, ...env };
  for (const k of Object.keys(e)) if (k.startsWith("INKAN_") && !(k in env)) delete e[k];
  return spawn(process.execPath, [bin, ...args], { env: e, stdio: ["ignore", "pipe", "pipe"] });
}

describe.skipIf(!built)("Issue 23: inkan serve --metrics-listen", () => {
  it("prints the metrics address and serves /healthz, /readyz and /metrics there; stops cleanly on SIGTERM", async () => {
    const dataDir = join(root, "data");
    const init = run(["init"], { INKAN_DATA_DIR: dataDir });
    expect(await new Promise((r) => init.on("close", r))).toBe(0);
    const child = run(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"], { INKAN_DATA_DIR: dataDir });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on("close", r));
    const lines: string[] = [];
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).on("line", (l) => {
        lines.push(l);
        if (lines.length === 2) resolve();
      });
      child.once("close", () => reject(new Error(`inkan serve exited early:\n${stderr}`)));
    });
    try {
      expect(lines[0]).toMatch(/^listening on https:\/\/127\.0\.0\.1:\d+$/);
      const url = /^metrics, \/healthz and \/readyz on (http:\/\/127\.0\.0\.1:\d+)$/.exec(lines[1]!)?.[1];
      expect(url, lines[1]).toBeDefined();
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toContain("inkan_crypto_module_available 1");
      expect(metrics).toContain("inkan_policy_integrity_ok 1");
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });
});
