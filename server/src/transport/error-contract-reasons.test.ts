import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { inkanErrorReason, Reason } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSigner } from "../testing/signers.js";

// Issue 18 item 1: declared reasons that no other test produced (testing/error-contract-allowlist.ts
// lists what is still untested). Each call here is refused with the reason its RPC declares.
let t: TestServer;
let operator: PrivilegedPerson;
beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "desk");
});
afterAll(async () => {
  await t?.close();
});

async function refusal(p: Promise<unknown>): Promise<{ code: Code | "ok"; reason: string }> {
  try {
    await p;
    return { code: "ok", reason: "" };
  } catch (err) {
    return { code: ConnectError.from(err).code, reason: Reason[inkanErrorReason(err)] ?? "" };
  }
}

const nobody = "no-such-signer";

describe("declared reasons of the registration and privileged-user services (issue 18)", () => {
  it("an unknown signer is SIGNER_NOT_FOUND for EnableSigner, RevokeDevice, ResetFactors and IssueActivationCode", async () => {
    const ra = createClient(RegistrationService, t.as(operator));
    const outcomes = {
      enable: await refusal(ra.enableSigner({ signerId: nobody, reason: "test" })),
      revokeDevice: await refusal(ra.revokeDevice({ signerId: nobody, deviceKeyId: "k".repeat(43), reason: "test" })),
      reset: await refusal(ra.resetFactors({ signerId: nobody, reason: "test" })),
      issue: await refusal(ra.issueActivationCode({ signerId: nobody })),
    };
    const notFound = { code: Code.NotFound, reason: "SIGNER_NOT_FOUND" };
    expect(outcomes).toEqual({ enable: notFound, revokeDevice: notFound, reset: notFound, issue: notFound });
  });

  it("IssueActivationCode for an active signer is STATE_CONFLICT (the issue's finding: the contract once said INVALID_REQUEST)", async () => {
    const { signerId } = await activeSigner(t, operator);
    expect(await refusal(createClient(RegistrationService, t.as(operator)).issueActivationCode({ signerId }))).toEqual({ code: Code.FailedPrecondition, reason: "STATE_CONFLICT" });
  });

  it("an audit request that breaks its field rules is INVALID_REQUEST for ListAuditRecords, VerifyAuditLog and ExportAuditLog", async () => {
    const auditor = createClient(AuditService, t.as(await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "reader")));
    const invalid = { code: Code.InvalidArgument, reason: "INVALID_REQUEST" };
    expect(await refusal(auditor.listAuditRecords({ actorId: "x".repeat(1025) }))).toEqual(invalid);
    expect(await refusal(auditor.verifyAuditLog({ nodeId: "x".repeat(65) }))).toEqual(invalid);
    expect(await refusal((async () => {
      for await (const _ of auditor.exportAuditLog({ nodeId: "x".repeat(65) })) void _;
    })())).toEqual(invalid);
  });

  it("an unknown privileged user is PRIVILEGED_USER_NOT_FOUND for RemovePrivilegedUser", async () => {
    const so = createClient(PrivilegedUserService, t.adminTransport());
    expect(await refusal(so.removePrivilegedUser({ userId: "no-such-user", reason: "test" }))).toEqual({ code: Code.NotFound, reason: "PRIVILEGED_USER_NOT_FOUND" });
  });
});
