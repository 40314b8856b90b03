import { createHash, createPublicKey, randomBytes, verify as verifySignature } from "node:crypto";
import { readFileSync } from "node:fs";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, dtbsrDigest, type DeviceKey } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, type SadChallenge, type SignStreamResponse } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { issueCertificate, loadCertificateAuthority, type Pem } from "../pki/dev-pki.js";
import { moduleSignatureCounter } from "../testing/module-signatures.js";
import { protocols, refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";
import { pipelineDepth, signStreamsInProgress, streamBatchSize } from "./sign-stream.js";

// SignStream on the real server (SoftHSM2 + SQLite, mTLS) over gRPC, Connect and gRPC-Web:
// batch signing streamed in list order, flow control, resume without signing anything twice
// (T-2.2.1.6), one-time tokens (T-2.2.1.2, T-2.2.1.3), verify before release (R-3.2.1.5).
let t: TestServer;
let operator: PrivilegedPerson;
let otherSca: Pem;
/** How often the module signed each DTBS/R (hex), seen through the crypto-module hook. */
const { wrapCrypto, counts: moduleSignatures } = moduleSignatureCounter();

let alice: { signerId: string; credentialId: string; deviceKey: DeviceKey; spki: Uint8Array };

const sca = (protocol: Protocol = "grpc") => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function documents(n: number, seed: string): { messages: Buffer[]; hashes: Uint8Array[] } {
  const messages = Array.from({ length: n }, (_, i) => Buffer.from(`${seed}-${i}-${Math.random()}`));
  return { messages, hashes: messages.map((m) => new Uint8Array(createHash("sha256").update(m).digest())) };
}

const verifies = (message: Buffer, signature: Uint8Array) =>
  verifySignature("sha256", message, createPublicKey({ key: Buffer.from(alice.spki), format: "der", type: "spki" }), signature);

/** Begin (chunked past 10,000 hashes), seal, R.SAD from the SDK, Authorize: the first SAD token. */
async function authorized(hashes: Uint8Array[], protocol: Protocol = "grpc"): Promise<{ ch: SadChallenge; token: string }> {
  const client = sca(protocol);
  const chunk = 10_000;
  const begun = await client.beginTransaction({
    credentialId: alice.credentialId, signerId: alice.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes: hashes.slice(0, chunk), description: "Invoices 2026-11",
  });
  let ch = begun.sadChallenge;
  if (!ch) {
    for (let k = 1; k * chunk < hashes.length; k++) await client.appendHashes({ transactionId: begun.transactionId, chunkIndex: k, hashes: hashes.slice(k * chunk, (k + 1) * chunk) });
    ch = (await client.sealTransaction({ transactionId: begun.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, hashes) })).sadChallenge!;
  }
  const rSad = await buildRSad({
    deviceKey: alice.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
  });
  const res = await client.authorize({ transactionId: ch.transactionId, rSad });
  return { ch, token: res.sadToken };
}

/** The first message of a stream (where a refused start shows its error). */
const firstOf = (stream: AsyncIterable<SignStreamResponse>) => stream[Symbol.asyncIterator]().next();

/** Reads a whole stream: every message, and every signature by index. */
async function readAll(stream: AsyncIterable<SignStreamResponse>, stopAfter = Infinity): Promise<{ messages: SignStreamResponse[]; byIndex: Map<number, Uint8Array>; fromRecord: number[] }> {
  const messages: SignStreamResponse[] = [];
  const byIndex = new Map<number, Uint8Array>();
  const fromRecord: number[] = [];
  for await (const m of stream) {
    messages.push(m);
    for (const s of m.signatures) {
      if (byIndex.has(s.index)) throw new Error(`index ${s.index} received twice`);
      byIndex.set(s.index, s.signature);
      if (s.fromRecord) fromRecord.push(s.index);
    }
    if (messages.length >= stopAfter) break;
  }
  return { messages, byIndex, fromRecord };
}

beforeAll(async () => {
  t = await startTestServer({}, { wrapCrypto });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-sign-stream");
  const ca = await loadCertificateAuthority({ cert: readFileSync(t.pki.paths.scaCaCert, "utf8"), key: readFileSync(t.pki.paths.scaCaKey, "utf8") });
  otherSca = await issueCertificate(ca, { commonName: "another-sca-stream", usage: "client" });
  const a = await activeSignerWithCredential(t, operator);
  alice = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey, spki: a.credential.publicKeySpki };
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("SignStream: batch signing streamed in list order (R-3.2.1.5, T-2.2.1.6)", () => {
  for (const protocol of protocols) {
    it(`streams 600 signatures over ${protocol}: a resume token first, in index order, each verifies; the transaction completes`, async () => {
      const { messages: docs, hashes } = documents(600, `stream-${protocol}`);
      const { token } = await authorized(hashes, protocol);
      const { messages, byIndex } = await readAll(sca(protocol).signStream({ sadToken: token, startIndex: 0 }));
      expect(messages[0]!.signatures).toHaveLength(0);
      expect(messages[0]!.resumeToken).not.toBe("");
      expect(messages[0]!.resumeIndex).toBe(0);
      expect(messages[0]!.resumeTokenExpiresAt).toBeDefined();
      expect(messages[0]!.signaturesRemaining).toBe(600);
      const order = messages.flatMap((m) => m.signatures.map((s) => s.index));
      expect(order).toEqual(Array.from({ length: 600 }, (_, i) => i));
      for (const m of messages) expect(m.signatures.length).toBeLessThanOrEqual(1_000); // max_signatures_per_stream_message
      for (const [i, sig] of byIndex) expect(verifies(docs[i]!, sig)).toBe(true);
      const last = messages.at(-1)!;
      expect(last).toMatchObject({ signaturesRemaining: 0, resumeToken: "" });
      for (const h of hashes) expect(moduleSignatures.get(hex(h))).toBe(1);
    }, 60_000);
  }

  it("T-2.2.1.6: 100,000 hashes in one stream, each signed once and verified; resume tokens at least every 1,000 signatures", async () => {
    const { messages: docs, hashes } = documents(100_000, "stream-100k");
    const { token } = await authorized(hashes);
    let received = 0;
    let sinceToken = 0;
    let maxGap = 0;
    let next = 0;
    for await (const m of sca().signStream({ sadToken: token, startIndex: 0 })) {
      for (const s of m.signatures) {
        expect(s.index).toBe(next++);
        if (s.index % 997 === 0) expect(verifies(docs[s.index]!, s.signature)).toBe(true);
      }
      received += m.signatures.length;
      sinceToken += m.signatures.length;
      if (m.resumeToken) {
        maxGap = Math.max(maxGap, sinceToken);
        sinceToken = 0;
      }
    }
    expect(received).toBe(100_000);
    expect(maxGap).toBeLessThanOrEqual(1_000 + 499); // a checkpoint is due after 1,000; it comes with the next message
    expect(hashes.every((h) => moduleSignatures.get(hex(h)) === 1)).toBe(true);
  }, 300_000);
});

describe("SignStream resume (T-2.2.1.6: nothing signed twice; T-2.2.1.3: each token once)", () => {
  it("an interrupted stream resumes from the newest resume token; signatures made but not received come from the record", async () => {
    const { messages: docs, hashes } = documents(3_000, "resume");
    const { token } = await authorized(hashes);
    const abort = new AbortController();
    const first = await readAll(sca().signStream({ sadToken: token, startIndex: 0 }, { signal: abort.signal }), 6);
    abort.abort();
    const newest = first.messages.filter((m) => m.resumeToken).at(-1)!;
    const lowestMissing = Array.from({ length: 3_000 }, (_, i) => i).find((i) => !first.byIndex.has(i))!;
    expect(lowestMissing).toBeGreaterThanOrEqual(newest.resumeIndex);
    const second = await readAll(sca().signStream({ sadToken: newest.resumeToken, startIndex: lowestMissing }));
    const all = new Map([...first.byIndex, ...second.byIndex]);
    expect(all.size).toBe(3_000);
    for (const [i, sig] of all) expect(verifies(docs[i]!, sig)).toBe(true);
    expect(second.messages.at(-1)!.signaturesRemaining).toBe(0);
    for (const i of second.fromRecord) expect(first.byIndex.has(i)).toBe(false);
    expect(hashes.every((h) => moduleSignatures.get(hex(h)) === 1)).toBe(true); // T-2.2.1.6
    // T-2.2.1.3: the resume token (and its siblings from the same stream) worked once.
    const again = await refusalOf(firstOf(sca().signStream({ sadToken: newest.resumeToken, startIndex: lowestMissing })));
    expect(again).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_REPLAYED });
  }, 60_000);

  it("a resumed stream stops the older one before its next claim; every index is delivered, none signed twice", async () => {
    const { messages: docs, hashes } = documents(20_000, "takeover");
    const { token } = await authorized(hashes);
    const older = sca().signStream({ sadToken: token, startIndex: 0 })[Symbol.asyncIterator]();
    const firstMessage = (await older.next()).value as SignStreamResponse;
    expect(firstMessage.resumeToken).not.toBe("");
    await older.next(); // the older stream is signing; stop reading it
    const newer = await readAll(sca().signStream({ sadToken: firstMessage.resumeToken, startIndex: 0 }));
    expect(newer.byIndex.size).toBe(20_000);
    expect(newer.fromRecord.length).toBeGreaterThan(0);
    for (let i = 0; i < 20_000; i += 1_000) expect(verifies(docs[i]!, newer.byIndex.get(i)!)).toBe(true);
    // The older stream ends with an error once its buffered messages are read.
    const rest = await refusalOf((async () => { for (;;) if ((await older.next()).done) return; })());
    expect(rest).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    expect(hashes.every((h) => moduleSignatures.get(hex(h)) === 1)).toBe(true); // T-2.2.1.6
  }, 120_000);

  it("start_index before the resume token's index, or past the list, is INVALID_REQUEST and spends nothing", async () => {
    const { hashes } = documents(600, "bad-start");
    const { token } = await authorized(hashes);
    const abort = new AbortController();
    const first = await readAll(sca().signStream({ sadToken: token, startIndex: 300 }, { signal: abort.signal }), 1);
    abort.abort();
    const r = first.messages[0]!;
    expect(r.resumeIndex).toBe(300);
    expect(await refusalOf(firstOf(sca().signStream({ sadToken: r.resumeToken, startIndex: 299 })))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect(await refusalOf(firstOf(sca().signStream({ sadToken: r.resumeToken, startIndex: 600 })))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    // Indices before start_index stay available: SignHash signs index 0 with the same (unspent) resume token.
    const res = await sca().signHash({ authorization: { case: "sadToken", value: r.resumeToken }, hashes: [hashes[0]!] });
    expect(res.signatures).toHaveLength(1);
  }, 60_000);
});

describe("SignStream resume index", () => {
  it("a resume token's index cannot be lowered by the client below its stream's start (INVALID_REQUEST, nothing spent)", async () => {
    const { hashes } = documents(600, "forged-index");
    const { token } = await authorized(hashes);
    const abort = new AbortController();
    const first = await readAll(sca().signStream({ sadToken: token, startIndex: 300 }, { signal: abort.signal }), 1);
    abort.abort();
    const genuine = first.messages[0]!.resumeToken;
    for (const forged of [genuine.replace(/\.\d+$/, ".0"), genuine.replace(/\.\d+$/, "")]) {
      expect(await refusalOf(firstOf(sca().signStream({ sadToken: forged, startIndex: 0 })))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    }
    expect((await readAll(sca().signStream({ sadToken: genuine, startIndex: 300 }))).byIndex.size).toBe(300);
  }, 60_000);
});

describe("SignStream tokens (T-2.2.1.2, T-2.2.1.3, R-3.2.1.2)", () => {
  it("T-2.2.1.2: a made-up token, or another SCA's token, is SAD_INVALID; the owner's token stays valid", async () => {
    const { hashes } = documents(3, "stream-bypass");
    const { token } = await authorized(hashes);
    expect(await refusalOf(firstOf(sca().signStream({ sadToken: randomBytes(32).toString("base64url"), startIndex: 0 })))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_INVALID });
    const intruder = createClient(SignatureActivationService, t.transport("grpc", otherSca));
    expect(await refusalOf(firstOf(intruder.signStream({ sadToken: token, startIndex: 0 })))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_INVALID });
    expect((await readAll(sca().signStream({ sadToken: token, startIndex: 0 }))).byIndex.size).toBe(3);
  });

  it("T-2.2.1.3: a token consumed by a stream presented again is SAD_REPLAYED and revokes the transaction", async () => {
    const { hashes } = documents(300, "stream-replay");
    const { ch, token } = await authorized(hashes);
    const abort = new AbortController();
    const first = await readAll(sca().signStream({ sadToken: token, startIndex: 0 }, { signal: abort.signal }), 1);
    abort.abort();
    expect(await refusalOf(firstOf(sca().signStream({ sadToken: token, startIndex: 0 })))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_REPLAYED });
    // The stream's resume token dies with the transaction.
    expect(await refusalOf(firstOf(sca().signStream({ sadToken: first.messages[0]!.resumeToken, startIndex: 0 })))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    expect((await sca().cancelTransaction({ transactionId: ch.transactionId })).state).toBeDefined();
  });

  it("T-2.2.1.3: of 16 concurrent streams with one token behind a start barrier, exactly one starts; the replays are SAD_REPLAYED and nothing is signed twice", async () => {
    const { hashes } = documents(50, "stream-race");
    const { token } = await authorized(hashes);
    let open!: () => void;
    const barrier = new Promise<void>((resolve) => (open = resolve));
    const calls = Array.from({ length: 16 }, async () => {
      await barrier;
      return firstOf(sca().signStream({ sadToken: token, startIndex: 0 }));
    });
    open();
    const results = await Promise.allSettled(calls);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect(await refusalOf(Promise.reject(r.reason))).toMatchObject({ reason: Reason.SAD_REPLAYED });
    // Reuse detection revoked the transaction: whatever the winner signed, it signed once.
    expect(hashes.every((h) => (moduleSignatures.get(hex(h)) ?? 0) <= 1)).toBe(true);
  });
});

describe("SignStream flow control", () => {
  it("the SAM signs only as fast as the client reads: a client that stops reading holds the stream back", async () => {
    const n = 30_000;
    const { hashes } = documents(n, "flow");
    const { ch, token } = await authorized(hashes);
    const it = sca().signStream({ sadToken: token, startIndex: 0 })[Symbol.asyncIterator]();
    await it.next();
    await it.next();
    await new Promise((r) => setTimeout(r, 1_500)); // not reading; an unpaced server would sign everything meanwhile
    const cancelled = await sca().cancelTransaction({ transactionId: ch.transactionId });
    expect(cancelled.signaturesCreated).toBeLessThan(n / 2);
    await it.return?.();
  }, 60_000);

  it("issue 20: a client that stops reading holds the server a bounded number of signatures ahead of it (the stream's pipeline and the HTTP/2 windows), whatever the list's size", async () => {
    const n = 40_000;
    const { hashes } = documents(n, "held");
    const { ch, token } = await authorized(hashes);
    const stream = sca().signStream({ sadToken: token, startIndex: 0 })[Symbol.asyncIterator]();
    let received = 0;
    for (let k = 0; k < 3; k++) received += (await stream.next()).value!.signatures.length; // the checkpoint, then two batches
    const mine = () => signStreamsInProgress().find((p) => p.transactionId === ch.transactionId);
    // The state to check, not a time: the stream waits for the transport to take a message and has
    // no batch under way, so nothing moves until the client reads again. An unbounded server only
    // gets there once it signed the whole list.
    await vi.waitFor(() => expect(mine()).toMatchObject({ waitingForClient: true, batchesUnderWay: 0 }), { timeout: 60_000, interval: 20 });
    const held = mine()!;
    expect(held.signaturesAhead).toBeLessThanOrEqual((pipelineDepth + 1) * streamBatchSize); // in the stream: the pipeline and the message offered
    const signed = hashes.filter((h) => moduleSignatures.get(hex(h)) === 1).length;
    // Every signature made is with the client, in the stream, or in a message the transport took and the client has not read.
    const inTransport = signed - received - held.signaturesAhead;
    expect(inTransport).toBe((held.messagesTaken - 3) * streamBatchSize);
    // The HTTP/2 stream and the client's buffers hold what the flow-control windows let through: a few 500-signature messages.
    expect(held.messagesTaken - 3).toBeLessThanOrEqual(4);
    expect(signed).toBeLessThan(n / 4);
    await stream.return?.();
  }, 90_000);
});
