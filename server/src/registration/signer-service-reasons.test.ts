import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildActivationRequest, buildPinChangeRequest, buildSuspensionRequest, createDeviceKey } from "@inkan/sdk";
import type { SecurityPolicy } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { JwsAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { approvedPolicyChange } from "../testing/policy-change.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSigner, activeSignerWithCredential, enrolledSigner, testPin } from "../testing/signers.js";

// Issue 18, item 1: the reasons SignerService declares for an RPC that no other test produced,
// each produced here over the real server (SoftHSM2 + SQLite, mTLS) through the signer front end,
// so the error contract's coverage check (testing/error-contract.global.ts) sees them.
let t: TestServer;
let operator: PrivilegedPerson;
let so2: PrivilegedPerson;

const device = () => createClient(SignerService, t.transport("grpc", t.pki.frontEnd));
const ra = () => createClient(RegistrationService, t.as(operator));

async function activationRequest(signerId: string, code: string, deviceKey: Awaited<ReturnType<typeof createDeviceKey>>) {
  const ch = await device().createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
  return (await buildActivationRequest({ signerId, activationCode: code, pin: testPin, deviceKey, enrollTotp: false, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience })).request;
}

async function pinChange(signerId: string, deviceKey: Awaited<ReturnType<typeof createDeviceKey>>, newPin: string) {
  const ch = await device().createChallenge({ signerId, purpose: ChallengePurpose.PIN_CHANGE });
  return buildPinChangeRequest({ signerId, oldPin: testPin, newPin, deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
}

/** A security-policy change by the first security officer, approved by so2 (dual control). */
const changePolicy = (change: (p: SecurityPolicy) => void): Promise<void> => approvedPolicyChange(t, so2, change);

beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-signer-reasons");
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "second-officer-signer-reasons");
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("SignerService: declared reasons (issue 18, item 1)", () => {
  it("T-2.1.1.1: Activate with a device key another signer registered is ALREADY_EXISTS", async () => {
    const first = await activeSigner(t, operator);
    const second = await enrolledSigner(t, operator);
    expect(await refusalOf(device().activate(await activationRequest(second.signerId, second.code, first.deviceKey))))
      .toMatchObject({ code: Code.AlreadyExists, reason: Reason.ALREADY_EXISTS });
  });

  it("R-3.1.2.2: ChangePin to the same PIN is INVALID_REQUEST; once the signer is disabled, ChangePin and RequestSuspension are SIGNER_INACTIVE", async () => {
    const s = await activeSignerWithCredential(t, operator);
    expect(await refusalOf(device().changePin(await pinChange(s.signerId, s.deviceKey, testPin)))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    await ra().disableSigner({ signerId: s.signerId, reason: "left the company" });
    const inactive = { code: Code.FailedPrecondition, reason: Reason.SIGNER_INACTIVE };
    expect(await refusalOf(device().changePin(await pinChange(s.signerId, s.deviceKey, "135792468")))).toMatchObject(inactive);
    const credentialId = s.credential.credentialId;
    const ch = await device().createChallenge({ signerId: s.signerId, purpose: ChallengePurpose.SUSPENSION, credentialId });
    const suspension = await buildSuspensionRequest({ signerId: s.signerId, credentialId, deviceKey: s.deviceKey, challenge: ch.challenge, audience: ch.audience });
    expect(await refusalOf(device().requestSuspension({ ...suspension, signerId: s.signerId, credentialId }))).toMatchObject(inactive);
  });

  it("Activate with a device-key algorithm the policy does not allow (ES384 when only ES256 is) is ALGORITHM_NOT_ALLOWED", async () => {
    await changePolicy((p) => {
      p.allowedDeviceKeyAlgorithms = [JwsAlgorithm.ES256];
    });
    const s = await enrolledSigner(t, operator);
    expect(await refusalOf(device().activate(await activationRequest(s.signerId, s.code, await createDeviceKey("ES384")))))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.ALGORITHM_NOT_ALLOWED });
  }, 30_000);
  it("CreateChallenge beyond max_open_challenges_per_signer is LIMIT_EXCEEDED, per signer and purpose, concurrently too", async () => {
    // A policy of 3 open challenges per signer and purpose; 16 asked at once: exactly 3 issued.
    await changePolicy((p) => {
      p.maxOpenChallengesPerSigner = 3;
    });
    const signerId = `limit-${Date.now()}`;
    const outcomes = await Promise.allSettled(Array.from({ length: 16 }, () => device().createChallenge({ signerId, purpose: ChallengePurpose.PIN_CHANGE })));
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(3);
    const refused = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
    expect(await refusalOf(Promise.reject(refused!.reason))).toMatchObject({ code: Code.ResourceExhausted, reason: Reason.LIMIT_EXCEEDED });
    // Another purpose of the same signer, and another signer, are counted apart.
    await expect(device().createChallenge({ signerId, purpose: ChallengePurpose.DEVICE_AUTHENTICATION })).resolves.toBeDefined();
    await expect(device().createChallenge({ signerId: `${signerId}-other`, purpose: ChallengePurpose.PIN_CHANGE })).resolves.toBeDefined();
  });
});
