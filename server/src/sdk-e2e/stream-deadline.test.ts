/**
 * Issue 18 item 12: a short deadline on SignStream. Starting a stream spends the SAD token, and a
 * client whose deadline ends before the first message (the resume token) arrives could never
 * resume. The SAM sends the resume token in the first message, before any signature; the SDK
 * starts a stream only with enough of the deadline left (streamDefaults.minStartMs), keeping the
 * token otherwise, and resumes a stream that fell silent (streamDefaults.idleMs). The real SAM
 * (SoftHSM2 + SQLite, mTLS), over gRPC and @grpc/grpc-js.
 */
import { createPublicKey, verify as verifySignature } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { InkanError, buildRSad, createInkanClient, createInkanGrpcJsClient, streamDefaults, type DeviceKey, type InkanClient, type SadChallenge } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

let t: TestServer;
let alice: { signerId: string; credentialId: string; deviceKey: DeviceKey; spki: Uint8Array };

function client(kind: "grpc" | "grpc-js"): InkanClient {
  const tls = { ca: t.pki.ca, cert: t.pki.sca.cert, key: t.pki.sca.key };
  return kind === "grpc-js" ? createInkanGrpcJsClient({ address: t.server.url, tls }) : createInkanClient({ baseUrl: t.server.url, tls, protocol: "grpc" });
}

const rSadFor = (ch: SadChallenge) =>
  buildRSad({
    deviceKey: alice.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
  });

const verifies = (doc: Uint8Array, sig: Uint8Array) => verifySignature("sha256", doc, createPublicKey({ key: Buffer.from(alice.spki), format: "der", type: "spki" }), sig);

beforeAll(async () => {
  t = await startTestServer();
  const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-stream-deadline");
  const a = await activeSignerWithCredential(t, operator);
  alice = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey, spki: a.credential.publicKeySpki };
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("Issue 18 item 12: SignStream and a short deadline", () => {
  for (const kind of ["grpc", "grpc-js"] as const) {
    it(`over ${kind}: signAll in a stream with a deadline shorter than streamDefaults.minStartMs fails with DeadlineExceeded and keeps the token; the next signAll signs every document`, async () => {
      const inkan = client(kind);
      const docs = Array.from({ length: 1_200 }, (_, i) => Buffer.from(`deadline ${kind} ${i} ${Math.random()}`));
      const tx = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, documents: docs, description: "short deadline" });
      await tx.authorize(await rSadFor(tx.challenge));
      const short = await tx.signAll({ mode: "stream", timeoutMs: 50 }).then(() => undefined, (e: unknown) => e);
      expect(short).toBeInstanceOf(InkanError);
      expect((short as InkanError).code).toBe(Code.DeadlineExceeded);
      const signatures = await tx.signAll({ mode: "stream", timeoutMs: streamDefaults.minStartMs + 60_000 });
      expect(signatures).toHaveLength(docs.length);
      for (const i of [0, 599, docs.length - 1]) expect(verifies(docs[i]!, signatures[i]!)).toBe(true);
      expect(signatures.every((s, i) => s.length > 0 && (i % 97 !== 0 || verifies(docs[i]!, s)))).toBe(true);
    }, 90_000);
  }
  it("the defaults: a stream is started with at least 10 s left and resumed after 60 s of silence (longer than the SAM's 10-second checkpoint)", () => {
    expect(streamDefaults).toEqual({ minStartMs: 10_000, idleMs: 60_000 });
  });
});
