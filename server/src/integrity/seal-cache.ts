/**
 * Issue 20: seal checks and module-derived keys remembered across calls, so that a SignHash of one
 * hash does not send the same credential, signer, factors, policy, authorization seal and entry key
 * to the crypto module again on every call (one module HMAC each, a round trip on a network HSM).
 *
 * Content-addressed: an entry is keyed by SHA-256 over the exact bytes the module's HMAC covered
 * (length-prefixed) and, for a seal, the exact seal. Why this stays sound against the database
 * insider (T-2.2.2.2; R-3.1.1.1, R-3.2.1.7, R-3.2.2.3 for records, R-3.2.1.1 for authorizations):
 * - HMAC-SHA-256 under the module's record-seal key is a deterministic function of its input. A hit
 *   means these exact bytes with this exact seal passed the module's check before, so the module
 *   would answer the same now: the cache changes no verdict, only how often the module is asked.
 * - The insider cannot make a hit without the bytes: a row edited, inserted, cloned or moved (any
 *   byte of id, version, status, body or seal) has another digest, misses and is checked in the
 *   module (SHA-256 collision resistance; the length prefix keeps (bytes, seal) splits apart).
 * - Failures are never remembered: a forged row is checked (and reported) on every read.
 * - A record's seal check is also remembered by its fields (issue 20: no canonical encoding and
 *   hashing of the same record on every read): a record whose fields are all strings, numbers or
 *   booleans and that passed with seal S is kept, as a frozen copy of those fields, under S. A read
 *   with seal S whose fields are the same names with the same values (===) covers the same bytes
 *   (the canonical encoding is a function of the fields), so it is the same hit as above. Any other
 *   field (added, missing, changed, or not a string, number or boolean) takes the path above. A
 *   seal copied onto another record finds that record's fields and misses.
 * - Rollback (an older, validly sealed copy put back) was never the seal's job: its seal is genuine
 *   with or without this cache. Freshness heads (freshness.ts) and the authorization's progress heads
 *   are checked on every read, outside this cache.
 * - The verdicts belong to one key: the composition root clears the cache whenever the crypto module
 *   is lost or reconnects (a module whose record-seal key differs is never judged by the old key's
 *   verdicts), and the record-seal key is never rotated in place (a new key means a new token, i.e. a
 *   reconnect). A process reader who can see this memory can already call the module directly.
 * Bounded (LRU, {@link defaultSealCacheEntries} each of seals and derived keys): a few hundred KiB,
 * plus the fields kept with seals, which hold their records' bodies (a few MiB at most).
 */
import { createHash } from "node:crypto";
import { Lru } from "../lru.js";

/** Entries kept of each kind: enough for every record and open transaction of a busy node's working set. */
export const defaultSealCacheEntries = 4096;

const sealKey = (seal: Uint8Array): string => Buffer.from(seal.buffer, seal.byteOffset, seal.byteLength).toString("base64");

function digest(covered: Uint8Array, seal?: Uint8Array): string {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(covered.length);
  const h = createHash("sha256").update(length).update(covered);
  if (seal) h.update(seal);
  return h.digest("base64");
}

/** A record's fields other than its seal, when each is a string, a finite number or a boolean. */
export type RecordFields = Readonly<Record<string, string | number | boolean>>;

/** A frozen copy of `record`'s fields other than its seal if each is flat (undefined if not): take it when its bytes are encoded. */
export function recordFields(record: object): RecordFields | undefined {
  const fields: Record<string, string | number | boolean> = {};
  for (const [name, value] of Object.entries(record)) {
    if (name === "seal") continue;
    if (typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value))) fields[name] = value;
    else return undefined; // a Date, an object, undefined: only its canonical bytes say what the seal covers
  }
  return Object.freeze(fields);
}

/** What passed with one seal: the digest of the bytes it covered, and the record's fields if they are flat. */
interface Passed {
  covered: string;
  fields?: RecordFields;
}

export class SealCache {
  /** By seal (base64): one seal is valid over one byte string only, so a seal names its entry. */
  readonly #seals: Lru<Passed>;
  readonly #keys: Lru<Uint8Array>;

  constructor(capacity = defaultSealCacheEntries) {
    this.#seals = new Lru(capacity);
    this.#keys = new Lru(capacity);
  }

  /** True when `seal` over exactly `covered` passed the module's check before (or the module made it). */
  passed(covered: Uint8Array, seal: Uint8Array): boolean {
    return this.#seals.get(sealKey(seal))?.covered === digest(covered, seal);
  }

  /** Only after the module computed or confirmed `seal` over exactly `covered`; never for a failure. */
  remember(covered: Uint8Array, seal: Uint8Array): void {
    this.#seals.set(sealKey(seal), { covered: digest(covered, seal) });
  }

  /**
   * True when `record` has exactly the fields (names and values) of a record that passed with the
   * same seal: {@link passed} for the bytes those fields encode to, without encoding them.
   */
  passedFields(record: object & { seal: Uint8Array }): boolean {
    const known = this.#seals.get(sealKey(record.seal))?.fields;
    if (!known) return false;
    let count = 0;
    for (const [name, value] of Object.entries(record) as [string, unknown][]) {
      if (name === "seal") continue;
      if (!Object.hasOwn(known, name) || known[name] !== value) return false;
      count += 1;
    }
    return count === Object.keys(known).length;
  }

  /** After {@link remember} of the bytes that `fields` (from {@link recordFields}) encode to with `seal`: kept with that entry. */
  rememberFields(seal: Uint8Array, fields: RecordFields): void {
    const entry = this.#seals.get(sealKey(seal));
    if (entry) entry.fields = fields;
  }

  /** A key the module derived from exactly `input` (an HMAC under the record-seal key), if remembered. */
  derivedKey(input: Uint8Array): Uint8Array | undefined {
    return this.#keys.get(digest(input));
  }

  rememberDerivedKey(input: Uint8Array, key: Uint8Array): void {
    this.#keys.set(digest(input), new Uint8Array(key));
  }

  /** Forgets everything: the module was lost or reconnected (its key may not be the one that judged). */
  clear(): void {
    this.#seals.clear();
    this.#keys.clear();
  }

  /** Entries held: seals and derived keys. */
  get size(): { seals: number; keys: number } {
    return { seals: this.#seals.size, keys: this.#keys.size };
  }
}

/**
 * The one way a seal check goes through the cache: `check` (the module's verdict over exactly
 * `covered` and `seal`: false or a throw on a failure) runs unless this exact pair passed before,
 * and only a pass is remembered. Without a cache `check` runs every time.
 */
export async function checkedSeal(cache: SealCache | undefined, covered: Uint8Array, seal: Uint8Array, check: () => Promise<boolean>): Promise<boolean> {
  if (cache?.passed(covered, seal)) return true;
  if (!(await check())) return false; // never remembered
  cache?.remember(covered, seal);
  return true;
}

/** A key the module derives from exactly `input` (`derive`), asked of the module once while the cache holds it. */
export async function moduleDerivedKey(cache: SealCache | undefined, input: Uint8Array, derive: () => Promise<Uint8Array>): Promise<Uint8Array> {
  const known = cache?.derivedKey(input);
  if (known) return known;
  const key = await derive();
  cache?.rememberDerivedKey(input, key);
  return key;
}
