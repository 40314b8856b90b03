import { generateKeyPairSync, randomBytes } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildKeyImportConsent, buildPinChangeRequest, type DeviceKey } from "@inkan/sdk";
import { ApprovalRequirement, type SecurityPolicy } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { IdentityProofingMethod, KeyWrapScheme, RegistrationService, SignerKind } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createCertificateAuthority, issueSignerCertificate } from "../pki/dev-pki.js";
import { transportKeyLifetimeMs } from "../keys/key-import-transport-key.js";
import { wrapForImport } from "../testing/key-wrap.js";
import { approvedPolicyChange } from "../testing/policy-change.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSigner, activeSignerWithCredential, enrolledSigner, testPin } from "../testing/signers.js";

// Issue 18, item 1: the reasons RegistrationService declares for an RPC that no other test
// produced, each produced here over the real server (SoftHSM2 + SQLite, mTLS), so the error
// contract's coverage check (testing/error-contract.global.ts) sees them.
let t: TestServer;
let operator: PrivilegedPerson;
let so2: PrivilegedPerson;

const ra = (who: PrivilegedPerson = operator) => createClient(RegistrationService, t.as(who));
const device = () => createClient(SignerService, t.transport("grpc", t.pki.frontEnd));

const identity = (externalId: string) => ({
  kind: SignerKind.NATURAL_PERSON, legalName: "Suzuki Ichiro", displayName: "Suzuki", email: `ichiro.${randomBytes(4).toString("hex")}@example.jp`, country: "JP", externalId,
});
const proofing = () => ({ method: IdentityProofingMethod.IN_PERSON, evidenceReference: "RA-9", proofedAt: timestampFromDate(new Date(Date.now() - 60_000)) });

/** An ImportKey request well formed enough for the signer checks, which come before anything else is read. */
const importKeyRequest = (signerId: string) => ({
  signerId, transportKeyId: "tk-unused", wrapScheme: KeyWrapScheme.RSA_OAEP_AES_KWP, encryptedKek: randomBytes(256), wrappedPrivateKey: randomBytes(40),
  keyAlgorithm: KeyAlgorithm.EC_P256, publicKeySpki: randomBytes(91), label: "imported", certificateChain: [], signerConsent: "a.b.c.d.e",
});

/** A security-policy change by the first security officer, approved by so2 (dual control). */
const changePolicy = (change: (p: SecurityPolicy) => void): Promise<void> => approvedPolicyChange(t, so2, change);

/** The policy's lockout threshold (5) of wrong old PINs in ChangePin: the signer and its credentials are LOCKED. */
async function lockOut(signerId: string, deviceKey: DeviceKey): Promise<void> {
  for (let i = 0; i < 5; i += 1) {
    const ch = await device().createChallenge({ signerId, purpose: ChallengePurpose.PIN_CHANGE });
    const req = await buildPinChangeRequest({ signerId, oldPin: "000000000", newPin: "975318642", deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
    expect((await refusalOf(device().changePin(req))).reason).toBe(Reason.AUTHENTICATION_FAILED);
  }
}

beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-registration-reasons");
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "second-officer-registration-reasons");
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("RegistrationService: declared reasons (issue 18, item 1)", () => {
  it("UpdateSigner of an unknown signer is SIGNER_NOT_FOUND; with another signer's external_id ALREADY_EXISTS", async () => {
    expect(await refusalOf(ra().updateSigner({ signerId: "sgn-does-not-exist", expectedVersion: 1n, identity: identity(""), proofing: proofing() })))
      .toMatchObject({ code: Code.NotFound, reason: Reason.SIGNER_NOT_FOUND });
    const taken = `hr-${randomBytes(4).toString("hex")}`;
    await ra().enrollSigner({ identity: identity(taken), proofing: proofing() });
    const { signer } = await ra().enrollSigner({ identity: identity(""), proofing: proofing() });
    expect(await refusalOf(ra().updateSigner({ signerId: signer!.signerId, expectedVersion: signer!.version, identity: identity(taken), proofing: proofing() })))
      .toMatchObject({ code: Code.AlreadyExists, reason: Reason.ALREADY_EXISTS });
  });

  it("R-3.3.x: ResetFactors of a disabled signer is SIGNER_INACTIVE; ImportKey for an unknown signer is SIGNER_NOT_FOUND, for one not activated SIGNER_INACTIVE", async () => {
    const s = await activeSigner(t, operator);
    await ra().disableSigner({ signerId: s.signerId, reason: "left the company" });
    expect(await refusalOf(ra().resetFactors({ signerId: s.signerId, reason: "device lost" }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.SIGNER_INACTIVE });
    expect(await refusalOf(ra().importKey(importKeyRequest("sgn-does-not-exist")))).toMatchObject({ code: Code.NotFound, reason: Reason.SIGNER_NOT_FOUND });
    const pending = await enrolledSigner(t, operator);
    expect(await refusalOf(ra().importKey(importKeyRequest(pending.signerId)))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.SIGNER_INACTIVE });
  });

  it("T-2.1.4.1: ImportKey with a certificate chain from an issuing CA the policy does not trust is CERTIFICATE_INVALID", async () => {
    const s = await activeSigner(t, operator);
    const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const spki = new Uint8Array(pair.publicKey.export({ type: "spki", format: "der" }));
    const transport = await ra().getKeyImportTransportKey({});
    const ch = await device().createChallenge({ signerId: s.signerId, purpose: ChallengePurpose.KEY_IMPORT });
    const signerConsent = await buildKeyImportConsent({
      signerId: s.signerId, pin: testPin, deviceKey: s.deviceKey, publicKeySpki: spki, keyAlgorithm: "KEY_ALGORITHM_EC_P256", challenge: ch.challenge, audience: ch.audience, samKey: ch.encryptionKey!,
    });
    const untrusted = await issueSignerCertificate(await createCertificateAuthority("Not an issuing CA of this SAM"), spki);
    expect(await refusalOf(ra().importKey({
      signerId: s.signerId, transportKeyId: transport.transportKeyId, wrapScheme: KeyWrapScheme.RSA_OAEP_AES_KWP, ...wrapForImport(pair.privateKey, transport.publicKeyJwk),
      keyAlgorithm: KeyAlgorithm.EC_P256, publicKeySpki: spki, label: "imported", certificateChain: [untrusted], signerConsent,
    }))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.CERTIFICATE_INVALID });
  }, 30_000);

  it("T-2.1.4.1: ImportKey under a transport key past its lifetime is EXPIRED, before the consent is used", async () => {
    const s = await activeSigner(t, operator);
    const { transportKeyId } = await ra().getKeyImportTransportKey({});
    // Time passes (31 days) for the server and this client alike: they share this process's Date,
    // so request signatures, nonces and the consent still fit; the transport key does not.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + transportKeyLifetimeMs + 86_400_000 });
    try {
      expect(await refusalOf(ra().importKey({ ...importKeyRequest(s.signerId), transportKeyId }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.EXPIRED });
    } finally {
      vi.useRealTimers();
    }
  }, 30_000);

  it("R-3.1.3.2: PrepareCsr on a suspended credential is CREDENTIAL_SUSPENDED, on a locked one CREDENTIAL_LOCKED", async () => {
    const suspended = await activeSignerWithCredential(t, operator);
    await ra().suspendCredential({ credentialId: suspended.credential.credentialId, reason: "lost phone" });
    expect(await refusalOf(ra().prepareCsr({ credentialId: suspended.credential.credentialId, subject: "CN=Suzuki Ichiro" })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED });
    const locked = await activeSignerWithCredential(t, operator);
    await lockOut(locked.signerId, locked.deviceKey);
    expect(await refusalOf(ra().prepareCsr({ credentialId: locked.credential.credentialId, subject: "CN=Suzuki Ichiro" })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_LOCKED });
  }, 30_000);

  it("R-3.3.x: with dual control for key destruction switched off, DestroyCredential of an unknown credential is CREDENTIAL_NOT_FOUND at once", async () => {
    await changePolicy((p) => {
      p.dualControl!.credentialDestruction = ApprovalRequirement.SINGLE_CONTROL;
    });
    expect(await refusalOf(ra(t.firstSecurityOfficer).destroyCredential({ credentialId: "crd-does-not-exist", publicKeyFingerprint: new Uint8Array(32).fill(7), reason: "signer deceased" })))
      .toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
  }, 30_000);
});
