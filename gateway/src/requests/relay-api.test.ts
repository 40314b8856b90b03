/**
 * The gateway's HTTP API under attack (issue 15), without a browser: the SCA side needs an SCA
 * client certificate and sees only its own requests; the portal side shows a request only to a
 * session its signer's device opened, and the SAM's signature on the challenge is checked first.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { toJson } from "@bufbuild/protobuf";
import { createInkanClient, signDeviceJws, type DeviceKey, type InkanClient } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueCertificate, loadCertificateAuthority } from "../../../server/src/pki/dev-pki.js";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../../../server/src/testing/harness.js";
import { activeSignerWithCredential } from "../../../server/src/testing/signers.js";
import { gatewayConfig } from "../config.js";
import { startGateway, type Gateway } from "../server.js";
import { httpsRequest } from "../testing/https.js";

let t: TestServer;
let gateway: Gateway;
let operator: PrivilegedPerson;
let inkan: InkanClient;
let ca: string;

beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-relay");
  gateway = await startGateway(gatewayConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", samUrl: t.server.url }));
  inkan = createInkanClient({ baseUrl: t.server.url, tls: { ca: t.pki.ca, ...t.pki.sca } as { ca: string; cert: string; key: string } });
  ca = t.pki.ca;
});
afterAll(async () => {
  await gateway?.close();
  await t?.close();
});

const sca = () => ({ ca, ...t.pki.sca });

async function pendingRequest(s: Awaited<ReturnType<typeof activeSignerWithCredential>>, description = "Relay test") {
  const tx = await inkan.beginTransaction({ signerId: s.signerId, credentialId: s.credential.credentialId, hashes: [createHash("sha256").update(description).digest()], description });
  const res = await httpsRequest(`${gateway.url}/api/sca/requests`, { ...sca(), json: { challenge: toJson(SadChallengeSchema, tx.challenge) } });
  expect(res.status).toBe(201);
  return { tx, ...(JSON.parse(res.body) as { requestId: string; requestUrl: string }) };
}

async function sessionOf(signerId: string, deviceKey: DeviceKey): Promise<string> {
  const ch = JSON.parse((await httpsRequest(`${gateway.url}/api/portal/challenge`, { ca, json: { signerId, purpose: "device-authentication" } })).body) as { challenge: string; audience: string };
  const deviceProof = await signDeviceJws({ deviceKey, typ: "inkan-device-authentication+jwt", signerId, audience: ch.audience, challenge: Buffer.from(ch.challenge, "base64") });
  const res = await httpsRequest(`${gateway.url}/api/portal/session`, { ca, json: { signerId, deviceProof } });
  expect(res.status).toBe(200);
  return (JSON.parse(res.body) as { token: string }).token;
}

describe("SCA side of the relay (issue 15)", () => {
  it("refuses a request without a client certificate, or with one from a CA it does not trust", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const tx = await inkan.beginTransaction({ signerId: s.signerId, credentialId: s.credential.credentialId, hashes: [createHash("sha256").digest()], description: "x" });
    const json = { challenge: toJson(SadChallengeSchema, tx.challenge) };
    expect((await httpsRequest(`${gateway.url}/api/sca/requests`, { ca, json })).status).toBe(401);
    expect((await httpsRequest(`${gateway.url}/api/sca/requests`, { ca, ...t.pki.foreign, json })).status).toBe(401);
  });

  it("T-2.2.1.7: refuses a challenge the SAM did not sign as it is (a description changed on the way)", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const tx = await inkan.beginTransaction({ signerId: s.signerId, credentialId: s.credential.credentialId, hashes: [createHash("sha256").digest()], description: "Invoice 7" });
    const forged = { ...(toJson(SadChallengeSchema, tx.challenge) as Record<string, unknown>), description: "Birthday card" };
    const res = await httpsRequest(`${gateway.url}/api/sca/requests`, { ...sca(), json: { challenge: forged } });
    expect(res.status).toBe(400);
    expect(res.body).toContain("FIELD_MISMATCH");
  });

  it("another SCA cannot read, answer or cancel the request", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const { requestId } = await pendingRequest(s);
    const scaCa = await loadCertificateAuthority({ cert: readFileSync(t.pki.paths.scaCaCert, "utf8"), key: readFileSync(t.pki.paths.scaCaKey, "utf8") });
    const other = await issueCertificate(scaCa, { commonName: "sca-other", usage: "client" });
    expect((await httpsRequest(`${gateway.url}/api/sca/requests/${requestId}`, { ca, ...other })).status).toBe(404);
    expect((await httpsRequest(`${gateway.url}/api/sca/requests/${requestId}/outcome`, { ca, ...other, json: { authorized: true } })).status).toBe(404);
    expect((await httpsRequest(`${gateway.url}/api/sca/requests/${requestId}`, { ca, ...other, method: "DELETE" })).status).toBe(404);
    expect((await httpsRequest(`${gateway.url}/api/sca/requests/${requestId}/qr.svg`, { ca, ...other })).status).toBe(404);
    expect(JSON.parse((await httpsRequest(`${gateway.url}/api/sca/requests/${requestId}`, sca())).body)).toEqual({ state: "pending" });
  });

  it("the request URL carries a 256-bit id in the fragment, and comes as a QR code for a signer on another device", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const { requestId, requestUrl } = await pendingRequest(s);
    expect(requestId).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(requestUrl).toMatch(new RegExp(`/#request=${requestId}$`));
    const qr = await httpsRequest(`${gateway.url}/api/sca/requests/${requestId}/qr.svg`, sca());
    expect(qr.status).toBe(200);
    expect(qr.headers["content-type"]).toBe("image/svg+xml");
    expect(qr.body).toMatch(/^<svg/);
  });

  it("the request URL is on the gateway's public URL, never on the Host header the SCA sent (a link to another server)", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const tx = await inkan.beginTransaction({ signerId: s.signerId, credentialId: s.credential.credentialId, hashes: [createHash("sha256").update("host").digest()], description: "Host" });
    const res = await httpsRequest(`${gateway.url}/api/sca/requests`, { ...sca(), headers: { host: "evil.example" }, json: { challenge: toJson(SadChallengeSchema, tx.challenge) } });
    expect(res.status).toBe(201);
    const { requestId, requestUrl } = JSON.parse(res.body) as { requestId: string; requestUrl: string };
    expect(requestUrl).toBe(`${gateway.url}/#request=${requestId}`);
  });
});

describe("portal side of the relay (issue 15)", () => {
  it("shows a request only to a session its signer's device opened", async () => {
    const a = await activeSignerWithCredential(t, operator);
    const b = await activeSignerWithCredential(t, operator);
    const { requestId } = await pendingRequest(a, "Only for A");
    const url = `${gateway.url}/api/portal/requests/${requestId}`;
    expect((await httpsRequest(url, { ca })).status).toBe(401);
    expect((await httpsRequest(url, { ca, headers: { authorization: `Bearer ${"A".repeat(43)}` } })).status).toBe(401);
    const bSession = await sessionOf(b.signerId, b.deviceKey);
    const asB = { ca, headers: { authorization: `Bearer ${bSession}` } };
    expect((await httpsRequest(url, asB)).status).toBe(404);
    expect((await httpsRequest(`${url}/approve`, { ...asB, json: { rSad: "x.y.z.w.v" } })).status).toBe(404);
    expect((await httpsRequest(`${url}/decline`, { ...asB, json: {} })).status).toBe(404);
    expect(JSON.parse((await httpsRequest(`${gateway.url}/api/portal/requests`, asB)).body)).toEqual({ requests: [] });
    const asA = { ca, headers: { authorization: `Bearer ${await sessionOf(a.signerId, a.deviceKey)}` } };
    const seen = JSON.parse((await httpsRequest(url, asA)).body) as { state: string; challenge: { description: string } };
    expect(seen).toMatchObject({ state: "pending", challenge: { description: "Only for A" } });
  });

  it("T-2.3.1.1: a device key of another signer opens no session for this signer", async () => {
    const a = await activeSignerWithCredential(t, operator);
    const b = await activeSignerWithCredential(t, operator);
    const ch = JSON.parse((await httpsRequest(`${gateway.url}/api/portal/challenge`, { ca, json: { signerId: a.signerId, purpose: "device-authentication" } })).body) as { challenge: string; audience: string };
    const deviceProof = await signDeviceJws({ deviceKey: b.deviceKey, typ: "inkan-device-authentication+jwt", signerId: a.signerId, audience: ch.audience, challenge: Buffer.from(ch.challenge, "base64") });
    const res = await httpsRequest(`${gateway.url}/api/portal/session`, { ca, json: { signerId: a.signerId, deviceProof } });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: "REASON_AUTHENTICATION_FAILED" });
  });

  it("an answered request cannot be answered again, and a session relays nothing for another signer", async () => {
    const a = await activeSignerWithCredential(t, operator);
    const b = await activeSignerWithCredential(t, operator);
    const { requestId } = await pendingRequest(a);
    const asA = { ca, headers: { authorization: `Bearer ${await sessionOf(a.signerId, a.deviceKey)}` } };
    expect((await httpsRequest(`${gateway.url}/api/portal/requests/${requestId}/decline`, { ...asA, json: {} })).status).toBe(204);
    expect((await httpsRequest(`${gateway.url}/api/portal/requests/${requestId}/approve`, { ...asA, json: { rSad: "a.b.c.d.e" } })).status).toBe(409);
    expect(JSON.parse((await httpsRequest(`${gateway.url}/api/sca/requests/${requestId}`, sca())).body)).toEqual({ state: "declined" });
    const suspension = await httpsRequest(`${gateway.url}/api/portal/suspension`, { ...asA, json: { signerId: b.signerId, credentialId: b.credential.credentialId, suspensionRequest: "a.b.c" } });
    expect(suspension.status).toBe(403);
  });
});

describe("an SCA that gives up (issue 15)", () => {
  it("a final refusal ends the request even after a wrong PIN: the signer is not asked again for nobody", async () => {
    const a = await activeSignerWithCredential(t, operator);
    const { requestId } = await pendingRequest(a);
    const asA = { ca, headers: { authorization: `Bearer ${await sessionOf(a.signerId, a.deviceKey)}` } };
    expect((await httpsRequest(`${gateway.url}/api/portal/requests/${requestId}/approve`, { ...asA, json: { rSad: "a.b.c.d.e" } })).status).toBe(202);
    expect(JSON.parse((await httpsRequest(`${gateway.url}/api/sca/requests/${requestId}`, sca())).body)).toEqual({ state: "approved", rSad: "a.b.c.d.e" });
    const outcome = { authorized: false, reason: "REASON_AUTHENTICATION_FAILED", final: true };
    expect((await httpsRequest(`${gateway.url}/api/sca/requests/${requestId}/outcome`, { ...sca(), json: outcome })).status).toBe(204);
    expect(JSON.parse((await httpsRequest(`${gateway.url}/api/portal/requests/${requestId}`, asA)).body)).toMatchObject({ state: "failed", refusal: "REASON_AUTHENTICATION_FAILED" });
  });
});
