import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { loadCertificateAuthority, serialNumber, type CertificateAuthority } from "../pki/dev-pki.js";

export { issueSignerCertificate, type SignerCertificateOptions } from "../pki/dev-pki.js";
import type { TestServer } from "./harness.js";

x509.cryptoProvider.set(webcrypto as never);

const day = 24 * 60 * 60 * 1000;
const ecdsa = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** The development signer certificate issuing CA that `inkan init` created and the default policy trusts. */
export function signerIssuingCa(t: TestServer): Promise<CertificateAuthority> {
  const read = (f: string) => readFileSync(f, "utf8");
  return loadCertificateAuthority({ cert: read(t.pki.paths.signerIssuingCaCert), key: read(t.pki.paths.signerIssuingCaKey) });
}

/** An intermediate CA (ECDSA P-256) issued by `parent`, for chains longer than one certificate. */
export async function issueIntermediateCa(parent: CertificateAuthority, commonName: string, pathLength?: number): Promise<CertificateAuthority> {
  const keys = (await webcrypto.subtle.generateKey(ecdsa, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
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
