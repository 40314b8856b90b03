import { createHash, createPublicKey, randomBytes, verify as verifySignature } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clone } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, buildActivationRequest, buildClaimsRSad, buildRSad, createDeviceKey, openTotpEnrollment, type ClaimsRSadFactors, type DeviceKey } from "@inkan/sdk";
import { PolicyService, SecurityPolicySchema } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { IdentityProofingMethod, RegistrationService, SignerKind } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { AuthenticationMethod, SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { AssuranceLevel, HashAlgorithm, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { CredentialRecord } from "../store/port.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { testPin } from "../testing/signers.js";
import { hotp, totpStep } from "./totp-check.js";
import { totpSecretOf } from "../testing/totp.js";

// Authorize with the methods beyond device key + PIN on the real server (SoftHSM2 + SQLite, mTLS),
// over gRPC and Connect: PIN + TOTP (level 2), PIN alone and the login assertion (level 1), and
// the credential's level enforced (R-3.1.4, R-3.2.1.1, T-2.2.1.3, T-2.2.1.7, T-2.1.2.2).

const issuer = "https://op.rssp.example";
const clientId = "inkan-sam";
const allMethods = [AuthenticationMethod.DEVICE_KEY_AND_PIN, AuthenticationMethod.PIN_AND_TOTP, AuthenticationMethod.PIN, AuthenticationMethod.LOGIN_ASSERTION];

interface Signer {
  signerId: string;
  externalId: string;
  deviceKey: DeviceKey;
  totpSecret: Uint8Array;
  /** Level 1 and level 2 credentials, both ACTIVE. */
  level1: { credentialId: string; spki: Uint8Array };
  level2: { credentialId: string; spki: Uint8Array };
}

/** Two security officers change the policy (dual control): levels 1 and 2, and `methods` enabled. */
async function allowLevels(t: TestServer, so2: PrivilegedPerson, methods: AuthenticationMethod[]) {
  const policies = createClient(PolicyService, t.adminTransport());
  const { record } = await policies.getSecurityPolicy({});
  const policy = clone(SecurityPolicySchema, record!.policy!);
  policy.allowedAssuranceLevels = [AssuranceLevel.ASSURANCE_LEVEL_1, AssuranceLevel.ASSURANCE_LEVEL_2];
  policy.enabledAuthenticationMethods = methods;
  const held = await policies.updateSecurityPolicy({ expectedVersion: record!.version, policy }).then(() => undefined, (e: unknown) => ConnectError.from(e));
  const detail = held!.findDetails(ApprovalRequiredSchema)[0]!;
  await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
}

let serial = 0;
/** A signer enrolled with an external id, activated with device key, PIN and TOTP, with one ACTIVE credential per level. */
async function newSigner(t: TestServer, operator: PrivilegedPerson, records: VerifiedRecords): Promise<Signer> {
  serial += 1;
  const externalId = `customer-${serial}-${randomBytes(4).toString("hex")}`;
  const ra = createClient(RegistrationService, t.as(operator));
  const { signer } = await ra.enrollSigner({
    identity: { kind: SignerKind.NATURAL_PERSON, legalName: `Tanaka Ichiro ${serial}`, displayName: `Tanaka ${serial}`, email: `ichiro.${serial}.${process.pid}@example.jp`, country: "JP", externalId },
    proofing: { method: IdentityProofingMethod.IN_PERSON, evidenceReference: "RA-9", proofedAt: timestampFromDate(new Date(Date.now() - 60_000)) },
  });
  const signerId = signer!.signerId;
  const { activationCode } = await ra.issueActivationCode({ signerId });
  const device = createClient(SignerService, t.transport("grpc", t.pki.frontEnd));
  const ch = await device.createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
  const deviceKey = await createDeviceKey();
  const { request, responseKey } = await buildActivationRequest({
    signerId, activationCode: activationCode!.code, pin: testPin, deviceKey, enrollTotp: true, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience,
  });
  const { totpEnrollment } = await device.activate(request);
  const totpSecret = totpSecretOf(await openTotpEnrollment(totpEnrollment, responseKey!));
  const credentialAt = async (assuranceLevel: AssuranceLevel) => {
    const { credential } = await ra.generateKey({ signerId, keyAlgorithm: KeyAlgorithm.EC_P256, assuranceLevel, label: `level ${assuranceLevel}` });
    // The certificate import (not built yet) is what makes a credential ACTIVE.
    const record = (await records.get("credential", credential!.credentialId))!;
    await records.update<CredentialRecord>({ ...record, version: record.version + 1, status: "ACTIVE" }, record.version);
    return { credentialId: credential!.credentialId, spki: credential!.publicKeySpki };
  };
  return { signerId, externalId, deviceKey, totpSecret, level1: await credentialAt(AssuranceLevel.ASSURANCE_LEVEL_1), level2: await credentialAt(AssuranceLevel.ASSURANCE_LEVEL_2) };
}

/** `n` documents and their SHA-256 hashes. */
function documents(n: number) {
  const messages = Array.from({ length: n }, (_, i) => Buffer.from(`document ${i} ${Math.random()}`));
  return { messages, hashes: messages.map((m) => new Uint8Array(createHash("sha256").update(m).digest())) };
}

const otpOf = (s: Signer, steps = 0) => hotp(s.totpSecret, totpStep(new Date(), 30) + steps, 6);

describe("Authorize with PIN + TOTP, PIN alone and the login assertion, over the wire (R-3.1.4)", () => {
  let t: TestServer;
  let records: VerifiedRecords | undefined;
  let operator: PrivilegedPerson;
  let opKey: CryptoKey;
  let opDir: string;
  const signers: Signer[] = [];
  /** A fresh signer per test that needs its own TOTP codes (a code works once). */
  const fresh = async () => {
    const s = await newSigner(t, operator, records!);
    signers.push(s);
    return s;
  };

  beforeAll(async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    opKey = pair.privateKey;
    opDir = mkdtempSync(join(tmpdir(), "inkan-op-"));
    const jwksFile = join(opDir, "jwks.json");
    writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: "op-1", alg: "ES256", use: "sig" }] }));
    t = await startTestServer({ oidcIssuer: issuer, oidcClientId: clientId, oidcJwksFile: jwksFile }, { onRecords: (r) => (records = r) });
    const so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "so2-methods");
    operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-methods");
    await allowLevels(t, so2, allMethods);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    if (opDir) rmSync(opDir, { recursive: true, force: true });
  });

  const sca = (protocol: Protocol) => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
  const begin = async (s: Signer, credentialId: string, hashes: Uint8Array[], protocol: Protocol): Promise<SadChallenge> =>
    (await sca(protocol).beginTransaction({ credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "Invoices 2026-11" })).sadChallenge!;
  const claimsRSad = (ch: SadChallenge, factors: ClaimsRSadFactors, over: Partial<Parameters<typeof buildClaimsRSad>[0]> = {}) =>
    buildClaimsRSad({
      signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge,
      dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, samKey: ch.encryptionKey!, factors, ...over,
    });
  /** The RSSP's OpenID provider: an ID token for `s` whose nonce is the transaction's challenge. */
  const idToken = (s: Signer, ch: SadChallenge, claims: Record<string, unknown> = {}) => {
    const iat = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: issuer, aud: clientId, sub: s.externalId, nonce: Buffer.from(ch.challenge).toString("base64url"), iat, exp: iat + 300, ...claims })
      .setProtectedHeader({ alg: "ES256", kid: "op-1" })
      .sign(opKey);
  };
  /** Signs every hash with the token; each signature verifies with the credential's key. */
  const signsAll = async (token: string, spki: Uint8Array, docs: ReturnType<typeof documents>, protocol: Protocol) => {
    const res = await sca(protocol).signHash({ authorization: { case: "sadToken", value: token }, hashes: docs.hashes });
    const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
    expect(res.signatures.map((sig, i) => verifySignature("sha256", docs.messages[i]!, key, sig))).toEqual(docs.hashes.map(() => true));
  };

  for (const protocol of ["grpc", "connect"] as const) {
    it(`R-3.1.4: PIN + TOTP authorizes a level-2 credential and its hashes sign, over ${protocol}`, async () => {
      const s = await fresh();
      const docs = documents(2);
      const ch = await begin(s, s.level2.credentialId, docs.hashes, protocol);
      expect(ch.assuranceLevel).toBe(AssuranceLevel.ASSURANCE_LEVEL_2);
      expect(ch.authenticationMethods).toEqual([AuthenticationMethod.DEVICE_KEY_AND_PIN, AuthenticationMethod.PIN_AND_TOTP]);
      const auth = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await claimsRSad(ch, { pin: testPin, otp: otpOf(s) }) });
      expect(auth.signaturesRemaining).toBe(2);
      await signsAll(auth.sadToken, s.level2.spki, docs, protocol);
    });

    it(`R-3.1.4: PIN alone and the login assertion authorize a level-1 credential, over ${protocol}`, async () => {
      const s = await fresh();
      const docs = documents(1);
      const ch = await begin(s, s.level1.credentialId, docs.hashes, protocol);
      expect(ch.assuranceLevel).toBe(AssuranceLevel.ASSURANCE_LEVEL_1);
      expect(ch.authenticationMethods).toEqual(allMethods);
      const auth = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await claimsRSad(ch, { pin: testPin }) });
      await signsAll(auth.sadToken, s.level1.spki, docs, protocol);
      const docs2 = documents(1);
      const ch2 = await begin(s, s.level1.credentialId, docs2.hashes, protocol);
      const auth2 = await sca(protocol).authorize({ transactionId: ch2.transactionId, rSad: await claimsRSad(ch2, { login: await idToken(s, ch2) }) });
      await signsAll(auth2.sadToken, s.level1.spki, docs2, protocol);
    });

    it(`R-3.1.4 level-2 credential with a level-1 method: PIN alone and the login assertion are FAILED_PRECONDITION ASSURANCE_LEVEL_NOT_MET; the transaction stays pending, over ${protocol}`, async () => {
      const s = await fresh();
      const ch = await begin(s, s.level2.credentialId, documents(1).hashes, protocol);
      for (const factors of [{ pin: testPin }, { pin: "000000" }, { login: await idToken(s, ch) }]) {
        expect(await refusalOf(sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await claimsRSad(ch, factors) })))
          .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.ASSURANCE_LEVEL_NOT_MET });
      }
      const ra = createClient(RegistrationService, t.as(operator));
      expect((await ra.getSigner({ signerId: s.signerId })).signer?.factors?.failedAttempts).toBe(0); // no factor was tried
      const rSad = await buildRSad({ deviceKey: s.deviceKey, signerId: s.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: 1, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey! });
      expect((await sca(protocol).authorize({ transactionId: ch.transactionId, rSad })).signaturesRemaining).toBe(1);
    });

    it(`T-2.2.1.3 replayed TOTP code and T-2.1.2.2 wrong OTP: PERMISSION_DENIED AUTHENTICATION_FAILED, saying nothing of which factor, counted, over ${protocol}`, async () => {
      const s = await fresh();
      const otp = otpOf(s);
      const first = await begin(s, s.level2.credentialId, documents(1).hashes, protocol);
      await sca(protocol).authorize({ transactionId: first.transactionId, rSad: await claimsRSad(first, { pin: testPin, otp }) });
      const ch = await begin(s, s.level2.credentialId, documents(1).hashes, protocol);
      const replay = await refusalOf(sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await claimsRSad(ch, { pin: testPin, otp }) }));
      const wrongOtp = await refusalOf(sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await claimsRSad(ch, { pin: testPin, otp: otp === "000000" ? "111111" : "000000" }) }));
      const wrongPin = await refusalOf(sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await claimsRSad(ch, { pin: "999999", otp: otpOf(s, 1) }) }));
      for (const e of [replay, wrongOtp, wrongPin]) {
        expect(e).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
        expect(e.message).toBe(replay.message);
        expect(e.message).not.toMatch(/pin|otp|totp|code/i);
      }
      const ra = createClient(RegistrationService, t.as(operator));
      expect((await ra.getSigner({ signerId: s.signerId })).signer?.factors?.failedAttempts).toBe(3);
    });

    it(`T-2.2.1.7 claims for another transaction, credential, signer or audience, and a replayed jti, are refused; a login token with a wrong nonce is AUTHENTICATION_FAILED, over ${protocol}`, async () => {
      const s = await fresh();
      const other = await fresh();
      // Each forgery goes against a pending transaction of its own: failed attempts count toward
      // Limits.max_authorize_attempts (3), after which a transaction is FAILED.
      const pending = () => begin(s, s.level1.credentialId, documents(1).hashes, protocol);
      const ch = await pending();
      const ch2 = await pending();
      const refusedOn = async (target: Promise<Awaited<ReturnType<typeof pending>>>, rSadFor: (t: Awaited<ReturnType<typeof pending>>) => Promise<string>) => {
        const tx = await target;
        return refusalOf(sca(protocol).authorize({ transactionId: tx.transactionId, rSad: await rSadFor(tx) }));
      };
      const invalid = { code: Code.PermissionDenied, reason: Reason.SAD_INVALID };
      expect(await refusedOn(pending(), () => claimsRSad(ch2, { pin: testPin }))).toMatchObject(invalid);
      expect(await refusedOn(pending(), (tx) => claimsRSad(tx, { pin: testPin }, { credentialId: s.level2.credentialId }))).toMatchObject(invalid);
      expect(await refusedOn(pending(), (tx) => claimsRSad(tx, { pin: testPin }, { signerId: other.signerId }))).toMatchObject(invalid);
      expect(await refusedOn(pending(), (tx) => claimsRSad(tx, { pin: testPin }, { samId: "urn:inkan:sam:another" }))).toMatchObject(invalid);
      expect(await refusedOn(pending(), async (tx) => claimsRSad(tx, { login: await idToken(s, ch2) }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
      expect(await refusedOn(pending(), async (tx) => claimsRSad(tx, { login: await idToken(other, tx) }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
      const authorize = async (rSad: string) => refusalOf(sca(protocol).authorize({ transactionId: ch.transactionId, rSad }));
      // T-2.2.1.3 replayed jti: an R.SAD refused for its PIN cannot be sent again (nor count again).
      const wrong = await claimsRSad(ch2, { pin: "999999" });
      expect(await refusalOf(sca(protocol).authorize({ transactionId: ch2.transactionId, rSad: wrong }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
      expect(await refusalOf(sca(protocol).authorize({ transactionId: ch2.transactionId, rSad: wrong }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_REPLAYED });
      const good = await claimsRSad(ch, { pin: testPin });
      await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: good });
      expect(await refusalOf(sca(protocol).authorize({ transactionId: ch2.transactionId, rSad: good }))).toMatchObject(invalid); // bound to ch
      expect(await authorize(good)).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    });
  }

  it("R-3.1.4: GetInfo reports levels 1 and 2 and the four methods; GetCredential reports each credential's level and methods", async () => {
    const info = await sca("grpc").getInfo({});
    expect(info.assuranceLevels).toEqual([AssuranceLevel.ASSURANCE_LEVEL_1, AssuranceLevel.ASSURANCE_LEVEL_2]);
    expect(info.authenticationMethods).toEqual(allMethods);
    const s = signers[0] ?? (await fresh());
    const l1 = (await sca("connect").getCredential({ credentialId: s.level1.credentialId })).credential!;
    const l2 = (await sca("connect").getCredential({ credentialId: s.level2.credentialId })).credential!;
    expect([l1.assuranceLevel, l1.authenticationMethods]).toEqual([AssuranceLevel.ASSURANCE_LEVEL_1, allMethods]);
    expect([l2.assuranceLevel, l2.authenticationMethods]).toEqual([AssuranceLevel.ASSURANCE_LEVEL_2, allMethods.slice(0, 2)]);
  });
});

describe("the login assertion without a configured OpenID provider (R-3.1.4)", () => {
  let t: TestServer;
  let records: VerifiedRecords | undefined;
  let operator: PrivilegedPerson;
  beforeAll(async () => {
    t = await startTestServer({}, { onRecords: (r) => (records = r) });
    const so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "so2-no-op");
    operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-no-op");
    await allowLevels(t, so2, allMethods);
  }, 120_000);
  afterAll(async () => {
    await t?.close();
  });

  for (const protocol of ["grpc", "connect"] as const) {
    it(`R-3.1.4: GetInfo leaves the login assertion out although the policy enables it, and Authorize refuses it with ASSURANCE_LEVEL_NOT_MET, over ${protocol}`, async () => {
      const sam = createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
      expect((await sam.getInfo({})).authenticationMethods).toEqual(allMethods.slice(0, 3));
      const s = await newSigner(t, operator, records!);
      const ch = (await sam.beginTransaction({ credentialId: s.level1.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: documents(1).hashes, description: "Invoice" })).sadChallenge!;
      // Any token at all: nothing can verify it here.
      const { privateKey } = await generateKeyPair("ES256");
      const iat = Math.floor(Date.now() / 1000);
      const login = await new SignJWT({ iss: issuer, aud: clientId, sub: s.externalId, nonce: Buffer.from(ch.challenge).toString("base64url"), iat, exp: iat + 300 }).setProtectedHeader({ alg: "ES256" }).sign(privateKey);
      const rSad = await buildClaimsRSad({ signerId: s.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: 1, hashAlgorithm: ch.hashAlgorithm, description: ch.description, samKey: ch.encryptionKey!, factors: { login } });
      expect(await refusalOf(sam.authorize({ transactionId: ch.transactionId, rSad }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.ASSURANCE_LEVEL_NOT_MET });
    });
  }
});
