import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { clone } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import {
  ApprovalRequirement,
  PolicyService,
  SecurityPolicySchema,
  UpdateSecurityPolicyResponseSchema,
  type SecurityPolicy,
} from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PendingApprovalState, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { AssuranceLevel } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { createCertificateAuthority } from "../pki/dev-pki.js";
import { errorOf, newRequestSigningKey, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";

// PolicyService (R-3.2.2.3): the security policy is versioned and sealed, read and changed only
// by security officers, each change under dual control by default. The real server, over gRPC.
let t: TestServer;
let so1: PrivilegedPerson;
let so2: PrivilegedPerson;
let operator: PrivilegedPerson;
let auditor: PrivilegedPerson;

const newKey = newRequestSigningKey;
const usersAs = (p: PrivilegedPerson) => createClient(PrivilegedUserService, t.as(p));
const policyAs = (p: PrivilegedPerson) => createClient(PolicyService, t.as(p));

/** The policy in force and its version, as a security officer reads it. */
async function read() {
  const { record } = await policyAs(so1).getSecurityPolicy({});
  return { policy: record!.policy!, version: record!.version, record: record! };
}
function edit(policy: SecurityPolicy, change: (p: SecurityPolicy) => void): SecurityPolicy {
  const next = clone(SecurityPolicySchema, policy);
  change(next);
  return next;
}

/** so1 asks, so2 approves: the update performed on approval, or the error it failed with. */
async function updateWithApproval(expectedVersion: bigint, policy: SecurityPolicy) {
  const held = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion, policy }));
  expect(inkanErrorReason(held)).toBe(Reason.APPROVAL_REQUIRED);
  const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
  expect(detail.method).toBe("/inkan.admin.v1.PolicyService/UpdateSecurityPolicy");
  const { pendingApproval } = await usersAs(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
  return pendingApproval!;
}

beforeAll(async () => {
  t = await startTestServer();
  so1 = t.firstSecurityOfficer;
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "security-officer-2"); // the second needs no approval
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-1");
  auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-1");
});
afterAll(async () => {
  await t?.close();
});

describe("PolicyService (R-3.2.2.3)", () => {
  it("R-3.2.2.3: GetSecurityPolicy returns version 1, written by inkan init with secure defaults", async () => {
    const { policy, version, record } = await read();
    expect(version).toBe(1n);
    expect(record.updatedBy).toBe("");
    expect(record.approvedBy).toBe("");
    expect(record.updatedAt).toBeDefined();
    expect(policy.defaultAssuranceLevel).toBe(AssuranceLevel.ASSURANCE_LEVEL_2);
    expect(policy.lockoutThreshold).toBe(5);
    expect(policy.sadTokenLifetime?.seconds).toBe(300n);
    expect(policy.defaultTransactionLifetime?.seconds).toBe(300n);
    expect(policy.maxTransactionLifetime?.seconds).toBe(3600n);
    expect(policy.maxHashesPerTransaction).toBe(100_000);
    expect(policy.dualControl).toMatchObject({
      credentialDestruction: ApprovalRequirement.DUAL_CONTROL,
      securityOfficerChanges: ApprovalRequirement.DUAL_CONTROL,
      securityPolicyChanges: ApprovalRequirement.DUAL_CONTROL,
    });
    const der = (f: string) => Buffer.from(new X509Certificate(readFileSync(f)).raw);
    expect(policy.trustedAdminCaCertificates.map((c) => Buffer.from(c))).toEqual([der(t.pki.paths.adminCaCert)]);
    // The development SCA CA (scope "development", all signers) and the second one (issue 19, scope "demo-b").
    expect(policy.trustedScaCaCertificates.map((c) => Buffer.from(c))).toEqual([der(t.pki.paths.scaCaCert), der(t.pki.paths.secondScaCaCert)]);
    expect(policy.trustedFrontEndCaCertificates.map((c) => Buffer.from(c))).toEqual([der(t.pki.paths.frontEndCaCert)]); // issue 18.7
  });

  it("R-3.2.2.3: an operator, an auditor and an SCA can neither read nor change the policy", async () => {
    const { policy } = await read();
    for (const who of [operator, auditor]) {
      for (const call of [() => policyAs(who).getSecurityPolicy({}), () => policyAs(who).updateSecurityPolicy({ expectedVersion: 1n, policy })]) {
        const err = await errorOf(call());
        expect(err.code).toBe(Code.PermissionDenied);
        expect(inkanErrorReason(err)).toBe(Reason.ROLE_NOT_PERMITTED);
      }
    }
    const sca = createClient(PolicyService, t.transport("grpc", t.pki.sca));
    expect(inkanErrorReason(await errorOf(sca.getSecurityPolicy({})))).toBe(Reason.ROLE_NOT_PERMITTED);
    expect((await read()).version).toBe(1n);
  });

  it("R-3.2.2.3: a policy that breaks a validation rule is refused with the violations, before it is held", async () => {
    const { policy } = await read();
    const bad = edit(policy, (p) => void p.allowedAssuranceLevels.push(AssuranceLevel.ASSURANCE_LEVEL_3));
    const err = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion: 1n, policy: bad }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(ViolationsSchema)[0]?.violations.map((v) => v.ruleId)).toContain("security_policy.level3_needs_certified");
    const { pendingApprovals } = await usersAs(so2).listPendingApprovals({ state: PendingApprovalState.PENDING });
    expect(pendingApprovals.filter((p) => p.method.endsWith("/UpdateSecurityPolicy"))).toHaveLength(0);
  });

  it("R-3.2.2.3: one security officer's update is held; it applies only on a second officer's approval, recording both", async () => {
    const { policy } = await read();
    const next = edit(policy, (p) => void (p.lockoutThreshold = 3));
    const held = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion: 1n, policy: next }));
    expect(held.code).toBe(Code.FailedPrecondition);
    expect(inkanErrorReason(held)).toBe(Reason.APPROVAL_REQUIRED);
    expect((await read()).version).toBe(1n); // nothing changed yet
    const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
    const self = await errorOf(usersAs(so1).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest }));
    expect(inkanErrorReason(self)).toBe(Reason.APPROVAL_REJECTED);

    const { pendingApproval } = await usersAs(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
    expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
    const result = anyUnpack(pendingApproval!.result!, UpdateSecurityPolicyResponseSchema);
    expect(result?.record).toMatchObject({ version: 2n, updatedBy: so1.userId, approvedBy: so2.userId });
    const now = await read();
    expect(now.version).toBe(2n);
    expect(now.policy.lockoutThreshold).toBe(3);
    expect(now.record).toMatchObject({ updatedBy: so1.userId, approvedBy: so2.userId });
  });

  it("R-3.2.2.3: an approved update whose expected_version moved fails (VERSION_CONFLICT) and changes nothing", async () => {
    const stale = edit((await read()).policy, (p) => void (p.lockoutThreshold = 7));
    const pending = await updateWithApproval(1n, stale);
    expect(pending.state).toBe(PendingApprovalState.FAILED);
    expect(pending.errorCode).toBe("VERSION_CONFLICT");
    expect((await read()).policy.lockoutThreshold).toBe(3);
  });

  it("R-3.2.2.3: with dual control switched off for policy changes, one officer acts alone; a stale version is ABORTED", async () => {
    const { policy, version } = await read();
    const single = edit(policy, (p) => {
      p.dualControl!.securityPolicyChanges = ApprovalRequirement.SINGLE_CONTROL;
      p.dualControl!.securityOfficerChanges = ApprovalRequirement.SINGLE_CONTROL;
    });
    expect((await updateWithApproval(version, single)).state).toBe(PendingApprovalState.EXECUTED); // switching it off needs approval
    const v3 = await read();
    expect(v3.version).toBe(3n);

    const { record } = await policyAs(so1).updateSecurityPolicy({ expectedVersion: 3n, policy: edit(v3.policy, (p) => void (p.lockoutThreshold = 4)) });
    expect(record).toMatchObject({ version: 4n, updatedBy: so1.userId, approvedBy: "" });

    const stale = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion: 3n, policy: v3.policy }));
    expect(stale.code).toBe(Code.Aborted);
    expect(inkanErrorReason(stale)).toBe(Reason.VERSION_CONFLICT);
    const zero = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion: 0n, policy: v3.policy }));
    expect(zero.code).toBe(Code.Aborted); // 0 only restores a policy that failed its check

    // The officer-change switch is honoured too: a key for the other officer is added at once.
    const key = await newKey();
    const added = await usersAs(so1).addUserKey({ userId: so2.userId, publicKeyJwk: key.publicJwk });
    expect(added.key?.keyId).toBe(key.privateJwk.kid);
  });

  it("R-3.2.2.3: a trusted CA entry that is not a DER X.509 CA certificate is refused, naming the entry", async () => {
    const { policy, version } = await read();
    const leaf = Buffer.from(new X509Certificate(t.pki.sca.cert).raw);
    const err = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion: version, policy: edit(policy, (p) => void p.trustedScaCaCertificates.push(leaf)) }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(inkanErrorReason(err)).toBe(Reason.INVALID_REQUEST);
    expect((await read()).version).toBe(version);
  });

  it("R-3.2.2.3: withdrawing the SCA CA from the policy refuses its certificates at once; restoring it lets them back", async () => {
    const sam = createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
    expect((await sam.getInfo({})).samId).not.toBe("");
    const { policy, version } = await read();
    const otherCa = await createCertificateAuthority("Another SCA CA");
    // Earlier tests may have switched policy changes to single control: apply directly, or through approval.
    const apply = async (expectedVersion: bigint, next: typeof policy) => {
      try {
        await policyAs(so1).updateSecurityPolicy({ expectedVersion, policy: next });
      } catch (err) {
        expect(inkanErrorReason(err)).toBe(Reason.APPROVAL_REQUIRED);
        const detail = ConnectError.from(err).findDetails(ApprovalRequiredSchema)[0]!;
        const { pendingApproval } = await usersAs(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
        expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
      }
    };
    await apply(version, edit(policy, (p) => void (p.trustedScaCaCertificates = [Buffer.from(new X509Certificate(otherCa.cert).raw)])));
    const refused = await errorOf(sam.getInfo({}));
    expect(refused.code).toBe(Code.Unauthenticated);
    expect(inkanErrorReason(refused)).toBe(Reason.CLIENT_CERTIFICATE_REJECTED);
    await apply(version + 1n, policy);
    expect((await sam.getInfo({})).samId).not.toBe("");
  });
});

