import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority, type CertificateAuthority } from "./dev-pki.js";

/** A development CA in `<dataDir>/pki`: its files, and whether this run created it. */
export interface DevCaFiles {
  cert: string;
  key: string;
  created: boolean;
}

/**
 * The development CA `<dataDir>/pki/<name>.crt` (key `<name>.key`, mode 0600), created when either
 * file is missing (also in a data directory initialized before this CA existed). For development
 * and tests only, like the rest of the development PKI.
 */
export async function ensureDevCa(dataDir: string, name: string, commonName: string): Promise<DevCaFiles & { ca: () => Promise<CertificateAuthority> }> {
  const cert = join(dataDir, "pki", `${name}.crt`);
  const key = join(dataDir, "pki", `${name}.key`);
  const exists = existsSync(cert) && existsSync(key);
  if (!exists) {
    const ca = await createCertificateAuthority(commonName);
    writeFileSync(key, ca.key, { mode: 0o600 });
    writeFileSync(cert, ca.cert, { mode: 0o644 });
  }
  return { cert, key, created: !exists, ca: () => loadCertificateAuthority({ cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") }) };
}

/**
 * A development TLS client certificate `<dataDir>/pki/<name>.crt` (key `<name>.key`, mode 0600)
 * from `issuer`, created when either file is missing. Its profile is the one every caller kind
 * needs (README, "Client certificates"): key usage digitalSignature, extended key usage clientAuth.
 */
export async function ensureDevClientCertificate(dataDir: string, name: string, commonName: string, issuer: () => Promise<CertificateAuthority>): Promise<DevCaFiles> {
  const cert = join(dataDir, "pki", `${name}.crt`);
  const key = join(dataDir, "pki", `${name}.key`);
  const exists = existsSync(cert) && existsSync(key);
  if (!exists) {
    const pem = await issueCertificate(await issuer(), { commonName, usage: "client" });
    writeFileSync(key, pem.key, { mode: 0o600 });
    writeFileSync(cert, pem.cert, { mode: 0o644 });
  }
  return { cert, key, created: !exists };
}
