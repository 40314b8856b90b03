import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { clone } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import {
  ApprovalRequirement,
  PolicyService,
  SecurityPolicySchema,
  UpdateSecurityPolicyResponseSchema,
  type SecurityPolicy,
} from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PendingApprovalState, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import Database from "better-sqlite3";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Pem } from "../pki/dev-pki.js";
import { sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { bindingOf, protocols, startTestServer, type TestServer } from "../testing/harness.js";

// Policy tampering (R-3.2.2.3): an insider with write access to the database, but not to the
// crypto module, edits the policy row in the SQLite file. The periodic check (every 100 ms here)
// catches it, the SAM stops serving signing requests and says why, and only security officers,
// two of them, can restore a sealed policy through the admin service. The real server.
let t: TestServer;
let db: Database.Database;
interface Person { userId: string; cert: Pem; privateJwk: JWK & { kid: string } }
let so1: Person;
let so2: Person;
/** The policy as it was before the first tampering (with dual control for policy changes off). */
let lastGood: SecurityPolicy;

const usersAs = (p: Person) => createClient(PrivilegedUserService, t.transportAs(p.cert, p.userId, p.privateJwk));
const policyAs = (p: Person) => createClient(PolicyService, t.transportAs(p.cert, p.userId, p.privateJwk));
const gateMessage = "the security policy failed its integrity check; signing is stopped";

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

/** How GetInfo from an SCA fails while signing is stopped (it throws if GetInfo succeeds). */
const getInfo = (protocol: (typeof protocols)[number] = "grpc") =>
  errorOf(createClient(SignatureActivationService, t.transport(protocol, t.pki.sca)).getInfo({}));
/** GetInfo is served: it answers with the SAM's id while the policy is intact. */
const getInfoServed = async () => (await createClient(SignatureActivationService, t.transport("grpc", t.pki.sca)).getInfo({})).samId !== "";
const sapHealth = async () =>
  (await createClient(Health, t.transport("grpc", t.pki.sca)).check({ service: SignatureActivationService.typeName })).status;
async function untilSigningStopped() {
  await vi.waitFor(async () => expect(inkanErrorReason(await getInfo())).toBe(Reason.INTEGRITY_VIOLATION), { timeout: 10_000, interval: 50 });
}

/** so1 asks, so2 approves: the pending request after its approval. */
async function updateWithApproval(expectedVersion: bigint, policy: SecurityPolicy) {
  const held = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion, policy }));
  expect(inkanErrorReason(held)).toBe(Reason.APPROVAL_REQUIRED);
  const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
  const { pendingApproval } = await usersAs(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
  expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
  return anyUnpack(pendingApproval!.result!, UpdateSecurityPolicyResponseSchema)!.record!;
}

const tamper = (version: number) =>
  db.prepare("UPDATE policy_versions SET body = json_set(body, '$.policy.lockoutThreshold', 100) WHERE id = 'security-policy' AND version = ?").run(version);
const bodyOf = (version: number) =>
  (db.prepare("SELECT body FROM policy_versions WHERE id = 'security-policy' AND version = ?").get(version) as { body: string }).body;

beforeAll(async () => {
  t = await startTestServer({ policyCheckIntervalMs: "100" });
  db = new Database(sqliteStoreFile(t.dataDir)); // the insider's own connection
  so1 = { userId: t.pki.paths.adminUserId, cert: t.pki.admin, privateJwk: JSON.parse(readFileSync(t.pki.paths.adminRequestKey, "utf8")) };
  const cert = await t.issueAdminCertificate("security-officer-2");
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const pub = await exportJWK(publicKey);
  const { user } = await usersAs(so1).createPrivilegedUser({
    displayName: "security-officer-2",
    role: PrivilegedRole.SECURITY_OFFICER,
    certificateBinding: bindingOf(cert),
    publicKeyJwk: JSON.stringify(pub),
  });
  so2 = { userId: user!.userId, cert, privateJwk: { ...(await exportJWK(privateKey)), kid: await calculateJwkThumbprint(pub, "sha256") } };
  // Version 2 lets one officer change the policy alone, so that the tests below show a failed
  // policy's own switch is not trusted.
  const v1 = (await policyAs(so1).getSecurityPolicy({})).record!;
  lastGood = clone(SecurityPolicySchema, v1.policy!);
  lastGood.dualControl!.securityPolicyChanges = ApprovalRequirement.SINGLE_CONTROL;
  expect((await updateWithApproval(1n, lastGood)).version).toBe(2n);
});
afterAll(async () => {
  db?.close();
  await t?.close();
});

describe("policy tampering in the database (R-3.2.2.3)", () => {
  it("R-3.2.2.3: while the policy is intact, signing requests are served", async () => {
    expect(await getInfoServed()).toBe(true);
    expect(await sapHealth()).toBe(Status.SERVING);
  });

  it("R-3.2.2.3: an edited policy row stops signing within one check: INTERNAL, INTEGRITY_VIOLATION, saying why", async () => {
    expect(tamper(2).changes).toBe(1);
    await untilSigningStopped();
    for (const protocol of protocols) {
      const err = await getInfo(protocol);
      expect(err.code, protocol).toBe(Code.Internal);
      expect(inkanErrorReason(err), protocol).toBe(Reason.INTEGRITY_VIOLATION);
      expect(err.rawMessage, protocol).toBe(gateMessage);
    }
    const signer = await errorOf(createClient(SignerService, t.transport("connect", t.pki.frontEnd)).createChallenge({}));
    expect(inkanErrorReason(signer)).toBe(Reason.INTEGRITY_VIOLATION);
    expect(await sapHealth()).toBe(Status.NOT_SERVING);
    expect(readFileSync(`${t.dataDir}/server.log`, "utf8")).toMatch(/security policy failed its integrity check: signing stopped/);
  });

  it("R-3.2.2.3: the tampered policy is never returned, while the admin services keep working", async () => {
    const err = await errorOf(policyAs(so1).getSecurityPolicy({}));
    expect(err.code).toBe(Code.Internal);
    expect(inkanErrorReason(err)).toBe(Reason.INTEGRITY_VIOLATION);
    const { users } = await usersAs(so1).listPrivilegedUsers({});
    expect(users.map((u) => u.userId)).toContain(so2.userId);
  });

  it("R-3.2.2.3: restoring a failed policy always needs a second officer, whatever its own switch says; then signing resumes", async () => {
    const stale = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion: 2n, policy: lastGood }));
    expect(inkanErrorReason(stale)).toBe(Reason.APPROVAL_REQUIRED); // held, although the stored v2 says SINGLE_CONTROL
    const restored = clone(SecurityPolicySchema, lastGood);
    restored.dualControl!.securityPolicyChanges = ApprovalRequirement.DUAL_CONTROL;
    const record = await updateWithApproval(0n, restored); // 0: the failed version cannot be trusted
    expect(record).toMatchObject({ version: 3n, updatedBy: so1.userId, approvedBy: so2.userId });
    expect(await getInfoServed()).toBe(true); // served again, at once
    expect(await sapHealth()).toBe(Status.SERVING);
    expect((await policyAs(so1).getSecurityPolicy({})).record?.version).toBe(3n);
  });

  it("R-3.2.2.3: undoing the edit in the database does not resume signing; a new sealed version does", async () => {
    const original = bodyOf(3);
    tamper(3);
    await untilSigningStopped();
    db.prepare("UPDATE policy_versions SET body = ? WHERE id = 'security-policy' AND version = 3").run(original);
    await sleep(500); // five checks
    expect(inkanErrorReason(await getInfo())).toBe(Reason.INTEGRITY_VIOLATION);
    const { record } = await policyAs(so1).getSecurityPolicy({}); // readable again (its seal verifies)
    expect(record?.version).toBe(3n);
    expect((await updateWithApproval(3n, record!.policy!)).version).toBe(4n);
    expect(await getInfoServed()).toBe(true);
  });

  it("R-3.2.2.3: deleting the latest version (rolling the policy back) stops signing too", async () => {
    expect(db.prepare("DELETE FROM policy_versions WHERE id = 'security-policy' AND version = 4").run().changes).toBe(1);
    await untilSigningStopped();
    expect(inkanErrorReason(await errorOf(policyAs(so1).getSecurityPolicy({})))).toBe(Reason.INTEGRITY_VIOLATION);
    const record = await updateWithApproval(0n, lastGood);
    expect(record.version).toBe(4n);
    expect(await getInfoServed()).toBe(true);
  });
});
