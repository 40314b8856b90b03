/**
 * Issue 23, "Done when": a new operator follows the README from a fresh `inkan init` to an
 * enrolled, activated signer with a certified credential, using only the CLI; the signer's side
 * is the device SDK (in place of the portal) and the SCA's the SDK's client. The commands are the
 * README's walk-through under "`inkan admin`", exactly as typed there (this test checks that the
 * README holds them verbatim), each run by bash in a fresh directory where `server/bin` is the
 * repository's. Two differences, both for a shared test machine: `serve` listens on a free port
 * (`--listen 127.0.0.1:0`, INKAN_ADMIN_TARGET set to it), and the comment lines are the steps of
 * the signer's device and the SCA, done here with the SDK.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { HashAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, describe, expect, it } from "vitest";
import type { InitPaths } from "../init.js";
import { activateDevice, approveOnDevice, inkanBuilt, signOnce, startInkanServe, type ServeProcess, type SignerDevice } from "../testing/inkan-processes.js";

/** The README's walk-through (section "`inkan admin`"), verbatim. */
const walkthrough = String.raw`node server/bin/inkan.js init --data-dir .data --json > init.json
node server/bin/inkan.js serve --data-dir .data &
export INKAN_ADMIN_FROM_INIT=init.json INKAN_ADMIN_ROLE=registration-operator
SIGNER=$(node server/bin/inkan.js admin signer enroll --legal-name "Sato Hanako" --email hanako@example.jp --country JP --json | jq -r .signerId)
node server/bin/inkan.js admin signer activation-code "$SIGNER"
# the signer activates their device with the code and a PIN (portal; @inkan/sdk/device)
CRED=$(node server/bin/inkan.js admin credential generate "$SIGNER" --algorithm ec-p256 --json | jq -r .credentialId)
node server/bin/inkan.js admin csr prepare "$CRED" --subject "CN=Sato Hanako,O=Example Corp,C=JP" --out cred.cri --json > csr.json
# the SCA begins a SAP transaction over the one DTBS/R in csr.json, the signer approves it on the
# device, and the SCA gives the operator its id (TX) and its SAD token (the file sad-token)
node server/bin/inkan.js admin csr create "$CRED" --cri cred.cri --hash-algorithm "$(jq -r .hashAlgorithm csr.json)" --signature-algorithm "$(jq -r .signatureAlgorithm csr.json)" --transaction-id "$TX" --sad-token-file sad-token --out cred.csr
openssl x509 -req -in cred.csr -CA .data/pki/signer-issuing-ca.crt -CAkey .data/pki/signer-issuing-ca.key -days 365 -set_serial "0x$(openssl rand -hex 16)" -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\n') -out cred.crt
node server/bin/inkan.js admin certificate import "$CRED" cred.crt
node server/bin/inkan.js admin credential show "$CRED"
# the credential is ACTIVE: the SCA signs with it, the signer approving each request on the device`;

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const jq = (() => {
  try {
    execFileSync("jq", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (!jq) console.warn("operator-walkthrough.test.ts: jq is missing (scripts/setup.sh installs it; apt-get install -y jq): the walk-through is skipped");

let dir: string | undefined;
let serve: ServeProcess | undefined;
afterAll(async () => {
  await serve?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs one README line in bash (cwd `dir`, the exported variables); for `VAR=$(...)`, returns VAR's value. */
function bash(line: string, vars: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const assigned = /^([A-Z_]+)=\$\(/.exec(line)?.[1];
  const script = `set -eo pipefail\n${line}${assigned ? `\nprintf %s "$${assigned}"` : ""}`;
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("INKAN_")) delete env[k];
  return new Promise((resolve) => {
    execFile("bash", ["-c", script], { cwd: dir, env: { ...env, ...vars } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

describe("the operator's walk-through from a fresh inkan init (issue 23)", () => {
  it("is in the README verbatim, and the binary is built", () => {
    expect(inkanBuilt).toBe(true);
    expect(readFileSync(join(repo, "README.md"), "utf8")).toContain("```sh\n" + walkthrough + "\n```");
  });

  it.skipIf(!jq)("enroll, activation code, device activation, credential, CSR approved by the signer through the SAP, certificate from the development issuing CA, import, one signature: CLI only (R-3.1.3.2)", async () => {
    dir = mkdtempSync(join(tmpdir(), "inkan-walkthrough-"));
    mkdirSync(join(dir, "server"));
    symlinkSync(join(repo, "server", "bin"), join(dir, "server", "bin"));
    const vars: Record<string, string> = {};
    const pin = "864213579";
    let device: SignerDevice | undefined;
    let last = "";
    const init = () => JSON.parse(readFileSync(join(dir!, "init.json"), "utf8")) as InitPaths;
    const sca = () => ({ ca: init().caCert, cert: init().scaCert, key: init().scaKey });
    // The steps of the comment lines, in order: the signer's device and the SCA (SDK).
    const steps: (() => Promise<void>)[] = [
      async () => {
        const code = /^\s+(\S+)$/m.exec(last)?.[1];
        expect(code, last).toBeTruthy();
        device = await activateDevice(vars["INKAN_ADMIN_TARGET"]!, init().signerFrontEnd, vars["SIGNER"]!, code!, pin);
      },
      async () => {
        const csr = JSON.parse(readFileSync(join(dir!, "csr.json"), "utf8")) as { dtbsr: string; hashAlgorithm: string; signatureAlgorithm: string };
        const approved = await approveOnDevice(vars["INKAN_ADMIN_TARGET"]!, sca(), device!, {
          signerId: vars["SIGNER"]!, credentialId: vars["CRED"]!, dtbsr: Buffer.from(csr.dtbsr, "base64"), description: "Certificate request for Sato Hanako",
          hashAlgorithm: HashAlgorithm[csr.hashAlgorithm.replace("HASH_ALGORITHM_", "") as keyof typeof HashAlgorithm],
          signatureAlgorithm: SignatureAlgorithm[csr.signatureAlgorithm.replace("SIGNATURE_ALGORITHM_", "") as keyof typeof SignatureAlgorithm],
        });
        writeFileSync(join(dir!, "sad-token"), approved.sadToken + "\n", { mode: 0o600 });
        vars["TX"] = approved.transactionId;
      },
      async () => {
        expect(last).toMatch(/^\s+status\s+CREDENTIAL_STATUS_ACTIVE$/m);
        expect(last).toMatch(/^\s+certificate\.subjectDn\s+CN=Sato Hanako,O=Example Corp,C=JP$/m);
        const signature = await signOnce(vars["INKAN_ADMIN_TARGET"]!, sca(), device!, vars["SIGNER"]!, vars["CRED"]!, createHash("sha256").update("the first contract").digest());
        expect(signature.length).toBeGreaterThan(60);
      },
    ];

    const lines = walkthrough.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.startsWith("# ")) {
        if (lines[i + 1]?.startsWith("# ")) i++; // one step may take two comment lines
        const step = steps.shift();
        expect(step, line).toBeDefined();
        await step!();
        continue;
      }
      if (line.endsWith(" serve --data-dir .data &")) {
        serve = await startInkanServe(["--data-dir", join(dir, ".data"), "--listen", "127.0.0.1:0"]);
        vars["INKAN_ADMIN_TARGET"] = serve.url;
        continue;
      }
      if (line.startsWith("export ")) {
        for (const assignment of line.slice("export ".length).split(" ")) {
          const [name, value] = assignment.split("=");
          vars[name!] = value!;
        }
        continue;
      }
      const run = await bash(line, vars);
      expect(run.code, `${line}\n${run.stderr}`).toBe(0);
      const assigned = /^([A-Z_]+)=\$\(/.exec(line)?.[1];
      if (assigned) {
        expect(run.stdout, line).toMatch(/^\S+$/);
        vars[assigned] = run.stdout;
      }
      last = run.stdout;
    }
    expect(steps).toEqual([]);
  }, 90_000);
});
