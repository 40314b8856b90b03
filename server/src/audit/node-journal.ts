/**
 * Another node's journal of versioned heads, as a node reads it at start (issue 14,
 * integrity/ROLLBACK.md). Its own journal is read by the AuditLog as it resumes its chain; the
 * chains of the other nodes sharing the store and the crypto module are read here: their
 * "record.versioned" events only, with the digest checked at their newest checkpoints (the one in
 * the crypto module, which the database cannot change, and the newest in the store).
 */
import type { AuditSigning, DataObjects } from "../crypto/port.js";
import type { AuditRecords } from "../store/port.js";
import {
  auditKeyFromSpki,
  checkpointProblem,
  readHighWaterMark,
  storedCheckpointProblem,
  versionedAnchorOf,
  type AuditPublicKey,
} from "./checkpoint.js";
import { equalBytes } from "./record-form.js";
import { replayVersionedJournal, type VersionedAnchor, type VersionedEntry } from "./versioned-journal.js";

export type NodeJournalStore = Pick<
  AuditRecords,
  "readAuditRecordsByEvent" | "readAuditRecords" | "latestAuditRecord" | "latestAuditCheckpoint" | "listAuditNodes"
>;

/** The current audit public key of the module (the one every node's checkpoints are checked with). */
export async function currentAuditKeys(module: AuditSigning): Promise<AuditPublicKey[]> {
  return [await auditKeyFromSpki(await module.systemPublicKey("audit-signing"))];
}

/**
 * Reads `nodeId`'s versioned events and hands each to `onEntry`. Returns the sequence of the last
 * one read (a tail continues from there) and the first problem: a checkpoint whose signature
 * fails, a chain that ends before the module's checkpoint or differs from it there, or versioned
 * events that disagree with a checkpoint's digest. Store and module errors propagate.
 */
export async function replayNodeJournal(args: {
  store: NodeJournalStore;
  module: DataObjects;
  keys: readonly AuditPublicKey[];
  nodeId: string;
  onEntry: (entry: VersionedEntry) => void;
}): Promise<{ lastSequence: number; problem: string | undefined }> {
  const { store, nodeId, keys } = args;
  const anchors: VersionedAnchor[] = [];
  const mark = await readHighWaterMark(args.module, nodeId);
  if (mark) {
    const problem = await checkpointProblem(mark.checkpoint, keys);
    if (problem) return { lastSequence: 0, problem: `the crypto module's checkpoint is invalid (${problem})` };
    // R-3.2.2.4: the chain must reach the module's checkpoint with the same record there.
    const [atMark] = await store.readAuditRecords({ nodeId, fromSequence: mark.sequence, limit: 1 });
    if (atMark?.sequence !== mark.sequence || !equalBytes(atMark.hash, mark.recordHash)) {
      return { lastSequence: 0, problem: `the chain does not hold the record of the crypto module's checkpoint ${mark.sequence}: truncated or rewritten` };
    }
    const anchor = versionedAnchorOf(mark.checkpoint, "crypto module checkpoint");
    if (anchor) anchors.push(anchor);
  }
  const stored = await store.latestAuditCheckpoint(nodeId);
  if (stored) {
    const { claim, problem } = await storedCheckpointProblem(stored, keys);
    if (problem || !claim) return { lastSequence: 0, problem: problem ?? "malformed checkpoint" };
    const anchor = versionedAnchorOf(claim, "checkpoint");
    if (anchor) anchors.push(anchor);
  }
  const replay = await replayVersionedJournal({ store, nodeId, anchors, onEntry: args.onEntry });
  return { lastSequence: replay.lastSequence, problem: replay.problem };
}
