import { createHash, createPublicKey, generateKeyPairSync, randomBytes, verify as verifySignature, type KeyObject } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildKeyImportConsent, buildRSad, type DeviceKey } from "@inkan/sdk";
import { KeyWrapScheme, RegistrationService, type ImportKeyRequest } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { CredentialStatus, HashAlgorithm, KeyAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import canonicalize from "canonicalize";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { CredentialRecord } from "../store/port.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { wrapForImport } from "../testing/key-wrap.js";
import { issueSignerCertificate, signerIssuingCa } from "../testing/signer-certificates.js";
import { activeSigner, testPin } from "../testing/signers.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";

// GetKeyImportTransportKey and ImportKey on the real server (SoftHSM2 + SQLite, mTLS), over gRPC and
// Connect: T-2.1.4.1 (consent with both factors), T-2.1.4.2 (consent names this signer and key),
// T-2.1.4.3 (the key is what is stated; nothing left behind), T-2.1.4.4 (no known key twice).
let t: TestServer;
let operator: PrivilegedPerson;
let records: VerifiedRecords;
let auditor: PrivilegedPerson;

interface Signer {
  signerId: string;
  deviceKey: DeviceKey;
}
type Pair = { privateKey: KeyObject; publicKey: KeyObject };
type Request = Omit<ImportKeyRequest, "$typeName" | "$unknown">;

const ra = (protocol: Protocol = "grpc") => createClient(RegistrationService, t.as(operator, protocol));
const sca = (protocol: Protocol = "grpc") => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
const der = (key: KeyObject) => new Uint8Array(key.export({ type: "spki", format: "der" }));
const ec = (namedCurve: string): Pair => generateKeyPairSync("ec", { namedCurve });

/** The signer's device: a consent over a fresh key-import challenge (device key + PIN in a JWE to the SAM). */
async function consent(o: { signer: Signer; spki: Uint8Array; keyAlgorithm: string; pin?: string; deviceKey?: DeviceKey; challengeFor?: string }) {
  const ch = await createClient(SignerService, t.transport("grpc", t.pki.frontEnd)).createChallenge({ signerId: o.challengeFor ?? o.signer.signerId, purpose: ChallengePurpose.KEY_IMPORT });
  return buildKeyImportConsent({
    signerId: o.signer.signerId, pin: o.pin ?? testPin, deviceKey: o.deviceKey ?? o.signer.deviceKey, publicKeySpki: o.spki,
    keyAlgorithm: o.keyAlgorithm, challenge: ch.challenge, audience: ch.audience, samKey: ch.encryptionKey!,
  });
}

/** An ImportKeyRequest for `pair`, as stated, with the signer's consent; `over` replaces fields. */
async function importRequest(signer: Signer, pair: Pair, keyAlgorithm: KeyAlgorithm, over: Partial<Request> = {}, protocol: Protocol = "grpc"): Promise<Request> {
  const transport = await ra(protocol).getKeyImportTransportKey({});
  const spki = over.publicKeySpki ?? der(pair.publicKey);
  const algorithm = over.keyAlgorithm ?? keyAlgorithm;
  return {
    signerId: signer.signerId,
    transportKeyId: transport.transportKeyId,
    wrapScheme: KeyWrapScheme.RSA_OAEP_AES_KWP,
    ...wrapForImport(pair.privateKey, transport.publicKeyJwk),
    keyAlgorithm: algorithm,
    publicKeySpki: spki,
    assuranceLevel: 0,
    label: "imported",
    certificateChain: [],
    signerConsent: await consent({ signer, spki, keyAlgorithm: `KEY_ALGORITHM_${KeyAlgorithm[algorithm]}` }),
    ...over,
  };
}

/** Signing-key objects on the token (SoftHSM2's file store keeps one file per token object, labels in clear). */
function signingKeyObjects(): number {
  const dir = join(t.dataDir, "tokens");
  let n = 0;
  for (const token of readdirSync(dir)) {
    for (const f of readdirSync(join(dir, token))) {
      if (f.endsWith(".object") && readFileSync(join(dir, token, f)).includes("inkan-key-sign")) n += 1;
    }
  }
  return n;
}

async function failedAttempts(signerId: string): Promise<number> {
  return (await ra().getSigner({ signerId })).signer!.factors!.failedAttempts;
}

/** Signs `message` through the SAP with the imported credential and returns the signature. */
async function signThroughSap(signer: Signer, credentialId: string, message: Buffer, signatureAlgorithm: SignatureAlgorithm, protocol: Protocol): Promise<Uint8Array> {
  const hashes = [new Uint8Array(createHash("sha256").update(message).digest())];
  const begun = await sca(protocol).beginTransaction({ credentialId, signerId: signer.signerId, hashAlgorithm: HashAlgorithm.SHA256, signatureAlgorithm, numSignatures: 1, hashes, description: "imported key" });
  const ch = begun.sadChallenge!;
  const rSad = await buildRSad({
    deviceKey: signer.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
  });
  const { sadToken } = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad });
  const signed = await sca(protocol).signHash({ authorization: { case: "sadToken", value: sadToken }, hashes });
  return signed.signatures[0]!;
}

beforeAll(async () => {
  t = await startTestServer({}, { onRecords: (r) => (records = r) });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "RA operator");
  auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "Auditor");
}, 120_000);

afterAll(async () => {
  await t?.close();
});

describe("GetKeyImportTransportKey", () => {
  it("T-2.1.4.1 returns one RSA-OAEP transport key of at least 3072 bits from the module, without private members, the same on every call", async () => {
    const a = await ra().getKeyImportTransportKey({});
    const b = await ra("connect").getKeyImportTransportKey({});
    expect(b.transportKeyId).toBe(a.transportKeyId);
    const jwk = JSON.parse(a.publicKeyJwk) as Record<string, string>;
    expect(jwk).toMatchObject({ kty: "RSA", alg: "RSA-OAEP", kid: a.transportKeyId });
    for (const m of ["d", "p", "q", "dp", "dq", "qi"]) expect(jwk[m]).toBeUndefined();
    const key = createPublicKey({ key: Buffer.from(a.publicKeySpki), format: "der", type: "spki" });
    expect(key.asymmetricKeyDetails?.modulusLength).toBeGreaterThanOrEqual(3072);
    expect(key.export({ format: "jwk" }).n).toBe(jwk.n);
    expect(a.wrapScheme).toBe(KeyWrapScheme.RSA_OAEP_AES_KWP);
    const left = a.expiresAt!.seconds - BigInt(Math.floor(Date.now() / 1000));
    expect(left).toBeGreaterThan(86_400n);
  });

  it("an SCA certificate cannot fetch it (registration operator only)", async () => {
    const asSca = createClient(RegistrationService, t.transport("grpc", t.pki.sca));
    expect((await refusalOf(asSca.getKeyImportTransportKey({}))).code).toBe(Code.PermissionDenied);
  });
});

describe.each(["grpc", "connect"] as const)("ImportKey over %s", (protocol) => {
  it.each([
    ["EC P-256", KeyAlgorithm.EC_P256, () => ec("P-256"), SignatureAlgorithm.ECDSA],
    ["RSA 2048", KeyAlgorithm.RSA_2048, () => generateKeyPairSync("rsa", { modulusLength: 2048 }), SignatureAlgorithm.RSA_PKCS1_V1_5],
  ])("T-2.1.4.1 T-2.1.4.3 imports an %s key with the signer's consent and a certificate chain: ACTIVE, IMPORTED, and it signs through the SAP for the stated public key", async (_n, algorithm, make, signatureAlgorithm) => {
    const signer = await activeSigner(t, operator);
    const pair = make();
    const before = signingKeyObjects();
    const certificate = await issueSignerCertificate(await signerIssuingCa(t), der(pair.publicKey));
    const { credential } = await ra(protocol).importKey(await importRequest(signer, pair, algorithm, { certificateChain: [certificate] }, protocol));
    expect(credential).toMatchObject({ signerId: signer.signerId, status: CredentialStatus.ACTIVE, origin: 2, keyAlgorithm: algorithm });
    expect(Buffer.from(credential!.publicKeySpki)).toEqual(Buffer.from(der(pair.publicKey)));
    expect(signingKeyObjects()).toBe(before + 1);
    const message = randomBytes(64);
    const signature = await signThroughSap(signer, credential!.credentialId, message, signatureAlgorithm, protocol);
    expect(verifySignature("sha256", message, pair.publicKey, signature)).toBe(true);
  });
});

describe("ImportKey refusals", () => {
  it("T-2.1.4.1 without a certificate chain the credential starts KEY_GENERATED; the import is audited as key.imported", async () => {
    const signer = await activeSigner(t, operator);
    const { credential } = await ra().importKey(await importRequest(signer, ec("P-384"), KeyAlgorithm.EC_P384));
    expect(credential!.status).toBe(CredentialStatus.KEY_GENERATED);
    expect(credential!.origin).toBe(2);
    const { records: trail } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 } });
    const imported = trail.filter((r) => r.eventType === "key.imported" && r.credentialId === credential!.credentialId);
    expect(imported).toHaveLength(1);
    expect(imported[0]!.details["public_key_sha256"]).toBe(Buffer.from(credential!.publicKeyFingerprint).toString("hex"));
    expect(imported[0]!.actor?.id).toBe(operator.userId);
    const verified = trail.filter((r) => r.eventType === "factor.verified" && r.signerId === signer.signerId).map((r) => r.details["factor"]);
    expect(verified).toEqual(expect.arrayContaining(["DEVICE_KEY", "PIN"]));
    expect(JSON.stringify(trail, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))).not.toContain(testPin);
  });

  it("T-2.1.4.4 a key imported twice, and a key the SAM already holds (generated or destroyed), is refused with ALREADY_EXISTS and nothing is left in the module", async () => {
    const signer = await activeSigner(t, operator);
    const pair = ec("P-256");
    await ra().importKey(await importRequest(signer, pair, KeyAlgorithm.EC_P256));
    const before = signingKeyObjects();
    expect((await refusalOf(ra("connect").importKey(await importRequest(signer, pair, KeyAlgorithm.EC_P256, {}, "connect")))).reason).toBe(Reason.ALREADY_EXISTS);
    const other = await activeSigner(t, operator);
    expect((await refusalOf(ra().importKey(await importRequest(other, pair, KeyAlgorithm.EC_P256)))).reason).toBe(Reason.ALREADY_EXISTS);
    expect(signingKeyObjects()).toBe(before);

    // A credential generated by the SAM (its sealed record, set up directly) and later destroyed: its key stays known.
    for (const status of ["ACTIVE", "DESTROYED"] as const) {
      const known = ec("P-256");
      const spki = der(known.publicKey);
      const fingerprint = createHash("sha256").update(spki).digest("hex");
      await records.create<CredentialRecord>({
        kind: "credential", id: `crd-generated-${status}-${fingerprint.slice(0, 8)}`, version: 1, signerId: other.signerId, status, publicKeyFingerprint: fingerprint,
        body: canonicalize({ keyId: "00", keyUri: "pkcs11:id=%00", keyAlgorithm: "EC_P256", assuranceLevel: 1, origin: "GENERATED", publicKeySpki: Buffer.from(spki).toString("base64"), label: "", createdAt: new Date().toISOString(), createdBy: operator.userId, updatedAt: new Date().toISOString(), statusReason: "" })!,
      });
      expect((await refusalOf(ra().importKey(await importRequest(signer, known, KeyAlgorithm.EC_P256)))).reason).toBe(Reason.ALREADY_EXISTS);
    }
    expect(signingKeyObjects()).toBe(before);
  });

  it("T-2.1.4.2 a consent that names signer A, sent for signer B: AUTHENTICATION_FAILED, counted against the operator, not B (issue 13 finding 5)", async () => {
    const a = await activeSigner(t, operator);
    const b = await activeSigner(t, operator);
    const pair = ec("P-256");
    const req = await importRequest(a, pair, KeyAlgorithm.EC_P256);
    expect(await refusalOf(ra().importKey({ ...req, signerId: b.signerId }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
    expect(await failedAttempts(b.signerId)).toBe(0);
  });

  it("T-2.1.4.3 a key that is not what is stated (P-384 stated for a P-256 key; the SPKI of another key): KEY_MISMATCH, the unwrapped object is gone", async () => {
    const signer = await activeSigner(t, operator);
    const pair = ec("P-256");
    const before = signingKeyObjects();
    const p384 = der(ec("P-384").publicKey);
    const stated384 = await importRequest(signer, pair, KeyAlgorithm.EC_P256, { keyAlgorithm: KeyAlgorithm.EC_P384, publicKeySpki: p384 });
    expect(await refusalOf(ra().importKey(stated384))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.KEY_MISMATCH });
    const otherSpki = await importRequest(signer, pair, KeyAlgorithm.EC_P256, { publicKeySpki: der(ec("P-256").publicKey) });
    expect(await refusalOf(ra("connect").importKey(otherSpki))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.KEY_MISMATCH });
    expect(signingKeyObjects()).toBe(before);
    expect(await failedAttempts(signer.signerId)).toBe(0); // the consent was valid: a key mismatch is not a factor failure
  });

  it("T-2.1.4.1 a consent missing, by another device, or with a wrong PIN: AUTHENTICATION_FAILED; only the wrong PIN counts toward the signer's lockout (the others against the operator, issue 13 finding 5)", async () => {
    const signer = await activeSigner(t, operator);
    const other = await activeSigner(t, operator);
    const pair = ec("P-256");
    const spki = der(pair.publicKey);
    const base = await importRequest(signer, pair, KeyAlgorithm.EC_P256);
    const consents = [
      "e30.e30.e30.e30.e30", // no consent: a well-formed string that is not a JWE to the SAM
      await consent({ signer, spki, keyAlgorithm: "KEY_ALGORITHM_EC_P256", deviceKey: other.deviceKey }),
      await consent({ signer, spki, keyAlgorithm: "KEY_ALGORITHM_EC_P256", pin: "999999999" }),
    ];
    for (const [i, signerConsent] of consents.entries()) {
      expect(await refusalOf(ra().importKey({ ...base, signerConsent }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
      expect(await failedAttempts(signer.signerId)).toBe([0, 0, 1][i]);
    }
  });

  it("T-2.1.4.1 a replayed consent: NONCE_REPLAYED, not counted", async () => {
    const signer = await activeSigner(t, operator);
    const pair = ec("P-256");
    const req = await importRequest(signer, pair, KeyAlgorithm.EC_P256);
    await ra().importKey(req);
    const replay = await refusalOf(ra().importKey({ ...req, ...wrapForImport(pair.privateKey, (await ra().getKeyImportTransportKey({})).publicKeyJwk) }));
    expect(replay).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
    expect(await failedAttempts(signer.signerId)).toBe(0);
  });

  it("T-2.1.4.1 a garbage wrapped key: INVALID_REQUEST, nothing left in the module; an unknown transport key: INVALID_REQUEST", async () => {
    const signer = await activeSigner(t, operator);
    const before = signingKeyObjects();
    const req = await importRequest(signer, ec("P-256"), KeyAlgorithm.EC_P256);
    expect(await refusalOf(ra().importKey({ ...req, wrappedPrivateKey: randomBytes(200) }))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    const again = await importRequest(signer, ec("P-256"), KeyAlgorithm.EC_P256);
    expect(await refusalOf(ra().importKey({ ...again, transportKeyId: "no-such-key" }))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect(signingKeyObjects()).toBe(before);
  });

  it("T-2.1.4.1 a well-wrapped blob that is not a PKCS#8 key: INVALID_REQUEST, nothing left in the module", async () => {
    const signer = await activeSigner(t, operator);
    const before = signingKeyObjects();
    const pair = ec("P-256");
    const req = await importRequest(signer, pair, KeyAlgorithm.EC_P256);
    const transport = await ra().getKeyImportTransportKey({});
    const notPkcs8 = { export: () => randomBytes(120) } as unknown as KeyObject; // what an importer's bug would wrap
    expect(await refusalOf(ra().importKey({ ...req, ...wrapForImport(notPkcs8, transport.publicKeyJwk) }))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect(signingKeyObjects()).toBe(before);
  });

  it("a key algorithm the policy does not allow (Ed25519 by default): ALGORITHM_NOT_ALLOWED before the consent is used", async () => {
    const signer = await activeSigner(t, operator);
    const pair = generateKeyPairSync("ed25519");
    const req = await importRequest(signer, pair, KeyAlgorithm.ED25519);
    expect(await refusalOf(ra().importKey(req))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.ALGORITHM_NOT_ALLOWED });
    expect(await failedAttempts(signer.signerId)).toBe(0);
  });

  it("T-2.1.4.1 at the policy's lockout threshold the signer is locked: the next ImportKey is refused with CREDENTIAL_LOCKED", async () => {
    const signer = await activeSigner(t, operator);
    const pair = ec("P-256");
    const spki = der(pair.publicKey);
    const base = await importRequest(signer, pair, KeyAlgorithm.EC_P256);
    for (let i = 0; i < 5; i += 1) {
      const wrongPin = await consent({ signer, spki, keyAlgorithm: "KEY_ALGORITHM_EC_P256", pin: "135792468" });
      expect((await refusalOf(ra().importKey({ ...base, signerConsent: wrongPin }))).reason).toBe(Reason.AUTHENTICATION_FAILED);
    }
    expect(await refusalOf(ra().importKey(await importRequest(signer, pair, KeyAlgorithm.EC_P256)))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_LOCKED });
  });

  it("T-2.1.4.4 two concurrent imports of one key for two signers: exactly one credential, the other ALREADY_EXISTS, one key object left", async () => {
    const [a, b] = [await activeSigner(t, operator), await activeSigner(t, operator)];
    const pair = ec("P-256");
    const requests = [await importRequest(a, pair, KeyAlgorithm.EC_P256), await importRequest(b, pair, KeyAlgorithm.EC_P256)];
    const before = signingKeyObjects();
    const results = await Promise.allSettled(requests.map((r) => ra().importKey(r)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const lost = results.find((r) => r.status === "rejected")!;
    expect((await refusalOf(Promise.reject((lost as PromiseRejectedResult).reason))).reason).toBe(Reason.ALREADY_EXISTS);
    expect(signingKeyObjects()).toBe(before + 1);
  });

  it("T-2.1.4.1 a certificate chain for another key: KEY_MISMATCH and the imported key is destroyed", async () => {
    const signer = await activeSigner(t, operator);
    const before = signingKeyObjects();
    const certificate = await issueSignerCertificate(await signerIssuingCa(t), der(ec("P-256").publicKey));
    const req = await importRequest(signer, ec("P-256"), KeyAlgorithm.EC_P256, { certificateChain: [certificate] });
    expect((await refusalOf(ra().importKey(req))).reason).toBe(Reason.KEY_MISMATCH);
    expect(signingKeyObjects()).toBe(before);
  });
});
