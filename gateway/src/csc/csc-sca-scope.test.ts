import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clone, create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import { buildActivationRequest, createDeviceKey, type DeviceKey, type SamSigningKey } from "@inkan/sdk";
import { PolicyService, ScaScopeSchema, SecurityPolicySchema, type SecurityPolicy } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { IdentityProofingMethod, RegistrationService, SignerKind } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import Database from "better-sqlite3";
import { exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate, type CertificateAuthority } from "../../../server/src/pki/dev-pki.js";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../../../server/src/testing/harness.js";
import { issueSignerCertificate, signerIssuingCa } from "../../../server/src/testing/signer-certificates.js";
import { testPin } from "../../../server/src/testing/signers.js";
import { gatewayConfig } from "../config.js";
import { startGateway, type Gateway } from "../server.js";
import { CscTestClient, oids, pkce } from "./testing/csc-test-client.js";
import { DeviceApprovals } from "./testing/device-approvals.js";

// Issue 19 through the CSC API (issue 16): a CSC client registered with its own SCA certificate
// reaches the SAM as that SCA, so the SAM's SCA scopes (here: a tenant CA whose scope is its own
// signer group) decide what the client sees, even with "signers": "*" at the gateway.

type Signer = { signerId: string; credentialId: string; deviceKey: DeviceKey; challengeSigningKey: SamSigningKey };

let t: TestServer;
let gateway: Gateway;
let so2: PrivilegedPerson;
let operator: PrivilegedPerson;
let caC: CertificateAuthority;
let inTenant: Signer;
let outside: Signer;
let client: CscTestClient;
const approvals = new DeviceApprovals();
const der = (pem: string) => new Uint8Array(new X509Certificate(pem).raw);
const sha256 = (b: Uint8Array) => new Uint8Array(createHash("sha256").update(b).digest());

async function signerOf(group: string): Promise<Signer> {
  const ra = createClient(RegistrationService, t.as(operator));
  const { signer } = await ra.enrollSigner({
    identity: { kind: SignerKind.NATURAL_PERSON, legalName: `Tenant ${group || "none"}`, displayName: "T", email: `csc-scope.${group || "none"}.${process.pid}@example.jp`, country: "JP" },
    proofing: { method: IdentityProofingMethod.IN_PERSON, evidenceReference: "RA-16", proofedAt: timestampFromDate(new Date(Date.now() - 60_000)) },
    group,
  });
  const signerId = signer!.signerId;
  const { activationCode } = await ra.issueActivationCode({ signerId });
  const device = createClient(SignerService, t.transport("grpc", t.pki.frontEnd));
  const ch = await device.createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
  const deviceKey = await createDeviceKey();
  const { request } = await buildActivationRequest({ signerId, activationCode: activationCode!.code, pin: testPin, deviceKey, enrollTotp: false, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
  await device.activate(request);
  const { credential } = await ra.generateKey({ signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "" });
  await ra.importCertificate({ credentialId: credential!.credentialId, certificateChain: [await issueSignerCertificate(await signerIssuingCa(t), credential!.publicKeySpki)] });
  return { signerId, credentialId: credential!.credentialId, deviceKey, challengeSigningKey: ch.challengeSigningKey! };
}

/** The first security officer asks, the second approves (dual control). */
async function changePolicy(change: (p: SecurityPolicy) => void) {
  const policies = createClient(PolicyService, t.adminTransport());
  const { record } = await policies.getSecurityPolicy({});
  const next = clone(SecurityPolicySchema, record!.policy!);
  change(next);
  const held = await policies.updateSecurityPolicy({ expectedVersion: record!.version, policy: next }).then(() => undefined, (e: unknown) => ConnectError.from(e));
  const detail = held!.findDetails(ApprovalRequiredSchema)[0]!;
  await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
}

beforeAll(async () => {
  caC = await createCertificateAuthority("Tenant C SCA CA");
  const tenantCas = join(mkdtempSync(join(tmpdir(), "inkan-csc-tenant-")), "tenant-ca.crt");
  writeFileSync(tenantCas, caC.cert);
  t = await startTestServer({ tlsScaCaFiles: `pki/sca-ca.crt,${tenantCas}` });
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "security-officer-2-csc");
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-csc-scope");
  await changePolicy((p) => {
    p.trustedScaCaCertificates.push(der(caC.cert));
    p.scaScopes.push(create(ScaScopeSchema, { name: "tenant-c", sca: { case: "scaCaCertificateSha256", value: sha256(der(caC.cert)) }, signers: { case: "ownGroup", value: true } }));
  });
  inTenant = await signerOf("tenant-c");
  outside = await signerOf("");
  const sca = await issueCertificate(caC, { commonName: "csc-platform-c", usage: "client" });
  writeFileSync(join(t.dataDir, "pki", "csc-platform-c.crt"), sca.cert);
  writeFileSync(join(t.dataDir, "pki", "csc-platform-c.key"), sca.key);
  const keys = await generateKeyPair("ES256", { extractable: true });
  writeFileSync(join(t.dataDir, "csc-clients.json"), JSON.stringify({ clients: [{
    clientId: "platform-c", jwks: { keys: [await exportJWK(keys.publicKey)] }, redirectUris: ["https://platform-c.example/cb"], signers: "*",
    sca: { cert: "pki/csc-platform-c.crt", key: "pki/csc-platform-c.key" },
  }] }));
  gateway = await startGateway(gatewayConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", samUrl: t.server.url }), [], { signerApprovals: approvals });
  client = new CscTestClient(`${gateway.url}/csc/v2`, readFileSync(join(t.dataDir, "pki", "ca.crt"), "utf8"), "platform-c", keys.privateKey, "https://platform-c.example/cb");
  await client.serviceToken();
}, 120_000);
afterAll(async () => {
  await gateway?.close();
  await t?.close();
});

describe("issue 19 through the CSC API: a client with its own SCA certificate is held to the SAM's SCA scopes", () => {
  it("sees and signs for its tenant's signers only; another signer reads as unknown, and the SAM audits the refusal", async () => {
    expect((await client.call("credentials/list", { userID: inTenant.signerId })).body.credentialIDs).toEqual([inTenant.credentialId]);
    const strip = (r: { status: number; body: Record<string, unknown> }) => ({ status: r.status, ...r.body });
    expect(strip(await client.call("credentials/list", { userID: outside.signerId }))).toEqual(strip(await client.call("credentials/list", { userID: "sgn-0000000000000000000000000000" })));
    expect(strip(await client.call("credentials/info", { credentialID: outside.credentialId }))).toEqual(strip(await client.call("credentials/info", { credentialID: "crd-0000000000000000000000000000" })));
    expect(strip(await client.call("credentials/info", { credentialID: outside.credentialId }))).toMatchObject({ status: 400, error: "invalid_request" });

    // oauth2code for the tenant's signer, as that SCA.
    const hash = sha256(Buffer.from(`tenant document ${Math.random()}`));
    const { verifier, challenge } = pkce();
    const auth = await client.get(client.authorizeUrl({ credentialID: inTenant.credentialId, hashes: [Buffer.from(hash).toString("base64url")], hashAlgorithmOID: oids.sha256, codeChallenge: challenge, state: "c" }));
    expect(auth.status).toBe(302);
    const ret = await client.getAbsolute(await approvals.approve(approvals.ids.at(-1)!, { deviceKey: inTenant.deviceKey, pin: testPin, challengeSigningKey: inTenant.challengeSigningKey }));
    const code = new URL(ret.location!).searchParams.get("code")!;
    const token = await client.token({ grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: client.redirectUri, client_id: "platform-c", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: await client.assertion() });
    const signed = await client.call("signatures/signHash", { credentialID: inTenant.credentialId, hashes: [Buffer.from(hash).toString("base64")], hashAlgorithmOID: oids.sha256, signAlgo: oids.ecdsaSha256 }, { bearer: token.body.access_token as string });
    expect(signed.status, JSON.stringify(signed.body)).toBe(200);

    const db = new Database(join(t.dataDir, "store.sqlite3"), { readonly: true });
    try {
      const refused = (db.prepare("SELECT body FROM audit_records WHERE event = 'sca_scope.refused'").all() as { body: string }[]).filter((r) => r.body.includes(outside.signerId));
      expect(refused.length).toBeGreaterThan(0);
    } finally {
      db.close();
    }
  });
});
