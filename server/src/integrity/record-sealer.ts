import { timingSafeEqual } from "node:crypto";
import canonicalize from "canonicalize";
import type { SystemKeys } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { PendingApprovalRecord, PolicyRecord, SealedRecord } from "../store/port.js";
import { checkedSeal, recordFields, type SealCache } from "./seal-cache.js";

/** A record the sealer can seal: every sealed record kind, and policy versions. */
export type Sealable = SealedRecord | PolicyRecord | PendingApprovalRecord;
type Unsealed<R extends Sealable> = Omit<R, "seal">;

/** Domain separation: a seal is never valid as any other HMAC the SAM computes. */
const sealContext = "inkan-record-seal-v1\n";
const encoder = new TextEncoder();

/**
 * The bytes a seal covers: RFC 8785 canonical JSON of every field of the record except the seal
 * itself, so kind, id, version, the queryable fields (signer of a credential, status, public-key
 * fingerprint, …) and the body are all bound (R-3.1.1.1, R-3.2.1.7, R-3.2.2.3). Moving a credential
 * to another signer, raising a version or copying a seal from another record all break it.
 */
export function sealedBytes(record: Unsealed<Sealable> | Sealable): Uint8Array {
  const { seal: _seal, ...fields } = record as Sealable;
  return encoder.encode(sealContext + canonicalize(fields));
}

/** A record whose seal did not verify. It is never used; the operation stops (fail closed). */
export class IntegrityViolationError extends InkanError {
  constructor(readonly recordKind: string, readonly recordId: string) {
    super("INTEGRITY_VIOLATION", "a stored record failed its integrity check");
    this.name = "IntegrityViolationError";
  }
}

/**
 * What failed: the seal (the record was edited, inserted or cloned), or the record's freshness (an
 * older, validly sealed copy was put back, or the record was deleted: integrity/ROLLBACK.md).
 */
export type IntegrityCause = "seal" | "rolled-back";

export interface RecordSealerOptions {
  keys: SystemKeys;
  /** Called for each integrity failure before the error is thrown (the audit log hooks in here). */
  onViolation?: (kind: string, id: string, cause: IntegrityCause) => Promise<void> | void;
  /** Issue 20: seals that passed, remembered across calls by their exact bytes (seal-cache.ts says why that is sound). */
  cache?: SealCache;
}

/**
 * Seals records with the crypto module's record-seal HMAC key and verifies them on every read.
 * Someone with write access to the database alone cannot produce a valid seal.
 */
export class RecordSealer {
  constructor(private readonly options: RecordSealerOptions) {}

  async seal<R extends Sealable>(record: Unsealed<R>): Promise<R> {
    const cache = this.options.cache;
    const covered = sealedBytes(record);
    const fields = cache && recordFields(record); // the fields these bytes encode, taken with them
    const seal = await this.options.keys.hmacSha256("record-seal", covered);
    cache?.remember(covered, seal); // the module made it over exactly these bytes
    if (fields) cache?.rememberFields(seal, fields);
    return { ...record, seal } as R;
  }

  /** Reports an integrity failure found by another check (e.g. a sealed authorization), like a broken seal. */
  async reportViolation(kind: string, id: string, cause: IntegrityCause = "seal"): Promise<void> {
    await this.options.onViolation?.(kind, id, cause);
  }

  /** Returns the record when its seal verifies; otherwise reports and throws IntegrityViolationError. */
  async verify<R extends Sealable>(record: R): Promise<R> {
    const cache = this.options.cache;
    // Issue 20: exactly these fields with exactly this seal passed before (seal-cache.ts): the same
    // bytes, so neither encoded and hashed again nor sent to the module.
    if (cache?.passedFields(record)) return record;
    const covered = sealedBytes(record);
    const fields = cache && recordFields(record); // the fields these bytes encode, taken with them
    const seal = record.seal;
    // Issue 20: exactly these bytes with exactly this seal passed before (seal-cache.ts): no module
    // call. Any change is checked again; a sealer without a cache checks every read.
    await checkedSeal(cache, covered, seal, async () => {
      const expected = await this.options.keys.hmacSha256("record-seal", covered);
      if (seal.length !== expected.length || !timingSafeEqual(seal, expected)) {
        await this.options.onViolation?.(record.kind, record.id, "seal");
        throw new IntegrityViolationError(record.kind, record.id);
      }
      return true;
    });
    if (fields) cache?.rememberFields(seal, fields); // passed: these fields are a hit from now on
    return record;
  }

  /**
   * Reports an integrity failure found beside the seal (a rolled-back or deleted record, issue 14)
   * through the same hook as a broken seal, so it is logged and audited the same way.
   */
  async report(violation: IntegrityViolationError, cause: IntegrityCause): Promise<void> {
    await this.options.onViolation?.(violation.recordKind, violation.recordId, cause);
  }
}

/**
 * Encrypts confidential fields (TOTP secrets, device-binding data) with the crypto module's
 * AES-256-GCM key, bound to the record they belong to: the associated data is the record's kind
 * and id, so a ciphertext copied into another record does not decrypt (R-3.1.1.1 confidentiality).
 */
export class FieldCipher {
  constructor(private readonly keys: SystemKeys) {}

  private aad(kind: string, id: string): Uint8Array {
    return encoder.encode(`inkan-field-v1\n${canonicalize({ kind, id })}`);
  }

  async encrypt(kind: string, id: string, plaintext: Uint8Array): Promise<string> {
    const sealed = await this.keys.encrypt("field-encryption", plaintext, this.aad(kind, id));
    return Buffer.from(sealed).toString("base64url");
  }

  async decrypt(kind: string, id: string, ciphertext: string): Promise<Uint8Array> {
    try {
      return await this.keys.decrypt("field-encryption", Buffer.from(ciphertext, "base64url"), this.aad(kind, id));
    } catch (err) {
      if (err instanceof InkanError && err.code === "CRYPTO_MODULE_FAILURE") throw err;
      throw new IntegrityViolationError(kind, id);
    }
  }
}
