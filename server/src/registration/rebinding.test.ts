import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { clone } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, inkanErrorReason, type DeviceKey } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { ApprovalRequirement, PolicyService, SecurityPolicySchema } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PendingApprovalState, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import {
  ActivationCodePart,
  ActivationCodeSchema,
  IssueActivationCodeResponseSchema,
  RegistrationService,
  ResetFactorsResponseSchema,
  SignerStatus,
} from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorOf, refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSigner, activeSignerWithCredential, approvedResetFactors, enrolledSigner, reactivate, testPin } from "../testing/signers.js";

// A lone registration operator must not be able to take over a signer who holds a credential
// (issue 13 finding 3; T-2.2.2.1, T-2.2.2.3): ResetFactors and IssueActivationCode for such a
// signer are held for a second registration operator or a security officer, and the new
// activation code is issued in two halves, one to each of them; only the pair activates.
let t: TestServer;
let ro1: PrivilegedPerson;
let ro2: PrivilegedPerson;
let so2: PrivilegedPerson;
let auditor: PrivilegedPerson;

const ra = (p: PrivilegedPerson) => createClient(RegistrationService, t.as(p));
const approvals = (p: PrivilegedPerson) => createClient(PrivilegedUserService, t.as(p));
const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const operatorPin = "135792468";
const resetMethod = "/inkan.admin.v1.RegistrationService/ResetFactors";

/** One hash signed by `credentialId` with an R.SAD from `deviceKey` and `pin`: the signature. */
async function signOnce(signerId: string, credentialId: string, deviceKey: DeviceKey, pin: string): Promise<Uint8Array> {
  const hash = new Uint8Array(createHash("sha256").update(`taken over ${Math.random()}`).digest());
  const begun = await sca().beginTransaction({ credentialId, signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [hash], description: "one" });
  const ch = begun.sadChallenge!;
  const rSad = await buildRSad({
    deviceKey, signerId, credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin, samKey: ch.encryptionKey!,
  });
  const { sadToken } = await sca().authorize({ transactionId: ch.transactionId, rSad });
  const signed = await sca().signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: [hash] });
  return signed.signatures[0]!;
}

/** A call expected to be held: its APPROVAL_REQUIRED error with both details (the half when one was given). */
async function held(call: Promise<unknown>) {
  const err = await errorOf(call);
  expect(err.code).toBe(Code.FailedPrecondition);
  expect(inkanErrorReason(err)).toBe(Reason.APPROVAL_REQUIRED);
  const pending = err.findDetails(ApprovalRequiredSchema)[0]!;
  const half = err.findDetails(ActivationCodeSchema)[0];
  return { err, pending, half };
}

/** Sets the policy's signer_rebinding switch (itself a dual-controlled change: so2 approves). */
async function setRebinding(requirement: ApprovalRequirement) {
  const policies = createClient(PolicyService, t.adminTransport());
  const { record } = await policies.getSecurityPolicy({});
  const policy = clone(SecurityPolicySchema, record!.policy!);
  policy.dualControl!.signerRebinding = requirement;
  const change = await held(policies.updateSecurityPolicy({ expectedVersion: record!.version, policy }));
  await approvals(so2).approvePendingRequest({ pendingRequestId: change.pending.pendingRequestId, requestDigest: change.pending.requestDigest, comment: "withdrawn" });
}

beforeAll(async () => {
  t = await startTestServer();
  ro1 = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "ro-1");
  ro2 = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "ro-2");
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "so-2");
  auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-1");
});
afterAll(async () => {
  await t?.close();
});

describe("re-binding a signer who holds a credential (T-2.2.2.1, T-2.2.2.3)", () => {
  it("T-2.2.2.1 attack: a lone registration operator resets a signer, activates their own device with the code and signs", async () => {
    const victim = await activeSignerWithCredential(t, ro1);
    // The operator alone asks for a reset: no code may come back to them.
    const attempt = ra(ro1).resetFactors({ signerId: victim.signerId, reason: "device lost (not really)" });
    const outcome = await attempt.then(
      async (res) => {
        // Before the fix: the whole code is in the operator's hands; their own device activates and signs.
        const mine = await reactivate(t, victim.signerId, res.activationCode!.code, operatorPin);
        await signOnce(victim.signerId, victim.credential.credentialId, mine, operatorPin);
        return "signed by the operator's device";
      },
      async () => (await refusalOf(attempt)).reason,
    );
    expect(outcome).toBe(Reason.APPROVAL_REQUIRED);
    // And the victim's own device still signs: nothing changed.
    expect((await signOnce(victim.signerId, victim.credential.credentialId, victim.deviceKey, testPin)).length).toBeGreaterThan(0);
  });

  it("T-2.2.2.3: the lone operator gets one half and no code: the signer stays ACTIVE with its factors; asking again gives no second half", async () => {
    const victim = await activeSignerWithCredential(t, ro1);
    const first = await held(ra(ro1).resetFactors({ signerId: victim.signerId, reason: "device lost" }));
    expect(first.pending.method).toBe(resetMethod);
    expect(first.half?.part).toBe(ActivationCodePart.REQUESTER_HALF);
    expect(first.half?.code).toMatch(/^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){4}$/);
    expect(first.err.rawMessage).not.toContain(first.half!.code);
    expect(first.err.details).toHaveLength(3); // ErrorDetail, ApprovalRequired, the requester's half
    const { signer } = await ra(ro1).getSigner({ signerId: victim.signerId });
    expect(signer?.status).toBe(SignerStatus.ACTIVE);
    expect(signer?.factors?.pinSet).toBe(true);
    // The same request again names the same pending request, and hands out no second half.
    const again = await held(ra(ro1).resetFactors({ signerId: victim.signerId, reason: "device lost" }));
    expect(again.pending.pendingRequestId).toBe(first.pending.pendingRequestId);
    expect(again.half).toBeUndefined();
    // Withdrawn, a new request draws a new half.
    await approvals(ro1).rejectPendingRequest({ pendingRequestId: first.pending.pendingRequestId, requestDigest: first.pending.requestDigest, comment: "withdrawn" });
    const third = await held(ra(ro1).resetFactors({ signerId: victim.signerId, reason: "device lost" }));
    expect(third.pending.pendingRequestId).not.toBe(first.pending.pendingRequestId);
    expect(third.half?.code).not.toBe(first.half?.code);
    await approvals(ro1).rejectPendingRequest({ pendingRequestId: third.pending.pendingRequestId, requestDigest: third.pending.requestDigest, comment: "withdrawn" });
  });

  it("T-2.2.2.1: the requester cannot approve their own request; an auditor cannot approve at all", async () => {
    const victim = await activeSignerWithCredential(t, ro1);
    const { pending } = await held(ra(ro1).resetFactors({ signerId: victim.signerId, reason: "device lost" }));
    const own = await refusalOf(approvals(ro1).approvePendingRequest({ pendingRequestId: pending.pendingRequestId, requestDigest: pending.requestDigest }));
    expect(own).toMatchObject({ code: Code.PermissionDenied, reason: Reason.APPROVAL_REJECTED });
    const byAuditor = await refusalOf(approvals(auditor).approvePendingRequest({ pendingRequestId: pending.pendingRequestId, requestDigest: pending.requestDigest }));
    expect(byAuditor).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
    expect((await approvals(ro2).getPendingApproval({ pendingRequestId: pending.pendingRequestId })).pendingApproval?.state).toBe(PendingApprovalState.PENDING);
    await approvals(ro1).rejectPendingRequest({ pendingRequestId: pending.pendingRequestId, requestDigest: pending.requestDigest, comment: "withdrawn" });
  });

  it("T-2.2.2.3: a second registration operator approves; neither half alone activates, the pair does (either order); the old device signs nothing meanwhile", async () => {
    const victim = await activeSignerWithCredential(t, ro1);
    const { halves, pendingRequestId, response } = await approvedResetFactors(t, ro1, ro2, victim.signerId);
    expect(response.activationCode?.part).toBe(ActivationCodePart.APPROVER_HALF);
    expect(response.signer?.status).toBe(SignerStatus.PENDING_ACTIVATION);
    expect(response.signer?.factors?.pendingActivationCode?.split).toBe(true);
    const [requesterHalf, approverHalf] = halves;
    expect(requesterHalf).not.toBe(approverHalf);

    // The credential signs nothing until the signer has activated again: the old device is revoked.
    expect(await refusalOf(signOnce(victim.signerId, victim.credential.credentialId, victim.deviceKey, testPin))).toMatchObject({ reason: Reason.CREDENTIAL_NOT_FOUND }); // not ACTIVE: invisible to SCAs

    // Each of the two alone, or a half twice: ACTIVATION_CODE_INVALID (3 of the 5 attempts).
    for (const alone of [requesterHalf, approverHalf, [requesterHalf, requesterHalf] as const]) {
      expect((await refusalOf(reactivate(t, victim.signerId, alone, operatorPin))).reason).toBe(Reason.ACTIVATION_CODE_INVALID);
    }
    // The stored result never holds the approver's half.
    const stored = (await approvals(so2).getPendingApproval({ pendingRequestId })).pendingApproval!;
    expect(stored.state).toBe(PendingApprovalState.EXECUTED);
    const storedResponse = anyUnpack(stored.result!, ResetFactorsResponseSchema)!;
    expect(storedResponse.activationCode?.code).toBe("");
    expect(storedResponse.activationCode?.part).toBe(ActivationCodePart.APPROVER_HALF);

    // The signer combines both halves (here approver's first): activated, and the credential signs again.
    const deviceKey = await reactivate(t, victim.signerId, [approverHalf, requesterHalf]);
    expect((await signOnce(victim.signerId, victim.credential.credentialId, deviceKey, testPin)).length).toBeGreaterThan(0);
  });

  it("T-2.2.2.1: a security officer may approve as well", async () => {
    const victim = await activeSignerWithCredential(t, ro1);
    const { halves } = await approvedResetFactors(t, ro2, so2, victim.signerId);
    const deviceKey = await reactivate(t, victim.signerId, halves);
    expect((await signOnce(victim.signerId, victim.credential.credentialId, deviceKey, testPin)).length).toBeGreaterThan(0);
  });

  it("T-2.2.2.1: IssueActivationCode for a signer left pending with a credential is held and split too; a lone operator's whole code never comes", async () => {
    const victim = await activeSignerWithCredential(t, ro1);
    await approvedResetFactors(t, ro1, ro2, victim.signerId);
    const { pending, half } = await held(ra(ro1).issueActivationCode({ signerId: victim.signerId }));
    expect(half?.part).toBe(ActivationCodePart.REQUESTER_HALF);
    const { pendingApproval } = await approvals(ro2).approvePendingRequest({ pendingRequestId: pending.pendingRequestId, requestDigest: pending.requestDigest, comment: "withdrawn" });
    const issued = anyUnpack(pendingApproval!.result!, IssueActivationCodeResponseSchema)!.activationCode!;
    expect(issued.part).toBe(ActivationCodePart.APPROVER_HALF);
    expect((await refusalOf(reactivate(t, victim.signerId, issued.code))).reason).toBe(Reason.ACTIVATION_CODE_INVALID);
    await reactivate(t, victim.signerId, [half!.code, issued.code]);
    expect((await ra(ro1).getSigner({ signerId: victim.signerId })).signer?.status).toBe(SignerStatus.ACTIVE);
  });

  it("a first code for a signer without credentials, and a reset of one, stay one-operator actions with a whole code", async () => {
    const { signerId } = await activeSigner(t, ro1); // enrolledSigner inside: IssueActivationCode by ro1 alone
    const { activationCode } = await ra(ro1).resetFactors({ signerId, reason: "forgot the PIN" });
    expect(activationCode?.part).toBe(ActivationCodePart.WHOLE);
    await reactivate(t, signerId, activationCode!.code);
    const fresh = await enrolledSigner(t, ro1);
    expect(fresh.code).toMatch(/^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){4}$/);
  });

  it("a registration operator sees and decides only the requests they may approve: a security officer's pending request is NOT_FOUND to them", async () => {
    const { credential } = await activeSignerWithCredential(t, ro1);
    const destroy = await held(ra(t.firstSecurityOfficer).destroyCredential({ credentialId: credential.credentialId, publicKeyFingerprint: credential.publicKeyFingerprint, reason: "test" }));
    const id = destroy.pending.pendingRequestId;
    expect((await refusalOf(approvals(ro2).approvePendingRequest({ pendingRequestId: id, requestDigest: destroy.pending.requestDigest }))).code).toBe(Code.NotFound);
    expect((await refusalOf(approvals(ro2).rejectPendingRequest({ pendingRequestId: id, requestDigest: destroy.pending.requestDigest, comment: "no" }))).code).toBe(Code.NotFound);
    expect((await refusalOf(approvals(ro2).getPendingApproval({ pendingRequestId: id }))).code).toBe(Code.NotFound);
    const listed = await approvals(ro2).listPendingApprovals({ page: { pageSize: 100 } });
    expect(listed.pendingApprovals.map((p) => p.pendingRequestId)).not.toContain(id);
    expect(listed.pendingApprovals.every((p) => p.method.startsWith("/inkan.admin.v1.RegistrationService/"))).toBe(true);
    await approvals(t.firstSecurityOfficer).rejectPendingRequest({ pendingRequestId: id, requestDigest: destroy.pending.requestDigest, comment: "withdrawn" });
  });

  it("R-3.2.2.4: the request, the approval and the issuance are audited with both people; no half is in the audit log or the server log", async () => {
    const victim = await activeSignerWithCredential(t, ro1);
    const { halves, pendingRequestId } = await approvedResetFactors(t, ro1, ro2, victim.signerId);
    const { records } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 } });
    const of = (type: string) => records.filter((r) => r.eventType === type && (r.pendingRequestId === pendingRequestId || r.signerId === victim.signerId));
    expect(of("approval.requested").map((r) => [r.actor?.id, r.details["method"]])).toEqual([[ro1.userId, resetMethod]]);
    expect(of("approval.granted").map((r) => [r.actor?.id, r.approver?.id, r.approver?.role])).toEqual([[ro1.userId, ro2.userId, PrivilegedRole.REGISTRATION_OPERATOR]]);
    const issued = of("activation_code.issued").at(-1)!;
    expect([issued.actor?.id, issued.approver?.id, issued.details["split_knowledge"]]).toEqual([ro1.userId, ro2.userId, "true"]);
    const everything = JSON.stringify(records, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) + readFileSync(join(t.dataDir, "server.log"), "utf8");
    for (const half of halves) {
      expect(everything).not.toContain(half);
      expect(everything).not.toContain(half.replaceAll("-", ""));
    }
  });

  it("with the policy's signer_rebinding switch at SINGLE_CONTROL one operator resets again with a whole code (the old behaviour); back on, held again", async () => {
    await setRebinding(ApprovalRequirement.SINGLE_CONTROL);
    try {
      const victim = await activeSignerWithCredential(t, ro1);
      const { activationCode } = await ra(ro1).resetFactors({ signerId: victim.signerId, reason: "device lost" });
      expect(activationCode?.part).toBe(ActivationCodePart.WHOLE);
      const deviceKey = await reactivate(t, victim.signerId, activationCode!.code);
      expect((await signOnce(victim.signerId, victim.credential.credentialId, deviceKey, testPin)).length).toBeGreaterThan(0);
    } finally {
      await setRebinding(ApprovalRequirement.DUAL_CONTROL);
    }
    const victim = await activeSignerWithCredential(t, ro1);
    expect((await held(ra(ro1).resetFactors({ signerId: victim.signerId, reason: "device lost" }))).half).toBeDefined();
  });
});
