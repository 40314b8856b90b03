import { createHash, randomBytes } from "node:crypto";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildClaimsRSad, buildRSad, dtbsrDigest, type DeviceKey } from "@inkan/sdk";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { errorOf, refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

// Issue 18, item 1: the reasons SignatureActivationService declares for an RPC that no other test
// produced, each produced here over the real server (SoftHSM2 + SQLite, mTLS), so the error
// contract's coverage check (testing/error-contract.global.ts) sees them.
let t: TestServer;
let operator: PrivilegedPerson;
let so2: PrivilegedPerson;

interface Signer { signerId: string; credentialId: string; fingerprint: Uint8Array; deviceKey: DeviceKey }

const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const ra = (who: PrivilegedPerson = operator) => createClient(RegistrationService, t.as(who));
const hashes = (n: number) => Array.from({ length: n }, () => new Uint8Array(createHash("sha256").update(randomBytes(16)).digest()));

async function newSigner(): Promise<Signer> {
  const s = await activeSignerWithCredential(t, operator);
  return { signerId: s.signerId, credentialId: s.credential.credentialId, fingerprint: s.credential.publicKeyFingerprint, deviceKey: s.deviceKey };
}

async function begin(s: Signer, list = hashes(1)): Promise<SadChallenge> {
  return (await sca().beginTransaction({ credentialId: s.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: list.length, hashes: list, description: "reasons" })).sadChallenge!;
}

const rSad = (s: Signer, ch: SadChallenge, pin = testPin) => buildRSad({
  deviceKey: s.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
  challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin, samKey: ch.encryptionKey!,
});

/** A sealed transaction over one hash, authorized: its hash and first SAD token. */
async function authorized(s: Signer): Promise<{ hash: Uint8Array; token: string }> {
  const hash = hashes(1)[0]!;
  const ch = await begin(s, [hash]);
  return { hash, token: (await sca().authorize({ transactionId: ch.transactionId, rSad: await rSad(s, ch) })).sadToken };
}

const signHash = (token: string, hash: Uint8Array) => sca().signHash({ authorization: { case: "sadToken", value: token }, hashes: [hash] });
const firstStreamMessage = (token: string) => sca().signStream({ sadToken: token, startIndex: 0 })[Symbol.asyncIterator]().next();

beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-reasons");
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "second-officer-reasons");
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("SignatureActivationService: declared reasons (issue 18, item 1)", () => {
  it("R-3.2.1.4: AppendHashes and SealTransaction after upload_expires_at are FAILED_PRECONDITION EXPIRED", async () => {
    const s = await newSigner();
    const list = hashes(10_001);
    const begun = await sca().beginTransaction({ credentialId: s.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: list.length, hashes: list.slice(0, 10_000), description: "late upload" });
    // Time passes: the insider's connection moves the upload deadline into the past (a transaction
    // body is not sealed while it uploads; the deadline is what is tested, without waiting 10 s).
    const rw = new Database(sqliteStoreFile(t.dataDir));
    rw.prepare("UPDATE transactions SET body = json_set(body, '$.uploadExpiresAt', ?) WHERE id = ?").run(new Date(Date.now() - 1000).toISOString(), begun.transactionId);
    rw.close();
    const expired = { code: Code.FailedPrecondition, reason: Reason.EXPIRED };
    expect(await refusalOf(sca().appendHashes({ transactionId: begun.transactionId, chunkIndex: 1, hashes: list.slice(10_000) }))).toMatchObject(expired);
    expect(await refusalOf(sca().sealTransaction({ transactionId: begun.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, list) }))).toMatchObject(expired);
  }, 60_000);

  it("R-3.3.1: once the signer is disabled, Authorize, SignHash and SignStream are FAILED_PRECONDITION SIGNER_INACTIVE", async () => {
    const s = await newSigner();
    const pending = await begin(s);
    const pendingRSad = await rSad(s, pending);
    const [forHash, forStream] = [await authorized(s), await authorized(s)];
    await ra().disableSigner({ signerId: s.signerId, reason: "left the company" });
    const inactive = { code: Code.FailedPrecondition, reason: Reason.SIGNER_INACTIVE };
    expect(await refusalOf(sca().authorize({ transactionId: pending.transactionId, rSad: pendingRSad }))).toMatchObject(inactive);
    expect(await refusalOf(signHash(forHash.token, forHash.hash))).toMatchObject(inactive);
    expect(await refusalOf(firstStreamMessage(forStream.token))).toMatchObject(inactive);
  }, 60_000);

  it("R-3.3.x: once the credential is destroyed, Authorize and SignStream are FAILED_PRECONDITION CREDENTIAL_DESTROYED", async () => {
    const s = await newSigner();
    const pending = await begin(s);
    const pendingRSad = await rSad(s, pending);
    const forStream = await authorized(s);
    const held = await errorOf(ra(t.firstSecurityOfficer).destroyCredential({ credentialId: s.credentialId, publicKeyFingerprint: s.fingerprint, reason: "signer deceased" }));
    const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
    await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
    const destroyed = { code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_DESTROYED };
    expect(await refusalOf(sca().authorize({ transactionId: pending.transactionId, rSad: pendingRSad }))).toMatchObject(destroyed);
    expect(await refusalOf(firstStreamMessage(forStream.token))).toMatchObject(destroyed);
  }, 60_000);

  it("R-3.1.4: the one-call SignHash with a wrong PIN is AUTHENTICATION_FAILED, with PIN alone on a level-2 credential ASSURANCE_LEVEL_NOT_MET; once the signer is locked, SignHash and SignStream are CREDENTIAL_LOCKED", async () => {
    const s = await newSigner();
    const [forHash, forStream] = [await authorized(s), await authorized(s)];
    const oneCall = async (rSadOf: (ch: SadChallenge) => Promise<string>) => {
      const list = hashes(1);
      const ch = await begin(s, list);
      return refusalOf(sca().signHash({ authorization: { case: "inlineAuthorization", value: { transactionId: ch.transactionId, rSad: await rSadOf(ch) } }, hashes: list }));
    };
    const pinOnly = (ch: SadChallenge) => buildClaimsRSad({
      signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge,
      dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, samKey: ch.encryptionKey!, factors: { pin: testPin },
    });
    expect(await oneCall(pinOnly)).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.ASSURANCE_LEVEL_NOT_MET });
    // The policy's lockout threshold (5) of wrong PINs, each on a transaction of its own.
    for (let i = 0; i < 5; i += 1) {
      expect(await oneCall((ch) => rSad(s, ch, "000000000"))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
    }
    const locked = { code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_LOCKED };
    expect(await refusalOf(signHash(forHash.token, forHash.hash))).toMatchObject(locked);
    expect(await refusalOf(firstStreamMessage(forStream.token))).toMatchObject(locked);
  }, 60_000);
});
