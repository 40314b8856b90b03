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
import { freshnessKey, MemoryFreshness, type Freshness } from "./freshness.js";
import { IntegrityViolationError, type RecordSealer } from "./record-sealer.js";

type Unsealed<R> = Omit<R, "seal">;

/**
 * How often a read whose copy is older than its head is made again before it counts as a
 * rollback: a read can race with a write (it read version n, the write advanced the head to n + 1
 * before the check), which a second read resolves. A rolled-back row stays old on every read.
 */
export const STALE_REREADS = 3;

/** The versions a read returned: [freshness key, version] pairs (version 0: not in the store). */
type Versions = readonly (readonly [string, number])[];

/**
 * Runs `read` and checks every version it returned against `freshness`. A version below its head
 * is read again (up to {@link STALE_REREADS} times); still below it, the read is refused with
 * IntegrityViolationError, reported once through `report` (issue 14: rollback detection).
 */
export async function readFresh<T>(
  freshness: Freshness,
  read: () => Promise<T>,
  versionsOf: (result: T) => Versions,
  report: (violation: IntegrityViolationError) => Promise<void>,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const result = await read();
    try {
      for (const [key, version] of versionsOf(result)) await freshness.check(key, version);
      return result;
    } catch (err) {
      if (!(err instanceof IntegrityViolationError)) throw err;
      if (attempt >= STALE_REREADS) {
        await report(err);
        throw err;
      }
    }
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
    // Issue 14: a record missing from the store while a head is known was deleted (version 0).
    return this.#fresh(
      async () => {
        const record = await this.store.getRecord(kind, id);
        return record && this.sealer.verify(record);
      },
      (record) => [[freshnessKey(kind, id), record?.version ?? 0]],
    );
  }

  /** Stores `record` (whose version must be expectedVersion + 1) if nobody changed it meanwhile. */
  async update<R extends SealedRecord>(record: Unsealed<R>, expectedVersion: number): Promise<R | undefined> {
    const sealed = await this.sealer.seal<R>(record);
    if (!(await this.store.updateRecord(sealed, expectedVersion))) return undefined;
    await this.freshness.advance(freshnessKey(sealed.kind, sealed.id), sealed.version);
    return sealed;
  }

  async list<K extends RecordKind>(query: ListQuery<K>): Promise<Page<RecordOf<K>>> {
    return this.#fresh(
      async () => {
        const page = await this.store.listRecords(query);
        return { ...page, items: await Promise.all(page.items.map((r) => this.sealer.verify(r))) };
      },
      (page) => page.items.map((r) => [freshnessKey(r.kind, r.id), r.version] as const),
    );
  }

  async find<K extends keyof UniqueFields>(kind: K, field: UniqueFields[K], value: string): Promise<RecordOf<K> | undefined> {
    return this.#fresh(
      async () => {
        const record = await this.store.findRecord(kind, field, value);
        return record && this.sealer.verify(record);
      },
      (record) => (record ? [[freshnessKey(kind, (record as SealedRecord).id), (record as SealedRecord).version]] : []),
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
    return this.#fresh(
      async () => {
        const record = await this.store.latestPolicyVersion(id);
        return record && this.sealer.verify(record);
      },
      (record) => [[freshnessKey("policy", id), record?.version ?? 0]],
    );
  }

  /**
   * The number of the stream's latest stored version (0 for none), NOT verified: only to place
   * the version that restores a policy whose latest version failed its check (R-3.2.2.3).
   */
  async latestPolicyVersionNumber(id: string): Promise<number> {
    return (await this.store.latestPolicyVersion(id))?.version ?? 0;
  }

  #fresh<T>(read: () => Promise<T>, versionsOf: (result: T) => Versions): Promise<T> {
    return readFresh(this.freshness, read, versionsOf, (violation) => this.sealer.report(violation, "rolled-back"));
  }
}
