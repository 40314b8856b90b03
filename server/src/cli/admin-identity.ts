/**
 * Who `inkan admin` acts as and where it connects: the SAM's address, the CA that issued its
 * server certificate, the privileged user's client certificate and key, their request-signing
 * private key (a JWK file) and their user id. Each comes from a flag, else an INKAN_ADMIN_*
 * variable, else one source of defaults: `--profile NAME` (saved by `inkan admin login`), else
 * `--from-init FILE` (the `inkan init --json` output), else `--data-dir DIR` (the files `inkan init`
 * wrote for the first security officer). Secrets come only from files.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createAdminRequestSigner } from "@inkan/sdk";
import type { JWK } from "jose";

/** A problem with the command line or the identity files: exit code 2, nothing was sent. */
export class AdminUsageError extends Error {}

export const identityOptions = {
  target: { type: "string", env: "INKAN_ADMIN_TARGET", help: "the SAM's URL (default https://127.0.0.1:8443, `inkan serve`'s default)" },
  ca: { type: "string", env: "INKAN_ADMIN_CA", help: "PEM file of the CA that issued the SAM's server certificate" },
  cert: { type: "string", env: "INKAN_ADMIN_CERT", help: "PEM file of your admin client certificate" },
  key: { type: "string", env: "INKAN_ADMIN_KEY", help: "PEM file of its private key" },
  "request-key": { type: "string", env: "INKAN_ADMIN_REQUEST_KEY", help: "JWK file of your request-signing private key (with its kid)" },
  "user-id": { type: "string", env: "INKAN_ADMIN_USER_ID", help: "your privileged user id (default: the request key's \"sub\")" },
  profile: { type: "string", env: "INKAN_ADMIN_PROFILE", help: "a profile written by `inkan admin login --profile NAME`" },
  "from-init": { type: "string", env: "INKAN_ADMIN_FROM_INIT", help: "the `inkan init --json` output: the first security officer's files" },
  "data-dir": { type: "string", env: "INKAN_DATA_DIR", help: "an `inkan init` data directory: the first security officer's files in DIR/pki" },
  role: {
    type: "string",
    env: "INKAN_ADMIN_ROLE",
    help: "security-officer (default), registration-operator or auditor: which development identity --from-init or --data-dir gives (before NOUN VERB for `user create`/`user list`, whose own --role is the user's)",
  },
} as const;

/** The development identities `inkan init` creates, by --role (issue 23): init.json key and file prefix in DIR/pki. */
const initRoles = {
  "security-officer": { initKey: undefined, files: "admin" },
  "registration-operator": { initKey: "registrationOperator", files: "registration-operator" },
  auditor: { initKey: "auditor", files: "auditor" },
} as const;
type InitRole = keyof typeof initRoles;

export type IdentityFlags = Partial<Record<keyof typeof identityOptions, string>>;

export interface AdminIdentity {
  target: string;
  ca: string;
  cert: string;
  key: string;
  userId: string;
  privateJwk: JWK & { kid: string };
}

interface IdentityFiles {
  target?: string;
  ca?: string;
  cert?: string;
  key?: string;
  requestKey?: string;
  userId?: string;
}

/** Where an identity's files are, and who it is: what a profile stores (absolute paths, no secrets). */
export interface IdentityPaths {
  target: string;
  ca: string;
  cert: string;
  key: string;
  requestKey: string;
  userId: string;
}

/**
 * Resolves the identity: each item from its flag, else its variable, else one source of defaults:
 * --profile, else --from-init, else --data-dir.
 */
export function resolveIdentityPaths(flags: IdentityFlags, env: NodeJS.ProcessEnv = process.env): IdentityPaths {
  const pick = (name: keyof typeof identityOptions): string | undefined => flags[name] ?? (env[identityOptions[name].env] || undefined);
  const profile = pick("profile");
  const fromInit = pick("from-init");
  const dataDir = pick("data-dir");
  const roleName = pick("role");
  if (roleName !== undefined && !(roleName in initRoles)) throw new AdminUsageError(`--role ${roleName}: use security-officer, registration-operator or auditor`);
  if (roleName !== undefined && !fromInit && !dataDir) throw new AdminUsageError(`--role ${roleName} picks a development identity of \`inkan init\`: give --from-init FILE or --data-dir DIR with it`);
  if (roleName !== undefined && profile) throw new AdminUsageError(`--role ${roleName} picks an \`inkan init\` identity; a --profile names its own`);
  const role = (roleName ?? "security-officer") as InitRole;
  const defaults: IdentityFiles = profile ? readProfile(profile, env) : fromInit ? initOutputFiles(fromInit, role) : dataDir ? dataDirFiles(dataDir, role) : {};
  const files = {
    ca: pick("ca") ?? defaults.ca,
    cert: pick("cert") ?? defaults.cert,
    key: pick("key") ?? defaults.key,
    requestKey: pick("request-key") ?? defaults.requestKey,
  };
  const missing = Object.entries(files).filter(([, v]) => !v).map(([k]) => (k === "requestKey" ? "--request-key" : `--${k}`));
  if (missing.length > 0) {
    throw new AdminUsageError(`no ${missing.join(", ")}: give them (or INKAN_ADMIN_* variables), --profile NAME, --from-init FILE or --data-dir DIR`);
  }
  const sub = () => subOf(readJwk(files.requestKey!));
  // A request key given by flag or variable names its own user ("sub"); the defaults' user id goes with their key.
  const userId = pick("user-id") ?? (pick("request-key") ? sub() : undefined) ?? defaults.userId ?? sub();
  if (!userId) throw new AdminUsageError(`no --user-id, and ${files.requestKey} has no "sub"`);
  const abs = (f: string | undefined) => resolve(f!);
  return {
    target: pick("target") ?? defaults.target ?? "https://127.0.0.1:8443",
    ca: abs(files.ca),
    cert: abs(files.cert),
    key: abs(files.key),
    requestKey: abs(files.requestKey),
    userId,
  };
}

/** Reads the files an identity names (the secrets are read here, never printed). */
export function loadIdentity(paths: IdentityPaths): AdminIdentity {
  return {
    target: paths.target,
    ca: readText(paths.ca, "--ca"),
    cert: readText(paths.cert, "--cert"),
    key: readText(paths.key, "--key"),
    userId: paths.userId,
    privateJwk: readJwk(paths.requestKey),
  };
}

export function resolveIdentity(flags: IdentityFlags, env: NodeJS.ProcessEnv = process.env): AdminIdentity {
  return loadIdentity(resolveIdentityPaths(flags, env));
}

/** The directory of named profiles: $INKAN_ADMIN_CONFIG_DIR, else $XDG_CONFIG_HOME/inkan, else ~/.config/inkan. */
export function profileFile(name: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name) || name.startsWith(".")) throw new AdminUsageError(`--profile ${name}: use letters, digits, ".", "_" and "-"`);
  const dir = env["INKAN_ADMIN_CONFIG_DIR"] || join(env["XDG_CONFIG_HOME"] || join(homedir(), ".config"), "inkan");
  return join(dir, "profiles", `${name}.json`);
}

function readProfile(name: string, env: NodeJS.ProcessEnv): IdentityFiles {
  const file = profileFile(name, env);
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new AdminUsageError(code === "ENOENT" ? `--profile ${name}: no profile ${file} (write it with \`inkan admin login --profile ${name}\`)` : `--profile ${name}: ${file} is not a profile (${code ?? (err as Error).message})`);
  }
  const out: IdentityFiles = {};
  for (const k of ["target", "ca", "cert", "key", "requestKey", "userId"] as const) {
    const v = (value as Record<string, unknown>)[k];
    if (typeof v === "string") out[k] = v;
  }
  return out;
}

/** `inkan init` writes the user id into the key file as "sub". */
function subOf(jwk: JWK): string | undefined {
  const sub = (jwk as Record<string, unknown>)["sub"];
  return typeof sub === "string" ? sub : undefined;
}

function dataDirFiles(dir: string, role: InitRole): IdentityFiles {
  const pki = join(resolve(dir), "pki");
  const f = initRoles[role].files;
  return { ca: join(pki, "ca.crt"), cert: join(pki, `${f}.crt`), key: join(pki, `${f}.key`), requestKey: join(pki, `${f}-request-key.jwk`) };
}

function initOutputFiles(file: string, role: InitRole): IdentityFiles {
  let paths: Record<string, unknown>;
  try {
    paths = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new AdminUsageError(`--from-init ${file}: not readable as the \`inkan init --json\` output (${(err as Error).message})`);
  }
  const s = (k: string) => (typeof paths[k] === "string" ? (paths[k] as string) : undefined);
  const initKey = initRoles[role].initKey;
  if (initKey) {
    // Issue 23: the development registration operator or auditor of `inkan init`.
    const who = paths[initKey] as Record<string, unknown> | undefined;
    const w = (k: string) => (typeof who?.[k] === "string" ? (who[k] as string) : undefined);
    if (!who || !w("cert") || !w("key") || !w("requestKey")) {
      throw new AdminUsageError(`--from-init ${file}: it has no ${initKey} (run \`inkan init --json\` again: it adds the missing development identities)`);
    }
    return { ca: s("caCert") ?? w("ca"), cert: w("cert"), key: w("key"), requestKey: w("requestKey"), userId: w("userId") } as IdentityFiles;
  }
  const files: IdentityFiles = {};
  for (const [k, v] of [["ca", s("caCert")], ["cert", s("adminCert")], ["key", s("adminKey")], ["requestKey", s("adminRequestKey")], ["userId", s("adminUserId")]] as const) {
    if (v !== undefined) files[k] = v;
  }
  return files;
}

function readText(file: string, flag: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new AdminUsageError(`${flag} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

function readJwk(file: string): JWK & { kid: string } {
  const text = readText(file, "--request-key");
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    throw new AdminUsageError(`--request-key ${file}: not a JWK (JSON)`);
  }
  // The key is the user's secret: say what is wrong with it, never echo it.
  if (typeof jwk !== "object" || jwk === null || typeof jwk.d !== "string" || typeof jwk.kid !== "string") {
    throw new AdminUsageError(`--request-key ${file}: not a private JWK with a "kid"`);
  }
  return jwk as JWK & { kid: string };
}

/** The transport every admin call goes through: mTLS with the user's certificate, each request signed. */
export function adminTransport(id: AdminIdentity): Transport {
  const nodeOptions = { ca: id.ca, cert: id.cert, key: id.key };
  const plain = createGrpcTransport({ baseUrl: id.target, nodeOptions });
  const signer: Interceptor = createAdminRequestSigner({ userId: id.userId, privateJwk: id.privateJwk, nonceTransport: plain });
  return createGrpcTransport({ baseUrl: id.target, nodeOptions, interceptors: [signer] });
}
