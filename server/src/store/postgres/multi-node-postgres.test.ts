/**
 * Two SAM nodes on one PostgreSQL database (issue 21): node A and node B share the data
 * directory's PKI and SoftHSM2 token (in production a network HSM) and one database; each has its
 * own node id and audit chain. Node B opens the store the production way (`store: postgres://…`);
 * node A is the test harness's server, whose freshly initialized SQLite store (`inkan init` writes
 * SQLite) is copied into the database before node A uses PostgreSQL instead of it.
 */
import { createHash, createPublicKey, verify as verifySignature } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { Reason, buildRSad } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../config/config.js";
import { serve } from "../../main.js";
import { refusalOf, startTestServer, transportFor, type TestServer } from "../../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../../testing/signers.js";
import type { InkanServer } from "../../transport/server.js";
import { race } from "../contract.js";
import { findPostgresBinaries, startTestCluster, type TestCluster } from "../testing/postgres-cluster.js";
import { createPostgresStore } from "./postgres-store.js";
import { postgresInstead } from "../testing/postgres-instead.js";

const binaries = findPostgresBinaries();
const skipReason = "missing" in binaries ? binaries.missing : undefined;
if (skipReason) console.warn(skipReason);

describe.skipIf(skipReason !== undefined)(skipReason ?? "two SAM nodes on one PostgreSQL database (issue 21)", () => {
  let cluster: TestCluster;
  let uri: string;
  let t: TestServer;
  let nodeB: InkanServer;
  let alice: { signerId: string; credentialId: string; deviceKey: Awaited<ReturnType<typeof activeSignerWithCredential>>["deviceKey"]; spki: Uint8Array };

  const scaOn = (url: string) => createClient(SignatureActivationService, transportFor("grpc", url, { ca: t.pki.ca, ...t.pki.sca }));
  const nodes = () => [scaOn(t.server.url), scaOn(nodeB.url)] as const;

  async function authorizedOn(url: string, hashes: Uint8Array[]): Promise<{ ch: SadChallenge; token: string }> {
    const sca = scaOn(url);
    const res = await sca.beginTransaction({
      credentialId: alice.credentialId, signerId: alice.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "two nodes",
    });
    const ch = res.sadChallenge!;
    const rSad = await buildRSad({
      deviceKey: alice.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
      challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
    });
    const auth = await sca.authorize({ transactionId: ch.transactionId, rSad });
    return { ch, token: auth.sadToken };
  }

  const documents = (n: number, seed: string) => {
    const messages = Array.from({ length: n }, (_, i) => Buffer.from(`${seed}-${i}`));
    return { messages, hashes: messages.map((m) => new Uint8Array(createHash("sha256").update(m).digest())) };
  };
  const verifies = (message: Buffer, signature: Uint8Array) =>
    verifySignature("sha256", message, createPublicKey({ key: Buffer.from(alice.spki), format: "der", type: "spki" }), signature);

  beforeAll(async () => {
    cluster = await startTestCluster((binaries as { bindir: string }).bindir);
    uri = await cluster.createDatabase();
    t = await startTestServer({ nodeId: "node-a" }, { wrapStore: postgresInstead(uri) });
    // Node B: the same data directory (PKI, token), its own node id, the store selected by its URI.
    const config = parseConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", shutdownGraceMs: "2000", nodeId: "node-b", store: uri, storePoolSize: "8" });
    nodeB = await serve(config, pino({ level: "silent" }));
    const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-two-nodes");
    const a = await activeSignerWithCredential(t, operator);
    alice = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey, spki: a.credential.publicKeySpki };
  }, 120_000);
  afterAll(async () => {
    await nodeB?.close(500);
    await t?.close();
    await cluster?.stop();
  });

  it("transactions opened and authorized on one node are signed on the other, concurrently on both; every signature verifies", async () => {
    // Authorized one after another (a signer's concurrent factor checks are limited, T-2.1.2.2), alternating nodes.
    const authorized: { messages: Buffer[]; hashes: Uint8Array[]; token: string; signer: string }[] = [];
    for (let i = 0; i < 8; i++) {
      const { messages, hashes } = documents(2, `two-nodes-${i}`);
      const [opener, signer] = i % 2 === 0 ? [t.server.url, nodeB.url] : [nodeB.url, t.server.url];
      authorized.push({ messages, hashes, token: (await authorizedOn(opener, hashes)).token, signer });
    }
    const work = await race(authorized.length, async (i) => {
      const { messages, hashes, token, signer } = authorized[i]!;
      const res = await scaOn(signer).signHash({ authorization: { case: "sadToken", value: token }, hashes });
      return { messages, signatures: res.signatures };
    });
    for (const w of work) {
      expect(w.signatures).toHaveLength(2);
      w.signatures.forEach((s, j) => expect(verifies(w.messages[j]!, s)).toBe(true));
    }
  });

  it("T-2.2.1.3 across nodes: one SAD token presented 64 times, spread over both nodes behind a start barrier, signs at most once; every other call is refused as a replay", async () => {
    for (let round = 0; round < 5; round++) {
      // 64 authorized hashes, one per caller: only the token's one-time consumption can stop a second signature.
      const { messages, hashes } = documents(64, `replay-${round}`);
      const { token } = await authorizedOn(t.server.url, hashes);
      const [a, b] = nodes();
      const results = await race(64, (i) => {
        const call = (i % 2 === 0 ? a : b).signHash({ authorization: { case: "sadToken", value: token }, hashes: [hashes[i]!] });
        return call.then((r) => ({ i, signature: r.signatures[0]! }), () => refusalOf(call));
      });
      const wins = results.filter((r): r is { i: number; signature: Uint8Array } => "signature" in r);
      const refusals = results.filter((r): r is Awaited<ReturnType<typeof refusalOf>> => !("signature" in r));
      // At most one: the winner consumes the token, then claims its entry in a second store call;
      // a loser on the other node may see the consumed token in between and revoke the transaction
      // (reuse detection), and then the winner's claim is refused too (fail closed).
      expect(wins.length, `round ${round}`).toBeLessThanOrEqual(1);
      for (const w of wins) expect(verifies(messages[w.i]!, w.signature)).toBe(true);
      const reasons = new Set(refusals.map((r) => Reason[r.reason]));
      expect([...reasons].filter((r) => r !== "SAD_REPLAYED" && r !== "TRANSACTION_STATE"), `round ${round}: ${[...reasons].join(", ")}`).toEqual([]);
      expect(reasons.has("SAD_REPLAYED"), `round ${round}`).toBe(true);
    }
  });

  it("R-3.2.2.4: each node writes its own audit chain into the shared database", async () => {
    const store = await createPostgresStore({ uri, poolSize: 1 });
    try {
      const audited = await store.listAuditNodes();
      expect(audited).toEqual(expect.arrayContaining(["node-a", "node-b"]));
      for (const nodeId of ["node-a", "node-b"]) expect((await store.latestAuditRecord(nodeId))?.sequence).toBeGreaterThan(1);
    } finally {
      await store.close();
    }
  });
});
