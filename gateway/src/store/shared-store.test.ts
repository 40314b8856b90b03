/**
 * Issue 15: the gateway's state in the shared PostgreSQL database (INKAN_STORE=postgres://..., as
 * the SAM nodes use), so that several gateway nodes serve one signer portal. Two gateways, each with
 * a data directory of its own (the same PKI), on one throwaway database: a request an SCA posts
 * through one is seen and answered through the other's portal API, a portal session opened on one
 * is valid on the other, and an SCA's long poll on one answers what the signer did on the other.
 * The R.SAD stays in the memory of the node that received the approval (never at rest): the SCA
 * takes it from that node (README, "What the gateway keeps": route a request's calls to one node).
 */
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toJson } from "@bufbuild/protobuf";
import { buildRSadFor, createInkanClient, signDeviceJws, type DeviceKey, type InkanClient } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findPostgresBinaries, startTestCluster, type TestCluster } from "../../../server/src/store/testing/postgres-cluster.js";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../../../server/src/testing/harness.js";
import { activeSignerWithCredential, testPin } from "../../../server/src/testing/signers.js";
import { gatewayConfig } from "../config.js";
import { startGateway, type Gateway } from "../server.js";
import { httpsRequest } from "../testing/https.js";
import { gatewaySchema, openPostgresGatewayStore } from "./gateway-store.js";

const binaries = findPostgresBinaries();
const noPostgres = "missing" in binaries ? binaries.missing : undefined;
if (noPostgres) console.warn(noPostgres);

describe.skipIf(noPostgres !== undefined)("two gateway nodes on one PostgreSQL database (issue 15)", { timeout: 60_000 }, () => {
  let cluster: TestCluster;
  let uri: string;
  let t: TestServer;
  let operator: PrivilegedPerson;
  let inkan: InkanClient;
  let a: Gateway;
  let b: Gateway;
  let dirB: string;

  beforeAll(async () => {
    cluster = await startTestCluster((binaries as { bindir: string }).bindir);
    uri = await cluster.createDatabase();
    t = await startTestServer();
    operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-shared-gateway");
    inkan = createInkanClient({ baseUrl: t.server.url, tls: { ca: t.pki.ca, ...t.pki.sca } as { ca: string; cert: string; key: string } });
    // Node B on "another machine": a data directory of its own, with the same PKI.
    dirB = mkdtempSync(join(tmpdir(), "inkan-gateway-b-"));
    cpSync(join(t.dataDir, "pki"), join(dirB, "pki"), { recursive: true });
    // Both start at once: the migrations run once, under the advisory lock.
    [a, b] = await Promise.all([
      startGateway(gatewayConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", samUrl: t.server.url, store: uri })),
      startGateway(gatewayConfig({ dataDir: dirB, listen: "127.0.0.1:0", samUrl: t.server.url, store: uri })),
    ]);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await t?.close();
    if (dirB) rmSync(dirB, { recursive: true, force: true });
    await cluster?.stop();
  });

  const sca = () => ({ ca: t.pki.ca, ...t.pki.sca });
  const json = <T>(res: { body: string }) => JSON.parse(res.body) as T;

  async function post(gateway: Gateway, s: Awaited<ReturnType<typeof activeSignerWithCredential>>, description: string) {
    const tx = await inkan.beginTransaction({ signerId: s.signerId, credentialId: s.credential.credentialId, hashes: [createHash("sha256").update(description).digest()], description });
    const res = await httpsRequest(`${gateway.url}/api/sca/requests`, { ...sca(), json: { challenge: toJson(SadChallengeSchema, tx.challenge) } });
    expect(res.status).toBe(201);
    return { tx, requestId: json<{ requestId: string }>(res).requestId };
  }

  async function sessionOn(gateway: Gateway, signerId: string, deviceKey: DeviceKey): Promise<{ ca: string; headers: { authorization: string } }> {
    const ch = json<{ challenge: string; audience: string }>(await httpsRequest(`${gateway.url}/api/portal/challenge`, { ca: t.pki.ca, json: { signerId, purpose: "device-authentication" } }));
    const deviceProof = await signDeviceJws({ deviceKey, typ: "inkan-device-authentication+jwt", signerId, audience: ch.audience, challenge: Buffer.from(ch.challenge, "base64") });
    const res = await httpsRequest(`${gateway.url}/api/portal/session`, { ca: t.pki.ca, json: { signerId, deviceProof } });
    expect(res.status).toBe(200);
    return { ca: t.pki.ca, headers: { authorization: `Bearer ${json<{ token: string }>(res).token}` } };
  }

  it("keeps its tables in its own schema of the shared database, no gateway.sqlite in either data directory", async () => {
    expect(existsSync(join(t.dataDir, "gateway.sqlite"))).toBe(false);
    expect(existsSync(join(dirB, "gateway.sqlite"))).toBe(false);
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    try {
      const tables = (await client.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name", [gatewaySchema])).rows.map((r) => r.table_name);
      expect(tables).toEqual(["portal_sessions", "requests", "schema_migrations"]);
      expect((await client.query("SELECT version FROM inkan_gateway.schema_migrations")).rows).toEqual([{ version: 1 }]);
    } finally {
      await client.end();
    }
    // A third node starting later finds the schema migrated and changes nothing.
    const again = await openPostgresGatewayStore(uri);
    await again.close();
  });

  it("a request posted through node A is shown and approved through node B's portal; the SAM accepts the R.SAD; A's SCA long poll answers authorized", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const { tx, requestId } = await post(a, s, "Shared across nodes");
    const onB = await sessionOn(b, s.signerId, s.deviceKey);
    // Shown through B (the portal's list and the request), and B's session is valid on A too.
    expect(json<{ requests: { id: string }[] }>(await httpsRequest(`${b.url}/api/portal/requests`, onB)).requests.map((r) => r.id)).toEqual([requestId]);
    expect(json<{ requests: { id: string }[] }>(await httpsRequest(`${a.url}/api/portal/requests`, onB)).requests.map((r) => r.id)).toEqual([requestId]);
    const seen = json<{ state: string; challenge: unknown }>(await httpsRequest(`${b.url}/api/portal/requests/${requestId}`, onB));
    expect(seen.state).toBe("pending");

    // The SCA waits on A; the signer approves on B with a real R.SAD.
    const waitOnA = httpsRequest(`${a.url}/api/sca/requests/${requestId}?wait=20`, sca());
    const rSad = await buildRSadFor(tx.challenge!, { deviceKey: s.deviceKey, pin: testPin, challengeSigningKey: s.challengeSigningKey });
    expect((await httpsRequest(`${b.url}/api/portal/requests/${requestId}/approve`, { ...onB, json: { rSad } })).status).toBe(202);
    // Answered once: neither node takes a second approval.
    expect((await httpsRequest(`${a.url}/api/portal/requests/${requestId}/approve`, { ...onB, json: { rSad } })).status).toBe(409);
    // The R.SAD is in B's memory only: the SCA takes it from B (the node its calls for this request reach).
    expect(json(await httpsRequest(`${b.url}/api/sca/requests/${requestId}`, sca()))).toEqual({ state: "approved", rSad });
    const [signature] = await tx.authorizeAndSign(rSad);
    expect(signature?.length).toBeGreaterThan(0);
    expect((await httpsRequest(`${a.url}/api/sca/requests/${requestId}/outcome`, { ...sca(), json: { authorized: true } })).status).toBe(204);
    // A's long poll saw the change made through the other node.
    expect(json(await waitOnA)).toEqual({ state: "authorized" });
    expect(json<{ state: string }>(await httpsRequest(`${b.url}/api/portal/requests/${requestId}`, onB)).state).toBe("authorized");
  });

  // What A's long poll answers is asserted, not how soon: A looks at the shared row every second
  // (signing-requests.ts), and a poll that reaches its deadline answers the row as it is then.
  it("a decline through node B is what node A's SCA long poll answers", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const { requestId } = await post(a, s, "Declined across nodes");
    const waitOnA = httpsRequest(`${a.url}/api/sca/requests/${requestId}?wait=20`, sca());
    const onB = await sessionOn(b, s.signerId, s.deviceKey);
    expect((await httpsRequest(`${b.url}/api/portal/requests/${requestId}/decline`, { ...onB, json: {} })).status).toBe(204);
    expect(json(await waitOnA)).toEqual({ state: "declined" });
  });

  it("a node restarting does not put back another node's approved request (its R.SAD is in that node's memory)", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const { tx, requestId } = await post(a, s, "Restart elsewhere");
    const onB = await sessionOn(b, s.signerId, s.deviceKey);
    const rSad = await buildRSadFor(tx.challenge!, { deviceKey: s.deviceKey, pin: testPin, challengeSigningKey: s.challengeSigningKey });
    expect((await httpsRequest(`${b.url}/api/portal/requests/${requestId}/approve`, { ...onB, json: { rSad } })).status).toBe(202);
    await a.close();
    a = await startGateway(gatewayConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", samUrl: t.server.url, store: uri }));
    expect(json(await httpsRequest(`${b.url}/api/sca/requests/${requestId}`, sca()))).toEqual({ state: "approved", rSad });
  });
});
