/**
 * Backup and restore (issue 22; ROLLBACK.md "Backup and restore"): back up while the server runs,
 * sign and consume after the snapshot, restore, and try to get anything back. The real server
 * (startTestServer: SoftHSM2, SQLite, mTLS, gRPC), `inkan backup` / `inkan restore` as the CLI
 * runs them (cli/backup.ts, cli/restore.ts) and `inkan audit verify`.
 *
 * What must hold: the SAM refuses to sign until two distinct security officers acknowledge the
 * restore (also after restarts, and never one officer alone); after the acknowledgement every
 * object consumed after the snapshot (SAD token, R.SAD jti, challenge, activation code, admin
 * nonce, authorized and completed transactions) stays unusable; lockout counters are as before
 * the restore or higher; the audit tail written after the snapshot is kept and verifies.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { toBinary } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { Reason, buildActivationRequest, buildRSad, createDeviceKey, inkanErrorReason, requestSignatureHeader, type DeviceKey } from "@inkan/sdk";
import { PrivilegedSessionService } from "@inkan/sdk/gen/inkan/admin/v1/auth_pb.js";
import { GetSecurityPolicyRequestSchema, PolicyService } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PendingApprovalState, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import Database from "better-sqlite3";
import { CompactSign, importJWK } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { auditVerifyCommand } from "../cli/audit-command.js";
import { openConfigured } from "../cli/backup-command.js";
import { parseConfig } from "../config/config.js";
import { sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { errorOf, startTestServer, transportFor, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, enrolledSigner, testPin } from "../testing/signers.js";
import { takeBackup, type BackupResult } from "../cli/backup.js";
import { restoreBackup } from "../cli/restore.js";

let t: TestServer;
let operator: PrivilegedPerson;
let so2: PrivilegedPerson;
let bob: { signerId: string; credentialId: string; deviceKey: DeviceKey };
let work: string;
let backup: BackupResult;

const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const device = () => createClient(SignerService, t.transport("grpc", t.pki.frontEnd));
const policyAs = (who: PrivilegedPerson) => createClient(PolicyService, t.as(who));
const config = () => parseConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0" });
const newHash = () => new Uint8Array(createHash("sha256").update(randomBytes(16)).digest());
const reasonOf = async (p: Promise<unknown>) => inkanErrorReason(await errorOf(p));

/** A transaction of bob's, begun; `rSad` authorizes it (with `pin`). */
async function begin(pin = testPin) {
  const hash = newHash();
  const begun = await sca().beginTransaction({ credentialId: bob.credentialId, signerId: bob.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [hash], description: "backup-restore" });
  const ch = begun.sadChallenge!;
  const rSad = await buildRSad({
    deviceKey: bob.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin, samKey: ch.encryptionKey!,
  });
  return { transactionId: ch.transactionId, hash, rSad };
}

async function signOne(): Promise<number> {
  const tx = await begin();
  const { sadToken } = await sca().authorize({ transactionId: tx.transactionId, rSad: tx.rSad });
  return (await sca().signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: [tx.hash] })).signatures.length;
}

/** The outcome of a signing attempt: the number of signatures, or the refusal's reason. */
async function trySign(): Promise<number | Reason> {
  try {
    return await signOne();
  } catch (err) {
    return inkanErrorReason(ConnectError.from(err));
  }
}

/** The SAM's audit records of `event`, read from the store file. */
function auditRecords(event: string): { node_id: string; sequence: number; body: string }[] {
  const db = new Database(sqliteStoreFile(t.dataDir), { readonly: true });
  try {
    return db.prepare("SELECT node_id, sequence, body FROM audit_records WHERE event = ? ORDER BY node_id, sequence").all(event) as { node_id: string; sequence: number; body: string }[];
  } finally {
    db.close();
  }
}
const details = (r: { body: string }) => (JSON.parse(r.body) as { details: Record<string, string> }).details;

/** An admin request signed by hand with a given nonce (as the SDK signs it), sent with `header`. */
async function signedHeader(who: PrivilegedPerson, nonce: string, method: string, digest: Uint8Array): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload = { sub: who.userId, mth: method, dig: Buffer.from(digest).toString("base64url"), non: nonce, iat: now, exp: now + 120 };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: "ES256", typ: "inkan-admin-req+jwt", kid: who.privateJwk.kid }).sign(await importJWK(who.privateJwk, "ES256"));
}
const withHeader = (jws: string): Interceptor => (next) => async (req) => {
  req.header.set(requestSignatureHeader, jws);
  return next(req);
};
const getPolicyMethod = `/${PolicyService.typeName}/${PolicyService.method.getSecurityPolicy.name}`;
const getPolicyDigest = createHash("sha256").update(toBinary(GetSecurityPolicyRequestSchema, { $typeName: "inkan.admin.v1.GetSecurityPolicyRequest" })).digest();
const getPolicyWith = (jws: string) =>
  createClient(PolicyService, transportFor("grpc", t.server.url, { ca: t.pki.ca, ...t.firstSecurityOfficer.cert }, [withHeader(jws)])).getSecurityPolicy({});

const bin = fileURLToPath(new URL("../../bin/inkan.js", import.meta.url));

/** Runs `inkan admin ...args` (the built CLI) as `who`, default the first security officer (from the data directory). */
function inkanAdmin(args: string[], who?: PrivilegedPerson): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("INKAN_")) delete env[k];
  if (who) {
    const file = (suffix: string, text: string) => {
      const f = join(work, `${who.userId}.${suffix}`);
      writeFileSync(f, text, { mode: 0o600 });
      return f;
    };
    Object.assign(env, {
      INKAN_ADMIN_TARGET: t.server.url,
      INKAN_ADMIN_CA: t.pki.paths.caCert,
      INKAN_ADMIN_CERT: file("crt", who.cert.cert),
      INKAN_ADMIN_KEY: file("key", who.cert.key),
      INKAN_ADMIN_REQUEST_KEY: file("jwk", JSON.stringify(who.privateJwk)),
      INKAN_ADMIN_USER_ID: who.userId,
    });
  } else {
    Object.assign(env, { INKAN_ADMIN_TARGET: t.server.url, INKAN_DATA_DIR: t.dataDir });
  }
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, "admin", ...args], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

/** What was consumed after the snapshot, to be tried again after the restore. */
const after: {
  sadToken?: string;
  authorizedTx?: { transactionId: string; rSad: Awaited<ReturnType<typeof begin>>["rSad"] };
  completedTx?: { transactionId: string; rSad: Awaited<ReturnType<typeof begin>>["rSad"] };
  activation?: { signerId: string; code: string; request: Awaited<ReturnType<typeof buildActivationRequest>>["request"] };
  adminJws?: string;
  approval?: { pendingRequestId: string; requestDigest: Uint8Array };
  failedBefore?: number;
  signaturesAfterSnapshot?: number;
} = {};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "inkan-backup-test-"));
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-backup");
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "so2-backup");
  const s = await activeSignerWithCredential(t, operator);
  bob = { signerId: s.signerId, credentialId: s.credential.credentialId, deviceKey: s.deviceKey };
}, 120_000);

afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

describe("issue 22: backup and restore", () => {
  it("inkan backup takes an online snapshot with an identity, audited, and never the token or its PIN", async () => {
    expect(await signOne()).toBe(1);
    // Objects made before the snapshot and consumed after it.
    const authorized = await begin();
    after.sadToken = (await sca().authorize({ transactionId: authorized.transactionId, rSad: authorized.rSad })).sadToken;
    const pending = await begin();
    after.authorizedTx = { transactionId: pending.transactionId, rSad: pending.rSad };
    const enrolled = await enrolledSigner(t, operator);
    const ch = await device().createChallenge({ signerId: enrolled.signerId, purpose: ChallengePurpose.ACTIVATION });
    const { request } = await buildActivationRequest({
      signerId: enrolled.signerId, activationCode: enrolled.code, pin: testPin, deviceKey: await createDeviceKey(), enrollTotp: false,
      challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience,
    });
    after.activation = { signerId: enrolled.signerId, code: enrolled.code, request };
    // A request held under dual control before the snapshot, approved (and performed) after it.
    const policy = (await policyAs(t.firstSecurityOfficer).getSecurityPolicy({})).record!;
    const held = await errorOf(policyAs(t.firstSecurityOfficer).updateSecurityPolicy({ expectedVersion: policy.version, policy: policy.policy! }));
    const heldDetail = held.findDetails(ApprovalRequiredSchema)[0]!;
    after.approval = { pendingRequestId: heldDetail.pendingRequestId, requestDigest: heldDetail.requestDigest };
    const { nonce } = await createClient(PrivilegedSessionService, t.transport("grpc", t.firstSecurityOfficer.cert)).createRequestNonce({});

    backup = await takeBackup(config(), join(work, "backup.inkan"), openConfigured);
    expect(backup.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    const text = readFileSync(join(work, "backup.inkan"));
    const manifest = JSON.parse(text.subarray(text.indexOf(0x0a) + 1, text.indexOf(0x0a, text.indexOf(0x0a) + 1)).toString()) as { snapshotId: string; files: { path: string }[] };
    expect(manifest.snapshotId).toBe(backup.snapshotId);
    const paths = manifest.files.map((f) => f.path);
    expect(paths).toContain("store/store.sqlite3");
    expect(paths.some((p) => p.startsWith("pki/"))).toBe(true);
    expect(paths.filter((p) => p.startsWith("tokens/") || p.startsWith("hsm/") || p === "softhsm2.conf")).toEqual([]);
    const taken = auditRecords("store.backup_created");
    expect(taken.map(details).map((d) => d["snapshot_id"])).toContain(backup.snapshotId);

    // After the snapshot: each kind of object is consumed, signatures are made, the lockout counter rises.
    const sadToken = after.sadToken;
    expect((await sca().signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: [authorized.hash] })).signatures).toHaveLength(1);
    after.completedTx = { transactionId: authorized.transactionId, rSad: authorized.rSad };
    const t2 = await sca().authorize({ transactionId: pending.transactionId, rSad: pending.rSad });
    expect((await sca().signHash({ authorization: { case: "sadToken", value: t2.sadToken }, hashes: [pending.hash] })).signatures).toHaveLength(1);
    await device().activate(request);
    // Both officers' own records change after the snapshot: they must still be able to acknowledge.
    for (const who of [t.firstSecurityOfficer, so2]) {
      const users = createClient(PrivilegedUserService, t.as(who));
      const { user } = await users.getPrivilegedUser({ userId: who.userId });
      await users.updatePrivilegedUser({ userId: who.userId, expectedVersion: user!.version, displayName: `${user!.displayName} (renamed)`, certificateBinding: user!.certificateBinding! });
    }
    const approved = await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest(after.approval);
    expect(approved.pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
    after.adminJws = await signedHeader(t.firstSecurityOfficer, nonce, getPolicyMethod, getPolicyDigest);
    await getPolicyWith(after.adminJws); // the nonce issued before the snapshot is consumed after it
    expect(await reasonOf(getPolicyWith(after.adminJws))).toBe(Reason.NONCE_REPLAYED);
    for (let i = 0; i < 2; i++) {
      const wrong = await begin("999999999");
      expect(await reasonOf(sca().authorize({ transactionId: wrong.transactionId, rSad: wrong.rSad }))).toBe(Reason.AUTHENTICATION_FAILED);
    }
    after.failedBefore = (await createClient(RegistrationService, t.as(operator)).getSigner({ signerId: bob.signerId })).signer!.factors!.failedAttempts;
    expect(after.failedBefore).toBe(2);
    after.signaturesAfterSnapshot = auditRecords("signature.created").length;
  }, 120_000);

  it("inkan restore is refused while a server runs on the data directory, and a damaged backup restores nothing", async () => {
    await expect(restoreBackup(config(), join(work, "backup.inkan"), openConfigured)).rejects.toMatchObject({ code: "STATE_CONFLICT" });
    const damaged = Buffer.from(readFileSync(join(work, "backup.inkan")));
    damaged[damaged.length - 10] = (damaged[damaged.length - 10] ?? 0) ^ 0xff;
    writeFileSync(join(work, "damaged.inkan"), damaged);
    await t.restart(async () => {
      await expect(restoreBackup(config(), join(work, "damaged.inkan"), openConfigured)).rejects.toMatchObject({ code: "INVALID_REQUEST" });
    });
    expect(await trySign()).toBe(1); // nothing changed
    after.signaturesAfterSnapshot = auditRecords("signature.created").length;
  }, 120_000);

  it("after a restore the SAM refuses to sign, also after restarts, until it is acknowledged; the audit tail is kept", async () => {
    let restored: Awaited<ReturnType<typeof restoreBackup>> | undefined;
    await t.restart(async () => {
      restored = await restoreBackup(config(), join(work, "backup.inkan"), openConfigured);
    });
    expect(restored!.snapshotId).toBe(backup.snapshotId);
    expect(restored!.keptRecords).toBeGreaterThan(0);
    expect(await trySign()).toBe(Reason.INTEGRITY_VIOLATION);
    expect(await reasonOf(device().createChallenge({ signerId: bob.signerId, purpose: ChallengePurpose.PIN_CHANGE }))).toBe(Reason.INTEGRITY_VIOLATION);
    await t.restart();
    expect(await trySign()).toBe(Reason.INTEGRITY_VIOLATION);
    const status = await policyAs(t.firstSecurityOfficer).getRestoreStatus({});
    expect(status.awaitingAcknowledgement).toBe(true);
    expect(status.snapshotId).toBe(backup.snapshotId);
    // The audit tail written after the snapshot is in the restored store: nothing that happened is lost.
    expect(auditRecords("signature.created").length).toBe(after.signaturesAfterSnapshot);
    expect(auditRecords("store.backup_created").map(details).map((d) => d["snapshot_id"])).toContain(backup.snapshotId);
    const restoredEvent = auditRecords("store.restored").map(details).at(-1)!;
    expect(restoredEvent["snapshot_id"]).toBe(backup.snapshotId);
    expect(restoredEvent["old_high_water_marks"]).not.toBe(restoredEvent["new_high_water_marks"]);
  }, 120_000);

  it("R-3.2.1.6: one security officer alone cannot acknowledge the restore", async () => {
    const held = await errorOf(policyAs(t.firstSecurityOfficer).acknowledgeRestore({ snapshotId: backup.snapshotId }));
    expect(inkanErrorReason(held)).toBe(Reason.APPROVAL_REQUIRED);
    const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
    const self = createClient(PrivilegedUserService, t.as(t.firstSecurityOfficer));
    expect(await reasonOf(self.approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest }))).toBe(Reason.APPROVAL_REJECTED);
    expect(await trySign()).toBe(Reason.INTEGRITY_VIOLATION);
    // Another snapshot's identity: held, and refused when a second officer approves it.
    const wrong = await errorOf(policyAs(t.firstSecurityOfficer).acknowledgeRestore({ snapshotId: "0".repeat(64) }));
    const wrongDetail = wrong.findDetails(ApprovalRequiredSchema)[0]!;
    const { pendingApproval } = await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: wrongDetail.pendingRequestId, requestDigest: wrongDetail.requestDigest });
    expect(pendingApproval?.state).toBe(PendingApprovalState.FAILED);
    expect(pendingApproval?.errorCode).toMatch(/STATE_CONFLICT/);
    expect(await trySign()).toBe(Reason.INTEGRITY_VIOLATION);
  });

  it("two security officers acknowledge with `inkan admin`: audited with the snapshot's identity and both high-water marks", async () => {
    const status = await inkanAdmin(["restore", "status", "--json"]);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ awaitingAcknowledgement: true, snapshotId: backup.snapshotId });
    const held = await inkanAdmin(["restore", "acknowledge", "--snapshot-id", backup.snapshotId, "--json"]);
    expect(held.code, held.stderr).toBe(4);
    const pendingId = (JSON.parse(held.stdout) as { approvalRequired: { pendingRequestId: string } }).approvalRequired.pendingRequestId;
    expect(pendingId).toBeTruthy();
    expect(await trySign()).toBe(Reason.INTEGRITY_VIOLATION); // held: nothing changed yet
    const approved = await inkanAdmin(["approval", "approve", pendingId], so2);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toMatch(/EXECUTED/);
    expect((await policyAs(t.firstSecurityOfficer).getRestoreStatus({})).awaitingAcknowledgement).toBe(false);
    const audited = auditRecords("store.restore_acknowledged").map((r) => JSON.parse(r.body) as { actor: { id: string }; approver: { id: string }; details: Record<string, string> });
    expect(audited).toHaveLength(1);
    expect(audited[0]!.details["snapshot_id"]).toBe(backup.snapshotId);
    expect(audited[0]!.details["old_high_water_marks"]).toMatch(/=\d+/);
    expect(audited[0]!.details["new_high_water_marks"]).toMatch(/=\d+/);
    expect(audited[0]!.details["old_high_water_marks"]).not.toBe(audited[0]!.details["new_high_water_marks"]);
    expect(Number(audited[0]!.details["rebased_records"])).toBeGreaterThan(0);
    expect(audited[0]!.actor.id).toBe(t.firstSecurityOfficer.userId);
    expect(audited[0]!.approver.id).toBe(so2.userId);
  }, 120_000);

  it("T-2.1.2.2: lockout counters are as before the restore or higher", async () => {
    const signer = (await createClient(RegistrationService, t.as(operator)).getSigner({ signerId: bob.signerId })).signer!;
    expect(signer.factors!.failedAttempts).toBeGreaterThanOrEqual(after.failedBefore!);
  });

  it("T-2.2.1.3 T-2.2.2.1: nothing consumed after the snapshot serves again (SAD token, R.SAD jti, transactions, challenge, activation code, admin nonce)", async () => {
    /** Each replay: "accepted", or the reason it was refused. */
    const outcome = (p: Promise<unknown>) => p.then(() => "accepted" as const, (err: unknown) => Reason[inkanErrorReason(ConnectError.from(err))]);
    const freshActivation = async () => {
      const ch = await device().createChallenge({ signerId: after.activation!.signerId, purpose: ChallengePurpose.ACTIVATION });
      const { request } = await buildActivationRequest({
        signerId: after.activation!.signerId, activationCode: after.activation!.code, pin: testPin, deviceKey: await createDeviceKey(), enrollTotp: false,
        challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience,
      });
      return device().activate(request);
    };
    const replays = {
      "SAD token of a transaction completed after the snapshot": await outcome(sca().signHash({ authorization: { case: "sadToken", value: after.sadToken! }, hashes: [newHash()] })),
      "R.SAD (jti) of a transaction authorized after the snapshot": await outcome(sca().authorize({ transactionId: after.authorizedTx!.transactionId, rSad: after.authorizedTx!.rSad })),
      "R.SAD of a transaction completed after the snapshot": await outcome(sca().authorize({ transactionId: after.completedTx!.transactionId, rSad: after.completedTx!.rSad })),
      "activation request (challenge and activation code) used after the snapshot": await outcome(device().activate(after.activation!.request)),
      "activation code used after the snapshot, with a fresh challenge": await outcome(freshActivation()),
      "admin request whose nonce was used after the snapshot": await outcome(getPolicyWith(after.adminJws!)),
      "approval of a request performed after the snapshot": await outcome(createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest(after.approval!)),
    };
    console.log(replays);
    for (const [what, result] of Object.entries(replays)) expect.soft(result, what).not.toBe("accepted");
    expect(replays["admin request whose nonce was used after the snapshot"]).toBe("NONCE_REPLAYED");
  });

  it("after the acknowledgement the SAM signs again, and inkan audit verify says OK over the kept tail", async () => {
    expect(await trySign()).toBe(1);
    await t.restart(async () => {
      const out: string[] = [];
      const log = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
      try {
        expect(await auditVerifyCommand(["verify", "--data-dir", t.dataDir])).toBe(0);
      } finally {
        log.mockRestore();
      }
      expect(out.at(-1)).toBe("OK");
    });
    expect(await trySign()).toBe(1); // acknowledged stays acknowledged across restarts
  }, 120_000);
});
