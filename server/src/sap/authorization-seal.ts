/**
 * Sealed authorizations (issue 14; T-2.2.2.2, R-3.1.1.1, R-3.2.1.1, R-3.2.1.2): someone with write
 * access to the database alone can neither grant nor use a signing authorization.
 *
 * - What Authorize verified (transaction, signer, credential, SCA, algorithms, count, DTBS/R digest,
 *   expiry, the factors that authorized it, whether it only approves a CSR) is sealed with the
 *   module's record-seal HMAC key and stored with the move to AUTHORIZED. Before every signature the
 *   seal is checked and the row must agree with it; signing takes its parameters from the sealed
 *   facts. A row inserted or cloned by hand has no valid seal (the seal binds the transaction id).
 * - Every DTBS/R entry carries a MAC over (index, hash), and every SAD token a MAC over all its
 *   fields, with a key derived in the module for that one transaction (one module HMAC per request,
 *   then HMAC-SHA-256 in Node: a few microseconds per entry, so a 100,000-hash batch is not slowed).
 *   An entry edited, inserted or moved, or a token row written by hand, signs nothing.
 * A failed check is an IntegrityViolationError (INTEGRITY_VIOLATION), reported through `onViolation`
 * (the audit log), and nothing is signed.
 */
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from "node:crypto";
import canonicalize from "canonicalize";
import type { SignatureScheme, SystemKeys } from "../crypto/port.js";
import { IntegrityViolationError } from "../integrity/record-sealer.js";
import { checkedSeal, moduleDerivedKey, type SealCache } from "../integrity/seal-cache.js";
import type { FactorType, NewSadToken, SadTokenRecord, SealedAuthorization, TransactionRecord } from "../store/port.js";

/** What Authorize verified; canonical JSON of it is sealed. */
export interface AuthorizationFacts {
  v: 1;
  transactionId: string;
  signerId: string;
  credentialId: string;
  /** SHA-256 (hex) of the SCA's client certificate: the only caller that may redeem it. */
  sca: string;
  hashAlgorithm: string;
  signatureScheme: SignatureScheme;
  signatureFormat: number;
  numSignatures: number;
  /** base64url of the DTBS/R digest the R.SAD approved. */
  dtbsrDigest: string;
  /** ISO 8601. */
  expiresAt: string;
  authorizedAt: string;
  /** The R.SAD's authentication method. */
  method: string;
  /** The factor records that authorized it: revoked or reset later, the authorization signs nothing more. */
  factors: { id: string; type: FactorType }[];
  /** Opened on a credential without a certificate: approves its CSR and nothing else (R-3.1.3.2), for its whole life. */
  csrOnly: boolean;
}

/** Domain separation from every other HMAC the module's record-seal key computes. */
const contexts = {
  authorization: "inkan-authorization-v1\n",
  entryKey: "inkan-transaction-entry-key-v1\n",
} as const;
const entryMacBytes = 16;
const encoder = new TextEncoder();

export interface AuthorizationSealsOptions {
  keys: Pick<SystemKeys, "hmacSha256">;
  /** Called for each integrity failure before the error is thrown (the audit log hooks in here). */
  onViolation?: (kind: string, id: string, cause: "seal" | "rolled-back") => Promise<void> | void;
  /**
   * Issue 20: authorization seals that passed and entry keys, remembered across calls by the exact
   * bytes the module's HMAC covered (integrity/seal-cache.ts says why that is sound against the
   * database insider, T-2.2.2.2). A hit skips only the module's HMAC: every column the signing path
   * reads is still compared with the sealed facts, and progress heads still catch a row put back.
   */
  cache?: SealCache;
}

export class AuthorizationSeals {
  constructor(private readonly o: AuthorizationSealsOptions) {}

  async seal(facts: AuthorizationFacts): Promise<SealedAuthorization> {
    const body = canonicalize(facts)!;
    const covered = encoder.encode(contexts.authorization + body);
    const seal = await this.o.keys.hmacSha256("record-seal", covered);
    this.o.cache?.remember(covered, seal); // the module made it over exactly these bytes
    return { body, seal };
  }

  /**
   * The facts sealed for `record` (an AUTHORIZED or later transaction), after checking the seal and
   * that every column the signing path reads agrees with them; IntegrityViolationError otherwise.
   */
  async open(record: TransactionRecord): Promise<AuthorizationFacts> {
    const sealed = record.authorization;
    if (!sealed) return this.violation("transaction", record.id);
    const covered = encoder.encode(contexts.authorization + sealed.body);
    const passed = await checkedSeal(this.o.cache, covered, sealed.seal, async () => same(sealed.seal, await this.o.keys.hmacSha256("record-seal", covered)));
    if (!passed) return this.violation("transaction", record.id);
    const facts = JSON.parse(sealed.body) as AuthorizationFacts;
    const agrees =
      facts.v === 1 &&
      facts.transactionId === record.id &&
      facts.signerId === record.signerId &&
      facts.credentialId === record.credentialId &&
      facts.sca === record.sca &&
      facts.hashAlgorithm === record.hashAlgorithm &&
      facts.numSignatures === record.numSignatures &&
      record.dtbsrDigest !== undefined &&
      facts.dtbsrDigest === Buffer.from(record.dtbsrDigest).toString("base64url") &&
      facts.expiresAt === record.expiresAt.toISOString() &&
      record.signaturesCreated <= facts.numSignatures;
    if (!agrees) return this.violation("transaction", record.id);
    return facts;
  }

  /** The transaction's entry key: one module HMAC; the MACs themselves are computed in Node. */
  async entryKey(transactionId: string): Promise<EntryKey> {
    const input = encoder.encode(contexts.entryKey + transactionId);
    // A function of the transaction id alone: the same on every call.
    const key = await moduleDerivedKey(this.o.cache, input, () => this.o.keys.hmacSha256("record-seal", input));
    return new EntryKey(transactionId, key, (kind, id, cause) => this.violation(kind, id, cause));
  }

  /** Issue 14: the transaction's counter (with its entries) or its state was put back: reported, and nothing is signed. */
  async rolledBack(transactionId: string): Promise<never> {
    return this.violation("transaction", transactionId, "rolled-back");
  }

  private async violation(kind: string, id: string, cause: "seal" | "rolled-back" = "seal"): Promise<never> {
    await this.o.onViolation?.(kind, id, cause);
    throw new IntegrityViolationError(kind, id);
  }
}

/** MACs of one transaction's DTBS/R entries and SAD tokens. */
export class EntryKey {
  constructor(
    readonly transactionId: string,
    private readonly key: Uint8Array,
    private readonly violation: (kind: string, id: string, cause?: "seal" | "rolled-back") => Promise<never>,
  ) {}

  /** Issue 20: the key imported once, and one position buffer ("e" + index), for all of the transaction's entry MACs. */
  #keyObject: KeyObject | undefined;
  readonly #position = Buffer.from([0x65, 0, 0, 0, 0]);

  /** HMAC-SHA-256 of ("e", index as uint32 BE, hash); the MAC is its first entryMacBytes bytes. */
  private entryDigest(index: number, hash: Uint8Array): Buffer {
    this.#position.writeUInt32BE(index, 1);
    return createHmac("sha256", (this.#keyObject ??= createSecretKey(this.key))).update(this.#position).update(hash).digest();
  }

  /** The MAC of the entry at `index` holding `hash`. */
  mac(index: number, hash: Uint8Array): Uint8Array {
    return truncated(this.entryDigest(index, hash));
  }

  /** The MACs of consecutive entries from `fromIndex`. */
  macs(fromIndex: number, hashes: readonly Uint8Array[]): Uint8Array[] {
    return hashes.map((h, i) => this.mac(fromIndex + i, h));
  }

  /** T-2.2.2.2: throws IntegrityViolationError unless the stored MAC is the SAM's for (index, hash). */
  async checkEntry(index: number, hash: Uint8Array, mac: Uint8Array | undefined): Promise<void> {
    return this.checkEntries([index], [hash], [mac]);
  }

  /**
   * T-2.2.2.2: {@link checkEntry} for each (indices[i], hashes[i], macs[i]), in one synchronous pass
   * (issue 20: no promise per entry); the first entry whose stored MAC is not the SAM's is reported.
   */
  async checkEntries(indices: readonly number[], hashes: readonly Uint8Array[], macs: readonly (Uint8Array | undefined)[]): Promise<void> {
    if (hashes.length !== indices.length || macs.length !== indices.length) throw new RangeError("one hash and one MAC per entry");
    for (let i = 0; i < indices.length; i++) {
      const mac = macs[i];
      if (!mac || mac.length !== entryMacBytes || !timingSafeEqual(mac, this.entryDigest(indices[i]!, hashes[i]!).subarray(0, entryMacBytes))) {
        await this.violation("dtbsr", `${this.transactionId}#${indices[i]}`);
      }
    }
  }

  /**
   * Issue 17: the secret of the token that follows `presentedHash` in a SignHash, derived (not
   * drawn) so that a retry of a call whose response was lost gets the same next token, never a
   * second one. Only the module-derived key makes it: a reader of the database cannot.
   */
  nextTokenSecret(presentedHash: string, length: number): Uint8Array {
    const out = createHmac("sha256", this.key).update("next-sad-token\n").update(presentedHash).digest();
    if (length > out.length) throw new RangeError("at most 32 bytes");
    return new Uint8Array(out.subarray(0, length));
  }

  tokenMac(t: Omit<NewSadToken, "mac">): Uint8Array {
    const fields = {
      t: "sad-token",
      hash: t.hash,
      transactionId: t.transactionId,
      generation: t.generation,
      previousHash: t.previousHash ?? null,
      minIndex: t.minIndex ?? 0,
      issuedAt: t.issuedAt.toISOString(),
      expiresAt: t.expiresAt.toISOString(),
    };
    return truncated(createHmac("sha256", this.key).update(canonicalize(fields)!).digest());
  }

  /** T-2.2.2.2: a token row the SAM did not write (or one edited since) is refused. */
  async checkToken(t: SadTokenRecord): Promise<void> {
    if (t.transactionId !== this.transactionId || !t.mac || !same(t.mac, this.tokenMac(t))) await this.violation("sad-token", t.transactionId);
  }
}

function truncated(mac: Buffer): Uint8Array {
  return new Uint8Array(mac.subarray(0, entryMacBytes));
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The freshness key of an authorization's progress (integrity/freshness.ts): its head is the
 * signature counter after the last claim, so a counter (with its entries) put back lower, which
 * would reopen spent signatures, is refused; an ended authorization's head is {@link closedProgress}.
 */
export const progressKey = (transactionId: string): string => `txn:${transactionId}`;
/**
 * Issue 17: the freshness key of a transaction's recorded signatures (its head: the count after the
 * last record), so that a recorded signature removed from a row by hand, counter and all, is found
 * before the entry is claimed again: no DTBS/R ever has more than one signature released.
 */
export const recordedKey = (transactionId: string): string => `txn-recorded:${transactionId}`;
/** The head of an authorization that ended (cancelled, revoked): none of its tokens is accepted again. */
export const closedProgress = 2 ** 31 - 1;
