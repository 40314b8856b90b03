import { createHash, createPublicKey, verify, X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import Database from "better-sqlite3";
import { exportJWK, generateKeyPair, type CryptoKey } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../../../server/src/testing/harness.js";
import { activeSignerWithCredential, enrolledSigner, testPin } from "../../../server/src/testing/signers.js";
import { issueSignerCertificate, signerIssuingCa } from "../../../server/src/testing/signer-certificates.js";
import { totpSecretOf } from "../../../server/src/testing/totp.js";
import { hotp, totpStep } from "../../../server/src/sap/totp-check.js";
import { buildActivationRequest, createDeviceKey, openTotpEnrollment } from "@inkan/sdk";
import { createClient } from "@connectrpc/connect";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { gatewayConfig } from "../config.js";
import { startGateway, type Gateway } from "../server.js";
import { validateExchanges } from "./openapi-check.js";
import { CscTestClient, oids, pkce, type CscResponse } from "./testing/csc-test-client.js";
import { DeviceApprovals } from "./testing/device-approvals.js";

// The CSC API v2 end to end (issue 16): a CSC client written from the public references talks to
// the real gateway over HTTPS, which relays to the real SAM (startTestServer: mTLS, SoftHSM2,
// SQLite); the signer's approval is built with @inkan/sdk/device as the browser would.

type Signer = Awaited<ReturnType<typeof activeSignerWithCredential>>;

let sam: TestServer;
let gateway: Gateway;
let operator: PrivilegedPerson;
let ca: string;
let alice: Signer; // in client A's scope
let aliceRsa: Signer; // in client A's scope, RSA
let bob: Signer; // only in client B's scope
let carol: { signerId: string; credentialId: string; certificate: Uint8Array; totpSecret: Uint8Array }; // PIN + TOTP, in client A's scope
let approvals: DeviceApprovals;
let a: CscTestClient;
let b: CscTestClient;
let keyA: CryptoKey; // client A's private key
const redirectA = "https://platform-a.example/csc/callback";
const samDb = () => new Database(join(sam.dataDir, "store.sqlite3"), { readonly: true });
const transactionCount = () => {
  const db = samDb();
  try {
    return (db.prepare("SELECT count(*) AS n FROM transactions").get() as { n: number }).n;
  } finally {
    db.close();
  }
};

const doc = (label: string) => Buffer.from(`document ${label} ${Math.random()}`);
const sha256 = (d: Buffer) => createHash("sha256").update(d).digest();
const b64 = (b: Buffer) => b.toString("base64");
const b64url = (b: Buffer) => b.toString("base64url");
const certKey = (s: Signer) => new X509Certificate(Buffer.from(s.certificate)).publicKey;

beforeAll(async () => {
  sam = await startTestServer();
  operator = await sam.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-csc");
  alice = await activeSignerWithCredential(sam, operator);
  aliceRsa = await activeSignerWithCredential(sam, operator, KeyAlgorithm.RSA_2048);
  bob = await activeSignerWithCredential(sam, operator);
  carol = await totpSignerWithCredential();
  const pa = await generateKeyPair("ES256", { extractable: true });
  const pb = await generateKeyPair("ES256", { extractable: true });
  keyA = pa.privateKey;
  writeFileSync(join(sam.dataDir, "csc-clients.json"), JSON.stringify({
    clients: [
      { clientId: "platform-a", name: "Platform A", jwks: { keys: [await exportJWK(pa.publicKey)] }, redirectUris: [redirectA], signers: [alice.signerId, aliceRsa.signerId, carol.signerId], explicit: true },
      { clientId: "platform-b", name: "Platform B", jwks: { keys: [await exportJWK(pb.publicKey)] }, redirectUris: ["https://platform-b.example/cb"], signers: [bob.signerId] },
    ],
  }));
  approvals = new DeviceApprovals();
  gateway = await startGateway(gatewayConfig({ dataDir: sam.dataDir, listen: "127.0.0.1:0", samUrl: sam.server.url }), [], { signerApprovals: approvals });
  ca = readFileSync(join(sam.dataDir, "pki", "ca.crt"), "utf8");
  a = new CscTestClient(`${gateway.url}/csc/v2`, ca, "platform-a", pa.privateKey, redirectA);
  b = new CscTestClient(`${gateway.url}/csc/v2`, ca, "platform-b", pb.privateKey, "https://platform-b.example/cb");
  await a.serviceToken();
  await b.serviceToken();
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await sam?.close();
});

/** A signer activated with PIN and TOTP (no device key use here), with one ACTIVE certified credential. */
async function totpSignerWithCredential() {
  const { signerId, code } = await enrolledSigner(sam, operator);
  const device = createClient(SignerService, sam.transport("grpc", sam.pki.frontEnd));
  const ch = await device.createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
  const { request, responseKey } = await buildActivationRequest({
    signerId, activationCode: code, pin: testPin, deviceKey: await createDeviceKey(), enrollTotp: true, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience,
  });
  const { totpEnrollment } = await device.activate(request);
  const totpSecret = totpSecretOf(await openTotpEnrollment(totpEnrollment, responseKey!));
  const ra = createClient(RegistrationService, sam.as(operator));
  const { credential } = await ra.generateKey({ signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "totp" });
  const certificate = await issueSignerCertificate(await signerIssuingCa(sam), credential!.publicKeySpki);
  await ra.importCertificate({ credentialId: credential!.credentialId, certificateChain: [certificate] });
  return { signerId, credentialId: credential!.credentialId, certificate, totpSecret };
}

/** oauth2code up to the credential access token: authorize, the signer approves on the device, code, token. */
async function oauth2code(client: CscTestClient, signer: Signer, hashes: Buffer[], extra: Record<string, string> = {}) {
  const { verifier, challenge } = pkce();
  const state = `st-${Math.random()}`;
  const auth = await client.get(client.authorizeUrl({ credentialID: signer.credential.credentialId, hashes: hashes.map(b64url), hashAlgorithmOID: oids.sha256, codeChallenge: challenge, state, extra }));
  expect(auth.status, JSON.stringify(auth.body)).toBe(302);
  expect(auth.location).toMatch(/^https:\/\/portal\.invalid\/requests\//);
  const requestId = approvals.ids.at(-1)!;
  const back = await approvals.approve(requestId, { deviceKey: signer.deviceKey, pin: testPin, challengeSigningKey: signer.challengeSigningKey });
  const ret = await client.getAbsolute(back);
  expect(ret.status, JSON.stringify(ret.body)).toBe(302);
  const to = new URL(ret.location!);
  expect(`${to.origin}${to.pathname}`).toBe(client.redirectUri);
  expect(to.searchParams.get("state")).toBe(state);
  const code = to.searchParams.get("code")!;
  const tokenForm = { grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: client.redirectUri, client_id: client.clientId, client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: await client.assertion() };
  const token = await client.token(tokenForm);
  expect(token.status, JSON.stringify(token.body)).toBe(200);
  return { sad: token.body.access_token as string, code, verifier, tokenForm, requestId, token };
}

const signHash = (client: CscTestClient, sad: string, credentialID: string, hashes: Buffer[], o: { asBearer?: boolean; signAlgo?: string; signAlgoParams?: string } = {}) =>
  client.call("signatures/signHash", {
    credentialID,
    ...(o.asBearer ? {} : { SAD: sad }),
    hashes: hashes.map(b64),
    hashAlgorithmOID: oids.sha256,
    signAlgo: o.signAlgo ?? oids.ecdsaSha256,
    ...(o.signAlgoParams ? { signAlgoParams: o.signAlgoParams } : {}),
  }, o.asBearer ? { bearer: sad } : {});

const errorOf = (r: CscResponse) => ({ status: r.status, error: r.body.error, error_description: r.body.error_description });

describe("info and service authorization (issue 16)", () => {
  it("info lists exactly the implemented methods, the authorization type and the signature algorithm OIDs", async () => {
    const res = await a.call("info", {}, { bearer: null });
    expect(res.status).toBe(200);
    expect(res.body.specs).toBe("2.0.0.2");
    expect(res.body.authType).toEqual(["oauth2client"]);
    expect([...(res.body.methods as string[])].sort()).toEqual([
      "credentials/authorize", "credentials/extendTransaction", "credentials/info", "credentials/list", "info", "oauth2/authorize", "oauth2/token", "signatures/signHash",
    ]);
    expect((res.body.signAlgorithms as { algos: string[] }).algos).toEqual(expect.arrayContaining([oids.ecdsaSha256, oids.sha256WithRsa, oids.rsaPss]));
  });

  it("private_key_jwt: a wrong key, a replayed assertion, another audience or an unknown client get invalid_client; nothing is issued", async () => {
    const other = (await generateKeyPair("ES256")).privateKey;
    const base = { grant_type: "client_credentials", client_id: "platform-a", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" };
    expect(errorOf(await a.token({ ...base, client_assertion: await a.assertion({ key: other }) }))).toMatchObject({ status: 401, error: "invalid_client" });
    const once = await a.assertion();
    expect((await a.token({ ...base, client_assertion: once })).status).toBe(200);
    expect(errorOf(await a.token({ ...base, client_assertion: once }))).toMatchObject({ status: 401, error: "invalid_client" }); // replay
    expect(errorOf(await a.token({ ...base, client_assertion: await a.assertion({ aud: "https://elsewhere.example/token" }) }))).toMatchObject({ status: 401, error: "invalid_client" });
    expect(errorOf(await a.token({ ...base, client_id: "nobody", client_assertion: await a.assertion({ iss: "nobody" }) }))).toMatchObject({ status: 401, error: "invalid_client" });
    expect(errorOf(await a.token({ ...base, client_assertion: await a.assertion(), client_id: "platform-b" }))).toMatchObject({ status: 401, error: "invalid_client" });
    expect(errorOf(await a.token({ grant_type: "client_credentials", client_id: "platform-a" }))).toMatchObject({ status: 401, error: "invalid_client" });
    expect(errorOf(await a.token({ ...base, grant_type: "password", client_assertion: await a.assertion() }))).toMatchObject({ status: 400, error: "unsupported_grant_type" });
    expect(errorOf(await a.token({ ...base, scope: "admin", client_assertion: await a.assertion() }))).toMatchObject({ status: 400, error: "invalid_scope" });
  });

  it("a client assertion made for another server, replayed here with that server's Host header, is invalid_client: the audience is the gateway's public URL, never Host", async () => {
    const base = { grant_type: "client_credentials", client_id: "platform-a", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" };
    const forOther = await a.assertion({ aud: "https://other.example/csc/v2/oauth2/token" });
    expect(errorOf(await a.token({ ...base, client_assertion: forOther }, { hostHeader: "other.example" }))).toMatchObject({ status: 401, error: "invalid_client" });
    // An assertion for this gateway is accepted whatever Host says, and info names this gateway's token URL.
    expect((await a.token({ ...base, client_assertion: await a.assertion() }, { hostHeader: "other.example" })).status).toBe(200);
    expect((await a.call("info", {}, { bearer: null, hostHeader: "other.example" })).body.oauth2).toBe(`${gateway.url}/csc/v2`);
  });

  it("a method without, or with an unknown, access token is invalid_token (401)", async () => {
    const none = await a.call("credentials/list", { userID: alice.signerId }, { bearer: null });
    expect(errorOf(none)).toMatchObject({ status: 401, error: "invalid_token" });
    expect(none.headers?.["www-authenticate"]).toBe('Bearer error="invalid_token"'); // RFC 6750 3.1
    expect(errorOf(await a.call("credentials/list", { userID: alice.signerId }, { bearer: "not-a-token" }))).toMatchObject({ status: 401, error: "invalid_token" });
  });
});

describe("a configured public URL (--public-url)", () => {
  it("is the assertion audience and info's oauth2 URL: an assertion for the URL the gateway listens on is invalid_client", async () => {
    const gw = await startGateway(gatewayConfig({ dataDir: sam.dataDir, listen: "127.0.0.1:0", samUrl: sam.server.url, publicUrl: "https://RSSP.example:8444/" }), [], { signerApprovals: approvals });
    try {
      expect(gw.publicUrl).toBe("https://rssp.example:8444");
      const c = new CscTestClient(`${gw.url}/csc/v2`, ca, "platform-a", keyA, redirectA);
      const base = { grant_type: "client_credentials", client_id: "platform-a", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" };
      expect((await c.call("info", {}, { bearer: null })).body.oauth2).toBe("https://rssp.example:8444/csc/v2");
      expect(errorOf(await c.token({ ...base, client_assertion: await c.assertion() }))).toMatchObject({ status: 401, error: "invalid_client" }); // aud: the listen URL
      expect((await c.token({ ...base, client_assertion: await c.assertion({ aud: "https://rssp.example:8444/csc/v2/oauth2/token" }) })).status).toBe(200);
    } finally {
      await gw.close();
    }
  });
});

describe("credentials (issues 16, 19)", () => {
  it("credentials/list lists the signer's credentials with key, certificate chain, authMode, SCAL and multisign", async () => {
    const res = await a.call("credentials/list", { userID: alice.signerId, credentialInfo: true, certificates: "chain", certInfo: true, authInfo: true });
    expect(res.status).toBe(200);
    expect(res.body.credentialIDs).toEqual([alice.credential.credentialId]);
    const [info] = res.body.credentialInfos as Record<string, any>[];
    expect(info).toMatchObject({ credentialID: alice.credential.credentialId, SCAL: "2", auth: { mode: "oauth2code" }, key: { status: "enabled", len: 256, curve: "1.2.840.10045.3.1.7" } });
    expect(info!.multisign).toBeGreaterThan(0);
    expect(Buffer.from(info!.cert.certificates[0], "base64")).toEqual(Buffer.from(alice.certificate));
    expect(info!.cert.subjectDN).toBeTruthy();
  });

  it("credentials/info describes one credential", async () => {
    const res = await a.call("credentials/info", { credentialID: aliceRsa.credential.credentialId, certInfo: true });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ SCAL: "2", key: { status: "enabled", len: 2048 }, auth: { mode: "oauth2code" }, cert: { status: "valid" } });
    expect((res.body.key as { algo: string[] }).algo).toEqual(expect.arrayContaining([oids.sha256WithRsa, oids.rsaPss]));
  });

  it("issue 19: a signer or credential outside the client's scope reads exactly as one that does not exist", async () => {
    const outside = errorOf(await a.call("credentials/list", { userID: bob.signerId }));
    const unknown = errorOf(await a.call("credentials/list", { userID: "sgn_does_not_exist" }));
    expect(outside).toEqual(unknown);
    expect(outside).toMatchObject({ status: 400, error: "invalid_request" });
    const outsideCred = errorOf(await a.call("credentials/info", { credentialID: bob.credential.credentialId }));
    const unknownCred = errorOf(await a.call("credentials/info", { credentialID: "cred_does_not_exist" }));
    expect(outsideCred).toEqual(unknownCred);
    // Client B sees Bob, and only Bob.
    expect((await b.call("credentials/list", { userID: bob.signerId })).body.credentialIDs).toEqual([bob.credential.credentialId]);
    expect(errorOf(await b.call("credentials/info", { credentialID: alice.credential.credentialId }))).toEqual(unknownCred);
  });
});

describe("oauth2code with PKCE, the signer approving in the portal (issue 16)", () => {
  it("signs several hashes, in several calls; a retried hash returns its recorded signature; the SAM's audit names the CSC client", async () => {
    const docs = [doc("1"), doc("2"), doc("3")];
    const hashes = docs.map(sha256);
    const { sad, requestId } = await oauth2code(a, alice, hashes);
    expect(approvals.requestOf(requestId).requester).toBe("Platform A");
    const first = await signHash(a, sad, alice.credential.credentialId, hashes.slice(0, 2), { asBearer: true });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    const sigs = (first.body.signatures as string[]).map((s) => Buffer.from(s, "base64"));
    sigs.forEach((s, i) => expect(verify("sha256", docs[i]!, certKey(alice), s)).toBe(true));
    // A lost response, retried: the same bytes (ECDSA is randomized, so no second signature was made).
    const retry = await signHash(a, sad, alice.credential.credentialId, [hashes[1]!], { asBearer: true });
    expect(retry.body.signatures).toEqual([first.body.signatures as string[]].flat().slice(1));
    const last = await signHash(a, sad, alice.credential.credentialId, [hashes[2]!], { asBearer: true });
    expect(verify("sha256", docs[2]!, certKey(alice), Buffer.from((last.body.signatures as string[])[0]!, "base64"))).toBe(true);

    const db = samDb();
    try {
      const txId = approvals.challengeOf(requestId).transactionId;
      const created = (db.prepare("SELECT body FROM audit_records WHERE event = 'transaction.created'").all() as { body: string }[]).map((r) => r.body).filter((b) => b.includes(txId));
      expect(created).toHaveLength(1);
      expect(created[0]).toContain("platform-a");
      const tx = db.prepare("SELECT body FROM transactions WHERE id = ?").get(txId) as { body: string };
      expect(JSON.parse(tx.body)).toMatchObject({ onBehalfOf: "platform-a" });
    } finally {
      db.close();
    }
  });

  it("T-2.2.1.6: a hash outside the authorized list is refused, and nothing is signed for it", async () => {
    const hashes = [sha256(doc("sub-1"))];
    const { sad } = await oauth2code(a, alice, hashes);
    const res = await signHash(a, sad, alice.credential.credentialId, [sha256(doc("substituted"))], { asBearer: true });
    expect(errorOf(res)).toMatchObject({ status: 400, error: "invalid_request" });
    // The authorized hash still signs.
    expect((await signHash(a, sad, alice.credential.credentialId, hashes, { asBearer: true })).status).toBe(200);
  });

  it("T-2.2.1.4: the SAD for one credential does not sign with another, nor for another client", async () => {
    const hashes = [sha256(doc("cred"))];
    const { sad } = await oauth2code(a, alice, hashes);
    expect(errorOf(await signHash(a, sad, aliceRsa.credential.credentialId, hashes, { signAlgo: oids.sha256WithRsa }))).toMatchObject({ status: 400, error: "invalid_request", error_description: "Invalid parameter SAD" });
    expect(errorOf(await signHash(b, sad, alice.credential.credentialId, hashes))).toMatchObject({ status: 400, error: "invalid_request", error_description: "Invalid parameter SAD" });
    expect((await signHash(a, sad, alice.credential.credentialId, hashes)).status).toBe(200); // with the service token + SAD
  });

  it("T-2.2.1.3: a replayed code is invalid_grant and revokes the SAD it gave; a wrong PKCE verifier is invalid_grant", async () => {
    const hashes = [sha256(doc("replay"))];
    const { sad, tokenForm } = await oauth2code(a, alice, hashes);
    expect(errorOf(await a.token({ ...tokenForm, client_assertion: await a.assertion() }))).toMatchObject({ status: 400, error: "invalid_grant" });
    expect(errorOf(await signHash(a, sad, alice.credential.credentialId, hashes, { asBearer: true }))).toMatchObject({ status: 401, error: "invalid_token" });

    const p = pkce();
    await a.get(a.authorizeUrl({ credentialID: alice.credential.credentialId, hashes: [b64url(sha256(doc("pkce")))], hashAlgorithmOID: oids.sha256, codeChallenge: p.challenge, state: "s" }));
    const ret = await a.getAbsolute(await approvals.approve(approvals.ids.at(-1)!, { deviceKey: alice.deviceKey, pin: testPin, challengeSigningKey: alice.challengeSigningKey }));
    const code = new URL(ret.location!).searchParams.get("code")!;
    const wrong = await a.token({ ...tokenForm, code, code_verifier: pkce().verifier, client_assertion: await a.assertion() });
    expect(errorOf(wrong)).toMatchObject({ status: 400, error: "invalid_grant" });
    expect(errorOf(await a.token({ ...tokenForm, code, client_assertion: await a.assertion() }))).toMatchObject({ status: 400, error: "invalid_grant" });
  });

  it("extendTransaction returns a new SAD and the old one stops working", async () => {
    const hashes = [sha256(doc("ext-1")), sha256(doc("ext-2"))];
    const { sad } = await oauth2code(a, alice, hashes);
    expect((await signHash(a, sad, alice.credential.credentialId, [hashes[0]!])).status).toBe(200);
    const ext = await a.call("credentials/extendTransaction", { credentialID: alice.credential.credentialId, SAD: sad });
    expect(ext.status, JSON.stringify(ext.body)).toBe(200);
    expect(ext.body.expiresIn).toBeGreaterThan(0);
    const next = ext.body.SAD as string;
    expect(next).not.toBe(sad);
    expect(errorOf(await signHash(a, sad, alice.credential.credentialId, [hashes[1]!]))).toMatchObject({ status: 400, error_description: "Invalid parameter SAD" });
    expect((await signHash(a, next, alice.credential.credentialId, [hashes[1]!])).status).toBe(200);
    expect((await signHash(a, next, alice.credential.credentialId, [hashes[0]!])).status).toBe(200); // recorded, through the new SAD
  });

  it("RSA: PKCS#1 v1.5 by sha256WithRSAEncryption, and RSASSA-PSS by OID with its parameters", async () => {
    const d1 = doc("rsa-1");
    const { sad } = await oauth2code(a, aliceRsa, [sha256(d1)]);
    const s1 = await signHash(a, sad, aliceRsa.credential.credentialId, [sha256(d1)], { signAlgo: oids.sha256WithRsa });
    expect(s1.status, JSON.stringify(s1.body)).toBe(200);
    expect(verify("sha256", d1, certKey(aliceRsa), Buffer.from((s1.body.signatures as string[])[0]!, "base64"))).toBe(true);

    // RSASSA-PSS-params: SHA-256, MGF1 with SHA-256, salt 32 (DER, base64).
    const params = "MDSgDzANBglghkgBZQMEAgEFAKEcMBoGCSqGSIb3DQEBCDANBglghkgBZQMEAgEFAKIDAgEg";
    const d2 = doc("rsa-2");
    const pss = await oauth2code(a, aliceRsa, [sha256(d2)], { signAlgo: oids.rsaPss, signAlgoParams: params });
    // Asking for another scheme than the one authorized is refused.
    expect(errorOf(await signHash(a, pss.sad, aliceRsa.credential.credentialId, [sha256(d2)], { signAlgo: oids.sha256WithRsa }))).toMatchObject({ status: 400, error: "invalid_request" });
    const s2 = await signHash(a, pss.sad, aliceRsa.credential.credentialId, [sha256(d2)], { signAlgo: oids.rsaPss, signAlgoParams: params });
    expect(s2.status, JSON.stringify(s2.body)).toBe(200);
    const key = createPublicKey(certKey(aliceRsa).export({ format: "pem", type: "spki" }));
    expect(verify("sha256", d2, { key, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 }, Buffer.from((s2.body.signatures as string[])[0]!, "base64"))).toBe(true);
  });

  it("authorization_details of type credential (RFC 9396) instead of scope=credential", async () => {
    const d = doc("details");
    const { verifier, challenge } = pkce();
    const details = JSON.stringify([{ type: "credential", credentialID: alice.credential.credentialId, documentDigests: [{ hash: b64(sha256(d)), label: "details.pdf" }], hashAlgorithmOID: oids.sha256 }]);
    const q = new URLSearchParams({ response_type: "code", client_id: a.clientId, redirect_uri: a.redirectUri, code_challenge: challenge, code_challenge_method: "S256", state: "ad", authorization_details: details });
    expect((await a.get(`/oauth2/authorize?${q.toString()}`)).status).toBe(302);
    const ret = await a.getAbsolute(await approvals.approve(approvals.ids.at(-1)!, { deviceKey: alice.deviceKey, pin: testPin, challengeSigningKey: alice.challengeSigningKey }));
    const code = new URL(ret.location!).searchParams.get("code")!;
    const token = await a.token({ grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: a.redirectUri, client_id: a.clientId, client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: await a.assertion() });
    expect(token.status).toBe(200);
    const signed = await signHash(a, token.body.access_token as string, alice.credential.credentialId, [sha256(d)], { asBearer: true });
    expect(verify("sha256", d, certKey(alice), Buffer.from((signed.body.signatures as string[])[0]!, "base64"))).toBe(true);
  });

  it("a signer who declines: the client's redirect carries access_denied and no code", async () => {
    const p = pkce();
    const auth = await a.get(a.authorizeUrl({ credentialID: alice.credential.credentialId, hashes: [b64url(sha256(doc("no")))], hashAlgorithmOID: oids.sha256, codeChallenge: p.challenge, state: "d" }));
    expect(auth.status).toBe(302);
    const ret = await a.getAbsolute(approvals.decline(approvals.ids.at(-1)!));
    const to = new URL(ret.location!);
    expect(to.searchParams.get("error")).toBe("access_denied");
    expect(to.searchParams.get("code")).toBeNull();
    expect(to.searchParams.get("state")).toBe("d");
  });

  it("issue 19: oauth2/authorize for a credential outside the client's scope reads as an unknown one, and opens no transaction", async () => {
    const p = pkce();
    const before = transactionCount();
    const q = (credentialID: string) => a.authorizeUrl({ credentialID, hashes: [b64url(sha256(doc("x")))], hashAlgorithmOID: oids.sha256, codeChallenge: p.challenge, state: "x" });
    const outside = new URL((await a.get(q(bob.credential.credentialId))).location!);
    const unknown = new URL((await a.get(q("cred_nope"))).location!);
    expect(outside.searchParams.toString()).toBe(unknown.searchParams.toString());
    expect(outside.searchParams.get("error")).toBe("invalid_request");
    expect(transactionCount()).toBe(before);
  });
});

describe("explicit mode: PIN + OTP through the CSC client (issue 16)", () => {
  const authorize = (client: CscTestClient, credentialID: string, hashes: Buffer[], pin: string, otp: string) => client.call("credentials/authorize", {
    credentialID, numSignatures: hashes.length, hashes: hashes.map(b64), hashAlgorithmOID: oids.sha256, description: "Explicit test",
    authData: [{ id: "PIN", value: pin }, { id: "OTP", value: otp }],
  });
  const otpNow = () => hotp(carol.totpSecret, totpStep(new Date(), 30), 6);

  it("is off for a client not registered for it (the default), and opens no transaction", async () => {
    const before = transactionCount();
    expect(errorOf(await authorize(b, bob.credential.credentialId, [sha256(doc("e"))], testPin, "123456"))).toMatchObject({ status: 400, error: "invalid_request" });
    expect(transactionCount()).toBe(before);
  });

  it("credentials/info says explicit with PIN AND OTP for a PIN + TOTP credential's authInfo", async () => {
    const res = await a.call("credentials/info", { credentialID: carol.credentialId, authInfo: true });
    // The default policy enables both methods, so the credential's mode stays oauth2code; the objects are listed when explicit is its only way.
    expect(res.body.auth).toMatchObject({ mode: "oauth2code" });
  });

  it("a wrong OTP is access_denied and leaves no open transaction; the right PIN + OTP gives a SAD that signs", async () => {
    const d = [doc("x1"), doc("x2")];
    const wrong = await authorize(a, carol.credentialId, d.map(sha256), testPin, otpNow() === "000000" ? "111111" : "000000");
    expect(errorOf(wrong)).toMatchObject({ status: 403, error: "access_denied" });
    const db = samDb();
    try {
      expect((db.prepare("SELECT count(*) AS n FROM transactions WHERE credential_id = ? AND state IN ('PENDING', 'AUTHORIZED')").get(carol.credentialId) as { n: number }).n).toBe(0);
    } finally {
      db.close();
    }
    const res = await authorize(a, carol.credentialId, d.map(sha256), testPin, otpNow());
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.expiresIn).toBeGreaterThan(0);
    const signed = await signHash(a, res.body.SAD as string, carol.credentialId, d.map(sha256));
    expect(signed.status, JSON.stringify(signed.body)).toBe(200);
    const key = new X509Certificate(Buffer.from(carol.certificate)).publicKey;
    (signed.body.signatures as string[]).forEach((s, i) => expect(verify("sha256", d[i]!, key, Buffer.from(s, "base64"))).toBe(true));
    // The SAD is single-transaction: a hash outside its list is refused.
    expect(errorOf(await signHash(a, res.body.SAD as string, carol.credentialId, [sha256(doc("x3"))]))).toMatchObject({ status: 400, error: "invalid_request" });
  });
});

describe("bad input at every endpoint: the documented error, nothing changed (issue 16)", () => {
  it("answers each malformed request with its documented error and opens no SAM transaction", async () => {
    const before = transactionCount();
    const h = b64(sha256(doc("bad")));
    const cred = alice.credential.credentialId;
    const cases: [string, unknown, number, string][] = [
      ["credentials/list", {}, 400, "invalid_request"],
      ["credentials/list", { userID: 7 }, 400, "invalid_request"],
      ["credentials/list", { userID: alice.signerId, credentialInfo: "yes" }, 400, "invalid_request"],
      ["credentials/list", { userID: alice.signerId, certificates: "all" }, 400, "invalid_request"],
      ["credentials/list", { userID: alice.signerId, maxResults: 0 }, 400, "invalid_request"],
      ["credentials/info", {}, 400, "invalid_request"],
      ["credentials/info", { credentialID: "" }, 400, "invalid_request"],
      ["credentials/info", { credentialID: cred, certificates: 3 }, 400, "invalid_request"],
      ["credentials/authorize", { credentialID: cred }, 400, "invalid_request"],
      ["credentials/authorize", { credentialID: cred, numSignatures: 2, hashes: [h], hashAlgorithmOID: oids.sha256, authData: [] }, 400, "invalid_request"],
      ["credentials/authorize", { credentialID: cred, numSignatures: 1, hashes: [h], hashAlgorithmOID: "1.2.3", authData: [] }, 400, "invalid_request"],
      ["credentials/authorize", { credentialID: cred, numSignatures: 1, hashes: ["AAAA"], hashAlgorithmOID: oids.sha256, authData: [] }, 400, "invalid_request"],
      ["credentials/authorize", { credentialID: cred, numSignatures: 1, hashes: [h], hashAlgorithmOID: oids.sha256 }, 400, "invalid_request"],
      ["credentials/extendTransaction", { credentialID: cred }, 400, "invalid_request"],
      ["credentials/extendTransaction", { credentialID: cred, SAD: "unknown" }, 400, "invalid_request"],
      ["signatures/signHash", { credentialID: cred, SAD: "unknown", hashes: [h], hashAlgorithmOID: oids.sha256, signAlgo: oids.ecdsaSha256 }, 400, "invalid_request"],
      ["signatures/signHash", { credentialID: cred, SAD: "unknown", hashes: [], hashAlgorithmOID: oids.sha256, signAlgo: oids.ecdsaSha256 }, 400, "invalid_request"],
      ["signatures/signHash", { credentialID: cred, SAD: "unknown", hashes: [h], hashAlgorithmOID: oids.sha256 }, 400, "invalid_request"],
      ["signatures/signHash", { credentialID: cred, SAD: "unknown", hashes: [h], hashAlgorithmOID: oids.sha256, signAlgo: "1.2.3.4" }, 400, "invalid_request"],
      ["signatures/signHash", { credentialID: cred, SAD: "unknown", hashes: [h], hashAlgorithmOID: oids.sha256, signAlgo: oids.rsaPss, signAlgoParams: "MAA" }, 400, "invalid_request"],
      ["signatures/signHash", { credentialID: cred, SAD: "unknown", hashes: [h], hashAlgorithmOID: oids.sha384, signAlgo: oids.ecdsaSha256 }, 400, "invalid_request"],
      ["signatures/signHash", { credentialID: cred, SAD: "unknown", hashes: [h], hashAlgorithmOID: oids.sha256, signAlgo: oids.ecdsaSha256, operationMode: "A" }, 400, "invalid_request"],
      ["signatures/signHash", { credentialID: cred, hashes: [h], hashAlgorithmOID: oids.sha256, signAlgo: oids.ecdsaSha256 }, 400, "invalid_request"],
    ];
    for (const [method, body, status, error] of cases) {
      const res = await a.call(method, body);
      expect({ method, body, ...errorOf(res) }).toMatchObject({ method, body, status, error });
      expect(typeof res.body.error_description).toBe("string");
    }
    // Not JSON, not an object, the wrong media type, an unknown method, the wrong HTTP method.
    expect(errorOf(await a.call("credentials/info", undefined, { raw: "{not json" }))).toMatchObject({ status: 400, error: "invalid_request" });
    expect(errorOf(await a.call("credentials/info", undefined, { raw: "[1]" }))).toMatchObject({ status: 400, error: "invalid_request" });
    expect(errorOf(await a.call("credentials/info", undefined, { raw: "credentialID=x", contentType: "text/plain" }))).toMatchObject({ status: 415, error: "unsupported_media_type" });
    expect(errorOf(await a.call("credentials/sendOTP", {}))).toMatchObject({ status: 404, error: "not_found" });
    expect(errorOf(await a.get("/credentials/info"))).toMatchObject({ status: 405 });
    expect(errorOf(await a.token({ grant_type: "client_credentials" }))).toMatchObject({ status: 401, error: "invalid_client" });
    expect(errorOf(await a.call("oauth2/token", { grant_type: 1 }))).toMatchObject({ status: 400, error: "invalid_request" });

    // oauth2/authorize: an unregistered redirect_uri is answered here, never redirected to.
    const p = pkce();
    const good = { credentialID: cred, hashes: [b64url(sha256(doc("q")))], hashAlgorithmOID: oids.sha256, codeChallenge: p.challenge, state: "q" };
    expect(errorOf(await a.get(a.authorizeUrl(good).replace(encodeURIComponent(redirectA), encodeURIComponent("https://evil.example/cb"))))).toMatchObject({ status: 400, error: "invalid_request" });
    expect(errorOf(await a.get(a.authorizeUrl(good).replace("client_id=platform-a", "client_id=nobody")))).toMatchObject({ status: 400, error: "invalid_request" });
    for (const url of [
      a.authorizeUrl(good).replace("response_type=code", "response_type=token"),
      a.authorizeUrl(good).replace("code_challenge_method=S256", "code_challenge_method=plain"),
      a.authorizeUrl({ ...good, hashes: [...good.hashes, good.hashes[0]!] }),
      a.authorizeUrl({ ...good, hashAlgorithmOID: "1.2.3" }),
      a.authorizeUrl({ ...good, hashes: ["AAAA"] }),
      a.authorizeUrl(good).replace("numSignatures=1", "numSignatures=2"),
      a.authorizeUrl({ ...good, extra: { scope: "service" } }),
      a.authorizeUrl({ ...good, extra: { authorization_details: "[{\"type\":\"other\"}]" } }),
      a.authorizeUrl({ ...good, extra: { authorization_details: "not json" } }),
      a.authorizeUrl({ ...good, extra: { authorization_details: JSON.stringify([{ type: "credential", credentialID: cred, numSignatures: "2", documentDigests: [{ hash: good.hashes[0], label: "a" }], hashAlgorithmOID: oids.sha256 }]) } }),
    ]) {
      const res = await a.get(url);
      expect(res.status).toBe(302);
      expect(["invalid_request", "invalid_scope"]).toContain(new URL(res.location!).searchParams.get("error"));
      expect(new URL(res.location!).searchParams.get("state")).toBe("q");
    }
    expect(errorOf(await a.getAbsolute("/csc/v2/oauth2/return?request=nope"))).toMatchObject({ status: 400, error: "invalid_request" });
    expect(transactionCount()).toBe(before);
  });
});

describe("BeginTransactionRequest.on_behalf_of at the SAM (issue 16)", () => {
  it("is refused when malformed (INVALID_ARGUMENT), and opens nothing", async () => {
    const before = transactionCount();
    const begin = (onBehalfOf: string) => gateway.sam.inkan.sam.beginTransaction({
      credentialId: alice.credential.credentialId, signerId: alice.signerId, hashAlgorithm: 1, numSignatures: 1, hashes: [sha256(doc("obo"))], description: "obo", onBehalfOf,
    });
    for (const bad of ["has space", "x".repeat(129), "tab\t"]) {
      const err = await begin(bad).then(() => undefined, (e: unknown) => e as { code: number });
      expect(err?.code, bad).toBe(3); // INVALID_ARGUMENT
    }
    expect(transactionCount()).toBe(before);
  });
});

describe("the OpenAPI 3.1 document (issue 16)", () => {
  it("every request/response exchange recorded above matches openapi.json, every error code included", () => {
    const all = [...a.exchanges, ...b.exchanges];
    expect(all.length).toBeGreaterThan(80);
    expect([...new Set(all.map((x) => x.status))]).toEqual(expect.arrayContaining([200, 302, 400, 401, 403, 404, 405, 415]));
    expect(validateExchanges(all)).toEqual([]);
  });

  it("the check fails on an error code, status or member the document does not list", () => {
    const x = { method: "POST", path: "/csc/v2/signatures/signHash", requestBody: {}, contentType: "application/json" };
    expect(validateExchanges([{ ...x, status: 400, responseBody: { error: "invalid_sad", error_description: "?" } }])).toHaveLength(1);
    expect(validateExchanges([{ ...x, status: 418, responseBody: { error: "invalid_request", error_description: "?" } }])).toHaveLength(1);
    expect(validateExchanges([{ ...x, status: 200, responseBody: { signatures: ["x"], extra: 1 } }])).toContain("POST /csc/v2/signatures/signHash -> 200: undocumented member extra");
  });
});
