/**
 * The embedded crypto module: a SoftHSM2 token kept in the data directory (development and
 * single-node use; production points the same adapter at an HSM's PKCS#11 library).
 *
 * Layout written by `initEmbeddedToken(dataDir)`:
 * ```
 * <dataDir>/softhsm2.conf   directories.tokendir = <dataDir>/tokens, objectstore.backend = file
 * <dataDir>/tokens/         SoftHSM2's token files (0700)
 * <dataDir>/hsm/so-pin      generated security-officer PIN (0600; directory 0700)
 * <dataDir>/hsm/user-pin    generated user PIN (0600)
 * ```
 * The PINs sit next to the token they protect, so this token guards against nothing a reader of
 * the data directory could not do: development only (hsm/README says so too).
 *
 * SoftHSM2 reads SOFTHSM2_CONF when the library is initialized, so these functions set
 * `process.env.SOFTHSM2_CONF` before loading it; one process uses one SoftHSM2 configuration
 * (a second data directory in the same process is refused while the library is loaded).
 *
 * `initEmbeddedToken` is idempotent: on a data directory that already has the token it reuses the
 * token and its PINs, creates only the system keys that are missing, and destroys nothing. A
 * half-done earlier run (PIN files written, token not yet initialized; or token initialized,
 * user PIN not yet set) is completed. States it cannot explain (a token without its PIN files,
 * one PIN file without the other, a configuration pointing elsewhere) are refused with a reason.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { InkanError } from "../../errors.js";
import type { SystemKey } from "../port.js";
import { toInkanError } from "./errors.js";
import { acquireLibrary, CKF_TOKEN_INITIALIZED, CKF_USER_PIN_INITIALIZED, loadedLibraryConf, pkcs11js, releaseLibrary, type Handle, type Pkcs11 } from "./library.js";
import { createPkcs11CryptoModule, type Pkcs11CryptoModule } from "./pkcs11-crypto-module.js";
import { formatPkcs11Uri } from "./uri.js";

/** The embedded token's label. */
export const EMBEDDED_TOKEN_LABEL = "inkan";

/** Where distributions install SoftHSM2's PKCS#11 library; the first that exists is used. */
export const SOFTHSM_LIBRARY_CANDIDATES = [
  "/usr/lib/softhsm/libsofthsm2.so",
  "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/lib64/pkcs11/libsofthsm2.so",
  "/usr/local/lib/softhsm/libsofthsm2.so",
  "/opt/homebrew/lib/softhsm/libsofthsm2.so",
] as const;

export interface EmbeddedTokenOptions {
  /** The SoftHSM2 library; default: the first of SOFTHSM_LIBRARY_CANDIDATES that exists. */
  library?: string;
}

export interface EmbeddedToken {
  dataDir: string;
  /** PKCS#11 library path. */
  library: string;
  /** The softhsm2.conf written into the data directory (SOFTHSM2_CONF). */
  confPath: string;
  tokenLabel: string;
  /** RFC 7512 URI of the token, with the user PIN file as pin-source. */
  tokenUri: string;
  userPinFile: string;
  soPinFile: string;
}

export interface InitEmbeddedTokenResult extends EmbeddedToken {
  /** True when this call initialized the token; false when it found it already there. */
  tokenCreated: boolean;
  /** System keys this call created (empty when all were there). */
  systemKeysCreated: SystemKey[];
}

/** The paths of the embedded token in `dataDir` (nothing is read or written). */
export function embeddedTokenPaths(dataDir: string, options: EmbeddedTokenOptions = {}): EmbeddedToken {
  const dir = resolve(dataDir);
  const library = options.library ?? findSoftHsmLibrary();
  const userPinFile = join(dir, "hsm", "user-pin");
  return {
    dataDir: dir,
    library,
    confPath: join(dir, "softhsm2.conf"),
    tokenLabel: EMBEDDED_TOKEN_LABEL,
    tokenUri: formatPkcs11Uri({ token: EMBEDDED_TOKEN_LABEL, modulePath: library, pinSource: userPinFile }),
    userPinFile,
    soPinFile: join(dir, "hsm", "so-pin"),
  };
}

/** The installed SoftHSM2 library, or a clear error saying how to install it. */
export function findSoftHsmLibrary(): string {
  const found = SOFTHSM_LIBRARY_CANDIDATES.find((path) => existsSync(path));
  if (!found) {
    throw new InkanError(
      "CRYPTO_MODULE_FAILURE",
      "SoftHSM2 is not installed (no libsofthsm2.so found); install it, e.g. `apt-get install -y softhsm2`, or configure an HSM's PKCS#11 library",
    );
  }
  return found;
}

/**
 * Creates (or completes) the embedded token in `dataDir` and the SAM's system keys. Idempotent:
 * a second call reuses the token and keys and reports `tokenCreated: false`, `systemKeysCreated: []`.
 */
export async function initEmbeddedToken(dataDir: string, options: EmbeddedTokenOptions = {}): Promise<InitEmbeddedTokenResult> {
  const paths = embeddedTokenPaths(dataDir, options);
  await mkdir(paths.dataDir, { recursive: true });
  await ensurePrivateDir(join(paths.dataDir, "tokens"));
  await ensurePrivateDir(join(paths.dataDir, "hsm"));
  await writeConf(paths);
  await writeReadme(join(paths.dataDir, "hsm", "README"));
  useConf(paths);

  let tokenCreated = false;
  let p11: Pkcs11;
  try {
    p11 = acquireLibrary(paths.library);
  } catch (err) {
    throw new InkanError("CRYPTO_MODULE_FAILURE", `cannot load or initialize ${paths.library}`, { cause: err });
  }
  try {
    let slot = findEmbeddedSlot(p11);
    const soPinExists = existsSync(paths.soPinFile);
    const userPinExists = existsSync(paths.userPinFile);
    if (soPinExists !== userPinExists) {
      throw new InkanError("CRYPTO_MODULE_FAILURE", `only one of ${paths.soPinFile} and ${paths.userPinFile} exists; refusing to guess`);
    }
    if (slot && !soPinExists) {
      throw new InkanError("CRYPTO_MODULE_FAILURE", `token "${EMBEDDED_TOKEN_LABEL}" exists but its PIN files are missing; refusing to touch it`);
    }
    if (!soPinExists) {
      // Exclusive creation: a concurrent init fails here instead of overwriting a PIN.
      await writeSecret(paths.soPinFile, generatePin());
      await writeSecret(paths.userPinFile, generatePin());
    }
    const soPin = await readSecret(paths.soPinFile);
    const userPin = await readSecret(paths.userPinFile);
    if (!slot) {
      const free = p11.C_GetSlotList(true).find((s) => (p11.C_GetTokenInfo(s).flags & CKF_TOKEN_INITIALIZED) === 0);
      if (!free) throw new InkanError("CRYPTO_MODULE_FAILURE", "SoftHSM2 offers no free slot to initialize");
      // The label is a blank-padded 32-byte field that the library reads in full.
      p11.C_InitToken(free, soPin, EMBEDDED_TOKEN_LABEL.padEnd(32, " "));
      tokenCreated = true;
      slot = findEmbeddedSlot(p11); // SoftHSM2 moves an initialized token to a new slot id
      if (!slot) throw new InkanError("CRYPTO_MODULE_FAILURE", "the token was initialized but cannot be found");
    }
    if ((p11.C_GetTokenInfo(slot).flags & CKF_USER_PIN_INITIALIZED) === 0) {
      initUserPin(p11, slot, soPin, userPin);
    }
  } catch (err) {
    throw toInkanError(err, "token initialization");
  } finally {
    releaseLibrary(paths.library);
  }

  const module = await openEmbeddedCryptoModule(dataDir, options);
  try {
    const systemKeysCreated = await module.ensureSystemKeys();
    return { ...paths, tokenCreated, systemKeysCreated };
  } finally {
    await module.close();
  }
}

/**
 * Opens the crypto module on the embedded token of an initialized data directory (sets
 * SOFTHSM2_CONF first). Refuses a data directory `initEmbeddedToken` has not prepared.
 */
export async function openEmbeddedCryptoModule(
  dataDir: string,
  options: EmbeddedTokenOptions & { poolSize?: number; workers?: number } = {},
): Promise<Pkcs11CryptoModule> {
  const paths = embeddedTokenPaths(dataDir, options);
  if (!existsSync(paths.confPath) || !existsSync(paths.userPinFile)) {
    throw new InkanError("CRYPTO_MODULE_FAILURE", `no embedded token in ${paths.dataDir}; run \`inkan init\` first`);
  }
  useConf(paths);
  return createPkcs11CryptoModule({
    library: paths.library,
    token: formatPkcs11Uri({ token: EMBEDDED_TOKEN_LABEL }),
    pin: { file: paths.userPinFile },
    ...(options.poolSize !== undefined ? { poolSize: options.poolSize } : {}),
    ...(options.workers !== undefined ? { workers: options.workers } : {}),
  });
}

/** Sets SOFTHSM2_CONF, unless the library is already running with another configuration. */
function useConf(paths: EmbeddedToken): void {
  const current = loadedLibraryConf(paths.library);
  if (current.loaded && current.softhsmConf !== paths.confPath) {
    throw new InkanError(
      "CRYPTO_MODULE_FAILURE",
      `SoftHSM2 is already in use in this process with ${String(current.softhsmConf)}; one process serves one data directory`,
    );
  }
  process.env["SOFTHSM2_CONF"] = paths.confPath; // must precede C_Initialize: SoftHSM2 reads it there
}

function confText(paths: EmbeddedToken): string {
  return [
    "# SoftHSM2 configuration of Inkan's embedded crypto module (development only).",
    "# Written by `inkan init`; SOFTHSM2_CONF points here.",
    `directories.tokendir = ${join(paths.dataDir, "tokens")}`,
    "objectstore.backend = file",
    "log.level = ERROR",
    "",
  ].join("\n");
}

async function writeConf(paths: EmbeddedToken): Promise<void> {
  const wanted = confText(paths);
  let existing: string | undefined;
  try {
    existing = await readFile(paths.confPath, "utf8");
  } catch {
    existing = undefined;
  }
  if (existing === undefined) {
    await writeFile(paths.confPath, wanted, { mode: 0o600, flag: "wx" });
    return;
  }
  const tokendir = /^\s*directories\.tokendir\s*=\s*(.+?)\s*$/m.exec(existing)?.[1];
  if (tokendir !== join(paths.dataDir, "tokens")) {
    throw new InkanError("CRYPTO_MODULE_FAILURE", `${paths.confPath} exists and points to another token directory; not touching it`);
  }
}

async function writeReadme(path: string): Promise<void> {
  if (existsSync(path)) return;
  await writeFile(
    path,
    "DEVELOPMENT ONLY. These PINs protect the SoftHSM2 token in ../tokens and sit next to it, so\n" +
      "anyone who can read this directory can use every key in the token. A production deployment\n" +
      "uses an HSM and keeps its PIN elsewhere (a secret store, a file readable only by the service).\n",
    { mode: 0o600 },
  );
}

async function ensurePrivateDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) await chmod(path, 0o700);
}

function generatePin(): string {
  return randomBytes(24).toString("base64url"); // 192 bits, 32 characters
}

async function writeSecret(path: string, value: string): Promise<void> {
  await writeFile(path, `${value}\n`, { mode: 0o600, flag: "wx" });
}

async function readSecret(path: string): Promise<string> {
  const text = (await readFile(path, "utf8")).split(/\r?\n/, 1)[0] ?? "";
  if (!text) throw new InkanError("CRYPTO_MODULE_FAILURE", `${path} is empty`);
  return text;
}

function findEmbeddedSlot(p11: Pkcs11): Handle | undefined {
  return p11.C_GetSlotList(true).find((s) => {
    const info = p11.C_GetTokenInfo(s);
    return (info.flags & CKF_TOKEN_INITIALIZED) !== 0 && info.label.trimEnd() === EMBEDDED_TOKEN_LABEL;
  });
}

function initUserPin(p11: Pkcs11, slot: Handle, soPin: string, userPin: string): void {
  const session = p11.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
  try {
    p11.C_Login(session, pkcs11js.CKU_SO, soPin);
    try {
      p11.C_InitPIN(session, userPin);
    } finally {
      p11.C_Logout(session);
    }
  } finally {
    p11.C_CloseSession(session);
  }
}
