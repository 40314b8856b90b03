import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PrivilegedUserService, PrivilegedUserStatus } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindingOf, newRequestSigningKey, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

async function outcome(p: Promise<unknown>): Promise<{ code: Code | "ok"; reason: Reason }> {
  try {
    await p;
    return { code: "ok", reason: Reason.UNSPECIFIED };
  } catch (err) {
    return { code: ConnectError.from(err).code, reason: inkanErrorReason(err) };
  }
}

const enroll = (role: PrivilegedRole, name: string) => t.createPrivilegedUser(role, name);
const as = (p: PrivilegedPerson) => t.as(p);
const newKey = newRequestSigningKey;

describe("privileged users are managed only by security officers (R-3.2.1.6, R-3.2.1.7)", () => {
  it("creates an operator and an auditor who can then act in their own role only", async () => {
    const operator = await enroll(PrivilegedRole.REGISTRATION_OPERATOR, "operator-1");
    const auditor = await enroll(PrivilegedRole.AUDITOR, "auditor-1");
    const got = await createClient(PrivilegedUserService, t.adminTransport()).getPrivilegedUser({ userId: operator.userId });
    expect(got.user?.keys.map((k) => k.keyId)).toEqual([operator.privateJwk.kid]);
    const list = await createClient(PrivilegedUserService, t.adminTransport()).listPrivilegedUsers({});
    expect(list.users.map((u) => u.userId)).toEqual(expect.arrayContaining([operator.userId, auditor.userId, t.pki.paths.adminUserId]));

    // Each passes authentication and reaches their own role's RPCs (the operator lists signers and
    // reaches PrepareCsr, which looks the credential up; the auditor's verification runs).
    expect((await outcome(createClient(RegistrationService, as(operator)).listSigners({}))).code).toBe("ok");
    expect((await outcome(createClient(RegistrationService, as(operator)).prepareCsr({ credentialId: "cred-1", subject: "CN=x" }))).code).toBe(Code.NotFound);
    expect((await createClient(AuditService, as(auditor)).verifyAuditLog({})).ok).toBe(true);
  });

  it("T-2.2.2.1: an operator cannot do a security officer's job", async () => {
    const operator = await enroll(PrivilegedRole.REGISTRATION_OPERATOR, "operator-2");
    const key = await newKey();
    const res = await outcome(createClient(PrivilegedUserService, as(operator)).addUserKey({ userId: operator.userId, publicKeyJwk: key.publicJwk }));
    expect(res).toEqual({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
  });

  it("T-2.2.2.2: an auditor cannot change anything", async () => {
    const auditor = await enroll(PrivilegedRole.AUDITOR, "auditor-2");
    const users = createClient(PrivilegedUserService, as(auditor));
    expect((await outcome(users.removePrivilegedUser({ userId: auditor.userId, reason: "test" }))).reason).toBe(Reason.ROLE_NOT_PERMITTED);
    expect((await outcome(createClient(RegistrationService, as(auditor)).enrollSigner({}))).code).toBe(Code.PermissionDenied);
  });

  it("stops accepting a key's signatures the moment it is revoked", async () => {
    const operator = await enroll(PrivilegedRole.REGISTRATION_OPERATOR, "operator-3");
    await createClient(PrivilegedUserService, t.adminTransport()).revokeUserKey({ userId: operator.userId, keyId: operator.privateJwk.kid, reason: "laptop lost" });
    const res = await outcome(createClient(RegistrationService, as(operator)).listSigners({}));
    expect(res).toEqual({ code: Code.Unauthenticated, reason: Reason.REQUEST_SIGNATURE_INVALID });
  });

  it("stops accepting a removed user's certificate", async () => {
    const auditor = await enroll(PrivilegedRole.AUDITOR, "auditor-3");
    const removed = await createClient(PrivilegedUserService, t.adminTransport()).removePrivilegedUser({ userId: auditor.userId, reason: "left" });
    expect(removed.user?.status).toBe(PrivilegedUserStatus.REMOVED);
    expect((await outcome(createClient(AuditService, as(auditor)).verifyAuditLog({}))).reason).toBe(Reason.CLIENT_CERTIFICATE_REJECTED);
  });

  it("refuses the same key or the same certificate for a second user (ALREADY_EXISTS)", async () => {
    const first = await enroll(PrivilegedRole.AUDITOR, "auditor-4");
    const so = createClient(PrivilegedUserService, t.adminTransport());
    const firstKeys = (await so.getPrivilegedUser({ userId: first.userId })).user!.keys;
    const other = await t.issueAdminCertificate("auditor-5");
    const sameKey = await outcome(so.createPrivilegedUser({
      displayName: "copy", role: PrivilegedRole.AUDITOR, certificateBinding: bindingOf(other),
      publicKeyJwk: firstKeys[0]!.publicKeyJwk,
    }));
    expect(sameKey.reason).toBe(Reason.ALREADY_EXISTS);
    const firstUser = (await so.getPrivilegedUser({ userId: first.userId })).user!;
    const sameCert = await outcome(so.createPrivilegedUser({
      displayName: "copy", role: PrivilegedRole.AUDITOR, certificateBinding: firstUser.certificateBinding!, publicKeyJwk: (await newKey()).publicJwk,
    }));
    expect(sameCert.reason).toBe(Reason.ALREADY_EXISTS);
  });

  it("never removes the last security officer", async () => {
    const so = createClient(PrivilegedUserService, t.adminTransport());
    const res = await outcome(so.removePrivilegedUser({ userId: t.pki.paths.adminUserId, reason: "oops" }));
    expect(res).toEqual({ code: Code.FailedPrecondition, reason: Reason.LAST_SECURITY_OFFICER });
  });

  it("returns only public keys: no private key material leaves the SAM (T-2.2.2.3)", async () => {
    const { user } = await createClient(PrivilegedUserService, t.adminTransport()).getPrivilegedUser({ userId: t.pki.paths.adminUserId });
    for (const k of user!.keys) expect(JSON.parse(k.publicKeyJwk)).not.toHaveProperty("d");
  });
});
