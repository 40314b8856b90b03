/**
 * The few certificates the suite makes itself, from CA keys the operator hands it: signer
 * certificates (so that the credentials it enrolls become ACTIVE through ImportCertificate, as in
 * production) and extra client certificates (a second SCA, a registration operator). ECDSA P-256.
 */
import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as never);

const ecdsa = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const day = 24 * 60 * 60 * 1000;

/** A certificate and its private key, both PEM. */
export interface Pem {
  cert: string;
  key: string;
}

export interface Issuer {
  certificate: x509.X509Certificate;
  signingKey: webcrypto.CryptoKey;
}

/** A CA (PEM certificate and PKCS#8 ECDSA P-256 key) to issue from. */
export async function loadIssuer(pem: Pem): Promise<Issuer> {
  const der = x509.PemConverter.decodeFirst(pem.key);
  const signingKey = await webcrypto.subtle.importKey("pkcs8", der, ecdsa, false, ["sign"]);
  return { certificate: new x509.X509Certificate(pem.cert), signingKey };
}

function serial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0]! &= 0x7f; // a positive INTEGER
  return Buffer.from(bytes).toString("hex");
}

/** A signer certificate (DER) for exactly `spki` (a credential's public_key_spki). */
export async function issueSignerCertificate(ca: Issuer, spki: Uint8Array, commonName: string): Promise<Uint8Array> {
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `C=JP, O=Inkan conformance, CN=${commonName}`,
    issuer: ca.certificate.subject,
    notBefore: new Date(Date.now() - day),
    notAfter: new Date(Date.now() + 30 * day),
    publicKey: spki,
    signingKey: ca.signingKey,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.nonRepudiation | x509.KeyUsageFlags.digitalSignature, true),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate.publicKey),
    ],
  });
  return new Uint8Array(certificate.rawData);
}

/** A TLS client certificate from `ca` with a fresh key. */
export async function issueClientCertificate(ca: Issuer, commonName: string): Promise<Pem> {
  const keys = (await webcrypto.subtle.generateKey(ecdsa, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${commonName}, O=Inkan conformance`,
    issuer: ca.certificate.subject,
    notBefore: new Date(Date.now() - day),
    notAfter: new Date(Date.now() + 30 * day),
    publicKey: keys.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate.publicKey),
    ],
  });
  const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  return { cert: certificate.toString("pem"), key };
}
