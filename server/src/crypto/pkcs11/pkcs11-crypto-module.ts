/**
 * The crypto module on PKCS#11 (pkcs11js): any HSM in production, SoftHSM2 by default.
 *
 * - Private keys are generated in the module as sensitive, non-extractable token objects
 *   (R-3.1.1.3) with a random 16-byte CKA_ID from the module's RNG as key id.
 * - Issue 20: the operations of every request (sign, verify, record-seal HMAC, system-key
 *   signatures, field encryption, ECDH, RSA-OAEP, random bytes) run on worker threads, Init and
 *   operation together, each in a session of its own (crypto-worker-pool.ts): pkcs11js runs
 *   C_*Init synchronously and the module decrypts the key there, which stalled the event loop.
 *   Key generation, key import and the module check run on libuv's thread pool (pkcs11js *Async
 *   calls) in a session of the main thread's pool (session-pool.ts); the short bookkeeping calls
 *   (C_FindObjects, C_GetAttributeValue, C_CreateObject, C_DestroyObject) run on the main thread.
 * - Inputs are checked before the module is called: hash length and algorithm, key usage, the
 *   peer point of an ECDH (invalid-curve attack).
 * - Errors leave as InkanError; a Pkcs11Error (CKR_*) is kept only as the cause.
 * - Module loss (issue 22): a ModuleSupervisor watches the failures and checks the module
 *   periodically; while the module is lost every call fails at once with CRYPTO_MODULE_FAILURE,
 *   and reconnect attempts (with backoff) give the old sessions up, initialize the library again
 *   when needed, log new sessions in and find the system keys by id and check them. Object handles
 *   carry the connection epoch they were found in and are never used in another one: after the
 *   library is initialized again, an old handle number may name another object.
 *
 * Objects are told apart by CKA_LABEL: key pairs of signers and of the SAM carry
 * `inkan-key-<usage>`, system keys `inkan-record-seal`, `inkan-field-encryption`,
 * `inkan-audit-signing` and `inkan-challenge-signing`; data objects carry CKA_APPLICATION "inkan". A key id only ever finds a
 * key pair of the usage the operation needs, never a system key.
 */
import { createHash, createPublicKey, type JsonWebKey, type KeyObject, verify as nodeVerify } from "node:crypto";
import { readFileSync } from "node:fs";
import { InkanError } from "../../errors.js";
import { ContinuousRngCheck } from "../continuous-rng-check.js";
import { assertP256Point } from "../ec-point.js";
import { ECDSA_SCALAR_SIZE, ecdsaDerToRaw, ecdsaRawToDer } from "../ecdsa-signature.js";
import type {
  AuditSignRequest,
  AuditSigning,
  CryptoModule,
  DataObjects,
  DecryptRequest,
  DeriveSharedSecretRequest,
  EncryptionKeyAlgorithm,
  EncryptionKeys,
  GeneratedKey,
  HashAlgorithm,
  ImportKeyAlgorithm,
  ImportKeyRequest,
  KeyAlgorithm,
  KeyImport,
  KeyInfo,
  KeyLookup,
  KeyUsage,
  ModuleAvailability,
  ModuleStateChange,
  SignRequest,
  SigningSystemKey,
  SystemKey,
  SystemKeyProvisioning,
  VerifyRequest,
} from "../port.js";
import { fromModule, hasCkr, isBadCiphertext, isStaleHandle, toInkanError } from "./errors.js";
import {
  acquireLibrary,
  CKF_TOKEN_INITIALIZED,
  CKF_USER_PIN_INITIALIZED,
  CKK_EC_EDWARDS,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  CKM_EDDSA,
  CKZ_DATA_SPECIFIED,
  pkcs11js,
  reinitializeLibrary,
  releaseLibrary,
  type EcdhParams,
  type GcmParams,
  type Handle,
  type Mechanism,
  type OaepParams,
  type PssParams,
  type Pkcs11,
  type Template,
} from "./library.js";
import type { WorkerJob } from "./crypto-worker-protocol.js";
import { CryptoWorkerPool } from "./crypto-worker-pool.js";
import { ModuleSupervisor } from "./module-supervisor.js";
import { ObjectIndexLock, type ObjectIndexGroup } from "./object-index-lock.js";
import { SessionPool } from "./session-pool.js";
import { formatPkcs11Uri, parsePkcs11Uri, pinSourcePath, type Pkcs11Uri } from "./uri.js";

const p = pkcs11js;

/** Where the user PIN comes from: a file (its first line) or an environment variable. */
export type PinSource = { file: string } | { env: string };

export interface Pkcs11CryptoModuleOptions {
  /** Path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  library: string;
  /**
   * The token as an RFC 7512 URI, e.g. `pkcs11:token=inkan`; `serial`, `manufacturer` and `model`
   * narrow the match, and `?pin-source=/path` may name the PIN file.
   */
  token: string;
  /** The user PIN's source; required unless the token URI has `pin-source`. Never argv. */
  pin?: PinSource;
  /** Sessions in the pool, i.e. operations in flight at once (default 4, libuv's default threads). */
  poolSize?: number;
  /**
   * Issue 20: worker threads that run the module operations, each with a session of its own
   * (default: poolSize). Configuration: cryptoWorkers / INKAN_CRYPTO_WORKERS.
   */
  workers?: number;
  /** Issue 22: reconnect backoff and periodic check of the module (see module-supervisor.ts for the defaults). */
  supervision?: { initialDelayMs?: number; maxDelayMs?: number; probeIntervalMs?: number };
}

/** Labels of the system keys (objects found by label). */
export const SYSTEM_KEY_LABELS: Readonly<Record<SystemKey, string>> = {
  "record-seal": "inkan-record-seal",
  "field-encryption": "inkan-field-encryption",
  "audit-signing": "inkan-audit-signing",
  "challenge-signing": "inkan-challenge-signing",
};
/** The system keys that are EC P-256 key pairs (the others are secret keys). */
const isKeyPair = (key: SystemKey): key is SigningSystemKey => key === "audit-signing" || key === "challenge-signing";

const USAGE_LABEL: Readonly<Record<KeyUsage, string>> = {
  sign: "inkan-key-sign",
  derive: "inkan-key-derive",
  decrypt: "inkan-key-decrypt",
  unwrap: "inkan-key-unwrap",
};
const LABEL_USAGE = new Map(Object.entries(USAGE_LABEL).map(([u, l]) => [l, u as KeyUsage]));

const DATA_APPLICATION = "inkan";
const DATA_MAX_VALUE = 4096;
/** The most data objects one listing returns (a node id index of many thousands of nodes is not a deployment). */
const DATA_LIST_MAX = 10_000;
const KEY_ID_BYTES = 16;
const KEY_CACHE_MAX = 10_000;
const ED25519_MAX_MESSAGE = 1024 * 1024;

const HASH_LENGTH: Readonly<Record<Exclude<HashAlgorithm, "NONE">, number>> = { SHA256: 32, SHA384: 48, SHA512: 64 };

/** DER DigestInfo prefixes (RFC 8017 section 9.2, note 1). */
const DIGEST_INFO_PREFIX: Readonly<Record<Exclude<HashAlgorithm, "NONE">, Buffer>> = {
  SHA256: Buffer.from("3031300d060960864801650304020105000420", "hex"),
  SHA384: Buffer.from("3041300d060960864801650304020205000430", "hex"),
  SHA512: Buffer.from("3051300d060960864801650304020305000440", "hex"),
};

type EcCurve = "P-256" | "P-384" | "P-521";
const CURVE_OF: Partial<Record<KeyAlgorithm, EcCurve>> = { EC_P256: "P-256", EC_P384: "P-384", EC_P521: "P-521" };
const EC_PARAMS: Readonly<Record<EcCurve, Buffer>> = {
  "P-256": Buffer.from("06082a8648ce3d030107", "hex"),
  "P-384": Buffer.from("06052b81040022", "hex"),
  "P-521": Buffer.from("06052b81040023", "hex"),
};
/** id-Ed25519 (RFC 8410); SoftHSM2 stores it as the PrintableString "edwards25519". */
const ED25519_PARAMS = Buffer.from("06032b6570", "hex");
const ED25519_PARAMS_PRINTABLE = Buffer.from("130c656477617264733235353139", "hex");
const RSA_BITS: Partial<Record<KeyAlgorithm, number>> = { RSA_2048: 2048, RSA_3072: 3072, RSA_4096: 4096 };
const KEY_ALGORITHMS: ReadonlySet<string> = new Set(["EC_P256", "EC_P384", "EC_P521", "RSA_2048", "RSA_3072", "RSA_4096", "ED25519"]);

interface ResolvedKey {
  keyId: string;
  id: Buffer;
  usage: KeyUsage;
  algorithm: KeyAlgorithm;
  privateKey: Handle;
  publicKey: Handle | undefined;
  generatedInModule: boolean;
  /** The connection the handles belong to. */
  epoch: number;
}

interface SystemObject {
  handle: Handle;
  publicKey?: Handle;
  /** The connection the handles belong to. */
  epoch: number;
}

/** What a connection to the token is made of; a reconnect opens the same token again from it. */
interface Connection {
  p11: Pkcs11;
  library: string;
  uri: Pkcs11Uri;
  pin: string;
  poolSize: number;
  workers: number;
  slot: Handle;
  pool: SessionPool;
  tokenLabel: string;
  /** The token's serial number: a token that comes back must be the same one. */
  tokenSerial: string;
}

/**
 * Opens the token and returns the module. Reads the PIN, loads and initializes the library
 * (once per process, with CKF_OS_LOCKING_OK) and logs in `poolSize` sessions.
 *
 * @example
 * const hsm = await createPkcs11CryptoModule({
 *   library: "/usr/lib/softhsm/libsofthsm2.so",
 *   token: "pkcs11:token=inkan",
 *   pin: { file: "/var/lib/inkan/hsm/user-pin" },
 * });
 */
export async function createPkcs11CryptoModule(options: Pkcs11CryptoModuleOptions): Promise<Pkcs11CryptoModule> {
  return Pkcs11CryptoModule.open(options);
}

export class Pkcs11CryptoModule
  implements CryptoModule, KeyLookup, EncryptionKeys, KeyImport, AuditSigning, SystemKeyProvisioning, DataObjects, ModuleAvailability
{
  readonly #p11: Pkcs11;
  readonly #library: string;
  readonly #connection: Omit<Connection, "slot" | "pool">;
  #slot: Handle;
  #pool: SessionPool;
  /** Issue 20: the worker threads of the current connection (replaced with it on a reconnect). */
  #workers: CryptoWorkerPool;
  /** Counts reconnects: handles found in one epoch are never used in another. */
  #epoch = 0;
  readonly #tokenLabel: string;
  readonly #rng: ContinuousRngCheck;
  readonly #supervisor: ModuleSupervisor;
  readonly #keys = new Map<string, ResolvedKey>();
  readonly #resolving = new Map<string, Promise<ResolvedKey | undefined>>();
  readonly #system = new Map<SystemKey, SystemObject>();
  /** CKA_ID of each system key this module has used: a reconnect finds them by it. */
  readonly #systemIds = new Map<SystemKey, Buffer>();
  readonly #dataLocks = new Map<string, Promise<unknown>>();
  /** Key generation and import apart from object searches (SoftHSM2's file store, see object-index-lock.ts). */
  readonly #objectLock = new ObjectIndexLock();
  #ensuring: Promise<SystemKey[]> | undefined;
  #closed = false;

  private constructor(connection: Connection, supervision: Pkcs11CryptoModuleOptions["supervision"] = {}) {
    const { slot, pool, ...rest } = connection;
    this.#p11 = connection.p11;
    this.#library = connection.library;
    this.#connection = rest;
    this.#slot = slot;
    this.#pool = pool;
    this.#workers = this.#newWorkers(slot);
    this.#tokenLabel = connection.tokenLabel;
    this.#rng = new ContinuousRngCheck((length) => this.#workBytes({ op: "random", length }));
    this.#supervisor = new ModuleSupervisor({
      ...supervision,
      check: async () => void (await this.#checkModule(this.#pool, this.#slot, this.#epoch)),
      reconnect: (attempt) => this.#reconnect(attempt),
      // A PIN refused on reconnect stays refused; retrying every few seconds would lock the token's user.
      isPermanent: (err) => hasCkr(err, "CKR_PIN_INCORRECT", "CKR_PIN_LOCKED", "CKR_PIN_EXPIRED", "CKR_PIN_INVALID", "CKR_PIN_LEN_RANGE"),
    });
  }

  static async open(options: Pkcs11CryptoModuleOptions): Promise<Pkcs11CryptoModule> {
    const uri = parsePkcs11Uri(options.token);
    if (!uri.token && !uri.serial) {
      throw new InkanError("INVALID_REQUEST", "the token URI must name a token (token= or serial=)", { field: "token" });
    }
    const pin = readPin(options.pin, uri);
    let p11: Pkcs11;
    try {
      p11 = acquireLibrary(options.library);
    } catch (err) {
      throw fromModule("CRYPTO_MODULE_FAILURE", "cannot load or initialize the PKCS#11 library", err);
    }
    try {
      const slot = findTokenSlot(p11, uri);
      const poolSize = options.poolSize ?? 4;
      const workers = options.workers ?? poolSize;
      if (!Number.isSafeInteger(workers) || workers < 1) {
        throw new InkanError("INVALID_REQUEST", "the number of crypto worker threads must be a positive integer", { field: "cryptoWorkers" });
      }
      const pool = SessionPool.open({ p11, slot, size: poolSize, pin });
      const info = p11.C_GetTokenInfo(slot);
      const connection: Connection = {
        p11, library: options.library, uri, pin, poolSize, workers, slot, pool, tokenLabel: info.label.trimEnd(), tokenSerial: info.serialNumber.trimEnd(),
      };
      return new Pkcs11CryptoModule(connection, options.supervision);
    } catch (err) {
      releaseLibrary(options.library);
      if (err instanceof InkanError) throw err;
      throw fromModule("CRYPTO_MODULE_FAILURE", "cannot open a logged-in session on the token", err);
    }
  }

  /** The label of the token this module works on. */
  get tokenLabel(): string {
    return this.#tokenLabel;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#supervisor.close(); // no check or reconnect after this
    await this.#workers.close();
    await this.#pool.close();
    releaseLibrary(this.#library);
  }

  // ---- ModuleAvailability (issue 22) ----------------------------------------------------------

  /** False while the module is lost and being reconnected. */
  get available(): boolean {
    return this.#supervisor.available;
  }

  /** Issue 23 (metrics): the current session pool's use; busy / open is its saturation. */
  get sessionPoolStats(): { open: number; busy: number; waiting: number } {
    return this.#pool.stats;
  }

  /** Issue 20: the worker threads of the current connection (their figures; tests observe them). */
  get cryptoWorkers(): CryptoWorkerPool {
    return this.#workers;
  }

  onStateChange(listener: (change: ModuleStateChange) => void): () => void {
    return this.#supervisor.onStateChange(listener);
  }

  // ---- RandomSource -------------------------------------------------------------------------

  async randomBytes(length: number): Promise<Uint8Array> {
    this.#assertOpen();
    try {
      return await this.#rng.randomBytes(length); // R-3.2.2.2: the module's RNG, continuously tested
    } catch (err) {
      throw toInkanError(err, "random generation");
    }
  }

  // ---- SigningKeys --------------------------------------------------------------------------

  async generateKeyPair(algorithm: KeyAlgorithm): Promise<GeneratedKey> {
    assertAlgorithm(algorithm);
    return this.#generate(algorithm, "sign");
  }

  async findPublicKey(keyId: string): Promise<Uint8Array | undefined> {
    return (await this.findKey(keyId))?.publicKeySpki;
  }

  async sign(req: SignRequest): Promise<Uint8Array> {
    this.#assertOpen();
    const plan = planSignature(req); // refuses bad hash lengths and schemes before any module call
    return this.#withKey(req.keyId, "sign", "signing", async (key) => {
      assertSchemeFitsKey(req.scheme, key.algorithm);
      const raw = await this.#workBytes(
        { op: "sign", mechanism: plan.mechanism, key: key.privateKey, data: plan.input, outLength: signatureSize(key.algorithm) },
        key.epoch,
      );
      return req.scheme === "ECDSA" && req.format !== "raw" ? ecdsaRawToDer(raw) : new Uint8Array(raw);
    });
  }

  async verify(req: VerifyRequest): Promise<boolean> {
    this.#assertOpen();
    const plan = planSignature(req);
    return this.#withKey(req.keyId, "sign", "verification", async (key) => {
      assertSchemeFitsKey(req.scheme, key.algorithm);
      const signature = moduleSignature(req, key.algorithm);
      if (!signature) return false;
      const publicKey = key.publicKey ?? (await this.#findPublicHandle(key));
      if (!publicKey) throw new InkanError("CREDENTIAL_NOT_FOUND", "the key's public half is not in the crypto module");
      // R-3.2.1.5 verify-before-release: checked in the module against the key's public-key object
      // (CKR_SIGNATURE_INVALID and CKR_SIGNATURE_LEN_RANGE answer false, see crypto-worker.ts).
      return this.#workBool({ op: "verify", mechanism: plan.mechanism, key: publicKey, data: plan.input, signature }, key.epoch);
    });
  }

  async destroyKeyPair(keyId: string): Promise<void> {
    this.#assertOpen();
    const id = parseKeyId(keyId);
    try {
      const destroyed = await this.#use((s) => {
        let count = 0;
        for (const cls of [p.CKO_PRIVATE_KEY, p.CKO_PUBLIC_KEY]) {
          for (const handle of this.#find(s, [{ type: p.CKA_CLASS, value: cls }, { type: p.CKA_ID, value: id }], 4)) {
            const label = this.#readLabel(s, handle);
            if (label === undefined || !LABEL_USAGE.has(label)) continue; // never a system key or a foreign object
            this.#p11.C_DestroyObject(s, handle);
            count++;
          }
        }
        return count;
      });
      this.#keys.delete(keyId);
      if (destroyed === 0) throw new InkanError("CREDENTIAL_NOT_FOUND", "no key pair with this key id");
    } catch (err) {
      this.#keys.delete(keyId);
      throw toInkanError(err, "key destruction");
    }
  }

  // ---- KeyLookup ----------------------------------------------------------------------------

  async findKey(keyId: string): Promise<KeyInfo | undefined> {
    this.#assertOpen();
    if (!isKeyIdSyntax(keyId)) return undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        const key = await this.#resolve(keyId);
        const spki = key && (await this.#publicSpki(key));
        if (!key || !spki) {
          await this.#supervisor.confirm(); // a lost token looks empty too: see #refuseMissing
          return undefined;
        }
        return {
          keyId: key.keyId,
          uri: this.#keyUri(key.id),
          algorithm: key.algorithm,
          usage: key.usage,
          publicKeySpki: spki,
          generatedInModule: key.generatedInModule,
        };
      } catch (err) {
        if (attempt === 0 && (isStaleHandle(err) || err instanceof ReconnectedError)) {
          this.#keys.delete(keyId); // destroyed meanwhile: look it up again
          continue;
        }
        throw toInkanError(err, "key lookup");
      }
    }
  }

  // ---- EncryptionKeys -----------------------------------------------------------------------

  async generateEncryptionKeyPair(algorithm: EncryptionKeyAlgorithm): Promise<GeneratedKey> {
    if (algorithm === "EC_P256") return this.#generate(algorithm, "derive");
    if (algorithm === "RSA_2048" || algorithm === "RSA_3072" || algorithm === "RSA_4096") return this.#generate(algorithm, "decrypt");
    throw new InkanError("ALGORITHM_NOT_ALLOWED", "encryption keys are EC_P256 or RSA");
  }

  async deriveSharedSecret(req: DeriveSharedSecretRequest): Promise<Uint8Array> {
    this.#assertOpen();
    assertP256Point(req.peerPublicKey); // R-3.2.1.2 invalid-curve attack: off-curve, foreign-curve and infinity refused before the module
    return this.#withKey(req.keyId, "derive", "key agreement", async (key) => {
      if (key.algorithm !== "EC_P256") throw new InkanError("ALGORITHM_NOT_ALLOWED", "key agreement needs a P-256 key");
      // Z leaves the module by design: JWE ECDH-ES runs the Concat KDF on it (RFC 7518 4.6). The
      // derived session object is read and destroyed in the worker.
      const z = await this.#workBytes(
        {
          op: "derive",
          mechanism: withParameter<EcdhParams>(p.CKM_ECDH1_DERIVE, { type: p.CK_PARAMS_EC_DH, kdf: p.CKD_NULL, publicData: Buffer.from(req.peerPublicKey) }),
          key: key.privateKey,
          template: [
            { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
            { type: p.CKA_KEY_TYPE, value: p.CKK_GENERIC_SECRET },
            { type: p.CKA_TOKEN, value: false },
            { type: p.CKA_SENSITIVE, value: false },
            { type: p.CKA_EXTRACTABLE, value: true },
            { type: p.CKA_VALUE_LEN, value: 32 },
          ],
        },
        key.epoch,
      );
      return new Uint8Array(z);
    });
  }

  async decryptOaep(req: DecryptRequest): Promise<Uint8Array> {
    this.#assertOpen();
    return this.#withKey(req.keyId, "decrypt", "decryption", async (key) => {
      const size = modulusBytes(key.algorithm);
      if (size === undefined) throw new InkanError("ALGORITHM_NOT_ALLOWED", "decryption needs an RSA key");
      if (req.ciphertext.length !== size) throw decryptionFailed(undefined);
      try {
        return new Uint8Array(await this.#workBytes({ op: "decrypt", mechanism: OAEP_SHA1, key: key.privateKey, data: req.ciphertext, outLength: size }, key.epoch));
      } catch (err) {
        if (isBadCiphertext(err)) throw decryptionFailed(err); // R-3.2.1.2 one uniform error: no padding oracle
        throw err;
      }
    });
  }

  // ---- KeyImport ----------------------------------------------------------------------------

  async generateImportKeyPair(algorithm: ImportKeyAlgorithm): Promise<GeneratedKey> {
    if (algorithm !== "RSA_2048" && algorithm !== "RSA_3072" && algorithm !== "RSA_4096") {
      throw new InkanError("ALGORITHM_NOT_ALLOWED", "import keys are RSA");
    }
    return this.#generate(algorithm, "unwrap");
  }

  async importWrappedKey(req: ImportKeyRequest): Promise<GeneratedKey> {
    this.#assertOpen();
    assertAlgorithm(req.algorithm);
    const stated = parseStatedPublicKey(req.publicKeySpki, req.algorithm);
    const keyId = await this.#newKeyId();
    const id = Buffer.from(keyId, "hex");
    return this.#withKey(req.importKeyId, "unwrap", "key import", async (importKey) => {
      const size = modulusBytes(importKey.algorithm);
      if (size === undefined) throw new InkanError("ALGORITHM_NOT_ALLOWED", "the import key must be RSA");
      const wrapped = Buffer.from(req.wrappedKey);
      const keyPart = wrapped.subarray(size);
      if (keyPart.length < 16 || keyPart.length % 8 !== 0) {
        throw new InkanError("INVALID_REQUEST", "wrapped key has the wrong layout", { field: "wrappedKey" });
      }
      const privateKey = await this.#use(async (s) => {
        let transport: Handle;
        try {
          transport = await this.#p11.C_UnwrapKeyAsync(s, OAEP_SHA1, importKey.privateKey, wrapped.subarray(0, size), [
            { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
            { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
            { type: p.CKA_TOKEN, value: false },
            { type: p.CKA_PRIVATE, value: true },
            { type: p.CKA_SENSITIVE, value: true },
            { type: p.CKA_EXTRACTABLE, value: false },
            { type: p.CKA_UNWRAP, value: true },
            { type: p.CKA_ENCRYPT, value: false },
            { type: p.CKA_DECRYPT, value: false },
            { type: p.CKA_WRAP, value: false },
          ]);
        } catch (err) {
          if (isBadCiphertext(err)) throw decryptionFailed(err);
          throw err;
        }
        try {
          // AES-256 only. SoftHSM2 2.6.1 reports CKA_VALUE_LEN 0 for an unwrapped key (and refuses
          // the attribute in the template), so there the length cannot be checked.
          const transportLength = readUlong(this.#attributes(s, transport, [p.CKA_VALUE_LEN])[0]);
          if (transportLength !== 0 && transportLength !== 32) {
            throw new InkanError("INVALID_REQUEST", "the transport key must be AES-256", { field: "wrappedKey" });
          }
          // The transport key lives only in this session's object and is destroyed below.
          return await this.#p11.C_UnwrapKeyAsync(s, { mechanism: p.CKM_AES_KEY_WRAP_PAD }, transport, keyPart, [
            { type: p.CKA_KEY_TYPE, value: keyTypeOf(req.algorithm) },
            // SoftHSM2 2.6.1 refuses CKA_MODIFIABLE=false on unwrap (CKR_ATTRIBUTE_READ_ONLY), so an
            // imported key stays modifiable; CKA_SENSITIVE and CKA_EXTRACTABLE cannot be reverted.
            ...privateKeyPolicy(id, "sign").filter((a) => a.type !== p.CKA_MODIFIABLE),
          ]);
        } catch (err) {
          if (isBadCiphertext(err)) throw decryptionFailed(err);
          throw err;
        } finally {
          this.#p11.C_DestroyObject(s, transport);
        }
      }, importKey.epoch, "create");
      try {
        return await this.#finishImport(privateKey, id, keyId, req.algorithm, stated, importKey.epoch);
      } catch (err) {
        await this.#use((s) => this.#destroyQuietly(s, privateKey), importKey.epoch).catch(() => undefined);
        throw err;
      }
    });
  }

  // ---- SystemKeys, AuditSigning, SystemKeyProvisioning --------------------------------------

  async hmacSha256(key: "record-seal", data: Uint8Array): Promise<Uint8Array> {
    this.#assertOpen();
    // R-3.1.1.1, R-3.2.1.7: record seals are computed inside the module with a key that never leaves
    // it. An empty input is signed as a multi-part operation with no parts (see crypto-worker.ts).
    return this.#withSystemKey(key, "HMAC", async (obj) =>
      new Uint8Array(await this.#workBytes({ op: "sign", mechanism: { mechanism: p.CKM_SHA256_HMAC }, key: obj.handle, data, outLength: 32 }, obj.epoch)),
    );
  }

  async encrypt(key: "field-encryption", plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    this.#assertOpen();
    const iv = Buffer.from(await this.randomBytes(12)); // fresh 96-bit IV from the module's RNG per encryption
    return this.#withSystemKey(key, "encryption", async (obj) => {
      const sealed = await this.#workBytes({ op: "encrypt", mechanism: gcm(iv, aad), key: obj.handle, data: plaintext, outLength: plaintext.length + 16 }, obj.epoch);
      return new Uint8Array(Buffer.concat([iv, sealed]));
    });
  }

  async decrypt(key: "field-encryption", sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    this.#assertOpen();
    if (sealed.length < 12 + 16) throw new InkanError("INTEGRITY_VIOLATION", "encrypted field does not decrypt");
    const iv = Buffer.from(sealed.subarray(0, 12));
    const body = Buffer.from(sealed.subarray(12));
    let tagFailure: unknown;
    const plain = await this.#withSystemKey(key, "decryption", async (obj) => {
      try {
        return new Uint8Array(await this.#workBytes({ op: "decrypt", mechanism: gcm(iv, aad), key: obj.handle, data: body, outLength: body.length }, obj.epoch));
      } catch (err) {
        // Wrong key, AAD or a changed bit: the tag does not verify (SoftHSM2: CKR_GENERAL_ERROR).
        if (!isBadCiphertext(err)) throw err;
        tagFailure = err;
        return undefined;
      }
    });
    if (plain) return plain;
    // A broken module answers CKR_GENERAL_ERROR too: it is checked before data is called tampered with.
    await this.#supervisor.confirm();
    throw fromModule("INTEGRITY_VIOLATION", "encrypted field does not decrypt", tagFailure);
  }

  async signWithSystemKey(key: SigningSystemKey, req: AuditSignRequest): Promise<Uint8Array> {
    this.#assertOpen();
    if (!isKeyPair(key)) throw new InkanError("INVALID_REQUEST", "not a signing system key");
    if (req.hash.length !== 32) throw new InkanError("HASH_LENGTH_MISMATCH", "a system key signs a SHA-256 hash (32 bytes)");
    return this.#withSystemKey(key, key === "audit-signing" ? "audit signing" : "challenge signing", async (obj) => {
      // R-3.2.2.4, T-2.2.1.7: audit checkpoints and SadChallenges are signed by module-resident keys, one per purpose.
      const raw = await this.#workBytes({ op: "sign", mechanism: { mechanism: p.CKM_ECDSA }, key: obj.handle, data: req.hash, outLength: 64 }, obj.epoch);
      return req.format === "raw" ? new Uint8Array(raw) : ecdsaRawToDer(raw);
    });
  }

  async systemPublicKey(key: SigningSystemKey): Promise<Uint8Array> {
    this.#assertOpen();
    if (!isKeyPair(key)) throw new InkanError("INVALID_REQUEST", "not a signing system key");
    return this.#withSystemKey(key, "public key lookup", async (obj) => {
      const publicKey = obj.publicKey;
      if (!publicKey) throw new InkanError("CRYPTO_MODULE_FAILURE", "system key has no public half");
      return this.#use((s) => this.#spkiOf(s, publicKey, "EC_P256"), obj.epoch);
    });
  }

  async ensureSystemKeys(): Promise<SystemKey[]> {
    this.#assertOpen();
    // One creation at a time in this process; `inkan init` is the only caller that creates.
    this.#ensuring ??= this.#createMissingSystemKeys().finally(() => (this.#ensuring = undefined));
    return this.#ensuring;
  }

  // ---- DataObjects --------------------------------------------------------------------------

  async readDataObject(label: string): Promise<Uint8Array | undefined> {
    this.#assertOpen();
    assertDataLabel(label);
    try {
      // Issue 20: on a crypto worker (the "readData" job), not on the event loop: SoftHSM2's object
      // search walks every object of the token (measured ~2 ms per read with 64 signers' keys, three
      // reads per single-document transaction). A search like the main thread's: the "index" group.
      const stored = await this.#objectLock.run("index", () => this.#work({ op: "readData", application: DATA_APPLICATION, label }));
      if (stored === false) throw new InkanError("INTEGRITY_VIOLATION", `data object ${label} is malformed`);
      if (stored === true) throw new InkanError("CRYPTO_MODULE_FAILURE", "unexpected answer of a crypto worker");
      return stored.length === 0 ? undefined : new Uint8Array(stored.subarray(8));
    } catch (err) {
      throw toInkanError(err, "reading a data object");
    }
  }

  async writeDataObject(label: string, value: Uint8Array): Promise<void> {
    this.#assertOpen();
    assertDataLabel(label);
    if (value.length > DATA_MAX_VALUE) throw new InkanError("INVALID_REQUEST", `a data object holds at most ${DATA_MAX_VALUE} bytes`);
    // Writers of one label are serialized in this process; each node uses its own labels.
    const previous = this.#dataLocks.get(label) ?? Promise.resolve();
    const write = previous.catch(() => undefined).then(() => this.#writeData(label, value));
    this.#dataLocks.set(label, write);
    try {
      await write;
    } catch (err) {
      throw toInkanError(err, "writing a data object");
    } finally {
      if (this.#dataLocks.get(label) === write) this.#dataLocks.delete(label);
    }
  }

  /**
   * The labels of the data objects whose label starts with `prefix`, sorted (issue 21: each node's
   * entries live in objects of their own, found by listing, so no node rewrites a shared object).
   */
  async listDataObjectLabels(prefix: string): Promise<string[]> {
    this.#assertOpen();
    try {
      const labels = await this.#use((s) => {
        const found = this.#find(s, [{ type: p.CKA_CLASS, value: p.CKO_DATA }, { type: p.CKA_APPLICATION, value: DATA_APPLICATION }], DATA_LIST_MAX);
        const out = new Set<string>();
        for (const handle of found) {
          const label = this.#readIfPresent(() => this.#attributes(s, handle, [p.CKA_LABEL])[0]);
          if (label !== undefined && label.toString("utf8").startsWith(prefix)) out.add(label.toString("utf8"));
        }
        return [...out].sort();
      });
      return labels;
    } catch (err) {
      throw toInkanError(err, "listing data objects");
    }
  }

  // ---- internals ----------------------------------------------------------------------------

  /**
   * Issue 21: another process sharing the token (another SAM node) may destroy an object between
   * our find and our read or destroy of it (CKR_OBJECT_HANDLE_INVALID): that object is gone, which
   * is what the caller wanted or may ignore; any other failure is thrown.
   */
  #readIfPresent<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      if (hasCkr(err, "CKR_OBJECT_HANDLE_INVALID")) return undefined;
      throw err;
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new InkanError("CRYPTO_MODULE_FAILURE", "crypto module is closed");
  }

  /**
   * Every module call goes through here: refused at once while the module is lost (fail closed),
   * run in a session of its own otherwise, and its failure shown to the supervisor. `epoch` is
   * that of the handles `fn` uses: after a reconnect they are refused, never sent to the module.
   * `group` "create" for the calls that create token objects on libuv's threads, kept apart from the
   * main thread's object searches (object-index-lock.ts).
   */
  async #use<T>(fn: (session: Handle) => Promise<T> | T, epoch?: number, group: ObjectIndexGroup = "index"): Promise<T> {
    this.#supervisor.assertAvailable();
    if (epoch !== undefined && epoch !== this.#epoch) throw new ReconnectedError();
    const pool = this.#pool;
    try {
      return await this.#objectLock.run(group, () => pool.use(fn));
    } catch (err) {
      if (pool === this.#pool) this.#supervisor.observe(err);
      throw err;
    }
  }

  /**
   * Issue 20, every operation on a worker thread goes through here: refused at once while the
   * module is lost, refused for handles of another connection (epoch), its failure shown to the
   * supervisor, like #use.
   */
  async #work(job: WorkerJob, epoch?: number): Promise<Uint8Array | boolean> {
    this.#supervisor.assertAvailable();
    if (epoch !== undefined && epoch !== this.#epoch) throw new ReconnectedError();
    const workers = this.#workers;
    try {
      return await workers.run(job);
    } catch (err) {
      if (workers === this.#workers) this.#supervisor.observe(err);
      throw err;
    }
  }

  async #workBytes(job: WorkerJob, epoch?: number): Promise<Buffer> {
    const value = await this.#work(job, epoch);
    if (!Buffer.isBuffer(value)) throw new InkanError("CRYPTO_MODULE_FAILURE", "unexpected answer of a crypto worker");
    return value;
  }

  async #workBool(job: WorkerJob, epoch?: number): Promise<boolean> {
    const value = await this.#work(job, epoch);
    if (typeof value !== "boolean") throw new InkanError("CRYPTO_MODULE_FAILURE", "unexpected answer of a crypto worker");
    return value;
  }

  #newWorkers(slot: Handle): CryptoWorkerPool {
    const { p11, library, pin, workers } = this.#connection;
    return new CryptoWorkerPool({ p11, library, slot, pin, size: workers });
  }

  /**
   * A key that is not there: a lost token looks empty too (SoftHSM2 with unreadable token files),
   * so the module is checked first, and its failure is reported instead of a missing key.
   */
  async #refuseMissing(refusal: InkanError): Promise<never> {
    await this.#supervisor.confirm();
    throw refusal;
  }

  /**
   * Issue 22, the check of a connection: the token is the one this module opened (serial number),
   * and each system key this module has used is found by label and CKA_ID, still protected, and
   * works: an HMAC with the record-seal key, an AES-GCM round trip with the field key (fresh IV
   * from the module), an ECDSA signature by the audit key that its public key verifies. Returns
   * the objects found, for the caches of a new connection.
   */
  async #checkModule(pool: SessionPool, slot: Handle, epoch: number): Promise<Map<SystemKey, SystemObject>> {
    const info = this.#p11.C_GetTokenInfo(slot);
    if (info.serialNumber.trimEnd() !== this.#connection.tokenSerial || info.label.trimEnd() !== this.#tokenLabel) {
      throw new InkanError("CRYPTO_MODULE_FAILURE", "the token in the slot is not the one this node opened");
    }
    const found = new Map<SystemKey, SystemObject>();
    const probe = Buffer.from("inkan crypto module check");
    for (const key of this.#systemIds.keys()) {
      const obj = await this.#objectLock.run("index", () => pool.use((s) => this.#findSystemKey(s, key, epoch)));
      if (!obj) throw new InkanError("CRYPTO_MODULE_FAILURE", `system key ${SYSTEM_KEY_LABELS[key]} is not in the module`);
      await this.#objectLock.run("index", () => pool.use(async (s) => {
        if (key === "record-seal") {
          this.#p11.C_SignInit(s, { mechanism: p.CKM_SHA256_HMAC }, obj.handle);
          if ((await this.#p11.C_SignAsync(s, probe, Buffer.alloc(32))).length !== 32) throw new InkanError("CRYPTO_MODULE_FAILURE", "record-seal check failed");
        } else if (key === "field-encryption") {
          const iv = this.#p11.C_GenerateRandom(s, Buffer.alloc(12));
          this.#p11.C_EncryptInit(s, gcm(iv, probe), obj.handle);
          const sealed = await this.#p11.C_EncryptAsync(s, probe, Buffer.alloc(probe.length + 16));
          this.#p11.C_DecryptInit(s, gcm(iv, probe), obj.handle);
          const opened = await this.#p11.C_DecryptAsync(s, sealed, Buffer.alloc(sealed.length));
          if (!opened.equals(probe)) throw new InkanError("CRYPTO_MODULE_FAILURE", "field-encryption check failed");
        } else {
          const hash = createHash("sha256").update(probe).digest();
          this.#p11.C_SignInit(s, { mechanism: p.CKM_ECDSA }, obj.handle);
          const signature = await this.#p11.C_SignAsync(s, hash, Buffer.alloc(64));
          const publicKey = createPublicKey({ key: Buffer.from(this.#spkiOf(s, obj.publicKey as Handle, "EC_P256")), format: "der", type: "spki" });
          if (!nodeVerify("sha256", probe, { key: publicKey, dsaEncoding: "ieee-p1363" }, signature)) {
            throw new InkanError("CRYPTO_MODULE_FAILURE", "audit-signing check failed");
          }
        }
      }));
      found.set(key, obj);
    }
    return found;
  }

  /**
   * Issue 22, one reconnect attempt: the old sessions are given up (and their calls awaited),
   * from the second attempt on the library is initialized again (some find a lost token only so),
   * the token is found again by its URI (it may sit in another slot), new sessions are logged in
   * and checked. Only then do calls use the new connection, in a new epoch with empty key caches.
   */
  async #reconnect(attempt: number): Promise<void> {
    // Issue 20: the workers are stopped and their sessions closed before a C_Finalize (WORKER-THREADS.md rule 1).
    await Promise.all([this.#workers.close({ discard: true }), this.#pool.discard()]);
    if (attempt > 1) reinitializeLibrary(this.#library);
    const { uri, pin, poolSize } = this.#connection;
    const slot = findTokenSlot(this.#p11, uri);
    const pool = SessionPool.open({ p11: this.#p11, slot, size: poolSize, pin });
    const epoch = this.#epoch + 1;
    let system: Map<SystemKey, SystemObject>;
    try {
      system = await this.#checkModule(pool, slot, epoch);
    } catch (err) {
      await pool.discard();
      throw err;
    }
    this.#keys.clear();
    this.#resolving.clear();
    this.#system.clear();
    for (const [key, obj] of system) this.#system.set(key, obj);
    this.#epoch = epoch;
    this.#slot = slot;
    this.#pool = pool;
    this.#workers = this.#newWorkers(slot);
  }

  async #newKeyId(): Promise<string> {
    return Buffer.from(await this.randomBytes(KEY_ID_BYTES)).toString("hex");
  }

  #keyUri(id: Buffer): string {
    return formatPkcs11Uri({ token: this.#tokenLabel, id, type: "private" });
  }

  async #generate(algorithm: KeyAlgorithm, usage: KeyUsage): Promise<GeneratedKey> {
    this.#assertOpen();
    const keyId = await this.#newKeyId(); // R-3.1.1.3: random CKA_ID from the module's RNG
    const id = Buffer.from(keyId, "hex");
    try {
      const { mechanism, publicTemplate } = keyPairMechanism(algorithm);
      const epoch = this.#epoch;
      const pair = await this.#use((s) =>
        this.#p11.C_GenerateKeyPairAsync(
          s,
          mechanism,
          [...publicTemplate, ...publicKeyPolicy(id, usage)],
          // R-3.1.1.3: generated inside the module as a sensitive, non-extractable token object
          [{ type: p.CKA_KEY_TYPE, value: keyTypeOf(algorithm) }, ...privateKeyPolicy(id, usage)],
        ),
        epoch,
        "create",
      );
      let spki: Uint8Array;
      try {
        spki = await this.#use((s) => this.#spkiOf(s, pair.publicKey, algorithm), epoch);
      } catch (err) {
        await this.#use((s) => {
          this.#destroyQuietly(s, pair.privateKey);
          this.#destroyQuietly(s, pair.publicKey);
        }, epoch).catch(() => undefined);
        throw err;
      }
      this.#remember({ keyId, id, usage, algorithm, privateKey: pair.privateKey, publicKey: pair.publicKey, generatedInModule: true, epoch });
      return { keyId, uri: this.#keyUri(id), algorithm, publicKeySpki: spki };
    } catch (err) {
      throw toInkanError(err, "key generation");
    }
  }

  async #finishImport(privateKey: Handle, id: Buffer, keyId: string, algorithm: KeyAlgorithm, stated: StatedKey, epoch: number): Promise<GeneratedKey> {
    // The unwrapped key must be of the stated kind and sign what the stated public key verifies
    // (T-2.1.4.3: the public part matches the stated key information).
    const actual = await this.#use((s) => this.#algorithmOf(s, privateKey), epoch);
    if (actual !== algorithm) throw new InkanError("KEY_MISMATCH", "the wrapped key is not of the stated algorithm");
    if (stated.jwk.kty === "RSA") {
      const [n] = await this.#use((s) => this.#attributes(s, privateKey, [p.CKA_MODULUS]), epoch);
      if (!stripZeros(n).equals(stripZeros(Buffer.from(stated.jwk.n ?? "", "base64url")))) {
        throw new InkanError("KEY_MISMATCH", "the wrapped key does not match the stated public key");
      }
    }
    const message = Buffer.from(await this.randomBytes(32));
    const { scheme, hashAlgorithm } = proofScheme(algorithm);
    const data = hashAlgorithm === "NONE" ? message : createHash("sha256").update(message).digest();
    const plan = planSignature({ scheme, hashAlgorithm, data });
    const raw = await this.#workBytes({ op: "sign", mechanism: plan.mechanism, key: privateKey, data: plan.input, outLength: signatureSize(algorithm) }, epoch);
    const ok =
      scheme === "ED25519"
        ? nodeVerify(null, message, stated.key, raw)
        : nodeVerify("sha256", message, scheme === "ECDSA" ? { key: stated.key, dsaEncoding: "ieee-p1363" } : stated.key, raw);
    if (!ok) throw new InkanError("KEY_MISMATCH", "the wrapped key does not match the stated public key");
    const publicKey = await this.#use(
      (s) =>
        this.#p11.C_CreateObject(s, [
          { type: p.CKA_KEY_TYPE, value: keyTypeOf(algorithm) },
          ...publicKeyAttributes(stated.jwk, algorithm),
          ...publicKeyPolicy(id, "sign"),
        ]),
      epoch,
    );
    this.#remember({ keyId, id, usage: "sign", algorithm, privateKey, publicKey, generatedInModule: false, epoch });
    const spki = await this.#use((s) => this.#spkiOf(s, publicKey, algorithm), epoch);
    return { keyId, uri: this.#keyUri(id), algorithm, publicKeySpki: spki };
  }

  /** Runs `op` with the key of that id and usage; a stale cached handle is looked up once more. */
  async #withKey<T>(keyId: string, usage: KeyUsage, operation: string, op: (key: ResolvedKey) => Promise<T>): Promise<T> {
    const notFound = () => new InkanError("CREDENTIAL_NOT_FOUND", "no key with this key id in the crypto module", { field: "keyId" });
    if (!isKeyIdSyntax(keyId)) throw notFound();
    for (let attempt = 0; ; attempt++) {
      try {
        const key = await this.#resolve(keyId);
        if (!key) return await this.#refuseMissing(notFound());
        if (key.usage !== usage) throw new InkanError("ALGORITHM_NOT_ALLOWED", `this key is not for ${operation}`, { field: "keyId" });
        return await op(key);
      } catch (err) {
        if (attempt === 0 && (isStaleHandle(err) || err instanceof ReconnectedError)) {
          this.#keys.delete(keyId); // destroyed meanwhile (or a stale handle): look it up again
          continue;
        }
        throw toInkanError(err, operation);
      }
    }
  }

  async #resolve(keyId: string): Promise<ResolvedKey | undefined> {
    const cached = this.#keys.get(keyId);
    if (cached) {
      this.#keys.delete(keyId); // move to the back: the cache drops the least recently used
      this.#keys.set(keyId, cached);
      return cached;
    }
    let pending = this.#resolving.get(keyId);
    if (!pending) {
      const epoch = this.#epoch;
      pending = this.#use((s) => this.#lookup(s, keyId, epoch), epoch).finally(() => this.#resolving.delete(keyId));
      this.#resolving.set(keyId, pending);
    }
    const key = await pending;
    if (key) this.#remember(key);
    return key;
  }

  #lookup(s: Handle, keyId: string, epoch: number): ResolvedKey | undefined {
    const id = Buffer.from(keyId, "hex");
    const found = this.#find(s, [{ type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY }, { type: p.CKA_ID, value: id }, { type: p.CKA_TOKEN, value: true }], 2);
    if (found.length === 0) return undefined;
    if (found.length > 1) throw new InkanError("CRYPTO_MODULE_FAILURE", "two private keys share one key id");
    const handle = found[0] as Handle;
    const usage = LABEL_USAGE.get(this.#readLabel(s, handle) ?? "");
    if (!usage) return undefined; // a system key or a foreign object: not addressable by key id
    const [sensitive, extractable, local, alwaysSensitive, neverExtractable] = this.#attributes(s, handle, [
      p.CKA_SENSITIVE,
      p.CKA_EXTRACTABLE,
      p.CKA_LOCAL,
      p.CKA_ALWAYS_SENSITIVE,
      p.CKA_NEVER_EXTRACTABLE,
    ]).map(readBool);
    // R-3.1.1.3: a private key that could leave the module is never used.
    if (!sensitive || extractable) throw new InkanError("CRYPTO_MODULE_FAILURE", "key is not protected by the module");
    return {
      keyId,
      id,
      usage,
      algorithm: this.#algorithmOf(s, handle),
      privateKey: handle,
      publicKey: undefined,
      generatedInModule: Boolean(local && alwaysSensitive && neverExtractable),
      epoch,
    };
  }

  #remember(key: ResolvedKey): void {
    if (key.epoch !== this.#epoch) return; // found before a reconnect: its handles are not cached
    this.#keys.delete(key.keyId);
    this.#keys.set(key.keyId, key);
    if (this.#keys.size > KEY_CACHE_MAX) {
      const oldest = this.#keys.keys().next().value;
      if (oldest !== undefined) this.#keys.delete(oldest);
    }
  }

  async #findPublicHandle(key: ResolvedKey): Promise<Handle | undefined> {
    const handle = await this.#use((s) => {
      const found = this.#find(
        s,
        [{ type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY }, { type: p.CKA_ID, value: key.id }, { type: p.CKA_LABEL, value: USAGE_LABEL[key.usage] }],
        2,
      );
      if (found.length > 1) throw new InkanError("CRYPTO_MODULE_FAILURE", "two public keys share one key id");
      return found[0];
    }, key.epoch);
    if (handle) key.publicKey = handle;
    return handle;
  }

  async #publicSpki(key: ResolvedKey): Promise<Uint8Array | undefined> {
    const handle = key.publicKey ?? (await this.#findPublicHandle(key));
    if (!handle) return undefined;
    return this.#use((s) => this.#spkiOf(s, handle, key.algorithm), key.epoch);
  }

  #spkiOf(s: Handle, publicKey: Handle, algorithm: KeyAlgorithm): Uint8Array {
    let jwk: JsonWebKey;
    const curve = CURVE_OF[algorithm];
    if (curve) {
      const point = ecPointValue(this.#attributes(s, publicKey, [p.CKA_EC_POINT])[0], 1 + 2 * ECDSA_SCALAR_SIZE[curve]);
      const size = ECDSA_SCALAR_SIZE[curve];
      if (point[0] !== 0x04) throw new InkanError("CRYPTO_MODULE_FAILURE", "unexpected EC point encoding");
      jwk = { kty: "EC", crv: curve, x: b64u(point.subarray(1, 1 + size)), y: b64u(point.subarray(1 + size)) };
    } else if (algorithm === "ED25519") {
      jwk = { kty: "OKP", crv: "Ed25519", x: b64u(ecPointValue(this.#attributes(s, publicKey, [p.CKA_EC_POINT])[0], 32)) };
    } else {
      const [n, e] = this.#attributes(s, publicKey, [p.CKA_MODULUS, p.CKA_PUBLIC_EXPONENT]);
      jwk = { kty: "RSA", n: b64u(stripZeros(n)), e: b64u(stripZeros(e)) };
    }
    return new Uint8Array(createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "der" }));
  }

  #algorithmOf(s: Handle, handle: Handle): KeyAlgorithm {
    const keyType = readUlong(this.#attributes(s, handle, [p.CKA_KEY_TYPE])[0]);
    if (keyType === p.CKK_EC) {
      const params = this.#attributes(s, handle, [p.CKA_EC_PARAMS])[0];
      for (const [algorithm, curve] of Object.entries(CURVE_OF) as [KeyAlgorithm, EcCurve][]) {
        if (params.equals(EC_PARAMS[curve])) return algorithm;
      }
    } else if (keyType === CKK_EC_EDWARDS) {
      const params = this.#attributes(s, handle, [p.CKA_EC_PARAMS])[0];
      if (params.equals(ED25519_PARAMS) || params.equals(ED25519_PARAMS_PRINTABLE)) return "ED25519";
    } else if (keyType === p.CKK_RSA) {
      const bits = bitLength(this.#attributes(s, handle, [p.CKA_MODULUS])[0]);
      for (const [algorithm, size] of Object.entries(RSA_BITS) as [KeyAlgorithm, number][]) {
        if (bits === size) return algorithm;
      }
    }
    throw new InkanError("ALGORITHM_NOT_ALLOWED", "key of an unsupported type or size");
  }

  async #withSystemKey<T>(key: SystemKey, operation: string, op: (obj: SystemObject) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        let obj = this.#system.get(key);
        if (!obj) {
          const epoch = this.#epoch;
          obj = await this.#use((s) => this.#findSystemKey(s, key, epoch), epoch);
          if (!obj) {
            return await this.#refuseMissing(new InkanError("CRYPTO_MODULE_FAILURE", `system key ${SYSTEM_KEY_LABELS[key]} is missing (run inkan init)`));
          }
          if (obj.epoch === this.#epoch) this.#system.set(key, obj);
        }
        return await op(obj);
      } catch (err) {
        if (attempt === 0 && (isStaleHandle(err) || err instanceof ReconnectedError)) {
          this.#system.delete(key);
          continue;
        }
        throw toInkanError(err, operation);
      }
    }
  }

  /**
   * A system key by its label and, once this module has used it, by its CKA_ID too (issue 22: the
   * key found after a reconnect must be the very one used before). The first find records the id.
   */
  #findSystemKey(s: Handle, key: SystemKey, epoch: number): SystemObject | undefined {
    const label = SYSTEM_KEY_LABELS[key];
    const cls = isKeyPair(key) ? p.CKO_PRIVATE_KEY : p.CKO_SECRET_KEY;
    const knownId = this.#systemIds.get(key);
    const byId: Template = knownId ? [{ type: p.CKA_ID, value: knownId }] : [];
    const found = this.#find(s, [{ type: p.CKA_CLASS, value: cls }, { type: p.CKA_LABEL, value: label }, { type: p.CKA_TOKEN, value: true }, ...byId], 2);
    if (found.length === 0) return undefined;
    if (found.length > 1) throw new InkanError("CRYPTO_MODULE_FAILURE", `system key ${label} exists twice`); // fail closed
    const handle = found[0] as Handle;
    const [sensitive, extractable, local, alwaysSensitive, neverExtractable] = this.#attributes(s, handle, [
      p.CKA_SENSITIVE, p.CKA_EXTRACTABLE, p.CKA_LOCAL, p.CKA_ALWAYS_SENSITIVE, p.CKA_NEVER_EXTRACTABLE,
    ]).map(readBool);
    if (!sensitive || extractable) throw new InkanError("CRYPTO_MODULE_FAILURE", `system key ${label} is not protected by the module`);
    // R-3.2.2.4, R-3.1.1.1: a key whose value ever existed outside the module (imported, or once
    // extractable) could seal records or sign audit checkpoints elsewhere: never adopted.
    if (!local || !alwaysSensitive || !neverExtractable) {
      throw new InkanError("CRYPTO_MODULE_FAILURE", `system key ${label} was not generated in the module (imported or once extractable); remove it with the HSM's tools`);
    }
    const id = knownId ?? this.#attributes(s, handle, [p.CKA_ID])[0];
    let publicKey: Handle | undefined;
    if (isKeyPair(key)) {
      const publicKeys = this.#find(s, [{ type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY }, { type: p.CKA_LABEL, value: label }, { type: p.CKA_ID, value: id }], 2);
      if (publicKeys.length !== 1) throw new InkanError("CRYPTO_MODULE_FAILURE", `system key ${label} must have exactly one public half`);
      publicKey = publicKeys[0];
    }
    if (!knownId) this.#systemIds.set(key, id);
    return { handle, ...(publicKey !== undefined ? { publicKey } : {}), epoch };
  }

  async #createMissingSystemKeys(): Promise<SystemKey[]> {
    const created: SystemKey[] = [];
    try {
      for (const key of Object.keys(SYSTEM_KEY_LABELS) as SystemKey[]) {
        if (await this.#use((s) => this.#findSystemKey(s, key, this.#epoch))) continue;
        const id = Buffer.from(await this.randomBytes(KEY_ID_BYTES));
        const label = SYSTEM_KEY_LABELS[key];
        await this.#use(async (s) => {
          if (isKeyPair(key)) {
            await this.#p11.C_GenerateKeyPairAsync(
              s,
              { mechanism: p.CKM_EC_KEY_PAIR_GEN },
              [{ type: p.CKA_EC_PARAMS, value: EC_PARAMS["P-256"] }, ...publicKeyPolicy(id, "sign", label)],
              [{ type: p.CKA_KEY_TYPE, value: p.CKK_EC }, ...privateKeyPolicy(id, "sign", label)],
            );
          } else {
            const hmac = key === "record-seal";
            await this.#p11.C_GenerateKeyAsync(s, { mechanism: hmac ? p.CKM_GENERIC_SECRET_KEY_GEN : p.CKM_AES_KEY_GEN }, [
              { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
              { type: p.CKA_KEY_TYPE, value: hmac ? p.CKK_GENERIC_SECRET : p.CKK_AES },
              { type: p.CKA_VALUE_LEN, value: 32 },
              { type: p.CKA_ID, value: id },
              { type: p.CKA_LABEL, value: label },
              { type: p.CKA_TOKEN, value: true },
              { type: p.CKA_PRIVATE, value: true },
              { type: p.CKA_SENSITIVE, value: true },
              { type: p.CKA_EXTRACTABLE, value: false },
              { type: p.CKA_MODIFIABLE, value: false },
              { type: p.CKA_SIGN, value: hmac },
              { type: p.CKA_VERIFY, value: hmac },
              { type: p.CKA_ENCRYPT, value: !hmac },
              { type: p.CKA_DECRYPT, value: !hmac },
              { type: p.CKA_WRAP, value: false },
              { type: p.CKA_UNWRAP, value: false },
              { type: p.CKA_DERIVE, value: false },
            ]);
          }
        }, undefined, "create");
        created.push(key);
      }
      return created;
    } catch (err) {
      throw toInkanError(err, "system key creation");
    }
  }

  /**
   * R-3.2.2.4: the high-water mark outside the database must never be lost or half-written.
   * SoftHSM2 keeps CKA_VALUE of a data object read-only, so a write creates the next version (an
   * 8-byte sequence number before the value) and then removes the older ones: a crash in between
   * leaves both, and readers take the newest (the "readData" job). Issue 20: done on a crypto worker
   * (the "writeData" job), not on the event loop, which SoftHSM2's scan and token-file writes held
   * for tens of milliseconds per write; "alone" in the object-index lock, since that thread both
   * searches the token's objects and creates one (object-index-lock.ts).
   */
  async #writeData(label: string, value: Uint8Array): Promise<void> {
    const written = await this.#objectLock.run("alone", () => this.#workBool({ op: "writeData", application: DATA_APPLICATION, label, value }));
    if (!written) throw new InkanError("INTEGRITY_VIOLATION", `data object ${label} is malformed`);
  }

  #find(s: Handle, template: Template, max: number): Handle[] {
    this.#p11.C_FindObjectsInit(s, template);
    try {
      return this.#p11.C_FindObjects(s, max);
    } finally {
      this.#p11.C_FindObjectsFinal(s);
    }
  }

  /** Reads attributes; the answer has one Buffer per requested type, in order. */
  #attributes<const T extends readonly number[]>(s: Handle, handle: Handle, types: T): { -readonly [K in keyof T]: Buffer } {
    const result = this.#p11.C_GetAttributeValue(
      s,
      handle,
      types.map((type) => ({ type })),
    );
    return types.map((type) => {
      const value = result.find((a) => a.type === type)?.value;
      if (!Buffer.isBuffer(value)) throw new InkanError("CRYPTO_MODULE_FAILURE", "attribute missing in the module's answer");
      return value;
    }) as { -readonly [K in keyof T]: Buffer };
  }

  #readLabel(s: Handle, handle: Handle): string | undefined {
    try {
      return this.#attributes(s, handle, [p.CKA_LABEL])[0].toString("utf8");
    } catch {
      return undefined;
    }
  }

  #destroyQuietly(s: Handle, handle: Handle): void {
    try {
      this.#p11.C_DestroyObject(s, handle);
    } catch {
      // cleanup after a failure: the first error is the one reported
    }
  }
}

// ---- helpers (pure, or touching the library only through the arguments) ---------------------

/**
 * Handles found before a reconnect, refused before they reach the module (after the library is
 * initialized again an old number may name another object). The key is looked up once more.
 */
class ReconnectedError extends InkanError {
  constructor() {
    super("CRYPTO_MODULE_FAILURE", "the crypto module was reconnected during the operation");
  }
}

// SoftHSM2 2.6.1 implements OAEP with SHA-1 only (SHA-256 parameters give CKR_ARGUMENTS_BAD).
const OAEP_SHA1: Mechanism = withParameter<OaepParams>(p.CKM_RSA_PKCS_OAEP, {
  type: p.CK_PARAMS_RSA_OAEP,
  hashAlg: p.CKM_SHA_1,
  mgf: p.CKG_MGF1_SHA1,
  source: CKZ_DATA_SPECIFIED,
});

const PSS_PARAMS: Readonly<Record<Exclude<HashAlgorithm, "NONE">, { hashAlg: number; mgf: number }>> = {
  SHA256: { hashAlg: p.CKM_SHA256, mgf: p.CKG_MGF1_SHA256 },
  SHA384: { hashAlg: p.CKM_SHA384, mgf: p.CKG_MGF1_SHA384 },
  SHA512: { hashAlg: p.CKM_SHA512, mgf: p.CKG_MGF1_SHA512 },
};

interface SignaturePlan {
  mechanism: Mechanism;
  /** What the module signs: the hash, the DigestInfo (PKCS#1 v1.5) or the message (EdDSA). */
  input: Buffer;
}

/**
 * Checks a sign/verify request without touching the module and says how to sign it. A hash whose
 * length is not that of its algorithm would be signed as something nobody authorized.
 */
function planSignature(req: Pick<SignRequest, "scheme" | "hashAlgorithm" | "data">): SignaturePlan {
  const { scheme, hashAlgorithm, data } = req;
  if (scheme === "ED25519") {
    // Pure EdDSA signs the to-be-signed bytes themselves; a prehash would be a different scheme.
    if (hashAlgorithm !== "NONE") throw new InkanError("ALGORITHM_NOT_ALLOWED", "Ed25519 signs the data itself (hash algorithm NONE)");
    if (data.length === 0 || data.length > ED25519_MAX_MESSAGE) {
      throw new InkanError("INVALID_REQUEST", `Ed25519 data must be 1 to ${ED25519_MAX_MESSAGE} bytes`, { field: "data" });
    }
    return { mechanism: { mechanism: CKM_EDDSA }, input: Buffer.from(data) };
  }
  if (scheme !== "ECDSA" && scheme !== "RSA_PKCS1_V1_5" && scheme !== "RSA_PSS") {
    throw new InkanError("ALGORITHM_NOT_ALLOWED", "unknown signature scheme");
  }
  if (hashAlgorithm !== "SHA256" && hashAlgorithm !== "SHA384" && hashAlgorithm !== "SHA512") {
    throw new InkanError("ALGORITHM_NOT_ALLOWED", `${scheme} signs a SHA-256, SHA-384 or SHA-512 hash`);
  }
  // T-2.2.1.6: the hash must have its algorithm's length before the module is called.
  if (data.length !== HASH_LENGTH[hashAlgorithm]) {
    throw new InkanError("HASH_LENGTH_MISMATCH", `a ${hashAlgorithm} hash has ${HASH_LENGTH[hashAlgorithm]} bytes`, { field: "data" });
  }
  const hash = Buffer.from(data);
  if (scheme === "ECDSA") return { mechanism: { mechanism: p.CKM_ECDSA }, input: hash };
  if (scheme === "RSA_PKCS1_V1_5") {
    return { mechanism: { mechanism: p.CKM_RSA_PKCS }, input: Buffer.concat([DIGEST_INFO_PREFIX[hashAlgorithm], hash]) };
  }
  return {
    mechanism: withParameter<PssParams>(p.CKM_RSA_PKCS_PSS, {
      type: p.CK_PARAMS_RSA_PSS,
      ...PSS_PARAMS[hashAlgorithm],
      saltLen: HASH_LENGTH[hashAlgorithm], // salt = hash length, MGF1 with the same hash
    }),
    input: hash,
  };
}

function assertSchemeFitsKey(scheme: SignRequest["scheme"], algorithm: KeyAlgorithm): void {
  const fits =
    scheme === "ECDSA" ? CURVE_OF[algorithm] !== undefined : scheme === "ED25519" ? algorithm === "ED25519" : RSA_BITS[algorithm] !== undefined;
  if (!fits) throw new InkanError("ALGORITHM_NOT_ALLOWED", `${scheme} does not fit a ${algorithm} key`);
}

function assertAlgorithm(algorithm: string): asserts algorithm is KeyAlgorithm {
  if (!KEY_ALGORITHMS.has(algorithm)) throw new InkanError("ALGORITHM_NOT_ALLOWED", "unknown key algorithm");
}

/** Bytes of a signature the module writes (raw r||s for ECDSA). */
function signatureSize(algorithm: KeyAlgorithm): number {
  const curve = CURVE_OF[algorithm];
  if (curve) return 2 * ECDSA_SCALAR_SIZE[curve];
  if (algorithm === "ED25519") return 64;
  return modulusBytes(algorithm) ?? 512;
}

function modulusBytes(algorithm: KeyAlgorithm): number | undefined {
  const bits = RSA_BITS[algorithm];
  return bits === undefined ? undefined : bits / 8;
}

/** The signature in the form the module verifies, or undefined when it cannot be valid. */
function moduleSignature(req: VerifyRequest, algorithm: KeyAlgorithm): Buffer | undefined {
  const curve = CURVE_OF[algorithm];
  if (req.scheme === "ECDSA" && curve) {
    const size = ECDSA_SCALAR_SIZE[curve];
    if (req.format === "raw") return req.signature.length === 2 * size ? Buffer.from(req.signature) : undefined;
    const raw = ecdsaDerToRaw(req.signature, size);
    return raw ? Buffer.from(raw) : undefined;
  }
  return req.signature.length === signatureSize(algorithm) ? Buffer.from(req.signature) : undefined;
}

function keyTypeOf(algorithm: KeyAlgorithm): number {
  if (CURVE_OF[algorithm]) return p.CKK_EC;
  if (algorithm === "ED25519") return CKK_EC_EDWARDS;
  return p.CKK_RSA;
}

function keyPairMechanism(algorithm: KeyAlgorithm): { mechanism: Mechanism; publicTemplate: Template } {
  const curve = CURVE_OF[algorithm];
  if (curve) return { mechanism: { mechanism: p.CKM_EC_KEY_PAIR_GEN }, publicTemplate: [{ type: p.CKA_EC_PARAMS, value: EC_PARAMS[curve] }] };
  if (algorithm === "ED25519") {
    return { mechanism: { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN }, publicTemplate: [{ type: p.CKA_EC_PARAMS, value: ED25519_PARAMS }] };
  }
  return {
    mechanism: { mechanism: p.CKM_RSA_PKCS_KEY_PAIR_GEN },
    publicTemplate: [
      { type: p.CKA_MODULUS_BITS, value: RSA_BITS[algorithm] ?? 0 },
      { type: p.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
    ],
  };
}

/**
 * Attributes of every private key the SAM creates (R-3.1.1.3): a token object, private (needs
 * login), sensitive and never extractable, not modifiable, and allowed exactly one usage.
 */
function privateKeyPolicy(id: Buffer, usage: KeyUsage, label = USAGE_LABEL[usage]): Template {
  return [
    { type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY },
    { type: p.CKA_TOKEN, value: true },
    { type: p.CKA_PRIVATE, value: true },
    { type: p.CKA_SENSITIVE, value: true },
    { type: p.CKA_EXTRACTABLE, value: false },
    { type: p.CKA_MODIFIABLE, value: false },
    { type: p.CKA_ID, value: id },
    { type: p.CKA_LABEL, value: label },
    { type: p.CKA_SIGN, value: usage === "sign" },
    { type: p.CKA_DERIVE, value: usage === "derive" },
    { type: p.CKA_DECRYPT, value: usage === "decrypt" },
    { type: p.CKA_UNWRAP, value: usage === "unwrap" },
    { type: p.CKA_SIGN_RECOVER, value: false },
  ];
}

function publicKeyPolicy(id: Buffer, usage: KeyUsage, label = USAGE_LABEL[usage]): Template {
  return [
    { type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY },
    { type: p.CKA_TOKEN, value: true },
    { type: p.CKA_PRIVATE, value: false },
    { type: p.CKA_MODIFIABLE, value: false },
    { type: p.CKA_ID, value: id },
    { type: p.CKA_LABEL, value: label },
    { type: p.CKA_VERIFY, value: usage === "sign" },
    { type: p.CKA_ENCRYPT, value: usage === "decrypt" },
    { type: p.CKA_WRAP, value: usage === "unwrap" },
  ];
}

/** CKA_EC_PARAMS/CKA_EC_POINT or CKA_MODULUS/CKA_PUBLIC_EXPONENT for a public key object. */
function publicKeyAttributes(jwk: JsonWebKey, algorithm: KeyAlgorithm): Template {
  const curve = CURVE_OF[algorithm];
  if (curve) {
    const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x ?? "", "base64url"), Buffer.from(jwk.y ?? "", "base64url")]);
    return [
      { type: p.CKA_EC_PARAMS, value: EC_PARAMS[curve] },
      { type: p.CKA_EC_POINT, value: derOctetString(point) },
    ];
  }
  if (algorithm === "ED25519") {
    return [
      { type: p.CKA_EC_PARAMS, value: ED25519_PARAMS },
      { type: p.CKA_EC_POINT, value: derOctetString(Buffer.from(jwk.x ?? "", "base64url")) },
    ];
  }
  return [
    { type: p.CKA_MODULUS, value: Buffer.from(jwk.n ?? "", "base64url") },
    { type: p.CKA_PUBLIC_EXPONENT, value: Buffer.from(jwk.e ?? "", "base64url") },
  ];
}

interface StatedKey {
  key: KeyObject;
  jwk: JsonWebKey;
}

/** The importer's stated public key, which must be of the stated algorithm (T-2.1.4.3). */
function parseStatedPublicKey(spki: Uint8Array, algorithm: KeyAlgorithm): StatedKey {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  } catch (err) {
    throw new InkanError("INVALID_REQUEST", "the stated public key is not a DER SubjectPublicKeyInfo", { field: "publicKeySpki", cause: err });
  }
  const jwk = key.export({ format: "jwk" });
  const curve = CURVE_OF[algorithm];
  const fits = curve
    ? jwk.kty === "EC" && jwk.crv === curve
    : algorithm === "ED25519"
      ? jwk.kty === "OKP" && jwk.crv === "Ed25519"
      : jwk.kty === "RSA" && bitLength(Buffer.from(jwk.n ?? "", "base64url")) === RSA_BITS[algorithm];
  if (!fits) throw new InkanError("KEY_MISMATCH", "the stated public key is not of the stated algorithm", { field: "publicKeySpki" });
  return { key, jwk };
}

/** The scheme used to prove an imported key matches its stated public key. */
function proofScheme(algorithm: KeyAlgorithm): { scheme: SignRequest["scheme"]; hashAlgorithm: HashAlgorithm } {
  if (CURVE_OF[algorithm]) return { scheme: "ECDSA", hashAlgorithm: "SHA256" };
  if (algorithm === "ED25519") return { scheme: "ED25519", hashAlgorithm: "NONE" };
  return { scheme: "RSA_PKCS1_V1_5", hashAlgorithm: "SHA256" };
}

function gcm(iv: Buffer, aad: Uint8Array): Mechanism {
  return withParameter<GcmParams>(p.CKM_AES_GCM, {
    type: p.CK_PARAMS_AES_GCM_v240,
    iv,
    ivBits: 96,
    ...(aad.length ? { aad: Buffer.from(aad) } : {}),
    tagBits: 128,
  });
}

/** A mechanism with a typed parameter structure (pkcs11js types `parameter` loosely). */
function withParameter<T extends EcdhParams | OaepParams | PssParams | GcmParams>(mechanism: number, parameter: T): Mechanism {
  return { mechanism, parameter };
}

function decryptionFailed(cause: unknown): InkanError {
  return new InkanError("INVALID_REQUEST", "decryption failed", { cause });
}

const KEY_ID_PATTERN = /^[0-9a-f]{32}$/;

function isKeyIdSyntax(keyId: string): boolean {
  return typeof keyId === "string" && KEY_ID_PATTERN.test(keyId);
}

function parseKeyId(keyId: string): Buffer {
  if (!isKeyIdSyntax(keyId)) throw new InkanError("CREDENTIAL_NOT_FOUND", "no key with this key id in the crypto module", { field: "keyId" });
  return Buffer.from(keyId, "hex");
}

function assertDataLabel(label: string): void {
  if (typeof label !== "string" || !/^[A-Za-z0-9._:-]{1,64}$/.test(label)) {
    throw new InkanError("INVALID_REQUEST", "a data object label is 1 to 64 characters of A-Z a-z 0-9 . _ : -", { field: "label" });
  }
}

/** The PIN from a file (first line) or an environment variable; never from argv. */
function readPin(source: PinSource | undefined, uri: Pkcs11Uri): string {
  let pin: string | undefined;
  if (source && "env" in source) {
    pin = process.env[source.env];
    if (pin === undefined || pin === "") throw new InkanError("INVALID_REQUEST", `PIN environment variable ${source.env} is not set`, { field: "pin.env" });
  } else {
    const file = source?.file ?? (uri.pinSource !== undefined ? pinSourcePath(uri.pinSource) : undefined);
    if (file === undefined) throw new InkanError("INVALID_REQUEST", "no PIN source: give a PIN file or environment variable", { field: "pin" });
    try {
      pin = readFileSync(file, "utf8");
    } catch (err) {
      throw new InkanError("INVALID_REQUEST", `PIN file ${file} is not readable`, { field: "pin.file", cause: err });
    }
    pin = pin.split(/\r?\n/, 1)[0] ?? "";
    if (pin === "") throw new InkanError("INVALID_REQUEST", `PIN file ${file} is empty`, { field: "pin.file" });
  }
  return pin;
}

/** The slot holding the token the URI names; exactly one must match. */
function findTokenSlot(p11: Pkcs11, uri: Pkcs11Uri): Handle {
  const matches = p11.C_GetSlotList(true).filter((slot) => {
    const info = p11.C_GetTokenInfo(slot);
    return (
      (info.flags & CKF_TOKEN_INITIALIZED) !== 0 &&
      (uri.token === undefined || info.label.trimEnd() === uri.token) &&
      (uri.serial === undefined || info.serialNumber.trimEnd() === uri.serial) &&
      (uri.manufacturer === undefined || info.manufacturerID.trimEnd() === uri.manufacturer) &&
      (uri.model === undefined || info.model.trimEnd() === uri.model)
    );
  });
  if (matches.length === 0) throw new InkanError("CRYPTO_MODULE_FAILURE", "no initialized token matches the configured token URI");
  if (matches.length > 1) throw new InkanError("CRYPTO_MODULE_FAILURE", "several tokens match the configured token URI; add serial=");
  const slot = matches[0] as Handle;
  if ((p11.C_GetTokenInfo(slot).flags & CKF_USER_PIN_INITIALIZED) === 0) {
    throw new InkanError("CRYPTO_MODULE_FAILURE", "the token's user PIN is not initialized");
  }
  return slot;
}

/** The point inside CKA_EC_POINT: a DER OCTET STRING (PKCS#11) or, from some modules, raw. */
function ecPointValue(value: Buffer, pointLength: number): Buffer {
  if (value.length === pointLength) return value;
  const header = pointLength < 0x80 ? 2 : pointLength < 0x100 ? 3 : 4;
  if (value.length === header + pointLength && value[0] === 0x04) return value.subarray(header);
  throw new InkanError("CRYPTO_MODULE_FAILURE", "unexpected EC point encoding");
}

function derOctetString(value: Buffer): Buffer {
  const n = value.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([0x04, ...length]), value]);
}

function readBool(value: Buffer): boolean {
  return value[0] === 1;
}

/** A CK_ULONG attribute (native little-endian, 4 or 8 bytes). */
function readUlong(value: Buffer): number {
  return value.length >= 8 ? Number(value.readBigUInt64LE(0)) : value.readUInt32LE(0);
}

function stripZeros(value: Buffer): Buffer {
  let i = 0;
  while (i < value.length - 1 && value[i] === 0) i++;
  return value.subarray(i);
}

function bitLength(value: Buffer): number {
  const v = stripZeros(value);
  const first = v[0] ?? 0;
  return first === 0 ? 0 : (v.length - 1) * 8 + (32 - Math.clz32(first));
}

function b64u(value: Uint8Array): string {
  return Buffer.from(value).toString("base64url");
}
