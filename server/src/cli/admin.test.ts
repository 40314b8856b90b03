/**
 * `inkan admin` end to end: the real CLI binary (node server/bin/inkan.js, built dist) as a child
 * process against the real SAM (startTestServer: mTLS, SoftHSM2, SQLite), for each command, with
 * its human and --json output, the dual-control path, and refusals (wrong role, unknown ids,
 * unreadable key files): clear reason, the documented exit code, nothing changed.
 */
import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { execFile } from "node:child_process";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, toJson } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { buildKeyImportConsent, buildRSad } from "@inkan/sdk";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { ImportKeyRequestSchema, KeyWrapScheme, RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { HashAlgorithm, KeyAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import * as x509 from "@peculiar/x509";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PrivilegedPerson, TestServer } from "../testing/harness.js";
import { newRequestSigningKey, startTestServer } from "../testing/harness.js";
import { issueSignerCertificate, signerIssuingCa } from "../testing/signer-certificates.js";
import { wrapForImport } from "../testing/key-wrap.js";
import { activeSigner, activeSignerWithCredential, enrolledSigner, reactivate, testPin } from "../testing/signers.js";

const bin = fileURLToPath(new URL("../../bin/inkan.js", import.meta.url));
const built = existsSync(fileURLToPath(new URL("../../dist/cli/admin.js", import.meta.url)));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let t: TestServer;
let dir: string;
let ra: PrivilegedPerson;
let ra2: PrivilegedPerson;
let auditor: PrivilegedPerson;
let so2: PrivilegedPerson;
const envOf = new Map<PrivilegedPerson, NodeJS.ProcessEnv>();

/** The INKAN_ADMIN_* variables that make the CLI act as `who` (their files written to disk). */
function writeIdentity(name: string, who: PrivilegedPerson): NodeJS.ProcessEnv {
  const file = (suffix: string, text: string) => {
    const f = join(dir, `${name}.${suffix}`);
    writeFileSync(f, text, { mode: 0o600 });
    return f;
  };
  return {
    INKAN_ADMIN_TARGET: t.server.url,
    INKAN_ADMIN_CA: t.pki.paths.caCert,
    INKAN_ADMIN_CERT: file("crt", who.cert.cert),
    INKAN_ADMIN_KEY: file("key", who.cert.key),
    INKAN_ADMIN_REQUEST_KEY: file("jwk", JSON.stringify(who.privateJwk)),
    INKAN_ADMIN_USER_ID: who.userId,
  };
}

/** Runs `inkan admin ...args` as `who` (default: the first security officer, from --data-dir). */
function admin(args: string[], who?: PrivilegedPerson): Promise<Run> {
  return inkan(["admin", ...args], who);
}

function inkan(args: string[], who?: PrivilegedPerson): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("INKAN_")) delete env[k];
  Object.assign(env, who ? envOf.get(who) : { INKAN_ADMIN_TARGET: t.server.url, INKAN_DATA_DIR: t.dataDir });
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

function json<T = Record<string, unknown>>(r: Run): T {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

beforeAll(async () => {
  t = await startTestServer();
  dir = mkdtempSync(join(tmpdir(), "inkan-admin-cli-"));
  ra = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "RA One");
  ra2 = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "RA Two");
  auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "Auditor");
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "Second Officer");
  for (const [n, p] of [["ra", ra], ["ra2", ra2], ["auditor", auditor], ["so2", so2]] as const) envOf.set(p, writeIdentity(n, p));
}, 30_000);

afterAll(async () => {
  await t?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Concurrent (at most 5 at a time, vitest's default): the tests share one server and make their own
// signers, so none depends on another's state, and the CLI calls mostly wait on child processes.
describe.concurrent("inkan admin", () => {
  it("is built (npm test builds it first; run `npm run build` when testing by hand)", () => {
    expect(built).toBe(true);
  });

  it("--help lists the nouns; every noun and command has --help", async () => {
    const top = await admin(["--help"]);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/signer\s+enroll and manage signers/);
    const noun = await admin(["signer", "--help"]);
    expect(noun.stdout).toMatch(/reset-factors SIGNER_ID/);
    const verb = await admin(["signer", "activation-code", "--help"]);
    expect(verb.code).toBe(0);
    expect(verb.stdout).toMatch(/PRINTS THE CODE/);
    expect(verb.stdout).toMatch(/INKAN_ADMIN_REQUEST_KEY/);
  });

  it("identity: --from-init takes the init output; a request key given by variable names its own user (sub) over init's", async () => {
    const initJson = join(dir, "init.json");
    writeFileSync(initJson, JSON.stringify(t.pki.paths));
    const asOfficer: PrivilegedPerson = { ...ra, userId: "from-init" };
    envOf.set(asOfficer, { INKAN_ADMIN_TARGET: t.server.url, INKAN_ADMIN_FROM_INIT: initJson });
    const raFiles = envOf.get(ra)!;
    const asRa: PrivilegedPerson = { ...ra, userId: "from-init-ra" };
    // The operator's files, its user id only in its key file's "sub".
    const raKey = join(dir, "ra-with-sub.jwk");
    writeFileSync(raKey, JSON.stringify({ ...ra.privateJwk, sub: ra.userId }), { mode: 0o600 });
    envOf.set(asRa, { INKAN_ADMIN_TARGET: t.server.url, INKAN_ADMIN_FROM_INIT: initJson, INKAN_ADMIN_CERT: raFiles["INKAN_ADMIN_CERT"], INKAN_ADMIN_KEY: raFiles["INKAN_ADMIN_KEY"], INKAN_ADMIN_REQUEST_KEY: raKey });
    const [officer, operator] = await Promise.all([admin(["user", "show", t.firstSecurityOfficer.userId, "--json"], asOfficer), admin(["signer", "list", "--json"], asRa)]);
    expect(json<{ role: string }>(officer).role).toBe("PRIVILEGED_ROLE_SECURITY_OFFICER");
    expect(operator.code, operator.stderr).toBe(0);
  });

  it("login --profile checks the identity and saves its paths (no secret); --profile and INKAN_ADMIN_PROFILE then suffice", async () => {
    const config = join(dir, "config");
    const as = (env: NodeJS.ProcessEnv): PrivilegedPerson => {
      const p: PrivilegedPerson = { ...ra };
      envOf.set(p, { INKAN_ADMIN_CONFIG_DIR: config, ...env });
      return p;
    };
    const login = await admin(["login", "--profile", "tokyo"], as(envOf.get(ra)!));
    expect(login.code, login.stderr).toBe(0);
    const file = join(config, "profiles", "tokyo.json");
    expect(login.stdout).toContain(`Saved profile tokyo (user ${ra.userId} at ${t.server.url}) to ${file}`);
    const saved = readFileSync(file, "utf8");
    expect(JSON.parse(saved)).toEqual({
      target: t.server.url, ca: t.pki.paths.caCert, cert: envOf.get(ra)!["INKAN_ADMIN_CERT"], key: envOf.get(ra)!["INKAN_ADMIN_KEY"],
      requestKey: envOf.get(ra)!["INKAN_ADMIN_REQUEST_KEY"], userId: ra.userId,
    });
    expect(saved).not.toContain(ra.privateJwk.d!);
    expect(statSync(file).mode & 0o077).toBe(0);

    const [byFlag, byEnv, missing, unbound] = await Promise.all([
      admin(["signer", "list", "--profile", "tokyo"], as({})),
      admin(["signer", "list"], as({ INKAN_ADMIN_PROFILE: "tokyo" })),
      admin(["signer", "list", "--profile", "osaka"], as({})),
      (async () => {
        writeFileSync(join(dir, "unbound.crt"), t.pki.unboundAdmin.cert);
        writeFileSync(join(dir, "unbound.key"), t.pki.unboundAdmin.key, { mode: 0o600 });
        return admin(["login", "--profile", "stolen", "--cert", join(dir, "unbound.crt"), "--key", join(dir, "unbound.key")], as(envOf.get(ra)!));
      })(),
    ]);
    expect(byFlag.code, byFlag.stderr).toBe(0);
    expect(byEnv.code, byEnv.stderr).toBe(0);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--profile osaka: no profile .*osaka\.json \(write it with `inkan admin login --profile osaka`\)/);
    expect(unbound.code).toBe(3);
    expect(unbound.stderr).toMatch(/CLIENT_CERTIFICATE_REJECTED/);
    expect(existsSync(join(config, "profiles", "stolen.json"))).toBe(false);
  });

  describe("signer", () => {
    it("enroll --json prints the new signer; show and list find it; activation-code prints a code that activates it", async () => {
      const enrolled = json<{ signerId: string; status: string }>(
        await admin(["signer", "enroll", "--legal-name", "Sato Hanako", "--email", "hanako.cli@example.jp", "--country", "JP", "--json"], ra),
      );
      expect(enrolled.signerId).toBeTruthy();
      expect(enrolled.status).toBe("SIGNER_STATUS_PENDING_ACTIVATION");

      const shown = await admin(["signer", "show", enrolled.signerId], ra);
      expect(shown.code, shown.stderr).toBe(0);
      expect(shown.stdout).toMatch(/identity\.legalName\s+Sato Hanako/);

      const listed = await admin(["signer", "list", "--email", "hanako.cli@example.jp"], ra);
      expect(listed.stdout).toMatch(new RegExp(`${enrolled.signerId}\\s+PENDING_ACTIVATION\\s+Sato Hanako`));

      const issued = await admin(["signer", "activation-code", enrolled.signerId], ra);
      expect(issued.code, issued.stderr).toBe(0);
      const code = /^\s+(\S+)$/m.exec(issued.stdout)?.[1];
      expect(issued.stdout).toMatch(/shown once; deliver it to the signer out of band/);
      await reactivate(t, enrolled.signerId, code!);
      expect(json<{ status: string }>(await admin(["signer", "show", enrolled.signerId, "--json"], ra)).status).toBe("SIGNER_STATUS_ACTIVE");
    });

    it("reset-factors of a signer with a credential is held (exit 4) with the requester's half; approval approve by a second operator prints the other half; both halves activate (T-2.2.2.1, T-2.2.2.3)", async () => {
      const s = await activeSignerWithCredential(t, ra);
      const held = await admin(["signer", "reset-factors", s.signerId, "--reason", "device lost, identity re-verified"], ra);
      expect(held.code, held.stderr).toBe(4);
      expect(held.stdout).toMatch(/Held for approval \(dual control\): pending request \S+ \(\/inkan\.admin\.v1\.RegistrationService\/ResetFactors\)/);
      const pendingId = /approval approve (\S+)/.exec(held.stdout)?.[1];
      const mine = /Your half of the new activation code[^\n]*\n\s+(\S+)/.exec(held.stdout)?.[1];
      expect(pendingId).toBeTruthy();
      expect(mine).toBeTruthy();
      // Nothing changed before the approval.
      expect(json<{ status: string }>(await admin(["signer", "show", s.signerId, "--json"], ra)).status).toBe("SIGNER_STATUS_ACTIVE");

      // The requester cannot approve their own request.
      const self = await admin(["approval", "approve", pendingId!], ra);
      expect(self.code).toBe(3);
      expect(self.stderr).toMatch(/APPROVAL_REJECTED/);

      const approved = await admin(["approval", "approve", pendingId!], ra2);
      expect(approved.code, approved.stderr).toBe(0);
      expect(approved.stdout).toMatch(/EXECUTED/);
      const theirs = /Approver's half of the activation code[^\n]*\n\s+(\S+)/.exec(approved.stdout)?.[1];
      expect(theirs).toBeTruthy();
      await reactivate(t, s.signerId, [mine!, theirs!]);
    });

    it("--json of a held request gives scripts the pending id and the requester's half; approval reject withdraws it", async () => {
      const s = await activeSignerWithCredential(t, ra);
      const held = await admin(["signer", "reset-factors", s.signerId, "--reason", "forgot PIN", "--json"], ra);
      expect(held.code, held.stderr).toBe(4);
      const out = JSON.parse(held.stdout) as { error: { reason: string }; approvalRequired: { pendingRequestId: string; method: string }; activationCode: { code: string; part: string } };
      expect(out.error.reason).toBe("APPROVAL_REQUIRED");
      expect(out.approvalRequired.method).toBe("/inkan.admin.v1.RegistrationService/ResetFactors");
      expect(out.activationCode).toMatchObject({ part: "REQUESTER_HALF", code: expect.stringMatching(/\S{10,}/) });
      const id = out.approvalRequired.pendingRequestId;

      const listed = await admin(["approval", "list"], ra2);
      expect(listed.stdout).toMatch(new RegExp(`${id}\\s+PENDING\\s+/inkan\\.admin\\.v1\\.RegistrationService/ResetFactors`));
      const shown = json<{ request: { "@type": string; signerId: string; reason: string }; requestedBy: string }>(await admin(["approval", "show", id, "--json"], ra2));
      expect(shown.request).toEqual({ "@type": "type.googleapis.com/inkan.admin.v1.ResetFactorsRequest", signerId: s.signerId, reason: "forgot PIN" });
      expect(shown.requestedBy).toBe(ra.userId);
      const human = await admin(["approval", "show", id], ra2);
      expect(human.stdout).toMatch(/"reason": "forgot PIN"/);

      const withdrawn = await admin(["approval", "reject", id, "--comment", "asked the wrong signer"], ra);
      expect(withdrawn.code, withdrawn.stderr).toBe(0);
      expect(withdrawn.stdout).toMatch(/REJECTED/);
      const again = await admin(["approval", "approve", id], ra2);
      expect(again.code).toBe(3);
      expect(again.stderr).toMatch(/STATE_CONFLICT: the request is no longer pending/);
      expect(json<{ status: string }>(await admin(["signer", "show", s.signerId, "--json"], ra)).status).toBe("SIGNER_STATUS_ACTIVE");
    });

    it("approval show of an unknown id exits 3", async () => {
      const r = await admin(["approval", "show", "no-such-request"], ra2);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/\[NotFound\]/);
    });

    it("disable, enable, reset-lockout and revoke-device change the signer and print it", async () => {
      const s = await activeSignerWithCredential(t, ra);
      const disabled = json<{ status: string }>(await admin(["signer", "disable", s.signerId, "--reason", "fraud suspected", "--json"], ra));
      expect(disabled.status).toBe("SIGNER_STATUS_DISABLED");
      const enabled = await admin(["signer", "enable", s.signerId, "--reason", "cleared"], ra);
      expect(enabled.code, enabled.stderr).toBe(0);
      expect(enabled.stdout).toMatch(/status\s+SIGNER_STATUS_ACTIVE/);
      const unlocked = json<{ factors: { failedAttempts?: number } }>(await admin(["signer", "reset-lockout", s.signerId, "--reason", "own typos", "--json"], ra));
      expect(unlocked.factors.failedAttempts ?? 0).toBe(0);
      const device = json<{ factors: { devices: { deviceKeyId: string }[] } }>(await admin(["signer", "show", s.signerId, "--json"], ra)).factors.devices[0]!.deviceKeyId;
      const revoked = json<{ factors: { devices: { deviceKeyId: string; revokedAt?: string }[] } }>(
        await admin(["signer", "revoke-device", s.signerId, device, "--reason", "phone lost", "--json"], ra),
      );
      expect(revoked.factors.devices.find((d) => d.deviceKeyId === device)?.revokedAt).toBeTruthy();
    });

    it("update changes only the fields given, against the version read", async () => {
      const { signerId } = await enrolledSigner(t, ra);
      const before = json<{ identity: { legalName: string; email: string }; version: string }>(await admin(["signer", "show", signerId, "--json"], ra));
      const after = json<{ identity: { legalName: string; email: string }; version: string }>(
        await admin(["signer", "update", signerId, "--legal-name", "Suzuki Hanako", "--proofed-at", new Date(Date.now() - 5000).toISOString(), "--json"], ra),
      );
      expect(after.identity).toMatchObject({ legalName: "Suzuki Hanako", email: before.identity.email });
      expect(BigInt(after.version)).toBe(BigInt(before.version) + 1n);
    });

    it("refusals: unknown signer exits 3 with SIGNER_NOT_FOUND; a wrong role exits 3 with ROLE_NOT_PERMITTED and changes nothing", async () => {
      const unknown = await admin(["signer", "show", "no-such-signer"], ra);
      expect(unknown.code).toBe(3);
      expect(unknown.stderr).toMatch(/SIGNER_NOT_FOUND: .* \[NotFound\]/);
      expect(unknown.stderr).toMatch(/what to do: Check the signer id/);

      const wrongRole = await admin(["signer", "enroll", "--legal-name", "Mallory", "--json"], auditor);
      expect(wrongRole.code).toBe(3);
      expect(JSON.parse(wrongRole.stdout)).toMatchObject({ error: { code: "PermissionDenied", reason: "ROLE_NOT_PERMITTED" } });
      const { signers } = await createClient(RegistrationService, t.as(ra)).listSigners({ page: { pageSize: 1000 } });
      expect(signers.some((x) => x.identity?.legalName === "Mallory")).toBe(false);
    });

    it("usage and identity problems exit 2 and send nothing: missing --reason, unknown verb, unreadable request key", async () => {
      const noReason = await admin(["signer", "disable", "x"], ra);
      expect(noReason.code).toBe(2);
      expect(noReason.stderr).toMatch(/--reason is required/);
      const unknownVerb = await admin(["signer", "frobnicate"], ra);
      expect(unknownVerb.code).toBe(2);
      expect(unknownVerb.stderr).toMatch(/unknown command "frobnicate"/);
      const env = { ...envOf.get(ra)!, INKAN_ADMIN_REQUEST_KEY: join(dir, "missing.jwk") };
      const bogus = { ...ra };
      envOf.set(bogus, env);
      const unreadable = await admin(["signer", "list"], bogus);
      expect(unreadable.code).toBe(2);
      expect(unreadable.stderr).toMatch(/--request-key .*missing\.jwk: cannot read it \(ENOENT\)/);
    });
  });

  describe("credential, csr, certificate", () => {
    it("generate, list, show, csr prepare, certificate import (ACTIVE), suspend, resume", async () => {
      const { signerId } = await enrolledSigner(t, ra);
      const generated = json<{ credentialId: string; status: string; publicKeySpki: string }>(
        await admin(["credential", "generate", signerId, "--algorithm", "ec-p256", "--label", "main", "--json"], ra),
      );
      expect(generated.status).toBe("CREDENTIAL_STATUS_KEY_GENERATED");
      const id = generated.credentialId;
      const [listed, shown, prepared] = await Promise.all([
        admin(["credential", "list", signerId], ra),
        admin(["credential", "show", id], ra),
        admin(["csr", "prepare", id, "--subject", "CN=Sato Hanako,O=Example Corp,C=JP", "--out", join(dir, "cri.der")], ra),
      ]);
      expect(listed.stdout).toMatch(new RegExp(`${id}\\s+KEY_GENERATED\\s+EC_P256\\s+[0-9a-f]{64}\\s+main`));
      expect(shown.stdout).toMatch(/fingerprint \(hex\)\s+[0-9a-f]{64}/);
      expect(prepared.code, prepared.stderr).toBe(0);
      expect(prepared.stdout).toMatch(/dtbsr \(base64\)\s+\S{43}=/);
      expect(prepared.stdout).toMatch(/hash algorithm\s+sha256/);
      expect(existsSync(join(dir, "cri.der"))).toBe(true);

      const der = await issueSignerCertificate(await signerIssuingCa(t), Buffer.from(generated.publicKeySpki, "base64"));
      writeFileSync(join(dir, "signer.pem"), new X509Certificate(der).toString());
      const imported = await admin(["certificate", "import", id, join(dir, "signer.pem")], ra);
      expect(imported.code, imported.stderr).toBe(0);
      expect(imported.stdout).toMatch(/status\s+CREDENTIAL_STATUS_ACTIVE/);

      const suspended = json<{ status: string }>(await admin(["credential", "suspend", id, "--reason", "signer on leave", "--json"], ra));
      expect(suspended.status).toBe("CREDENTIAL_STATUS_SUSPENDED");
      const resumed = json<{ status: string }>(await admin(["credential", "resume", id, "--reason", "back", "--json"], ra));
      expect(resumed.status).toBe("CREDENTIAL_STATUS_ACTIVE");
    });

    it("destroy by a security officer is held (exit 4) until a second one approves; a registration operator is refused", async () => {
      const s = await activeSignerWithCredential(t, ra);
      const fingerprint = Buffer.from(s.credential.publicKeyFingerprint).toString("hex");
      const byRa = await admin(["credential", "destroy", s.credential.credentialId, "--fingerprint", fingerprint, "--reason", "x"], ra);
      expect(byRa.code).toBe(3);
      expect(byRa.stderr).toMatch(/ROLE_NOT_PERMITTED/);
      const held = await admin(["credential", "destroy", s.credential.credentialId, "--fingerprint", fingerprint, "--reason", "signer left", "--json"]);
      expect(held.code, held.stderr).toBe(4);
      const id = (JSON.parse(held.stdout) as { approvalRequired: { pendingRequestId: string } }).approvalRequired.pendingRequestId;
      expect(json<{ status: string }>(await admin(["credential", "show", s.credential.credentialId, "--json"], ra)).status).toBe("CREDENTIAL_STATUS_ACTIVE");
      const approved = json<{ state: string; result: { credential: { status: string } } }>(await admin(["approval", "approve", id, "--comment", "checked", "--json"], so2));
      expect(approved.state).toBe("PENDING_APPROVAL_STATE_EXECUTED");
      expect(approved.result.credential.status).toBe("CREDENTIAL_STATUS_DESTROYED");
    });

    it("csr prepare, the signer's approval through the SAP, csr create (SAD token from a file), certificate import: KEY_GENERATED to ACTIVE (R-3.1.3.2)", async () => {
      const signer = await activeSigner(t, ra);
      const generated = json<{ credentialId: string; publicKeySpki: string }>(await admin(["credential", "generate", signer.signerId, "--algorithm", "ec-p256", "--json"], ra));
      const criFile = join(dir, `${generated.credentialId}.cri`);
      const prepared = json<{ dtbsr: string; hashAlgorithm: string; signatureAlgorithm: string }>(
        await admin(["csr", "prepare", generated.credentialId, "--subject", "CN=Sato Hanako,O=Example Corp,C=JP", "--out", criFile, "--json"], ra),
      );
      // The signer approves exactly this DTBS/R in a SAP transaction (an SCA begins it, the device authorizes).
      const sca = createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
      const hashAlgorithm = HashAlgorithm[prepared.hashAlgorithm.replace("HASH_ALGORITHM_", "") as keyof typeof HashAlgorithm];
      const signatureAlgorithm = SignatureAlgorithm[prepared.signatureAlgorithm.replace("SIGNATURE_ALGORITHM_", "") as keyof typeof SignatureAlgorithm];
      const { sadChallenge: ch } = await sca.beginTransaction({
        credentialId: generated.credentialId, signerId: signer.signerId, hashAlgorithm, signatureAlgorithm, numSignatures: 1,
        hashes: [Buffer.from(prepared.dtbsr, "base64")], description: "Certificate request",
      });
      const rSad = await buildRSad({
        deviceKey: signer.deviceKey, signerId: ch!.signerId, credentialId: ch!.credentialId, samId: ch!.audience, transactionId: ch!.transactionId,
        challenge: ch!.challenge, dtbsrDigest: ch!.dtbsrDigest, count: ch!.numSignatures, hashAlgorithm: ch!.hashAlgorithm, description: ch!.description, pin: testPin, samKey: ch!.encryptionKey!,
      });
      const { sadToken } = await sca.authorize({ transactionId: ch!.transactionId, rSad });
      const tokenFile = join(dir, `${generated.credentialId}.sad`);
      writeFileSync(tokenFile, sadToken + "\n", { mode: 0o600 });
      const csrFile = join(dir, `${generated.credentialId}.csr`);
      const created = await admin(["csr", "create", generated.credentialId, "--cri", criFile, "--hash-algorithm", prepared.hashAlgorithm, "--signature-algorithm", prepared.signatureAlgorithm,
        "--transaction-id", ch!.transactionId, "--sad-token-file", tokenFile, "--out", csrFile], ra);
      expect(created.code, created.stderr).toBe(0);
      expect(created.stdout + created.stderr).not.toContain(sadToken);
      const csr = new x509.Pkcs10CertificateRequest(readFileSync(csrFile, "utf8"));
      expect(await csr.verify()).toBe(true);
      expect(Buffer.from(csr.publicKey.rawData).toString("base64")).toBe(generated.publicKeySpki);
      expect(csr.subject).toMatch(/CN=Sato Hanako/);

      const der = await issueSignerCertificate(await signerIssuingCa(t), Buffer.from(csr.publicKey.rawData));
      writeFileSync(join(dir, `${generated.credentialId}.pem`), new X509Certificate(der).toString());
      const imported = json<{ status: string }>(await admin(["certificate", "import", generated.credentialId, join(dir, `${generated.credentialId}.pem`), "--json"], ra));
      expect(imported.status).toBe("CREDENTIAL_STATUS_ACTIVE");
      // The token was consumed: the same approval signs nothing twice.
      const again = await admin(["csr", "create", generated.credentialId, "--cri", criFile, "--hash-algorithm", prepared.hashAlgorithm, "--signature-algorithm", prepared.signatureAlgorithm,
        "--transaction-id", ch!.transactionId, "--sad-token-file", tokenFile, "--out", join(dir, "again.csr")], ra);
      expect(again.code).toBe(3);
    });

    it("transport-key writes the SAM's transport JWK; import-key relays a wrapped key with the signer's consent (T-2.1.4.1)", async () => {
      const signer = await activeSigner(t, ra);
      const tkFile = join(dir, "transport.jwk");
      const tk = json<{ transportKeyId: string }>(await admin(["credential", "transport-key", "--out", tkFile, "--json"], ra));
      const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const spki = new Uint8Array(pair.publicKey.export({ type: "spki", format: "der" }));
      const ch = await createClient(SignerService, t.transport("grpc", t.pki.frontEnd)).createChallenge({ signerId: signer.signerId, purpose: ChallengePurpose.KEY_IMPORT });
      const signerConsent = await buildKeyImportConsent({
        signerId: signer.signerId, pin: testPin, deviceKey: signer.deviceKey, publicKeySpki: spki, keyAlgorithm: "KEY_ALGORITHM_EC_P256",
        challenge: ch.challenge, audience: ch.audience, samKey: ch.encryptionKey!,
      });
      const request = create(ImportKeyRequestSchema, {
        signerId: signer.signerId, transportKeyId: tk.transportKeyId, wrapScheme: KeyWrapScheme.RSA_OAEP_AES_KWP,
        ...wrapForImport(pair.privateKey, readFileSync(tkFile, "utf8")), keyAlgorithm: KeyAlgorithm.EC_P256, publicKeySpki: spki, label: "imported", signerConsent,
      });
      const file = join(dir, "import-request.json");
      writeFileSync(file, JSON.stringify(toJson(ImportKeyRequestSchema, request)), { mode: 0o600 });
      const imported = json<{ origin: string; signerId: string; publicKeySpki: string }>(await admin(["credential", "import-key", "--request", file, "--json"], ra));
      expect(imported).toMatchObject({ origin: "CREDENTIAL_ORIGIN_IMPORTED", signerId: signer.signerId, publicKeySpki: Buffer.from(spki).toString("base64") });
      // The same consent again is refused (its challenge is used up): exit 3, nothing imported.
      const again = await admin(["credential", "import-key", "--request", file], ra);
      expect(again.code).toBe(3);
      const garbage = await admin(["credential", "import-key", "--request", tkFile], ra);
      expect(garbage.code).toBe(2);
    });

    it("refusals: an unknown algorithm exits 2; an unknown credential and a CSR without an approving transaction exit 3", async () => {
      const [badAlg, unknown, csr] = await Promise.all([
        admin(["credential", "generate", "any", "--algorithm", "dsa-1024"], ra),
        admin(["credential", "show", "no-such-credential"], ra),
        (async () => {
          writeFileSync(join(dir, "sad-token"), "not-a-token\n", { mode: 0o600 });
          return admin(["csr", "create", "no-such-credential", "--cri", join(dir, "signer.pem"), "--hash-algorithm", "sha256", "--signature-algorithm", "ecdsa",
            "--transaction-id", "tx-1", "--sad-token-file", join(dir, "sad-token"), "--out", join(dir, "x.csr")], ra);
        })(),
      ]);
      expect(badAlg.code).toBe(2);
      expect(badAlg.stderr).toMatch(/--algorithm dsa-1024: expected one of ec-p256/);
      expect(unknown.code).toBe(3);
      expect(unknown.stderr).toMatch(/CREDENTIAL_NOT_FOUND/);
      expect(csr.code).toBe(3);
      expect(csr.stderr).not.toMatch(/not-a-token/);
    });
  });

  describe("policy", () => {
    it("show, diff against a file, set (held, exit 4) and the second officer's approval puts the new version in force (R-3.2.2.3)", async () => {
      const shown = json<{ version: string; policy: { lockoutThreshold: number } }>(await admin(["policy", "show", "--json"]));
      expect(shown.version).toBe("1");
      expect(shown.policy.lockoutThreshold).toBe(5);
      const file = join(dir, "policy.json");
      writeFileSync(file, JSON.stringify({ ...shown, policy: { ...shown.policy, lockoutThreshold: 3 } }));

      const [human, diffed] = await Promise.all([admin(["policy", "show"]), admin(["policy", "diff", file])]);
      expect(human.stdout).toMatch(/^Security policy version 1, updated \S+/);
      expect(human.stdout).toMatch(/"lockoutThreshold": 5/);
      expect(diffed.code, diffed.stderr).toBe(0);
      expect(diffed.stdout).toMatch(/^ {2}lockoutThreshold: 5 -> 3$/m);
      expect(diffed.stdout.trim().split("\n")).toHaveLength(2);

      const held = await admin(["policy", "set", file]);
      expect(held.code, held.stderr).toBe(4);
      const id = /approval approve (\S+)/.exec(held.stdout)![1]!;
      expect(json<{ version: string }>(await admin(["policy", "show", "--json"])).version).toBe("1");
      const approved = await admin(["approval", "approve", id], so2);
      expect(approved.code, approved.stderr).toBe(0);
      expect(approved.stdout).toMatch(/PolicyService\/UpdateSecurityPolicy\): EXECUTED/);
      const after = json<{ version: string; policy: { lockoutThreshold: number }; approvedBy: string }>(await admin(["policy", "show", "--json"]));
      expect(after).toMatchObject({ version: "2", policy: { lockoutThreshold: 3 }, approvedBy: so2.userId });
      expect(json<{ equal: boolean }>(await admin(["policy", "diff", file, "--json"])).equal).toBe(true);
    });

    it("refusals: a registration operator exits 3 (ROLE_NOT_PERMITTED); a file that is no SecurityPolicy exits 2", async () => {
      const bad = join(dir, "bad-policy.json");
      writeFileSync(bad, JSON.stringify({ lockoutThreshold: "many" }));
      const [byRa, badFile] = await Promise.all([admin(["policy", "show"], ra), admin(["policy", "set", bad])]);
      expect(byRa.code).toBe(3);
      expect(byRa.stderr).toMatch(/ROLE_NOT_PERMITTED/);
      expect(badFile.code).toBe(2);
      expect(badFile.stderr).toMatch(/not a SecurityPolicy in JSON/);
    });
  });

  describe("audit", () => {
    it("list with filters, verify, export and keys; the export verifies offline with `inkan audit verify --file` (R-3.2.2.4)", async () => {
      const out = join(dir, "audit.jsonl");
      const key = join(dir, "audit-key.jwk");
      await enrolledSigner(t, ra);
      await enrolledSigner(t, ra);
      const [listed, listedJson, verified, exported, keys] = await Promise.all([
        admin(["audit", "list", "--event", "signer.enrolled", "--outcome", "success"], auditor),
        admin(["audit", "list", "--event", "signer.enrolled", "--event", "key.generated", "--limit", "1", "--json"], auditor),
        admin(["audit", "verify"], auditor),
        admin(["audit", "export", "--out", out], auditor),
        admin(["audit", "keys", "--out", key], auditor),
      ]);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout.split("\n")[0]).toMatch(/^NODE\s+SEQ\s+OCCURRED_AT\s+EVENT\s+OUTCOME/);
      expect(listed.stdout).toMatch(/signer\.enrolled\s+SUCCESS/);
      expect(listed.stdout).not.toMatch(/key\.generated/);
      const records = json<{ eventType: string }[]>(listedJson);
      expect(records).toHaveLength(1);
      expect(records[0]!.eventType).toBe("signer.enrolled");
      expect(verified.code, verified.stderr).toBe(0);
      expect(verified.stdout).toMatch(/: OK, \d+ records/);
      expect(exported.code, exported.stderr).toBe(0);
      expect(exported.stdout).toMatch(/^Exported \d+ lines \(\d+ bytes\) to /);
      expect(keys.code, keys.stderr).toBe(0);
      expect(JSON.parse(readFileSync(key, "utf8"))).toHaveProperty("kty");
      const offline = await inkan(["audit", "verify", "--file", out, "--public-key", key, "--partial"]);
      expect(offline.code, offline.stdout + offline.stderr).toBe(0);
      expect(offline.stdout).toMatch(/OK$/m);
    });

    it("refusals: a registration operator cannot read the audit log (exit 3); a bad --since exits 2", async () => {
      const [byRa, badTime] = await Promise.all([admin(["audit", "list"], ra), admin(["audit", "list", "--since", "yesterday"], auditor)]);
      expect(byRa.code).toBe(3);
      expect(byRa.stderr).toMatch(/ROLE_NOT_PERMITTED/);
      expect(badTime.code).toBe(2);
      expect(badTime.stderr).toMatch(/--since yesterday: not an ISO 8601 time/);
    });
  });

  describe("user", () => {
    it("create with --dev-admin-ca writes working files: the new registration operator acts at once; list, show, remove; a removed user is refused", async () => {
      const out = join(dir, "new-ra");
      const created = await admin(["user", "create", "--name", "RA Three", "--role", "registration-operator", "--out-dir", out, "--dev-admin-ca", t.dataDir]);
      expect(created.code, created.stderr).toBe(0);
      const userId = /^Created privileged user (\S+)$/m.exec(created.stdout)?.[1];
      expect(userId).toBeTruthy();
      expect(created.stdout).toMatch(new RegExp(`--request-key ${out}/request-key.jwk --user-id ${userId}`));
      expect(JSON.parse(readFileSync(join(out, "request-key.jwk"), "utf8"))).toMatchObject({ sub: userId, kty: "EC" });
      const newRa: PrivilegedPerson = { ...ra, userId: userId! };
      // Only the files user create wrote: the key file's "sub" names the user.
      envOf.set(newRa, {
        INKAN_ADMIN_TARGET: t.server.url, INKAN_ADMIN_CA: t.pki.paths.caCert,
        INKAN_ADMIN_CERT: join(out, "client.crt"), INKAN_ADMIN_KEY: join(out, "client.key"), INKAN_ADMIN_REQUEST_KEY: join(out, "request-key.jwk"),
      });
      const acts = await admin(["signer", "list"], newRa);
      expect(acts.code, acts.stderr).toBe(0);

      const [listed, shown, again] = await Promise.all([
        admin(["user", "list", "--role", "registration-operator"]),
        admin(["user", "show", userId!, "--json"]),
        admin(["user", "create", "--name", "RA Three", "--role", "registration-operator", "--out-dir", out, "--dev-admin-ca", t.dataDir]),
      ]);
      expect(listed.stdout).toMatch(new RegExp(`${userId}\\s+REGISTRATION_OPERATOR\\s+ACTIVE\\s+RA Three\\s+1`));
      expect(json<{ role: string }>(shown).role).toBe("PRIVILEGED_ROLE_REGISTRATION_OPERATOR");
      expect(again.code).toBe(2);
      expect(again.stderr).toMatch(/request-key\.jwk exists; refusing to overwrite it/);

      const removed = json<{ status: string }>(await admin(["user", "remove", userId!, "--reason", "left the RA", "--json"]));
      expect(removed.status).toBe("PRIVILEGED_USER_STATUS_REMOVED");
      const refused = await admin(["signer", "list"], newRa);
      expect(refused.code).toBe(3);
      expect(refused.stderr).toMatch(/CLIENT_CERTIFICATE_REJECTED|REQUEST_SIGNATURE_INVALID/);
    });

    it("create without a certificate writes a key and a CSR and binds the user to that key; a third security officer is held (exit 4)", async () => {
      const out = join(dir, "new-auditor");
      const created = json<{ userId: string; certificateBinding: { spkiSha256: string } }>(
        await admin(["user", "create", "--name", "Auditor Two", "--role", "auditor", "--out-dir", out, "--json"]),
      );
      const csr = readFileSync(join(out, "client.csr"), "utf8");
      expect(csr).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----/);
      const { createPublicKey, createHash } = await import("node:crypto");
      const spki = createPublicKey(readFileSync(join(out, "client.key"))).export({ type: "spki", format: "der" });
      expect(Buffer.from(created.certificateBinding.spkiSha256, "base64").toString("hex")).toBe(createHash("sha256").update(spki).digest("hex"));

      const held = await admin(["user", "create", "--name", "Officer Three", "--role", "security-officer", "--out-dir", join(dir, "so3"), "--dev-admin-ca", t.dataDir]);
      expect(held.code, held.stderr).toBe(4);
      expect(held.stdout).toMatch(/PrivilegedUserService\/CreatePrivilegedUser/);
    });

    it("update renames a user and re-binds them to a new certificate, which then identifies them", async () => {
      const user = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "RA Four");
      const fresh = await t.issueAdminCertificate("RA Four, new key");
      writeFileSync(join(dir, "ra4-new.crt"), fresh.cert);
      const updated = json<{ displayName: string; version: string }>(await admin(["user", "update", user.userId, "--name", "RA Four (Kyoto)", "--client-cert", join(dir, "ra4-new.crt"), "--json"]));
      expect(updated).toMatchObject({ displayName: "RA Four (Kyoto)", version: "2" });
      const moved: PrivilegedPerson = { ...user, cert: fresh };
      envOf.set(moved, writeIdentity("ra4", moved));
      const old: PrivilegedPerson = { ...user };
      envOf.set(old, writeIdentity("ra4-old", old));
      const [withNew, withOld] = await Promise.all([admin(["signer", "list"], moved), admin(["signer", "list"], old)]);
      expect(withNew.code, withNew.stderr).toBe(0);
      expect(withOld.code).toBe(3);
    });

    it("add-key registers a new request-signing key that then works; revoke-key stops the old one; a private JWK is never sent", async () => {
      const user = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "RA Five");
      const next = await newRequestSigningKey();
      const pubFile = join(dir, "ra5-next.pub.jwk");
      writeFileSync(pubFile, next.publicJwk);
      const privFile = join(dir, "ra5-next.jwk");
      writeFileSync(privFile, JSON.stringify(next.privateJwk), { mode: 0o600 });
      const [added, refusedPrivate] = await Promise.all([
        admin(["user", "add-key", user.userId, "--public-key", pubFile, "--label", "YubiKey 2", "--json"]),
        admin(["user", "add-key", user.userId, "--public-key", privFile]),
      ]);
      expect(json<{ keyId: string; label: string }>(added)).toEqual(expect.objectContaining({ keyId: next.privateJwk.kid, label: "YubiKey 2" }));
      expect(refusedPrivate.code).toBe(2);
      expect(refusedPrivate.stderr).toMatch(/holds a private key; give the public JWK only/);
      expect(refusedPrivate.stderr).not.toContain(next.privateJwk.d!);

      const withNew: PrivilegedPerson = { ...user, privateJwk: next.privateJwk };
      envOf.set(withNew, writeIdentity("ra5-new", withNew));
      const withOld: PrivilegedPerson = { ...user };
      envOf.set(withOld, writeIdentity("ra5-old", withOld));
      expect((await admin(["signer", "list"], withNew)).code).toBe(0);
      const revoked = await admin(["user", "revoke-key", user.userId, user.privateJwk.kid, "--reason", "rotated"]);
      expect(revoked.code, revoked.stderr).toBe(0);
      expect(revoked.stdout).toMatch(/revokedAt\s+\S+/);
      const [oldKey, newKey] = await Promise.all([admin(["signer", "list"], withOld), admin(["signer", "list"], withNew)]);
      expect(oldKey.code).toBe(3);
      expect(oldKey.stderr).toMatch(/REQUEST_SIGNATURE_INVALID/);
      expect(newKey.code, newKey.stderr).toBe(0);
    });

    it("refusals: a registration operator cannot list users (exit 3); an unknown user exits 3", async () => {
      const [byRa, unknown] = await Promise.all([admin(["user", "list"], ra), admin(["user", "show", "no-such-user"])]);
      expect(byRa.code).toBe(3);
      expect(byRa.stderr).toMatch(/ROLE_NOT_PERMITTED/);
      expect(unknown.code).toBe(3);
      expect(unknown.stderr).toMatch(/PRIVILEGED_USER_NOT_FOUND/);
    });
  });
});
