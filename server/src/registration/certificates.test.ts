import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { createHash, randomBytes, generateKeyPairSync } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";
import * as x509 from "@peculiar/x509";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildRSad } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { RegistrationService, type Credential } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { CertificateStatus, CredentialStatus, HashAlgorithm, KeyAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import { createCertificateAuthority, type CertificateAuthority } from "../pki/dev-pki.js";
import type { CredentialRecord } from "../store/port.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { issueIntermediateCa, issueSignerCertificate, signerIssuingCa } from "../testing/signer-certificates.js";
import { activeSigner, testPin } from "../testing/signers.js";

// ImportCertificate and the certificate a credential reports, on the real server (SoftHSM2 +
// SQLite, mTLS, signed admin requests), over gRPC and Connect: R-3.1.1.4, T-2.1.1.2, T-2.1.3.1,
// T-2.1.3.2. The issuing CA is the development one `inkan init` creates and the default policy trusts.
let t: TestServer;
let operator: PrivilegedPerson;
let auditor: PrivilegedPerson;
let issuingCa: CertificateAuthority;
let records: VerifiedRecords | undefined;

const day = 24 * 60 * 60 * 1000;
const ra = (protocol: Protocol = "grpc") => createClient(RegistrationService, t.as(operator, protocol));
const sca = (protocol: Protocol = "grpc") => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));

/** An ACTIVE signer with one KEY_GENERATED credential of `keyAlgorithm`. */
async function generated(keyAlgorithm: KeyAlgorithm = KeyAlgorithm.EC_P256) {
  const signer = await activeSigner(t, operator);
  const { credential } = await ra().generateKey({ signerId: signer.signerId, keyAlgorithm, label: "certificate test" });
  return { ...signer, credential: credential! };
}

/** The credential as stored now: refused imports must leave it exactly as it was. */
const stored = async (c: Credential) => (await ra().getCredential({ credentialId: c.credentialId })).credential!;

const foreignSpki = () => new Uint8Array(generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "der" }));

beforeAll(async () => {
  t = await startTestServer({}, { onRecords: (r) => (records = r) });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-certificates");
  auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-certificates");
  issuingCa = await signerIssuingCa(t);
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("ImportCertificate binds a certificate for exactly the credential's key (R-3.1.1.4)", () => {
  for (const protocol of ["grpc", "connect"] as const) {
    it(`R-3.1.1.4: over ${protocol}, a certificate from the trusted issuing CA makes a KEY_GENERATED credential ACTIVE, and every view reports it`, async () => {
      const { signerId, credential } = await generated();
      expect(credential.certificate?.status ?? CertificateStatus.UNSPECIFIED).toBe(CertificateStatus.UNSPECIFIED);
      const der = await issueSignerCertificate(issuingCa, credential.publicKeySpki, { subject: "C=JP, O=Example Corp, CN=Sato Hanako" });
      const parsed = new x509.X509Certificate(der);
      const { credential: imported } = await ra(protocol).importCertificate({ credentialId: credential.credentialId, certificateChain: [der] });
      const expected = {
        status: CertificateStatus.VALID,
        subjectDn: "CN=Sato Hanako,O=Example Corp,C=JP", // RFC 4514: the most specific RDN first
        issuerDn: "O=Inkan development PKI,CN=Inkan Development Signer Issuing CA",
        serialNumber: parsed.serialNumber.toLowerCase().replace(/^0+/, ""),
      };
      // The names as openssl prints them in RFC 2253 (= RFC 4514) form, read from the certificate independently.
      expect(opensslNames(der)).toEqual({ subject: expected.subjectDn, issuer: expected.issuerDn });
      expect(imported!.status).toBe(CredentialStatus.ACTIVE);
      expect(imported!.certificate).toMatchObject({ ...expected, chain: [der] });
      expect(imported!.certificate!.notBefore!.seconds).toBe(BigInt(Math.floor(parsed.notBefore.getTime() / 1000)));
      expect(imported!.certificate!.notAfter!.seconds).toBe(BigInt(Math.floor(parsed.notAfter.getTime() / 1000)));
      // The admin reads, and the SCA's: GetCredential always with the chain, ListCredentials only when asked.
      expect(await stored(credential)).toEqual(imported);
      expect((await ra(protocol).listCredentials({ signerId })).credentials).toEqual([imported]);
      const info = (await sca(protocol).getCredential({ credentialId: credential.credentialId })).credential!;
      expect(info.status).toBe(CredentialStatus.ACTIVE);
      expect(info.certificate).toMatchObject({ ...expected, chain: [der] });
      const [listed] = (await sca(protocol).listCredentials({ signerId })).credentials;
      expect(listed!.certificate).toMatchObject({ ...expected, chain: [] });
      const [withChain] = (await sca(protocol).listCredentials({ signerId, includeCertificateChain: true })).credentials;
      expect(withChain!.certificate!.chain).toEqual([der]);
    });
  }

  it("R-3.1.1.4: on an ACTIVE credential a new certificate for the same key replaces the chain (renewal)", async () => {
    const { credential } = await generated();
    const first = await issueSignerCertificate(issuingCa, credential.publicKeySpki);
    const { credential: active } = await ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [first] });
    const renewed = await issueSignerCertificate(issuingCa, credential.publicKeySpki, { subject: "C=JP, CN=Sato Hanako (renewed)" });
    const { credential: after } = await ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [renewed] });
    expect(after!.status).toBe(CredentialStatus.ACTIVE);
    expect(after!.certificate).toMatchObject({ status: CertificateStatus.VALID, subjectDn: "CN=Sato Hanako (renewed),C=JP", chain: [renewed] });
    expect(after!.certificate!.serialNumber).not.toBe(active!.certificate!.serialNumber);
  });

  it("T-2.1.3.2: a chain through an intermediate CA that the trusted CA's path length (0) forbids is CERTIFICATE_INVALID, with or without the intermediate", async () => {
    const { credential } = await generated();
    const intermediate = await issueIntermediateCa(issuingCa, "Inkan Test Intermediate CA");
    const der = await issueSignerCertificate(intermediate, credential.publicKeySpki);
    for (const chain of [[der], [der, new Uint8Array(intermediate.certificate.rawData)]]) {
      expect(await refusalOf(ra().importCertificate({ credentialId: credential.credentialId, certificateChain: chain })))
        .toMatchObject({ code: Code.InvalidArgument, reason: Reason.CERTIFICATE_INVALID });
    }
    expect(await stored(credential)).toEqual(credential);
  });

  it("on a LOCKED credential the chain is attached and the credential stays locked; ResetLockout then returns it to ACTIVE, not KEY_GENERATED", async () => {
    const { signerId, credential } = await generated();
    // Locked as five wrong PINs would lock it (statusBeforeLock PENDING), through the test hook's sealed-record access.
    const record = (await records!.get("credential", credential.credentialId))!;
    const body = { ...JSON.parse(record.body), statusBeforeLock: "PENDING" };
    await records!.update<CredentialRecord>({ ...record, version: record.version + 1, status: "LOCKED", body: JSON.stringify(body) }, record.version);
    const der = await issueSignerCertificate(issuingCa, credential.publicKeySpki);
    const { credential: locked } = await ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [der] });
    expect(locked!.status).toBe(CredentialStatus.LOCKED);
    expect(locked!.certificate!.status).toBe(CertificateStatus.VALID);
    await ra().resetLockout({ signerId, reason: "the signer's own mistakes, checked by phone" });
    expect((await stored(credential)).status).toBe(CredentialStatus.ACTIVE);
  });

  it("R-3.2.2.4: an import is audited as certificate.installed with the certificate's SHA-256, by the operator", async () => {
    const { credential } = await generated();
    const der = await issueSignerCertificate(issuingCa, credential.publicKeySpki);
    await ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [der] });
    const { records: trail } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 } });
    const installed = trail.filter((r) => r.eventType === "certificate.installed" && r.credentialId === credential.credentialId);
    expect(installed).toHaveLength(1);
    expect(installed[0]!.details["certificate_sha256"]).toBe(createHash("sha256").update(der).digest("hex"));
    expect(installed[0]!.actor?.id).toBe(operator.userId);
  });
});

describe("ImportCertificate refuses, and changes nothing (T-2.1.1.2, T-2.1.3.1, T-2.1.3.2)", () => {
  for (const protocol of ["grpc", "connect"] as const) {
    it(`T-2.1.1.2, T-2.1.3.1: over ${protocol}, a certificate for a different key is INVALID_ARGUMENT KEY_MISMATCH`, async () => {
      const { credential } = await generated();
      const der = await issueSignerCertificate(issuingCa, foreignSpki());
      expect(await refusalOf(ra(protocol).importCertificate({ credentialId: credential.credentialId, certificateChain: [der] })))
        .toMatchObject({ code: Code.InvalidArgument, reason: Reason.KEY_MISMATCH });
      expect(await stored(credential)).toEqual(credential);
    });
  }

  it("T-2.1.1.2: a certificate whose key differs from the credential's only in its encoding (altered in transit) is KEY_MISMATCH", async () => {
    const { credential } = await generated(KeyAlgorithm.RSA_2048);
    // The same RSA modulus and exponent with the AlgorithmIdentifier's NULL parameters dropped: another encoding is not the key generated.
    const der = await issueSignerCertificate(issuingCa, reencodeWithoutNull(credential.publicKeySpki));
    expect(Buffer.from(new x509.X509Certificate(der).publicKey.rawData)).not.toEqual(Buffer.from(credential.publicKeySpki));
    expect(await refusalOf(ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [der] })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.KEY_MISMATCH });
  });

  it("T-2.1.3.2: a certificate for the right key from a CA the policy does not trust is CERTIFICATE_INVALID", async () => {
    const { credential } = await generated();
    const rogue = await createCertificateAuthority("Inkan Development Signer Issuing CA"); // the same name, another key
    const der = await issueSignerCertificate(rogue, credential.publicKeySpki);
    expect(await refusalOf(ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [der] })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.CERTIFICATE_INVALID });
    // Nor does sending the rogue CA along make it trusted.
    expect(await refusalOf(ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [der, new Uint8Array(rogue.certificate.rawData)] })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.CERTIFICATE_INVALID });
    expect(await stored(credential)).toEqual(credential);
  });

  it("T-2.1.3.2: an expired certificate, and one not yet valid, are CERTIFICATE_INVALID", async () => {
    const { credential } = await generated();
    const expired = await issueSignerCertificate(issuingCa, credential.publicKeySpki, { notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) });
    const future = await issueSignerCertificate(issuingCa, credential.publicKeySpki, { notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 10 * day) });
    for (const der of [expired, future]) {
      expect(await refusalOf(ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [der] })))
        .toMatchObject({ code: Code.InvalidArgument, reason: Reason.CERTIFICATE_INVALID });
    }
    expect(await stored(credential)).toEqual(credential);
  });

  it("T-2.1.3.2: a certificate whose key usage does not allow signing (keyEncipherment only, or no key usage) is CERTIFICATE_INVALID", async () => {
    const { credential } = await generated();
    const encipherment = await issueSignerCertificate(issuingCa, credential.publicKeySpki, { keyUsage: x509.KeyUsageFlags.keyEncipherment });
    const none = await issueSignerCertificate(issuingCa, credential.publicKeySpki, { keyUsage: 0 });
    for (const der of [encipherment, none]) {
      expect(await refusalOf(ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [der] })))
        .toMatchObject({ code: Code.InvalidArgument, reason: Reason.CERTIFICATE_INVALID });
    }
    const signingOnly = await issueSignerCertificate(issuingCa, credential.publicKeySpki, { keyUsage: x509.KeyUsageFlags.nonRepudiation });
    expect((await ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [signingOnly] })).credential!.status).toBe(CredentialStatus.ACTIVE);
  });

  it("T-2.1.3.1: bytes that are not a DER certificate are CERTIFICATE_INVALID", async () => {
    const { credential } = await generated();
    const der = await issueSignerCertificate(issuingCa, credential.publicKeySpki);
    const pem = new TextEncoder().encode(new x509.X509Certificate(der).toString("pem"));
    for (const bad of [randomBytes(200), pem, Buffer.concat([der, Buffer.from([0])])]) {
      expect(await refusalOf(ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [bad] })))
        .toMatchObject({ code: Code.InvalidArgument, reason: Reason.CERTIFICATE_INVALID });
    }
    expect(await stored(credential)).toEqual(credential);
  });

  it("a certificate attached to one credential, imported on another, is ALREADY_EXISTS", async () => {
    const a = await generated();
    const b = await generated();
    const der = await issueSignerCertificate(issuingCa, a.credential.publicKeySpki);
    await ra().importCertificate({ credentialId: a.credential.credentialId, certificateChain: [der] });
    expect(await refusalOf(ra().importCertificate({ credentialId: b.credential.credentialId, certificateChain: [der] })))
      .toMatchObject({ code: Code.AlreadyExists, reason: Reason.ALREADY_EXISTS });
    expect(await stored(b.credential)).toEqual(b.credential);
  });

  it("an unknown credential is NOT_FOUND; a destroyed one is FAILED_PRECONDITION CREDENTIAL_DESTROYED", async () => {
    const der = await issueSignerCertificate(issuingCa, foreignSpki());
    expect(await refusalOf(ra().importCertificate({ credentialId: "crd-nothing", certificateChain: [der] })))
      .toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
    // DestroyCredential is not built yet: the sealed-record access of the test hook stands in for it.
    const { credential } = await generated();
    const record = (await records!.get("credential", credential.credentialId))!;
    await records!.update<CredentialRecord>({ ...record, version: record.version + 1, status: "DESTROYED" }, record.version);
    const mine = await issueSignerCertificate(issuingCa, credential.publicKeySpki);
    expect(await refusalOf(ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [mine] })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_DESTROYED });
  });

  it("only a registration operator imports certificates: an SCA or an auditor is refused", async () => {
    const { credential } = await generated();
    const der = await issueSignerCertificate(issuingCa, credential.publicKeySpki);
    const asSca = createClient(RegistrationService, t.transport("grpc", t.pki.sca));
    expect([Code.PermissionDenied, Code.Unauthenticated]).toContain((await refusalOf(asSca.importCertificate({ credentialId: credential.credentialId, certificateChain: [der] }))).code);
    expect(await refusalOf(createClient(RegistrationService, t.as(auditor)).importCertificate({ credentialId: credential.credentialId, certificateChain: [der] })))
      .toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
    expect(await stored(credential)).toEqual(credential);
  });
});

describe("PrepareCsr: the CertificationRequestInfo of the credential's key, exactly as generated, for the signer to approve (R-3.1.1.4, R-3.1.3.2)", () => {
  for (const protocol of ["grpc", "connect"] as const) {
    it(`R-3.1.1.4: over ${protocol}, the CertificationRequestInfo holds the subject and the SPKI byte for byte; the DTBS/R is its hash under the key's default`, async () => {
      for (const [keyAlgorithm, hash, node] of [[KeyAlgorithm.EC_P256, HashAlgorithm.SHA256, "sha256"], [KeyAlgorithm.EC_P384, HashAlgorithm.SHA384, "sha384"]] as const) {
        const { credential } = await generated(keyAlgorithm);
        const out = await ra(protocol).prepareCsr({ credentialId: credential.credentialId, subject: "CN=Sato Hanako,O=Example Corp,C=JP" });
        expect(out.hashAlgorithm).toBe(hash);
        expect(out.signatureAlgorithm).toBe(SignatureAlgorithm.ECDSA);
        expect(Buffer.from(out.dtbsr)).toEqual(createHash(node).update(out.certificationRequestInfo).digest());
        expect(Buffer.from(out.publicKeyFingerprint)).toEqual(Buffer.from(credential.publicKeyFingerprint));
        expect(Buffer.from(out.certificationRequestInfo).includes(Buffer.from(credential.publicKeySpki))).toBe(true);
        const parsed = execFileSync("openssl", ["asn1parse", "-inform", "DER"], { input: out.certificationRequestInfo }).toString();
        expect(parsed).toMatch(/INTEGER\s+:00/); // version 0
        expect(parsed).toMatch(/PRINTABLESTRING\s+:JP[\s\S]*UTF8STRING\s+:Example Corp[\s\S]*UTF8STRING\s+:Sato Hanako/); // C first in DER
        expect(parsed).toMatch(/cont \[ 0 \]/); // no attributes
        expect(await stored(credential)).toEqual(credential); // changes nothing
      }
    });
  }

  it("R-3.1.3.2: the prepared request, signed through the SAP (authorized by the signer's SAD) and assembled, is a CSR openssl verifies, with the approved subject and key", async () => {
    for (const keyAlgorithm of [KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048]) {
      // The SAP signs only for ACTIVE credentials today: this is the renewal case (CreateCsr does this for KEY_GENERATED ones).
      const { signerId, deviceKey, credential } = await generated(keyAlgorithm);
      await ra().importCertificate({ credentialId: credential.credentialId, certificateChain: [await issueSignerCertificate(issuingCa, credential.publicKeySpki)] });
      const subject = "CN=Sato Hanako\\, renewed,O=Example Corp,C=JP";
      const out = await ra().prepareCsr({ credentialId: credential.credentialId, subject });
      const signature = await sapSign(signerId, deviceKey, credential.credentialId, out.dtbsr);
      const sigAlg = keyAlgorithm === KeyAlgorithm.EC_P256 ? "06082a8648ce3d040302" : "06092a864886f70d01010b0500"; // ecdsa-with-SHA256; sha256WithRSAEncryption, NULL
      const csr = derOf(0x30, out.certificationRequestInfo, derOf(0x30, Buffer.from(sigAlg, "hex")), derOf(0x03, Buffer.from([0]), signature));
      // OpenSSL 3 exits 0 on a bad CSR signature and only says so on stderr: read both.
      const verified = spawnSync("openssl", ["req", "-inform", "DER", "-verify", "-noout", "-subject", "-nameopt", "RFC2253"], { input: csr, encoding: "utf8" });
      expect(verified.stderr).toContain("verify OK");
      expect(verified.stdout).toContain(`subject=${subject}`);
      const pub = execFileSync("openssl", ["req", "-inform", "DER", "-pubkey", "-noout"], { input: csr }).toString();
      expect(Buffer.from(x509.PemConverter.decodeFirst(pub))).toEqual(Buffer.from(credential.publicKeySpki));
    }
  }, 60_000);

  it("refuses an unknown credential, a subject that is not RFC 4514, an algorithm that does not fit the key, and a destroyed credential", async () => {
    const { credential } = await generated();
    const prepare = (req: Partial<{ credentialId: string; subject: string; hashAlgorithm: HashAlgorithm; signatureAlgorithm: SignatureAlgorithm }>) =>
      refusalOf(ra().prepareCsr({ credentialId: credential.credentialId, subject: "CN=Sato", ...req }));
    expect(await prepare({ credentialId: "crd-nothing" })).toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
    for (const subject of ["Sato Hanako", "XX=1", "CN=a;b", "CN=a ", "C=Japan", "CN=,O=x"]) {
      expect(await prepare({ subject }), subject).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    }
    expect(await prepare({ hashAlgorithm: HashAlgorithm.NONE })).toMatchObject({ code: Code.InvalidArgument, reason: Reason.ALGORITHM_NOT_ALLOWED });
    expect(await prepare({ signatureAlgorithm: SignatureAlgorithm.RSA_PSS })).toMatchObject({ code: Code.InvalidArgument, reason: Reason.ALGORITHM_NOT_ALLOWED });
    const record = (await records!.get("credential", credential.credentialId))!;
    await records!.update<CredentialRecord>({ ...record, version: record.version + 1, status: "DESTROYED" }, record.version);
    expect(await prepare({})).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_DESTROYED });
  });
});

/** BeginTransaction with one hash, the device's R.SAD, Authorize and SignHash: the SAM's signature. */
async function sapSign(signerId: string, deviceKey: Parameters<typeof buildRSad>[0]["deviceKey"], credentialId: string, hash: Uint8Array, protocol: Protocol = "grpc"): Promise<Uint8Array> {
  const client = sca(protocol);
  const { sadChallenge: ch } = await client.beginTransaction({ credentialId, signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [hash], description: "Contract" });
  const rSad = await buildRSad({
    deviceKey, signerId: ch!.signerId, credentialId: ch!.credentialId, samId: ch!.audience, transactionId: ch!.transactionId,
    challenge: ch!.challenge, dtbsrDigest: ch!.dtbsrDigest, count: ch!.numSignatures, hashAlgorithm: ch!.hashAlgorithm, description: ch!.description, pin: testPin, samKey: ch!.encryptionKey!,
  });
  const { sadToken } = await client.authorize({ transactionId: ch!.transactionId, rSad });
  const { signatures } = await client.signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: [hash] });
  return signatures[0]!;
}

/** One DER element (lengths up to 64 KiB). */
function derOf(tag: number, ...content: Uint8Array[]): Uint8Array {
  const body = Buffer.concat(content);
  const n = body.length;
  return Buffer.concat([Buffer.from([tag, ...(n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff])]), body]);
}

/** The subject and issuer as `openssl x509 -nameopt RFC2253` prints them. */
function opensslNames(certificate: Uint8Array): { subject: string; issuer: string } {
  const out = execFileSync("openssl", ["x509", "-inform", "DER", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253"], { input: certificate }).toString();
  const field = (name: string) => new RegExp(`^${name}=(.*)$`, "m").exec(out)?.[1];
  return { subject: field("subject")!, issuer: field("issuer")! };
}

/** An RSA SubjectPublicKeyInfo re-encoded without the AlgorithmIdentifier's NULL parameters: the same key, other bytes. */
function reencodeWithoutNull(spki: Uint8Array): Uint8Array {
  const rsaOid = Buffer.from("06092a864886f70d010101", "hex");
  const s = Buffer.from(spki);
  const at = s.indexOf(rsaOid);
  const bitString = s.subarray(at + rsaOid.length + 2); // after OID and NULL
  const algorithm = Buffer.concat([Buffer.from([0x30, rsaOid.length]), rsaOid]);
  const content = Buffer.concat([algorithm, bitString]);
  return new Uint8Array(Buffer.concat([Buffer.from([0x30, 0x82, content.length >> 8, content.length & 0xff]), content]));
}
