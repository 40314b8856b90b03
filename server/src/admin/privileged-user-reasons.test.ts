import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason } from "@inkan/sdk";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SealedRecord, Store } from "../store/port.js";
import { bindingOf, newRequestSigningKey, refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";

// Issue 18, item 1: the reasons PrivilegedUserService declares for an RPC that no other test
// produced, each produced here over the real server (SoftHSM2 + SQLite, mTLS), so the error
// contract's coverage check (testing/error-contract.global.ts) sees them.
let t: TestServer;
let so2: PrivilegedPerson;

/**
 * A concurrent change between read and compare-and-set, without timing: while `casLost` names a
 * record kind, the store reports every update of that kind as lost (another writer won).
 */
const fault: { casLost?: SealedRecord["kind"] } = {};
const wrapStore = (store: Store): Store => new Proxy(store, {
  get(target, prop, receiver) {
    if (prop === "updateRecord") return async (record: SealedRecord, expected: number) => (record.kind === fault.casLost ? false : target.updateRecord(record, expected));
    const value = Reflect.get(target, prop, receiver);
    return typeof value === "function" ? value.bind(target) : value;
  },
});

const users = (who: PrivilegedPerson = t.firstSecurityOfficer) => createClient(PrivilegedUserService, t.as(who));
const operator = (name: string) => t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, name);

beforeAll(async () => {
  t = await startTestServer({}, { wrapStore });
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "second-officer-user-reasons");
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("PrivilegedUserService: declared reasons (issue 18, item 1)", () => {
  it("R-3.2.1.6: AddUserKey: a malformed key is INVALID_REQUEST, an unknown user PRIVILEGED_USER_NOT_FOUND, a key registered already ALREADY_EXISTS, a removed user STATE_CONFLICT", async () => {
    const ra = await operator("operator-add-key");
    expect(await refusalOf(users().addUserKey({ userId: ra.userId, publicKeyJwk: "not a jwk", label: "x" }))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    const key = await newRequestSigningKey();
    expect(await refusalOf(users().addUserKey({ userId: "pu-does-not-exist", publicKeyJwk: key.publicJwk, label: "x" }))).toMatchObject({ code: Code.NotFound, reason: Reason.PRIVILEGED_USER_NOT_FOUND });
    await users().addUserKey({ userId: ra.userId, publicKeyJwk: key.publicJwk, label: "second" });
    expect(await refusalOf(users().addUserKey({ userId: ra.userId, publicKeyJwk: key.publicJwk, label: "again" }))).toMatchObject({ code: Code.AlreadyExists, reason: Reason.ALREADY_EXISTS });
    await users().removePrivilegedUser({ userId: ra.userId, reason: "left" });
    const other = await newRequestSigningKey();
    expect(await refusalOf(users().addUserKey({ userId: ra.userId, publicKeyJwk: other.publicJwk, label: "x" }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.STATE_CONFLICT });
  });

  it("R-3.2.1.6: UpdatePrivilegedUser: an unknown user is PRIVILEGED_USER_NOT_FOUND, a stale version VERSION_CONFLICT, a removed user STATE_CONFLICT, a security officer's new binding APPROVAL_REQUIRED", async () => {
    const ra = await operator("operator-update");
    const cert = await t.issueAdminCertificate("operator-update-2");
    expect(await refusalOf(users().updatePrivilegedUser({ userId: "pu-does-not-exist", expectedVersion: 1n, displayName: "x", certificateBinding: bindingOf(cert) })))
      .toMatchObject({ code: Code.NotFound, reason: Reason.PRIVILEGED_USER_NOT_FOUND });
    const { user } = await users().getPrivilegedUser({ userId: ra.userId });
    expect(await refusalOf(users().updatePrivilegedUser({ userId: ra.userId, expectedVersion: user!.version + 1n, displayName: "x", certificateBinding: bindingOf(cert) })))
      .toMatchObject({ code: Code.Aborted, reason: Reason.VERSION_CONFLICT });
    await users().removePrivilegedUser({ userId: ra.userId, reason: "left" });
    const { user: removed } = await users().getPrivilegedUser({ userId: ra.userId });
    expect(await refusalOf(users().updatePrivilegedUser({ userId: ra.userId, expectedVersion: removed!.version, displayName: "x", certificateBinding: bindingOf(cert) })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.STATE_CONFLICT });
    const { user: officer } = await users().getPrivilegedUser({ userId: so2.userId });
    const soCert = await t.issueAdminCertificate("second-officer-new-certificate");
    expect(await refusalOf(users().updatePrivilegedUser({ userId: so2.userId, expectedVersion: officer!.version, displayName: officer!.displayName, certificateBinding: bindingOf(soCert) })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.APPROVAL_REQUIRED });
  });

  it("RevokeUserKey of a key the user does not have is INVALID_REQUEST; ListPrivilegedUsers and ListPendingApprovals with a page size above 1,000 (a validation rule) are INVALID_REQUEST", async () => {
    const ra = await operator("operator-revoke");
    expect(await refusalOf(users().revokeUserKey({ userId: ra.userId, keyId: "no-such-key", reason: "x" }))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    const badPage = { page: { pageSize: 1001, pageToken: "" } };
    expect(await refusalOf(users().listPrivilegedUsers(badPage))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect(await refusalOf(users().listPendingApprovals(badPage))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
  });

  it("ListPrivilegedUsers and ListPendingApprovals page tokens: pages follow each other; a made-up token or one from other filters is INVALID_REQUEST", async () => {
    await operator("operator-page-a");
    await operator("operator-page-b");
    const first = await users().listPrivilegedUsers({ page: { pageSize: 1, pageToken: "" } });
    expect(first.users).toHaveLength(1);
    const second = await users().listPrivilegedUsers({ page: { pageSize: 1, pageToken: first.page!.nextPageToken } });
    expect(second.users[0]!.userId).not.toBe(first.users[0]!.userId);
    // A client that writes its own cursor (a user id) or reuses a token with other filters.
    for (const request of [
      () => users().listPrivilegedUsers({ page: { pageSize: 1, pageToken: first.users[0]!.userId } }),
      () => users().listPrivilegedUsers({ role: PrivilegedRole.AUDITOR, page: { pageSize: 1, pageToken: first.page!.nextPageToken } }),
      () => users().listPendingApprovals({ page: { pageSize: 1, pageToken: "pending-000000000000-x" } }),
    ]) {
      expect(await refusalOf(request())).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    }
  });
  it("R-3.2.1.6: RejectPendingRequest with another request's digest is INVALID_REQUEST; of a request already decided STATE_CONFLICT", async () => {
    // A third security officer needs a second officer's approval: held, nothing created yet.
    const held = await heldRequest();
    expect(await refusalOf(users(so2).rejectPendingRequest({ pendingRequestId: held.pendingRequestId, requestDigest: new Uint8Array(32).fill(1), comment: "no" })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    await users(so2).rejectPendingRequest({ pendingRequestId: held.pendingRequestId, requestDigest: held.requestDigest, comment: "no" });
    expect(await refusalOf(users(so2).rejectPendingRequest({ pendingRequestId: held.pendingRequestId, requestDigest: held.requestDigest, comment: "again" })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.STATE_CONFLICT });
  });

  it("RevokeUserKey and RemovePrivilegedUser that lose the compare-and-set to a concurrent change are VERSION_CONFLICT, and nothing changes", async () => {
    const ra = await operator("operator-race");
    fault.casLost = "privileged-user-key";
    try {
      expect(await refusalOf(users().revokeUserKey({ userId: ra.userId, keyId: ra.privateJwk.kid, reason: "x" }))).toMatchObject({ code: Code.Aborted, reason: Reason.VERSION_CONFLICT });
      fault.casLost = "privileged-user";
      expect(await refusalOf(users().removePrivilegedUser({ userId: ra.userId, reason: "x" }))).toMatchObject({ code: Code.Aborted, reason: Reason.VERSION_CONFLICT });
    } finally {
      fault.casLost = undefined;
    }
    const { user } = await users().getPrivilegedUser({ userId: ra.userId });
    expect(user!.keys.map((k) => k.revokedAt)).toEqual([undefined]);
  });
});

/** A CreatePrivilegedUser of a third security officer, held for a second officer's approval. */
async function heldRequest() {
  const cert = await t.issueAdminCertificate("third-officer");
  const key = await newRequestSigningKey();
  const err = await users().createPrivilegedUser({ displayName: "third officer", role: PrivilegedRole.SECURITY_OFFICER, certificateBinding: bindingOf(cert), publicKeyJwk: key.publicJwk, keyLabel: "x" })
    .then(() => undefined, (e: unknown) => ConnectError.from(e));
  return err!.findDetails(ApprovalRequiredSchema)[0]!;
}
