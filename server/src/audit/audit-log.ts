/**
 * The tamper-evident audit log of one SAM node (R-3.2.2.4).
 *
 * - Hash chain: record n holds the hash of record n-1 (32 zero bytes for n = 1), and its own hash
 *   covers every field (record-form.ts). Sequences start at 1 and grow by exactly 1 per node.
 * - One append in flight per node in this process (a queue); the store's unique (node, sequence)
 *   and its prevHash check stop a second process that writes under the same node id.
 * - Checkpoints: after every `checkpointEveryRecords` records, or once `checkpointIntervalMs` has
 *   passed since the last one while records were added (checked on each record and by a timer),
 *   the head is signed by the crypto module's audit key and stored; the newest checkpoint is also
 *   written to a data object in the module, outside the database.
 * - Start: the chain is resumed from the store's newest record, after checking it against the
 *   module's checkpoint. A store that ends before that checkpoint was truncated, and one whose
 *   record there has another hash was rewritten: the log refuses to open (INTEGRITY_VIOLATION),
 *   so the SAM does not start on a tampered log.
 * - Versioned heads (issue 14, integrity/ROLLBACK.md): every checkpoint also signs the count and
 *   digest of this node's "record.versioned" events up to its sequence (versioned-journal.ts). At
 *   start the log reads only those events, checks the digest at the module's and the store's
 *   checkpoints, and hands the heads they state to the rollback check ({@link
 *   ChainedAuditLog.takeStartHeads}). A versioned event deleted, edited or inserted before the
 *   newest checkpoint stops the start (INTEGRITY_VIOLATION), audited.
 *
 * FAIL-CLOSED CONTRACT: `record(event)` resolves only once the record is durably in the store
 * (and any checkpoint that was due is written). If it rejects (always with an InkanError
 * "AUDIT_FAILURE"), the caller must not proceed: no signature, key or state change may leave or
 * be committed for that operation. Record the event before releasing the operation's result.
 */
import type { AuditSigning, DataObjects } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { AuditRecord, AuditRecords } from "../store/port.js";
import { maxPageSize } from "../store/port.js";
import { ChainChecker, storedEntry, type ChainEntry } from "./chain-checker.js";
import {
  auditKeyFromSpki,
  ensureAuditNodeIndexed,
  readHighWaterMark,
  signCheckpoint,
  versionedAnchorOf,
  storedCheckpointProblem,
  checkpointProblem,
  writeHighWaterMark,
  type AuditPublicKey,
  type CheckpointClaim,
} from "./checkpoint.js";
import { integrityViolationDetected, type AuditEvent } from "./events.js";
import { equalBytes, newStoredRecord, timestampJson, toBase64, ZERO_HASH } from "./record-form.js";
import {
  extendVersionedDigest,
  replayVersionedJournal,
  versionedEntryOf,
  type VersionedAnchor,
  type VersionedDigest,
} from "./versioned-journal.js";

/** Where security events go. Implementations fail closed: see the module comment. */
export interface AuditLog {
  /**
   * Appends the event to the log. Rejects with InkanError("AUDIT_FAILURE") when it cannot be
   * written; the caller must then fail its operation and release nothing.
   */
  record(event: AuditEvent): Promise<void>;
}

/** An {@link AuditLog} that also appends many events in one atomic write (one commit per batch). */
export interface BatchAuditLog extends AuditLog {
  /** Appends the events in order, all or none; rejects like {@link AuditLog.record}. */
  recordAll(events: readonly AuditEvent[]): Promise<void>;
}

export interface AuditLogOptions {
  /** This SAM node's configured id; each node writes its own chain. */
  nodeId: string;
  store: AuditRecords;
  /** The crypto module: its "audit-signing" key and data objects. */
  cryptoModule: AuditSigning & DataObjects;
  /** Sign a checkpoint at least every this many records (1 to 100,000; default {@link DEFAULT_CHECKPOINT_EVERY_RECORDS}). */
  checkpointEveryRecords?: number;
  /**
   * ...and at least this often while records are added, in ms (1 s to 24 h; default
   * {@link DEFAULT_CHECKPOINT_INTERVAL_MS}). The timer looks every second at most, so a record is
   * covered within this interval plus a second (plus the checkpoint's own write).
   */
  checkpointIntervalMs?: number;
  /** Run a timer that writes the time-based checkpoint when no record comes (default true). */
  checkpointTimer?: boolean;
  /** The clock (default: the system clock). */
  now?: () => Date;
  /** Called when a timer-driven checkpoint fails (the next record retries it and fails closed). */
  onBackgroundError?: (err: InkanError) => void;
}

/** What the log found when it opened; pass it to `samStarted`. */
export interface AuditLogStartState {
  /** The newest sequence in the store when the log opened (0 for a new node). */
  headSequence: number;
  /** The sequence of the checkpoint kept in the crypto module (0 if none). */
  moduleCheckpointSequence: number;
}

/**
 * Issue 13 finding 5: records written after the newest checkpoint can be deleted unnoticed after a
 * crash, so a checkpoint bounds that window: at least every this many records... (the security
 * policy's audit_checkpoint_every_records, applied by main.ts, overrides it)
 */
export const DEFAULT_CHECKPOINT_EVERY_RECORDS = 1000;
/** ...and every this many milliseconds while records come (audit_checkpoint_interval overrides it). */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;
/** How often the timer looks whether a time-based checkpoint is due, at most. */
const TIMER_TICK_MS = 1000;
/** How often, at most, a checkpoint re-reads the module's node index (a data-object read: a scan of the token in SoftHSM2). */
const NODE_INDEX_RECHECK_MS = 10 * 60_000;

function auditFailure(message: string, cause?: unknown): InkanError {
  return new InkanError("AUDIT_FAILURE", message, { cause });
}

function checkPolicy(every: number, intervalMs: number): void {
  if (!Number.isInteger(every) || every < 1 || every > 100_000) throw new RangeError("checkpointEveryRecords must be 1 to 100,000");
  if (!Number.isInteger(intervalMs) || intervalMs < 1000 || intervalMs > 86_400_000) throw new RangeError("checkpointIntervalMs must be 1 s to 24 h");
}

/**
 * Opens the audit log of `options.nodeId`: checks the store's chain against the crypto module's
 * checkpoint and resumes it. Throws INTEGRITY_VIOLATION when the store was truncated or
 * rewritten, and AUDIT_FAILURE when the store or module cannot be read.
 */
export async function createAuditLog(options: AuditLogOptions): Promise<ChainedAuditLog> {
  const every = options.checkpointEveryRecords ?? DEFAULT_CHECKPOINT_EVERY_RECORDS;
  const intervalMs = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
  checkPolicy(every, intervalMs);
  if (!options.nodeId || options.nodeId.length > 64) throw new RangeError("nodeId must be 1 to 64 characters");
  const now = options.now ?? (() => new Date());
  try {
    const key = await auditKeyFromSpki(await options.cryptoModule.systemPublicKey("audit-signing"));
    const state = await resume(options, key);
    await ensureAuditNodeIndexed(options.cryptoModule, options.nodeId);
    const log = new ChainedAuditLog(options, key, state, every, intervalMs, now);
    if (state.versionedProblem) await refuseStart(log, state.versionedProblem);
    return log;
  } catch (err) {
    if (err instanceof InkanError && err.code === "INTEGRITY_VIOLATION") throw err;
    throw auditFailure(`the audit log of node ${options.nodeId} cannot be opened`, err);
  }
}

/**
 * Issue 14: the chain's versioned events before a checkpoint were tampered with. The chain after
 * the checkpoint is intact, so the refusal is recorded on it, and no checkpoint is written: one
 * would sign the tampered digest and let the next start pass. Every start refuses from here on,
 * until an operator acknowledges a restore (the restore path of issues 21/22).
 */
async function refuseStart(log: ChainedAuditLog, problem: string): Promise<never> {
  log.holdCheckpoints();
  try {
    await log.record(integrityViolationDetected({ kind: "audit-chain", id: log.nodeId }));
  } finally {
    await log.close();
  }
  throw tampered(log.nodeId, problem);
}

interface ResumedState {
  head: { sequence: number; hash: Uint8Array };
  /** The digest of this node's versioned events up to the head. */
  versioned: VersionedDigest;
  /** key -> highest version among this node's versioned events. */
  heads: Map<string, number>;
  /** Why the versioned events disagree with a checkpoint; undefined when they agree. */
  versionedProblem: string | undefined;
  /** Newest checkpoint in the store, and the one in the module. */
  storeCheckpoint: number;
  moduleCheckpoint: number;
  /** The store's newest checkpoint when the module does not hold it yet (a crash between the two writes). */
  unwrittenCheckpoint: { sequence: number; body: string } | undefined;
  lastCheckpointTime: Date | undefined;
}

function tampered(nodeId: string, message: string): InkanError {
  return new InkanError("INTEGRITY_VIOLATION", `audit log of node ${nodeId}: ${message}`);
}

async function resume(options: AuditLogOptions, key: AuditPublicKey): Promise<ResumedState> {
  const { store, nodeId } = options;
  const keys = [key];
  const mark = await readHighWaterMark(options.cryptoModule, nodeId);
  if (mark) {
    const problem = await checkpointProblem(mark.checkpoint, keys);
    if (problem) throw tampered(nodeId, `the crypto module's checkpoint is invalid (${problem})`);
  }
  const latest = await store.latestAuditRecord(nodeId);
  const headSequence = latest?.sequence ?? 0;
  // R-3.2.2.4: the module's checkpoint is outside the database; a store behind it was truncated.
  if (mark && headSequence < mark.sequence) {
    throw tampered(nodeId, `the store ends at record ${headSequence} but the crypto module's checkpoint covers record ${mark.sequence}: truncated`);
  }
  const storeCp = await store.latestAuditCheckpoint(nodeId);
  let storeCheckpoint = 0;
  let storeClaim: CheckpointClaim | undefined;
  if (storeCp) {
    const { claim, problem } = await storedCheckpointProblem(storeCp, keys);
    if (problem || !claim) throw tampered(nodeId, problem ?? "malformed checkpoint");
    storeClaim = claim;
    if (storeCp.sequence > headSequence) {
      throw tampered(nodeId, `the store ends at record ${headSequence} but its checkpoint covers record ${storeCp.sequence}: truncated`);
    }
    storeCheckpoint = storeCp.sequence;
  }
  // Check the unsigned tail: from the newest checkpoint (in the module or the store) to the head.
  const anchor = Math.max(mark?.sequence ?? 0, storeCheckpoint);
  if (latest) {
    const from = Math.max(anchor, 1);
    const checker = new ChainChecker({ startSequence: from, anchorHash: from === 1 ? ZERO_HASH : undefined });
    if (mark && mark.sequence >= from) {
      checker.pushCheckpoint({ sequence: mark.sequence, recordHash: mark.recordHash, invalid: undefined, label: "crypto module checkpoint" });
    }
    if (storeClaim && storeClaim.sequence >= from) {
      checker.pushCheckpoint({ sequence: storeClaim.sequence, recordHash: storeClaim.recordHash, invalid: undefined, label: "checkpoint" });
    }
    for (let next = from; next <= headSequence; ) {
      const page = (await store.readAuditRecords({ nodeId, fromSequence: next, limit: maxPageSize })).map(storedEntry);
      if (page.length === 0) break;
      for (let i = 0; i < page.length; i++) {
        const entry = page[i] as ChainEntry;
        if (!(await checker.pushRecord(entry, async () => page.slice(i + 1)))) break;
      }
      if (checker.problem) break;
      next = (page[page.length - 1]?.sequence ?? headSequence) + 1;
    }
    const problem = checker.finish();
    if (problem) throw tampered(nodeId, `${problem.kind} at record ${problem.firstBadSequence}: ${problem.description}`);
    if (checker.verifiedThrough !== headSequence) throw tampered(nodeId, `the chain does not reach its newest record ${headSequence}`);
  }
  // Issue 14: the versioned events before the anchor are not read above; their digest, signed in
  // the checkpoints, stands for them. Those after it were just checked as part of the chain.
  const anchors = [mark && versionedAnchorOf(mark.checkpoint, "crypto module checkpoint"), storeClaim && versionedAnchorOf(storeClaim, "checkpoint")];
  const heads = new Map<string, number>();
  const replay = await replayVersionedJournal({
    store,
    nodeId,
    anchors: anchors.filter((a): a is VersionedAnchor => a !== undefined),
    onEntry: (e) => void heads.set(e.key, Math.max(heads.get(e.key) ?? 0, e.version)),
  });
  return {
    head: { sequence: headSequence, hash: latest?.hash ?? ZERO_HASH },
    versioned: replay.digest,
    heads,
    versionedProblem: replay.problem,
    storeCheckpoint,
    moduleCheckpoint: mark?.sequence ?? 0,
    unwrittenCheckpoint: storeCp && storeCheckpoint > (mark?.sequence ?? 0) ? { sequence: storeCheckpoint, body: storeCp.body } : undefined,
    lastCheckpointTime: storeCp?.time ?? mark?.checkpoint.signedAt,
  };
}

/** The hash-chained, checkpointed {@link AuditLog} of one node. Made by {@link createAuditLog}. */
export class ChainedAuditLog implements BatchAuditLog {
  readonly nodeId: string;
  readonly startState: AuditLogStartState;
  readonly #store: AuditRecords;
  readonly #module: AuditSigning & DataObjects;
  readonly #key: AuditPublicKey;
  readonly #now: () => Date;
  readonly #onBackgroundError: (err: InkanError) => void;
  #every: number;
  #intervalMs: number;
  #head: { sequence: number; hash: Uint8Array };
  /** The digest of this node's versioned events up to the head (signed into each checkpoint). */
  #versioned: VersionedDigest;
  /** The heads found at start, until the rollback check takes them. */
  #startHeads: Map<string, number> | undefined;
  /** Set when the start is refused: no checkpoint may sign the chain (see refuseStart). */
  #checkpointsHeld = false;
  #nodeIndexCheckedAt = Number.NEGATIVE_INFINITY;
  #storeCheckpoint: number;
  #moduleCheckpoint: number;
  /** Body of the newest checkpoint in the store, when the module does not hold it yet. */
  #unwrittenCheckpoint: { sequence: number; body: string } | undefined;
  #lastCheckpointAt: number;
  /** The record whose append failed with an unknown outcome; checked before the next append. */
  #uncertain: AuditRecord | undefined;
  /** The versioned digest if that append did happen. */
  #uncertainVersioned: VersionedDigest | undefined;
  /** Set when the chain was extended by someone else: every later record fails. */
  #broken: InkanError | undefined;
  #closed = false;
  #queue: Promise<unknown> = Promise.resolve();
  /** Events recorded and not yet appended (issue 20: appended together, see #enqueue). */
  #waiting: WaitingEvents[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(options: AuditLogOptions, key: AuditPublicKey, state: ResumedState, every: number, intervalMs: number, now: () => Date) {
    this.nodeId = options.nodeId;
    this.#store = options.store;
    this.#module = options.cryptoModule;
    this.#key = key;
    this.#now = now;
    this.#onBackgroundError = options.onBackgroundError ?? (() => undefined);
    this.#every = every;
    this.#intervalMs = intervalMs;
    this.#head = state.head;
    this.#versioned = state.versioned;
    this.#startHeads = state.heads;
    this.#nodeIndexCheckedAt = now().getTime(); // createAuditLog checked it
    this.#storeCheckpoint = state.storeCheckpoint;
    this.#moduleCheckpoint = state.moduleCheckpoint;
    this.#unwrittenCheckpoint = state.unwrittenCheckpoint;
    this.#lastCheckpointAt = (state.lastCheckpointTime ?? now()).getTime();
    this.startState = { headSequence: state.head.sequence, moduleCheckpointSequence: state.moduleCheckpoint };
    if (options.checkpointTimer ?? true) this.#startTimer();
  }

  #startTimer(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = setInterval(() => void this.#timerTick(), Math.min(this.#intervalMs, TIMER_TICK_MS));
    this.#timer.unref();
  }

  /** The audit key's id (RFC 7638 thumbprint): the `kid` of this node's checkpoints. */
  get keyId(): string {
    return this.#key.keyId;
  }

  /** The newest record of this node's chain. */
  get head(): { sequence: number; hash: Uint8Array } {
    return { sequence: this.#head.sequence, hash: new Uint8Array(this.#head.hash) };
  }

  /** The count and digest of this node's versioned events up to the head (what the next checkpoint signs). */
  get versionedDigest(): VersionedDigest {
    return { count: this.#versioned.count, digest: new Uint8Array(this.#versioned.digest) };
  }

  /**
   * The heads this node's own chain states (key -> highest journaled version), checked against its
   * checkpoints at start; handed over once (integrity/record-heads.ts), later calls get an empty map.
   */
  takeStartHeads(): Map<string, number> {
    const heads = this.#startHeads ?? new Map<string, number>();
    this.#startHeads = undefined;
    return heads;
  }

  /**
   * Issue 23 (metrics, readiness): records not yet covered by a checkpoint, milliseconds since the
   * last checkpoint, and whether records are accepted (not closed, chain not found broken).
   */
  get checkpointLag(): { uncheckpointedRecords: number; sinceCheckpointMs: number; usable: boolean } {
    return {
      uncheckpointedRecords: Math.max(0, this.#head.sequence - this.#storeCheckpoint),
      sinceCheckpointMs: Math.max(0, this.#now().getTime() - this.#lastCheckpointAt),
      usable: !this.#closed && this.#broken === undefined,
    };
  }

  /** No checkpoint is written from now on (a refused start: see refuseStart). */
  holdCheckpoints(): void {
    this.#checkpointsHeld = true;
  }

  /** Applies a new security policy's checkpoint settings (SecurityPolicy.audit_checkpoint_*). */
  setCheckpointPolicy(policy: { everyRecords: number; intervalMs: number }): void {
    checkPolicy(policy.everyRecords, policy.intervalMs);
    this.#every = policy.everyRecords;
    this.#intervalMs = policy.intervalMs;
    if (this.#timer) this.#startTimer();
  }

  record(event: AuditEvent): Promise<void> {
    return this.#enqueue([event]);
  }

  recordAll(events: readonly AuditEvent[]): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    if (events.length > maxPageSize) throw new RangeError(`at most ${maxPageSize} events at once`);
    return this.#enqueue(events);
  }

  /**
   * Issue 20 (batched audit records): events recorded while an append is in flight wait here and
   * go into the store together, in one atomic append (one commit), in the order they were recorded;
   * each caller's promise settles with that append, so none resolves before its record is durable,
   * and if the append fails every caller of it gets AUDIT_FAILURE (fail closed, as for one record).
   * A batch never spans a due checkpoint: a checkpoint still follows at most `every` records.
   */
  #enqueue(events: readonly AuditEvent[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#waiting.push({ events, time: this.#now(), resolve, reject });
      if (this.#waiting.length === 1) void this.#serialized(() => this.#appendWaiting()).catch(() => undefined);
    });
  }

  /** Appends the waiting events (as many as fit before the next due checkpoint, whole requests only), settles their callers. */
  async #appendWaiting(): Promise<void> {
    const room = Math.max(1, this.#every - (this.#head.sequence - this.#storeCheckpoint));
    let taken = 0;
    let count = 0;
    while (taken < this.#waiting.length) {
      const n = this.#waiting[taken]!.events.length;
      if (taken > 0 && count + n > Math.min(room, maxPageSize)) break;
      count += n;
      taken += 1;
    }
    const batch = this.#waiting.splice(0, taken);
    if (batch.length === 0) return;
    // What arrived meanwhile (or did not fit) goes in the next append, after this one.
    if (this.#waiting.length > 0) void this.#serialized(() => this.#appendWaiting()).catch(() => undefined);
    try {
      await this.#append(batch);
    } catch (err) {
      const failure = err instanceof InkanError && err.code === "AUDIT_FAILURE" ? err : auditFailure("the audit log failed", err);
      for (const b of batch) b.reject(failure);
      return;
    }
    for (const b of batch) b.resolve();
  }

  async #append(batch: readonly WaitingEvents[]): Promise<void> {
    this.#assertUsable();
    await this.#settleUncertain();
    const records: AuditRecord[] = [];
    let head = this.#head;
    let versioned = this.#versioned;
    let prevHashBase64 = toBase64(head.hash);
    for (const { events, time } of batch) {
      const occurredAt = timestampJson(time); // issue 20: once per request, not per record
      for (const event of events) {
        // The event is passed whole (no copy without its eventType): newStoredRecord does not take eventType as a field.
        const record = newStoredRecord({ nodeId: this.nodeId, sequence: head.sequence + 1, time, eventType: event.eventType, fields: event, prevHash: head.hash, prevHashBase64, occurredAt });
        records.push(record);
        head = { sequence: record.sequence, hash: record.hash };
        prevHashBase64 = toBase64(record.hash);
        versioned = nextVersioned(versioned, record);
      }
    }
    try {
      await (records.length === 1 ? this.#store.appendAuditRecord(records[0]!) : this.#store.appendAuditRecords(records));
    } catch (err) {
      // The outcome may be unknown (a driver error after commit): settle it before the next append,
      // at once when the store can say (a cut tail is anchored now). All or none: by the last record.
      this.#uncertain = records.at(-1);
      this.#uncertainVersioned = versioned;
      await this.#settleUncertain().catch(() => undefined);
      throw auditFailure(records.length === 1 ? "the audit record could not be written" : "the audit records could not be written", err);
    }
    this.#head = head;
    this.#versioned = versioned;
    if (this.#checkpointDue()) await this.#checkpoint();
  }

  /**
   * Signs and stores a checkpoint over the current head now, if any record is not yet covered.
   * Call it before an export so every exported record is covered (audit.proto ExportAuditLog).
   */
  checkpoint(): Promise<void> {
    return this.#serialized(async () => {
      this.#assertUsable();
      await this.#settleUncertain();
      await this.#checkpoint();
    });
  }

  /**
   * Stops the timer and writes a final checkpoint over the head, so a clean stop leaves no
   * unsigned tail. Record `samStopped` first. Rejects with AUDIT_FAILURE if the checkpoint cannot
   * be written; the log is closed either way.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#timer) clearInterval(this.#timer);
    try {
      if (!this.#checkpointsHeld) await this.checkpoint();
    } finally {
      this.#closed = true;
    }
  }

  #serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => undefined);
    return run.catch((err: unknown) => {
      throw err instanceof InkanError && err.code === "AUDIT_FAILURE" ? err : auditFailure("the audit log failed", err);
    });
  }

  #assertUsable(): void {
    if (this.#closed) throw auditFailure("the audit log is closed");
    if (this.#broken) throw this.#broken;
  }

  async #settleUncertain(): Promise<void> {
    const attempted = this.#uncertain;
    if (!attempted) return;
    const latest = await this.#store.latestAuditRecord(this.nodeId);
    const latestSequence = latest?.sequence ?? 0;
    if (latestSequence === this.#head.sequence && (latestSequence === 0 || equalBytes(latest?.hash, this.#head.hash))) {
      this.#uncertain = undefined; // the failed append did not happen
    } else if (latest && latest.sequence === attempted.sequence && equalBytes(latest.hash, attempted.hash)) {
      this.#uncertain = undefined; // it did happen: adopt it
      this.#head = { sequence: latest.sequence, hash: latest.hash };
      this.#versioned = this.#uncertainVersioned ?? this.#versioned;
    } else if (latestSequence < this.#head.sequence) {
      // R-3.2.2.4, issue 13 finding 5: the store lost this node's newest records while it ran.
      await this.#anchorHeadInModule();
      this.#broken = auditFailure(`the audit chain of node ${this.nodeId} ends at ${latestSequence} in the store, before its head ${this.#head.sequence}: truncated`);
      throw this.#broken;
    } else {
      // R-3.2.2.4: someone else extended this node's chain; nothing more is recorded on it.
      this.#broken = auditFailure(`the audit chain of node ${this.nodeId} was extended by another writer at ${latestSequence}`);
      throw this.#broken;
    }
  }

  /**
   * The store no longer holds this node's head (its tail was deleted while the node ran): the head
   * in memory is signed into the crypto module's checkpoint, outside the database, so the next
   * start finds the store behind it and refuses (truncated) instead of resuming a shortened chain
   * (a database-only insider could otherwise force that by making the node fail and be restarted).
   * Best effort: the operation that found it fails closed either way.
   */
  async #anchorHeadInModule(): Promise<void> {
    if (this.#head.sequence <= this.#moduleCheckpoint || this.#checkpointsHeld) return;
    try {
      const checkpoint = await this.#signHead();
      await writeHighWaterMark(this.#module, this.nodeId, checkpoint.body);
      this.#moduleCheckpoint = checkpoint.sequence;
    } catch {
      // the module is unreachable too: nothing more can be anchored
    }
  }

  /** A checkpoint of this node's head, with the digest of its versioned events, signed in the module. */
  #signHead(): ReturnType<typeof signCheckpoint> {
    return signCheckpoint({
      module: this.#module,
      keyId: this.#key.keyId,
      nodeId: this.nodeId,
      sequence: this.#head.sequence,
      recordHash: this.#head.hash,
      versioned: this.#versioned,
      now: this.#now(),
    });
  }

  #checkpointDue(): boolean {
    if (this.#checkpointsHeld) return false;
    const uncovered = this.#head.sequence - this.#storeCheckpoint;
    if (uncovered <= 0) return this.#moduleCheckpoint < this.#storeCheckpoint;
    return uncovered >= this.#every || this.#now().getTime() - this.#lastCheckpointAt >= this.#intervalMs;
  }

  async #checkpoint(): Promise<void> {
    if (this.#head.sequence > this.#storeCheckpoint) {
      const checkpoint = await this.#signHead();
      try {
        await this.#store.appendAuditCheckpoint(checkpoint);
      } catch (err) {
        const stored = await this.#store.latestAuditCheckpoint(this.nodeId).catch(() => undefined);
        if (stored?.sequence !== checkpoint.sequence || stored.body !== checkpoint.body) {
          const latest = await this.#store.latestAuditRecord(this.nodeId).then((r) => r?.sequence ?? 0, () => undefined);
          if (latest !== undefined && latest < this.#head.sequence) await this.#anchorHeadInModule(); // a cut tail, found while idle
          throw auditFailure("the audit checkpoint could not be written", err);
        }
      }
      this.#storeCheckpoint = checkpoint.sequence;
      this.#lastCheckpointAt = this.#now().getTime();
      this.#unwrittenCheckpoint = { sequence: checkpoint.sequence, body: checkpoint.body };
    }
    const unwritten = this.#unwrittenCheckpoint;
    if (unwritten && unwritten.sequence > this.#moduleCheckpoint) {
      try {
        // R-3.2.2.4: the newest checkpoint also lives outside the database, in the crypto module.
        await writeHighWaterMark(this.#module, this.nodeId, unwritten.body);
        // The index is repaired if another node's write lost this entry; re-read only now and then (a module scan).
        if (this.#now().getTime() - this.#nodeIndexCheckedAt >= NODE_INDEX_RECHECK_MS) {
          await ensureAuditNodeIndexed(this.#module, this.nodeId);
          this.#nodeIndexCheckedAt = this.#now().getTime();
        }
      } catch (err) {
        throw auditFailure("the audit checkpoint could not be written to the crypto module", err);
      }
      this.#moduleCheckpoint = unwritten.sequence;
      this.#unwrittenCheckpoint = undefined;
    }
  }

  async #timerTick(): Promise<void> {
    if (this.#checkpointsHeld || this.#closed || this.#broken || this.#uncertain) return;
    const uncovered = this.#head.sequence > this.#storeCheckpoint;
    if (!uncovered || this.#now().getTime() - this.#lastCheckpointAt < this.#intervalMs) return;
    try {
      await this.checkpoint();
    } catch (err) {
      this.#onBackgroundError(err instanceof InkanError ? err : auditFailure("audit checkpoint failed", err));
    }
  }
}

/** Events of one record/recordAll call waiting for their append, with the caller's promise. */
interface WaitingEvents {
  events: readonly AuditEvent[];
  time: Date;
  resolve: () => void;
  reject: (err: InkanError) => void;
}

/** The versioned digest after `record`: extended by it when it is a "record.versioned" event. */
function nextVersioned(digest: VersionedDigest, record: AuditRecord): VersionedDigest {
  const entry = versionedEntryOf(record);
  return entry ? extendVersionedDigest(digest, entry) : digest;
}
