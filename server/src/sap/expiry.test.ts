import { createHash } from "node:crypto";
import { clone } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, type DeviceKey } from "@inkan/sdk";
import { PolicyService, SecurityPolicySchema } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, TransactionState, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

// Expiry attacks on the real server (SoftHSM2 + SQLite, mTLS), over gRPC and Connect: a transaction,
// an R.SAD and a SAD token used after they expired are refused with FAILED_PRECONDITION
// REASON_EXPIRED and sign nothing (R-3.2.1.2, T-2.2.1.3). Time passes honestly where the policy
// allows it (an R.SAD made in the past; a SAD token lifetime of 1 s); the transaction lifetime is
// 30 s at least, so for it the SAP's clock (ServeHooks.clock) is moved forward instead of waiting.
let t: TestServer;
let operator: PrivilegedPerson;
let alice: { signerId: string; credentialId: string; deviceKey: DeviceKey };
/** How far the SAP components' clock runs ahead of the real one. */
let clockAheadMs = 0;

const sca = (protocol: Protocol) => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
const expired = { code: Code.FailedPrecondition, reason: Reason.EXPIRED };
const hashesOf = (seed: string, n = 2) => Array.from({ length: n }, (_, i) => new Uint8Array(createHash("sha256").update(`${seed}-${i}-${Math.random()}`).digest()));

async function begin(protocol: Protocol, hashes: Uint8Array[], lifetimeSeconds?: bigint): Promise<SadChallenge> {
  const res = await sca(protocol).beginTransaction({
    credentialId: alice.credentialId, signerId: alice.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "Expiry",
    ...(lifetimeSeconds !== undefined ? { lifetime: { seconds: lifetimeSeconds, nanos: 0 } } : {}),
  });
  return res.sadChallenge!;
}

const rSadFor = (ch: SadChallenge, timing: { now?: Date; lifetimeSeconds?: number } = {}) =>
  buildRSad({
    deviceKey: alice.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!, lifetimeSeconds: 20, ...timing,
  });

const firstOf = <T>(stream: AsyncIterable<T>) => stream[Symbol.asyncIterator]().next();
/** The state CancelTransaction reports: an ended transaction is left as it is. */
const finalState = async (protocol: Protocol, transactionId: string) => (await sca(protocol).cancelTransaction({ transactionId })).state;

beforeAll(async () => {
  t = await startTestServer({}, { clock: () => new Date(Date.now() + clockAheadMs) });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-expiry");
  const a = await activeSignerWithCredential(t, operator);
  alice = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey };
}, 60_000);
afterAll(async () => {
  await t?.close();
});

for (const protocol of ["grpc", "connect"] as const) {
  describe(`an expired transaction over ${protocol} (R-3.2.1.2)`, () => {
    afterEach(() => {
      clockAheadMs = 0;
    });

    it(`R-3.2.1.2: Authorize after the transaction's lifetime is refused EXPIRED, and the transaction is EXPIRED`, async () => {
      const ch = await begin(protocol, hashesOf(`tx-authorize-${protocol}`), 30n);
      const rSad = await rSadFor(ch); // made while the transaction was alive
      clockAheadMs = timestampDate(ch.expiresAt!).getTime() - Date.now() + 1_000;
      expect(await refusalOf(sca(protocol).authorize({ transactionId: ch.transactionId, rSad }))).toMatchObject(expired);
      expect(await finalState(protocol, ch.transactionId)).toBe(TransactionState.EXPIRED);
    });

    it(`R-3.2.1.2: SignHash, and SignHash with inline authorization, after the transaction expired are refused EXPIRED; nothing is signed`, async () => {
      const hashes = hashesOf(`tx-signhash-${protocol}`);
      const ch = await begin(protocol, hashes, 30n);
      const { sadToken } = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) });
      const pendingHashes = hashesOf(`tx-inline-${protocol}`, 1);
      const pending = await begin(protocol, pendingHashes, 30n);
      const inline = await rSadFor(pending);
      clockAheadMs = Math.max(timestampDate(ch.expiresAt!).getTime(), timestampDate(pending.expiresAt!).getTime()) - Date.now() + 1_000;
      // The token's own expiry is capped at the transaction's, so both lapse together here.
      expect(await refusalOf(sca(protocol).signHash({ authorization: { case: "sadToken", value: sadToken }, hashes }))).toMatchObject(expired);
      const inlineCall = sca(protocol).signHash({ authorization: { case: "inlineAuthorization", value: { transactionId: pending.transactionId, rSad: inline } }, hashes: pendingHashes });
      expect(await refusalOf(inlineCall)).toMatchObject(expired);
      for (const id of [ch.transactionId, pending.transactionId]) {
        expect(await sca(protocol).cancelTransaction({ transactionId: id })).toMatchObject({ state: TransactionState.EXPIRED, signaturesCreated: 0 });
      }
    });

    it(`R-3.2.1.2: SignStream with a token of an expired transaction is refused EXPIRED before any message`, async () => {
      const ch = await begin(protocol, hashesOf(`tx-stream-${protocol}`), 30n);
      const { sadToken } = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) });
      clockAheadMs = timestampDate(ch.expiresAt!).getTime() - Date.now() + 1_000;
      expect(await refusalOf(firstOf(sca(protocol).signStream({ sadToken, startIndex: 0 })))).toMatchObject(expired);
      expect(await finalState(protocol, ch.transactionId)).toBe(TransactionState.EXPIRED);
    });
  });

  describe(`an expired R.SAD over ${protocol} (R-3.2.1.2, T-2.2.1.3)`, () => {
    it(`R-3.2.1.2: an R.SAD whose exp passed (beyond the 60 s skew) is refused EXPIRED by Authorize; the transaction stays pending`, async () => {
      const ch = await begin(protocol, hashesOf(`rsad-${protocol}`));
      // Made by the device 2 minutes ago, valid for 30 s: exp is 90 s in the past.
      const stale = await rSadFor(ch, { now: new Date(Date.now() - 120_000), lifetimeSeconds: 30 });
      expect(await refusalOf(sca(protocol).authorize({ transactionId: ch.transactionId, rSad: stale }))).toMatchObject(expired);
      // Nothing changed: a fresh R.SAD still authorizes the transaction.
      const res = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) });
      expect(res.signaturesRemaining).toBe(2);
    });

    it(`R-3.2.1.2: the same stale R.SAD inline in SignHash is refused EXPIRED and signs nothing`, async () => {
      const hashes = hashesOf(`rsad-inline-${protocol}`, 1);
      const ch = await begin(protocol, hashes);
      const stale = await rSadFor(ch, { now: new Date(Date.now() - 120_000), lifetimeSeconds: 30 });
      const call = sca(protocol).signHash({ authorization: { case: "inlineAuthorization", value: { transactionId: ch.transactionId, rSad: stale } }, hashes });
      expect(await refusalOf(call)).toMatchObject(expired);
      expect((await sca(protocol).cancelTransaction({ transactionId: ch.transactionId })).state).toBe(TransactionState.CANCELED);
    });
  });
}

describe("an expired SAD token (sad_token_lifetime 1 s, set under dual control) (R-3.2.1.2, T-2.2.1.3)", () => {
  beforeAll(async () => {
    const so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "so2-expiry");
    const policies = createClient(PolicyService, t.adminTransport());
    const { record } = await policies.getSecurityPolicy({});
    const policy = clone(SecurityPolicySchema, record!.policy!);
    policy.sadTokenLifetime = { $typeName: "google.protobuf.Duration", seconds: 1n, nanos: 0 };
    const held = await policies.updateSecurityPolicy({ expectedVersion: record!.version, policy }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    const detail = held!.findDetails(ApprovalRequiredSchema)[0]!;
    await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
  }, 30_000);

  /** Authorize, then let the 1 s token lapse for real (the transaction lives 5 minutes). */
  async function lapsedToken(protocol: Protocol, hashes: Uint8Array[]): Promise<{ ch: SadChallenge; sadToken: string }> {
    const ch = await begin(protocol, hashes);
    const res = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) });
    const expiresAt = timestampDate(res.sadTokenExpiresAt!).getTime();
    expect(expiresAt - Date.now()).toBeLessThanOrEqual(1_000);
    expect(timestampDate(ch.expiresAt!).getTime() - Date.now()).toBeGreaterThan(60_000);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 200));
    return { ch, sadToken: res.sadToken };
  }

  for (const protocol of ["grpc", "connect"] as const) {
    it(`R-3.2.1.2: SignHash with an expired token over ${protocol} is refused EXPIRED and signs nothing`, async () => {
      const hashes = hashesOf(`token-signhash-${protocol}`);
      const { ch, sadToken } = await lapsedToken(protocol, hashes);
      expect(await refusalOf(sca(protocol).signHash({ authorization: { case: "sadToken", value: sadToken }, hashes }))).toMatchObject(expired);
      const cancelled = await sca(protocol).cancelTransaction({ transactionId: ch.transactionId });
      expect(cancelled.signaturesCreated).toBe(0);
    });

    it(`R-3.2.1.2: SignStream with an expired token over ${protocol} is refused EXPIRED before any message`, async () => {
      const { ch, sadToken } = await lapsedToken(protocol, hashesOf(`token-stream-${protocol}`));
      expect(await refusalOf(firstOf(sca(protocol).signStream({ sadToken, startIndex: 0 })))).toMatchObject(expired);
      const cancelled = await sca(protocol).cancelTransaction({ transactionId: ch.transactionId });
      expect(cancelled.signaturesCreated).toBe(0);
    });
  }
});
