import { createHash, createPublicKey, randomBytes, verify as verifySignature } from "node:crypto";
import { readFileSync } from "node:fs";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, dtbsrDigest, verifySadChallenge, type DeviceKey } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, TransactionState, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueCertificate, loadCertificateAuthority, type Pem } from "../pki/dev-pki.js";
import type { FullCryptoModule } from "../crypto/port.js";
import type { Store } from "../store/port.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

// Authorize and SignHash (methods 1 and 2) on the real server (SoftHSM2 + SQLite, mTLS), over gRPC
// and Connect: R-3.2.1.1, R-3.2.1.2, R-3.2.1.5, T-2.2.1.2, T-2.2.1.3, T-2.2.1.6, R-3.2.2.4.
let t: TestServer;
let operator: PrivilegedPerson;
let otherSca: Pem;
let failAuditWrites = false;
let failSignatureChecks = false;

interface Signer {
  signerId: string;
  credentialId: string;
  deviceKey: DeviceKey;
  spki: Uint8Array;
}
let alice: Signer;

const sca = (protocol: Protocol = "grpc") => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
const intruder = () => createClient(SignatureActivationService, t.transport("grpc", otherSca));

const errorOf = refusalOf;

/** `n` messages and their SHA-256 (the DTBS/R), so that signatures verify with node:crypto. */
function documents(n: number, seed: string): { messages: Buffer[]; hashes: Uint8Array[] } {
  const messages = Array.from({ length: n }, (_, i) => Buffer.from(`${seed}-${i}-${Math.random()}`));
  return { messages, hashes: messages.map((m) => new Uint8Array(createHash("sha256").update(m).digest())) };
}

/** BeginTransaction with the whole list inline: the sealed transaction's SadChallenge. */
async function begin(hashes: Uint8Array[], protocol: Protocol = "grpc"): Promise<SadChallenge> {
  const res = await sca(protocol).beginTransaction({
    credentialId: alice.credentialId, signerId: alice.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "Contracts 2026-11",
  });
  return res.sadChallenge!;
}

/** The signer's device: R.SAD over the challenge (device-key JWS + PIN in a JWE to the SAM). */
const rSadFor = (ch: SadChallenge) =>
  buildRSad({
    deviceKey: alice.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
  });

/** begin + R.SAD + Authorize: the first SAD token. */
async function authorized(hashes: Uint8Array[], protocol: Protocol = "grpc"): Promise<{ ch: SadChallenge; token: string }> {
  const ch = await begin(hashes, protocol);
  const res = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) });
  return { ch, token: res.sadToken };
}

const signHash = (token: string, hashes: Uint8Array[], protocol: Protocol = "grpc") =>
  sca(protocol).signHash({ authorization: { case: "sadToken", value: token }, hashes });

const verifies = (message: Buffer, signature: Uint8Array) =>
  verifySignature("sha256", message, createPublicKey({ key: Buffer.from(alice.spki), format: "der", type: "spki" }), signature);

beforeAll(async () => {
  // Fault injection: the real store, with its audit append made to fail on demand.
  const wrapStore = (store: Store): Store =>
    new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === "appendAuditRecord" || prop === "appendAuditRecords") {
          return async (...args: [never]) => {
            if (failAuditWrites) throw new Error("disk full (injected)");
            return (target[prop] as (...a: [never]) => Promise<void>)(...args);
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  // Fault injection: the real crypto module, with its check of a fresh signature made to fail on demand
  // (SoftHSM has produced well-formed but invalid ECDSA signatures, softhsm issue #901).
  const wrapCrypto = (crypto: FullCryptoModule): FullCryptoModule =>
    new Proxy(crypto, {
      get(target, prop, receiver) {
        if (prop === "verify") return async (...args: Parameters<FullCryptoModule["verify"]>) => (failSignatureChecks ? false : target.verify(...args));
        const value = Reflect.get(target, prop, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  t = await startTestServer({}, { wrapStore, wrapCrypto });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-sign-hash");
  const ca = await loadCertificateAuthority({ cert: readFileSync(t.pki.paths.scaCaCert, "utf8"), key: readFileSync(t.pki.paths.scaCaKey, "utf8") });
  otherSca = await issueCertificate(ca, { commonName: "another-sca", usage: "client" });
  const a = await activeSignerWithCredential(t, operator);
  alice = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey, spki: a.credential.publicKeySpki };
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("Authorize and SignHash, method 1 (R-3.2.1.1, R-3.2.1.2, R-3.2.1.5)", () => {
  for (const protocol of ["grpc", "connect"] as const) {
    it(`signs every hash in one call over ${protocol}; the signatures verify against the credential's public key`, async () => {
      const { messages, hashes } = documents(3, `m1-${protocol}`);
      const ch = await begin(hashes, protocol);
      const auth = await sca(protocol).authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) });
      expect(auth.sadToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(auth.signaturesRemaining).toBe(3);
      expect(auth.sadTokenExpiresAt).toBeDefined();
      const res = await signHash(auth.sadToken, [hashes[2]!, hashes[0]!, hashes[1]!], protocol);
      expect(res.signatures).toHaveLength(3);
      // Request order: signature i is over request hash i.
      expect(verifies(messages[2]!, res.signatures[0]!)).toBe(true);
      expect(verifies(messages[0]!, res.signatures[1]!)).toBe(true);
      expect(verifies(messages[1]!, res.signatures[2]!)).toBe(true);
      expect(res.nextSadToken).toBe("");
      expect(res.nextSadTokenExpiresAt).toBeUndefined();
      expect(res.signaturesRemaining).toBe(0);
    });
  }
});

describe("Authorize and SignHash of a list uploaded in chunks (R-3.2.1.4, T-2.2.1.6)", () => {
  it("T-2.2.1.6: 10,000 + 10,000 + 5 hashes in three chunks, sealed, authorized with the SDK's R.SAD; hashes of every chunk sign and verify, a foreign hash does not", async () => {
    // Every chunk but the last holds exactly max_hashes_per_chunk (10,000 by default); chunk 0 is inline in BeginTransaction.
    const chunkSize = 10_000;
    const { messages, hashes } = documents(2 * chunkSize + 5, "chunked");
    const chunks = [hashes.slice(0, chunkSize), hashes.slice(chunkSize, 2 * chunkSize), hashes.slice(2 * chunkSize)];
    const client = sca();
    const begun = await client.beginTransaction({
      credentialId: alice.credentialId, signerId: alice.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes: chunks[0]!, description: "Payroll 2026-11",
    });
    expect(begun.sadChallenge).toBeUndefined(); // uploading: no challenge yet
    for (const k of [1, 2]) {
      const progress = await client.appendHashes({ transactionId: begun.transactionId, chunkIndex: k, hashes: chunks[k]! });
      expect(progress.hashesReceived).toBe(chunks.slice(0, k + 1).reduce((n, c) => n + c.length, 0));
    }
    // R-3.2.1.4: the SCA's own digest over the whole list seals it and draws the one-time challenge.
    const digest = await dtbsrDigest(HashAlgorithm.SHA256, hashes);
    const ch = (await client.sealTransaction({ transactionId: begun.transactionId, dtbsrDigest: digest })).sadChallenge!;
    expect(ch).toMatchObject({ transactionId: begun.transactionId, numSignatures: hashes.length });
    expect(new Uint8Array(ch.dtbsrDigest)).toEqual(digest); // a large response may decode into Buffer views
    // T-2.2.1.7: SealTransaction's challenge is signed by the key GetInfo publishes.
    await verifySadChallenge(ch, (await client.getInfo({})).challengeSigningKey!);

    // The signer's device builds R.SAD with the SDK over the challenge and the digest it computed itself.
    const rSad = await buildRSad({
      deviceKey: alice.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
      challenge: ch.challenge, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, hashes), count: hashes.length, hashAlgorithm: HashAlgorithm.SHA256,
      description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
    });
    const auth = await client.authorize({ transactionId: ch.transactionId, rSad });
    expect(auth.sadToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(auth.signaturesRemaining).toBe(hashes.length);
    // T-2.2.1.3: the challenge worked once.
    expect(await errorOf(client.authorize({ transactionId: ch.transactionId, rSad }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });

    // T-2.2.1.6: a hash that is not in the list is refused, nothing is signed and the token stays valid.
    const foreign = new Uint8Array(createHash("sha256").update("not in the chunked list").digest());
    expect(await errorOf(signHash(auth.sadToken, [hashes[0]!, foreign]))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED });

    // One hash of each chunk, in request order; then one more with the rotated token.
    const picks = [0, chunkSize + 7, 2 * chunkSize + 4];
    const res = await signHash(auth.sadToken, picks.map((i) => hashes[i]!));
    expect(res.signatures).toHaveLength(3);
    picks.forEach((i, k) => expect(verifies(messages[i]!, res.signatures[k]!)).toBe(true));
    expect(res.signaturesRemaining).toBe(hashes.length - 3);
    expect(res.nextSadToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const more = await signHash(res.nextSadToken, [hashes[2 * chunkSize]!]);
    expect(verifies(messages[2 * chunkSize]!, more.signatures[0]!)).toBe(true);
    expect(more.signaturesRemaining).toBe(hashes.length - 4);
    // T-2.2.1.6: a hash already signed is not signed again (its list entry is used up).
    expect(await errorOf(signHash(more.nextSadToken, [hashes[0]!]))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED });
  }, 60_000);
});

describe("SignHash method 2: token rotation", () => {
  it("signs one hash per call with a fresh token each time until none remain", async () => {
    const { messages, hashes } = documents(3, "m2");
    let { token } = await authorized(hashes);
    for (const [i, h] of hashes.entries()) {
      const res = await signHash(token, [h]);
      expect(verifies(messages[i]!, res.signatures[0]!)).toBe(true);
      expect(res.signaturesRemaining).toBe(2 - i);
      if (i < 2) {
        expect(res.nextSadToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(res.nextSadToken).not.toBe(token);
      } else {
        expect(res.nextSadToken).toBe("");
      }
      token = res.nextSadToken;
    }
  });
});

describe("T-2.2.1.3: replay", () => {
  it("a consumed token presented again is SAD_REPLAYED and revokes the rest of the transaction (the rotated token fails too)", async () => {
    const { hashes } = documents(3, "replay");
    const { token } = await authorized(hashes);
    const first = await signHash(token, [hashes[0]!]);
    const replay = await errorOf(signHash(token, [hashes[1]!]));
    expect(replay).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_REPLAYED });
    const rotated = await errorOf(signHash(first.nextSadToken, [hashes[1]!]));
    expect(rotated.code).toBe(Code.FailedPrecondition);
    expect(rotated.reason).toBe(Reason.TRANSACTION_STATE);
  });

  it("of 64 concurrent SignHash calls with one token behind a start barrier, exactly one succeeds", async () => {
    const { hashes } = documents(2, "race");
    const { token } = await authorized(hashes);
    const client = sca();
    let open!: () => void;
    const barrier = new Promise<void>((resolve) => (open = resolve));
    const calls = Array.from({ length: 64 }, async () => {
      await barrier;
      return client.signHash({ authorization: { case: "sadToken", value: token }, hashes: [hashes[0]!] });
    });
    open();
    const results = await Promise.allSettled(calls);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
  });

  it("a replayed R.SAD, or a second Authorize with a fresh R.SAD, is refused once the transaction is authorized", async () => {
    const { hashes } = documents(1, "second-authorize");
    const ch = await begin(hashes);
    const rSad = await rSadFor(ch);
    await sca().authorize({ transactionId: ch.transactionId, rSad });
    expect(await errorOf(sca().authorize({ transactionId: ch.transactionId, rSad }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    const again = await errorOf(sca().authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) }));
    expect(again).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
  });

  it("of 8 concurrent Authorize calls with copies of one R.SAD, exactly one gets a token", async () => {
    const { hashes } = documents(1, "authorize-race");
    const ch = await begin(hashes);
    const rSad = await rSadFor(ch);
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => sca().authorize({ transactionId: ch.transactionId, rSad })));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
  });
});

describe("Limits.max_authorize_attempts: a transaction survives 3 failed Authorize calls, then it is FAILED", () => {
  it("R-3.2.1.1: three R.SADs that fail verification make the transaction FAILED; a valid R.SAD is then refused (TRANSACTION_STATE)", async () => {
    const { hashes } = documents(1, "attempts");
    const ch = await begin(hashes);
    const other = await begin(documents(1, "attempts-other").hashes);
    const foreign = await rSadFor(other); // an R.SAD for another transaction: SAD_INVALID here
    for (let i = 0; i < 3; i++) {
      const err = await errorOf(sca().authorize({ transactionId: ch.transactionId, rSad: foreign }));
      expect(err.code).toBe(Code.PermissionDenied);
    }
    expect(await errorOf(sca().authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    expect((await sca().cancelTransaction({ transactionId: ch.transactionId })).state).toBe(TransactionState.FAILED);
    // The other transaction was not touched by the failures of this one.
    expect((await sca().authorize({ transactionId: other.transactionId, rSad: await rSadFor(other) })).signaturesRemaining).toBe(1);
  });
});

describe("T-2.2.1.6: only authorized hashes, never more often than authorized", () => {
  it("a hash not in the list is HASH_NOT_AUTHORIZED, nothing is signed and the token stays valid", async () => {
    const { hashes } = documents(2, "foreign-hash");
    const { token } = await authorized(hashes);
    const foreign = new Uint8Array(createHash("sha256").update("not in the list").digest());
    const err = await errorOf(signHash(token, [hashes[0]!, foreign]));
    expect(err).toMatchObject({ code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED });
    const res = await signHash(token, hashes);
    expect(res.signatures).toHaveLength(2);
    expect(res.signaturesRemaining).toBe(0);
  });

  it("the same hash again beyond its count is refused", async () => {
    const { hashes } = documents(2, "repeat");
    const { token } = await authorized(hashes);
    const first = await signHash(token, [hashes[0]!]);
    const err = await errorOf(signHash(first.nextSadToken, [hashes[0]!]));
    expect(err).toMatchObject({ code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED });
    const twice = await errorOf(signHash(first.nextSadToken, [hashes[1]!, hashes[1]!]));
    expect(twice.code).toBe(Code.InvalidArgument);
    expect((await signHash(first.nextSadToken, [hashes[1]!])).signaturesRemaining).toBe(0);
  });

  it("a hash whose length does not fit SHA-256 is refused", async () => {
    const { hashes } = documents(1, "length");
    const { token } = await authorized(hashes);
    const err = await errorOf(signHash(token, [new Uint8Array(48)]));
    expect([Code.InvalidArgument, Code.PermissionDenied]).toContain(err.code);
  });
});

describe("T-2.2.1.2: no signature without a verified SAD; R-3.2.1.2: the transaction belongs to its SCA", () => {
  it("a made-up token, or SignHash before Authorize, is SAD_INVALID and the transaction stays pending", async () => {
    const { hashes } = documents(1, "bypass");
    const ch = await begin(hashes);
    const err = await errorOf(signHash(randomBytes(32).toString("base64url"), hashes));
    expect(err).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_INVALID });
    // The R.SAD still authorizes: nothing was used up.
    const auth = await sca().authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) });
    expect(auth.signaturesRemaining).toBe(1);
  });

  it("another SCA can neither Authorize (TRANSACTION_NOT_FOUND) nor sign with the token (SAD_INVALID, the token stays the owner's)", async () => {
    const { hashes } = documents(1, "other-sca");
    const ch = await begin(hashes);
    const rSad = await rSadFor(ch);
    expect(await errorOf(intruder().authorize({ transactionId: ch.transactionId, rSad }))).toMatchObject({ code: Code.NotFound, reason: Reason.TRANSACTION_NOT_FOUND });
    const { sadToken } = await sca().authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) });
    const stolen = await errorOf(intruder().signHash({ authorization: { case: "sadToken", value: sadToken }, hashes }));
    expect(stolen).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_INVALID });
    expect((await signHash(sadToken, hashes)).signatures).toHaveLength(1);
  });
});

describe("The one-call form: SignHash with inline_authorization (Authorize, then sign)", () => {
  const inline = (ch: SadChallenge, rSad: string, hashes: Uint8Array[], client = sca()) =>
    client.signHash({ authorization: { case: "inlineAuthorization", value: { transactionId: ch.transactionId, rSad } }, hashes });

  for (const protocol of ["grpc", "connect"] as const) {
    it(`authorizes a pending single-document transaction and signs it in one call over ${protocol}`, async () => {
      const { messages, hashes } = documents(1, `inline-${protocol}`);
      const ch = await begin(hashes, protocol);
      const res = await inline(ch, await rSadFor(ch), hashes, sca(protocol));
      expect(verifies(messages[0]!, res.signatures[0]!)).toBe(true);
      expect(res).toMatchObject({ nextSadToken: "", signaturesRemaining: 0 });
    });
  }

  it("T-2.2.1.6: a hash outside the list is refused before Authorize: the transaction stays pending and the R.SAD unused", async () => {
    const { hashes } = documents(2, "inline-foreign");
    const ch = await begin(hashes);
    const rSad = await rSadFor(ch);
    const foreign = new Uint8Array(createHash("sha256").update("inline foreign").digest());
    expect(await errorOf(inline(ch, rSad, [foreign]))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED });
    const res = await inline(ch, rSad, hashes); // the same R.SAD still works
    expect(res.signatures).toHaveLength(2);
  });

  it("T-2.2.1.3: the R.SAD works once: inline again is TRANSACTION_STATE; R-3.2.1.2: another SCA gets TRANSACTION_NOT_FOUND", async () => {
    const { hashes } = documents(2, "inline-replay");
    const ch = await begin(hashes);
    const rSad = await rSadFor(ch);
    expect(await errorOf(inline(ch, rSad, [hashes[0]!], intruder()))).toMatchObject({ code: Code.NotFound, reason: Reason.TRANSACTION_NOT_FOUND });
    const first = await inline(ch, rSad, [hashes[0]!]);
    expect(first.signaturesRemaining).toBe(1);
    expect(await errorOf(inline(ch, rSad, [hashes[1]!]))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    expect((await signHash(first.nextSadToken, [hashes[1]!])).signaturesRemaining).toBe(0); // method 2 continues with the rotated token
  });

  it("R-3.2.1.1: an R.SAD for another transaction (another DTBS/R digest) fails verification and signs nothing", async () => {
    const { hashes } = documents(1, "inline-a");
    const other = documents(1, "inline-b");
    const chA = await begin(hashes);
    const chB = await begin(other.hashes);
    const err = await errorOf(inline(chA, await rSadFor(chB), hashes));
    expect(err.code).toBe(Code.PermissionDenied);
    expect([Reason.SAD_INVALID, Reason.AUTHENTICATION_FAILED]).toContain(err.reason);
    const res = await inline(chA, await rSadFor(chA), hashes);
    expect(res.signatures).toHaveLength(1);
  });
});

describe("R-3.2.2.4: the audit trail", () => {
  it("records signature.created with the signed hash for each signature, and signature.failed for a replay", async () => {
    const { hashes } = documents(2, "audited");
    const { token } = await authorized(hashes);
    await signHash(token, hashes);
    await errorOf(signHash(token, hashes));
    const auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-sign-hash");
    const { records: trail } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 } });
    const created = trail.filter((r) => r.eventType === "signature.created" && r.details["hash"] !== undefined && hashes.some((h) => Buffer.from(h).toString("hex") === r.details["hash"]));
    expect(created).toHaveLength(2);
    expect(trail.some((r) => r.eventType === "signature.failed" && r.reason === Reason.SAD_REPLAYED)).toBe(true);
  });
});

describe("R-3.2.1.5: verify before release", () => {
  it("a signature that does not verify against the credential's key is withheld: INTERNAL SIGNATURE_CHECK_FAILED, audited", async () => {
    const { hashes } = documents(2, "bad-signature");
    const { token } = await authorized(hashes);
    failSignatureChecks = true;
    try {
      const err = await errorOf(signHash(token, hashes));
      expect(err).toMatchObject({ code: Code.Internal, reason: Reason.SIGNATURE_CHECK_FAILED });
    } finally {
      failSignatureChecks = false;
    }
    const auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-bad-signature");
    const { records: trail } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 } });
    expect(trail.some((r) => r.eventType === "signature.failed" && r.reason === Reason.SIGNATURE_CHECK_FAILED)).toBe(true);
  });
});

describe("R-3.2.2.4: fail closed", () => {
  it("an audit write failing during SignHash is UNAVAILABLE AUDIT_FAILURE and no signature leaves", async () => {
    const { hashes } = documents(2, "audit-down");
    const { token } = await authorized(hashes);
    failAuditWrites = true;
    try {
      const err = await errorOf(signHash(token, hashes));
      expect(err).toMatchObject({ code: Code.Unavailable, reason: Reason.AUDIT_FAILURE });
    } finally {
      failAuditWrites = false;
    }
  });
});
