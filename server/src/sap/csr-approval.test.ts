import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as x509 from "@peculiar/x509";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, type DeviceKey } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { RegistrationService, type Credential, type PrepareCsrResponse } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, TransactionState } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { CredentialStatus, HashAlgorithm, KeyAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultSecurityPolicy } from "../admin/security-policy.js";
import type { FullCryptoModule } from "../crypto/port.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { CredentialRecord, Store } from "../store/port.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type Protocol, type TestServer } from "../testing/harness.js";
import { activeSigner, activeSignerWithCredential, testPin } from "../testing/signers.js";

// CreateCsr with the signer's SAD approval on the real server (SoftHSM2 + SQLite, mTLS, signed admin
// requests), over gRPC and Connect: PrepareCsr -> BeginTransaction (one DTBS/R) -> R.SAD (SDK) ->
// Authorize -> CreateCsr. R-3.1.3.1, R-3.1.3.2, R-3.1.1.4; T-2.1.3.1, T-2.1.3.2, T-2.1.1.2.
let t: TestServer;
let operator: PrivilegedPerson;
let records: VerifiedRecords | undefined;
let failSignatureChecks = false;
/** Transactions the store reports as past their expiry (fault injection: no 30-second wait for a real expiry). */
const expiredTransactions = new Set<string>();

const ra = (protocol: Protocol = "grpc") => createClient(RegistrationService, t.as(operator, protocol));
const sca = (protocol: Protocol = "grpc") => createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
const subject = "CN=Sato Hanako,O=Example Corp,C=JP";
const execFileAsync = promisify(execFile);

interface Generated {
  signerId: string;
  deviceKey: DeviceKey;
  credential: Credential;
}

/** An ACTIVE signer with one KEY_GENERATED credential. */
async function generated(keyAlgorithm: KeyAlgorithm = KeyAlgorithm.EC_P256): Promise<Generated> {
  const signer = await activeSigner(t, operator);
  const { credential } = await ra().generateKey({ signerId: signer.signerId, keyAlgorithm, label: "csr test" });
  return { ...signer, credential: credential! };
}

const prepare = (s: Generated, req: { subject?: string; signatureAlgorithm?: SignatureAlgorithm } = {}, protocol: Protocol = "grpc") =>
  ra(protocol).prepareCsr({ credentialId: s.credential.credentialId, subject, ...req });

/** The approval through the SAP: BeginTransaction with exactly the prepared DTBS/R, the device's R.SAD, Authorize. */
async function approve(s: Generated, prepared: PrepareCsrResponse, protocol: Protocol = "grpc"): Promise<{ transactionId: string; sadToken: string }> {
  const client = sca(protocol);
  const { sadChallenge: ch } = await client.beginTransaction({
    credentialId: s.credential.credentialId, signerId: s.signerId, hashAlgorithm: prepared.hashAlgorithm, signatureAlgorithm: prepared.signatureAlgorithm,
    numSignatures: 1, hashes: [prepared.dtbsr], description: "Certificate request",
  });
  const rSad = await buildRSad({
    deviceKey: s.deviceKey, signerId: ch!.signerId, credentialId: ch!.credentialId, samId: ch!.audience, transactionId: ch!.transactionId,
    challenge: ch!.challenge, dtbsrDigest: ch!.dtbsrDigest, count: ch!.numSignatures, hashAlgorithm: ch!.hashAlgorithm, description: ch!.description, pin: testPin, samKey: ch!.encryptionKey!,
  });
  const { sadToken } = await client.authorize({ transactionId: ch!.transactionId, rSad });
  return { transactionId: ch!.transactionId, sadToken };
}

const createCsr = (
  s: Generated,
  prepared: PrepareCsrResponse,
  approval: { transactionId: string; sadToken: string },
  override: Partial<{ credentialId: string; certificationRequestInfo: Uint8Array; hashAlgorithm: HashAlgorithm; signatureAlgorithm: SignatureAlgorithm }> = {},
  protocol: Protocol = "grpc",
) =>
  ra(protocol).createCsr({
    credentialId: s.credential.credentialId, certificationRequestInfo: prepared.certificationRequestInfo, hashAlgorithm: prepared.hashAlgorithm,
    signatureAlgorithm: prepared.signatureAlgorithm, transactionId: approval.transactionId, sadToken: approval.sadToken, ...override,
  });

/**
 * `openssl req -verify` on a DER CSR: its subject (RFC 2253) and public key (DER SPKI); fails the
 * test if the signature does not verify (OpenSSL 3.0 exits 0 then: its verdict is read from stderr).
 */
function opensslVerifiedCsr(csr: Uint8Array): { subject: string; spki: Uint8Array } {
  const { ok, text } = opensslVerify(csr);
  expect(ok).toBe(true);
  const pub = execFileSync("openssl", ["req", "-inform", "DER", "-pubkey", "-noout"], { input: csr }).toString();
  return { subject: /^subject=(.*)$/m.exec(text)![1]!, spki: new Uint8Array(x509.PemConverter.decodeFirst(pub)) };
}

function opensslVerify(csr: Uint8Array): { ok: boolean; text: string } {
  const out = spawnSync("openssl", ["req", "-inform", "DER", "-verify", "-noout", "-subject", "-nameopt", "RFC2253"], { input: csr });
  const verdict = out.stderr.toString();
  return { ok: out.status === 0 && /verify OK/.test(verdict) && !/failure/.test(verdict), text: out.stdout.toString() };
}

/** The prepared CertificationRequestInfo with its SubjectPublicKeyInfo replaced by `spki` (same DER layout otherwise). */
function withKey(info: Uint8Array, ownSpki: Uint8Array, spki: Uint8Array): Uint8Array {
  const b = Buffer.from(info);
  const at = b.indexOf(Buffer.from(ownSpki));
  expect(at).toBeGreaterThan(0);
  expect(spki.length).toBe(ownSpki.length); // so the outer length stays right
  return new Uint8Array(Buffer.concat([b.subarray(0, at), spki, b.subarray(at + ownSpki.length)]));
}

const stateOf = async (transactionId: string) => (await sca().cancelTransaction({ transactionId })).state;
const statusOf = async (s: Generated) => (await ra().getCredential({ credentialId: s.credential.credentialId })).credential!.status;

beforeAll(async () => {
  // Fault injection: the real crypto module, with its check of a fresh signature made to fail on demand.
  const wrapCrypto = (crypto: FullCryptoModule): FullCryptoModule =>
    new Proxy(crypto, {
      get(target, prop, receiver) {
        if (prop === "verify") return async (...args: Parameters<FullCryptoModule["verify"]>) => (failSignatureChecks ? false : target.verify(...args));
        const value = Reflect.get(target, prop, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const wrapStore = (store: Store): Store =>
    new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === "getTransaction") {
          return async (id: string) => {
            const record = await target.getTransaction(id);
            return record && expiredTransactions.has(id) ? { ...record, expiresAt: new Date(Date.now() - 1000) } : record;
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  t = await startTestServer({}, { wrapCrypto, wrapStore, onRecords: (r) => (records = r) });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-csr");
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("CreateCsr: the CSR the signer approved with a SAD, signed in the crypto module (R-3.1.3.1, R-3.1.3.2, R-3.1.1.4)", () => {
  for (const protocol of ["grpc", "connect"] as const) {
    it(`R-3.1.3.2, R-3.1.3.1: over ${protocol}, PrepareCsr -> BeginTransaction (1 DTBS/R) -> R.SAD -> Authorize -> CreateCsr on a KEY_GENERATED credential: openssl verifies the CSR with the prepared subject and key`, async () => {
      const s = await generated();
      const prepared = await prepare(s, {}, protocol);
      const approval = await approve(s, prepared, protocol);
      const { csr } = await createCsr(s, prepared, approval, {}, protocol);
      const verified = opensslVerifiedCsr(csr);
      expect(verified.subject).toBe(subject);
      expect(Buffer.from(verified.spki)).toEqual(Buffer.from(s.credential.publicKeySpki)); // R-3.1.1.4
      expect(Buffer.from(csr).includes(Buffer.from(prepared.certificationRequestInfo))).toBe(true); // exactly the approved bytes
      const tampered = Buffer.from(csr);
      tampered[tampered.length - 3]! ^= 0x01; // inside the signature: openssl must now refuse it
      expect(opensslVerify(tampered).ok).toBe(false);
      expect(await stateOf(approval.transactionId)).toBe(TransactionState.COMPLETED);
      expect(await statusOf(s)).toBe(CredentialStatus.KEY_GENERATED);
    }, 60_000);
  }

  it("R-3.1.3.2: renewal: an ACTIVE credential gets a CSR for a new subject the same way", async () => {
    const a = await activeSignerWithCredential(t, operator);
    const s: Generated = { signerId: a.signerId, deviceKey: a.deviceKey, credential: a.credential };
    const renewed = "CN=Sato Hanako\\, renewed,O=Example Corp,C=JP";
    const prepared = await prepare(s, { subject: renewed });
    const { csr } = await createCsr(s, prepared, await approve(s, prepared));
    expect(opensslVerifiedCsr(csr).subject).toBe(renewed);
    expect(await statusOf(s)).toBe(CredentialStatus.ACTIVE);
  });

  it("R-3.2.2.4: the CSR signature is audited as signature.created with the approved DTBS/R", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    await createCsr(s, prepared, await approve(s, prepared));
    const auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-csr");
    const { records: trail } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 } });
    const created = trail.filter((r) => r.eventType === "signature.created" && r.details["hash"] === Buffer.from(prepared.dtbsr).toString("hex"));
    expect(created).toHaveLength(1);
    expect(created[0]!.credentialId).toBe(s.credential.credentialId);
  });
});

describe("every key algorithm the policy allows, with every signature scheme that fits it: generate -> CSR -> certificate from the CSR -> sign, verified by openssl (R-3.1.3.1, R-3.1.3.2, R-3.1.1.4, T-2.1.3.1)", () => {
  it("R-3.1.3.1, R-3.1.3.2, R-3.1.1.4, T-2.1.3.1: GenerateKey -> PrepareCsr -> SAD approval -> CreateCsr (openssl req -verify) -> certificate issued from the CSR by the signer issuing CA -> ImportCertificate -> SignHash, and openssl verifies the signature with the imported certificate's key", async () => {
    // The algorithms as the running server's policy states them (GetInfo), so the test follows the policy.
    const info = await sca().getInfo({});
    const policy = defaultSecurityPolicy({ trustedScaCaCertificates: [], trustedAdminCaCertificates: [] });
    expect(info.keyAlgorithms.map((a) => `KEY_ALGORITHM_${KeyAlgorithm[a]}`)).toEqual(policy.allowedKeyAlgorithms); // not vacuous: the default policy's list
    const cases = info.keyAlgorithms.flatMap((keyAlgorithm, k) =>
      schemesFor(keyAlgorithm).filter((scheme) => info.signatureAlgorithms.includes(scheme)).map((scheme, j) => ({ keyAlgorithm, scheme, protocol: (k + j) % 2 === 0 ? "grpc" as const : "connect" as const })));
    expect(new Set(cases.map((c) => c.keyAlgorithm)).size).toBe(info.keyAlgorithms.length); // each key algorithm with at least one scheme
    // In parallel: RSA-4096 generation in SoftHSM takes seconds, and openssl runs as child processes.
    const outcomes = await Promise.allSettled(cases.map(({ keyAlgorithm, scheme, protocol }) => generateCertifySign(keyAlgorithm, scheme, protocol)));
    const failed = outcomes.flatMap((o, i) => (o.status === "rejected" ? [`${KeyAlgorithm[cases[i]!.keyAlgorithm]}/${SignatureAlgorithm[cases[i]!.scheme]}: ${String(o.reason)}`] : []));
    expect(failed).toEqual([]);
  }, 90_000);
});

/** The signature schemes a key of `keyAlgorithm` signs with (types.proto). */
function schemesFor(keyAlgorithm: KeyAlgorithm): SignatureAlgorithm[] {
  const name = KeyAlgorithm[keyAlgorithm];
  if (name.startsWith("EC_")) return [SignatureAlgorithm.ECDSA];
  if (name.startsWith("RSA_")) return [SignatureAlgorithm.RSA_PKCS1_V1_5, SignatureAlgorithm.RSA_PSS];
  throw new Error(`no signature scheme known to this test for ${name}: extend schemesFor and the openssl verification`);
}

const csrSignatureAlgorithm: Partial<Record<SignatureAlgorithm, RegExp>> = {
  [SignatureAlgorithm.ECDSA]: /Signature Algorithm: ecdsa-with-SHA(256|384|512)/,
  [SignatureAlgorithm.RSA_PKCS1_V1_5]: /Signature Algorithm: sha(256|384|512)WithRSAEncryption/,
  [SignatureAlgorithm.RSA_PSS]: /Signature Algorithm: rsassaPss/,
};

/** The whole chain for one key algorithm and scheme; throws (with the step) on the first thing that is wrong. */
async function generateCertifySign(keyAlgorithm: KeyAlgorithm, scheme: SignatureAlgorithm, protocol: Protocol): Promise<void> {
  const label = `${KeyAlgorithm[keyAlgorithm]}/${SignatureAlgorithm[scheme]} over ${protocol}`;
  const dir = await mkdtemp(join(tmpdir(), "inkan-csr-chain-"));
  try {
    const s = await generated(keyAlgorithm);
    const prepared = await prepare(s, { signatureAlgorithm: scheme }, protocol);
    const { csr } = await createCsr(s, prepared, await approve(s, prepared, protocol), {}, protocol); // R-3.1.3.2, R-3.1.3.1
    const verified = opensslVerifiedCsr(csr);
    expect(verified.subject, label).toBe(subject);
    expect(Buffer.from(verified.spki), label).toEqual(Buffer.from(s.credential.publicKeySpki)); // R-3.1.1.4, T-2.1.3.1: the key generated
    expect((await openssl(dir, ["req", "-inform", "DER", "-in", await file(dir, "req.der", csr), "-noout", "-text"])).stdout, label).toMatch(csrSignatureAlgorithm[scheme]!);

    // A certificate for the CSR's key and subject, issued by the development signer issuing CA that the default policy trusts.
    const certificate = await certificateFromCsr(dir, csr);
    const { credential } = await ra(protocol).importCertificate({ credentialId: s.credential.credentialId, certificateChain: [certificate] });
    expect(credential!.status, label).toBe(CredentialStatus.ACTIVE);
    const imported = credential!.certificate!.chain[0]!;

    // A document signed through the SAP with the CSR's scheme and hash, verified against the imported certificate's key.
    const hashName = HashAlgorithm[prepared.hashAlgorithm].toLowerCase();
    const document = Buffer.from(`contract ${label} ${Math.random()}`);
    const hash = new Uint8Array(createHash(hashName).update(document).digest());
    const { sadChallenge: ch } = await sca(protocol).beginTransaction({
      credentialId: s.credential.credentialId, signerId: s.signerId, hashAlgorithm: prepared.hashAlgorithm, signatureAlgorithm: scheme,
      numSignatures: 1, hashes: [hash], description: "Contract",
    });
    const rSad = await buildRSad({
      deviceKey: s.deviceKey, signerId: ch!.signerId, credentialId: ch!.credentialId, samId: ch!.audience, transactionId: ch!.transactionId,
      challenge: ch!.challenge, dtbsrDigest: ch!.dtbsrDigest, count: ch!.numSignatures, hashAlgorithm: ch!.hashAlgorithm, description: ch!.description, pin: testPin, samKey: ch!.encryptionKey!,
    });
    const { sadToken } = await sca(protocol).authorize({ transactionId: ch!.transactionId, rSad });
    const { signatures } = await sca(protocol).signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: [hash] });
    const pub = join(dir, "signer.pub.pem");
    await openssl(dir, ["x509", "-inform", "DER", "-in", await file(dir, "imported.der", imported), "-pubkey", "-noout", "-out", pub]);
    expect(Buffer.from(x509.PemConverter.decodeFirst(await readFile(pub, "utf8"))), label).toEqual(Buffer.from(s.credential.publicKeySpki));
    const verifies = async (message: Uint8Array) => {
      const pss = scheme === SignatureAlgorithm.RSA_PSS ? ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest", "-sigopt", `rsa_mgf1_md:${hashName}`] : []; // types.proto: MGF1 with the same hash, salt = hash length
      const sig = await file(dir, "signature.bin", signatures[0]!);
      return openssl(dir, ["dgst", `-${hashName}`, "-verify", pub, ...pss, "-signature", sig, await file(dir, "document.bin", message)])
        .then((out) => /Verified OK/.test(out.stdout), () => false);
    };
    expect(await verifies(document), `${label}: openssl dgst -verify`).toBe(true);
    expect(await verifies(Buffer.concat([document, Buffer.from("!")])), `${label}: another document`).toBe(false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `openssl x509 -req`: the CSR's key and subject certified by the development signer issuing CA, for signing only. */
async function certificateFromCsr(dir: string, csr: Uint8Array): Promise<Uint8Array> {
  const extensions = await file(dir, "signer.ext", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n");
  const out = join(dir, "signer.der");
  await openssl(dir, [
    "x509", "-req", "-inform", "DER", "-in", await file(dir, "req.der", csr), "-CA", t.pki.paths.signerIssuingCaCert, "-CAkey", t.pki.paths.signerIssuingCaKey,
    "-set_serial", `0x01${randomBytes(15).toString("hex")}`, "-days", "30", "-extfile", extensions, "-outform", "DER", "-out", out,
  ]);
  return new Uint8Array(await readFile(out));
}

const file = async (dir: string, name: string, data: Uint8Array | string) => (await writeFile(join(dir, name), data), join(dir, name));
const openssl = (dir: string, args: string[]) => execFileAsync("openssl", args, { cwd: dir, encoding: "utf8" });

describe("CreateCsr refuses, and the approval stays usable (T-2.1.3.1, T-2.1.3.2, T-2.1.1.2)", () => {
  for (const protocol of ["grpc", "connect"] as const) {
    it(`T-2.1.3.2: over ${protocol}, a CSR whose subject was changed after approval is PERMISSION_DENIED HASH_NOT_AUTHORIZED; the approved one is then still signed`, async () => {
      const s = await generated();
      const prepared = await prepare(s, {}, protocol);
      const approval = await approve(s, prepared, protocol);
      const forged = await prepare(s, { subject: "CN=Mallory,O=Example Corp,C=JP" }, protocol);
      expect(await refusalOf(createCsr(s, prepared, approval, { certificationRequestInfo: forged.certificationRequestInfo }, protocol)))
        .toMatchObject({ code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED });
      // The same bytes under another hash algorithm are not what was approved either.
      expect(await refusalOf(createCsr(s, prepared, approval, { hashAlgorithm: HashAlgorithm.SHA384 }, protocol)))
        .toMatchObject({ code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED });
      expect(opensslVerifiedCsr((await createCsr(s, prepared, approval, {}, protocol)).csr).subject).toBe(subject);
    }, 60_000);
  }

  it("T-2.1.3.1, T-2.1.1.2: a CertificationRequestInfo with another key (a foreign key, another credential's) is INVALID_ARGUMENT KEY_MISMATCH", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const approval = await approve(s, prepared);
    const foreign = new Uint8Array(generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "der" }));
    const { credential: sibling } = await ra().generateKey({ signerId: s.signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "sibling" });
    for (const spki of [foreign, sibling!.publicKeySpki]) {
      const info = withKey(prepared.certificationRequestInfo, s.credential.publicKeySpki, spki);
      expect(await refusalOf(createCsr(s, prepared, approval, { certificationRequestInfo: info }))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.KEY_MISMATCH });
    }
    // The other credential's own request, presented with this approval: its key is not this credential's either way round.
    const siblingView: Generated = { ...s, credential: sibling! };
    expect(await refusalOf(createCsr(siblingView, prepared, approval))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.KEY_MISMATCH });
    await createCsr(s, prepared, approval); // untouched
  });

  it("T-2.1.3.1: bytes that are not a DER CertificationRequestInfo, or another signature algorithm, are INVALID_ARGUMENT INVALID_REQUEST", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const approval = await approve(s, prepared);
    const info = Buffer.from(prepared.certificationRequestInfo);
    const version1 = Buffer.from(info);
    version1[info.indexOf(Buffer.from([0x02, 0x01, 0x00]))! + 2] = 1;
    const noAttributes = Buffer.from(info.subarray(0, info.length - 2));
    noAttributes[1] = noAttributes[1]! - 2; // short-form length of this small request
    for (const bad of [Buffer.from("not der"), Buffer.concat([info, Buffer.from([0])]), info.subarray(0, info.length - 1), version1, noAttributes]) {
      const refusal = await refusalOf(createCsr(s, prepared, approval, { certificationRequestInfo: bad }));
      expect(refusal, bad.toString("hex").slice(0, 40)).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    }
    // A signature algorithm other than the approval transaction's.
    expect(await refusalOf(createCsr(s, prepared, approval, { signatureAlgorithm: SignatureAlgorithm.RSA_PSS }))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    await createCsr(s, prepared, approval); // untouched
  });

  it("T-2.1.3.2: without the signer's approval: a made-up token, or another transaction's token, is PERMISSION_DENIED SAD_INVALID and burns nothing", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const first = await approve(s, prepared);
    const second = await approve(s, prepared);
    expect(await refusalOf(createCsr(s, prepared, { ...first, sadToken: "made-up-token-0123456789" }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_INVALID });
    expect(await refusalOf(createCsr(s, prepared, { ...first, sadToken: second.sadToken }))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_INVALID });
    // Both approvals still work, each with its own token.
    await createCsr(s, prepared, first);
    await createCsr(s, prepared, second);
  });

  it("T-2.2.1.3: the same token twice is PERMISSION_DENIED SAD_REPLAYED", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const approval = await approve(s, prepared);
    await createCsr(s, prepared, approval);
    expect(await refusalOf(createCsr(s, prepared, approval))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.SAD_REPLAYED });
    const auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-csr-replay");
    const { records: trail } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 } });
    expect(trail.some((r) => r.eventType === "signature.failed" && r.reason === Reason.SAD_REPLAYED && r.transactionId === approval.transactionId)).toBe(true);
  });

  it("an expired approval transaction is FAILED_PRECONDITION EXPIRED, and nothing is consumed", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const approval = await approve(s, prepared);
    expiredTransactions.add(approval.transactionId);
    try {
      expect(await refusalOf(createCsr(s, prepared, approval))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.EXPIRED });
    } finally {
      expiredTransactions.delete(approval.transactionId);
    }
    await createCsr(s, prepared, approval);
  });

  it("T-2.2.1.3: of concurrent CreateCsr calls with one token exactly one gets a CSR", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const approval = await approve(s, prepared);
    const results = await Promise.allSettled(Array.from({ length: 4 }, () => createCsr(s, prepared, approval)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
  });

  it("T-2.2.1.2: SignHash with the CSR approval's token is refused (the credential is KEY_GENERATED): FAILED_PRECONDITION, and the token stays CreateCsr's", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const approval = await approve(s, prepared);
    expect(await refusalOf(sca().signHash({ authorization: { case: "sadToken", value: approval.sadToken }, hashes: [prepared.dtbsr] })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED });
    const stream = sca().signStream({ sadToken: approval.sadToken, startIndex: 0 });
    await expect((async () => {
      for await (const _ of stream) void _;
    })()).rejects.toMatchObject({ code: Code.FailedPrecondition });
    expect(opensslVerifiedCsr((await createCsr(s, prepared, approval)).csr).subject).toBe(subject);
  });

  it("R-3.1.3.2 (issue 13.4): a CSR approval's token signs no document, also after the certificate is imported", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const spare = await approve(s, prepared); // a second approval of the same CSR, kept back by the SCA
    const approval = await approve(s, prepared);
    const dir = await mkdtemp(join(tmpdir(), "inkan-csr-only-"));
    try {
      const certificate = await certificateFromCsr(dir, (await createCsr(s, prepared, approval)).csr);
      expect((await ra().importCertificate({ credentialId: s.credential.credentialId, certificateChain: [certificate] })).credential!.status).toBe(CredentialStatus.ACTIVE);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // The credential is ACTIVE now; the spare CSR approval still signs nothing through the SAP.
    expect(await refusalOf(sca().signHash({ authorization: { case: "sadToken", value: spare.sadToken }, hashes: [prepared.dtbsr] })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    await expect((async () => {
      for await (const _ of sca().signStream({ sadToken: spare.sadToken, startIndex: 0 })) void _;
    })()).rejects.toMatchObject({ code: Code.FailedPrecondition });
  });

  it("R-3.1.3.2 (issue 13.4): BeginTransaction on a KEY_GENERATED credential takes only the DTBS/R of its last PrepareCsr: a document's hash is INVALID_ARGUMENT INVALID_REQUEST", async () => {
    const s = await generated();
    const document = new Uint8Array(createHash("sha256").update(`not a CSR ${Math.random()}`).digest());
    const begin = (hashes: Uint8Array[]) => sca().beginTransaction({ credentialId: s.credential.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes, description: "Certificate request" });
    expect(await refusalOf(begin([document]))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST }); // no PrepareCsr yet
    const prepared = await prepare(s);
    expect(await refusalOf(begin([document]))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect(await refusalOf(begin([]))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST }); // not uploaded later either
    expect((await begin([prepared.dtbsr])).sadChallenge).toBeDefined();
  });

  it("R-3.1.3.2: BeginTransaction on a KEY_GENERATED credential takes exactly one DTBS/R: 2 hashes (or num_signatures 2) is INVALID_ARGUMENT INVALID_REQUEST", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const other = new Uint8Array(createHash("sha256").update("another document").digest());
    const begin = (numSignatures: number, hashes: Uint8Array[]) =>
      sca().beginTransaction({ credentialId: s.credential.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures, hashes, description: "two" });
    expect(await refusalOf(begin(2, [prepared.dtbsr, other]))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
    expect(await refusalOf(begin(2, [prepared.dtbsr]))).toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
  });

  it("the transaction must be this credential's, authorized and known: TRANSACTION_NOT_FOUND, TRANSACTION_STATE", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const approval = await approve(s, prepared);
    const other = await generated();
    const otherPrepared = await prepare(other);
    const otherApproval = await approve(other, otherPrepared);
    expect(await refusalOf(createCsr(s, prepared, { ...approval, transactionId: otherApproval.transactionId }))).toMatchObject({ code: Code.NotFound, reason: Reason.TRANSACTION_NOT_FOUND });
    expect(await refusalOf(createCsr(s, prepared, { ...approval, transactionId: "txn-nothing" }))).toMatchObject({ code: Code.NotFound, reason: Reason.TRANSACTION_NOT_FOUND });
    const { sadChallenge: pending } = await sca().beginTransaction({
      credentialId: s.credential.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [prepared.dtbsr], description: "not authorized",
    });
    expect(await refusalOf(createCsr(s, prepared, { transactionId: pending!.transactionId, sadToken: approval.sadToken })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    expect(await refusalOf(createCsr(s, prepared, approval, { credentialId: "crd-nothing" }))).toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
    await createCsr(s, prepared, approval);
    await createCsr(other, otherPrepared, otherApproval);
  });

  it("R-3.3.1: a suspended, locked or destroyed credential is refused with its reason", async () => {
    const suspended = await generated();
    const p1 = await prepare(suspended);
    const a1 = await approve(suspended, p1);
    await ra().suspendCredential({ credentialId: suspended.credential.credentialId, reason: "hold" });
    expect(await refusalOf(createCsr(suspended, p1, a1))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED });
    for (const status of ["LOCKED", "DESTROYED"] as const) {
      const s = await generated();
      const prepared = await prepare(s);
      const approval = await approve(s, prepared);
      const record = (await records!.get("credential", s.credential.credentialId))!;
      await records!.update<CredentialRecord>({ ...record, version: record.version + 1, status }, record.version);
      expect(await refusalOf(createCsr(s, prepared, approval))).toMatchObject({ code: Code.FailedPrecondition, reason: status === "LOCKED" ? Reason.CREDENTIAL_LOCKED : Reason.CREDENTIAL_DESTROYED });
    }
  });

  it("R-3.2.1.5: a CSR signature that does not verify against the credential's key is withheld: INTERNAL SIGNATURE_CHECK_FAILED", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const approval = await approve(s, prepared);
    failSignatureChecks = true;
    try {
      expect(await refusalOf(createCsr(s, prepared, approval))).toMatchObject({ code: Code.Internal, reason: Reason.SIGNATURE_CHECK_FAILED });
    } finally {
      failSignatureChecks = false;
    }
  });

  it("only a registration operator creates CSRs: an SCA is refused", async () => {
    const s = await generated();
    const prepared = await prepare(s);
    const approval = await approve(s, prepared);
    const asSca = createClient(RegistrationService, t.transport("grpc", t.pki.sca));
    const refusal = await refusalOf(asSca.createCsr({
      credentialId: s.credential.credentialId, certificationRequestInfo: prepared.certificationRequestInfo, hashAlgorithm: prepared.hashAlgorithm,
      signatureAlgorithm: prepared.signatureAlgorithm, transactionId: approval.transactionId, sadToken: approval.sadToken,
    }));
    expect([Code.PermissionDenied, Code.Unauthenticated]).toContain(refusal.code);
    await createCsr(s, prepared, approval);
  });
});
