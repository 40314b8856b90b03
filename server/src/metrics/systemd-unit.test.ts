/**
 * Issue 23: the hardened systemd unit in deploy/systemd is valid (`systemd-analyze verify`: no
 * error and no warning, so a misspelt hardening key that systemd would silently ignore fails the
 * test) and stays hardened (`systemd-analyze security --offline`: overall exposure at most 2.0 of
 * 10). Where systemd-analyze is missing, the test says why it did not run.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const unitFile = fileURLToPath(new URL("../../../deploy/systemd/inkan.service", import.meta.url));
const analyze = (() => {
  try {
    return execFileSync("sh", ["-c", "command -v systemd-analyze"], { encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
})();
if (!analyze) console.warn("systemd unit: not verified: systemd-analyze is not installed here (Debian: the systemd package)");

const dir = mkdtempSync(join(tmpdir(), "inkan-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The unit as a file named inkan.service; ExecStart's /usr/bin/node points at this Node when that path is missing here. */
function unitCopy(edit: (text: string) => string = (t) => t): string {
  let text = edit(readFileSync(unitFile, "utf8"));
  if (!existsSync("/usr/bin/node")) {
    console.warn(`systemd unit: /usr/bin/node is missing here; verified with ExecStart=${process.execPath}`);
    text = text.replace("ExecStart=/usr/bin/node ", `ExecStart=${process.execPath} `);
  }
  const sub = mkdtempSync(join(dir, "u-"));
  writeFileSync(join(sub, "inkan.service"), text);
  return join(sub, "inkan.service");
}

function verify(file: string): { status: number | null; output: string } {
  const r = spawnSync(analyze!, ["verify", file], { encoding: "utf8", cwd: dir });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

function exposure(file: string): number {
  const r = spawnSync(analyze!, ["security", "--offline=true", file], { encoding: "utf8", cwd: dir });
  const m = /Overall exposure level for inkan\.service: (\d+(?:\.\d+)?)/.exec(r.stdout);
  if (!m) throw new Error(`no exposure level in: ${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

describe("Issue 23: the hardened systemd unit (deploy/systemd/inkan.service)", () => {
  it("holds the hardening the README promises", () => {
    const text = readFileSync(unitFile, "utf8");
    for (const line of ["NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/inkan", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "ProtectHome=yes", "LimitCORE=0", "User=inkan"]) {
      expect(text, line).toContain(line);
    }
  });

  it.skipIf(!analyze)("passes `systemd-analyze verify` without a warning; a misspelt key or a missing binary is caught", () => {
    expect(verify(unitCopy())).toEqual({ status: 0, output: "" });
    const typo = verify(unitCopy((t) => t.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")));
    expect(typo.output).toMatch(/Unknown key 'NoNewPrivilege'/);
    expect(verify(unitCopy((t) => t.replace(/^ExecStart=\S+/m, "ExecStart=/nonexistent/node"))).status).not.toBe(0);
  });

  it.skipIf(!analyze)("has an overall exposure of at most 2.0 in `systemd-analyze security` (an unhardened copy scores higher)", () => {
    const score = exposure(unitCopy());
    console.log(`systemd-analyze security: overall exposure ${score}`);
    expect(score).toBeLessThanOrEqual(2);
    const bare = unitCopy((t) => t.replace(/^(NoNewPrivileges|ProtectSystem|CapabilityBoundingSet|PrivateDevices|SystemCallFilter|RestrictAddressFamilies)=.*\n/gm, ""));
    expect(exposure(bare)).toBeGreaterThan(4);
  });
});
