import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { exportJWK, generateKeyPair, calculateJwkThumbprint } from "jose";
import { PrivilegedUsers, spkiSha256, type CertificateBinding, type PrivilegedUserBody } from "./admin/privileged-users.js";
import { SecurityPolicies } from "./admin/security-policy.js";
import { RecordSealer } from "./integrity/record-sealer.js";
import { VerifiedRecords } from "./integrity/sealed-records.js";
import { SamEncryptionKeys } from "./keys/sam-encryption-keys.js";
import { ensureDevCa, ensureDevClientCertificate } from "./pki/dev-identities.js";
import { createCertificateAuthority, loadCertificateAuthority, writeDevPki, type DevPkiPaths } from "./pki/dev-pki.js";
import { openInitStore } from "./init-store.js";
import { initCryptoModule, type ExternalModuleSettings } from "./init-module.js";
import type { PrivilegedRole } from "./store/port.js";

/** What `inkan init` created or found, by absolute path (the `--json` output). */
export interface InitPaths extends DevPkiPaths {
  dataDir: string;
  pkcs11Module: string;
  /** The embedded token's softhsm2.conf (absent on an HSM's module: its configuration is the vendor's). */
  pkcs11Conf?: string | undefined;
  /** RFC 7512 URI of the token. */
  pkcs11Token: string;
  /** Absent when the HSM token's URI names its pin-source. */
  pkcs11PinFile?: string | undefined;
  /** The embedded token's generated SO PIN (absent on an HSM's module: init never holds it). */
  pkcs11SoPinFile?: string | undefined;
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
  /**
   * Issue 18 item 7: the development CA of the signer front end (trusted by the first policy's
   * trusted_front_end_ca_certificates and by `tlsFrontEndCaFiles`'s default), key mode 0600.
   */
  frontEndCaCert: string;
  frontEndCaKey: string;
  /**
   * The signer front end's client identity (the gateway's): `cert` and `key` (PEM) from the
   * front-end CA, and `ca`, the CA that issued the SAM's server certificate (what it trusts the SAM with).
   */
  signerFrontEnd: ClientIdentityPaths;
  /**
   * Issue 19: a second development SCA CA and an SCA certificate from it, whose scope ("demo-b")
   * covers only the signers enrolled in the signer group "demo-b" (the first SCA acts for all).
   */
  secondScaCaCert: string;
  secondScaCaKey: string;
  secondSca: ClientIdentityPaths & { scope: string; signerGroup: string };
  /** Issue 23: a development registration operator and auditor, so every role can be tried at once. */
  registrationOperator: PrivilegedIdentityPaths;
  auditor: PrivilegedIdentityPaths;
}

/** A TLS client identity: certificate and key (PEM files), and the CA to trust the SAM with. */
export interface ClientIdentityPaths {
  cert: string;
  key: string;
  ca: string;
}

/** A privileged user `inkan init` created: client identity, request-signing key (JWK, `sub` = userId, mode 0600) and user id. */
export interface PrivilegedIdentityPaths extends ClientIdentityPaths {
  requestKey: string;
  userId: string;
}

/** The signer group of the second development SCA's scope (issue 19). */
export const secondScaSignerGroup = "demo-b";

export interface InitResult {
  paths: InitPaths;
  /** What this run created; empty when everything existed already. */
  created: string[];
}

/**
 * Initializes a data directory on the embedded defaults: a development PKI, the SoftHSM2 token
 * with the SAM's system keys (or, given `cryptoModule`, those keys on an HSM's token and no
 * embedded token: init-module.ts), the SQLite store (or the PostgreSQL database `store` names),
 * and the first security officer (bound to the development admin certificate, with a
 * request-signing key); for development, one identity of
 * every caller kind besides: the signer front end (its own CA), a second SCA (its own CA, scoped to
 * the signer group "demo-b"), a registration operator and an auditor. Idempotent: what exists is
 * kept and never overwritten; only what is missing is created.
 */
export async function initDataDir(dataDirInput: string, options: {
  /** The store setting (INKAN_STORE); a postgres:// URI initializes that database (issue 21). */
  store?: string | undefined;
  /** An HSM's PKCS#11 module (serve's pkcs11* settings): its system keys instead of the embedded token (init-module.ts). */
  cryptoModule?: ExternalModuleSettings | undefined;
} = {}): Promise<InitResult> {
  const dataDir = resolve(dataDirInput);
  const created: string[] = [];
  const pkiExists = existsSync(join(dataDir, "pki", "ca.crt"));
  const pki = pkiExists ? existingPkiPaths(dataDir) : await writeDevPki(dataDir);
  if (!pkiExists) created.push("development PKI");
  const issuing = await ensureSignerIssuingCa(dataDir);
  if (issuing.created) created.push("signer certificate issuing CA");
  // Issue 18 item 7: the signer front end is a caller kind of its own, with its own CA.
  const frontEndCa = await ensureDevCa(dataDir, "front-end-ca", "Inkan Development Signer Front End CA");
  const frontEnd = await ensureDevClientCertificate(dataDir, "front-end", "signer-front-end-dev", frontEndCa.ca);
  if (frontEndCa.created || frontEnd.created) created.push("signer front end CA and certificate");
  // Issue 19: a second SCA under a second CA, scoped to one signer group.
  const secondScaCa = await ensureDevCa(dataDir, "sca-b-ca", "Inkan Development SCA CA B");
  const secondSca = await ensureDevClientCertificate(dataDir, "sca-b", "sca-dev-b", secondScaCa.ca);
  if (secondScaCa.created || secondSca.created) created.push("second SCA CA and certificate");
  const adminCa = () => loadCertificateAuthority({ cert: readFileSync(pki.adminCaCert, "utf8"), key: readFileSync(pki.adminCaKey, "utf8") });
  const raCert = await ensureDevClientCertificate(dataDir, "registration-operator", "registration-operator-1", adminCa);
  const auditorCert = await ensureDevClientCertificate(dataDir, "auditor", "auditor-1", adminCa);

  const token = await initCryptoModule(dataDir, options.cryptoModule);
  if (token.tokenCreated) created.push("crypto-module token");
  if (token.systemKeysCreated.length > 0) created.push(`system keys (${token.systemKeysCreated.join(", ")})`);

  const adminRequestKey = join(dataDir, "pki", "admin-request-key.jwk");
  const crypto = await token.open();
  const { store, shown: storeFile, creates } = await openInitStore(dataDir, options.store).catch(async (err: unknown) => {
    await crypto.close();
    throw err;
  });
  if (creates) created.push("store");
  let adminUserId: string;
  const devUsers: Partial<Record<PrivilegedRole, string>> = {};
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
    // Issue 23: the development registration operator and auditor (development only, like the
    // first security officer: a production RSSP creates its users with `inkan admin user create`).
    for (const [role, cert, name, label] of [
      ["REGISTRATION_OPERATOR", raCert.cert, "registration-operator", "Development registration operator"],
      ["AUDITOR", auditorCert.cert, "auditor", "Development auditor"],
    ] as const) {
      const user = await ensureDevPrivilegedUser(users, role, cert, join(dataDir, "pki", `${name}-request-key.jwk`), label);
      if (user.created) created.push(`development ${name.replace("-", " ")}`);
      devUsers[role] = user.userId;
    }
    // R-3.2.2.3: the first policy version, sealed; later versions only through PolicyService.
    const policy = await new SecurityPolicies({ records }).ensureDefault({
      trustedScaCaCertificates: [derOf(pki.scaCaCert)],
      trustedAdminCaCertificates: [derOf(pki.adminCaCert)],
      trustedIssuingCaCertificates: [derOf(issuing.cert)],
      trustedFrontEndCaCertificates: [derOf(frontEndCa.cert)],
      groupScopedScaCas: [{ certificate: derOf(secondScaCa.cert), scope: secondScaSignerGroup, groups: [secondScaSignerGroup] }],
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
      frontEndCaCert: frontEndCa.cert,
      frontEndCaKey: frontEndCa.key,
      signerFrontEnd: { cert: frontEnd.cert, key: frontEnd.key, ca: pki.caCert },
      secondScaCaCert: secondScaCa.cert,
      secondScaCaKey: secondScaCa.key,
      secondSca: { cert: secondSca.cert, key: secondSca.key, ca: pki.caCert, scope: secondScaSignerGroup, signerGroup: secondScaSignerGroup },
      registrationOperator: devIdentity(dataDir, pki.caCert, raCert, "registration-operator", devUsers.REGISTRATION_OPERATOR!),
      auditor: devIdentity(dataDir, pki.caCert, auditorCert, "auditor", devUsers.AUDITOR!),
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

/**
 * The development identities of an initialized data directory, read from its files alone (user ids
 * from the request keys' "sub"), without opening the crypto-module token or the store: for
 * `inkan init --demo-signer` while `inkan serve` runs on the same directory. Undefined when a file
 * is missing (run `inkan init` first).
 */
export function devIdentityPaths(dataDirInput: string): Pick<InitPaths, "dataDir" | "caCert" | "adminCert" | "adminKey" | "adminRequestKey" | "adminUserId" | "registrationOperator" | "signerIssuingCaCert" | "signerIssuingCaKey"> | undefined {
  const dataDir = resolve(dataDirInput);
  const p = (name: string) => join(dataDir, "pki", name);
  const sub = (file: string) => (JSON.parse(readFileSync(file, "utf8")) as { sub?: string }).sub ?? "";
  const files = [p("ca.crt"), p("admin.crt"), p("admin.key"), p("admin-request-key.jwk"), p("registration-operator.crt"), p("registration-operator.key"), p("registration-operator-request-key.jwk"), p("signer-issuing-ca.crt"), p("signer-issuing-ca.key")];
  if (!files.every((f) => existsSync(f))) return undefined;
  return {
    dataDir,
    caCert: p("ca.crt"), adminCert: p("admin.crt"), adminKey: p("admin.key"), adminRequestKey: p("admin-request-key.jwk"), adminUserId: sub(p("admin-request-key.jwk")),
    registrationOperator: devIdentity(dataDir, p("ca.crt"), { cert: p("registration-operator.crt"), key: p("registration-operator.key") }, "registration-operator", sub(p("registration-operator-request-key.jwk"))),
    signerIssuingCaCert: p("signer-issuing-ca.crt"), signerIssuingCaKey: p("signer-issuing-ca.key"),
  };
}

function devIdentity(dataDir: string, ca: string, files: { cert: string; key: string }, name: string, userId: string): PrivilegedIdentityPaths {
  return { cert: files.cert, key: files.key, ca, requestKey: join(dataDir, "pki", `${name}-request-key.jwk`), userId };
}

/**
 * The development privileged user of `role` bound to `certFile`'s public key, created with a fresh
 * request-signing key (written to `requestKeyFile`, mode 0600, `sub` = the user id) when no user
 * is bound to it yet. Refuses when a user is bound but the key file is gone (it cannot be recreated).
 */
async function ensureDevPrivilegedUser(users: PrivilegedUsers, role: PrivilegedRole, certFile: string, requestKeyFile: string, displayName: string): Promise<{ userId: string; created: boolean }> {
  const binding: CertificateBinding = { spkiSha256: spkiSha256(new X509Certificate(readFileSync(certFile))) };
  const existing = await users.userOfCertificate(binding);
  if (existing) {
    if (!existsSync(requestKeyFile)) throw new Error(`${requestKeyFile} is missing: the ${displayName.toLowerCase()} exists but cannot sign requests; remove the user or restore the file`);
    return { userId: existing.id, created: false };
  }
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk, "sha256");
  const { user } = await users.create({
    role, displayName, certificateBinding: binding, publicKeyJwk: JSON.stringify(publicJwk), keyLabel: "created by inkan init", createdBy: "inkan-init", now: new Date(),
  });
  writeFileSync(requestKeyFile, JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: "ES256", sub: user.id }) + "\n", { mode: 0o600 });
  return { userId: user.id, created: true };
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
