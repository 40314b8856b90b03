import { createHash, createPublicKey, generateKeyPairSync, verify as verifySignature } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  InkanError, Reason, buildRSad, toInkanError, createInkanClient, createInkanGrpcJsClient, describeAuthorization,
  type DeviceKey, type InkanClient, type SadChallenge, type SamSigningKey, type SigningTransaction,
} from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import type { BeginTransactionResponse, GetCredentialResponse, SignHashResponse, SignStreamResponse } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm, KeyAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

// The SDK's SCA helpers against the real SAM (SoftHSM2 + SQLite, mTLS), over gRPC, Connect,
// gRPC-Web and @grpc/grpc-js: begin (inline and chunked), authorize, signAll (SignHash batches
// with token rotation, SignStream with resume), the one-call form, InkanError, AbortSignal and
// deadlines, and the check of every returned signature (T-2.2.1.8).
let t: TestServer;
let operator: PrivilegedPerson;
type Signer = { signerId: string; credentialId: string; deviceKey: DeviceKey; spki: Uint8Array; challengeSigningKey: SamSigningKey };
let alice: Signer;

type Kind = "grpc" | "connect" | "grpc-web" | "grpc-js";
const kinds: Kind[] = ["grpc", "connect", "grpc-web", "grpc-js"];

/** An SDK client of `kind` presenting the SCA certificate, with Connect or grpc-js interceptors. */
function client(kind: Kind, o: { connect?: Interceptor[]; grpcJs?: grpc.Interceptor[] } = {}): InkanClient {
  const tls = { ca: t.pki.ca, cert: t.pki.sca.cert, key: t.pki.sca.key };
  if (kind === "grpc-js") return createInkanGrpcJsClient({ address: t.server.url, tls, clientOptions: { interceptors: o.grpcJs ?? [] } });
  return createInkanClient({ baseUrl: t.server.url, tls, protocol: kind, interceptors: o.connect ?? [] });
}

/** The signer's device: R.SAD for the challenge, built with the SDK's device part. */
const rSadFor = (ch: SadChallenge, who: Signer = alice) =>
  buildRSad({
    deviceKey: who.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
  });

function documents(n: number, seed: string): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.from(`${seed}-${i}-${Math.random()}`));
}
const sha256 = (d: Uint8Array) => new Uint8Array(createHash("sha256").update(d).digest());

/** An independent check (node:crypto over the document) that the SDK's signatures are genuine. */
const verifiesWith = (spki: Uint8Array, doc: Uint8Array, sig: Uint8Array, hash = "sha256") =>
  verifySignature(hash, doc, createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }), sig);

async function failure(p: Promise<unknown>): Promise<InkanError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(InkanError);
    return err as InkanError;
  }
  throw new Error("expected the call to fail");
}

async function authorized(inkan: InkanClient, docs: Buffer[], description = "Invoices 2026-11"): Promise<SigningTransaction> {
  const tx = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, documents: docs, description });
  await tx.authorize(await rSadFor(tx.challenge));
  return tx;
}

/** Flips one byte of the first signature in a SignHash or SignStream response (a tampering relay). */
function tamper(message: unknown): void {
  const sig = (message as { signatures?: (SignHashResponse | SignStreamResponse)["signatures"] }).signatures?.[0];
  if (sig instanceof Uint8Array) sig[sig.length - 4]! ^= 0x01;
  else if (sig && typeof sig === "object" && "signature" in sig) (sig as { signature: Uint8Array }).signature[10]! ^= 0x01;
}
const connectTamper: Interceptor = (next) => async (req) => {
  const res = await next(req);
  if (!res.stream) {
    tamper(res.message);
    return res;
  }
  return { ...res, message: (async function* () { for await (const m of res.message) { tamper(m); yield m; } })() };
};
const grpcJsTamper: grpc.Interceptor = (options, nextCall) =>
  new grpc.InterceptingCall(nextCall(options), new grpc.RequesterBuilder()
    .withStart((metadata, listener, next) => next(metadata, new grpc.ListenerBuilder()
      .withOnReceiveMessage((message, nextMessage) => { tamper(message); nextMessage(message); })
      .build()))
    .build());

beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-sdk-e2e");
  const a = await activeSignerWithCredential(t, operator);
  alice = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey, spki: a.credential.publicKeySpki, challengeSigningKey: a.challengeSigningKey };
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("SDK SCA helpers against the real SAM", () => {
  for (const kind of kinds) {
    it(`over ${kind}: documents -> describeAuthorization -> authorize -> signAll in SignHash batches (method 2 token rotation), every signature genuine`, async () => {
      const inkan = client(kind);
      const docs = documents(3, `batches-${kind}`);
      const tx = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, documents: docs, description: "Invoices 2026-11" });
      const what = await describeAuthorization(tx.challenge, { challengeSigningKey: alice.challengeSigningKey, hashes: docs.map(sha256) });
      expect(what).toMatchObject({ count: 3, description: "Invoices 2026-11", matchesHashes: true, credentialId: alice.credentialId });
      expect(what.text).toContain('Sign 3 documents: "Invoices 2026-11"');
      expect((await describeAuthorization(tx.challenge, { challengeSigningKey: alice.challengeSigningKey, hashes: docs.slice(1).map(sha256) })).matchesHashes).toBe(false);
      await tx.authorize(await rSadFor(tx.challenge));
      const progress: number[] = [];
      const signatures = await tx.signAll({ batchSize: 1, onProgress: (p) => progress.push(p.signed) });
      expect(progress).toEqual([1, 2, 3]); // three SignHash calls, each with the token the previous one returned
      signatures.forEach((s, i) => expect(verifiesWith(alice.spki, docs[i]!, s)).toBe(true));
    });

    it(`over ${kind}: signAll streams 1,500 signatures (SignStream) in list order, each genuine`, async () => {
      const docs = documents(1_500, `stream-${kind}`);
      const tx = await authorized(client(kind), docs);
      let last = 0;
      const signatures = await tx.signAll({ mode: "stream", onProgress: (p) => { expect(p.signed).toBeGreaterThan(last); last = p.signed; } });
      expect(last).toBe(1_500);
      for (const i of [0, 1, 777, 1_499]) expect(verifiesWith(alice.spki, docs[i]!, signatures[i]!)).toBe(true);
    }, 60_000);

    it(`over ${kind}: the one-call form (SignHash with inline_authorization) signs a single document`, async () => {
      const inkan = client(kind);
      const [doc] = documents(1, `one-call-${kind}`);
      const tx = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, documents: [doc!], description: "Contract 42" });
      const [signature] = await tx.authorizeAndSign(await rSadFor(tx.challenge));
      expect(verifiesWith(alice.spki, doc!, signature!)).toBe(true);
    });

    it(`T-2.2.1.8 over ${kind}: a signature altered in transit (an interceptor flips a byte) is caught, by SignHash and by SignStream`, async () => {
      const inkan = kind === "grpc-js" ? client(kind, { grpcJs: [grpcJsTamper] }) : client(kind, { connect: [connectTamper] });
      const batch = await authorized(inkan, documents(2, `tamper-hash-${kind}`));
      const e1 = await failure(batch.signAll());
      expect(e1).toMatchObject({ reason: Reason.SIGNATURE_CHECK_FAILED, detectedBySdk: true, index: 0, retryable: false });
      expect(e1.message).toMatch(/does not verify against the credential's public key/);
      const stream = await authorized(inkan, documents(20, `tamper-stream-${kind}`));
      const e2 = await failure(stream.signAll({ mode: "stream" }));
      expect(e2).toMatchObject({ reason: Reason.SIGNATURE_CHECK_FAILED, detectedBySdk: true, index: 0 });
    });

    it(`over ${kind}: SAM refusals arrive as InkanError with reason, code and retryable`, async () => {
      const inkan = client(kind);
      expect(await failure(inkan.getCredential("cred-does-not-exist"))).toMatchObject({ reason: Reason.CREDENTIAL_NOT_FOUND, code: Code.NotFound, retryable: false, reasonName: "CREDENTIAL_NOT_FOUND" });
      const tx = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, hashes: [sha256(Buffer.from(`x-${kind}`))], description: "Refused" });
      const wrongPin = await buildRSad({
        deviceKey: alice.deviceKey, signerId: alice.signerId, credentialId: alice.credentialId, samId: tx.challenge.audience, transactionId: tx.id,
        challenge: tx.challenge.challenge, dtbsrDigest: tx.challenge.dtbsrDigest, count: 1, hashAlgorithm: tx.challenge.hashAlgorithm, description: tx.challenge.description, pin: "000000000", samKey: tx.challenge.encryptionKey!,
      });
      const e = await failure(tx.authorize(wrongPin));
      expect(e).toMatchObject({ reason: Reason.AUTHENTICATION_FAILED, code: Code.PermissionDenied, retryable: false, detectedBySdk: false });
      expect(e.message).not.toContain("000000000");
      expect(e.requestId).toMatch(/^[0-9a-f-]{36}$/); // the server's inkan-request-id, to find the call in its log
      expect(await failure(tx.signAll())).toMatchObject({ reason: Reason.TRANSACTION_STATE, detectedBySdk: true });
      await tx.cancel();
      expect(await failure(tx.authorize(await rSadFor(tx.challenge)))).toMatchObject({ reason: Reason.TRANSACTION_STATE, code: Code.FailedPrecondition });
    });

    it(`over ${kind}: an aborted signal cancels (code Canceled) and a passed deadline ends the call (DeadlineExceeded)`, async () => {
      const inkan = client(kind);
      const controller = new AbortController();
      controller.abort();
      expect(await failure(inkan.getCredential(alice.credentialId, { signal: controller.signal }))).toMatchObject({ code: Code.Canceled, reason: Reason.UNSPECIFIED });
      const tx = await authorized(inkan, documents(3_000, `deadline-${kind}`));
      const e = await failure(tx.signAll({ mode: "stream", timeoutMs: 150 }));
      expect(e.code).toBe(Code.DeadlineExceeded);
      expect(e.retryable).toBe(true);
    }, 60_000);
  }

  it("a list longer than max_hashes_per_chunk goes up in chunks, is sealed with the SDK's DTBS/R digest and signed through the stream", async () => {
    const inkan = client("grpc");
    const { limits } = await inkan.getInfo();
    const n = limits!.maxHashesPerChunk + 37;
    const docs = documents(n, "chunked");
    const tx = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, documents: docs, description: "Archive 2026" });
    expect(tx.challenge.numSignatures).toBe(n);
    await tx.authorize(await rSadFor(tx.challenge));
    const signatures = await tx.signAll();
    expect(signatures).toHaveLength(n);
    for (const i of [0, limits!.maxHashesPerChunk, n - 1]) expect(verifiesWith(alice.spki, docs[i]!, signatures[i]!)).toBe(true);
  }, 120_000);

  it("an interrupted stream is resumed from the newest resume token at the lowest index not received (Connect interceptor breaks it twice)", async () => {
    let breaks = 0;
    const starts: number[] = [];
    const responseBreaker: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (!res.stream || breaks >= 2) return res;
      breaks++;
      return { ...res, message: (async function* () {
        let k = 0;
        for await (const m of res.message) {
          yield m;
          if (++k === 3) throw new ConnectError("connection reset", Code.Unavailable);
        }
      })() };
    };
    const seen: Interceptor = (next) => async (req) => {
      if (req.stream && req.method.name === "SignStream") {
        const received: unknown[] = [];
        for await (const m of req.message) received.push(m);
        starts.push((received[0] as { startIndex: number }).startIndex);
        return next({ ...req, message: (async function* () { yield* received; })() } as typeof req);
      }
      return next(req);
    };
    const docs = documents(2_500, "resume");
    const tx = await authorized(client("grpc", { connect: [responseBreaker, seen] }), docs);
    const signatures = await tx.signAll({ mode: "stream" });
    expect(breaks).toBe(2);
    expect(starts).toHaveLength(3);
    expect(starts[0]).toBe(0);
    expect(starts[1]).toBeGreaterThan(0);
    expect(starts[2]).toBeGreaterThan(starts[1]!);
    signatures.forEach((s, i) => i % 101 === 0 && expect(verifiesWith(alice.spki, docs[i]!, s)).toBe(true));
  }, 60_000);

  it("an interrupted grpc-js stream is resumed too (grpc-js interceptor cancels it after a few messages)", async () => {
    let broken = false;
    const breaker: grpc.Interceptor = (options, nextCall) => {
      const call = nextCall(options);
      let k = 0;
      return new grpc.InterceptingCall(call, new grpc.RequesterBuilder()
        .withStart((metadata, listener, next) => next(metadata, new grpc.ListenerBuilder()
          .withOnReceiveMessage((message, nextMessage) => {
            nextMessage(message);
            if (!broken && options.method_definition.path.endsWith("/SignStream") && ++k === 3) {
              broken = true;
              call.cancelWithStatus(grpc.status.UNAVAILABLE, "connection reset");
            }
          })
          .build()))
        .build());
    };
    const docs = documents(2_500, "resume-grpc-js");
    const tx = await authorized(client("grpc-js", { grpcJs: [breaker] }), docs);
    const signatures = await tx.signAll({ mode: "stream" });
    expect(broken).toBe(true);
    expect(verifiesWith(alice.spki, docs[2_499]!, signatures[2_499]!)).toBe(true);
  }, 60_000);

  it("RSA credentials: PKCS#1 v1.5 (default) and RSA-PSS signatures are checked and genuine", async () => {
    const r = await activeSignerWithCredential(t, operator, KeyAlgorithm.RSA_2048);
    const bob: Signer = { signerId: r.signerId, credentialId: r.credential.credentialId, deviceKey: r.deviceKey, spki: r.credential.publicKeySpki, challengeSigningKey: r.challengeSigningKey };
    const inkan = client("connect");
    for (const signatureAlgorithm of [SignatureAlgorithm.UNSPECIFIED, SignatureAlgorithm.RSA_PSS]) {
      const docs = documents(2, `rsa-${signatureAlgorithm}`);
      const tx = await inkan.beginTransaction({ signerId: bob.signerId, credentialId: bob.credentialId, documents: docs, description: "RSA", hashAlgorithm: HashAlgorithm.SHA384, signatureAlgorithm });
      await tx.authorize(await rSadFor(tx.challenge, bob));
      const signatures = await tx.signAll();
      const key = createPublicKey({ key: Buffer.from(bob.spki), format: "der", type: "spki" });
      const opts = signatureAlgorithm === SignatureAlgorithm.RSA_PSS ? { key, padding: 6, saltLength: 48 } : key; // 6: RSA_PKCS1_PSS_PADDING
      signatures.forEach((s, i) => expect(verifySignature("sha384", docs[i]!, opts, s)).toBe(true));
    }
  }, 60_000);

  it("R-3.2.1.4: a challenge that does not describe the list sent is refused before the signer sees it, and the transaction is cancelled", async () => {
    let original: SadChallenge | undefined;
    const alterChallenge: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (req.method.name === "BeginTransaction" && !res.stream) {
        const ch = (res.message as BeginTransactionResponse).sadChallenge!;
        original = { ...ch, dtbsrDigest: new Uint8Array(ch.dtbsrDigest) };
        ch.dtbsrDigest[0]! ^= 0x01;
      }
      return res;
    };
    const e = await failure(client("grpc", { connect: [alterChallenge] }).beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, documents: documents(2, "alter"), description: "Altered" }));
    expect(e).toMatchObject({ reason: Reason.INTEGRITY_VIOLATION, detectedBySdk: true });
    // A genuine R.SAD for the real challenge no longer works: the SDK cancelled the transaction.
    const refused = client("grpc").sam.authorize({ transactionId: original!.transactionId, rSad: await rSadFor(original!) });
    expect(await failure(refused.catch((err: unknown) => { throw toInkanError(err); }))).toMatchObject({ reason: Reason.TRANSACTION_STATE });
  });

  it("T-2.2.1.8: a credential whose certificate does not carry its public key is refused (signatures could not be checked)", async () => {
    const otherKey = new Uint8Array(generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "der", type: "spki" }));
    const swapKey: Interceptor = (next) => async (req) => {
      const res = await next(req);
      if (req.method.name === "GetCredential" && !res.stream) (res.message as GetCredentialResponse).credential!.publicKeySpki = otherKey;
      return res;
    };
    const e = await failure(client("connect", { connect: [swapKey] }).beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, hashes: [sha256(Buffer.from("k"))], description: "Swapped" }));
    expect(e).toMatchObject({ reason: Reason.KEY_MISMATCH, detectedBySdk: true });
  });
});
