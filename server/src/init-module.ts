/**
 * The crypto module `inkan init` prepares (issues 21 and 23): the embedded SoftHSM2 token of the
 * data directory by default, or, with the settings `inkan serve` uses (pkcs11Library, pkcs11Token,
 * pkcs11PinFile: `--config FILE` or INKAN_PKCS11_*), the token of an HSM's PKCS#11 library. There
 * init creates the SAM's system keys that are missing (record sealing, field encryption, audit and
 * challenge signing) and touches nothing else: no token is initialized, no PIN is set or written,
 * and the data directory gets no embedded token. Keys found by label are kept, never overwritten,
 * and checked: exactly one of each, sensitive and not extractable, with its public half, and
 * usable for what the SAM does with it (a key that fails stops init, as it would stop `serve`).
 */
import { isAbsolute, join, resolve } from "node:path";
import { readFileSync } from "node:fs";
import type { RawConfig } from "./config/config.js";
import { ConfigError } from "./config/config.js";
import type { FullCryptoModule, SystemKey } from "./crypto/port.js";
import { ckrName } from "./crypto/pkcs11/library.js";
import { createPkcs11CryptoModule } from "./crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "./crypto/pkcs11/softhsm-token.js";
import { InkanError } from "./errors.js";

/** An HSM's PKCS#11 module as `inkan serve` opens it (Config.cryptoModule of kind "pkcs11"). */
export interface ExternalModuleSettings {
  library: string;
  /** RFC 7512 URI of the token; never with pin-value. */
  token: string;
  /** Absolute path of the user PIN file; undefined when the token URI names a pin-source. */
  pinFile: string | undefined;
}

/** What init prepared, for `inkan init --json`, and how the rest of init opens it. */
export interface InitModule {
  library: string;
  /** The embedded token's softhsm2.conf; undefined on an external module (its configuration is the vendor's). */
  confPath: string | undefined;
  tokenUri: string;
  userPinFile: string | undefined;
  /** The embedded token's generated SO PIN; undefined on an external module (init never holds its SO PIN). */
  soPinFile: string | undefined;
  tokenCreated: boolean;
  systemKeysCreated: SystemKey[];
  open(): Promise<FullCryptoModule>;
}

/**
 * The external module the raw settings name, checked with the rules `parseConfig` applies for
 * `inkan serve` (relative PIN file inside `dataDir`); undefined when pkcs11Library is unset (the
 * embedded token). The TLS settings are not checked here: init writes the development PKI.
 */
export function externalModuleSettings(raw: RawConfig, dataDir: string): ExternalModuleSettings | undefined {
  const problems: string[] = [];
  const readable = (path: string, file: string) => {
    try {
      readFileSync(file);
    } catch {
      problems.push(`${path}: ${file} is not readable`);
    }
  };
  if (raw.pkcs11Library === undefined) {
    if (raw.pkcs11Token !== undefined || raw.pkcs11PinFile !== undefined) problems.push("pkcs11Library: required when pkcs11Token or pkcs11PinFile is set");
    if (problems.length > 0) throw new ConfigError(problems);
    return undefined;
  }
  readable("pkcs11Library", raw.pkcs11Library);
  const token = raw.pkcs11Token ?? "";
  if (!token.startsWith("pkcs11:")) problems.push(`pkcs11Token: must be an RFC 7512 URI such as "pkcs11:token=inkan"`);
  if (/[;?&]pin-value=/.test(token)) problems.push("pkcs11Token: must not carry the PIN (pin-value); use pkcs11PinFile");
  const pinFile = raw.pkcs11PinFile === undefined ? undefined : isAbsolute(raw.pkcs11PinFile) ? raw.pkcs11PinFile : join(resolve(dataDir), raw.pkcs11PinFile);
  if (pinFile !== undefined) readable("pkcs11PinFile", pinFile);
  if (pinFile === undefined && !token.includes("pin-source=")) problems.push("pkcs11PinFile: required unless pkcs11Token names a pin-source");
  if (problems.length > 0) throw new ConfigError(problems);
  return { library: raw.pkcs11Library, token, pinFile };
}

/**
 * Prepares the crypto module init writes to: the embedded token in `dataDir` (created or
 * completed), or the external module's system keys. Idempotent on both.
 */
export async function initCryptoModule(dataDir: string, external: ExternalModuleSettings | undefined): Promise<InitModule> {
  if (!external) {
    const token = await initEmbeddedToken(dataDir);
    return {
      library: token.library, confPath: token.confPath, tokenUri: token.tokenUri, userPinFile: token.userPinFile, soPinFile: token.soPinFile,
      tokenCreated: token.tokenCreated, systemKeysCreated: token.systemKeysCreated,
      open: () => openEmbeddedCryptoModule(dataDir),
    };
  }
  const open = () => createPkcs11CryptoModule({ library: external.library, token: external.token, ...(external.pinFile ? { pin: { file: external.pinFile } } : {}) });
  const module = await open().catch((err: unknown) => {
    // An operator's command: say which module and token, and the module's CKR name (never the PIN).
    const ckr = ckrName((err as { cause?: unknown }).cause);
    throw new InkanError("CRYPTO_MODULE_FAILURE", `${(err as Error).message}${ckr ? ` (${ckr})` : ""}: ${external.library}, ${external.token}; check pkcs11Token and pkcs11PinFile`, { cause: err });
  });
  let systemKeysCreated: SystemKey[];
  try {
    // R-3.1.1.1: only what is missing is generated, inside the module; what is there is checked.
    systemKeysCreated = await module.ensureSystemKeys();
    await checkSystemKeys(module);
  } finally {
    await module.close();
  }
  return { library: external.library, confPath: undefined, tokenUri: external.token, userPinFile: external.pinFile, soPinFile: undefined, tokenCreated: false, systemKeysCreated, open };
}

/** Each system key does what the SAM does with it (the check `serve` makes at start): fail closed here, before anything is written with them. */
async function checkSystemKeys(module: FullCryptoModule): Promise<void> {
  const probe = new TextEncoder().encode("inkan init: system key check");
  try {
    await module.hmacSha256("record-seal", probe);
    const sealed = await module.encrypt("field-encryption", probe, probe);
    const opened = await module.decrypt("field-encryption", sealed, probe);
    if (Buffer.compare(Buffer.from(opened), Buffer.from(probe)) !== 0) throw new Error("field-encryption did not round-trip");
    await module.systemPublicKey("audit-signing");
    await module.systemPublicKey("challenge-signing");
  } catch (err) {
    throw new InkanError("CRYPTO_MODULE_FAILURE", "a system key on the configured token is unusable; it is kept as it is (remove it with the HSM's tools for init to create it anew)", { cause: err });
  }
}
