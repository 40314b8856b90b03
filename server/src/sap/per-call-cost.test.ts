/**
 * Issue 20: what one call costs, counted on the real server (SoftHSM2, SQLite, mTLS, gRPC) with
 * one SCA, so no call shares a commit with another: the store's group commits (each one fsync),
 * the crypto module's HMACs (record-seal checks, the authorization seal, the entry key) and the
 * audit appends. Counts, not times: the same on any machine. Before issue 20's per-call work a
 * SignHash of one hash with token rotation paid 6 commits, 13 HMACs and 3 audit appends, and an
 * Authorize 12 commits, 15 HMACs and 3 audit appends. Seal checks and entry keys remembered across
 * calls (integrity/seal-cache.ts) took SignHash's HMACs from 7 to 0 and Authorize's from 8 to 2 (the
 * PIN's pepper and the new authorization's seal), and SignHash and Authorize read the security policy
 * once per call, not 3 and 4 times (BeginTransaction since session 11, not 3 times). Authorize's
 * two reservation releases after a PIN check that passed share one commit (session 12: 9 -> 8), and
 * BeginTransaction's audit record, the list's freeze and its challenge are written together (5 -> 3).
 * A background write (a purge, a checkpoint) or policy check could add one while a call runs,
 * so each bound leaves room for one.
 */
import { createHash } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { buildRSad } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FullCryptoModule } from "../crypto/port.js";
import type { Store } from "../store/port.js";
import { startTestServer, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

let t: TestServer;
let store: Store & { groupCommitStats?: { groups: number; operations: number } };
const counts = { hmac: 0, auditAppends: 0, policyReads: 0 };

const wrapCrypto = (crypto: FullCryptoModule): FullCryptoModule =>
  new Proxy(crypto, {
    get(target, prop) {
      if (prop === "hmacSha256") return (...a: Parameters<FullCryptoModule["hmacSha256"]>) => (counts.hmac++, target.hmacSha256(...a));
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
const wrapStore = (s: Store): Store => {
  store = s;
  return new Proxy(s, {
    get(target, prop) {
      if (prop === "appendAuditRecords") return (...a: Parameters<Store["appendAuditRecords"]>) => (counts.auditAppends++, target.appendAuditRecords(...a));
      if (prop === "appendAuditRecord") return (...a: Parameters<Store["appendAuditRecord"]>) => (counts.auditAppends++, target.appendAuditRecord(...a));
      if (prop === "latestPolicyVersion") return (...a: Parameters<Store["latestPolicyVersion"]>) => (counts.policyReads++, target.latestPolicyVersion(...a));
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
};

async function cost<T>(call: () => Promise<T>): Promise<{ commits: number; hmac: number; auditAppends: number; policyReads: number }> {
  const before = { groups: store.groupCommitStats!.groups, ...counts };
  await call();
  return { commits: store.groupCommitStats!.groups - before.groups, hmac: counts.hmac - before.hmac, auditAppends: counts.auditAppends - before.auditAppends, policyReads: counts.policyReads - before.policyReads };
}

let alice: Awaited<ReturnType<typeof activeSignerWithCredential>>;
const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));

beforeAll(async () => {
  t = await startTestServer({}, { wrapCrypto, wrapStore });
  const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-cost");
  alice = await activeSignerWithCredential(t, operator);
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("per-call cost (issue 20)", () => {
  it("one SCA: Authorize pays at most 8 + 1 commits, 2 + 1 HMACs, 1 + 1 audit appends and 1 + 1 policy reads; SignHash of one hash with token rotation at most 4 + 1 commits, 0 + 1 HMACs, 2 + 1 appends, 1 + 1 policy reads", async () => {
    expect(store.groupCommitStats, "the SQLite store reports its group commits").toBeDefined();
    const hashes = [0, 1, 2].map((i) => new Uint8Array(createHash("sha256").update(`cost ${i}`).digest()));
    const client = sca();
    const begun = await client.beginTransaction({ credentialId: alice.credential.credentialId, signerId: alice.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 3, hashes, description: "cost" });
    const ch = begun.sadChallenge!;
    const rSad = await buildRSad({
      deviceKey: alice.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
      challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
    });
    let token = "";
    const authorize = await cost(async () => (token = (await client.authorize({ transactionId: ch.transactionId, rSad })).sadToken));
    let next = "";
    const first = await cost(async () => (next = (await client.signHash({ authorization: { case: "sadToken", value: token }, hashes: [hashes[0]!] })).nextSadToken));
    const second = await cost(async () => void (await client.signHash({ authorization: { case: "sadToken", value: next }, hashes: [hashes[1]!] })));
    console.log(`per call: Authorize ${JSON.stringify(authorize)}, SignHash ${JSON.stringify(first)} then ${JSON.stringify(second)}`);
    expect(authorize.commits).toBeLessThanOrEqual(9); // 9 before session 12: a successful PIN check's two reservation releases now share one
    expect(authorize.hmac).toBeLessThanOrEqual(3);
    expect(authorize.auditAppends).toBeLessThanOrEqual(2);
    expect(authorize.policyReads).toBeLessThanOrEqual(2);
    for (const c of [first, second]) {
      expect(c.commits).toBeLessThanOrEqual(5);
      expect(c.hmac).toBeLessThanOrEqual(1);
      expect(c.auditAppends).toBeLessThanOrEqual(3);
      expect(c.policyReads).toBeLessThanOrEqual(2);
    }
  }, 60_000);

  it("BeginTransaction reads the security policy once (1 + 1): one version for its limits, the SCA's scope, the certificate's grace and the challenge's methods; and pays at most 3 + 1 commits", async () => {
    const hashes = [new Uint8Array(createHash("sha256").update("cost begin").digest())];
    const client = sca();
    const begin = await cost(() => client.beginTransaction({ credentialId: alice.credential.credentialId, signerId: alice.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes, description: "cost" }));
    console.log(`per call: BeginTransaction ${JSON.stringify(begin)}`);
    expect(begin.policyReads).toBeLessThanOrEqual(2); // 3 before (issue 20, session 11)
    // 5 before session 12: the audit record, the list's freeze and the challenge were written one after another.
    expect(begin.commits).toBeLessThanOrEqual(4);
  }, 60_000);
});
