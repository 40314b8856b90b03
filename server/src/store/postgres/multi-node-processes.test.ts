/**
 * Three SAM nodes as three `inkan serve` processes (the real binary) on one PostgreSQL database
 * and one SoftHSM2 token directory (in production a network HSM), each with its own node id and
 * audit chain (issue 21). `inkan init` writes the database (INKAN_STORE=postgres://…); the nodes
 * start together; `inkan audit verify` checks every node's chain at the end.
 *
 * Rounds of the replay races: INKAN_MULTI_NODE_ROUNDS (default 10; the issue asks for 100 once).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, createPublicKey, verify as verifySignature } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { clone } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { Reason, buildActivationRequest, buildRSad, createAdminRequestSigner, createDeviceKey, requestSignatureHeader } from "@inkan/sdk";
import { PolicyService, SecurityPolicySchema } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { JWK } from "jose";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import type { InitPaths } from "../../init.js";
import { issueCertificate, loadCertificateAuthority, type Pem } from "../../pki/dev-pki.js";
import { bindingOf, newRequestSigningKey, refusalOf, transportFor, type PrivilegedPerson, type TestServer } from "../../testing/harness.js";
import { activeSignerWithCredential, enrolledSigner, testPin } from "../../testing/signers.js";
import { race } from "../contract.js";
import { findPostgresBinaries, startTestCluster, type TestCluster } from "../testing/postgres-cluster.js";

const binaries = findPostgresBinaries();
const skipReason = "missing" in binaries ? binaries.missing : undefined;
if (skipReason) console.warn(skipReason);

const bin = fileURLToPath(new URL("../../../bin/inkan.js", import.meta.url));
const rounds = Number(process.env["INKAN_MULTI_NODE_ROUNDS"] ?? 10);
const presenters = 64;
const policyCheckIntervalMs = 500;
const nodeIds = ["node-a", "node-b", "node-c"] as const;
/** The SignStream killed mid-stream: its size, its node's claim lease, the kill point's seed (printed; INKAN_MULTI_NODE_KILL_SEED replays it). */
const killStreamSize = 10_000;
const killClaimLeaseMs = Number(process.env["INKAN_MULTI_NODE_KILL_LEASE_MS"] ?? 2_000);
const killSeed = Number(process.env["INKAN_MULTI_NODE_KILL_SEED"] ?? Math.floor(Math.random() * 1_000_000));

interface Node {
  id: string;
  url: string;
  proc: ChildProcess;
  log: string[];
}

/** Runs `inkan ARGS` to its end. */
function inkan(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const p = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("exit", (code) => done({ code, stdout, stderr }));
  });
}

/** Starts `inkan serve` as node `id`; resolves with its URL once it listens, rejects if it exits first. */
function startNode(id: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<Node> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...nodeArgs, bin, "serve", "--listen", "127.0.0.1:0"], { env: { ...process.env, ...env, INKAN_NODE_ID: id }, stdio: ["ignore", "pipe", "pipe"] });
    const log: string[] = [];
    let out = "";
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const url = /listening on (\S+)/.exec(out)?.[1];
      if (url) resolve({ id, url, proc, log });
    });
    proc.stderr!.on("data", (d: Buffer) => log.push(d.toString()));
    proc.on("exit", (code, signal) => {
      reject(new Error(`node ${id} exited (${code}) before listening:\n${log.join("").slice(-3000)}`));
      // A node that ends while the tests still need it says why (its last log lines).
      if (!stopping.has(proc)) console.error(`node ${id} ended (${code ?? signal}):\n${log.join("").slice(-4000)}`);
    });
  });
}

/**
 * Node options that move the process's wall clock (Date) by `offsetMs`: a node whose clock is off.
 * Its monotonic clock and the database's clock are untouched.
 */
function clockOffBy(dir: string, offsetMs: number): string[] {
  const file = join(dir, `clock-off-${offsetMs}.mjs`);
  writeFileSync(
    file,
    `const Real = Date;
class Shifted extends Real {
  constructor(...a) { if (a.length === 0) super(Real.now() + ${offsetMs}); else super(...a); }
  static now() { return Real.now() + ${offsetMs}; }
}
globalThis.Date = Shifted;
`,
  );
  return ["--import", pathToFileURL(file).href];
}

/** Ends a node with SIGTERM (its audit log writes samStopped and a last checkpoint) and waits for its exit. */
const stopping = new WeakSet<ChildProcess>();
function stopNode(node: Node): Promise<void> {
  stopping.add(node.proc);
  if (node.proc.exitCode !== null || node.proc.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    node.proc.once("exit", () => done());
    node.proc.kill("SIGTERM");
  });
}

describe.skipIf(skipReason !== undefined)(skipReason ?? "three inkan serve processes on one PostgreSQL database and one token (issue 21)", () => {
  let cluster: TestCluster;
  let uri: string;
  let dataDir: string;
  let paths: InitPaths;
  let env: Record<string, string>;
  let nodes: Node[] = [];
  let ca: string;
  let sca: Pem;
  let frontEnd: Pem;
  let so1: PrivilegedPerson;
  let so2: PrivilegedPerson;
  let operator: PrivilegedPerson;

  const read = (f: string) => readFileSync(f, "utf8");
  const node = (i: number) => nodes[i % nodes.length]!;
  // One transport (one HTTP/2 connection) per node and identity, as a real SCA keeps: a new one per
  // call would pile up idle connections beyond the node's maxConnections.
  const transports = new Map<string, Transport>();
  const cached = (key: string, make: () => Transport) => transports.get(key) ?? (transports.set(key, make()), transports.get(key)!);
  const scaTransport = (i: number) => cached(`sca ${i % nodes.length}`, () => transportFor("grpc", node(i).url, { ca, ...sca }));
  const scaOn = (i: number) => createClient(SignatureActivationService, scaTransport(i));
  // SignerService answers the signer front end only (issue 18 item 7).
  const signerServiceOn = (i: number) => createClient(SignerService, cached(`front end ${i % nodes.length}`, () => transportFor("grpc", node(i).url, { ca, ...frontEnd })));
  const plainAs = (i: number, who: PrivilegedPerson) => cached(`plain ${i % nodes.length} ${who.userId}`, () => transportFor("grpc", node(i).url, { ca, ...who.cert }));
  /** A transport acting as `who` on node `i`: the SDK's request signer, with its nonce from the same node. */
  const asOn = (i: number, who: PrivilegedPerson, interceptors: Interceptor[] = []) => {
    const make = () => transportFor("grpc", node(i).url, { ca, ...who.cert }, [...interceptors, createAdminRequestSigner({ userId: who.userId, privateJwk: who.privateJwk, nonceTransport: plainAs(i, who) })]);
    return interceptors.length > 0 ? make() : cached(`admin ${i % nodes.length} ${who.userId}`, make);
  };
  /** The harness's view of node `i`, for the signer helpers (enrolment, activation, credential). */
  const harnessOn = (i: number): TestServer =>
    ({
      pki: { paths, ca, sca, frontEnd },
      dataDir,
      transport: (protocol: "grpc", who?: Pem) => transportFor(protocol, node(i).url, { ca, ...who }),
      as: (person: PrivilegedPerson) => asOn(i, person),
    }) as unknown as TestServer;

  async function createPrivilegedUser(role: PrivilegedRole, name: string, by: PrivilegedPerson, on: number): Promise<PrivilegedPerson> {
    const adminCa = await loadCertificateAuthority({ cert: read(paths.adminCaCert), key: read(paths.adminCaKey) });
    const cert = await issueCertificate(adminCa, { commonName: name, usage: "client" });
    const key = await newRequestSigningKey();
    const users = createClient(PrivilegedUserService, asOn(on, by));
    const { user } = await users.createPrivilegedUser({ displayName: name, role, certificateBinding: bindingOf(cert), publicKeyJwk: key.publicJwk, keyLabel: "test" });
    return { userId: user!.userId, cert, privateJwk: key.privateJwk };
  }

  beforeAll(async () => {
    cluster = await startTestCluster((binaries as { bindir: string }).bindir);
    uri = await cluster.createDatabase();
    dataDir = mkdtempSync(join(tmpdir(), "inkan-multi-node-"));
    env = {
      INKAN_DATA_DIR: dataDir,
      INKAN_STORE: uri,
      INKAN_STORE_POOL_SIZE: "8",
      INKAN_POLICY_CHECK_INTERVAL_MS: String(policyCheckIntervalMs),
      INKAN_SHUTDOWN_GRACE_MS: "1000",
      INKAN_LOG_LEVEL: "warn",
    };
    // `inkan init` on PostgreSQL: the schema, the first security officer and the first sealed policy in the database.
    const init = await inkan(["init", "--json"], env);
    expect(init.code, init.stderr).toBe(0);
    paths = JSON.parse(init.stdout) as InitPaths;
    expect(paths.store).toMatch(/^postgres:\/\//);
    // A second init changes nothing: the officer and the policy are found in the database.
    const again = await inkan(["init", "--json"], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain("nothing was changed");
    ca = read(paths.caCert);
    sca = { cert: read(paths.scaCert), key: read(paths.scaKey) };
    frontEnd = { cert: read(paths.signerFrontEnd.cert), key: read(paths.signerFrontEnd.key) };
    so1 = { userId: paths.adminUserId, cert: { cert: read(paths.adminCert), key: read(paths.adminKey) }, privateJwk: JSON.parse(read(paths.adminRequestKey)) as JWK & { kid: string } };
    // The three nodes start together (one token, one database: the start races of the spike).
    nodes = await Promise.all(nodeIds.map((id) => startNode(id, env)));
    so2 = await createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "so2-multi-node", so1, 1);
    operator = await createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-multi-node", so1, 2);
    console.log(`multi-node: ${nodes.map((n) => `${n.id} ${n.url}`).join(", ")}; replay rounds ${rounds} (INKAN_MULTI_NODE_ROUNDS)`);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(nodes.map(stopNode));
    await cluster?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const documents = (n: number, seed: string) => Array.from({ length: n }, (_, i) => new Uint8Array(createHash("sha256").update(`${seed}-${i}`).digest()));

  type Signer = Awaited<ReturnType<typeof activeSignerWithCredential>>;
  async function challengeOn(i: number, s: Signer, hashes: Uint8Array[]): Promise<SadChallenge> {
    const res = await scaOn(i).beginTransaction({ credentialId: s.credential.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "three nodes" });
    return res.sadChallenge!;
  }
  const rSadFor = (s: Signer, ch: SadChallenge) =>
    buildRSad({
      deviceKey: s.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge,
      dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
    });

  /** The outcome of 64 presentations: how many won, and the refusal reasons of the rest. */
  async function presentations(attempt: (i: number) => Promise<unknown>): Promise<{ wins: number; reasons: string[] }> {
    const results = await race(presenters, (i) => {
      const call = attempt(i);
      return call.then(() => "WIN", async () => Reason[(await refusalOf(call)).reason] ?? "UNKNOWN");
    });
    return { wins: results.filter((r) => r === "WIN").length, reasons: [...new Set(results.filter((r) => r !== "WIN"))].sort() };
  }

  it(`T-2.2.1.3 across processes: one R.SAD, one SAD token, one activation code and one admin nonce, each presented ${presenters} times spread over three nodes: exactly one wins, the rest are refused`, async () => {
    const alice = await activeSignerWithCredential(harnessOn(0), operator);
    const seen: Record<string, Set<string>> = { rSad: new Set(), sadToken: new Set(), activation: new Set(), adminNonce: new Set() };
    let sadTokenWins = 0;
    const ms: Record<string, number> = { rSad: 0, sadToken: 0, activation: 0, adminNonce: 0 };
    let mark = performance.now();
    const lap = (kind: string) => {
      const t = performance.now();
      ms[kind]! += t - mark;
      mark = t;
    };
    let replaySignature = "";
    const replay: Interceptor = (next) => async (req) => {
      req.header.set(requestSignatureHeader, replaySignature);
      return next(req);
    };
    const replayOn = (i: number) => cached(`replay ${i % nodes.length}`, () => transportFor("grpc", node(i).url, { ca, ...operator.cert }, [replay]));
    for (let round = 0; round < rounds; round++) {
      mark = performance.now();
      // One R.SAD: Authorize is a compare-and-set on the transaction (R-3.2.1.1).
      const hashes = documents(presenters, `r${round}`);
      const ch = await challengeOn(round, alice, hashes);
      const rSad = await rSadFor(alice, ch);
      let token = "";
      const authorized = await presentations((i) => scaOn(i).authorize({ transactionId: ch.transactionId, rSad }).then((r) => (token = r.sadToken)));
      expect(authorized.wins, `round ${round}: R.SAD (${authorized.reasons.join(", ")})`).toBe(1);
      authorized.reasons.forEach((r) => seen["rSad"]!.add(r));
      lap("rSad");

      // One SAD token: consumed once; one hash per presenter, so only the token can stop a second signature.
      const signed = await presentations((i) => scaOn(i + 1).signHash({ authorization: { case: "sadToken", value: token }, hashes: [hashes[i]!] }));
      // Exactly one (issue 17 item 2): the consume and the claim are one store step, so a loser's reuse detection revokes only what comes after the winner's claim.
      expect(signed.wins, `round ${round}: SAD token (${signed.reasons.join(", ")})`).toBe(1);
      sadTokenWins += signed.wins;
      signed.reasons.forEach((r) => seen["sadToken"]!.add(r));
      lap("sadToken");

      // One activation code: each presenter has its own device key and challenge, the code is the same (T-2.1.1.1).
      const { signerId, code } = await enrolledSigner(harnessOn(round), operator);
      const requests = await Promise.all(
        Array.from({ length: presenters }, async (_, i) => {
          const c = await signerServiceOn(i).createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
          const { request } = await buildActivationRequest({ signerId, activationCode: code, pin: testPin, deviceKey: await createDeviceKey(), enrollTotp: false, challenge: c.challenge, samKey: c.encryptionKey!, audience: c.audience });
          return request;
        }),
      );
      const activated = await presentations((i) => signerServiceOn(i + 2).activate(requests[i]!));
      expect(activated.wins, `round ${round}: activation code (${activated.reasons.join(", ")})`).toBe(1);
      activated.reasons.forEach((r) => seen["activation"]!.add(r));
      lap("activation");

      // One signed admin request (its one-time nonce, T-2.1.2.1), replayed byte for byte to every node.
      let signature = "";
      const capture: Interceptor = (next) => async (req) => {
        const res = await next(req);
        signature = req.header.get(requestSignatureHeader) ?? "";
        return res;
      };
      await createClient(RegistrationService, asOn(round, operator, [capture])).getSigner({ signerId });
      replaySignature = signature;
      const replayed = await presentations((i) => createClient(RegistrationService, replayOn(i)).getSigner({ signerId }));
      expect(replayed.wins, `round ${round}: admin nonce`).toBe(0); // the capture used it
      expect(replayed.reasons, `round ${round}: admin nonce`).toEqual(["NONCE_REPLAYED"]);
      replayed.reasons.forEach((r) => seen["adminNonce"]!.add(r));
      lap("adminNonce");
    }
    console.log(
      `multi-node replays over ${rounds} rounds x ${presenters} presenters: SAD token signed in ${sadTokenWins} rounds; refusals ` +
        Object.entries(seen).map(([k, v]) => `${k}: ${[...v].join("/")} (${Math.round(ms[k]!)} ms)`).join("; "),
    );
    for (const r of seen["rSad"]!) expect(["SAD_REPLAYED", "TRANSACTION_STATE", "LIMIT_EXCEEDED", "NONCE_REPLAYED"]).toContain(r);
    for (const r of seen["sadToken"]!) expect(["SAD_REPLAYED", "TRANSACTION_STATE"]).toContain(r);
  }, Math.max(600_000, rounds * 20_000));

  it("R-3.3.1 across processes: a suspension through node A stops node B's SignStream before its next claim, and node C's next SignHash", async () => {
    const bob = await activeSignerWithCredential(harnessOn(1), operator);
    const many = documents(5_000, "stream");
    const streamCh = await challengeOn(1, bob, many);
    const { sadToken: streamToken } = await scaOn(1).authorize({ transactionId: streamCh.transactionId, rSad: await rSadFor(bob, streamCh) });
    const one = documents(1, "hash");
    const hashCh = await challengeOn(2, bob, one);
    const { sadToken: hashToken } = await scaOn(2).authorize({ transactionId: hashCh.transactionId, rSad: await rSadFor(bob, hashCh) });

    const stream = scaOn(1).signStream({ sadToken: streamToken, startIndex: 0 })[Symbol.asyncIterator]();
    await stream.next(); // the resume token
    await stream.next(); // the first signatures; the client stops reading for a moment
    await createClient(RegistrationService, asOn(0, operator)).suspendCredential({ credentialId: bob.credential.credentialId, reason: "lost phone, reported to node A" });
    const end = await refusalOf((async () => { for (;;) if ((await stream.next()).done) return; })());
    expect(end).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED });
    expect((await scaOn(0).cancelTransaction({ transactionId: streamCh.transactionId })).signaturesCreated).toBeLessThan(many.length);
    expect(await refusalOf(scaOn(2).signHash({ authorization: { case: "sadToken", value: hashToken }, hashes: one }))).toMatchObject({ reason: Reason.CREDENTIAL_SUSPENDED });
  }, 120_000);

  it(`R-3.2.2.3 across processes: the sealed policy changed through node A (approved on node B) is what nodes B and C apply at once, within policyCheckIntervalMs (${policyCheckIntervalMs} ms)`, async () => {
    const policies = createClient(PolicyService, asOn(0, so1));
    const { record } = await policies.getSecurityPolicy({});
    const policy = clone(SecurityPolicySchema, record!.policy!);
    policy.sadTokenLifetime = { $typeName: "google.protobuf.Duration", seconds: 77n, nanos: 0 };
    const held = await policies.updateSecurityPolicy({ expectedVersion: record!.version, policy }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    const detail = held!.findDetails(ApprovalRequiredSchema)[0]!;
    await createClient(PrivilegedUserService, asOn(1, so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
    // Every read of the policy checks the store's latest sealed version: the first read after the change already sees it.
    for (const i of [1, 2]) {
      const seen = await createClient(PolicyService, asOn(i, so1)).getSecurityPolicy({});
      expect(seen.record!.version, nodeIds[i]).toBe(record!.version + 1n);
      expect(seen.record!.policy!.sadTokenLifetime?.seconds, nodeIds[i]).toBe(77n);
    }
    // And the SAP of node C applies it: a SAD token issued there lives 77 s.
    const carol = await activeSignerWithCredential(harnessOn(2), operator);
    const hashes = documents(1, "policy");
    const ch = await challengeOn(2, carol, hashes);
    const auth = await scaOn(2).authorize({ transactionId: ch.transactionId, rSad: await rSadFor(carol, ch) });
    const lifetime = Number(auth.sadTokenExpiresAt!.seconds) - Math.floor(Date.now() / 1000);
    expect(lifetime).toBeGreaterThan(60);
    expect(lifetime).toBeLessThanOrEqual(77);
  }, 120_000);

  it("R-3.3.1, issue 21: time decided by the database's clock: a transaction opened on a node whose clock runs 1.5 s ahead, just before a suspension and resumption through another node, stays unusable; a node 60 s off does not start", async () => {
    const ahead = await startNode("node-d", env, clockOffBy(dataDir, 1_500));
    nodes.push(ahead);
    const dave = await activeSignerWithCredential(harnessOn(0), operator);
    const hashes = documents(1, "skew");
    const before = await challengeOn(3, dave, hashes); // on node-d: its createdAt, were it node-d's clock, would be 1.5 s in the future
    const ra = createClient(RegistrationService, asOn(0, operator));
    await ra.suspendCredential({ credentialId: dave.credential.credentialId, reason: "hold" });
    await ra.resumeCredential({ credentialId: dave.credential.credentialId, reason: "release" });
    // R-3.3.1: usable-since (set by node A) and the transaction's creation (node D) come from one clock.
    expect(await refusalOf(scaOn(0).authorize({ transactionId: before.transactionId, rSad: await rSadFor(dave, before) }))).toMatchObject({ reason: Reason.TRANSACTION_STATE });
    const fresh = await challengeOn(3, dave, hashes);
    expect((await scaOn(3).authorize({ transactionId: fresh.transactionId, rSad: await rSadFor(dave, fresh) })).sadToken).not.toBe("");
    // Fail closed: a node whose clock is beyond the bound (2 s) off the database's does not serve.
    const refused = await startNode("node-e", env, clockOffBy(dataDir, 60_000)).then(
      (n) => { nodes.push(n); return "listening"; },
      (err: Error) => err.message,
    );
    expect(refused).toMatch(/ms off the shared time/);
  }, 120_000);

  it(`T-2.2.1.6 across processes (issue 21, issue 17 item 1): a ${killStreamSize}-hash SignStream whose node is killed (SIGKILL) mid-stream resumes on another node with its resume token: every index released once and verified, every release audited, nothing left claimed`, async () => {
    // The node that dies: its claims hold for claimLeaseMs (INKAN_CLAIM_LEASE_MS), so node A may take them over after that.
    const doomed = await startNode("node-k", { ...env, INKAN_CLAIM_LEASE_MS: String(killClaimLeaseMs) });
    nodes.push(doomed);
    const erin = await activeSignerWithCredential(harnessOn(0), operator);
    const onDoomed = createClient(SignatureActivationService, transportFor("grpc", doomed.url, { ca, ...sca }));
    let messages: Buffer[] = [];
    let hashes: Uint8Array[] = [];
    let ch!: SadChallenge;
    let byIndex = new Map<number, Uint8Array>();
    let resume = { token: "", index: 0 };
    /** A new transaction of killStreamSize hashes on node-k, authorized; the stream is read from its start. */
    const transaction = async (attempt: number) => {
      messages = Array.from({ length: killStreamSize }, (_, i) => Buffer.from(`kill-${killSeed}-${attempt}-${i}`));
      hashes = messages.map((m) => new Uint8Array(createHash("sha256").update(m).digest()));
      ch = (await onDoomed.beginTransaction({ credentialId: erin.credential.credentialId, signerId: erin.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "killed node" })).sadChallenge!;
      const { sadToken } = await onDoomed.authorize({ transactionId: ch.transactionId, rSad: await rSadFor(erin, ch) });
      byIndex = new Map();
      resume = { token: sadToken, index: 0 };
    };
    const db = new pg.Client({ connectionString: uri });
    await db.connect();
    onTestFinished(() => db.end());
    /** Entries node-k claimed and has not recorded (committed state): what only a lease take-over frees. */
    const heldByDoomed = async () =>
      (await db.query<{ idx: number }>("SELECT idx FROM dtbsr WHERE transaction_id = $1 AND claim_node = 'node-k' AND signed AND signature IS NULL ORDER BY idx", [ch.transactionId])).rows.map((r) => r.idx);
    /** Reads a stream from `startIndex` on, in order, each index once; `atMessage` may end it after a message. */
    const read = async (client: typeof onDoomed, atMessage?: () => Promise<boolean>) => {
      for await (const m of client.signStream({ sadToken: resume.token, startIndex: byIndex.size })) {
        if (m.resumeToken) resume = { token: m.resumeToken, index: m.resumeIndex };
        for (const x of m.signatures) {
          if (x.index !== byIndex.size) throw new Error(`index ${x.index} released twice or out of order (expected ${byIndex.size})`);
          byIndex.set(x.index, x.signature);
        }
        if (atMessage && (await atMessage())) return "stopped";
      }
      return "ended";
    };
    const killAt = Math.floor(killStreamSize * (0.2 + 0.5 * ((killSeed % 1000) / 1000)));
    let held: number[] = [];
    // From killAt on, node-k is frozen (SIGSTOP) after each message: if it holds claimed entries it has not
    // recorded (signed or not), SIGKILL, so that only a lease take-over can free them; otherwise it goes on (SIGCONT).
    stopping.add(doomed.proc);
    const gone = new Promise((done) => doomed.proc.once("exit", done));
    const freezeOrKill = async () => {
      if (byIndex.size < killAt) return false;
      doomed.proc.kill("SIGSTOP");
      held = await heldByDoomed();
      if (held.length === 0) {
        doomed.proc.kill("SIGCONT");
        return false;
      }
      doomed.proc.kill("SIGKILL");
      return true;
    };
    // node-k may have recorded each claim by the time each message after killAt arrived (timing): then
    // the whole stream ended with no kill, proving nothing, and it is tried again on a new transaction.
    let killed = "ended";
    for (let attempt = 0; attempt < 3 && killed === "ended"; attempt++) {
      if (attempt > 0) console.log(`multi-node stream kill: node-k held no unrecorded claim after any message from index ${killAt} on (try ${attempt} of 3); again on a new transaction`);
      await transaction(attempt);
      killed = await read(onDoomed, freezeOrKill);
    }
    expect(killed, "node-k never held an unrecorded claim after killAt").toBe("stopped");
    await gone;
    // Read again now that nothing of node-k runs (a commit it sent just before SIGSTOP has landed): what it left claimed and unrecorded.
    held = await heldByDoomed();
    expect(held.length, "node-k left no claimed, unrecorded entry").toBeGreaterThan(0);
    const killedAt = byIndex.size;
    const resumedFrom = resume.index;
    // The client resumes on node A with the newest resume token, from the lowest index it has not received.
    const t0 = performance.now();
    expect(await read(scaOn(0))).toBe("ended");
    console.log(`multi-node stream kill (seed ${killSeed}, INKAN_MULTI_NODE_KILL_SEED): node-k killed after ${killedAt} of ${killStreamSize} signatures received; resumed on node-a at index ${killedAt} with the resume token of index ${resumedFrom}; ${held.length} entries (${held[0]}..${held.at(-1)}) claimed by node-k and not recorded at the kill; the rest in ${Math.round(performance.now() - t0)} ms (claim lease ${killClaimLeaseMs} ms)`);

    // Every index once (checked while reading), and each signature verifies with the credential's key.
    expect(byIndex.size).toBe(killStreamSize);
    const key = createPublicKey({ key: Buffer.from(erin.credential.publicKeySpki), format: "der", type: "spki" });
    expect([...byIndex].filter(([i, sig]) => !verifySignature("sha256", messages[i]!, key, sig)).map(([i]) => i)).toEqual([]);
    // R-3.2.2.4: every released signature is audited (by the node that released it); the audited DTBS/R are exactly the released ones.
    const audited = new Map<string, number>();
    const rows = await db.query<{ body: Buffer }>("SELECT body FROM audit_records WHERE event = 'signature.created' AND position($1::bytea IN body) > 0", [Buffer.from(ch.transactionId)]);
    for (const { body } of rows.rows) {
      const hash = /"hash":"([0-9a-f]{64})"/.exec(body.toString("utf8"))?.[1];
      if (hash) audited.set(hash, (audited.get(hash) ?? 0) + 1);
    }
    const released = new Set(hashes.map((h) => Buffer.from(h).toString("hex")));
    expect(audited.size).toBe(released.size);
    for (const h of released) expect(audited.has(h)).toBe(true);
    // Issue 17: no entry left claimed without a signature; the counters exact (T-2.2.1.6).
    const claimed = await db.query<{ n: number }>("SELECT COUNT(*)::int AS n FROM dtbsr WHERE transaction_id = $1 AND signed AND signature IS NULL", [ch.transactionId]);
    expect(claimed.rows[0]!.n).toBe(0);
    const tx = await db.query<{ created: number; recorded: number }>("SELECT signatures_created AS created, signatures_recorded AS recorded FROM transactions WHERE id = $1", [ch.transactionId]);
    expect(tx.rows[0]).toEqual({ created: killStreamSize, recorded: killStreamSize });
    // Every entry node-k claimed and never recorded was taken over and recorded under a claim of node A (issue 17: the lease).
    const takenOver = await db.query<{ idx: number }>("SELECT idx FROM dtbsr WHERE transaction_id = $1 AND idx = ANY($2::int[]) AND claim_node = 'node-a' AND signature IS NOT NULL ORDER BY idx", [ch.transactionId, held]);
    expect(takenOver.rows.map((r) => r.idx)).toEqual(held);
    const byNode = await db.query<{ node: string; n: number }>("SELECT claim_node AS node, COUNT(*)::int AS n FROM dtbsr WHERE transaction_id = $1 GROUP BY claim_node ORDER BY claim_node", [ch.transactionId]);
    const recordedBy = Object.fromEntries(byNode.rows.map((r) => [r.node, r.n]));
    const extra = [...audited.values()].reduce((n, c) => n + c - 1, 0);
    console.log(`multi-node stream kill: recorded by ${JSON.stringify(recordedBy)}; ${audited.size} distinct DTBS/R audited (+${extra} signed by node-k before the kill and audited, never released)`);
    expect(recordedBy["node-a"]).toBeGreaterThan(0);
    expect((recordedBy["node-k"] ?? 0) + recordedBy["node-a"]!).toBe(killStreamSize);
    // A later boot of node-k joins again (its audit chain goes on from the database, checked below by inkan audit verify).
    nodes[nodes.indexOf(doomed)] = await startNode("node-k", env);
  }, 180_000);

  it("R-3.2.2.4: inkan audit verify checks every node's chain in the shared database against each node's checkpoint in the shared module; a cut tail of one node is found", async () => {
    await Promise.all(nodes.map(stopNode)); // each node writes samStopped and its last checkpoint
    const ok = await inkan(["audit", "verify", "--json"], env);
    const result = JSON.parse(ok.stdout) as { ok: boolean; nodes: { nodeId: string; ok: boolean; lastSequence: number; moduleCheckpointSequence: number }[] };
    expect(ok.code, ok.stderr).toBe(0);
    expect(result.nodes.map((n) => n.nodeId)).toEqual(nodes.map((n) => n.id).sort());
    for (const n of result.nodes) {
      expect(n.ok, n.nodeId).toBe(true);
      expect(n.moduleCheckpointSequence, n.nodeId).toBe(n.lastSequence); // the module's checkpoint of each node reached its last record
    }
    // An insider deletes node B's last records in the database: node B's chain no longer reaches its checkpoint in the module.
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    try {
      await client.query("SET session_replication_role = replica"); // the append-only triggers off, as an insider with the owner's rights would
      await client.query("DELETE FROM audit_records WHERE node_id = 'node-b' AND sequence > (SELECT max(sequence) - 2 FROM audit_records WHERE node_id = 'node-b')");
      await client.query("DELETE FROM audit_checkpoints WHERE node_id = 'node-b' AND sequence > (SELECT max(sequence) FROM audit_records WHERE node_id = 'node-b')");
    } finally {
      await client.end();
    }
    const broken = await inkan(["audit", "verify", "--json"], env);
    const after = JSON.parse(broken.stdout) as typeof result;
    expect(broken.code).toBe(1);
    expect(after.nodes.map((n) => [n.nodeId, n.ok])).toEqual(nodes.map((n) => [n.id, n.id !== "node-b"]).sort());
  }, 120_000);
});
