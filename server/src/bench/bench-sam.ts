import { readFileSync, rmSync, mkdtempSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { buildActivationRequest, createAdminRequestSigner, createDeviceKey, type DeviceKey } from "@inkan/sdk";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { IdentityProofingMethod, RegistrationService, SignerKind } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import { spkiSha256 } from "../admin/privileged-users.js";
import { initDataDir } from "../init.js";
import { issueCertificate, issueSignerCertificate, loadCertificateAuthority, type Pem } from "../pki/dev-pki.js";
import type { ServeHooks } from "../main.js";
import { childProcessSam, inProcessSam, type SamHost } from "./sam-host.js";

/** The PIN the benchmark's signer sets at activation and puts into every R.SAD. */
export const benchPin = "246813579";

/** The signer every benchmark transaction signs for: its device key, credential and module key. */
export interface BenchSigner {
  signerId: string;
  credentialId: string;
  deviceKey: DeviceKey;
  /** DER SubjectPublicKeyInfo of the credential's key, to spot-check signatures with node:crypto. */
  publicKeySpki: Uint8Array;
  /** The credential's key in the crypto module (CKA_ID, hex): the raw figures sign with it too. */
  keyId: string;
}

export interface BenchSam {
  /**
   * Where the server runs (this process or its own, issue 20). Its raw figures use the server's own
   * crypto module (same token, same session pool): raw and SAM figures compete for the same sessions.
   */
  host: SamHost;
  dataDir: string;
  signer: BenchSigner;
  /**
   * `n` more signers, each enrolled, activated and certified like `signer`. Many SCAs at once act
   * for several signers: a signer's factor checks in flight are bounded by the policy's
   * lockout_threshold (issue 13: the attempt is reserved before the check), as for any person.
   */
  moreSigners(n: number): Promise<BenchSigner[]>;
  /** A new SCA client: its own HTTP/2 connection (gRPC over mTLS, the development SCA certificate). */
  scaTransport(): Transport;
  /** Stops the server; removes the data directory unless `keep` (to read server.log after a failure). */
  close(keep?: boolean): Promise<void>;
}

/**
 * The SAM as the product runs: `inkan init` on a fresh temporary data directory (development PKI,
 * SoftHSM2 token, SQLite store, first security officer), then `serve()` on 127.0.0.1:0 over TLS
 * with client certificates, logging at info into `<dataDir>/server.log` like `inkan serve` does
 * on stderr; in this process (with `hooks`, if given), or with `ownProcess` in a child process of its own (sam-host.ts). Then one signer, enrolled and activated through the RPCs, with an EC P-256 credential.
 */
export async function startBenchSam(o: { ownProcess?: boolean; nodeArgs?: string[]; hooks?: Pick<ServeHooks, "wrapStore" | "wrapCrypto"> } = {}): Promise<BenchSam> {
  const dataDir = mkdtempSync(join(tmpdir(), "inkan-bench-"));
  const { paths } = await initDataDir(dataDir);
  const server = o.ownProcess ? await childProcessSam(dataDir, o.nodeArgs) : await inProcessSam(dataDir, o.hooks);
  const read = (f: string) => readFileSync(f, "utf8");
  const ca = read(paths.caCert);
  const transport = (who: Pem, signAs?: { userId: string; privateJwk: JWK & { kid: string } }): Transport =>
    createGrpcTransport({
      baseUrl: server.url,
      nodeOptions: { ca, ...who },
      interceptors: signAs ? [createAdminRequestSigner({ ...signAs, nonceTransport: transport(who) })] : [],
    });
  const sca: Pem = { cert: read(paths.scaCert), key: read(paths.scaKey) };
  const frontEnd: Pem = { cert: read(paths.signerFrontEnd.cert), key: read(paths.signerFrontEnd.key) }; // SignerService's caller (issue 18 item 7)
  try {
    const securityOfficer = transport({ cert: read(paths.adminCert), key: read(paths.adminKey) }, {
      userId: paths.adminUserId,
      privateJwk: JSON.parse(read(paths.adminRequestKey)) as JWK & { kid: string },
    });
    const operator = await createRegistrationOperator(securityOfficer, { cert: read(paths.adminCaCert), key: read(paths.adminCaKey) }, transport);
    const issuingCa = { cert: read(paths.signerIssuingCaCert), key: read(paths.signerIssuingCaKey) };
    const newSigner = async (): Promise<BenchSigner> => {
      const signer = await activeSignerWithCredential(operator, transport(frontEnd));
      return { ...signer, keyId: await certifyCredential(operator, issuingCa, signer.credentialId, signer.publicKeySpki) };
    };
    const signer = await newSigner();
    return {
      host: server,
      dataDir,
      signer,
      moreSigners: async (n) => {
        const out: BenchSigner[] = [];
        for (let i = 0; i < n; i++) out.push(await newSigner());
        return out;
      },
      scaTransport: () => transport(sca),
      async close(keep = false) {
        await server.close(2000);
        if (!keep) rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await server.close(0);
    throw err;
  }
}

/** A registration operator created by the first security officer: a transport acting as them. */
async function createRegistrationOperator(securityOfficer: Transport, adminCa: Pem, transport: (who: Pem, signAs: { userId: string; privateJwk: JWK & { kid: string } }) => Transport): Promise<Transport> {
  const cert = await issueCertificate(await loadCertificateAuthority(adminCa), { commonName: "bench-operator", usage: "client" });
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const privateJwk = { ...(await exportJWK(privateKey)), kid: await calculateJwkThumbprint(publicJwk, "sha256") };
  const { user } = await createClient(PrivilegedUserService, securityOfficer).createPrivilegedUser({
    displayName: "Bench Operator",
    role: PrivilegedRole.REGISTRATION_OPERATOR,
    certificateBinding: { binding: { case: "spkiSha256", value: Buffer.from(spkiSha256(new X509Certificate(cert.cert)), "hex") } },
    publicKeyJwk: JSON.stringify(publicJwk),
    keyLabel: "bench",
  });
  return transport(cert, { userId: user!.userId, privateJwk });
}

/** Enrolled and activation code issued by the operator, activated from its device (SDK builders), key generated. */
async function activeSignerWithCredential(operator: Transport, frontEndTransport: Transport): Promise<Omit<BenchSigner, "keyId">> {
  const ra = createClient(RegistrationService, operator);
  const { signer } = await ra.enrollSigner({
    identity: { kind: SignerKind.NATURAL_PERSON, legalName: "Bench Signer", displayName: "Bench", email: `bench.${process.pid}@example.jp`, country: "JP" },
    proofing: { method: IdentityProofingMethod.IN_PERSON, evidenceReference: "BENCH-1", proofedAt: timestampFromDate(new Date(Date.now() - 60_000)) },
  });
  const signerId = signer!.signerId;
  const { activationCode } = await ra.issueActivationCode({ signerId });
  const device = createClient(SignerService, frontEndTransport);
  const ch = await device.createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
  const deviceKey = await createDeviceKey();
  const { request } = await buildActivationRequest({
    signerId, activationCode: activationCode!.code, pin: benchPin, deviceKey, enrollTotp: false,
    challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience,
  });
  await device.activate(request);
  const { credential } = await ra.generateKey({ signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "bench" });
  return { signerId, credentialId: credential!.credentialId, deviceKey, publicKeySpki: credential!.publicKeySpki };
}

/**
 * Certifies the credential with the development signer issuing CA (`inkan init`, trusted by the
 * first policy) and imports the certificate, which makes it ACTIVE, as in production. Returns its
 * module key id (for the raw figures).
 */
async function certifyCredential(operator: Transport, issuingCa: Pem, credentialId: string, spki: Uint8Array): Promise<string> {
  const certificate = await issueSignerCertificate(await loadCertificateAuthority(issuingCa), spki, { subject: "C=JP, O=Inkan bench, CN=Bench Signer" });
  const { credential } = await createClient(RegistrationService, operator).importCertificate({ credentialId, certificateChain: [certificate] });
  if (!credential?.keyId) throw new Error("ImportCertificate returned no credential");
  return credential.keyId;
}
