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
 * - Rollback (an older, validly sealed copy put back) was never the seal's job: its seal is genuine
 *   with or without this cache. Freshness heads (freshness.ts) and the authorization's progress heads
 *   are checked on every read, outside this cache.
 * - The verdicts belong to one key: the composition root clears the cache whenever the crypto module
 *   is lost or reconnects (a module whose record-seal key differs is never judged by the old key's
 *   verdicts), and the record-seal key is never rotated in place (a new key means a new token, i.e. a
 *   reconnect). A process reader who can see this memory can already call the module directly.
 * Bounded (LRU, {@link defaultSealCacheEntries} each of seals and derived keys): a few hundred KiB.
 */
import { createHash } from "node:crypto";

/** Entries kept of each kind: enough for every record and open transaction of a busy node's working set. */
export const defaultSealCacheEntries = 4096;

/** A Map kept in use order: the least recently used entry goes first when full. */
class Lru<V> {
  readonly #entries = new Map<string, V>();

  constructor(private readonly capacity: number) {}

  get(key: string): V | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    return value;
  }

  set(key: string, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.capacity) this.#entries.delete(this.#entries.keys().next().value!);
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}

function digest(covered: Uint8Array, seal?: Uint8Array): string {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(covered.length);
  const h = createHash("sha256").update(length).update(covered);
  if (seal) h.update(seal);
  return h.digest("base64");
}

export class SealCache {
  readonly #seals: Lru<true>;
  readonly #keys: Lru<Uint8Array>;

  constructor(capacity = defaultSealCacheEntries) {
    this.#seals = new Lru(capacity);
    this.#keys = new Lru(capacity);
  }

  /** True when `seal` over exactly `covered` passed the module's check before (or the module made it). */
  passed(covered: Uint8Array, seal: Uint8Array): boolean {
    return this.#seals.get(digest(covered, seal)) === true;
  }

  /** Only after the module computed or confirmed `seal` over exactly `covered`; never for a failure. */
  remember(covered: Uint8Array, seal: Uint8Array): void {
    this.#seals.set(digest(covered, seal), true);
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
