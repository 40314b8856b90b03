import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { main } from "./cli.js";
import type { SuiteReport } from "./runner.js";

let t: TestServer;
let dir: string;
let initJson: string;

beforeAll(async () => {
  t = await startTestServer();
  dir = mkdtempSync(join(tmpdir(), "inkan-conformance-cli-"));
  initJson = join(dir, "init.json");
  writeFileSync(initJson, JSON.stringify(t.pki.paths)); // what `inkan init --json` prints
}, 60_000);
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** main() with stderr/stdout captured. */
async function run(args: string[]): Promise<{ status: number; out: string }> {
  const lines: string[] = [];
  const err = vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
  const log = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
  try {
    return { status: await main(args), out: lines.join("\n") };
  } finally {
    err.mockRestore();
    log.mockRestore();
  }
}

describe("inkan-conformance", () => {
  it("refuses missing flags, an unknown protocol or case, and a known-failures line without a reason (exit 2)", async () => {
    expect(await run(["--ca", "x"])).toMatchObject({ status: 2, out: expect.stringContaining("--target") });
    expect(await run(["--target", "https://127.0.0.1:1"])).toMatchObject({ status: 2, out: expect.stringContaining("--sca-cert") });
    expect(await run(["--target", t.server.url, "--from-init", initJson, "--protocol", "http3"])).toMatchObject({ status: 2, out: expect.stringContaining("http3") });
    expect(await run(["--target", t.server.url, "--from-init", initJson, "--case", "no-such-case"])).toMatchObject({ status: 2, out: expect.stringContaining("no-such-case") });
    const bad = join(dir, "bad-known.txt");
    writeFileSync(bad, "replay-jti\n");
    expect(await run(["--target", t.server.url, "--from-init", initJson, "--known-failures", bad])).toMatchObject({ status: 2, out: expect.stringContaining("line 1") });
    expect(await run(["--bogus"])).toMatchObject({ status: 2 });
  });

  it("--list prints every case with the IDs it covers", async () => {
    const { status, out } = await run(["--list"]);
    expect(status).toBe(0);
    expect(out).toMatch(/replay-sad-token\s+attack\s+T-2\.2\.1\.3, R-3\.2\.1\.2/);
    expect(out).toMatch(/audit-tampering\s+covered-elsewhere\s+R-3\.2\.2\.4/);
  });

  it("runs against a target from `inkan init --json` and writes the JSON, JUnit and Markdown reports; exit 0", async () => {
    const files = { json: join(dir, "out.json"), junit: join(dir, "out.xml"), md: join(dir, "out.md") };
    const { status, out } = await run(["--target", t.server.url, "--from-init", initJson, "--protocol", "connect", "--case", "replay-sad-token", "--case", "jwe-zip", "--report-json", files.json, "--junit", files.junit, "--markdown", files.md]);
    expect(out).toContain("2 passed, 0 failed");
    expect(status).toBe(0);
    const report = JSON.parse(readFileSync(files.json, "utf8")) as SuiteReport;
    expect(report.runs.map((r) => r.protocol)).toEqual(["connect"]);
    expect(report.runs[0]!.results.map((r) => [r.id, r.status, r.seen])).toEqual([
      ["replay-sad-token", "passed", "PERMISSION_DENIED REASON_SAD_REPLAYED"],
      ["jwe-zip", "passed", "PERMISSION_DENIED REASON_SAD_INVALID"],
    ]);
    expect(readFileSync(files.junit, "utf8")).toContain('tests="2" failures="0"');
    expect(readFileSync(files.md, "utf8")).toContain("| T-2.2.1.3 |");
  });

  it("a case listed as a known failure that passes fails the run (a stale list), exit 1", async () => {
    const known = join(dir, "known.txt");
    writeFileSync(known, "# stale entry\njwe-zip: decompressed the plaintext in 0.0.1\n");
    const { status, out } = await run(["--target", t.server.url, "--from-init", initJson, "--protocol", "grpc", "--case", "jwe-zip", "--known-failures", known]);
    expect(out).toContain("listed as a known failure");
    expect(status).toBe(1);
  });

  it("with separate flags and no second SCA (nor an SCA CA to mint one), the cross-SCA cases are skipped with the reason; exit 0", async () => {
    const p = t.pki.paths;
    const { status, out } = await run([
      "--target", t.server.url, "--ca", p.caCert, "--sca-cert", p.scaCert, "--sca-key", p.scaKey,
      "--admin-cert", p.adminCert, "--admin-key", p.adminKey, "--admin-signing-key", p.adminRequestKey, "--admin-ca-cert", p.adminCaCert, "--admin-ca-key", p.adminCaKey,
      "--signer-issuing-ca-cert", p.signerIssuingCaCert, "--signer-issuing-ca-key", p.signerIssuingCaKey,
      "--front-end-cert", p.signerFrontEnd.cert, "--front-end-key", p.signerFrontEnd.key,
      "--protocol", "grpc-web", "--case", "bypass-other-sca-token", "--case", "bypass-sign-hash-without-authorize",
    ]);
    expect(out).toMatch(/skipped\s+grpc-web\s+bypass-other-sca-token: no second SCA certificate given/);
    expect(out).toContain("1 passed, 0 failed, 0 known failures, 1 skipped");
    expect(status).toBe(0);
  });
});
