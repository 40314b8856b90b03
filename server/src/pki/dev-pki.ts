import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { webcrypto } from "node:crypto";
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as never);

const ecdsa = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const day = 24 * 60 * 60 * 1000;

/** A certificate and its private key, both PEM. */
export interface Pem {
  cert: string;
  key: string;
}

/** A CA that can issue certificates: its PEM form and the key material to sign with. */
export interface CertificateAuthority extends Pem {
  certificate: x509.X509Certificate;
  signingKey: CryptoKey;
}

export interface Validity {
  notBefore?: Date;
  notAfter?: Date;
}

async function newKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ecdsa, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

function serial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f; // a positive INTEGER
  return Buffer.from(bytes).toString("hex");
}

/** Creates a self-signed CA (ECDSA P-256), valid for ten years unless told otherwise. */
export async function createCertificateAuthority(commonName: string, validity: Validity = {}): Promise<CertificateAuthority> {
  const keys = await newKeyPair();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}, O=Inkan development PKI`,
    notBefore: validity.notBefore ?? new Date(Date.now() - day),
    notAfter: validity.notAfter ?? new Date(Date.now() + 3650 * day),
    keys,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificate, signingKey: keys.privateKey, cert: certificate.toString("pem"), key: await keyToPem(keys.privateKey) };
}

/** Loads a CA written by writeDevPki (or any PEM ECDSA P-256 CA) to issue more certificates. */
export async function loadCertificateAuthority(pem: Pem): Promise<CertificateAuthority> {
  const der = x509.PemConverter.decodeFirst(pem.key);
  const signingKey = await webcrypto.subtle.importKey("pkcs8", der, ecdsa, false, ["sign"]);
  return { ...pem, certificate: new x509.X509Certificate(pem.cert), signingKey: signingKey as CryptoKey };
}

export interface IssueOptions extends Validity {
  commonName: string;
  /** "server" adds serverAuth and the subject alternative names; "client" adds clientAuth. */
  usage: "server" | "client";
  dnsNames?: string[];
  ipAddresses?: string[];
}

/** Issues an end-entity certificate (ECDSA P-256, one year unless told otherwise) from `ca`. */
export async function issueCertificate(ca: CertificateAuthority, options: IssueOptions): Promise<Pem> {
  const keys = await newKeyPair();
  const names = [
    ...(options.dnsNames ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${options.commonName}, O=Inkan development PKI`,
    issuer: ca.certificate.subject,
    notBefore: options.notBefore ?? new Date(Date.now() - day),
    notAfter: options.notAfter ?? new Date(Date.now() + 365 * day),
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([options.usage === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate.publicKey),
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
    ],
  });
  return { cert: certificate.toString("pem"), key: await keyToPem(keys.privateKey) };
}

/** Absolute paths of the development PKI's files, as `inkan init --json` prints them. */
export interface DevPkiPaths {
  /** The CA that issued the server certificate: clients trust the server through it. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** The CA whose certificates identify SCAs, and one SCA client certificate. */
  scaCaCert: string;
  scaCaKey: string;
  scaCert: string;
  scaKey: string;
  /** The CA whose certificates identify privileged users, and the first privileged user's certificate. */
  adminCaCert: string;
  adminCaKey: string;
  adminCert: string;
  adminKey: string;
}

/**
 * Writes a development PKI into `<dataDir>/pki`: three CAs (server, SCA, admin) so that the role of
 * a caller follows from the CA that issued its certificate, a server certificate for localhost,
 * 127.0.0.1 and ::1, an SCA client certificate and a first privileged-user certificate. Keys are
 * written with mode 0600. For development and tests only: production deployments bring their own PKI.
 */
export async function writeDevPki(dataDir: string): Promise<DevPkiPaths> {
  const dir = join(dataDir, "pki");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = (name: string) => join(dir, name);
  const write = (name: string, pem: string, secret = false) => {
    writeFileSync(path(name), pem, { mode: secret ? 0o600 : 0o644 });
    return path(name);
  };
  const serverCa = await createCertificateAuthority("Inkan Development Server CA");
  const scaCa = await createCertificateAuthority("Inkan Development SCA CA");
  const adminCa = await createCertificateAuthority("Inkan Development Admin CA");
  const server = await issueCertificate(serverCa, {
    commonName: "localhost", usage: "server", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"],
  });
  const sca = await issueCertificate(scaCa, { commonName: "sca-dev", usage: "client" });
  const admin = await issueCertificate(adminCa, { commonName: "security-officer-1", usage: "client" });
  return {
    caCert: write("ca.crt", serverCa.cert),
    serverCert: write("server.crt", server.cert),
    serverKey: write("server.key", server.key, true),
    scaCaCert: write("sca-ca.crt", scaCa.cert),
    scaCaKey: write("sca-ca.key", scaCa.key, true),
    scaCert: write("sca.crt", sca.cert),
    scaKey: write("sca.key", sca.key, true),
    adminCaCert: write("admin-ca.crt", adminCa.cert),
    adminCaKey: write("admin-ca.key", adminCa.key, true),
    adminCert: write("admin.crt", admin.cert),
    adminKey: write("admin.key", admin.key, true),
  };
}

export interface SignerCertificateOptions {
  /** The subject DN (@peculiar/x509 string form, DER order). Default: a test signer. */
  subject?: string;
  /** Default: yesterday to one year from now. */
  notBefore?: Date;
  notAfter?: Date;
  /** x509.KeyUsageFlags; default nonRepudiation | digitalSignature. 0: no key usage extension. */
  keyUsage?: number;
}

/** A random positive 127-bit certificate serial number, hex. */
export function serialNumber(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f; // a positive INTEGER
  return Buffer.from(bytes).toString("hex");
}

/**
 * A signer certificate (DER) from `ca` for exactly `spki` (a credential's public_key_spki, embedded
 * as given, so an RSA, EC or Ed25519 key works alike), as an RSSP's issuing CA would make it: for development
 * (the `inkan init` signer issuing CA), the bench and the tests; production certificates come from the RSSP's CA.
 */
export async function issueSignerCertificate(ca: CertificateAuthority, spki: Uint8Array, options: SignerCertificateOptions = {}): Promise<Uint8Array> {
  const usage = options.keyUsage ?? x509.KeyUsageFlags.nonRepudiation | x509.KeyUsageFlags.digitalSignature;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: options.subject ?? "C=JP, O=Example Corp, CN=Sato Hanako",
    issuer: ca.certificate.subject,
    notBefore: options.notBefore ?? new Date(Date.now() - day),
    notAfter: options.notAfter ?? new Date(Date.now() + 365 * day),
    publicKey: spki,
    signingKey: ca.signingKey,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      ...(usage ? [new x509.KeyUsagesExtension(usage, true)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate.publicKey),
    ],
  });
  return new Uint8Array(certificate.rawData);
}
