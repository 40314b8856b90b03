/**
 * Issue 17 item 2 (T-2.2.1.3, T-2.2.1.6): N concurrent presentations of one SAD token, SignStream
 * and SignHash mixed, behind a start barrier, many rounds. Consuming the token and claiming the
 * entries are one store operation, so exactly one presentation wins every round and completes: all
 * its signatures verify. Every other one is refused with SAD_REPLAYED (audited), and the replay
 * revokes what comes after (the transaction's later tokens), never the winner's claimed work.
 * The real server: SoftHSM2, SQLite, mTLS, gRPC.
 */
import { createHash, createPublicKey, verify as verifySignature } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { Reason, buildRSad, type DeviceKey } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { moduleSignatureCounter } from "../testing/module-signatures.js";
import { refusalOf, startTestServer, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

let t: TestServer;
let alice: { signerId: string; credentialId: string; deviceKey: DeviceKey; spki: Uint8Array };
const { wrapCrypto, counts: moduleSignatures } = moduleSignatureCounter();

const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const rounds = 12;
const presenters = 8;

async function authorized(messages: Buffer[]): Promise<{ token: string; hashes: Uint8Array[] }> {
  const hashes = messages.map((m) => new Uint8Array(createHash("sha256").update(m).digest()));
  const begun = await sca().beginTransaction({
    credentialId: alice.credentialId, signerId: alice.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "race",
  });
  const ch = begun.sadChallenge!;
  const rSad = await buildRSad({
    deviceKey: alice.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
  });
  return { token: (await sca().authorize({ transactionId: ch.transactionId, rSad })).sadToken, hashes };
}

/** One presentation: the signatures it received by index, or its refusal. */
type Outcome = { signatures: Map<number, Uint8Array> } | { refused: Reason };

async function presentStream(token: string): Promise<Outcome> {
  const signatures = new Map<number, Uint8Array>();
  try {
    for await (const m of sca().signStream({ sadToken: token, startIndex: 0 })) for (const s of m.signatures) signatures.set(s.index, s.signature);
    return { signatures };
  } catch (err) {
    if (signatures.size > 0) throw err; // a winner that failed midway: the test fails with its error
    return { refused: (await refusalOf(Promise.reject(err))).reason };
  }
}

async function presentHash(token: string, hashes: Uint8Array[]): Promise<Outcome> {
  try {
    const res = await sca().signHash({ authorization: { case: "sadToken", value: token }, hashes });
    return { signatures: new Map(res.signatures.map((s, i) => [i, s])) };
  } catch (err) {
    return { refused: (await refusalOf(Promise.reject(err))).reason };
  }
}

beforeAll(async () => {
  t = await startTestServer({}, { wrapCrypto });
  const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-race");
  const a = await activeSignerWithCredential(t, operator);
  alice = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey, spki: a.credential.publicKeySpki };
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("Issue 17 item 2: concurrent presentations of one token (T-2.2.1.3, T-2.2.1.6)", () => {
  it(`T-2.2.1.3: ${presenters} concurrent presentations of one token (SignStream and SignHash mixed), ${rounds} rounds: exactly one winner each round, its signatures verify, the others are SAD_REPLAYED`, async () => {
    const winners: string[] = [];
    for (let round = 0; round < rounds; round++) {
      const messages = Array.from({ length: 3 }, (_, i) => Buffer.from(`race ${round} ${i} ${Math.random()}`));
      const { token, hashes } = await authorized(messages);
      let open!: () => void;
      const barrier = new Promise<void>((resolve) => (open = resolve));
      // Alternating kinds, the first kind changing each round.
      const kinds = Array.from({ length: presenters }, (_, i) => ((i + round) % 2 === 0 ? "stream" : "hash"));
      const calls = kinds.map(async (kind) => {
        await barrier;
        return kind === "stream" ? presentStream(token) : presentHash(token, hashes);
      });
      open();
      const outcomes = await Promise.all(calls);
      const won = outcomes.flatMap((o, i) => ("signatures" in o ? [{ kind: kinds[i]!, signatures: o.signatures }] : []));
      expect(won, `round ${round}`).toHaveLength(1);
      const winner = won[0]!;
      winners.push(winner.kind);
      expect(winner.signatures.size).toBe(hashes.length); // the winner completes: nothing of its claim is lost
      for (const [i, sig] of winner.signatures) {
        expect(verifySignature("sha256", messages[i]!, createPublicKey({ key: Buffer.from(alice.spki), format: "der", type: "spki" }), sig)).toBe(true);
      }
      for (const o of outcomes) if ("refused" in o) expect(o.refused).toBe(Reason.SAD_REPLAYED);
      for (const h of hashes) expect(moduleSignatures.get(hex(h))).toBe(1); // signed once, by the winner only
    }
    console.log(`concurrent presentations: winners by kind: ${winners.join(", ")}`);
  }, 120_000);
});
