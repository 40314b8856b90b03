/**
 * Issue 23: `inkan admin audit export` draws a progress bar on stderr only on a terminal, never
 * with --json or when stderr is piped (scripts see clean output). The renderer is checked with a
 * fake terminal and a fixed clock; the real CLI binary runs against the real SAM with its stderr
 * piped, and under a pseudo-terminal (`script`, where it exists).
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { enrolledSigner } from "../testing/signers.js";
import { createProgress } from "./admin-audit.js";

const bin = fileURLToPath(new URL("../../bin/inkan.js", import.meta.url));
const built = existsSync(fileURLToPath(new URL("../../dist/cli/admin-audit.js", import.meta.url)));
if (!built) console.warn("admin audit export CLI tests skipped: server/dist is not built (npx tsc -b)");
const scriptTool = (() => {
  try {
    return execFileSync("sh", ["-c", "command -v script"], { encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
})();
if (!scriptTool) console.warn("admin audit export: the pseudo-terminal case is skipped: `script` (util-linux) is missing");

function fakeTerminal(isTTY: boolean) {
  const written: string[] = [];
  let clock = 0;
  return { sink: { isTTY, columns: 100, write: (s: string) => written.push(s) }, written, now: () => clock, advance: (ms: number) => (clock += ms) };
}

describe("Issue 23: the audit export's progress bar (renderer)", () => {
  it("on a terminal: a bar with the percentage when the total is known, redrawn at most every 100 ms, ended by a newline", () => {
    const term = fakeTerminal(true);
    const p = createProgress(term.sink, { enabled: true, total: 200, now: term.now });
    p.update(50, 1024);
    term.advance(50);
    p.update(60, 2048); // within 100 ms: not drawn
    term.advance(100);
    p.update(100, 1048576);
    p.done();
    expect(term.written).toHaveLength(4);
    expect(term.written[0]).toMatch(/^\r\x1b\[2Kexporting \[#+-+\]  25%  50\/200 records/);
    expect(term.written[1]).toMatch(/ 50%  100\/200 records  1\.0 MiB  667 rec\/s$/);
    expect(term.written[3]).toBe("\n");
  });

  it("on a terminal without a known total: the count, size and rate", () => {
    const term = fakeTerminal(true);
    const p = createProgress(term.sink, { enabled: true, now: term.now });
    term.advance(1000);
    p.update(1500, 3 * 1048576);
    p.done();
    expect(term.written[0]).toBe("\r\x1b[2Kexporting 1,500 records  3.0 MiB  1,500 rec/s");
  });

  it("draws nothing with --json, or when stderr is not a terminal", () => {
    for (const [isTTY, enabled] of [[false, true], [true, false], [false, false]] as const) {
      const term = fakeTerminal(isTTY);
      const p = createProgress(term.sink, { enabled, total: 10, now: term.now });
      p.update(5, 10);
      p.done();
      expect(term.written, `isTTY ${isTTY}, enabled ${enabled}`).toEqual([]);
    }
  });
});

describe.skipIf(!built)("Issue 23: `inkan admin audit export` against the real SAM", () => {
  let t: TestServer;
  let dir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    t = await startTestServer();
    dir = mkdtempSync(join(tmpdir(), "inkan-export-"));
    const auditor: PrivilegedPerson = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-export");
    const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-export");
    await enrolledSigner(t, operator);
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text, { mode: 0o600 });
      return join(dir, name);
    };
    env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith("INKAN_")) delete env[k];
    Object.assign(env, {
      INKAN_ADMIN_TARGET: t.server.url,
      INKAN_ADMIN_CA: t.pki.paths.caCert,
      INKAN_ADMIN_CERT: file("auditor.crt", auditor.cert.cert),
      INKAN_ADMIN_KEY: file("auditor.key", auditor.cert.key),
      INKAN_ADMIN_REQUEST_KEY: file("auditor.jwk", JSON.stringify(auditor.privateJwk)),
      INKAN_ADMIN_USER_ID: auditor.userId,
    });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const run = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [bin, "admin", ...args], { env }, (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
      });
    });

  it("with stderr piped: no progress and no control characters, human or --json; the file is the export", async () => {
    const [human, json] = await Promise.all([
      run(["audit", "export", "--out", join(dir, "a.jsonl")]),
      run(["audit", "export", "--out", join(dir, "b.jsonl"), "--json"]),
    ]);
    expect(human.code, human.stderr).toBe(0);
    expect(json.code, json.stderr).toBe(0);
    for (const r of [human, json]) {
      expect(r.stderr).toBe("");
      expect(r.stdout).not.toMatch(/[\r\x1b]/);
    }
    expect(human.stdout).toMatch(/^Exported \d+ lines \(\d+ bytes\) to /);
    const result = JSON.parse(json.stdout) as { file: string; lines: number; bytes: number };
    expect(result.lines).toBe(readFileSync(join(dir, "b.jsonl"), "utf8").trimEnd().split("\n").length);
    expect(result.lines).toBeGreaterThan(3);
  });

  it.skipIf(!scriptTool)("on a pseudo-terminal: the progress line is drawn; with --json it is not", async () => {
    const underTty = (args: string[]) => {
      const command = [process.execPath, bin, "admin", ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
      return new Promise<string>((resolve, reject) => {
        execFile(scriptTool!, ["-qefc", command, "/dev/null"], { env }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
      });
    };
    const [human, json] = await Promise.all([
      underTty(["audit", "export", "--out", join(dir, "c.jsonl")]),
      underTty(["audit", "export", "--out", join(dir, "d.jsonl"), "--json"]),
    ]);
    expect(human).toMatch(/\r\x1b\[2Kexporting \d+ records {2}\d+\.\d MiB/);
    expect(json).not.toContain("exporting");
    expect(json).not.toContain("\x1b");
    expect(json).not.toMatch(/\r(?!\n)/); // the terminal turns each newline into \r\n; any other \r redraws a line
  });
});
