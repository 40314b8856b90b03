/**
 * The chain check shared by the live verifier (records from the store) and the offline verifier
 * (records from an export): fed one node's records in the order they come and its checkpoints,
 * it finds the first break and reads it as one of the kinds audit.proto (AuditProblemKind)
 * names. It keeps only the last two record hashes and a short window of recent ones, so memory
 * does not grow with the log; at a break it looks at the next few records to classify it.
 */
import type { AuditRecord } from "../store/port.js";
import { equalBytes, storedRecordHasher, ZERO_HASH } from "./record-form.js";

export type AuditProblemKind = "EDITED" | "DELETED" | "INSERTED" | "REORDERED" | "TRUNCATED" | "CHECKPOINT_INVALID";

/** The first break of a node's chain (audit.proto AuditProblem). */
export interface AuditProblem {
  readonly kind: AuditProblemKind;
  /** The first sequence at which the chain no longer verifies; for TRUNCATED the first missing one. */
  readonly firstBadSequence: number;
  readonly description: string;
}

/** One record as the checker sees it. */
export interface ChainEntry {
  /** The sequence the record claims (its column, or its JSON field). */
  readonly sequence: number;
  readonly prevHash: Uint8Array;
  readonly hash: Uint8Array;
  /** The hash the record's content would have at `sequence`; undefined if the content is malformed. */
  hashAt(sequence: number): Uint8Array | undefined;
}

/** A stored record as the checker sees it: its hash recomputed from its columns and body. */
export function storedEntry(record: AuditRecord): ChainEntry {
  return { sequence: record.sequence, prevHash: record.prevHash, hash: record.hash, hashAt: storedRecordHasher(record) };
}

/** A checkpoint (from the store, the crypto module or an export) with its verification verdict. */
export interface CheckpointEntry {
  readonly sequence: number;
  readonly recordHash: Uint8Array;
  /** Why the checkpoint is invalid (bad signature, mismatching fields); undefined if valid. */
  readonly invalid: string | undefined;
  /** Where it comes from, for messages: "checkpoint" or "crypto module checkpoint". */
  readonly label: string;
}

/** How many records beyond a break are looked at to classify it. */
export const LOOKAHEAD = 1024;

/** How many recent record hashes are kept to match checkpoints that arrive after their record. */
const RECENT = 1024;

export interface ChainCheckerOptions {
  /** The sequence the stream is expected to start at (1 for a whole chain). */
  startSequence: number;
  /**
   * The hash the first record's prevHash must equal: 32 zero bytes at sequence 1, an anchoring
   * checkpoint's record hash otherwise. Undefined: the first link cannot be checked.
   */
  anchorHash: Uint8Array | undefined;
}

export class ChainChecker {
  #expected: number;
  #head: Uint8Array | undefined; // hash of record expected - 1
  #beforeHead: Uint8Array | undefined; // hash of record expected - 2
  readonly #start: number;
  readonly #recent = new Map<number, Uint8Array>();
  readonly #pending = new Map<number, CheckpointEntry[]>();
  #problem: AuditProblem | undefined;
  #checked = 0;
  #lastCheckpoint = 0;

  constructor(options: ChainCheckerOptions) {
    this.#start = options.startSequence;
    this.#expected = options.startSequence;
    this.#head = options.startSequence === 1 ? ZERO_HASH : options.anchorHash;
  }

  get problem(): AuditProblem | undefined {
    return this.#problem;
  }
  /** Records that verified. */
  get recordsChecked(): number {
    return this.#checked;
  }
  /** The newest sequence verified so far (start - 1 if none). */
  get verifiedThrough(): number {
    return this.#expected - 1;
  }
  /** The newest valid checkpoint matched against the chain. */
  get lastCheckpointSequence(): number {
    return this.#lastCheckpoint;
  }

  /**
   * Checks the next record. `lookahead` returns the records that follow it (at most LOOKAHEAD),
   * and is called only when there is a break to classify. Returns false once a break was found.
   */
  async pushRecord(entry: ChainEntry, lookahead: () => Promise<readonly ChainEntry[]>): Promise<boolean> {
    if (this.#problem) return false;
    const p = this.#expected;
    const intact = equalBytes(entry.hashAt(p), entry.hash);
    const linked = this.#head === undefined || equalBytes(entry.prevHash, this.#head);
    if (entry.sequence === p && intact && linked) {
      this.#beforeHead = this.#head;
      this.#head = entry.hash;
      this.#recent.set(p, entry.hash);
      this.#recent.delete(p - RECENT);
      this.#expected = p + 1;
      this.#checked++;
      return this.#resolvePending(p);
    }
    this.#problem = classify(entry, p, this.#head, this.#beforeHead, this.#start, await lookahead());
    return false;
  }

  /**
   * Adds a checkpoint. One at or below the verified head is compared at once (if its record is
   * among the recent ones); one ahead of it waits for its record.
   */
  pushCheckpoint(cp: CheckpointEntry): boolean {
    if (this.#problem) return false;
    if (cp.sequence > this.verifiedThrough) {
      const list = this.#pending.get(cp.sequence) ?? [];
      list.push(cp);
      this.#pending.set(cp.sequence, list);
      return true;
    }
    return this.#compare(cp, this.#recent.get(cp.sequence));
  }

  /**
   * Ends the stream: checkpoints beyond the last verified record mean the tail is gone
   * (TRUNCATED), unless they are themselves invalid (CHECKPOINT_INVALID).
   */
  finish(): AuditProblem | undefined {
    if (this.#problem) return this.#problem;
    const beyond = [...this.#pending.values()].flat().sort((a, b) => a.sequence - b.sequence);
    const valid = beyond.find((cp) => cp.invalid === undefined);
    if (valid) {
      this.#problem = {
        kind: "TRUNCATED",
        firstBadSequence: this.#expected,
        description: `the chain ends at record ${this.#expected - 1} but a ${valid.label} covers record ${valid.sequence}: the tail was removed`,
      };
    } else if (beyond[0]) {
      this.#problem = { kind: "CHECKPOINT_INVALID", firstBadSequence: beyond[0].sequence, description: beyond[0].invalid ?? "" };
    }
    return this.#problem;
  }

  #resolvePending(sequence: number): boolean {
    const list = this.#pending.get(sequence);
    if (!list) return true;
    this.#pending.delete(sequence);
    return list.every((cp) => this.#compare(cp, this.#recent.get(sequence)));
  }

  #compare(cp: CheckpointEntry, hash: Uint8Array | undefined): boolean {
    if (cp.invalid !== undefined) {
      this.#problem = { kind: "CHECKPOINT_INVALID", firstBadSequence: cp.sequence, description: cp.invalid };
      return false;
    }
    if (hash === undefined) {
      // A valid checkpoint far behind the record it covers (out of place in an export).
      this.#problem = {
        kind: "REORDERED",
        firstBadSequence: cp.sequence,
        description: `a ${cp.label} for record ${cp.sequence} appears out of place`,
      };
      return false;
    }
    if (!equalBytes(hash, cp.recordHash)) {
      // A genuine signature over another hash: some record up to this one was rewritten (and
      // the hashes after it recomputed, or the check of the record itself would have failed).
      this.#problem = {
        kind: "EDITED",
        firstBadSequence: cp.sequence,
        description: `record ${cp.sequence}: hash differs from the signed ${cp.label}; a record up to it was rewritten`,
      };
      return false;
    }
    this.#lastCheckpoint = Math.max(this.#lastCheckpoint, cp.sequence);
    return true;
  }
}

/**
 * The best reading of a break at expected sequence `p` (audit.proto: the kind is a best reading,
 * the sequence is exact). `head` is the hash of record p-1, `beforeHead` of record p-2.
 */
function classify(
  e: ChainEntry,
  p: number,
  head: Uint8Array | undefined,
  beforeHead: Uint8Array | undefined,
  start: number,
  ahead: readonly ChainEntry[],
): AuditProblem {
  const next = ahead[0];
  const intact = equalBytes(e.hashAt(p), e.hash);
  const linked = head === undefined || equalBytes(e.prevHash, head);

  if (e.sequence < p) {
    return { kind: "INSERTED", firstBadSequence: e.sequence, description: `record ${e.sequence} appears again after record ${p - 1}` };
  }
  if (head && beforeHead && !linked && equalBytes(e.prevHash, beforeHead)) {
    return {
      kind: "INSERTED",
      firstBadSequence: p - 1,
      description: `record ${p - 1} does not belong to the chain: the record after it links to record ${p - 2}`,
    };
  }
  if (e.sequence > p) {
    if (ahead.some((q) => q.sequence >= p && q.sequence < e.sequence)) {
      return { kind: "REORDERED", firstBadSequence: p, description: `record ${e.sequence} comes before record ${p}` };
    }
    if (linked && equalBytes(e.hashAt(e.sequence), e.hash)) {
      return { kind: "EDITED", firstBadSequence: p, description: `record ${p} is numbered ${e.sequence}` };
    }
    const range = e.sequence - p === 1 ? `record ${p} is` : `records ${p} to ${e.sequence - 1} are`;
    return { kind: "DELETED", firstBadSequence: p, description: `${range} missing; record ${e.sequence} links to a record that is gone` };
  }
  // e.sequence === p
  if (linked) return { kind: "EDITED", firstBadSequence: p, description: `record ${p}: hash does not match content` };
  if (ahead.some((q) => equalBytes(q.hash, e.prevHash))) {
    return { kind: "REORDERED", firstBadSequence: p, description: `record ${p} links to a record that comes after it: records are out of order` };
  }
  if (next && head && equalBytes(next.prevHash, head)) {
    return { kind: "INSERTED", firstBadSequence: p, description: `record ${p} does not belong to the chain: the record after it links past it` };
  }
  if (!intact && equalBytes(e.hashAt(p + 1), e.hash)) {
    return { kind: "DELETED", firstBadSequence: p, description: `record ${p} is missing; the record numbered ${p} is record ${p + 1} renumbered` };
  }
  if (intact) {
    const at = p > start ? p - 1 : p;
    return { kind: "EDITED", firstBadSequence: at, description: `record ${at}: hash does not match the prevHash of record ${p}` };
  }
  if (next && equalBytes(next.prevHash, e.hash)) {
    return { kind: "EDITED", firstBadSequence: p, description: `record ${p}: hash does not match content` };
  }
  return {
    kind: "INSERTED",
    firstBadSequence: p,
    description: `record ${p} does not belong to the chain: it does not link to record ${p - 1} and nothing links to it`,
  };
}
