import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { Reason } from "@inkan/sdk";
import { clone } from "@bufbuild/protobuf";
import { PolicyService, SecurityPolicySchema, type SecurityPolicy } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PendingApprovalState, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { AuditOutcome, AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { HealthCheckResponse_ServingStatus, Health } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority, type Pem } from "../pki/dev-pki.js";
import { errorOf, refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { activeSigner } from "../testing/signers.js";
import { identify } from "./identity.js";

// Issue 18 item 7: the signer front end (the relay of SignerService: the RSSP's gateway) is a
// caller kind of its own, identified by a certificate of a front-end CA. SignerService accepts only
// it; the SAP and the admin API refuse it; SignerService refuses an SCA. Real server, gRPC and Connect.
let t: TestServer;
let operator: PrivilegedPerson;
/** A client certificate of a CA that TLS trusts as a front-end CA (tlsFrontEndCaFiles) but the policy never listed. */
let rogue: Pem;
beforeAll(async () => {
  const rogueCa = await createCertificateAuthority("Rogue Front End CA");
  rogue = await issueCertificate(rogueCa, { commonName: "rogue-front-end", usage: "client" });
  const file = join(mkdtempSync(join(tmpdir(), "inkan-rogue-")), "rogue-ca.crt");
  writeFileSync(file, rogueCa.cert);
  t = await startTestServer({ tlsFrontEndCaFiles: `pki/front-end-ca.crt,${file}` });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "ra-front-end");
}, 60_000);
afterAll(() => t?.close());

const both: Protocol[] = ["grpc", "connect"];

/** Every "request.refused" audit record, oldest first (read by an auditor). */
async function refusedRequests(auditor: PrivilegedPerson) {
  return (await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 }, eventTypes: ["request.refused"] })).records;
}
const roleRefused = { code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED };

describe.each(both)("the signer front end as a caller kind of its own, over %s (issue 18 item 7)", (protocol) => {
  it("issue 18.7: SignerService refuses an SCA's certificate (ROLE_NOT_PERMITTED), for every method", async () => {
    const asSca = createClient(SignerService, t.transport(protocol, t.pki.sca));
    const { signerId } = await activeSigner(t, operator);
    expect(await refusalOf(asSca.createChallenge({ signerId, purpose: ChallengePurpose.PIN_CHANGE }))).toMatchObject(roleRefused);
    expect(await refusalOf(asSca.activate({ signerId }))).toMatchObject(roleRefused);
    expect(await refusalOf(asSca.changePin({ signerId }))).toMatchObject(roleRefused);
    expect(await refusalOf(asSca.requestSuspension({ signerId }))).toMatchObject(roleRefused);
  });

  it("issue 18.7: SignerService serves the front end's certificate", async () => {
    const { signerId } = await activeSigner(t, operator); // activated through t.pki.frontEnd
    const ch = await createClient(SignerService, t.transport(protocol, t.pki.frontEnd)).createChallenge({ signerId, purpose: ChallengePurpose.PIN_CHANGE });
    expect(ch.challenge.length).toBe(32);
  });

  it("issue 18.7: the SAP refuses the front end's certificate (ROLE_NOT_PERMITTED): it can neither list credentials nor open a transaction", async () => {
    const asFrontEnd = createClient(SignatureActivationService, t.transport(protocol, t.pki.frontEnd));
    const { signerId } = await activeSigner(t, operator);
    expect(await refusalOf(asFrontEnd.getInfo({}))).toMatchObject(roleRefused);
    expect(await refusalOf(asFrontEnd.listCredentials({ signerId }))).toMatchObject(roleRefused);
    expect(await refusalOf(asFrontEnd.beginTransaction({ credentialId: "cred-x" }))).toMatchObject(roleRefused);
  });

  it("issue 18.7: the admin API refuses the front end's certificate (ROLE_NOT_PERMITTED), and a privileged user's certificate cannot call SignerService", async () => {
    expect(await refusalOf(createClient(RegistrationService, t.transport(protocol, t.pki.frontEnd)).listSigners({}))).toMatchObject(roleRefused);
    expect(await refusalOf(createClient(PolicyService, t.transport(protocol, t.pki.frontEnd)).getSecurityPolicy({}))).toMatchObject(roleRefused);
    expect(await refusalOf(createClient(SignerService, t.as(operator, protocol)).createChallenge({ signerId: "sgn-x", purpose: ChallengePurpose.ACTIVATION }))).toMatchObject(roleRefused);
  });

  it("R-3.2.2.4, T-2.1.2.1: a caller refused by kind on the SAP or SignerService is audited (request.refused: method, reason, certificate fingerprint), like a refused admin request", async () => {
    const auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, `auditor-refusals-${protocol}`);
    const asFrontEnd = createClient(SignatureActivationService, t.transport(protocol, t.pki.frontEnd));
    const asSca = createClient(SignerService, t.transport(protocol, t.pki.sca));
    const before = await refusedRequests(auditor);
    expect(await refusalOf(asFrontEnd.listCredentials({ signerId: "sgn-refused" }))).toMatchObject(roleRefused);
    expect(await refusalOf(asSca.createChallenge({ signerId: "sgn-refused", purpose: ChallengePurpose.PIN_CHANGE }))).toMatchObject(roleRefused);
    const added = (await refusedRequests(auditor)).slice(before.length);
    const fingerprint = (pem: string) => Buffer.from(new X509Certificate(pem).fingerprint256.replaceAll(":", ""), "hex").toString("hex");
    expect(added.map((r) => ({ method: r.details["method"], reason: r.reason, outcome: r.outcome, cert: Buffer.from(r.actor?.certificateSha256 ?? new Uint8Array()).toString("hex") }))).toEqual([
      { method: `/${SignatureActivationService.typeName}/ListCredentials`, reason: Reason.ROLE_NOT_PERMITTED, outcome: AuditOutcome.DENIED, cert: fingerprint(t.pki.frontEnd.cert) },
      { method: `/${SignerService.typeName}/CreateChallenge`, reason: Reason.ROLE_NOT_PERMITTED, outcome: AuditOutcome.DENIED, cert: fingerprint(t.pki.sca.cert) },
    ]);
  });

  it("issue 18.7: health answers the front end (its load balancer may probe with its certificate)", async () => {
    const { status } = await createClient(Health, t.transport(protocol, t.pki.frontEnd)).check({ service: SignerService.typeName });
    expect(status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });
});

describe("the front-end CA in the security policy (issue 18.7, R-3.2.2.3)", () => {
  it("init trusts the development front-end CA in the first policy (trusted_front_end_ca_certificates) and nowhere else", async () => {
    const policy = (await createClient(PolicyService, t.adminTransport()).getSecurityPolicy({})).record!.policy!;
    const der = (file: string) => Buffer.from(new X509Certificate(readFileSync(file)).raw);
    const frontEndCa = der(t.pki.paths.frontEndCaCert);
    expect(policy.trustedFrontEndCaCertificates.map((c) => Buffer.from(c))).toEqual([frontEndCa]);
    expect(policy.trustedScaCaCertificates.map((c) => Buffer.from(c))).not.toContainEqual(frontEndCa);
    expect(policy.trustedAdminCaCertificates.map((c) => Buffer.from(c))).not.toContainEqual(frontEndCa);
  });

  it("R-3.2.2.3: a certificate of a CA that TLS trusts as a front-end CA but the policy does not list is refused (CLIENT_CERTIFICATE_REJECTED)", async () => {
    for (const protocol of both) {
      const asRogue = createClient(SignerService, t.transport(protocol, rogue));
      expect(await refusalOf(asRogue.createChallenge({ signerId: "sgn-x", purpose: ChallengePurpose.ACTIVATION }))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.CLIENT_CERTIFICATE_REJECTED });
    }
    // The listed CA's front end works on the same server (an unknown signer is answered like any other, issue 19).
    expect((await createClient(SignerService, t.transport("grpc", t.pki.frontEnd)).createChallenge({ signerId: "sgn-x", purpose: ChallengePurpose.ACTIVATION })).challenge.length).toBe(32);
  });
});

describe("withdrawing the front-end CA from the policy (issue 18.7, R-3.2.2.3)", () => {
  it("R-3.2.2.3: refuses the front end at once (CLIENT_CERTIFICATE_REJECTED), over gRPC and Connect; restoring it lets it back", async () => {
    const so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "security-officer-2"); // the second needs no approval
    const policies = (who: PrivilegedPerson) => createClient(PolicyService, t.as(who));
    const apply = async (change: (p: SecurityPolicy) => void) => {
      const { record } = await policies(t.firstSecurityOfficer).getSecurityPolicy({});
      const next = clone(SecurityPolicySchema, record!.policy!);
      change(next);
      const held = await errorOf(policies(t.firstSecurityOfficer).updateSecurityPolicy({ expectedVersion: record!.version, policy: next }));
      const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
      const { pendingApproval } = await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
      expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
    };
    const challenge = (protocol: Protocol) => createClient(SignerService, t.transport(protocol, t.pki.frontEnd)).createChallenge({ signerId: "sgn-x", purpose: ChallengePurpose.ACTIVATION });
    const listed = (await createClient(PolicyService, t.adminTransport()).getSecurityPolicy({})).record!.policy!.trustedFrontEndCaCertificates;
    await apply((p) => void (p.trustedFrontEndCaCertificates = []));
    for (const protocol of both) expect(await refusalOf(challenge(protocol))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.CLIENT_CERTIFICATE_REJECTED });
    await apply((p) => void (p.trustedFrontEndCaCertificates = listed));
    for (const protocol of both) expect((await challenge(protocol)).challenge.length).toBe(32);
  }, 60_000);
});

describe("identify: the caller kind follows from the issuing CA alone (issue 18.7)", () => {
  it("a certificate whose issuer is trusted for two kinds identifies nobody (fail closed)", async () => {
    const ca = await loadCertificateAuthority({ cert: readFileSync(t.pki.paths.frontEndCaCert, "utf8"), key: readFileSync(t.pki.paths.frontEndCaKey, "utf8") });
    const cert = new X509Certificate((await issueCertificate(ca, { commonName: "fe", usage: "client" })).cert);
    const caCert = new X509Certificate(ca.cert);
    expect(identify(cert, { sca: [], frontEnd: [caCert], privileged: [] })?.kind).toBe("front-end");
    expect(identify(cert, { sca: [caCert], frontEnd: [caCert], privileged: [] })).toBeUndefined();
    expect(identify(cert, { sca: [], frontEnd: [caCert], privileged: [caCert] })).toBeUndefined();
    expect(identify(cert, { sca: [caCert], privileged: [] })?.kind).toBe("sca");
  });
});
