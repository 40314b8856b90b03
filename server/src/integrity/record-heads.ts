/**
 * The {@link Freshness} of the real server (issue 14): heads journaled in the audit chain, anchored
 * in the crypto module through the audit checkpoints. The design, its costs and the window that
 * remains are in ROLLBACK.md beside this file.
 *
 * - `advance(key, v)` raises the head in memory and appends a "record.versioned" event {key, v}
 *   to this node's audit chain (fail closed: the caller's operation fails when it cannot be written).
 * - `check(key, v)` refuses a copy below the head (IntegrityViolationError); a copy above it
 *   (another node's write, or a write whose journal entry a crash lost) raises the head and is
 *   journaled too, so the next start knows it. `check(key, 0)` asks about a record that is not in
 *   the store: refused when a head is known (the record was deleted).
 * - At start the heads come from every node's versioned events (this node's from its AuditLog,
 *   checked against its checkpoints as the log resumed; the others' here, checked against theirs).
 *   A tail reads the other nodes' new versioned events every second.
 *
 * A refusal by `check` may be a race, not a rollback: a read that started before a concurrent
 * write finishes checking after that write advanced the head. Readers take `head(key)` before
 * they read, or read again, before they report (sealed-records.ts `readFresh`).
 */
import type { AuditSigning, DataObjects } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { AuditLog } from "../audit/audit-log.js";
import { integrityViolationDetected, recordVersioned } from "../audit/events.js";
import { currentAuditKeys, replayNodeJournal, type NodeJournalStore } from "../audit/node-journal.js";
import { RECORD_VERSIONED, versionedEntryOf } from "../audit/versioned-journal.js";
import { maxPageSize } from "../store/port.js";
import { staleCopy, type Freshness } from "./freshness.js";

/** How often the other nodes' new versioned events are read, by default. */
export const DEFAULT_TAIL_INTERVAL_MS = 1000;

export interface RecordHeadsOptions {
  /** This node: its chain is where advances are journaled. */
  nodeId: string;
  audit: AuditLog;
  /** The audit records of every node (the other nodes' versioned events are read from here). */
  store: NodeJournalStore;
  /** The crypto module: its audit key and the other nodes' checkpoints. */
  cryptoModule: AuditSigning & DataObjects;
  /** This node's own heads, read and checked by its AuditLog at start (`takeStartHeads()`). */
  ownHeads: ReadonlyMap<string, number>;
  /** How often other nodes' new versioned events are read (ms); 0 for never. Default 1 s. */
  tailIntervalMs?: number;
  /** Called when a background read of other nodes fails (it is retried at the next tick). */
  onTailError?: (err: unknown) => void;
}

/** The heads, key -> highest version known; a head only grows. */
export class RecordHeads implements Freshness {
  readonly #heads = new Map<string, number>();
  /** The journal write of a key's current head, while it is in flight. */
  readonly #journaling = new Map<string, Promise<void>>();
  /** Per other node: the sequence of its last versioned event read. */
  readonly #tailFrom = new Map<string, number>();
  readonly #o: RecordHeadsOptions;
  #timer: NodeJS.Timeout | undefined;
  #tailing: Promise<void> | undefined;

  constructor(options: RecordHeadsOptions) {
    this.#o = options;
    for (const [key, version] of options.ownHeads) this.raise(key, version);
  }

  /** The number of keys with a known head (for the start record and tests). */
  get size(): number {
    return this.#heads.size;
  }

  /** The newest version known for `key` (0 if none). */
  head(key: string): number {
    return this.#heads.get(key) ?? 0;
  }

  /** Every key with its head (a copy): the acknowledgement of a restore re-bases the records below them (restore-acknowledge.ts). */
  entries(): [string, number][] {
    return [...this.#heads];
  }

  /** Raises the head of `key` to `version` if it is higher, without journaling (it is in a chain already). */
  raise(key: string, version: number): void {
    if (version > (this.#heads.get(key) ?? 0)) this.#heads.set(key, version);
  }

  async advance(key: string, version: number): Promise<void> {
    checkVersion(version);
    const head = this.#heads.get(key) ?? 0;
    // A newer version is known already: a concurrent write that finished first, whose entry covers this one.
    if (version < head) return;
    // The same version: a reader saw this write before its writer got here and journals it.
    if (version === head) return this.#journaling.get(key);
    this.#heads.set(key, version);
    return this.#journal(key, version);
  }

  async check(key: string, version: number): Promise<void> {
    if (!Number.isSafeInteger(version) || version < 0) throw new RangeError(`${key}: version ${version} is not a version`);
    const head = this.#heads.get(key) ?? 0;
    // Issue 14: an older, validly sealed copy was put back (or the record deleted: version 0).
    if (version < head) throw staleCopy(key);
    if (version > head) {
      this.#heads.set(key, version);
      await this.#journal(key, version);
    }
  }

  #journal(key: string, version: number): Promise<void> {
    const written = this.#o.audit.record(recordVersioned({ key, version }));
    this.#journaling.set(key, written);
    const forget = () => {
      if (this.#journaling.get(key) === written) this.#journaling.delete(key);
    };
    written.then(forget, forget);
    return written;
  }

  /**
   * Reads every other node's versioned events, checked against its checkpoints. A disagreement is
   * audited and throws INTEGRITY_VIOLATION: the start fails (fail closed).
   */
  async loadOtherNodes(): Promise<void> {
    const keys = await currentAuditKeys(this.#o.cryptoModule);
    for (const nodeId of await this.#o.store.listAuditNodes()) {
      if (nodeId === this.#o.nodeId) continue;
      const { lastSequence, problem } = await replayNodeJournal({
        store: this.#o.store,
        module: this.#o.cryptoModule,
        keys,
        nodeId,
        onEntry: (e) => this.raise(e.key, e.version),
      });
      if (problem) {
        await this.#o.audit.record(integrityViolationDetected({ kind: "audit-chain", id: nodeId }));
        throw new InkanError("INTEGRITY_VIOLATION", `audit log of node ${nodeId}: ${problem}`);
      }
      this.#tailFrom.set(nodeId, lastSequence);
    }
  }

  /** Starts reading other nodes' new versioned events every `tailIntervalMs`. */
  startTail(): void {
    const interval = this.#o.tailIntervalMs ?? DEFAULT_TAIL_INTERVAL_MS;
    if (interval <= 0 || this.#timer) return;
    this.#timer = setInterval(() => {
      this.tail().catch((err: unknown) => this.#o.onTailError?.(err));
    }, interval);
    this.#timer.unref();
  }

  /**
   * Reads the versioned events other nodes wrote since the last read and raises the heads (no
   * journal: they are in those nodes' chains). One read at a time.
   */
  tail(): Promise<void> {
    this.#tailing ??= this.#tailOnce().finally(() => (this.#tailing = undefined));
    return this.#tailing;
  }

  async #tailOnce(): Promise<void> {
    for (const nodeId of await this.#o.store.listAuditNodes()) {
      if (nodeId === this.#o.nodeId) continue;
      let from = (this.#tailFrom.get(nodeId) ?? 0) + 1;
      for (;;) {
        const page = await this.#o.store.readAuditRecordsByEvent({ nodeId, event: RECORD_VERSIONED, fromSequence: from, limit: maxPageSize });
        for (const record of page) {
          const entry = versionedEntryOf(record);
          if (entry) this.raise(entry.key, entry.version);
          from = record.sequence + 1;
        }
        this.#tailFrom.set(nodeId, from - 1);
        if (page.length < maxPageSize) break;
      }
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Opens the heads of the real server: this node's from its AuditLog, the other nodes' read and
 * checked here, then the tail started. Throws INTEGRITY_VIOLATION (audited) when another node's
 * versioned events disagree with its checkpoints.
 */
export async function openRecordHeads(options: RecordHeadsOptions): Promise<RecordHeads> {
  const heads = new RecordHeads(options);
  await heads.loadOtherNodes();
  heads.startTail();
  return heads;
}

function checkVersion(version: number): void {
  if (!Number.isSafeInteger(version) || version < 1) throw new RangeError(`version ${version} is not a positive integer`);
}
