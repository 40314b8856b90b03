import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clone, create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { buildActivationRequest, buildPinChangeRequest, buildSuspensionRequest, createDeviceKey, inkanErrorReason, Reason } from "@inkan/sdk";
import { AuditOutcome, AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PolicyService, ScaScopeSchema, SecurityPolicySchema, SignerGroupsSchema, type ScaScope, type SecurityPolicy } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PendingApprovalState, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { IdentityProofingMethod, RegistrationService, SignerKind } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { HashAlgorithm, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { spkiSha256 } from "../admin/privileged-users.js";
import { createCertificateAuthority, issueCertificate, type CertificateAuthority, type Pem } from "../pki/dev-pki.js";
import { errorOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { issueSignerCertificate, signerIssuingCa } from "../testing/signer-certificates.js";
import { testPin } from "../testing/signers.js";

// Issue 19, SCA scopes (R-3.2.2.3, T-2.2.1.4): which SCA may act for which signer. Two tenants, A
// and B, each with its own SCA CA; the real server (SoftHSM2 + SQLite) over gRPC with mTLS. An SCA
// outside a signer's scope gets exactly the answer a nonexistent signer gets, and the refusal is
// audited with the real cause.
let t: TestServer;
let so1: PrivilegedPerson;
let so2: PrivilegedPerson;
let operator: PrivilegedPerson;
let auditor: PrivilegedPerson;
let caA: CertificateAuthority;
let caB: CertificateAuthority;
let scaA: Pem;
let scaB: Pem;
/** A second SCA of CA B with its own key: not named by tenant B's scope (bound to scaB's key). */
let scaB2: Pem;

type Signer = { signerId: string; credentialId: string; group: string };
let a1: Signer;
let a2: Signer;
let b1: Signer;
let ungrouped: Signer;

/** The protocol of the SAP calls; the main cases run over gRPC and over Connect. */
let protocol: Protocol = "grpc";
const sam = (who: Pem) => createClient(SignatureActivationService, t.transport(protocol, who));
const policyAs = (p: PrivilegedPerson) => createClient(PolicyService, t.as(p));
const ra = () => createClient(RegistrationService, t.as(operator));
const der = (pem: string) => new Uint8Array(new X509Certificate(pem).raw);
const sha256 = (bytes: Uint8Array) => new Uint8Array(createHash("sha256").update(bytes).digest());

let serial = 0;
/** An ACTIVE signer of `group` (device key + PIN) with one ACTIVE credential, as activeSignerWithCredential makes one. */
async function signerOf(group: string): Promise<Signer> {
  serial += 1;
  const { signer } = await ra().enrollSigner({
    identity: { kind: SignerKind.NATURAL_PERSON, legalName: `Tenant ${group || "none"} ${serial}`, displayName: `T${serial}`, email: `scope.${serial}.${process.pid}@example.jp`, country: "JP" },
    proofing: { method: IdentityProofingMethod.IN_PERSON, evidenceReference: "RA-19", proofedAt: timestampFromDate(new Date(Date.now() - 60_000)) },
    group,
  });
  const signerId = signer!.signerId;
  const { activationCode } = await ra().issueActivationCode({ signerId });
  const device = createClient(SignerService, t.transport("grpc", t.pki.frontEnd));
  const ch = await device.createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
  const deviceKey = await createDeviceKey();
  const { request } = await buildActivationRequest({
    signerId, activationCode: activationCode!.code, pin: testPin, deviceKey, enrollTotp: false, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience,
  });
  await device.activate(request);
  const { credential: generated } = await ra().generateKey({ signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "" });
  const certificate = await issueSignerCertificate(await signerIssuingCa(t), generated!.publicKeySpki);
  await ra().importCertificate({ credentialId: generated!.credentialId, certificateChain: [certificate] });
  return { signerId, credentialId: generated!.credentialId, group };
}

/** The policy in force and its version. */
async function readPolicy() {
  const { record } = await policyAs(so1).getSecurityPolicy({});
  return { policy: record!.policy!, version: record!.version };
}

/** so1 asks for `change`, which dual control holds; so2 approves and it is performed. */
async function changePolicy(change: (p: SecurityPolicy) => void) {
  const { policy, version } = await readPolicy();
  const next = clone(SecurityPolicySchema, policy);
  change(next);
  const held = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion: version, policy: next }));
  expect(inkanErrorReason(held)).toBe(Reason.APPROVAL_REQUIRED);
  const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
  const { pendingApproval } = await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
  expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
  return detail.pendingRequestId;
}

const scopeA = (): ScaScope => create(ScaScopeSchema, {
  name: "tenant-a",
  sca: { case: "scaCaCertificateSha256", value: sha256(der(caA.cert)) },
  signers: { case: "ownGroup", value: true },
});
const scopeB = (): ScaScope => create(ScaScopeSchema, {
  name: "tenant-b",
  sca: { case: "scaSpkiSha256", value: Buffer.from(spkiSha256(new X509Certificate(scaB.cert)), "hex") },
  signers: { case: "signerGroups", value: create(SignerGroupsSchema, { groups: ["tenant-b"] }) },
});

/** The whole error as a client sees it: code, message, reason and every detail, byte for byte. */
async function wholeError(p: Promise<unknown>) {
  const e = await errorOf(p);
  return { code: Code[e.code], message: e.rawMessage, reason: Reason[inkanErrorReason(e)], details: e.details.map((d) => ("desc" in d ? d.desc.typeName : d.type) + ":" + ("value" in d && d.value instanceof Uint8Array ? Buffer.from(d.value).toString("hex") : "")) };
}

const ghostSigner = "sgn-0000000000000000000000000000"; // well formed, never enrolled
const ghostCredential = "crd-0000000000000000000000000000";

const begin = (who: Pem, signerId: string, credentialId: string) =>
  sam(who).beginTransaction({ credentialId, signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [randomBytes(32)], description: "scope test" });

/** The "sca_scope.refused" records about `signerId`. */
async function scopeRefusals(signerId: string) {
  const { records } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 }, eventTypes: ["sca_scope.refused"], signerId });
  return records;
}

beforeAll(async () => {
  caA = await createCertificateAuthority("Tenant A SCA CA");
  caB = await createCertificateAuthority("Tenant B SCA CA");
  // TLS accepts the tenants' CAs (configuration); the policy decides whether their SCAs may call.
  const tenantCas = join(mkdtempSync(join(tmpdir(), "inkan-tenant-cas-")), "tenant-sca-cas.crt");
  writeFileSync(tenantCas, caA.cert + caB.cert);
  t = await startTestServer({ tlsScaCaFiles: `pki/sca-ca.crt,${tenantCas}` });
  so1 = t.firstSecurityOfficer;
  so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "security-officer-2");
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-scopes");
  auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-scopes");
  scaA = await issueCertificate(caA, { commonName: "sca-tenant-a", usage: "client" });
  scaB = await issueCertificate(caB, { commonName: "sca-tenant-b", usage: "client" });
  scaB2 = await issueCertificate(caB, { commonName: "sca-tenant-b-other-key", usage: "client" });
  [a1, a2, b1, ungrouped] = [await signerOf("tenant-a"), await signerOf("tenant-a"), await signerOf("tenant-b"), await signerOf("")];
}, 120_000);
afterAll(async () => {
  await t?.close();
});
beforeEach(() => {
  protocol = "grpc";
});

describe("SCA scopes (issue 19, R-3.2.2.3, T-2.2.1.4)", () => {
  it("R-3.2.2.3: inkan init's policy lets the development SCA (its CA) act for every signer, grouped or not", async () => {
    const { policy } = await readPolicy();
    expect(policy.scaScopes).toHaveLength(2); // and inkan init's second SCA CA, scoped to the group "demo-b"
    const [development, demoB] = policy.scaScopes;
    expect(demoB).toMatchObject({ name: "demo-b", sca: { case: "scaCaCertificateSha256" }, signers: { case: "signerGroups", value: { groups: ["demo-b"] } } });
    expect(development).toMatchObject({ name: "development", sca: { case: "scaCaCertificateSha256" }, signers: { case: "allSigners", value: true } });
    expect(Buffer.from(development!.sca.value as Uint8Array).toString("hex")).toBe(Buffer.from(sha256(der(readFileSync(t.pki.paths.scaCaCert, "utf8")))).toString("hex"));
    for (const s of [a1, b1, ungrouped]) {
      expect((await sam(t.pki.sca).listCredentials({ signerId: s.signerId })).credentials.map((c) => c.credentialId)).toEqual([s.credentialId]);
    }
    expect((await ra().getSigner({ signerId: a1.signerId })).signer?.group).toBe("tenant-a");
    expect((await ra().getSigner({ signerId: ungrouped.signerId })).signer?.group).toBe("");
    const { records } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 10 }, eventTypes: ["signer.enrolled"], signerId: a1.signerId });
    expect(records.map((r) => r.details["signer_group"])).toEqual(["tenant-a"]);
    const badGroup = await errorOf(ra().enrollSigner({
      identity: { kind: SignerKind.NATURAL_PERSON, legalName: "Bad Group", displayName: "B", email: `bad.${process.pid}@example.jp`, country: "JP" },
      proofing: { method: IdentityProofingMethod.IN_PERSON, evidenceReference: "RA-19", proofedAt: timestampFromDate(new Date(Date.now() - 60_000)) },
      group: "Tenant A",
    }));
    expect(badGroup.code).toBe(Code.InvalidArgument);
  });

  it("R-3.2.2.3, T-2.2.1.4: an SCA CA added to the policy connects but sees no signer until a scope is granted (deny by default)", async () => {
    expect(inkanErrorReason(await errorOf(sam(scaA).getInfo({})))).toBe(Reason.CLIENT_CERTIFICATE_REJECTED); // not trusted by the policy yet
    await changePolicy((p) => void p.trustedScaCaCertificates.push(der(caA.cert), der(caB.cert)));
    expect((await sam(scaA).getInfo({})).samId).not.toBe(""); // trusted: it connects
    for (const s of [a1, b1, ungrouped]) {
      expect(await wholeError(sam(scaA).listCredentials({ signerId: s.signerId }))).toEqual(await wholeError(sam(scaA).listCredentials({ signerId: ghostSigner })));
      expect(await wholeError(sam(scaA).getCredential({ credentialId: s.credentialId }))).toEqual(await wholeError(sam(scaA).getCredential({ credentialId: ghostCredential })));
      expect(await wholeError(begin(scaA, s.signerId, s.credentialId))).toEqual(await wholeError(begin(scaA, ghostSigner, ghostCredential)));
    }
    expect(await wholeError(sam(scaA).listCredentials({ signerId: ghostSigner }))).toMatchObject({ code: "NotFound", reason: "SIGNER_NOT_FOUND" });
    expect(await wholeError(begin(scaA, ghostSigner, ghostCredential))).toMatchObject({ code: "NotFound", reason: "CREDENTIAL_NOT_FOUND" });
  });

  it("R-3.2.2.3: a scope grant is held for the second security officer and applies once approved", async () => {
    const { policy, version } = await readPolicy();
    const next = clone(SecurityPolicySchema, policy);
    next.scaScopes.push(scopeA(), scopeB());
    const held = await errorOf(policyAs(so1).updateSecurityPolicy({ expectedVersion: version, policy: next }));
    expect(inkanErrorReason(held)).toBe(Reason.APPROVAL_REQUIRED);
    expect((await readPolicy()).version).toBe(version); // nothing changed yet
    expect((await errorOf(sam(scaA).listCredentials({ signerId: a1.signerId }))).code).toBe(Code.NotFound);

    const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
    const { pendingApproval } = await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
    expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
    expect((await readPolicy()).policy.scaScopes.map((s) => s.name)).toEqual(["development", "demo-b", "tenant-a", "tenant-b"]);
    expect((await sam(scaA).listCredentials({ signerId: a1.signerId })).credentials.map((c) => c.credentialId)).toEqual([a1.credentialId]);
    const { records } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 }, eventTypes: ["policy.updated"] });
    const updated = records.at(-1)!;
    expect(updated.details["new.sca_scopes"]).toContain("tenant-a");
  });

  it.each(["grpc", "connect"] as const)("T-2.2.1.4: SCA-A acts only for tenant A's signers; B's signer, B's credential and an ungrouped signer look exactly like nonexistent ones, over %s", async (p) => {
    protocol = p;
    for (const s of [a1, a2]) {
      expect((await sam(scaA).listCredentials({ signerId: s.signerId })).credentials.map((c) => c.credentialId)).toEqual([s.credentialId]);
      expect((await sam(scaA).getCredential({ credentialId: s.credentialId })).credential?.signerId).toBe(s.signerId);
    }
    const begun = await begin(scaA, a1.signerId, a1.credentialId);
    expect(begun.sadChallenge?.signerId).toBe(a1.signerId);

    for (const s of [b1, ungrouped]) {
      const listed = await wholeError(sam(scaA).listCredentials({ signerId: s.signerId }));
      expect(listed).toEqual(await wholeError(sam(scaA).listCredentials({ signerId: ghostSigner })));
      expect(listed).toMatchObject({ code: "NotFound", reason: "SIGNER_NOT_FOUND" });
      const got = await wholeError(sam(scaA).getCredential({ credentialId: s.credentialId }));
      expect(got).toEqual(await wholeError(sam(scaA).getCredential({ credentialId: ghostCredential })));
      expect(got).toMatchObject({ code: "NotFound", reason: "CREDENTIAL_NOT_FOUND" });
      // No transaction, so no R.SAD and no PIN attempt against B's signer can ever reach the SAM.
      const begin1 = await wholeError(begin(scaA, s.signerId, s.credentialId));
      expect(begin1).toEqual(await wholeError(begin(scaA, ghostSigner, ghostCredential)));
      expect(begin1).toMatchObject({ code: "NotFound", reason: "CREDENTIAL_NOT_FOUND" });
    }
  });

  it.each(["grpc", "connect"] as const)("T-2.2.1.4: SCA-B (bound by its key) acts only for group tenant-b; another SCA of the same CA with another key sees nothing, over %s", async (p) => {
    protocol = p;
    expect((await sam(scaB).listCredentials({ signerId: b1.signerId })).credentials.map((c) => c.credentialId)).toEqual([b1.credentialId]);
    expect((await begin(scaB, b1.signerId, b1.credentialId)).sadChallenge?.credentialId).toBe(b1.credentialId);
    expect(await wholeError(sam(scaB).listCredentials({ signerId: a1.signerId }))).toEqual(await wholeError(sam(scaB).listCredentials({ signerId: ghostSigner })));
    expect(await wholeError(begin(scaB, a1.signerId, a1.credentialId))).toEqual(await wholeError(begin(scaB, ghostSigner, ghostCredential)));
    expect(await wholeError(sam(scaB2).listCredentials({ signerId: b1.signerId }))).toEqual(await wholeError(sam(scaB2).listCredentials({ signerId: ghostSigner })));
    expect(await wholeError(begin(scaB2, b1.signerId, b1.credentialId))).toEqual(await wholeError(begin(scaB2, ghostSigner, ghostCredential)));
  });

  it("R-3.2.2.4: every out-of-scope refusal is audited with the real cause, the SCA and the method; a nonexistent signer is not", async () => {
    const refused = await scopeRefusals(b1.signerId);
    const byScaA = refused.filter((r) => r.actor?.id.includes("sca-tenant-a"));
    const methods = byScaA.map((r) => r.details["method"]);
    expect(methods).toEqual(expect.arrayContaining(["ListCredentials", "GetCredential", "BeginTransaction"]));
    for (const r of refused) {
      expect(r.outcome).toBe(AuditOutcome.DENIED);
      expect(r.details["cause"]).toBe("signer_outside_sca_scope");
      expect(r.signerId).toBe(b1.signerId);
    }
    expect(byScaA.find((r) => r.details["method"] === "GetCredential")?.credentialId).toBe(b1.credentialId);
    expect(refused.some((r) => r.actor?.id.includes("sca-tenant-b-other-key"))).toBe(true);
    expect(await scopeRefusals(ghostSigner)).toEqual([]);
  });

  it("issue 19: SignerService is not scoped by SCA, and it answers the same for another tenant's signer as for a nonexistent one", async () => {
    // CreateChallenge answers for any well-formed id; ChangePin without the signer's device key fails the same way.
    const device = createClient(SignerService, t.transport("grpc", t.pki.frontEnd)); // the signer front end (issue 18.7) serves every tenant
    const stranger = await createDeviceKey();
    const pinChange = async (signerId: string) => {
      const ch = await device.createChallenge({ signerId, purpose: ChallengePurpose.PIN_CHANGE });
      return buildPinChangeRequest({ signerId, oldPin: testPin, newPin: "135792468", deviceKey: stranger, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
    };
    const other = await wholeError(device.changePin(await pinChange(b1.signerId)));
    expect(other).toEqual(await wholeError(device.changePin(await pinChange(ghostSigner))));
    expect(other).toMatchObject({ code: "PermissionDenied", reason: "AUTHENTICATION_FAILED" });
    // RequestSuspension of another tenant's real credential, and of a nonexistent one, without its signer's device key.
    const suspension = async (signerId: string, credentialId: string) => {
      const ch = await device.createChallenge({ signerId, purpose: ChallengePurpose.SUSPENSION, credentialId });
      return buildSuspensionRequest({ signerId, credentialId, deviceKey: stranger, challenge: ch.challenge, audience: ch.audience });
    };
    const suspended = await wholeError(device.requestSuspension(await suspension(b1.signerId, b1.credentialId)));
    expect(suspended).toEqual(await wholeError(device.requestSuspension(await suspension(ghostSigner, ghostCredential))));
    expect(suspended).toEqual(await wholeError(device.requestSuspension(await suspension(b1.signerId, ghostCredential))));
    expect(suspended).toMatchObject({ code: "PermissionDenied", reason: "AUTHENTICATION_FAILED" });
  });
});
