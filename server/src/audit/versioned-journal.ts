/**
 * The journal of versioned heads in the audit chain (issue 14; the design is in
 * integrity/ROLLBACK.md).
 *
 * Every write of a versioned object (a sealed record, a policy version, a transaction's progress)
 * appends a "record.versioned" event, details {record: <key>, version: <n>}, to the writing node's
 * chain. Each node folds its own versioned events, in sequence order, into a running digest
 *
 *   d_0 = 32 zero bytes
 *   d_k = SHA-256("inkan-versioned-v1\n" || d_(k-1) || JCS({"key":<key>,"seq":<sequence>,"version":<n>}))
 *
 * and every checkpoint it signs carries the count and digest at the checkpoint's sequence (JWS
 * claims "vct" and "vdg", checkpoint.ts). At start a node reads only the versioned events of a
 * chain (the store's by-event index), recomputes the digest and compares it at the checkpoints:
 * a versioned event deleted, edited or inserted at or before a signed checkpoint is found without
 * reading the rest of the chain, which is what makes a start on a long log affordable.
 */
import type { AuditRecord, AuditRecords } from "../store/port.js";
import { maxPageSize } from "../store/port.js";
import { canonicalJson, equalBytes, HASH_LENGTH, sha256, toHex, ZERO_HASH } from "./record-form.js";

/** The event type of a journaled head. */
export const RECORD_VERSIONED = "record.versioned";

/** One journaled head: `key` reached `version` (record `sequence` of its node's chain). */
export interface VersionedEntry {
  readonly sequence: number;
  readonly key: string;
  readonly version: number;
}

/** The running digest over a node's versioned events, and how many it covers. */
export interface VersionedDigest {
  readonly count: number;
  readonly digest: Uint8Array;
}

export const EMPTY_VERSIONED_DIGEST: VersionedDigest = Object.freeze({ count: 0, digest: ZERO_HASH });

const context = new TextEncoder().encode("inkan-versioned-v1\n");

/** d_k from d_(k-1) and the k-th versioned event. */
export function extendVersionedDigest(previous: VersionedDigest, entry: VersionedEntry): VersionedDigest {
  const item = new TextEncoder().encode(canonicalJson({ key: entry.key, seq: entry.sequence, version: entry.version }));
  const input = new Uint8Array(context.length + HASH_LENGTH + item.length);
  input.set(context, 0);
  input.set(previous.digest, context.length);
  input.set(item, context.length + HASH_LENGTH);
  return { count: previous.count + 1, digest: sha256(input) };
}

/** Whether two digests are the same (count and bytes). */
export function sameVersionedDigest(a: VersionedDigest, b: VersionedDigest): boolean {
  return a.count === b.count && equalBytes(a.digest, b.digest);
}

const versionPattern = /^[1-9][0-9]{0,15}$/;

/**
 * The head a "record.versioned" record states, read from its stored body; undefined when the
 * record is not one or its body does not have the form events.ts writes (then it was edited).
 */
export function versionedEntryOf(record: Pick<AuditRecord, "sequence" | "event" | "body">): VersionedEntry | undefined {
  if (record.event !== RECORD_VERSIONED) return undefined;
  let fields: unknown;
  try {
    fields = JSON.parse(record.body);
  } catch {
    return undefined;
  }
  const details = typeof fields === "object" && fields !== null ? (fields as { details?: unknown }).details : undefined;
  if (typeof details !== "object" || details === null) return undefined;
  const { record: key, version } = details as { record?: unknown; version?: unknown };
  if (typeof key !== "string" || key === "" || typeof version !== "string" || !versionPattern.test(version)) return undefined;
  const n = Number(version);
  return Number.isSafeInteger(n) ? { sequence: record.sequence, key, version: n } : undefined;
}

/** A signed statement of a node's digest at a sequence: a checkpoint that carries one. */
export interface VersionedAnchor {
  readonly sequence: number;
  readonly versioned: VersionedDigest;
  /** Where it comes from, for messages ("crypto module checkpoint", "checkpoint"). */
  readonly label: string;
}

export interface VersionedReplay {
  /** The digest over every versioned event read. */
  readonly digest: VersionedDigest;
  /** The sequence of the last versioned event read (0 if none). */
  readonly lastSequence: number;
  /** The first disagreement with an anchor, or a malformed event; undefined when all agree. */
  readonly problem: string | undefined;
}

/**
 * Reads `nodeId`'s versioned events from the first, in sequence order and page by page, hands
 * each to `onEntry`, and compares the digest with every anchor as the events pass its sequence.
 * Stops at the first problem. A store error propagates (the caller fails closed).
 */
export async function replayVersionedJournal(args: {
  store: Pick<AuditRecords, "readAuditRecordsByEvent">;
  nodeId: string;
  anchors: readonly VersionedAnchor[];
  onEntry?: (entry: VersionedEntry) => void;
  pageSize?: number;
}): Promise<VersionedReplay> {
  const pending = [...args.anchors].sort((a, b) => a.sequence - b.sequence);
  const pageSize = args.pageSize ?? maxPageSize;
  let digest = EMPTY_VERSIONED_DIGEST;
  let lastSequence = 0;
  const compareUpTo = (sequence: number): string | undefined => {
    while (pending.length > 0 && (pending[0] as VersionedAnchor).sequence < sequence) {
      const anchor = pending.shift() as VersionedAnchor;
      if (!sameVersionedDigest(anchor.versioned, digest)) {
        return (
          `the versioned events up to record ${anchor.sequence} do not match its ${anchor.label} ` +
          `(${digest.count} events, digest ${toHex(digest.digest).slice(0, 16)}…; signed: ${anchor.versioned.count}, ` +
          `${toHex(anchor.versioned.digest).slice(0, 16)}…): a versioned event was deleted, edited or inserted`
        );
      }
    }
    return undefined;
  };
  for (let from = 1; ; ) {
    const page = await args.store.readAuditRecordsByEvent({ nodeId: args.nodeId, event: RECORD_VERSIONED, fromSequence: from, limit: pageSize });
    for (const record of page) {
      const problem = compareUpTo(record.sequence);
      if (problem) return { digest, lastSequence, problem };
      const entry = versionedEntryOf(record);
      if (!entry) return { digest, lastSequence, problem: `the versioned event at record ${record.sequence} is malformed` };
      digest = extendVersionedDigest(digest, entry);
      lastSequence = record.sequence;
      args.onEntry?.(entry);
    }
    if (page.length < pageSize) break;
    from = lastSequence + 1;
  }
  return { digest, lastSequence, problem: compareUpTo(Number.MAX_SAFE_INTEGER) };
}
