import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { loadCertificateAuthority, type CertificateAuthority } from "../pki/dev-pki.js";
import type { TestServer } from "./harness.js";

x509.cryptoProvider.set(webcrypto as never);

const day = 24 * 60 * 60 * 1000;
const ecdsa = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** The development signer certificate issuing CA that `inkan init` created and the default policy trusts. */
export function signerIssuingCa(t: TestServer): Promise<CertificateAuthority> {
  const read = (f: string) => readFileSync(f, "utf8");
  return loadCertificateAuthority({ cert: read(t.pki.paths.signerIssuingCaCert), key: read(t.pki.paths.signerIssuingCaKey) });
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

function serial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f; // a positive INTEGER
  return Buffer.from(bytes).toString("hex");
}

/**
 * A signer certificate (DER) from `ca` for exactly `spki` (a credential's public_key_spki, embedded
 * as given, so an RSA, EC or Ed25519 key works alike), as an RSSP's issuing CA would make it.
 */
export async function issueSignerCertificate(ca: CertificateAuthority, spki: Uint8Array, options: SignerCertificateOptions = {}): Promise<Uint8Array> {
  const usage = options.keyUsage ?? x509.KeyUsageFlags.nonRepudiation | x509.KeyUsageFlags.digitalSignature;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
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

/** An intermediate CA (ECDSA P-256) issued by `parent`, for chains longer than one certificate. */
export async function issueIntermediateCa(parent: CertificateAuthority, commonName: string, pathLength?: number): Promise<CertificateAuthority> {
  const keys = (await webcrypto.subtle.generateKey(ecdsa, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${commonName}, O=Inkan test PKI`,
    issuer: parent.certificate.subject,
    notBefore: new Date(Date.now() - day),
    notAfter: new Date(Date.now() + 365 * day),
    publicKey: keys.publicKey,
    signingKey: parent.signingKey,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(true, pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(parent.certificate.publicKey),
    ],
  });
  const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  return { certificate, signingKey: keys.privateKey, cert: certificate.toString("pem"), key };
}
