import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, dtbsrDigest, inkanErrorReason } from "@inkan/sdk";
import { ErrorDetailSchema } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, TransactionState } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueCertificate, loadCertificateAuthority, type Pem } from "../pki/dev-pki.js";
import { challengeHash } from "../registration/activation.js";
import { sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { errorOf as harnessErrorOf, refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential } from "../testing/signers.js";

// The transaction half of the SAP on the real server (SoftHSM2 + SQLite, mTLS): BeginTransaction,
// AppendHashes, SealTransaction and CancelTransaction (R-3.2.1.2, R-3.2.1.4, T-2.2.1.6, T-2.2.1.2).
let t: TestServer;
let operator: PrivilegedPerson;
let otherSca: Pem;
let db: Database.Database;

const sca = (protocol: "grpc" | "connect" = "grpc") => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
const intruder = () => createClient(SignatureActivationService, t.transport("grpc", otherSca));

const errorOf = refusalOf;
/** The refusal with ErrorDetail.field. */
const errorOf2 = async (p: Promise<unknown>) => {
  const e = await harnessErrorOf(p);
  return { code: e.code, reason: inkanErrorReason(e), field: e.findDetails(ErrorDetailSchema)[0]?.field ?? "" };
};
/** The policy's max_hashes_per_chunk (the default, 10,000). */
const chunk = 10_000;

/** `n` distinct SHA-256 values, the i-th from `seed` and i. */
const hashes = (n: number, seed = "doc", from = 0): Uint8Array[] =>
  Array.from({ length: n }, (_, i) => new Uint8Array(createHash("sha256").update(`${seed}-${from + i}`).digest()));

const begin = (cred: { signerId: string; credentialId: string }, n: number, inline: Uint8Array[], extra: object = {}) =>
  sca().beginTransaction({ credentialId: cred.credentialId, signerId: cred.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: n, hashes: inline, description: "Invoices 2026-11", ...extra });

const stored = (id: string) => db.prepare("SELECT state, hash_count, dtbsr_digest FROM transactions WHERE id = ?").get(id) as { state: string; hash_count: number; dtbsr_digest: Uint8Array | null } | undefined;

let alice: { signerId: string; credentialId: string };

beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-transactions");
  const ca = await loadCertificateAuthority({ cert: readFileSync(t.pki.paths.scaCaCert, "utf8"), key: readFileSync(t.pki.paths.scaCaKey, "utf8") });
  otherSca = await issueCertificate(ca, { commonName: "another-sca", usage: "client" });
  db = new Database(sqliteStoreFile(t.dataDir), { readonly: true });
  const a = await activeSignerWithCredential(t, operator);
  alice = { signerId: a.signerId, credentialId: a.credential.credentialId };
}, 60_000);
afterAll(async () => {
  db?.close();
  await t?.close();
});

describe("BeginTransaction with the whole list inline (R-3.2.1.2)", () => {
  it("T-2.2.1.6 / R-3.2.1.4: returns a 32-byte one-time challenge, the SDK's DTBS/R digest and an expiry within the policy bounds; only the challenge's hash is stored", async () => {
    const list = hashes(3, "inline");
    const before = Date.now();
    const res = await begin(alice, 3, list);
    expect(res.state).toBe(TransactionState.PENDING);
    expect(res.hashesReceived).toBe(3);
    expect(res.nextChunkIndex).toBe(0);
    const ch = res.sadChallenge!;
    expect(ch).toMatchObject({ transactionId: res.transactionId, signerId: alice.signerId, credentialId: alice.credentialId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 3, description: "Invoices 2026-11" });
    expect(ch.challenge).toHaveLength(32);
    expect(new Uint8Array(ch.dtbsrDigest)).toEqual(await dtbsrDigest(HashAlgorithm.SHA256, list));
    expect(ch.audience).toBe((await sca().getInfo({})).samId);
    expect(ch.encryptionKey?.current).toBe(true);
    const expires = timestampDate(ch.expiresAt!).getTime();
    expect(expires).toBeGreaterThanOrEqual(before + 300_000 - 1000); // default lifetime 300 s
    expect(expires).toBeLessThanOrEqual(Date.now() + 300_000);

    // T-2.2.1.3: the challenge value is nowhere in the store, only its hash bound to the transaction.
    const row = db.prepare("SELECT purpose, subject, consumed_at FROM challenges WHERE hash = ?").get(challengeHash(ch.challenge));
    expect(row).toEqual({ purpose: "transaction", subject: res.transactionId, consumed_at: null });
    expect(stored(res.transactionId)).toMatchObject({ state: "PENDING", hash_count: 3 });
    expect(Buffer.from(stored(res.transactionId)!.dtbsr_digest!)).toEqual(Buffer.from(ch.dtbsrDigest));

    const other = await begin(alice, 1, hashes(1, "inline-2"));
    expect(other.sadChallenge!.challenge).not.toEqual(ch.challenge);
    expect(other.transactionId).not.toBe(res.transactionId);
  });

  it("honours an asked lifetime within the policy's maximum and refuses one above it", async () => {
    const res = await begin(alice, 1, hashes(1, "life"), { lifetime: { seconds: 60n, nanos: 0 } });
    expect(timestampDate(res.sadChallenge!.expiresAt!).getTime()).toBeLessThanOrEqual(Date.now() + 60_000);
    expect(await errorOf(begin(alice, 1, hashes(1, "life-2"), { lifetime: { seconds: 7200n, nanos: 0 } })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
  });

  it("T-2.2.1.6: a hash of the wrong length is refused and nothing is created", async () => {
    const count = (db.prepare("SELECT count(*) AS n FROM transactions").get() as { n: number }).n;
    expect(await errorOf(begin(alice, 1, [new Uint8Array(48)]))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect(await errorOf(begin(alice, 1, [new Uint8Array(32)], { hashAlgorithm: HashAlgorithm.SHA512 }))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect((db.prepare("SELECT count(*) AS n FROM transactions").get() as { n: number }).n).toBe(count);
  });

  it("NONE (pure EdDSA) is refused for an EC credential, and more signatures than the policy allows is LIMIT_EXCEEDED", async () => {
    expect(await errorOf(begin(alice, 1, [new Uint8Array(100)], { hashAlgorithm: HashAlgorithm.NONE })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.ALGORITHM_NOT_ALLOWED });
    expect(await errorOf(begin(alice, 100_001, []))).toMatchObject({ code: Code.ResourceExhausted, reason: Reason.LIMIT_EXCEEDED });
  });

  it("T-2.2.1.4: a credential of another signer, an unknown credential or a disabled signer's credential is CREDENTIAL_NOT_FOUND", async () => {
    const bob = await activeSignerWithCredential(t, operator);
    // Alice's signer id with Bob's credential, and the other way round.
    expect(await errorOf(begin({ signerId: alice.signerId, credentialId: bob.credential.credentialId }, 1, hashes(1))))
      .toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
    expect(await errorOf(begin({ signerId: bob.signerId, credentialId: alice.credentialId }, 1, hashes(1))))
      .toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
    expect(await errorOf(begin({ signerId: alice.signerId, credentialId: "cred-unknown" }, 1, hashes(1))))
      .toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
    await createClient(RegistrationService, t.as(operator)).disableSigner({ signerId: bob.signerId, reason: "left the company" });
    expect(await errorOf(begin({ signerId: bob.signerId, credentialId: bob.credential.credentialId }, 1, hashes(1))))
      .toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
  });
});

describe("chunked upload (R-3.2.1.4)", () => {
  it("R-3.2.1.4 / T-2.2.1.6: 100,000 hashes in 10 chunks, sealed with the SCA's own digest", async () => {
    const n = 100_000;
    const first = hashes(chunk, "batch", 0);
    const res = await begin(alice, n, first);
    expect(res).toMatchObject({ state: TransactionState.UPLOADING, hashesReceived: chunk, nextChunkIndex: 1 });
    expect(res.sadChallenge).toBeUndefined();
    expect(res.uploadExpiresAt).toBeDefined();
    const all = [...first];
    for (let k = 1; k < 10; k += 1) {
      const part = hashes(chunk, "batch", k * chunk);
      all.push(...part);
      const progress = await sca().appendHashes({ transactionId: res.transactionId, chunkIndex: k, hashes: part });
      expect(progress).toMatchObject({ hashesReceived: (k + 1) * chunk, nextChunkIndex: k + 1 });
    }
    // Not sealed yet: the store's list is open.
    expect(stored(res.transactionId)).toMatchObject({ state: "PENDING", hash_count: n, dtbsr_digest: null });
    const digest = await dtbsrDigest(HashAlgorithm.SHA256, all);
    const sealed = await sca().sealTransaction({ transactionId: res.transactionId, dtbsrDigest: digest });
    expect(sealed.sadChallenge).toMatchObject({ transactionId: res.transactionId, numSignatures: n, signerId: alice.signerId, credentialId: alice.credentialId });
    expect(new Uint8Array(sealed.sadChallenge!.dtbsrDigest)).toEqual(digest);
    expect(sealed.sadChallenge!.challenge).toHaveLength(32);
    expect(Buffer.from(stored(res.transactionId)!.dtbsr_digest!)).toEqual(Buffer.from(digest));
    // The list is frozen: no chunk is accepted any more.
    expect(await errorOf(sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 10, hashes: hashes(1, "late") })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
  }, 120_000);

  it("R-3.2.1.4 (issue 18): a short first chunk (fewer than max_hashes_per_chunk while more follow) is refused at once, INVALID_REQUEST on hashes, and nothing is created", async () => {
    const count = (what: string) => (db.prepare(`SELECT count(*) AS n FROM ${what}`).get() as { n: number }).n;
    const created = () => (db.prepare("SELECT count(*) AS n FROM audit_records WHERE event = 'transaction.created'").get() as { n: number }).n;
    const [transactions, entries, audited] = [count("transactions"), count("dtbsr"), created()];
    // 5 of 20,005, 9,999 of 10,001 and none of 3: each would leave chunk 1 starting elsewhere than at max_hashes_per_chunk.
    for (const [n, inline] of [[chunk * 2 + 5, 5], [chunk + 1, chunk - 1], [3, 0]] as const) {
      const err = await errorOf2(begin(alice, n, hashes(inline, `short-first-${n}`)));
      expect(err, `${inline} of ${n}`).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST, field: "hashes" });
    }
    expect([count("transactions"), count("dtbsr"), created()]).toEqual([transactions, entries, audited]);
  }, 60_000);

  it("R-3.2.1.4 (issue 18): every chunk but the last holds exactly max_hashes_per_chunk: a short AppendHashes chunk that is not the last is refused, the full one is taken, the last may be short", async () => {
    const all = hashes(chunk * 2 + 5, "full-chunks", 0);
    const res = await begin(alice, all.length, all.slice(0, chunk));
    expect(res).toMatchObject({ state: TransactionState.UPLOADING, hashesReceived: chunk, nextChunkIndex: 1 });
    expect(await errorOf2(sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: all.slice(chunk, chunk + 5) })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST, field: "hashes" });
    expect(stored(res.transactionId)).toMatchObject({ hash_count: chunk });
    expect(await sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: all.slice(chunk, 2 * chunk) })).toMatchObject({ hashesReceived: 2 * chunk, nextChunkIndex: 2 });
    expect(await sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 2, hashes: all.slice(2 * chunk) })).toMatchObject({ hashesReceived: all.length });
    const sealed = await sca().sealTransaction({ transactionId: res.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, all) });
    expect(sealed.sadChallenge?.numSignatures).toBe(all.length);
  }, 120_000);

  it("T-2.2.1.6 / R-3.2.1.4: a wrong digest at Seal is refused and the transaction stays unsealed, so it cannot be authorized", async () => {
    const list = hashes(chunk + 3, "wrong");
    const res = await begin(alice, list.length, list.slice(0, chunk));
    await sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: list.slice(chunk) });
    // What the SCA meant to upload differs (one hash altered, or reordered): refused.
    const altered = [...list];
    altered[chunk + 1] = new Uint8Array(32).fill(9);
    for (const other of [altered, [list[1]!, list[0]!, ...list.slice(2)]]) {
      expect(await errorOf(sca().sealTransaction({ transactionId: res.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, other) })))
        .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.UPLOAD_INCOMPLETE });
    }
    expect(stored(res.transactionId)).toMatchObject({ state: "PENDING", dtbsr_digest: null });
    expect(db.prepare("SELECT count(*) AS n FROM challenges WHERE subject = ?").get(res.transactionId)).toEqual({ n: 0 });
    // The right digest still seals it.
    const ok = await sca().sealTransaction({ transactionId: res.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, list) });
    expect(ok.sadChallenge?.numSignatures).toBe(list.length);
  }, 60_000);

  it("T-2.2.1.3, R-3.2.1.4: 8 concurrent SealTransaction calls of one upload: exactly one returns a challenge, the others are TRANSACTION_STATE; the frozen record names the winner's challenge, the only one Authorize consumes", async () => {
    // Issue 20: the freeze and the challenge are written in one batch, so a call that loses the
    // freeze has issued a challenge too. It must never be returned, and the record must name the winner's.
    const list = hashes(chunk + 2, "race");
    const res = await begin(alice, list.length, list.slice(0, chunk));
    await sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: list.slice(chunk) });
    const digest = await dtbsrDigest(HashAlgorithm.SHA256, list);
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, () => sca().sealTransaction({ transactionId: res.transactionId, dtbsrDigest: digest })));
    const won = outcomes.flatMap((o) => (o.status === "fulfilled" ? [o.value.sadChallenge!] : []));
    expect(won).toHaveLength(1);
    for (const o of outcomes) {
      if (o.status === "rejected") expect(await errorOf(Promise.reject(o.reason))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    }
    const row = db.prepare("SELECT challenge_hash FROM transactions WHERE id = ?").get(res.transactionId) as { challenge_hash: string };
    expect(row.challenge_hash).toBe(challengeHash(won[0]!.challenge));
    expect(db.prepare("SELECT subject, purpose, consumed_at FROM challenges WHERE hash = ?").get(row.challenge_hash)).toEqual({ subject: res.transactionId, purpose: "transaction", consumed_at: null });
  }, 60_000);

  it("R-3.2.1.4: an incomplete list cannot be sealed", async () => {
    const list = hashes(chunk + 1, "short");
    const res = await begin(alice, list.length, list.slice(0, chunk));
    expect(await errorOf(sca().sealTransaction({ transactionId: res.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, list) })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.UPLOAD_INCOMPLETE });
  }, 60_000);

  it("R-3.2.1.4: a skipped or out-of-order chunk is UPLOAD_INCOMPLETE; an identical retry of the last chunk changes nothing; a different one is refused", async () => {
    const res = await begin(alice, 35_000, hashes(chunk, "order", 0));
    expect(res).toMatchObject({ state: TransactionState.UPLOADING, hashesReceived: chunk, nextChunkIndex: 1 });
    const c1 = hashes(chunk, "order", chunk);
    const c2 = hashes(chunk, "order", 2 * chunk);
    expect(await errorOf(sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 2, hashes: c2 })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.UPLOAD_INCOMPLETE });
    await sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: c1 });
    // A retry after a lost response.
    expect(await sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: c1 })).toMatchObject({ hashesReceived: 2 * chunk, nextChunkIndex: 2 });
    // Chunk 1 again with other content, and chunk 3 before chunk 2.
    expect(await errorOf(sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: c2 })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.UPLOAD_INCOMPLETE });
    expect(await errorOf(sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 3, hashes: hashes(5_000, "order", 3 * chunk) })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.UPLOAD_INCOMPLETE });
    expect(stored(res.transactionId)).toMatchObject({ hash_count: 2 * chunk });
  }, 60_000);

  it("T-2.2.1.6: a hash of the wrong length, a hash already in the list, or a chunk past num_signatures is refused", async () => {
    const list = hashes(chunk + 2, "append");
    const res = await begin(alice, list.length, list.slice(0, chunk));
    expect(await errorOf(sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: [list[chunk]!, new Uint8Array(31)] })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.HASH_LENGTH_MISMATCH });
    expect(await errorOf(sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: [list[chunk]!, list[0]!] })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect(await errorOf(sca().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: [...list.slice(chunk), ...hashes(1, "extra")] })))
      .toMatchObject({ code: Code.ResourceExhausted, reason: Reason.LIMIT_EXCEEDED });
    expect(stored(res.transactionId)).toMatchObject({ hash_count: chunk });
  }, 60_000);
});

describe("a transaction belongs to the SCA that opened it (R-3.2.1.2, T-2.2.1.2)", () => {
  it("T-2.2.1.2: another SCA cannot see, append to, seal or cancel it: TRANSACTION_NOT_FOUND, and nothing changes", async () => {
    const list = hashes(chunk + 1, "mine");
    const res = await begin(alice, list.length, list.slice(0, chunk));
    const notFound = { code: Code.NotFound, reason: Reason.TRANSACTION_NOT_FOUND };
    expect(await errorOf(intruder().appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: list.slice(chunk) }))).toMatchObject(notFound);
    expect(await errorOf(intruder().sealTransaction({ transactionId: res.transactionId, dtbsrDigest: new Uint8Array(32) }))).toMatchObject(notFound);
    expect(await errorOf(intruder().cancelTransaction({ transactionId: res.transactionId }))).toMatchObject(notFound);
    // The same answer as for a transaction that does not exist.
    expect(await errorOf(intruder().cancelTransaction({ transactionId: "txn-does-not-exist" }))).toMatchObject(notFound);
    expect(stored(res.transactionId)).toMatchObject({ state: "PENDING", hash_count: chunk });
    // The owner carries on.
    await sca("connect").appendHashes({ transactionId: res.transactionId, chunkIndex: 1, hashes: list.slice(chunk) });
    const sealed = await sca().sealTransaction({ transactionId: res.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, list) });
    expect(sealed.sadChallenge?.transactionId).toBe(res.transactionId);
    expect(await errorOf(intruder().cancelTransaction({ transactionId: res.transactionId }))).toMatchObject(notFound);
  }, 60_000);
});

describe("CancelTransaction", () => {
  it("T-2.2.1.2: cancel is final and idempotent, and the audit log records transaction.created and transaction.cancelled", async () => {
    const list = hashes(2, "cancel");
    const res = await begin(alice, 2, list);
    expect(await sca().cancelTransaction({ transactionId: res.transactionId })).toMatchObject({ state: TransactionState.CANCELED, signaturesCreated: 0 });
    expect(await sca().cancelTransaction({ transactionId: res.transactionId })).toMatchObject({ state: TransactionState.CANCELED, signaturesCreated: 0 });
    expect(stored(res.transactionId)).toMatchObject({ state: "CANCELLED" });
    // A cancelled upload takes no further chunk and cannot be sealed.
    const big = hashes(chunk + 1, "cancel-upload");
    const up = await begin(alice, big.length, big.slice(0, chunk));
    await sca().cancelTransaction({ transactionId: up.transactionId });
    expect(await errorOf(sca().appendHashes({ transactionId: up.transactionId, chunkIndex: 1, hashes: big.slice(chunk) })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    expect(await errorOf(sca().sealTransaction({ transactionId: up.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, big) })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });

    const events = (event: string) => (db.prepare("SELECT body FROM audit_records WHERE event = ?").all(event) as Array<{ body: string }>).map((r) => r.body);
    expect(events("transaction.created").filter((b) => b.includes(res.transactionId))).toHaveLength(1);
    expect(events("transaction.cancelled").filter((b) => b.includes(res.transactionId))).toHaveLength(1); // the second cancel changed nothing
    expect(events("transaction.cancelled").filter((b) => b.includes(up.transactionId))).toHaveLength(1);
  });
});

describe("key algorithms", () => {
  it("an RSA credential takes SHA-512 hashes", async () => {
    const rsa = await activeSignerWithCredential(t, operator, KeyAlgorithm.RSA_2048);
    const list = hashes(1, "rsa").map((h) => new Uint8Array(createHash("sha512").update(h).digest()));
    const res = await sca().beginTransaction({ credentialId: rsa.credential.credentialId, signerId: rsa.signerId, hashAlgorithm: HashAlgorithm.SHA512, numSignatures: 1, hashes: list, description: "One contract" });
    expect(new Uint8Array(res.sadChallenge!.dtbsrDigest)).toEqual(await dtbsrDigest(HashAlgorithm.SHA512, list));
  });
});
