import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import {
  CreatePrivilegedUserResponseSchema,
  PendingApprovalState,
  PrivilegedUserService,
} from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindingOf, errorOf, newRequestSigningKey, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";

// Dual control (R-3.2.1.6, T-2.2.2.1): adding or removing a security officer (and, with their
// issues, destroying a key or changing policy) needs a second security officer's signed approval.
let t: TestServer;
let so1: PrivilegedPerson;
let so2: PrivilegedPerson;

/** The request that would add another security officer, with a fresh certificate and key. */
async function candidate(name: string) {
  const cert = await t.issueAdminCertificate(name);
  const key = await newRequestSigningKey();
  const request = {
    displayName: name,
    role: PrivilegedRole.SECURITY_OFFICER,
    certificateBinding: bindingOf(cert),
    publicKeyJwk: key.publicJwk,
  };
  return { cert, key, request };
}
const usersAs = (p: PrivilegedPerson) => createClient(PrivilegedUserService, t.as(p));

beforeAll(async () => {
  t = await startTestServer();
  so1 = t.firstSecurityOfficer;
  // While one security officer exists, it may add the second without approval (nobody could approve).
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "security-officer-2");
});
afterAll(async () => {
  await t?.close();
});

describe("dual control (R-3.2.1.6)", () => {
  it("holds a third security officer for approval: nothing changes, the client learns the pending id", async () => {
    const c = await candidate("security-officer-3");
    const err = await errorOf(usersAs(so1).createPrivilegedUser(c.request));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(inkanErrorReason(err)).toBe(Reason.APPROVAL_REQUIRED);
    const detail = err.findDetails(ApprovalRequiredSchema)[0];
    expect(detail?.method).toBe("/inkan.admin.v1.PrivilegedUserService/CreatePrivilegedUser");
    const all = await usersAs(so1).listPrivilegedUsers({});
    expect(all.users.map((u) => u.displayName)).not.toContain("security-officer-3");
    // The same request again while pending names the same pending request.
    const again = await errorOf(usersAs(so1).createPrivilegedUser(c.request));
    expect(again.findDetails(ApprovalRequiredSchema)[0]?.pendingRequestId).toBe(detail?.pendingRequestId);
  });

  it("T-2.2.2.1: a single security officer cannot approve their own request", async () => {
    const c = await candidate("security-officer-4");
    const detail = (await errorOf(usersAs(so1).createPrivilegedUser(c.request))).findDetails(ApprovalRequiredSchema)[0]!;
    const err = await errorOf(usersAs(so1).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(inkanErrorReason(err)).toBe(Reason.APPROVAL_REJECTED);
  });

  it("performs the request once, on the second officer's approval of its digest, and records both", async () => {
    const c = await candidate("security-officer-5");
    const detail = (await errorOf(usersAs(so1).createPrivilegedUser(c.request))).findDetails(ApprovalRequiredSchema)[0]!;
    const wrong = await errorOf(usersAs(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: new Uint8Array(32) }));
    expect(wrong.code).toBe(Code.InvalidArgument);

    const { pendingApproval } = await usersAs(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
    expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
    expect(pendingApproval?.requestedBy).toBe(so1.userId);
    expect(pendingApproval?.decidedBy).toBe(so2.userId);
    const created = anyUnpack(pendingApproval!.result!, CreatePrivilegedUserResponseSchema);
    expect(created?.user?.displayName).toBe("security-officer-5");
    expect(created?.user?.createdBy).toBe(so1.userId);

    const twice = await errorOf(usersAs(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest }));
    expect(inkanErrorReason(twice)).toBe(Reason.STATE_CONFLICT);
  });

  it("of 8 concurrent approvals, exactly one performs the request", async () => {
    const c = await candidate("security-officer-6");
    const detail = (await errorOf(usersAs(so1).createPrivilegedUser(c.request))).findDetails(ApprovalRequiredSchema)[0]!;
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => usersAs(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest })),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const users = await usersAs(so1).listPrivilegedUsers({});
    expect(users.users.filter((u) => u.displayName === "security-officer-6")).toHaveLength(1);
  });

  it("a rejected request changes nothing", async () => {
    const c = await candidate("security-officer-7");
    const detail = (await errorOf(usersAs(so1).createPrivilegedUser(c.request))).findDetails(ApprovalRequiredSchema)[0]!;
    const { pendingApproval } = await usersAs(so2).rejectPendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest, comment: "not agreed" });
    expect(pendingApproval?.state).toBe(PendingApprovalState.REJECTED);
    const users = await usersAs(so1).listPrivilegedUsers({});
    expect(users.users.map((u) => u.displayName)).not.toContain("security-officer-7");
  });

  it("removing a security officer or adding a key to one needs approval too", async () => {
    const remove = await errorOf(usersAs(so1).removePrivilegedUser({ userId: so2.userId, reason: "takeover attempt" }));
    expect(inkanErrorReason(remove)).toBe(Reason.APPROVAL_REQUIRED);
    const key = await newRequestSigningKey();
    const addKey = await errorOf(usersAs(so1).addUserKey({ userId: so2.userId, publicKeyJwk: key.publicJwk }));
    expect(inkanErrorReason(addKey)).toBe(Reason.APPROVAL_REQUIRED);
    const so2Now = await usersAs(so1).getPrivilegedUser({ userId: so2.userId });
    expect(so2Now.user?.keys).toHaveLength(1);
  });

  it("lists what is pending for the reviewing officer", async () => {
    const { pendingApprovals } = await usersAs(so2).listPendingApprovals({ state: PendingApprovalState.PENDING });
    expect(pendingApprovals.length).toBeGreaterThan(0);
    expect(pendingApprovals.every((p) => p.state === PendingApprovalState.PENDING && p.request !== undefined)).toBe(true);
  });

  it("T-2.2.2.1: a single security officer cannot destroy a key: the request is held for a second officer", async () => {
    const registration = createClient(RegistrationService, t.as(so1));
    const err = await errorOf(registration.destroyCredential({ credentialId: "cred-1", publicKeyFingerprint: new Uint8Array(32), reason: "compromised" }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(inkanErrorReason(err)).toBe(Reason.APPROVAL_REQUIRED);
    expect(err.findDetails(ApprovalRequiredSchema)[0]?.method).toBe("/inkan.admin.v1.RegistrationService/DestroyCredential");
  });
});

