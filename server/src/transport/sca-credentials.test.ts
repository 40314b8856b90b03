import { createHash } from "node:crypto";
import { toJsonString } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { Reason } from "@inkan/sdk";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import {
  AuthenticationMethod,
  GetCredentialResponseSchema,
  ListCredentialsResponseSchema,
  SignatureActivationService,
} from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { AssuranceLevel, CertificateStatus, CredentialStatus, HashAlgorithm, KeyAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSigner as activeSignerHelper, enrolledSigner, testPin } from "../testing/signers.js";

// SignatureActivationService.ListCredentials and GetCredential on the real server (SoftHSM2 +
// SQLite, gRPC with mTLS), as an SCA: only an ACTIVE signer's credentials, and NOT_FOUND, never
// PERMISSION_DENIED, for everything outside that scope.
let t: TestServer;
let operator: PrivilegedPerson;

const ra = () => createClient(RegistrationService, t.as(operator));
const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const PIN = testPin;

const errorOf = refusalOf;

const enrolled = () => enrolledSigner(t, operator);
const activeSigner = () => activeSignerHelper(t, operator, PIN);

const generate = async (signerId: string, keyAlgorithm: KeyAlgorithm, label = "") => (await ra().generateKey({ signerId, keyAlgorithm, label })).credential!;

beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-sca-credentials");
});
afterAll(async () => {
  await t?.close();
});

describe("SCA credential reads (R-3.1.1.3)", () => {
  it("R-3.1.1.3: an SCA lists an ACTIVE signer's credentials and gets one, with the key GenerateKey returned and nothing secret", async () => {
    const { signerId, code } = await activeSigner();
    const ec = await generate(signerId, KeyAlgorithm.EC_P256, "Qualified signature");
    const rsa = await generate(signerId, KeyAlgorithm.RSA_2048);

    const listed = await sca().listCredentials({ signerId });
    expect(listed.credentials.map((c) => c.credentialId)).toEqual([ec.credentialId, rsa.credentialId]);
    expect(listed.page?.nextPageToken).toBe("");
    const first = listed.credentials[0]!;
    expect(first).toMatchObject({
      signerId,
      label: "Qualified signature",
      status: CredentialStatus.KEY_GENERATED,
      keyAlgorithm: KeyAlgorithm.EC_P256,
      assuranceLevel: AssuranceLevel.ASSURANCE_LEVEL_2,
      signatureAlgorithms: [SignatureAlgorithm.ECDSA],
      hashAlgorithms: [HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512],
      authenticationMethods: [AuthenticationMethod.DEVICE_KEY_AND_PIN, AuthenticationMethod.PIN_AND_TOTP],
      maxSignaturesPerTransaction: 100_000,
    });
    expect(first.publicKeySpki).toEqual(ec.publicKeySpki);
    expect(first.publicKeyFingerprint).toEqual(new Uint8Array(createHash("sha256").update(ec.publicKeySpki).digest()));
    expect(first.certificate?.status).toBe(CertificateStatus.UNSPECIFIED);
    expect(listed.credentials[1]).toMatchObject({ keyAlgorithm: KeyAlgorithm.RSA_2048, signatureAlgorithms: [SignatureAlgorithm.RSA_PKCS1_V1_5, SignatureAlgorithm.RSA_PSS] });
    expect(listed.credentials[1]!.publicKeySpki).toEqual(rsa.publicKeySpki);

    const got = await sca().getCredential({ credentialId: ec.credentialId });
    expect(got.credential).toEqual(first);

    // No key id, no private key, no PIN, no activation code (T-2.2.2.3).
    for (const text of [toJsonString(ListCredentialsResponseSchema, listed), toJsonString(GetCredentialResponseSchema, got)]) {
      for (const needle of [PIN, code, ec.keyId, '"d"', "keyId", "keyUri", "pkcs11:"]) expect(text).not.toContain(needle);
    }
  });

  it("R-3.1.1.3: pages are ordered by credential id, bound to their filters, and filter by status", async () => {
    const { signerId } = await activeSigner();
    const a = await generate(signerId, KeyAlgorithm.EC_P256);
    const b = await generate(signerId, KeyAlgorithm.EC_P384);
    const p1 = await sca().listCredentials({ signerId, page: { pageSize: 1 } });
    expect(p1.credentials.map((c) => c.credentialId)).toEqual([a.credentialId]);
    const p2 = await sca().listCredentials({ signerId, page: { pageSize: 1, pageToken: p1.page!.nextPageToken } });
    expect(p2.credentials.map((c) => c.credentialId)).toEqual([b.credentialId]);
    expect(p2.page?.nextPageToken).toBe("");
    expect(await errorOf(sca().listCredentials({ signerId, statuses: [CredentialStatus.ACTIVE], page: { pageSize: 1, pageToken: p1.page!.nextPageToken } })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect((await sca().listCredentials({ signerId, statuses: [CredentialStatus.ACTIVE] })).credentials).toEqual([]);
    expect((await sca().listCredentials({ signerId, statuses: [CredentialStatus.KEY_GENERATED] })).credentials).toHaveLength(2);
    // DESTROYED credentials are never shown, even when asked for.
    expect((await sca().listCredentials({ signerId, statuses: [CredentialStatus.DESTROYED] })).credentials).toEqual([]);
  });

  it("R-3.1.1.3: a PENDING_ACTIVATION, disabled or unknown signer is NOT_FOUND SIGNER_NOT_FOUND, all alike, and its credentials CREDENTIAL_NOT_FOUND", async () => {
    const pending = await enrolled();
    const pendingKey = await generate(pending.signerId, KeyAlgorithm.EC_P256);
    const disabled = await activeSigner();
    const disabledKey = await generate(disabled.signerId, KeyAlgorithm.EC_P256);
    expect((await sca().listCredentials({ signerId: disabled.signerId })).credentials).toHaveLength(1);
    await ra().disableSigner({ signerId: disabled.signerId, reason: "identity document revoked" });

    const unknown = await errorOf(sca().listCredentials({ signerId: "sgn-nobody" }));
    expect(unknown).toMatchObject({ code: Code.NotFound, reason: Reason.SIGNER_NOT_FOUND });
    for (const signerId of [pending.signerId, disabled.signerId]) {
      expect(await errorOf(sca().listCredentials({ signerId }))).toEqual(unknown);
    }
    const noCredential = await errorOf(sca().getCredential({ credentialId: "crd-nothing" }));
    expect(noCredential).toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
    for (const c of [pendingKey, disabledKey]) {
      expect(await errorOf(sca().getCredential({ credentialId: c.credentialId }))).toEqual(noCredential);
    }
  });

  it("R-3.1.1.3: a signer's listing never holds another signer's credential, and another signer's credential id outside the scope is CREDENTIAL_NOT_FOUND", async () => {
    const mine = await activeSigner();
    const myKey = await generate(mine.signerId, KeyAlgorithm.EC_P256);
    const other = await enrolled(); // not ACTIVE: outside the SCA's scope
    const otherKey = await generate(other.signerId, KeyAlgorithm.EC_P256);
    const listed = await sca().listCredentials({ signerId: mine.signerId, page: { pageSize: 1000 } });
    expect(listed.credentials.map((c) => c.credentialId)).toEqual([myKey.credentialId]);
    expect(listed.credentials.every((c) => c.signerId === mine.signerId)).toBe(true);
    expect(await errorOf(sca().getCredential({ credentialId: otherKey.credentialId }))).toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
  });

  it("R-3.1.1.3: a privileged user's certificate is PERMISSION_DENIED", async () => {
    const { signerId } = await activeSigner();
    const key = await generate(signerId, KeyAlgorithm.EC_P256);
    const asOperator = createClient(SignatureActivationService, t.as(operator));
    expect(await errorOf(asOperator.listCredentials({ signerId }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
    expect(await errorOf(asOperator.getCredential({ credentialId: key.credentialId }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
  });
});
