/**
 * Issue 15: `inkan init --demo-signer` (development only), the real CLI binary against the real SAM
 * serving the same data directory: a demo signer with a certified P-256 credential, a fresh
 * activation code on every run (the signer and credential kept), each code usable and each earlier
 * one void.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { Reason } from "@inkan/sdk";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { CertificateStatus, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusalOf, startTestServer, type TestServer } from "../testing/harness.js";
import { reactivate } from "../testing/signers.js";

const bin = fileURLToPath(new URL("../../bin/inkan.js", import.meta.url));
const built = existsSync(fileURLToPath(new URL("../../dist/cli/demo-signer.js", import.meta.url)));

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
}, 60_000);
afterAll(() => t?.close());

function inkan(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("INKAN_")) delete env[k];
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

interface Demo {
  development: boolean;
  signerId: string;
  credentialId: string;
  activationCode: string;
  created: boolean;
}

async function demo(): Promise<Demo> {
  const r = await inkan(["init", "--data-dir", t.dataDir, "--demo-signer", "--target", t.server.url, "--json"]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toMatch(/DEVELOPMENT ONLY/);
  return JSON.parse(r.stdout) as Demo;
}

describe("inkan init --demo-signer (issue 15, development only)", () => {
  it("is built (npm test builds it first)", () => {
    expect(built).toBe(true);
  });

  it("enrolls a demo signer with a certified P-256 credential; every run prints a fresh code that activates it, keeping the signer and the credential", async () => {
    const first = await demo();
    expect(first).toMatchObject({ development: true, created: true });

    // Second run, signer not yet activated: same ids, a new code; the first code is void.
    const second = await demo();
    expect(second).toMatchObject({ signerId: first.signerId, credentialId: first.credentialId, created: false });
    expect(second.activationCode).not.toBe(first.activationCode);
    expect(await refusalOf(reactivate(t, first.signerId, first.activationCode))).toMatchObject({ reason: Reason.ACTIVATION_CODE_INVALID });
    await reactivate(t, second.signerId, second.activationCode);
    // Activated, the signer's credential is visible to the development SCA: P-256, certified.
    const sca = createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
    const { credential } = await sca.getCredential({ credentialId: first.credentialId });
    expect(credential?.keyAlgorithm).toBe(KeyAlgorithm.EC_P256);
    expect(credential?.certificate?.status).toBe(CertificateStatus.VALID);
    expect(credential?.certificate?.subjectDn).toMatch(/CN=Demo Signer/);
    expect((await sca.listCredentials({ signerId: first.signerId })).credentials.map((c) => c.credentialId)).toEqual([first.credentialId]);

    // Third run, signer active: its factors are reset and a new code issued (dual control: the
    // development registration operator asks, the first security officer approves); it activates.
    const third = await demo();
    expect(third).toMatchObject({ signerId: first.signerId, credentialId: first.credentialId, created: false });
    await reactivate(t, third.signerId, third.activationCode);
  }, 120_000);

  it("human output is marked DEVELOPMENT ONLY and shows the code; without a running SAM it fails clearly (exit 1)", async () => {
    const human = await inkan(["init", "--data-dir", t.dataDir, "--demo-signer", "--target", t.server.url]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^DEVELOPMENT ONLY: demo signer kept/m);
    expect(human.stdout).toMatch(/activationCode\s+\S+/);
    const down = await inkan(["init", "--data-dir", t.dataDir, "--demo-signer", "--target", "https://127.0.0.1:9"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/it works through the running SAM: start `inkan serve --data-dir/);
    expect(down.stdout).toBe("");
  }, 60_000);
});
