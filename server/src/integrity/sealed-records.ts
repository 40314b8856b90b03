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
import type { RecordSealer } from "./record-sealer.js";

type Unsealed<R> = Omit<R, "seal">;

/**
 * The only way the domain reads and writes security-relevant records: every write is sealed and
 * every read verified (R-3.1.1.1, R-3.2.1.7, R-3.2.2.3). A record whose seal does not verify never
 * reaches the caller: the read throws IntegrityViolationError (INTEGRITY_VIOLATION).
 */
export class VerifiedRecords {
  constructor(
    private readonly store: SealedRecords,
    private readonly sealer: RecordSealer,
  ) {}

  async create<R extends SealedRecord>(record: Unsealed<R>): Promise<R> {
    const sealed = await this.sealer.seal<R>(record);
    await this.store.createRecord(sealed);
    return sealed;
  }

  async get<K extends RecordKind>(kind: K, id: string): Promise<RecordOf<K> | undefined> {
    const record = await this.store.getRecord(kind, id);
    return record && this.sealer.verify(record);
  }

  /** Stores `record` (whose version must be expectedVersion + 1) if nobody changed it meanwhile. */
  async update<R extends SealedRecord>(record: Unsealed<R>, expectedVersion: number): Promise<R | undefined> {
    const sealed = await this.sealer.seal<R>(record);
    return (await this.store.updateRecord(sealed, expectedVersion)) ? sealed : undefined;
  }

  async list<K extends RecordKind>(query: ListQuery<K>): Promise<Page<RecordOf<K>>> {
    const page = await this.store.listRecords(query);
    return { ...page, items: await Promise.all(page.items.map((r) => this.sealer.verify(r))) };
  }

  async find<K extends keyof UniqueFields>(kind: K, field: UniqueFields[K], value: string): Promise<RecordOf<K> | undefined> {
    const record = await this.store.findRecord(kind, field, value);
    return record && this.sealer.verify(record);
  }

  async appendPolicyVersion(record: Unsealed<PolicyRecord>): Promise<PolicyRecord | undefined> {
    const sealed = await this.sealer.seal<PolicyRecord>(record);
    return (await this.store.appendPolicyVersion(sealed)) ? sealed : undefined;
  }

  async latestPolicyVersion(id: string): Promise<PolicyRecord | undefined> {
    const record = await this.store.latestPolicyVersion(id);
    return record && this.sealer.verify(record);
  }

  /**
   * The number of the stream's latest stored version (0 for none), NOT verified: only to place
   * the version that restores a policy whose latest version failed its check (R-3.2.2.3).
   */
  async latestPolicyVersionNumber(id: string): Promise<number> {
    return (await this.store.latestPolicyVersion(id))?.version ?? 0;
  }
}
