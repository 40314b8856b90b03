import { createHash } from "node:crypto";
import { clone } from "@bufbuild/protobuf";
import { ConnectError, Code, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, type DeviceKey } from "@inkan/sdk";
import { PolicyService, SecurityPolicySchema } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { issueSignerCertificate, signerIssuingCa } from "../testing/signer-certificates.js";
import { activeSigner, testPin } from "../testing/signers.js";

// A credential whose certificate has expired (or is not valid yet) signs nothing: BeginTransaction,
// Authorize, SignHash (token and one-call form) and SignStream (before every claim) refuse it with
// FAILED_PRECONDITION, REASON_CERTIFICATE_EXPIRED, unless the policy's certificate_expiry_grace
// (default none) still covers it (R-3.1.1.4, T-2.1.3.2). Real certificates from the development
// signer issuing CA, imported while valid; then the SAP's clock (ServeHooks.clock) is moved past
// their validity instead of waiting for it.
let t: TestServer;
let operator: PrivilegedPerson;
/** How far the SAP components' clock runs ahead of the real one (negative: behind). */
let clockAheadMs = 0;
const sapNow = () => new Date(Date.now() + clockAheadMs);

interface Certified {
  signerId: string;
  credentialId: string;
  deviceKey: DeviceKey;
  notBefore: Date;
  notAfter: Date;
}

const sca = (protocol: Protocol = "grpc") => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
const certificateExpired = { code: Code.FailedPrecondition, reason: Reason.CERTIFICATE_EXPIRED };
const hashes = (n: number) => Array.from({ length: n }, () => new Uint8Array(createHash("sha256").update(`${Math.random()}`).digest()));

/** An ACTIVE signer and credential whose certificate (imported now, while valid) is valid from `notBefore` to `notAfter`. */
async function certified(validity: { notBefore: Date; notAfter: Date }): Promise<Certified> {
  const signer = await activeSigner(t, operator);
  const ra = createClient(RegistrationService, t.as(operator));
  const { credential } = await ra.generateKey({ signerId: signer.signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "short-lived certificate" });
  const certificate = await issueSignerCertificate(await signerIssuingCa(t), credential!.publicKeySpki, validity);
  await ra.importCertificate({ credentialId: credential!.credentialId, certificateChain: [certificate] });
  return { signerId: signer.signerId, credentialId: credential!.credentialId, deviceKey: signer.deviceKey, ...validity };
}

/** A transaction of 30 minutes (so that moving the clock a few minutes leaves it alive). */
async function begin(s: Certified, list: Uint8Array[], protocol: Protocol = "grpc"): Promise<SadChallenge> {
  const res = await sca(protocol).beginTransaction({
    credentialId: s.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: list.length, hashes: list,
    description: "certificate validity", lifetime: { seconds: 1800n, nanos: 0 },
  });
  return res.sadChallenge!;
}

/** An R.SAD made by the signer's device at the SAP's present time. */
const rSadFor = (s: Certified, ch: SadChallenge) =>
  buildRSad({
    deviceKey: s.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!, now: sapNow(), lifetimeSeconds: 60,
  });

async function authorized(s: Certified, list: Uint8Array[], protocol: Protocol = "grpc"): Promise<{ ch: SadChallenge; sadToken: string }> {
  const ch = await begin(s, list, protocol);
  const { sadToken } = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await rSadFor(s, ch) });
  return { ch, sadToken };
}

const signHash = (sadToken: string, list: Uint8Array[], protocol: Protocol = "grpc") =>
  sca(protocol).signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: list });
const firstOf = <T>(stream: AsyncIterable<T>) => stream[Symbol.asyncIterator]().next();
const signaturesCreated = async (transactionId: string) => (await sca().cancelTransaction({ transactionId })).signaturesCreated;
/** Moves the SAP's clock to `at` plus `ms`. */
const moveClockTo = (at: Date, ms: number) => {
  clockAheadMs = at.getTime() + ms - Date.now();
};

beforeAll(async () => {
  t = await startTestServer({}, { clock: sapNow });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-certificate-validity");
}, 60_000);
afterAll(async () => {
  await t?.close();
});
afterEach(() => {
  clockAheadMs = 0;
});

describe("a credential whose certificate expired signs nothing (R-3.1.1.4, T-2.1.3.2)", () => {
  /** Expires 4 minutes after the import: a SAD token (5 minutes) issued before its expiry is still unexpired just after it. */
  const expiringSoon = () => certified({ notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 240_000) });

  for (const protocol of ["grpc", "connect"] as const) {
    it(`T-2.1.3.2: after notAfter, BeginTransaction, Authorize, SignHash (token and one-call form) and SignStream are refused CERTIFICATE_EXPIRED; nothing is signed, over ${protocol}`, async () => {
      const s = await expiringSoon();
      // While the certificate is valid the credential signs: the refusals below are about time.
      const warmUp = hashes(1);
      expect((await signHash((await authorized(s, warmUp, protocol)).sadToken, warmUp, protocol)).signatures).toHaveLength(1);

      const forSignHash = hashes(2);
      const token = await authorized(s, forSignHash, protocol);
      const forStream = hashes(2);
      const streamToken = await authorized(s, forStream, protocol);
      const pending = await begin(s, hashes(1), protocol);
      const inlineList = hashes(1);
      const inline = await begin(s, inlineList, protocol);

      moveClockTo(s.notAfter, 1_000);
      expect(await refusalOf(begin(s, hashes(1), protocol))).toMatchObject(certificateExpired);
      expect(await refusalOf(sca(protocol).authorize({ transactionId: pending.transactionId, rSad: await rSadFor(s, pending) }))).toMatchObject(certificateExpired);
      expect(await refusalOf(signHash(token.sadToken, forSignHash, protocol))).toMatchObject(certificateExpired);
      const oneCall = sca(protocol).signHash({ authorization: { case: "inlineAuthorization", value: { transactionId: inline.transactionId, rSad: await rSadFor(s, inline) } }, hashes: inlineList });
      expect(await refusalOf(oneCall)).toMatchObject(certificateExpired);
      expect(await refusalOf(firstOf(sca(protocol).signStream({ sadToken: streamToken.sadToken, startIndex: 0 })))).toMatchObject(certificateExpired);

      clockAheadMs = 0;
      for (const id of [token.ch.transactionId, streamToken.ch.transactionId, pending.transactionId, inline.transactionId]) expect(await signaturesCreated(id)).toBe(0);
    });
  }

  it("T-2.1.3.2: a certificate expiring during a SignStream ends it before its next claim: CERTIFICATE_EXPIRED, the rest unsigned", async () => {
    const s = await expiringSoon();
    const list = hashes(5_000);
    const { ch, sadToken } = await authorized(s, list);
    const stream = sca().signStream({ sadToken, startIndex: 0 })[Symbol.asyncIterator]();
    await stream.next(); // the resume token
    await stream.next(); // the first signatures; the client stops reading for a moment
    moveClockTo(s.notAfter, 1_000);
    const end = await refusalOf((async () => { for (;;) if ((await stream.next()).done) return; })());
    expect(end).toMatchObject(certificateExpired);
    clockAheadMs = 0;
    expect(await signaturesCreated(ch.transactionId)).toBeLessThan(5_000);
  });

  it("T-2.1.3.2: a certificate not valid yet (the SAP's clock before its notBefore) is refused the same way", async () => {
    const s = await certified({ notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000) });
    const list = hashes(1);
    const { sadToken } = await authorized(s, list);
    moveClockTo(s.notBefore, -60_000);
    expect(await refusalOf(begin(s, hashes(1)))).toMatchObject(certificateExpired);
    expect(await refusalOf(signHash(sadToken, list))).toMatchObject(certificateExpired);
    clockAheadMs = 0;
    expect((await signHash(sadToken, list)).signatures).toHaveLength(1);
  });
});

describe("the policy's certificate_expiry_grace (set under dual control)", () => {
  beforeAll(async () => {
    const so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "so2-certificate-validity");
    const policies = createClient(PolicyService, t.adminTransport());
    const { record } = await policies.getSecurityPolicy({});
    const policy = clone(SecurityPolicySchema, record!.policy!);
    policy.certificateExpiryGrace = { $typeName: "google.protobuf.Duration", seconds: 3600n, nanos: 0 };
    const held = await policies.updateSecurityPolicy({ expectedVersion: record!.version, policy }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    const detail = held!.findDetails(ApprovalRequiredSchema)[0]!;
    await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
  }, 30_000);

  it("T-2.1.3.2: within the grace an expired certificate still signs; past it, it is refused CERTIFICATE_EXPIRED", async () => {
    const s = await certified({ notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 240_000) });
    const list = hashes(1);
    const { sadToken } = await authorized(s, list);
    moveClockTo(s.notAfter, 1_000);
    expect((await signHash(sadToken, list)).signatures).toHaveLength(1);
    moveClockTo(s.notAfter, 3_600_000 + 1_000);
    expect(await refusalOf(begin(s, hashes(1)))).toMatchObject(certificateExpired);
  });
});
