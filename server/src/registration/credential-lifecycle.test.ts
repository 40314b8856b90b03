import { createHash, randomBytes } from "node:crypto";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, inkanErrorReason, buildSuspensionRequest, createDeviceKey, type DeviceKey } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PendingApprovalState, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { DestroyCredentialResponseSchema, RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ErrorDetailSchema } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { CredentialStatus, HashAlgorithm, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FullCryptoModule } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { CredentialRecord } from "../store/port.js";
import { errorOf, refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { signerIssuingCa, issueSignerCertificate } from "../testing/signer-certificates.js";
import { activeSigner, testPin } from "../testing/signers.js";
import { credentialRefusal } from "./credential-usability.js";

// Suspension, resumption and destruction of credentials on the real server (SoftHSM2 + SQLite,
// mTLS, over gRPC and Connect), T-2.3.1.1, T-2.3.1.2, dual control of destruction.
let t: TestServer;
let so1: PrivilegedPerson;
let so2: PrivilegedPerson;
let operator: PrivilegedPerson;
let auditor: PrivilegedPerson;
let records: VerifiedRecords | undefined;
let crypto: FullCryptoModule | undefined;
let failKeyDestruction = false;

interface Signer {
  signerId: string;
  credentialId: string;
  deviceKey: DeviceKey;
  keyId: string;
  fingerprint: Uint8Array;
  spki: Uint8Array;
}

const ra = (protocol: Protocol = "grpc", who: PrivilegedPerson = operator) => createClient(RegistrationService, t.as(who, protocol));
const frontEnd = (protocol: Protocol = "grpc") => createClient(SignerService, t.transport(protocol, t.pki.frontEnd));
const sca = (protocol: Protocol = "grpc") => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
const statusOf = async (credentialId: string) => (await ra().getCredential({ credentialId })).credential?.status;

/** A refusal with its ErrorDetail.field. */
async function refusalWithField(p: Promise<unknown>) {
  const e = await errorOf(p);
  return { ...(await refusalOf(Promise.reject(e))), field: e.findDetails(ErrorDetailSchema)[0]?.field ?? "" };
}

/** The certificate import (not built yet) is what makes a credential ACTIVE: stand in for it. */
/** Certifies a KEY_GENERATED credential with the dev signer issuing CA and imports the certificate: ACTIVE, as in production. */
async function makeActive(credentialId: string): Promise<void> {
  const { credential } = await ra().getCredential({ credentialId });
  const certificate = await issueSignerCertificate(await signerIssuingCa(t), credential!.publicKeySpki);
  await ra().importCertificate({ credentialId, certificateChain: [certificate] });
}

/** A fresh ACTIVE signer (device key + PIN) with an ACTIVE credential, or (active = false) a KEY_GENERATED one. */
async function newSigner(active = true): Promise<Signer> {
  const signer = await activeSigner(t, operator);
  const { credential } = await ra().generateKey({ signerId: signer.signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "" });
  if (active) await makeActive(credential!.credentialId);
  return {
    signerId: signer.signerId, credentialId: credential!.credentialId, deviceKey: signer.deviceKey,
    keyId: credential!.keyId, fingerprint: credential!.publicKeyFingerprint, spki: credential!.publicKeySpki,
  };
}

/** The signer's device: a SUSPENSION challenge for (signerId, credentialId), signed with `deviceKey`. */
async function suspensionRequest(o: { signerId: string; credentialId: string; deviceKey: DeviceKey; jwsSignerId?: string; jwsCredentialId?: string }, protocol: Protocol = "grpc") {
  const ch = await frontEnd(protocol).createChallenge({ signerId: o.signerId, purpose: ChallengePurpose.SUSPENSION, credentialId: o.credentialId });
  const built = await buildSuspensionRequest({
    signerId: o.jwsSignerId ?? o.signerId, credentialId: o.jwsCredentialId ?? o.credentialId, deviceKey: o.deviceKey, challenge: ch.challenge, audience: ch.audience,
  });
  return { ...built, signerId: o.signerId, credentialId: o.credentialId };
}

/** The JWS with its payload rewritten and the signature kept (an interceptor altering the request). */
function withClaims(jws: string, change: (claims: Record<string, unknown>) => void): string {
  const [h, p, s] = jws.split(".");
  const claims = JSON.parse(Buffer.from(p!, "base64url").toString("utf8")) as Record<string, unknown>;
  change(claims);
  return `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
}

/** One bit flipped in the middle of the signature. */
function bitFlipped(jws: string): string {
  const [h, p, s] = jws.split(".");
  const sig = Buffer.from(s!, "base64url");
  sig[10] = sig[10]! ^ 0x01;
  return `${h}.${p}.${sig.toString("base64url")}`;
}

const hashes = (n: number) => Array.from({ length: n }, () => new Uint8Array(createHash("sha256").update(randomBytes(16)).digest()));

async function begin(s: Signer, hs: Uint8Array[], protocol: Protocol = "grpc"): Promise<SadChallenge> {
  const res = await sca(protocol).beginTransaction({ credentialId: s.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hs.length, hashes: hs, description: "lifecycle" });
  return res.sadChallenge!;
}
const rSadFor = (s: Signer, ch: SadChallenge) =>
  buildRSad({
    deviceKey: s.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
  });
async function authorized(s: Signer, hs: Uint8Array[], protocol: Protocol = "grpc"): Promise<string> {
  const ch = await begin(s, hs, protocol);
  return (await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await rSadFor(s, ch) })).sadToken;
}
const signHash = (token: string, hs: Uint8Array[], protocol: Protocol = "grpc") => sca(protocol).signHash({ authorization: { case: "sadToken", value: token }, hashes: hs });

async function auditTrail(signerId: string) {
  return (await createClient(AuditService, t.as(auditor)).listAuditRecords({ signerId, page: { pageSize: 1000 } })).records;
}

beforeAll(async () => {
  // Fault injection: the real crypto module, with its key destruction made to fail on demand.
  const wrapCrypto = (c: FullCryptoModule): FullCryptoModule => {
    crypto = c;
    return new Proxy(c, {
      get(target, prop, receiver) {
        if (prop === "destroyKeyPair") {
          return async (keyId: string) => {
            if (failKeyDestruction) throw new InkanError("CRYPTO_MODULE_FAILURE", "the module refused (injected)");
            return target.destroyKeyPair(keyId);
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
  t = await startTestServer({}, { wrapCrypto, onRecords: (r) => (records = r) });
  so1 = t.firstSecurityOfficer;
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "officer-2-lifecycle");
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-lifecycle");
  auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-lifecycle");
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("SuspendCredential and ResumeCredential by a registration operator (R-3.3.1)", () => {
  for (const protocol of ["grpc", "connect"] as const) {
    it(`R-3.3.1: suspends and resumes to the status from before, with the contract's errors, over ${protocol}`, async () => {
      const s = await newSigner();
      const suspended = await ra(protocol).suspendCredential({ credentialId: s.credentialId, reason: "lost phone reported by phone" });
      expect(suspended.credential?.status).toBe(CredentialStatus.SUSPENDED);
      expect(suspended.credential?.statusReason).toBe("lost phone reported by phone");
      expect(await refusalOf(ra(protocol).suspendCredential({ credentialId: s.credentialId, reason: "again" }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED });

      const resumed = await ra(protocol).resumeCredential({ credentialId: s.credentialId, reason: "phone found" });
      expect(resumed.credential?.status).toBe(CredentialStatus.ACTIVE);
      expect(resumed.credential?.publicKeyFingerprint).toEqual(s.fingerprint);
      // registration.proto: not suspended -> FAILED_PRECONDITION, REASON_INVALID_REQUEST (field "credential_id").
      expect(await refusalWithField(ra(protocol).resumeCredential({ credentialId: s.credentialId, reason: "again" }))).toMatchObject({
        code: Code.FailedPrecondition, reason: Reason.INVALID_REQUEST, field: "credential_id",
      });
      expect(await refusalOf(ra(protocol).suspendCredential({ credentialId: "crd-does-not-exist", reason: "x" }))).toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
      expect(await refusalOf(ra(protocol).resumeCredential({ credentialId: "crd-does-not-exist", reason: "x" }))).toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
    });
  }

  it("a KEY_GENERATED credential certified while suspended resumes to ACTIVE (it has its certificate now)", async () => {
    const s = await newSigner(false);
    await ra().suspendCredential({ credentialId: s.credentialId, reason: "awaiting certificate" });
    await makeActive(s.credentialId); // ImportCertificate while suspended: the chain is attached, the status stays
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.SUSPENDED);
    expect((await ra().resumeCredential({ credentialId: s.credentialId, reason: "certified" })).credential?.status).toBe(CredentialStatus.ACTIVE);
  });

  it("a KEY_GENERATED credential resumes to KEY_GENERATED, never to ACTIVE", async () => {
    const s = await newSigner(false);
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.KEY_GENERATED);
    await ra().suspendCredential({ credentialId: s.credentialId, reason: "hold" });
    expect((await ra().resumeCredential({ credentialId: s.credentialId, reason: "release" })).credential?.status).toBe(CredentialStatus.KEY_GENERATED);
  });

  it("a credential locked out when suspended resumes LOCKED while the lockout lasts, and to its earlier status after ResetLockout", async () => {
    const s = await newSigner();
    // What the lockout (lockout.ts) writes at the threshold: the signer's lockedAt, the credential LOCKED.
    const signer = (await records!.get("signer", s.signerId))!;
    await records!.update({ ...signer, version: signer.version + 1, body: JSON.stringify({ ...JSON.parse(signer.body), lockedAt: new Date().toISOString() }) }, signer.version);
    const c = (await records!.get("credential", s.credentialId))!;
    await records!.update<CredentialRecord>({ ...c, version: c.version + 1, status: "LOCKED", body: JSON.stringify({ ...JSON.parse(c.body), statusBeforeLock: "ACTIVE" }) }, c.version);

    await ra().suspendCredential({ credentialId: s.credentialId, reason: "hold" });
    expect((await ra().resumeCredential({ credentialId: s.credentialId, reason: "release" })).credential?.status).toBe(CredentialStatus.LOCKED);
    await ra().suspendCredential({ credentialId: s.credentialId, reason: "hold again" });
    await ra().resetLockout({ signerId: s.signerId, reason: "identity re-verified" });
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.SUSPENDED); // ResetLockout does not lift a suspension
    expect((await ra().resumeCredential({ credentialId: s.credentialId, reason: "release" })).credential?.status).toBe(CredentialStatus.ACTIVE);
  });

  it("each suspension and resumption is audited with the operator's identity", async () => {
    const s = await newSigner();
    await ra().suspendCredential({ credentialId: s.credentialId, reason: "audit me" });
    await ra().resumeCredential({ credentialId: s.credentialId, reason: "audit me too" });
    const trail = await auditTrail(s.signerId);
    for (const type of ["credential.suspended", "credential.resumed"]) {
      const r = trail.find((x) => x.eventType === type && x.credentialId === s.credentialId);
      expect(r?.actor?.id).toBe(operator.userId);
    }
  });
});

describe("T-2.3.1.1 / R-3.3.1: nobody but the signer (or a registration operator) suspends", () => {
  it("T-2.3.1.1: an auditor, a security officer and an SCA certificate cannot call SuspendCredential; nothing changes", async () => {
    const s = await newSigner();
    expect(await refusalOf(ra("grpc", auditor).suspendCredential({ credentialId: s.credentialId, reason: "x" }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
    expect(await refusalOf(ra("grpc", so1).suspendCredential({ credentialId: s.credentialId, reason: "x" }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
    const asSca = createClient(RegistrationService, t.transport("grpc", t.pki.sca));
    expect(await refusalOf(asSca.suspendCredential({ credentialId: s.credentialId, reason: "x" }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.ACTIVE);
  });

  for (const protocol of ["grpc", "connect"] as const) {
    it(`R-3.3.1: the signer's own device-signed request suspends the credential, once audited, over ${protocol}`, async () => {
      const s = await newSigner();
      const res = await frontEnd(protocol).requestSuspension(await suspensionRequest(s, protocol));
      expect(res.credentialId).toBe(s.credentialId);
      expect(res.status).toBe(CredentialStatus.SUSPENDED);
      expect(await statusOf(s.credentialId)).toBe(CredentialStatus.SUSPENDED);
      // Suspending a suspended credential succeeds, changes nothing and reports the original instant.
      const again = await frontEnd(protocol).requestSuspension(await suspensionRequest(s, protocol));
      expect(again.status).toBe(CredentialStatus.SUSPENDED);
      expect(again.suspendedAt).toEqual(res.suspendedAt);
      const suspensions = (await auditTrail(s.signerId)).filter((r) => r.eventType === "credential.suspended");
      expect(suspensions).toHaveLength(1);
      expect(suspensions[0]?.actor?.id).toBe(s.signerId);
    });
  }

  it("T-2.3.1.1: another signer's device key, or a key registered to nobody, cannot suspend; nothing changes; audited", async () => {
    const alice = await newSigner();
    const bob = await newSigner();
    // Bob's device signs a request that claims to be Alice's, over a challenge for Alice's credential.
    const forged = await suspensionRequest({ ...alice, deviceKey: bob.deviceKey });
    expect(await refusalOf(frontEnd().requestSuspension(forged))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
    // A key that no signer registered.
    const stranger = await suspensionRequest({ ...alice, deviceKey: await createDeviceKey() });
    expect(await refusalOf(frontEnd().requestSuspension(stranger))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
    expect(await statusOf(alice.credentialId)).toBe(CredentialStatus.ACTIVE);
    const failed = (await auditTrail(alice.signerId)).filter((r) => r.eventType === "factor.check_failed" && r.credentialId === alice.credentialId);
    expect(failed.map((r) => r.reason)).toEqual([Reason.AUTHENTICATION_FAILED, Reason.AUTHENTICATION_FAILED]);
  });

  it("T-2.3.1.1: a signer cannot suspend another signer's credential, even with a valid request of their own", async () => {
    const alice = await newSigner();
    const bob = await newSigner();
    const own = await suspensionRequest({ signerId: bob.signerId, credentialId: alice.credentialId, deviceKey: bob.deviceKey });
    expect(await refusalOf(frontEnd().requestSuspension(own))).toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
    expect(await statusOf(alice.credentialId)).toBe(CredentialStatus.ACTIVE);
  });
});

describe("T-2.3.1.2 / R-3.3.2: a replayed or altered suspension request fails", () => {
  it("T-2.3.1.2: the same request presented twice: the second is NONCE_REPLAYED and changes nothing", async () => {
    const s = await newSigner();
    const request = await suspensionRequest(s);
    await frontEnd().requestSuspension(request);
    await ra().resumeCredential({ credentialId: s.credentialId, reason: "signer confirmed by phone" });
    expect(await refusalOf(frontEnd().requestSuspension(request))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.ACTIVE);
  });

  it("T-2.3.1.2: an intercepted request with a claim changed or a bit flipped is refused; the intercepted original is then spent too", async () => {
    const s = await newSigner();
    const other = await activeSignerWithCredentialOf(s); // a second credential of the same signer
    const cases: Array<[string, (r: Awaited<ReturnType<typeof suspensionRequest>>) => typeof r, Reason]> = [
      ["cred claim changed", (r) => ({ ...r, suspensionRequest: withClaims(r.suspensionRequest, (c) => (c.cred = other)) }), Reason.AUTHENTICATION_FAILED],
      ["action claim changed", (r) => ({ ...r, suspensionRequest: withClaims(r.suspensionRequest, (c) => (c.action = "destroy")) }), Reason.AUTHENTICATION_FAILED],
      ["exp claim extended", (r) => ({ ...r, suspensionRequest: withClaims(r.suspensionRequest, (c) => (c.exp = (c.exp as number) + 60)) }), Reason.AUTHENTICATION_FAILED],
      ["signature bit flipped", (r) => ({ ...r, suspensionRequest: bitFlipped(r.suspensionRequest) }), Reason.AUTHENTICATION_FAILED],
      // The challenge is bound to the credential: redirecting the request to another credential fails.
      ["request credential_id changed", (r) => ({ ...r, credentialId: other }), Reason.NONCE_REPLAYED],
    ];
    for (const [name, alter, reason] of cases) {
      const original = await suspensionRequest(s);
      expect({ name, ...(await refusalOf(frontEnd().requestSuspension(alter(original)))) }).toMatchObject({ name, reason });
      // signer.proto: the first presentation consumes the challenge, so the original no longer works either.
      expect({ name, ...(await refusalOf(frontEnd().requestSuspension(original))) }).toMatchObject({ name, reason: Reason.NONCE_REPLAYED });
    }
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.ACTIVE);
    expect(await statusOf(other)).toBe(CredentialStatus.ACTIVE);
  });

  it("R-3.3.2: of 8 concurrent presentations of one request, exactly one is accepted", async () => {
    const s = await newSigner();
    const request = await suspensionRequest(s);
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => frontEnd().requestSuspension(request)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect((await refusalOf(Promise.reject(r.reason))).reason).toBe(Reason.NONCE_REPLAYED);
  });

  it("T-2.3.1.2: a challenge for another purpose, or issued for another credential, is NONCE_REPLAYED", async () => {
    const s = await newSigner();
    const other = await activeSignerWithCredentialOf(s);
    const pinChange = await frontEnd().createChallenge({ signerId: s.signerId, purpose: ChallengePurpose.PIN_CHANGE });
    const wrongPurpose = await buildSuspensionRequest({ signerId: s.signerId, credentialId: s.credentialId, deviceKey: s.deviceKey, challenge: pinChange.challenge, audience: pinChange.audience });
    expect(await refusalOf(frontEnd().requestSuspension(wrongPurpose))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
    // A challenge issued for `other`, used in a request (and JWS) naming s.credentialId.
    const forOther = await frontEnd().createChallenge({ signerId: s.signerId, purpose: ChallengePurpose.SUSPENSION, credentialId: other });
    const redirected = await buildSuspensionRequest({ signerId: s.signerId, credentialId: s.credentialId, deviceKey: s.deviceKey, challenge: forOther.challenge, audience: forOther.audience });
    expect(await refusalOf(frontEnd().requestSuspension(redirected))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.ACTIVE);
  });
});

/** A second ACTIVE credential for the signer of `s` (generated by the operator); its id. */
async function activeSignerWithCredentialOf(s: Signer): Promise<string> {
  const { credential } = await ra().generateKey({ signerId: s.signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "second" });
  await makeActive(credential!.credentialId);
  return credential!.credentialId;
}

describe("R-3.3.1: a suspended credential is neither authorized nor used, including by what was issued before", () => {
  for (const protocol of ["grpc", "connect"] as const) {
    it(`R-3.3.1: a SAD token and a pending transaction from before the suspension are refused; after resumption new transactions sign, over ${protocol}`, async () => {
      const s = await newSigner();
      const before = hashes(2);
      const token = await authorized(s, before, protocol);
      const pending = await begin(s, hashes(1), protocol);
      const rSad = await rSadFor(s, pending);

      await frontEnd(protocol).requestSuspension(await suspensionRequest(s, protocol));
      expect(await refusalOf(signHash(token, before, protocol))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED });
      expect(await refusalOf(sca(protocol).authorize({ transactionId: pending.transactionId, rSad }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED });
      expect(await refusalOf(begin(s, hashes(1), protocol))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED });

      await ra(protocol).resumeCredential({ credentialId: s.credentialId, reason: "signer confirmed" });
      const fresh = hashes(1);
      const signed = await signHash(await authorized(s, fresh, protocol), fresh, protocol);
      expect(signed.signatures).toHaveLength(1);
    });
  }

  it("R-3.3.1: the resumed credential's sealed record makes credentialRefusal refuse what was created before the suspension, and only that", async () => {
    const s = await newSigner();
    const before = new Date();
    await new Promise((r) => setTimeout(r, 5));
    await ra().suspendCredential({ credentialId: s.credentialId, reason: "hold" });
    await ra().resumeCredential({ credentialId: s.credentialId, reason: "release" });
    await new Promise((r) => setTimeout(r, 5));
    const after = new Date();
    const [credential, signer] = await Promise.all([records!.get("credential", s.credentialId), records!.get("signer", s.signerId)]);
    const now = { now: new Date(), certificateExpiryGraceMs: 0 };
    expect(credentialRefusal({ credential, signer, transaction: { signerId: s.signerId, createdAt: before }, ...now })?.code).toBe("TRANSACTION_STATE");
    expect(credentialRefusal({ credential, signer, transaction: { signerId: s.signerId, createdAt: after }, ...now })).toBeUndefined();
  });

  it("R-3.3.1: a suspension during a SignStream ends it before its next claim: CREDENTIAL_SUSPENDED, the rest unsigned", async () => {
    const s = await newSigner();
    const list = hashes(5_000);
    const ch = await begin(s, list);
    const { sadToken } = await sca().authorize({ transactionId: ch.transactionId, rSad: await rSadFor(s, ch) });
    const stream = sca().signStream({ sadToken, startIndex: 0 })[Symbol.asyncIterator]();
    await stream.next(); // the resume token
    await stream.next(); // the first signatures; the client stops reading for a moment
    await ra().suspendCredential({ credentialId: s.credentialId, reason: "lost phone" });
    const end = await refusalOf((async () => { for (;;) if ((await stream.next()).done) return; })());
    expect(end).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED });
    expect((await sca().cancelTransaction({ transactionId: ch.transactionId })).signaturesCreated).toBeLessThan(5_000);
  });

  it("R-3.3.1: after resumption, a SAD token and a pending transaction issued before the suspension stay unusable (TRANSACTION_STATE); a stream too", async () => {
    const s = await newSigner();
    const before = hashes(2);
    const token = await authorized(s, before);
    const pending = await begin(s, hashes(1));
    const rSad = await rSadFor(s, pending);
    await ra().suspendCredential({ credentialId: s.credentialId, reason: "hold" });
    await ra().resumeCredential({ credentialId: s.credentialId, reason: "release" });
    expect(await refusalOf(signHash(token, before))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    expect(await refusalOf(sca().signStream({ sadToken: token, startIndex: 0 })[Symbol.asyncIterator]().next())).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    expect(await refusalOf(sca().authorize({ transactionId: pending.transactionId, rSad }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    const fresh = hashes(1);
    expect((await signHash(await authorized(s, fresh), fresh)).signatures).toHaveLength(1);
  });
});

describe("DestroyCredential: security officer, dual control, key gone from the module (R-3.3.x)", () => {
  const destroyRequest = (s: Signer, reason = "signer deceased") => ({ credentialId: s.credentialId, publicKeyFingerprint: s.fingerprint, reason });

  it("refuses at once, holding nothing, a wrong fingerprint (KEY_MISMATCH) and a registration operator; an unknown credential fails on approval", async () => {
    const s = await newSigner();
    const wrong = await refusalWithField(ra("grpc", so1).destroyCredential({ ...destroyRequest(s), publicKeyFingerprint: new Uint8Array(32).fill(7) }));
    expect(wrong).toMatchObject({ code: Code.InvalidArgument, reason: Reason.KEY_MISMATCH, field: "public_key_fingerprint" });
    const unknown = (await errorOf(ra("grpc", so1).destroyCredential({ ...destroyRequest(s), credentialId: "crd-does-not-exist" }))).findDetails(ApprovalRequiredSchema)[0]!;
    const { pendingApproval } = await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: unknown.pendingRequestId, requestDigest: unknown.requestDigest });
    expect(pendingApproval).toMatchObject({ state: PendingApprovalState.FAILED, errorCode: "CREDENTIAL_NOT_FOUND" });
    expect(await refusalOf(ra("grpc", operator).destroyCredential(destroyRequest(s)))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
    expect(await crypto!.findKey(s.keyId)).toBeDefined();
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.ACTIVE);
  });

  for (const protocol of ["grpc", "connect"] as const) {
    it(`destroys the key pair in the module once a second officer approves, tombstones the credential and refuses every later use, over ${protocol}`, async () => {
      const s = await newSigner();
      const hs = hashes(1);
      const token = await authorized(s, hs, protocol);
      expect(await crypto!.findKey(s.keyId)).toBeDefined();

      // R-3.2.1.6: the first officer's request is held; nothing is destroyed yet.
      const held = await errorOf(ra(protocol, so1).destroyCredential(destroyRequest(s)));
      expect(held.code).toBe(Code.FailedPrecondition);
      expect(inkanErrorReason(held)).toBe(Reason.APPROVAL_REQUIRED);
      const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
      expect(detail.method).toBe("/inkan.admin.v1.RegistrationService/DestroyCredential");
      expect(await crypto!.findKey(s.keyId)).toBeDefined();
      expect(await statusOf(s.credentialId)).toBe(CredentialStatus.ACTIVE);

      const officers = (p: PrivilegedPerson) => createClient(PrivilegedUserService, t.as(p, protocol));
      const { pendingApproval } = await officers(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
      expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
      const result = anyUnpack(pendingApproval!.result!, DestroyCredentialResponseSchema);
      expect(result?.credential?.status).toBe(CredentialStatus.DESTROYED);

      // The key objects are gone from the SoftHSM token; the public key stays on record.
      expect(await crypto!.findKey(s.keyId)).toBeUndefined();
      expect(await crypto!.findPublicKey(s.keyId)).toBeUndefined();
      const { credential } = await ra(protocol).getCredential({ credentialId: s.credentialId });
      expect(credential?.status).toBe(CredentialStatus.DESTROYED);
      expect(credential?.publicKeySpki).toEqual(s.spki);
      expect(credential?.statusReason).toBe("signer deceased");

      // Executed once; every later use is refused.
      expect(await refusalOf(officers(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest }))).toMatchObject({ reason: Reason.STATE_CONFLICT });
      expect(await refusalOf(signHash(token, hs, protocol))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_DESTROYED });
      // The SCA's view hides destroyed credentials (sca-view.ts): a new transaction finds none.
      expect(await refusalOf(begin(s, hashes(1), protocol))).toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
      expect(await refusalOf(ra(protocol, so1).destroyCredential(destroyRequest(s)))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_DESTROYED });
      expect(await refusalOf(ra(protocol).suspendCredential({ credentialId: s.credentialId, reason: "x" }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_DESTROYED });
      expect(await refusalOf(ra(protocol).resumeCredential({ credentialId: s.credentialId, reason: "x" }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_DESTROYED });
      expect(await refusalOf(frontEnd(protocol).requestSuspension(await suspensionRequest(s, protocol)))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_DESTROYED });

      // Audited with both officers.
      const destroyed = (await auditTrail(s.signerId)).filter((r) => r.eventType === "credential.destroyed");
      expect(destroyed).toHaveLength(1);
      expect(destroyed[0]?.actor?.id).toBe(so1.userId);
      expect(destroyed[0]?.approver?.id).toBe(so2.userId);
      expect(destroyed[0]?.details["key_id"]).toBe(s.keyId);
    });
  }

  it("a key pair already gone from the module (a destruction interrupted before its tombstone) is tombstoned on the next approved request", async () => {
    const s = await newSigner();
    await crypto!.destroyKeyPair(s.keyId);
    const detail = (await errorOf(ra("grpc", so1).destroyCredential(destroyRequest(s, "finish")))).findDetails(ApprovalRequiredSchema)[0]!;
    const { pendingApproval } = await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
    expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.DESTROYED);
  });

  it("fails closed: when the module cannot destroy the key, nothing is tombstoned and a later approved request finishes the job", async () => {
    const s = await newSigner();
    const officers = (p: PrivilegedPerson) => createClient(PrivilegedUserService, t.as(p));
    const request = async (reason: string) => (await errorOf(ra("grpc", so1).destroyCredential(destroyRequest(s, reason)))).findDetails(ApprovalRequiredSchema)[0]!;
    failKeyDestruction = true;
    try {
      const detail = await request("first try");
      const { pendingApproval } = await officers(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
      expect(pendingApproval?.state).toBe(PendingApprovalState.FAILED);
      expect(pendingApproval?.errorCode).toBe("CRYPTO_MODULE_FAILURE");
    } finally {
      failKeyDestruction = false;
    }
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.ACTIVE);
    expect(await crypto!.findKey(s.keyId)).toBeDefined();
    const detail = await request("second try");
    const { pendingApproval } = await officers(so2).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
    expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
    expect(await crypto!.findKey(s.keyId)).toBeUndefined();
    expect(await statusOf(s.credentialId)).toBe(CredentialStatus.DESTROYED);
  });
});
