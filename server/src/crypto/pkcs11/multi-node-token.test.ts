/**
 * The spike of issue 21: one SoftHSM2 token directory shared by three processes (three SAM nodes;
 * in production a network HSM), each writing data objects at once, as nodes starting or
 * checkpointing together do. Before issue 21 the audit node index, one object every node rewrote
 * read-modify-write, kept 15 to 25 of 45 entries, and writes failed with CKR_OBJECT_HANDLE_INVALID
 * (a version another process had just removed). Now each node writes only objects of its own.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { readAuditNodeIndex } from "../../audit/checkpoint.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "./softhsm-token.js";

const dist = fileURLToPath(new URL("../../../dist", import.meta.url));
const worker = fileURLToPath(new URL("./testing/shared-token-worker.mjs", import.meta.url));
const rounds = 15;

interface Summary {
  node: string;
  errors: { index: string[]; own: string[]; shared: string[] };
  own: string;
}

function runNode(dataDir: string, node: string): Promise<Summary> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [worker, dist, dataDir, node, String(rounds)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    p.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as Summary) : reject(new Error(`node ${node} exited ${code}: ${err.slice(-2000)}`))));
  });
}

describe("one SoftHSM2 token shared by three processes (issue 21 spike)", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "inkan-shared-token-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("R-3.2.2.4: three nodes writing at once lose no audit node entry and no write of their own objects", async () => {
    await initEmbeddedToken(dataDir);
    const summaries = await Promise.all(["a", "b", "c"].map((n) => runNode(dataDir, n)));
    const module = await openEmbeddedCryptoModule(dataDir);
    try {
      const indexed = await readAuditNodeIndex(module);
      expect(indexed).toHaveLength(3 * rounds);
      for (const s of summaries) {
        expect(s.errors.index, s.node).toEqual([]);
        expect(s.errors.own, s.node).toEqual([]);
        expect(s.own, s.node).toBe(String(rounds - 1));
      }
      // A label every node rewrites (the SAM key set when two nodes rotate at once) ends with one
      // readable value; a write may fail closed (README: rotate through one node), none is torn.
      const shared = new TextDecoder().decode(await module.readDataObject("shared-probe"));
      expect(shared).toMatch(/^[abc]-\d+$/);
      console.log(`shared-token spike: writes of the shared label refused: ${summaries.map((s) => `${s.node} ${s.errors.shared.length}/${rounds} (${[...new Set(s.errors.shared)].join(", ")})`).join("; ")}`);
    } finally {
      await module.close();
    }
  }, 60_000);
});
