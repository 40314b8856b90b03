import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { exportJWK, generateKeyPair, calculateJwkThumbprint } from "jose";
import { PrivilegedUsers, spkiSha256, type CertificateBinding, type PrivilegedUserBody } from "./admin/privileged-users.js";
import { SecurityPolicies } from "./admin/security-policy.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "./crypto/pkcs11/softhsm-token.js";
import { RecordSealer } from "./integrity/record-sealer.js";
import { VerifiedRecords } from "./integrity/sealed-records.js";
import { SamEncryptionKeys } from "./keys/sam-encryption-keys.js";
import { createCertificateAuthority, writeDevPki, type DevPkiPaths } from "./pki/dev-pki.js";
import { openInitStore } from "./init-store.js";

/** What `inkan init` created or found, by absolute path (the `--json` output). */
export interface InitPaths extends DevPkiPaths {
  dataDir: string;
  pkcs11Module: string;
  pkcs11Conf: string;
  /** RFC 7512 URI of the token. */
  pkcs11Token: string;
  pkcs11PinFile: string;
  pkcs11SoPinFile: string;
  store: string;
  /** The first security officer's request-signing private key (JWK with its kid), mode 0600. */
  adminRequestKey: string;
  /** The first security officer's user id. */
  adminUserId: string;
  /**
   * The development CA that issues signers' certificates, trusted by the first security policy
   * (trusted_issuing_ca_certificates), so that ImportCertificate works on a fresh setup; key mode 0600.
   */
  signerIssuingCaCert: string;
  signerIssuingCaKey: string;
}

export interface InitResult {
  paths: InitPaths;
  /** What this run created; empty when everything existed already. */
  created: string[];
}

/**
 * Initializes a data directory on the embedded defaults: a development PKI, the SoftHSM2 token
 * with the SAM's system keys, the SQLite store, and the first security officer (bound to the
 * development admin certificate, with a request-signing key). Idempotent: what exists is kept and
 * never overwritten; only what is missing is created.
 */
export async function initDataDir(dataDirInput: string, options: { /** The store setting (INKAN_STORE); a postgres:// URI initializes that database (issue 21). */ store?: string | undefined } = {}): Promise<InitResult> {
  const dataDir = resolve(dataDirInput);
  const created: string[] = [];
  const pkiExists = existsSync(join(dataDir, "pki", "ca.crt"));
  const pki = pkiExists ? existingPkiPaths(dataDir) : await writeDevPki(dataDir);
  if (!pkiExists) created.push("development PKI");
  const issuing = await ensureSignerIssuingCa(dataDir);
  if (issuing.created) created.push("signer certificate issuing CA");

  const token = await initEmbeddedToken(dataDir);
  if (token.tokenCreated) created.push("crypto-module token");
  if (token.systemKeysCreated.length > 0) created.push(`system keys (${token.systemKeysCreated.join(", ")})`);

  const adminRequestKey = join(dataDir, "pki", "admin-request-key.jwk");
  const crypto = await openEmbeddedCryptoModule(dataDir);
  const { store, shown: storeFile, creates } = await openInitStore(dataDir, options.store).catch(async (err: unknown) => {
    await crypto.close();
    throw err;
  });
  if (creates) created.push("store");
  let adminUserId: string;
  try {
    const records = new VerifiedRecords(store, new RecordSealer({ keys: crypto }));
    const users = new PrivilegedUsers({ records, oneTime: store, random: crypto });
    // T-2.2.2.1: the first security officer is bound by the public key of pki/admin.crt.
    const binding: CertificateBinding = { spkiSha256: spkiSha256(new X509Certificate(readFileSync(pki.adminCert))) };
    let admin = await users.userOfCertificate(binding);
    if (!admin) {
      admin = await rebindFirstOfficer(records, users, pki.adminCert, binding);
      if (admin) created.push("first security officer's binding by public key");
    }
    if (admin) {
      adminUserId = admin.id;
    } else if (await users.any()) {
      throw new Error("privileged users exist but none is bound to the development admin certificate; refusing to add one");
    } else {
      // R-3.2.1.6: the only privileged user created outside the admin service, once, at init.
      const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
      const publicJwk = await exportJWK(publicKey);
      const kid = await calculateJwkThumbprint(publicJwk, "sha256");
      const { user } = await users.create({
        role: "SECURITY_OFFICER",
        displayName: "First security officer",
        certificateBinding: binding,
        publicKeyJwk: JSON.stringify(publicJwk),
        keyLabel: "created by inkan init",
        createdBy: "inkan-init",
        now: new Date(),
      });
      adminUserId = user.id;
      writeFileSync(adminRequestKey, JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: "ES256", sub: user.id }) + "\n", { mode: 0o600 });
      created.push("first security officer");
    }
    // R-3.2.2.3: the first policy version, sealed; later versions only through PolicyService.
    const policy = await new SecurityPolicies({ records }).ensureDefault({
      trustedScaCaCertificates: [derOf(pki.scaCaCert)],
      trustedAdminCaCertificates: [derOf(pki.adminCaCert)],
      trustedIssuingCaCertificates: [derOf(issuing.cert)],
      now: new Date(),
    });
    if (policy) created.push("security policy (version 1)");
    // R-3.2.1.2 / T-2.2.1.5: the SAM's JWE encryption key (private half only in the module).
    await new SamEncryptionKeys({ crypto, onKeyCreated: () => created.push("SAM encryption key") }).ensureCurrentKey(new Date());
  } finally {
    await store.close();
    await crypto.close();
  }
  return {
    created,
    paths: {
      dataDir,
      ...pki,
      pkcs11Module: token.library,
      pkcs11Conf: token.confPath,
      pkcs11Token: token.tokenUri,
      pkcs11PinFile: token.userPinFile,
      pkcs11SoPinFile: token.soPinFile,
      store: storeFile,
      adminRequestKey,
      adminUserId,
      signerIssuingCaCert: issuing.cert,
      signerIssuingCaKey: issuing.key,
    },
  };
}

/**
 * The development "signer certificate issuing CA" in `<dataDir>/pki`, created when missing (also in
 * a data directory initialized before it existed): for development and tests only, like the rest of
 * the development PKI. A production policy trusts the RSSP's real issuing CAs instead.
 */
async function ensureSignerIssuingCa(dataDir: string): Promise<{ cert: string; key: string; created: boolean }> {
  const cert = join(dataDir, "pki", "signer-issuing-ca.crt");
  const key = join(dataDir, "pki", "signer-issuing-ca.key");
  if (existsSync(cert) && existsSync(key)) return { cert, key, created: false };
  const ca = await createCertificateAuthority("Inkan Development Signer Issuing CA");
  writeFileSync(key, ca.key, { mode: 0o600 });
  writeFileSync(cert, ca.cert, { mode: 0o644 });
  return { cert, key, created: true };
}

function derOf(certFile: string): Uint8Array {
  return new X509Certificate(readFileSync(certFile)).raw;
}

/**
 * A data directory initialized before issue 13 bound the first security officer by the SHA-256 of
 * pki/admin.crt, a form that identifies nobody now: binds that officer by the same certificate's
 * public key instead (once; the sealed record's version and updatedAt show it). Undefined when there is none.
 */
async function rebindFirstOfficer(records: VerifiedRecords, users: PrivilegedUsers, adminCert: string, binding: CertificateBinding) {
  const legacy = await records.find("privileged-user", "certificateFingerprint", `sha256:${sha256Of(adminCert)}`);
  if (!legacy || legacy.status !== "ACTIVE") return undefined;
  const body = JSON.parse(legacy.body) as PrivilegedUserBody;
  return users.update({ userId: legacy.id, expectedVersion: legacy.version, displayName: body.displayName, certificateBinding: binding, by: "inkan-init", now: new Date() });
}

function sha256Of(certFile: string): string {
  return new X509Certificate(readFileSync(certFile)).fingerprint256.replaceAll(":", "").toLowerCase();
}

function existingPkiPaths(dataDir: string): DevPkiPaths {
  const p = (name: string) => join(dataDir, "pki", name);
  return {
    caCert: p("ca.crt"), serverCert: p("server.crt"), serverKey: p("server.key"),
    scaCaCert: p("sca-ca.crt"), scaCaKey: p("sca-ca.key"), scaCert: p("sca.crt"), scaKey: p("sca.key"),
    adminCaCert: p("admin-ca.crt"), adminCaKey: p("admin-ca.key"), adminCert: p("admin.crt"), adminKey: p("admin.key"),
  };
}
