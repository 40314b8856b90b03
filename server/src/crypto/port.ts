/**
 * The crypto module port: every key of the SAM lives behind it and private keys never leave it.
 * The production adapter is PKCS#11 (any HSM); the embedded default is a SoftHSM2 token.
 * Small, request-shaped interfaces, one per capability (smallstep/crypto style).
 */

/** Key types a signer's credential can have (R-3.1.1.3: generated inside the module). */
export type KeyAlgorithm = "EC_P256" | "EC_P384" | "EC_P521" | "RSA_2048" | "RSA_3072" | "RSA_4096" | "ED25519";

/** Hash that produced a DTBS/R; "NONE" means the data are the to-be-signed bytes (pure EdDSA). */
export type HashAlgorithm = "SHA256" | "SHA384" | "SHA512" | "NONE";

export type SignatureScheme = "ECDSA" | "RSA_PKCS1_V1_5" | "RSA_PSS" | "ED25519";

/** A key pair generated in the module: its id (hex CKA_ID), its RFC 7512 URI and its public key. */
export interface GeneratedKey {
  keyId: string;
  uri: string;
  algorithm: KeyAlgorithm;
  /** DER SubjectPublicKeyInfo. */
  publicKeySpki: Uint8Array;
}

export interface SignRequest {
  keyId: string;
  scheme: SignatureScheme;
  hashAlgorithm: HashAlgorithm;
  /** The hash (its length must match hashAlgorithm) or, for ED25519, the to-be-signed bytes. */
  data: Uint8Array;
  /** ECDSA encoding: DER (default) or raw r||s. Ignored for other schemes. */
  format?: "der" | "raw";
}

export interface VerifyRequest extends SignRequest {
  signature: Uint8Array;
}

/** Signing keys of signers. */
export interface SigningKeys {
  generateKeyPair(algorithm: KeyAlgorithm): Promise<GeneratedKey>;
  /** The public key (DER SPKI) of a key pair in the module, or undefined if there is none. */
  findPublicKey(keyId: string): Promise<Uint8Array | undefined>;
  sign(req: SignRequest): Promise<Uint8Array>;
  /** Verifies inside the module with the public-key object (verify-before-release, R-3.2.1.5). */
  verify(req: VerifyRequest): Promise<boolean>;
  /** Removes both halves of the key pair from the module (R-3.3.x destroy); irreversible. */
  destroyKeyPair(keyId: string): Promise<void>;
}

/**
 * The SAM's own module-resident keys, by role. Created by `inkan init` and looked up by label.
 * - "record-seal": HMAC-SHA-256 over sealed records (R-3.1.1.1, R-3.2.1.7, R-3.2.2.3)
 * - "field-encryption": AES-256-GCM for confidential fields
 * - "audit-signing": EC P-256 key that signs audit checkpoints (R-3.2.2.4)
 * - "challenge-signing": EC P-256 key that signs every SadChallenge, so the signer's device can
 *   tell what this SAM issued from what a relay made up (T-2.2.1.7); never the audit key
 */
export type SystemKey = "record-seal" | "field-encryption" | "audit-signing" | "challenge-signing";
/** The system keys that are EC P-256 signing key pairs: one per purpose, never shared. */
export type SigningSystemKey = "audit-signing" | "challenge-signing";

export interface SystemKeys {
  hmacSha256(key: "record-seal", data: Uint8Array): Promise<Uint8Array>;
  /** AES-256-GCM with a fresh 12-byte IV from the module; returns iv || ciphertext || 16-byte tag. */
  encrypt(key: "field-encryption", plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Reverses encrypt; throws if the tag does not verify (wrong key, AAD or tampered data). */
  decrypt(key: "field-encryption", sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
}

/** Random bytes from the module's RNG (R-3.2.2.2), with a continuous check on each block. */
export interface RandomSource {
  randomBytes(length: number): Promise<Uint8Array>;
}

export interface CryptoModule extends SigningKeys, SystemKeys, RandomSource {
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Further capabilities (issue 3). Each is its own interface; the PKCS#11 adapter implements all.
// ---------------------------------------------------------------------------------------------

/** What a key pair in the module may do; each SAM key pair has exactly one usage. */
export type KeyUsage = "sign" | "derive" | "decrypt" | "unwrap";

/** A key pair in the module as found by its key id. */
export interface KeyInfo {
  keyId: string;
  uri: string;
  algorithm: KeyAlgorithm;
  usage: KeyUsage;
  /** DER SubjectPublicKeyInfo. */
  publicKeySpki: Uint8Array;
  /**
   * True when the module reports the private key was generated inside it and was never
   * extractable nor readable (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE; R-3.1.1.3).
   * False for imported keys.
   */
  generatedInModule: boolean;
}

/** Lookup of signing, encryption and import key pairs by key id (system keys are not found). */
export interface KeyLookup {
  findKey(keyId: string): Promise<KeyInfo | undefined>;
}

/** Key pairs of the SAM itself for receiving encrypted data (JWE to the SAM). */
export type EncryptionKeyAlgorithm = "EC_P256" | "RSA_2048" | "RSA_3072" | "RSA_4096";

export interface DeriveSharedSecretRequest {
  /** An EC_P256 key pair made by generateEncryptionKeyPair (usage "derive"). */
  keyId: string;
  /**
   * The peer's public key as an uncompressed SEC1 point (0x04 || X || Y, 65 bytes), e.g. a JWE
   * `epk`. It is checked to be on P-256 before the module is called (invalid-curve attack).
   */
  peerPublicKey: Uint8Array;
}

export interface DecryptRequest {
  /** An RSA key pair made by generateEncryptionKeyPair (usage "decrypt"). */
  keyId: string;
  /** RSA-OAEP with SHA-1 and MGF1-SHA-1, empty label; exactly the modulus length. */
  ciphertext: Uint8Array;
}

/**
 * The SAM's encryption keys (JWE `ECDH-ES(+A256KW)` or `RSA-OAEP`, design: R.SAD confidentiality).
 * Decryption failures of any kind give one uniform error, so no padding oracle is offered.
 */
export interface EncryptionKeys {
  /** EC_P256 gives a "derive" key (ECDH); RSA gives a "decrypt" key (RSA-OAEP SHA-1). */
  generateEncryptionKeyPair(algorithm: EncryptionKeyAlgorithm): Promise<GeneratedKey>;
  /** ECDH with CKD_NULL: the shared secret Z (the x-coordinate, 32 bytes) for a Concat KDF. */
  deriveSharedSecret(req: DeriveSharedSecretRequest): Promise<Uint8Array>;
  /** RSA-OAEP (SHA-1) decryption, e.g. of a JWE content-encryption key. */
  decryptOaep(req: DecryptRequest): Promise<Uint8Array>;
}

export type ImportKeyAlgorithm = "RSA_2048" | "RSA_3072" | "RSA_4096";

export interface ImportKeyRequest {
  /** The RSA "unwrap" key pair (generateImportKeyPair) whose public key the importer used. */
  importKeyId: string;
  /**
   * RSA-OAEP(SHA-1) of a fresh AES-256 transport key, followed by the PKCS#8 private key wrapped
   * under that transport key with AES key wrap with padding (RFC 5649, CKM_AES_KEY_WRAP_PAD): the
   * layout of CKM_RSA_AES_KEY_WRAP. Both unwraps happen inside the module.
   */
  wrappedKey: Uint8Array;
  algorithm: KeyAlgorithm;
  /** The public key the importer states (DER SPKI); the imported private key must match it. */
  publicKeySpki: Uint8Array;
}

/** Import of an existing signing key into the module (T-2.1.4.x; the import issue). */
export interface KeyImport {
  generateImportKeyPair(algorithm: ImportKeyAlgorithm): Promise<GeneratedKey>;
  /**
   * Unwraps into a sensitive, non-extractable token key with usage "sign", proves it matches
   * `publicKeySpki` (a signature checked with that key) and stores the public half; a mismatch
   * destroys the imported object and fails with KEY_MISMATCH.
   */
  importWrappedKey(req: ImportKeyRequest): Promise<GeneratedKey>;
}

export interface AuditSignRequest {
  /** SHA-256 of what is signed (32 bytes): a checkpoint, or a SadChallenge's JWS signing input. */
  hash: Uint8Array;
  /** ECDSA encoding: DER (default) or raw r||s. */
  format?: "der" | "raw";
}

/** The signing system keys: ECDSA P-256 over checkpoints (R-3.2.2.4) and SadChallenges (T-2.2.1.7). */
export interface AuditSigning {
  signWithSystemKey(key: SigningSystemKey, req: AuditSignRequest): Promise<Uint8Array>;
  /** DER SPKI of a system key pair. */
  systemPublicKey(key: SigningSystemKey): Promise<Uint8Array>;
}

/** Creation of the SAM's own keys (`inkan init`). */
export interface SystemKeyProvisioning {
  /** Creates the system keys that are missing and never replaces one; returns those created. */
  ensureSystemKeys(): Promise<SystemKey[]>;
}

/**
 * Small values kept in the module, outside the database (the audit high-water mark, R-3.2.2.4).
 * A write replaces the value atomically for readers: a crash leaves the old or the new value.
 */
export interface DataObjects {
  /** The value stored under `label`, or undefined if there is none. */
  readDataObject(label: string): Promise<Uint8Array | undefined>;
  /** Stores `value` (at most 4096 bytes) under `label`. */
  writeDataObject(label: string, value: Uint8Array): Promise<void>;
  /** The labels starting with `prefix`, sorted (issue 21: per-node objects, found without a shared index). */
  listDataObjectLabels?(prefix: string): Promise<string[]>;
}

/**
 * What happened to the connection to the crypto module (issue 22: a network HSM restarts, a session
 * handle goes stale, a token is removed). `reason` is a CKR name or the check that failed, never a secret.
 * - "lost": the module is unusable; every call fails at once with CRYPTO_MODULE_FAILURE.
 * - "reconnect-failed": an attempt to reopen sessions, log in and check the system keys failed; the next one follows after
 *   `retryInMs`, or never when it is null (the PIN was refused: retrying could lock the token's user; restart once it is fixed).
 * - "recovered": sessions reopened and logged in, the system keys found by id and checked; calls are served again.
 */
export type ModuleStateChange =
  | { state: "lost"; reason: string }
  | { state: "reconnect-failed"; attempt: number; reason: string; retryInMs: number | null }
  | { state: "recovered"; attempts: number; downMs: number };

/** A module that notices when it is lost and reconnects by itself, with backoff. */
export interface ModuleAvailability {
  /** False from "lost" until "recovered". */
  readonly available: boolean;
  /** Calls `listener` on every change; returns the function that ends the subscription. */
  onStateChange(listener: (change: ModuleStateChange) => void): () => void;
}

/** Everything the PKCS#11 adapter offers: what the composition root hands out, piece by piece. */
export type FullCryptoModule = CryptoModule &
  KeyLookup &
  EncryptionKeys &
  KeyImport &
  AuditSigning &
  SystemKeyProvisioning &
  DataObjects;
