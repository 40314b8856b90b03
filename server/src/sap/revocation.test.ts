/**
 * Issue 13 finding 2 (R-3.3.1, T-2.1.2.2): RevokeDevice ("phone stolen") and ResetFactors cancel what
 * the revoked factors authorized. Before the fix, the thief's rotated token still signed after
 * RevokeDevice, and a token from before a reset signed again after the signer re-activated. The real
 * server (SoftHSM2, SQLite, mTLS), over gRPC.
 */
import { createHash } from "node:crypto";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, type DeviceKey } from "@inkan/sdk";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, TransactionState } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { moduleSignatureCounter } from "../testing/module-signatures.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, approvedResetFactors, reactivate, testPin } from "../testing/signers.js";

let t: TestServer;
let operator: PrivilegedPerson;
let secondOperator: PrivilegedPerson;
/** Signatures the crypto module made, by DTBS/R (hex). */
const { wrapCrypto, counts: moduleSignatures } = moduleSignatureCounter();

const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const registration = () => createClient(RegistrationService, t.as(operator));
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const documents = (n: number, seed: string) => Array.from({ length: n }, (_, i) => new Uint8Array(createHash("sha256").update(`${seed} ${i} ${Math.random()}`).digest()));
const signHash = (token: string, hashes: Uint8Array[]) => sca().signHash({ authorization: { case: "sadToken", value: token }, hashes });

interface Signer {
  signerId: string;
  credentialId: string;
  deviceKey: DeviceKey;
}

/** Begin + the signer's R.SAD with `deviceKey` + Authorize: the transaction and its first token. */
async function authorized(s: Signer, hashes: Uint8Array[], deviceKey = s.deviceKey): Promise<{ transactionId: string; token: string }> {
  const ch = (await sca().beginTransaction({ credentialId: s.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "Revocation test" })).sadChallenge!;
  const rSad = await buildRSad({
    deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
  });
  return { transactionId: ch.transactionId, token: (await sca().authorize({ transactionId: ch.transactionId, rSad })).sadToken };
}

async function newSigner(): Promise<Signer> {
  const s = await activeSignerWithCredential(t, operator);
  return { signerId: s.signerId, credentialId: s.credential.credentialId, deviceKey: s.deviceKey };
}

beforeAll(async () => {
  t = await startTestServer({}, { wrapCrypto });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-revocation");
  secondOperator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "second-operator-revocation");
}, 90_000);
afterAll(async () => {
  await t?.close();
});

describe("issue 13.2: revoked factors cancel what they authorized (R-3.3.1, T-2.1.2.2)", () => {
  it("after RevokeDevice the thief's rotated token signs nothing more; the transaction is REVOKED and audited", async () => {
    const s = await newSigner();
    const hashes = documents(3, "stolen phone");
    const { transactionId, token } = await authorized(s, hashes);
    const first = await signHash(token, [hashes[0]!]);
    expect(first.signatures).toHaveLength(1);
    await registration().revokeDevice({ signerId: s.signerId, deviceKeyId: s.deviceKey.kid, reason: "phone stolen" });
    expect(await refusalOf(signHash(first.nextSadToken, [hashes[1]!]))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    await expect((async () => {
      for await (const _ of sca().signStream({ sadToken: first.nextSadToken, startIndex: 1 })) void _;
    })()).rejects.toMatchObject({ code: Code.FailedPrecondition });
    expect((await sca().cancelTransaction({ transactionId })).state).toBe(TransactionState.REVOKED); // cancel reports the final state, unchanged
    expect(hashes.slice(1).map((h) => moduleSignatures.get(hex(h)) ?? 0)).toEqual([0, 0]);
  });

  it("a pending transaction is revoked too: the stolen device's R.SAD authorizes nothing after RevokeDevice", async () => {
    const s = await newSigner();
    const hashes = documents(1, "pending at revocation");
    const ch = (await sca().beginTransaction({ credentialId: s.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes, description: "Revocation test" })).sadChallenge!;
    const rSad = await buildRSad({
      deviceKey: s.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
      challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
    });
    await registration().revokeDevice({ signerId: s.signerId, deviceKeyId: s.deviceKey.kid, reason: "phone stolen" });
    expect((await refusalOf(sca().authorize({ transactionId: ch.transactionId, rSad }))).code).toBe(Code.FailedPrecondition);
    expect(moduleSignatures.get(hex(hashes[0]!)) ?? 0).toBe(0);
  });

  it("after ResetFactors (approved by a second operator) and re-activation, a token from before the reset signs nothing", async () => {
    const s = await newSigner();
    const hashes = documents(2, "before the reset");
    const { transactionId, token } = await authorized(s, hashes);
    const { halves } = await approvedResetFactors(t, operator, secondOperator, s.signerId);
    const newDevice = await reactivate(t, s.signerId, halves);
    expect(await refusalOf(signHash(token, [hashes[0]!]))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    expect((await sca().cancelTransaction({ transactionId })).state).toBe(TransactionState.REVOKED); // cancel reports the final state, unchanged
    expect(hashes.map((h) => moduleSignatures.get(hex(h)) ?? 0)).toEqual([0, 0]);
    // The signer, re-activated on the new device, signs again with a new authorization.
    const fresh = documents(1, "after the reset");
    const again = await authorized(s, fresh, newDevice);
    expect((await signHash(again.token, fresh)).signatures).toHaveLength(1);
  });
});
