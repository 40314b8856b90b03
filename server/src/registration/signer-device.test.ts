import { Code, createClient } from "@connectrpc/connect";
import { buildRSadFor, createDeviceKey, createInkanClient, Reason, signDeviceJws, type DeviceKey } from "@inkan/sdk";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { CredentialStatus } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSigner, activeSignerWithCredential, testPin } from "../testing/signers.js";
import { authorizationHistoryTyp, deviceAuthenticationTyp } from "./signer-device.js";

let t: TestServer;
let operator: PrivilegedPerson;
const frontEnd = () => createClient(SignerService, t.transport("grpc", t.pki.frontEnd));

beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-signer-device");
});
afterAll(async () => t?.close());

async function proof(signerId: string, deviceKey: DeviceKey, purpose = ChallengePurpose.DEVICE_AUTHENTICATION, typ = deviceAuthenticationTyp, challengeFor = signerId) {
  const ch = await frontEnd().createChallenge({ signerId: challengeFor, purpose });
  return signDeviceJws({ deviceKey, typ, signerId, audience: ch.audience, challenge: ch.challenge });
}

describe("AuthenticateDevice (issue 15: the portal shows a signer's requests only to that signer's device)", () => {
  it("accepts a JWS by the signer's registered device key and lists the signer's credentials", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const res = await frontEnd().authenticateDevice({ signerId: s.signerId, deviceProof: await proof(s.signerId, s.deviceKey) });
    expect(res.signerId).toBe(s.signerId);
    expect(res.deviceKeyId).toBe(s.deviceKey.kid);
    expect(res.credentials).toEqual([expect.objectContaining({ credentialId: s.credential.credentialId, status: CredentialStatus.ACTIVE })]);
  });

  it("T-2.3.1.1: refuses a device key registered to no signer, and another signer's device key", async () => {
    const a = await activeSigner(t, operator);
    const b = await activeSigner(t, operator);
    const stranger = await createDeviceKey();
    expect(await refusalOf(frontEnd().authenticateDevice({ signerId: a.signerId, deviceProof: await proof(a.signerId, stranger) })))
      .toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
    expect(await refusalOf(frontEnd().authenticateDevice({ signerId: a.signerId, deviceProof: await proof(a.signerId, b.deviceKey) })))
      .toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
  });

  it("T-2.3.1.2: a proof works once; a challenge of another purpose or signer does not work", async () => {
    const a = await activeSigner(t, operator);
    const b = await activeSigner(t, operator);
    const once = await proof(a.signerId, a.deviceKey);
    await frontEnd().authenticateDevice({ signerId: a.signerId, deviceProof: once });
    expect(await refusalOf(frontEnd().authenticateDevice({ signerId: a.signerId, deviceProof: once }))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
    const pinChange = await proof(a.signerId, a.deviceKey, ChallengePurpose.PIN_CHANGE);
    expect(await refusalOf(frontEnd().authenticateDevice({ signerId: a.signerId, deviceProof: pinChange }))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
    // b's challenge, signed by a's key as a's request: the challenge is bound to b.
    const redirected = await proof(a.signerId, a.deviceKey, ChallengePurpose.DEVICE_AUTHENTICATION, deviceAuthenticationTyp, b.signerId);
    expect(await refusalOf(frontEnd().authenticateDevice({ signerId: a.signerId, deviceProof: redirected }))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
  });

  it("refuses a proof with another typ (a history request is no authentication)", async () => {
    const a = await activeSigner(t, operator);
    const wrongTyp = await proof(a.signerId, a.deviceKey, ChallengePurpose.DEVICE_AUTHENTICATION, authorizationHistoryTyp);
    expect(await refusalOf(frontEnd().authenticateDevice({ signerId: a.signerId, deviceProof: wrongTyp }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
  });
});

describe("ListAuthorizations (issue 15: the signer sees what was authorized in their name)", () => {
  it("lists the signer's accepted and refused R.SADs, newest first, and only the signer's", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const other = await activeSignerWithCredential(t, operator);
    const inkan = createInkanClient({ baseUrl: t.server.url, tls: { ca: t.pki.ca, ...t.pki.sca } });
    const hash = createHash("sha256").update("doc").digest();
    const refusedTx = await inkan.beginTransaction({ signerId: s.signerId, credentialId: s.credential.credentialId, hashes: [hash], description: "wrong PIN" });
    await expect(refusedTx.authorize(await buildRSadFor(refusedTx.challenge, { deviceKey: s.deviceKey, pin: "999999999", challengeSigningKey: s.challengeSigningKey }))).rejects.toThrow();
    const tx = await inkan.beginTransaction({ signerId: s.signerId, credentialId: s.credential.credentialId, hashes: [hash], description: "ok" });
    await tx.authorize(await buildRSadFor(tx.challenge, { deviceKey: s.deviceKey, pin: testPin, challengeSigningKey: s.challengeSigningKey }));
    const otherTx = await inkan.beginTransaction({ signerId: other.signerId, credentialId: other.credential.credentialId, hashes: [hash], description: "other" });
    await otherTx.authorize(await buildRSadFor(otherTx.challenge, { deviceKey: other.deviceKey, pin: testPin, challengeSigningKey: other.challengeSigningKey }));

    const res = await frontEnd().listAuthorizations({ signerId: s.signerId, historyRequest: await proof(s.signerId, s.deviceKey, ChallengePurpose.AUTHORIZATION_HISTORY, authorizationHistoryTyp) });
    expect(res.authorizations.map((a) => [a.transactionId, a.authorized])).toEqual([[tx.id, true], [refusedTx.id, false]]);
    expect(res.authorizations[1]!.refusalReason).toBe("REASON_AUTHENTICATION_FAILED");
    expect(res.authorizations[0]!.sca).not.toBe("");
  });

  it("T-2.3.1.1: refuses another signer's device key", async () => {
    const a = await activeSigner(t, operator);
    const b = await activeSigner(t, operator);
    const req = await proof(a.signerId, b.deviceKey, ChallengePurpose.AUTHORIZATION_HISTORY, authorizationHistoryTyp);
    expect(await refusalOf(frontEnd().listAuthorizations({ signerId: a.signerId, historyRequest: req }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
  });
});

describe("a disabled signer's device (issue 15)", () => {
  it("SIGNER_INACTIVE for AuthenticateDevice and ListAuthorizations; a history request works once", async () => {
    const s = await activeSigner(t, operator);
    const history = await proof(s.signerId, s.deviceKey, ChallengePurpose.AUTHORIZATION_HISTORY, authorizationHistoryTyp);
    await frontEnd().listAuthorizations({ signerId: s.signerId, historyRequest: history });
    expect(await refusalOf(frontEnd().listAuthorizations({ signerId: s.signerId, historyRequest: history }))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
    await createClient(RegistrationService, t.as(operator)).disableSigner({ signerId: s.signerId, reason: "left the company" });
    expect(await refusalOf(frontEnd().authenticateDevice({ signerId: s.signerId, deviceProof: await proof(s.signerId, s.deviceKey) })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.SIGNER_INACTIVE });
    const later = await proof(s.signerId, s.deviceKey, ChallengePurpose.AUTHORIZATION_HISTORY, authorizationHistoryTyp);
    expect(await refusalOf(frontEnd().listAuthorizations({ signerId: s.signerId, historyRequest: later }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.SIGNER_INACTIVE });
  });
});
