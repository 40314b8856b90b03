import type {
  ListQuery,
  Page,
  PolicyRecord,
  RecordKind,
  RecordOf,
  SealedRecord,
  SealedRecords,
  UniqueFields,
} from "../store/port.js";
import { freshnessKey, MemoryFreshness, staleCopy, type Freshness } from "./freshness.js";
import { IntegrityViolationError, type RecordSealer } from "./record-sealer.js";

type Unsealed<R> = Omit<R, "seal">;

/**
 * How often a list or find whose copy is older than its head is made again before it counts as a
 * rollback. Their keys are unknown before the read, so the heads are compared as soon as it
 * returns, and a write that committed and advanced in between makes the copy look old; a
 * rolled-back row stays old on every read. (A read by key takes the head first: no retry needed.)
 */
export const STALE_REREADS = 3;

/** The versions a read returned: [freshness key, version] pairs (version 0: not in the store). */
type Versions = readonly (readonly [string, number])[];


/**
 * Reads with rollback detection (issue 14, ROLLBACK.md): `read` fetches from the store, `verify`
 * checks the seals. With `key`, the head is taken before the read: a copy below it was put back
 * (a head only rises after the store holds its version, so no concurrent write explains it).
 * Without, the heads are compared as soon as the read returns and a stale result is read again
 * up to {@link STALE_REREADS} times. A rollback is reported once through `report` and thrown as
 * IntegrityViolationError. A copy at or above its head is accepted (`check` raises and journals
 * a newer one); a head that a concurrent write raised after the read is no reason to refuse it.
 */
export async function readFresh<T>(args: {
  freshness: Freshness;
  key?: string | undefined;
  read: () => Promise<T>;
  verify: (raw: T) => Promise<T>;
  versionsOf: (result: T) => Versions;
  report: (violation: IntegrityViolationError) => Promise<void>;
}): Promise<T> {
  const { freshness, key } = args;
  for (let attempt = 0; ; attempt++) {
    const before = key === undefined ? undefined : freshness.head(key);
    const raw = await args.read();
    const stale = args.versionsOf(raw).find(([k, v]) => v < (before ?? freshness.head(k)));
    if (stale && before === undefined && attempt < STALE_REREADS) continue;
    const result = await args.verify(raw); // a broken seal is reported as such, first
    if (stale) {
      const violation = staleCopy(stale[0]);
      await args.report(violation);
      throw violation;
    }
    for (const [k, v] of args.versionsOf(result)) {
      try {
        await freshness.check(k, v);
      } catch (err) {
        if (!(err instanceof IntegrityViolationError)) throw err; // a write after this read: the copy was current when read
      }
    }
    return result;
  }
}

/**
 * The only way the domain reads and writes security-relevant records: every write is sealed and
 * every read verified (R-3.1.1.1, R-3.2.1.7, R-3.2.2.3). A record whose seal does not verify never
 * reaches the caller: the read throws IntegrityViolationError (INTEGRITY_VIOLATION).
 *
 * Freshness (issue 14, ROLLBACK.md): every write advances the record's head and every read checks
 * the copy against it, so an older, validly sealed copy put back in the database (a lockout
 * counter before its failures, a revoked factor, a suspended credential's ACTIVE status, a policy
 * whose newest version was deleted) is refused the same way. The composition root passes the
 * journaled heads (record-heads.ts); the default keeps heads in memory only (tests, `inkan init`).
 */
export class VerifiedRecords {
  constructor(
    private readonly store: SealedRecords,
    private readonly sealer: RecordSealer,
    private readonly freshness: Freshness = new MemoryFreshness(),
  ) {}

  async create<R extends SealedRecord>(record: Unsealed<R>): Promise<R> {
    const sealed = await this.sealer.seal<R>(record);
    await this.store.createRecord(sealed);
    await this.freshness.advance(freshnessKey(sealed.kind, sealed.id), sealed.version);
    return sealed;
  }

  async get<K extends RecordKind>(kind: K, id: string): Promise<RecordOf<K> | undefined> {
    const key = freshnessKey(kind, id);
    // Issue 14: a record missing from the store while a head is known was deleted (version 0).
    return this.#fresh(key, () => this.store.getRecord(kind, id), (record) => [[key, record?.version ?? 0]]);
  }

  /** Stores `record` (whose version must be expectedVersion + 1) if nobody changed it meanwhile. */
  async update<R extends SealedRecord>(record: Unsealed<R>, expectedVersion: number): Promise<R | undefined> {
    const sealed = await this.sealer.seal<R>(record);
    if (!(await this.store.updateRecord(sealed, expectedVersion))) return undefined;
    await this.freshness.advance(freshnessKey(sealed.kind, sealed.id), sealed.version);
    return sealed;
  }

  async list<K extends RecordKind>(query: ListQuery<K>): Promise<Page<RecordOf<K>>> {
    return readFresh({
      freshness: this.freshness,
      read: () => this.store.listRecords(query),
      verify: async (page) => ({ ...page, items: await Promise.all(page.items.map((r) => this.sealer.verify(r))) }),
      versionsOf: (page) => page.items.map((r) => [freshnessKey(r.kind, r.id), r.version] as const),
      report: (violation) => this.sealer.report(violation, "rolled-back"),
    });
  }

  async find<K extends keyof UniqueFields>(kind: K, field: UniqueFields[K], value: string): Promise<RecordOf<K> | undefined> {
    return this.#fresh(undefined, () => this.store.findRecord(kind, field, value), (record) =>
      record ? [[freshnessKey(kind, (record as SealedRecord).id), (record as SealedRecord).version]] : [],
    );
  }

  async appendPolicyVersion(record: Unsealed<PolicyRecord>): Promise<PolicyRecord | undefined> {
    const sealed = await this.sealer.seal<PolicyRecord>(record);
    if (!(await this.store.appendPolicyVersion(sealed))) return undefined;
    await this.freshness.advance(freshnessKey("policy", sealed.id), sealed.version);
    return sealed;
  }

  /** The stream's latest version; refused when versions newer than it were deleted (issue 14). */
  async latestPolicyVersion(id: string): Promise<PolicyRecord | undefined> {
    const key = freshnessKey("policy", id);
    return this.#fresh(key, () => this.store.latestPolicyVersion(id), (record) => [[key, record?.version ?? 0]]);
  }

  /**
   * The number of the stream's latest stored version (0 for none), NOT verified: only to place
   * the version that restores a policy whose latest version failed its check (R-3.2.2.3).
   */
  async latestPolicyVersionNumber(id: string): Promise<number> {
    return (await this.store.latestPolicyVersion(id))?.version ?? 0;
  }

  /** One record (or none) by `read`, seal verified, fresh: see {@link readFresh}. */
  #fresh<R extends SealedRecord | PolicyRecord>(key: string | undefined, read: () => Promise<R | undefined>, versionsOf: (record: R | undefined) => Versions): Promise<R | undefined> {
    return readFresh({
      freshness: this.freshness,
      key,
      read,
      verify: async (record) => record && this.sealer.verify(record),
      versionsOf,
      report: (violation) => this.sealer.report(violation, "rolled-back"),
    });
  }
}
