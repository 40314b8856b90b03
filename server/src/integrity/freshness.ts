/**
 * The freshness port (rollback detection, issue 14): seals prove that the SAM wrote a record, not
 * that it is the newest one the SAM wrote. Someone with write access to the database can put back
 * an older, validly sealed copy (a lockout counter before its failures, a revoked device key, an
 * ACTIVE credential status after a suspension, a SAD token before it was consumed). Every write of
 * such a thing advances its head here; every read checks its copy against the head.
 *
 * Keys name what is versioned: `<record kind>:<id>` for sealed records (e.g. `signer:sgn_…`),
 * `policy:<stream>` for policy versions, `txn:<transaction id>` for an authorization's progress.
 * Versions are positive integers that only grow.
 *
 * The implementation (integrity/record-heads.ts) says what is anchored where and what window
 * remains; tests may use {@link MemoryFreshness}.
 */
import { IntegrityViolationError } from "./record-sealer.js";

export interface Freshness {
  /**
   * Records that `key` now stands at `version`, after the write of that version succeeded in the
   * store. Fails closed (throws) when the head cannot be recorded. A version at or below the known
   * head leaves it unchanged (concurrent writers may report out of order; heads only grow).
   */
  advance(key: string, version: number): Promise<void>;
  /**
   * Before a read copy is used: throws {@link IntegrityViolationError} (the reader reports it like a broken
   * seal) when `version` is below the newest version known for `key`, i.e. an older copy was put
   * back. A newer version than known (written by another node, or by a write whose head was lost
   * in a crash) is accepted and becomes the known head.
   */
  check(key: string, version: number): Promise<void>;
  /**
   * The newest version known for `key` (0 if none), synchronously. A head only rises after its
   * version was written to (or read from) the store, so a copy read after this was taken and
   * still below it was put back: a reader that takes it first cannot mistake a concurrent write
   * for a rollback (integrity/sealed-records.ts).
   */
  head(key: string): number;
}

/** The key of a sealed record or another versioned object. */
export const freshnessKey = (kind: string, id: string): string => `${kind}:${id}`;

/** The violation for a copy below the head of `key` (`<kind>:<id>`). */
export function staleCopy(key: string): IntegrityViolationError {
  const colon = key.indexOf(":");
  return colon < 0 ? new IntegrityViolationError(key, "") : new IntegrityViolationError(key.slice(0, colon), key.slice(colon + 1));
}

/** Process memory only: for unit tests of the domain (nothing survives a restart). */
export class MemoryFreshness implements Freshness {
  readonly #heads = new Map<string, number>();

  async advance(key: string, version: number): Promise<void> {
    if (version > (this.#heads.get(key) ?? 0)) this.#heads.set(key, version);
  }

  head(key: string): number {
    return this.#heads.get(key) ?? 0;
  }

  async check(key: string, version: number): Promise<void> {
    const head = this.#heads.get(key) ?? 0;
    if (version < head) throw staleCopy(key);
    if (version > head) this.#heads.set(key, version);
  }
}
