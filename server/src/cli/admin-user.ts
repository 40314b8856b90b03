/**
 * `inkan admin user ...`: privileged users (PrivilegedUserService, security officer). `create`
 * makes the new user's request-signing key and binds them to a client certificate's public key:
 * one they bring, one from the development admin CA, or a new key with a CSR for the RSSP's
 * admin CA (the binding is the public key's SHA-256, so the certificate issued later works).
 */
import { createHash, webcrypto, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import {
  PrivilegedUserSchema,
  PrivilegedUserService,
  PrivilegedUserStatus,
  UserKeySchema,
  type PrivilegedUser,
} from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { AdminUsageError } from "./admin-identity.js";
import { enumOption, stringOption, type AdminContext, type Noun, type OptionValues } from "./admin-command.js";
import { enumName, isoOf } from "./admin-output.js";
import { allPages } from "./admin-signer.js";

const columns = [
  { header: "USER_ID", value: (u: PrivilegedUser) => u.userId },
  { header: "ROLE", value: (u: PrivilegedUser) => enumName(PrivilegedRole, u.role) },
  { header: "STATUS", value: (u: PrivilegedUser) => enumName(PrivilegedUserStatus, u.status) },
  { header: "DISPLAY_NAME", value: (u: PrivilegedUser) => u.displayName },
  { header: "KEYS", value: (u: PrivilegedUser) => String(u.keys.filter((k) => !k.revokedAt).length) },
  { header: "CREATED_AT", value: (u: PrivilegedUser) => isoOf(u.createdAt) },
];

function printUser(ctx: AdminContext, u: PrivilegedUser | undefined, title: string): void {
  if (u) ctx.out.message(PrivilegedUserSchema, u, title);
}

function readFileOrUsage(file: string, flag: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new AdminUsageError(`--${flag} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** A public JWK from a file; a file holding a private key is refused, so it is never sent. */
function publicJwkOf(file: string): string {
  let jwk: JWK;
  try {
    jwk = JSON.parse(readFileOrUsage(file, "public-key")) as JWK;
  } catch (err) {
    if (err instanceof AdminUsageError) throw err;
    throw new AdminUsageError(`--public-key ${file}: not a JWK (JSON)`);
  }
  if ("d" in jwk) throw new AdminUsageError(`--public-key ${file}: holds a private key; give the public JWK only`);
  return JSON.stringify(jwk);
}

async function newRequestKey(): Promise<{ privateJwk: JWK & { kid: string }; publicJwk: string }> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, "sha256");
  return { privateJwk: { ...(await exportJWK(privateKey)), kid, alg: "ES256" }, publicJwk: JSON.stringify(pub) };
}

interface ClientIdentity {
  spkiSha256: Uint8Array;
  /** What was written, for the summary. */
  files: Record<string, string>;
}

/** The new user's client certificate or key: brought, issued by the development admin CA, or a key and a CSR. */
async function clientIdentity(o: OptionValues, outDir: string, name: string): Promise<ClientIdentity> {
  const given = stringOption(o, "client-cert");
  const devDataDir = stringOption(o, "dev-admin-ca");
  if (given && devDataDir) throw new AdminUsageError("give --client-cert or --dev-admin-ca, not both");
  const spkiOf = (pem: string) => new Uint8Array(createHash("sha256").update(new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" })).digest());
  if (given) {
    const pem = readFileOrUsage(given, "client-cert");
    try {
      return { spkiSha256: spkiOf(pem), files: {} };
    } catch {
      throw new AdminUsageError(`--client-cert ${given}: not a PEM certificate`);
    }
  }
  // The PKI code (and @peculiar/x509) loads only here, so that other commands start quickly.
  const { issueCertificate, loadCertificateAuthority } = await import("../pki/dev-pki.js"); // sets x509's crypto provider
  const x509 = await import("@peculiar/x509");
  if (devDataDir) {
    const pki = join(resolve(devDataDir), "pki");
    const ca = await loadCertificateAuthority({ cert: readFileOrUsage(join(pki, "admin-ca.crt"), "dev-admin-ca"), key: readFileOrUsage(join(pki, "admin-ca.key"), "dev-admin-ca") });
    const issued = await issueCertificate(ca, { commonName: name, usage: "client" });
    writeFileSync(join(outDir, "client.key"), issued.key, { mode: 0o600 });
    writeFileSync(join(outDir, "client.crt"), issued.cert);
    return { spkiSha256: spkiOf(issued.cert), files: { cert: join(outDir, "client.crt"), key: join(outDir, "client.key") } };
  }
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${name.replace(/[,+"\\<>;=]/g, " ")}`, keys, signingAlgorithm: alg });
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);
  writeFileSync(join(outDir, "client.key"), x509.PemConverter.encode(pkcs8, "PRIVATE KEY"), { mode: 0o600 });
  writeFileSync(join(outDir, "client.csr"), csr.toString("pem") + "\n");
  const spki = await webcrypto.subtle.exportKey("spki", keys.publicKey);
  return { spkiSha256: new Uint8Array(createHash("sha256").update(Buffer.from(spki)).digest()), files: { csr: join(outDir, "client.csr"), key: join(outDir, "client.key") } };
}

export const userNoun: Noun = {
  summary: "create, list and remove privileged users and their request-signing keys (security officer)",
  verbs: {
    create: {
      summary: "create a privileged user: request-signing key and client certificate binding; files in --out-dir",
      help: `Writes into --out-dir (created; existing files are never overwritten):
  request-key.jwk   the new user's request-signing PRIVATE key (mode 0600; hand it over securely),
                    unless --public-key names a public JWK the user made themselves
  client.crt/.key   with --dev-admin-ca DATA_DIR: a certificate from the development admin CA
  client.csr/.key   without --client-cert or --dev-admin-ca: a new key and a CSR for the RSSP's
                    admin CA; the user is bound to that key, so the certificate issued from the
                    CSR identifies them
With --client-cert FILE the user is bound to that certificate's public key and no TLS file is written.
A security officer beyond the second is held for a second security officer's approval (exit 4).`,
      options: {
        name: { type: "string", help: "display name (required)" },
        role: { type: "string", help: "security-officer, registration-operator or auditor (required)" },
        "out-dir": { type: "string", help: "directory for the new user's files (required)" },
        "client-cert": { type: "string", help: "bind to this existing client certificate (PEM)" },
        "dev-admin-ca": { type: "string", help: "issue a client certificate from DATA_DIR's development admin CA" },
        "public-key": { type: "string", help: "the user's own request-signing public JWK (no private key is made)" },
        "key-label": { type: "string", help: "a label for the request-signing key" },
      },
      async run(ctx, _args, o) {
        const name = stringOption(o, "name", true);
        const role = enumOption(PrivilegedRole, "PRIVILEGED_ROLE", "role", stringOption(o, "role", true));
        const outDir = resolve(stringOption(o, "out-dir", true));
        mkdirSync(outDir, { recursive: true, mode: 0o700 });
        for (const f of ["request-key.jwk", "client.key", "client.crt", "client.csr"]) {
          if (existsSync(join(outDir, f))) throw new AdminUsageError(`--out-dir ${outDir}: ${f} exists; refusing to overwrite it`);
        }
        const ownKey = stringOption(o, "public-key");
        const requestKey = ownKey ? { publicJwk: publicJwkOf(ownKey), privateJwk: undefined } : await newRequestKey();
        const keyFile = join(outDir, "request-key.jwk");
        if (requestKey.privateJwk) writeFileSync(keyFile, JSON.stringify(requestKey.privateJwk) + "\n", { mode: 0o600 });
        const client = await clientIdentity(o, outDir, name);
        const { user } = await ctx.client(PrivilegedUserService).createPrivilegedUser({
          displayName: name,
          role,
          certificateBinding: { binding: { case: "spkiSha256", value: client.spkiSha256 } },
          publicKeyJwk: requestKey.publicJwk,
          keyLabel: stringOption(o, "key-label") ?? "",
        });
        if (!user) return;
        // The key file names its user, so `--request-key` alone identifies them (as init's does).
        if (requestKey.privateJwk) writeFileSync(keyFile, JSON.stringify({ ...requestKey.privateJwk, sub: user.userId }) + "\n", { mode: 0o600 });
        printUser(ctx, user, `Created privileged user ${user.userId}`);
        ctx.out.note(
          [
            `The new user acts with:`,
            `  --cert ${client.files["cert"] ?? (client.files["csr"] ? "<the certificate the admin CA issues for " + client.files["csr"] + ">" : "<their certificate>")}`,
            `  --key ${client.files["key"] ?? "<its key>"}`,
            `  --request-key ${requestKey.privateJwk ? keyFile : "<their private JWK>"} --user-id ${user.userId}`,
          ].join("\n"),
        );
      },
    },
    list: {
      summary: "list privileged users",
      options: {
        role: { type: "string", help: "only this role" },
        status: { type: "string", help: "active or removed" },
      },
      async run(ctx, _args, o) {
        const users = ctx.client(PrivilegedUserService);
        const role = stringOption(o, "role") ? enumOption(PrivilegedRole, "PRIVILEGED_ROLE", "role", stringOption(o, "role")!) : PrivilegedRole.UNSPECIFIED;
        const status = stringOption(o, "status") ? enumOption(PrivilegedUserStatus, "PRIVILEGED_USER_STATUS", "status", stringOption(o, "status")!) : PrivilegedUserStatus.UNSPECIFIED;
        const items = await allPages(async (pageToken) => {
          const r = await users.listPrivilegedUsers({ page: { pageToken }, role, status });
          return { items: r.users, next: r.page?.nextPageToken ?? "" };
        });
        ctx.out.list(PrivilegedUserSchema, items, columns);
      },
    },
    show: {
      args: "USER_ID",
      summary: "show one privileged user with their keys and certificate binding",
      async run(ctx, [userId]) {
        const { user } = await ctx.client(PrivilegedUserService).getPrivilegedUser({ userId: userId! });
        printUser(ctx, user, `Privileged user ${userId}`);
      },
    },
    update: {
      args: "USER_ID",
      summary: "rename a user or bind them to another client certificate's public key (a new key pair)",
      help: "A certificate renewed for the same key needs no change. Re-binding a security officer may be held for approval (exit 4).",
      options: {
        name: { type: "string", help: "the new display name" },
        "client-cert": { type: "string", help: "bind to this client certificate's public key (PEM)" },
      },
      async run(ctx, [userId], o) {
        const users = ctx.client(PrivilegedUserService);
        const { user } = await users.getPrivilegedUser({ userId: userId! });
        if (!user) throw new Error(`the SAM returned no user ${userId}`);
        const certFile = stringOption(o, "client-cert");
        let binding = user.certificateBinding;
        if (certFile) {
          const pem = readFileOrUsage(certFile, "client-cert");
          try {
            binding = { $typeName: "inkan.admin.v1.CertificateBinding", binding: { case: "spkiSha256", value: new Uint8Array(createHash("sha256").update(new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" })).digest()) } };
          } catch {
            throw new AdminUsageError(`--client-cert ${certFile}: not a PEM certificate`);
          }
        }
        if (!binding) throw new AdminUsageError(`user ${userId} has no certificate binding: give --client-cert`);
        const r = await users.updatePrivilegedUser({ userId: userId!, expectedVersion: user.version, displayName: stringOption(o, "name") ?? user.displayName, certificateBinding: binding });
        printUser(ctx, r.user, `Updated privileged user ${userId}`);
      },
    },
    remove: {
      args: "USER_ID",
      summary: "remove a privileged user (irreversible; a security officer's removal is held for approval)",
      options: { reason: { type: "string", help: "why, for the audit log (required)" } },
      async run(ctx, [userId], o) {
        const { user } = await ctx.client(PrivilegedUserService).removePrivilegedUser({ userId: userId!, reason: stringOption(o, "reason", true) });
        printUser(ctx, user, `Removed privileged user ${userId}`);
      },
    },
    "add-key": {
      args: "USER_ID",
      summary: "register another request-signing public key for a user (a re-key: then revoke-key the old one)",
      options: {
        "public-key": { type: "string", help: "the public JWK file (required)" },
        label: { type: "string", help: "a label for the key" },
      },
      async run(ctx, [userId], o) {
        const r = await ctx.client(PrivilegedUserService).addUserKey({ userId: userId!, publicKeyJwk: publicJwkOf(stringOption(o, "public-key", true)), label: stringOption(o, "label") ?? "" });
        if (r.key) ctx.out.message(UserKeySchema, r.key, `Registered key ${r.key.keyId} for ${userId}`);
      },
    },
    "revoke-key": {
      args: "USER_ID KEY_ID",
      summary: "revoke one of a user's request-signing keys",
      options: { reason: { type: "string", help: "why, for the audit log (required)" } },
      async run(ctx, [userId, keyId], o) {
        const r = await ctx.client(PrivilegedUserService).revokeUserKey({ userId: userId!, keyId: keyId!, reason: stringOption(o, "reason", true) });
        if (r.key) ctx.out.message(UserKeySchema, r.key, `Revoked key ${keyId} of ${userId}`);
      },
    },
  },
};
