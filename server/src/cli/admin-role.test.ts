/**
 * Issue 23: `inkan init` creates a development registration operator and auditor, and
 * `inkan admin --from-init init.json --role registration-operator|auditor NOUN VERB` (or
 * --data-dir DIR, or INKAN_ADMIN_ROLE) acts as them. The real CLI binary (built dist) against the
 * real SAM (startTestServer runs the real initDataDir).
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../testing/harness.js";

const bin = fileURLToPath(new URL("../../bin/inkan.js", import.meta.url));
const built = existsSync(fileURLToPath(new URL("../../dist/cli/admin.js", import.meta.url)));

let t: TestServer;
let dir: string;
let initJson: string;

beforeAll(async () => {
  t = await startTestServer();
  dir = mkdtempSync(join(tmpdir(), "inkan-admin-role-"));
  initJson = join(dir, "init.json");
  writeFileSync(initJson, JSON.stringify(t.pki.paths)); // what `inkan init --json` printed
}, 60_000);
afterAll(async () => {
  await t?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function inkan(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const full: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(full)) if (k.startsWith("INKAN_")) delete full[k];
  Object.assign(full, { INKAN_ADMIN_TARGET: t.server.url }, env);
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: full }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

describe.concurrent("inkan admin --role: the development identities of inkan init (issue 23)", () => {
  it("is built (npm test builds it first)", () => {
    expect(built).toBe(true);
  });

  it("init lists the registration operator and auditor: certificate, key, request key, user id", () => {
    for (const who of [t.pki.paths.registrationOperator, t.pki.paths.auditor]) {
      expect(who.userId).toMatch(/\S/);
      for (const f of [who.cert, who.key, who.requestKey, who.ca]) expect(existsSync(f), f).toBe(true);
    }
    expect(t.pki.paths.registrationOperator.userId).not.toBe(t.pki.paths.auditor.userId);
  });

  it("--from-init --role registration-operator enrolls a signer; the same command as the auditor is refused (exit 3, ROLE_NOT_PERMITTED)", async () => {
    const enroll = ["signer", "enroll", "--legal-name", "Role Test", "--email", `role.${process.pid}@example.jp`, "--country", "JP", "--json"];
    const asRa = await inkan(["admin", "--from-init", initJson, "--role", "registration-operator", ...enroll]);
    expect(asRa.code, asRa.stderr).toBe(0);
    const signerId = (JSON.parse(asRa.stdout) as { signerId: string }).signerId;
    expect(signerId).toMatch(/\S/);
    const asAuditor = await inkan(["admin", "--from-init", initJson, "--role", "auditor", ...enroll]);
    expect(asAuditor.code).toBe(3);
    expect(asAuditor.stderr).toMatch(/ROLE_NOT_PERMITTED/);
    // The enrollment is on record under the operator's user id, as the auditor reads it.
    const audit = await inkan(["admin", "audit", "list", "--event", "signer.enrolled", "--signer", signerId, "--json"], { INKAN_ADMIN_FROM_INIT: initJson, INKAN_ADMIN_ROLE: "auditor" });
    expect(audit.code, audit.stderr).toBe(0);
    expect(audit.stdout).toContain(t.pki.paths.registrationOperator.userId);
  });

  it("--data-dir --role auditor reads the audit log; --role after NOUN VERB works for verbs without their own --role", async () => {
    const viaDataDir = await inkan(["admin", "--data-dir", t.dataDir, "--role", "auditor", "audit", "verify", "--json"]);
    expect(viaDataDir.code, viaDataDir.stderr).toBe(0);
    const after = await inkan(["admin", "signer", "list", "--from-init", initJson, "--role", "registration-operator", "--json"]);
    expect(after.code, after.stderr).toBe(0);
  });

  it("`user create --role auditor` keeps its own --role (the new user's), and the security officer stays the default identity", async () => {
    const out = join(dir, "new-auditor");
    const r = await inkan(["admin", "--from-init", initJson, "user", "create", "--name", "Audit Two", "--role", "auditor", "--out-dir", out, "--dev-admin-ca", t.dataDir, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("PRIVILEGED_ROLE_AUDITOR");
  });

  it("a bad or misplaced --role is a usage error (exit 2), nothing sent", async () => {
    const bad = await inkan(["admin", "--from-init", initJson, "--role", "janitor", "signer", "list"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--role janitor: use security-officer, registration-operator or auditor/);
    const noSource = await inkan(["admin", "--role", "auditor", "audit", "verify"]);
    expect(noSource.code).toBe(2);
    expect(noSource.stderr).toMatch(/give --from-init FILE or --data-dir DIR/);
    const old = join(dir, "old-init.json");
    const { registrationOperator: _r, auditor: _a, ...before } = t.pki.paths;
    writeFileSync(old, JSON.stringify(before));
    const stale = await inkan(["admin", "--from-init", old, "--role", "auditor", "audit", "verify"]);
    expect(stale.code).toBe(2);
    expect(stale.stderr).toMatch(/has no auditor \(run `inkan init --json` again/);
  });
});
