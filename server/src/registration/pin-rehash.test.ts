/**
 * Issue 20 (R-3.1.1.2), on the real server (SoftHSM2 + SQLite, gRPC with mTLS): a PIN stored with
 * the scrypt cost used before issue 20 (N = 2^15, 32 MiB) still authorizes, and its first
 * successful check re-hashes it with the policy's cost (default N = 2^12); a wrong PIN changes
 * nothing but the lockout count, as before.
 */
import { randomBytes } from "node:crypto";
import canonicalize from "canonicalize";
import { ConnectError, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, inkanErrorReason, type DeviceKey } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FullCryptoModule } from "../crypto/port.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { FactorRecord } from "../store/port.js";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";
import { hashPin, type PinFactorBody } from "./pin-hash.js";

let t: TestServer;
let crypto: FullCryptoModule;
let records: VerifiedRecords;
let operator: PrivilegedPerson;
const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));

beforeAll(async () => {
  t = await startTestServer({}, { wrapCrypto: (c) => (crypto = c), onRecords: (r) => (records = r) });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "RA operator");
}, 120_000);
afterAll(async () => {
  await t?.close();
});

const challenge = async (s: { signerId: string; credential: { credentialId: string } }): Promise<SadChallenge> =>
  (await sca().beginTransaction({ credentialId: s.credential.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [randomBytes(32)], description: "PIN cost test" })).sadChallenge!;
const rSad = (deviceKey: DeviceKey, ch: SadChallenge, pin: string) =>
  buildRSad({ deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin, samKey: ch.encryptionKey! });
const reasonOf = async (p: Promise<unknown>) => p.then(() => "OK", (e: unknown) => Reason[inkanErrorReason(ConnectError.from(e))]);

describe("PIN hash cost (issue 20, R-3.1.1.2)", () => {
  it("R-3.1.1.2: a PIN hashed with the former N = 2^15 authorizes and is re-hashed with the policy's N = 2^12; a wrong PIN before that re-hashes nothing", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const pinFactor = async () => (await records.list({ kind: "factor", where: { signerId: s.signerId, status: "ACTIVE", type: "PIN" }, limit: 1 })).items[0]!;
    const bodyOf = (f: FactorRecord) => JSON.parse(f.body) as PinFactorBody;
    const set = await pinFactor();
    expect(bodyOf(set).params).toEqual({ N: 4096, r: 8, p: 1, keyLength: 32 }); // set at activation with the default policy's cost

    // The hash a SAM made before issue 20, for the same PIN, peppered by the same module key.
    const old = await hashPin(crypto, testPin, new Date(bodyOf(set).setAt), { N: 2 ** 15, r: 8, p: 1 });
    await records.update<FactorRecord>({ ...set, version: set.version + 1, body: canonicalize(old)! }, set.version);

    const wrong = await challenge(s);
    expect(await reasonOf(sca().authorize({ transactionId: wrong.transactionId, rSad: await rSad(s.deviceKey, wrong, "987654321") }))).toBe("AUTHENTICATION_FAILED");
    const afterWrong = await pinFactor();
    expect(afterWrong.version).toBe(set.version + 1);
    expect(bodyOf(afterWrong)).toEqual(old);

    const right = await challenge(s);
    expect((await sca().authorize({ transactionId: right.transactionId, rSad: await rSad(s.deviceKey, right, testPin) })).sadToken).not.toBe("");
    const rehashed = await pinFactor();
    expect(rehashed.id).toBe(set.id);
    expect(rehashed.version).toBe(set.version + 2);
    expect(bodyOf(rehashed).params).toEqual({ N: 4096, r: 8, p: 1, keyLength: 32 });
    expect(bodyOf(rehashed).setAt).toBe(old.setAt);
    expect(bodyOf(rehashed).salt).not.toBe(old.salt);

    // The re-hashed PIN keeps working, and is not rewritten again.
    const again = await challenge(s);
    expect((await sca().authorize({ transactionId: again.transactionId, rSad: await rSad(s.deviceKey, again, testPin) })).sadToken).not.toBe("");
    expect((await pinFactor()).version).toBe(set.version + 2);
  });
});
