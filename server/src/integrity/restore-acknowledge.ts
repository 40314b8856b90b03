/**
 * What the acknowledgement of a restore does (issue 22, ROLLBACK.md "Backup and restore"): the
 * conservative rule, so that nothing consumed or raised after the snapshot comes back.
 *
 * 1. Every one-time object (challenges, admin nonces, SAD tokens, activation codes) is marked
 *    consumed and every open transaction REVOKED (store RestoreFence). Anything the snapshot held
 *    may have been consumed after it; anything made after it is not in the store at all.
 * 2. Every record the rollback check knows a newer version of (its head, journaled in the kept
 *    audit tail, is above the restored copy) is re-sealed above that head: the acknowledgement is
 *    what re-bases the heads. Heads still only grow; the journal stays append-only.
 * 3. Lockout counters are raised from the kept tail: a signer's failed_attempts becomes at least the
 *    highest count any "factor.check_failed" after the snapshot recorded, and it is locked when
 *    that reaches the threshold or a lock was recorded. Never lowered.
 *
 * 4. Every request still PENDING under dual control is rejected: one decided after the snapshot
 *    came back PENDING and could be approved, and performed, a second time.
 *
 * Each step is idempotent, and the acknowledgement is audited only after all of them: a failure
 * leaves the restore pending, and the next acknowledgement does the rest.
 */
import canonicalize from "canonicalize";
import type { PendingApprovalBody } from "../admin/dual-control.js";
import type { AuditLog } from "../audit/audit-log.js";
import { approvalRejected, systemActor } from "../audit/events.js";
import type { PendingApprovalRecord, PolicyRecord, RecordKind, SealedRecord, Store } from "../store/port.js";
import { queryableFields } from "../store/port.js";
import type { SignerBody } from "../registration/signers.js";
import type { RecordSealer } from "./record-sealer.js";
import type { RecordHeads } from "./record-heads.js";
import type { VerifiedRecords } from "./sealed-records.js";
import { FACTOR_CHECK_FAILED, bodyOf, recordsOfEvent, type PendingRestore } from "./restore-state.js";

export interface AcknowledgeDeps {
  store: Store;
  audit: AuditLog;
  sealer: RecordSealer;
  heads: Pick<RecordHeads, "entries" | "advance">;
  records: VerifiedRecords;
  lockoutThreshold: () => Promise<number>;
  now: Date;
}

export interface AcknowledgeCounts {
  voidedOneTimeObjects: number;
  voidedTransactions: number;
  rebasedRecords: number;
  raisedLockouts: number;
  rejectedApprovals: number;
}

const sealedKinds = new Set<string>(Object.keys(queryableFields));

/** Applies the conservative rule of the module comment; returns what it changed. */
export async function applyRestoreAcknowledgement(d: AcknowledgeDeps, pending: PendingRestore): Promise<AcknowledgeCounts> {
  const voided = await d.store.voidOneTimeState({ now: d.now });
  const rebasedRecords = await rebase(d);
  const raisedLockouts = await raiseLockouts(d, pending);
  const rejectedApprovals = await rejectPendingApprovals(d, pending);
  return { voidedOneTimeObjects: voided.oneTimeObjects, voidedTransactions: voided.transactions, rebasedRecords, raisedLockouts, rejectedApprovals };
}

/** Who decided the requests the acknowledgement rejects (no privileged user: the SAM). */
export const RESTORE_DECIDER = "system:restore";

/** Rejects every PENDING request under dual control (step 4), each audited as "approval.rejected" by the system. */
async function rejectPendingApprovals(d: AcknowledgeDeps, pending: PendingRestore): Promise<number> {
  let rejected = 0;
  for (;;) {
    const page = await d.store.listPendingApprovals({ state: "PENDING", limit: 100, now: d.now });
    if (page.items.length === 0) return rejected;
    for (const item of page.items) {
      const record = await d.sealer.verify(item);
      const body: PendingApprovalBody = { ...(JSON.parse(record.body) as PendingApprovalBody), comment: `voided by the acknowledgement of restore ${pending.restoreId}` };
      const next = await d.sealer.seal<PendingApprovalRecord>({ ...record, version: record.version + 1, state: "REJECTED", decidedBy: RESTORE_DECIDER, decidedAt: d.now, body: canonicalize(body)! });
      const decided = await d.store.decidePendingApproval({ id: record.id, from: "PENDING", to: "REJECTED", decidedBy: RESTORE_DECIDER, decidedAt: d.now, body: next.body, seal: next.seal, now: d.now });
      if (!decided) continue; // decided meanwhile (or expired): no longer approvable either way
      await d.audit.record(approvalRejected({ actor: systemActor, method: record.method, pendingRequestId: record.id }));
      rejected++;
    }
  }
}

/** Re-seals every stored record below its head at head + 1 (through each version, as the store's compare-and-set asks). */
async function rebase(d: AcknowledgeDeps): Promise<number> {
  let rebased = 0;
  for (const [key, head] of d.heads.entries()) {
    const colon = key.indexOf(":");
    const kind = key.slice(0, colon);
    const id = key.slice(colon + 1);
    if (sealedKinds.has(kind)) {
      const stored = await d.store.getRecord(kind as RecordKind, id);
      if (!stored || stored.version >= head) continue; // made after the snapshot (gone), or current
      let current: SealedRecord = await d.sealer.verify(stored); // a broken seal is no copy to re-base
      while (current.version <= head) {
        const { seal: _seal, ...unsealed } = current;
        const next = await d.sealer.seal<SealedRecord>({ ...unsealed, version: current.version + 1 } as Omit<SealedRecord, "seal">);
        if (!(await d.store.updateRecord(next, current.version))) throw new Error(`${key} changed while it was re-based`);
        current = next;
      }
      await d.heads.advance(key, current.version);
      rebased++;
    } else if (kind === "policy") {
      const stored = await d.store.latestPolicyVersion(id);
      if (!stored || stored.version >= head) continue;
      let current = await d.sealer.verify(stored);
      while (current.version <= head) {
        const { seal: _seal, ...unsealed } = current;
        const next = await d.sealer.seal<PolicyRecord>({ ...unsealed, version: current.version + 1 });
        if (!(await d.store.appendPolicyVersion(next))) throw new Error(`${key} changed while it was re-based`);
        current = next;
      }
      await d.heads.advance(key, current.version);
      rebased++;
    }
    // txn:<id>: every open transaction was revoked above; one below its head is refused anyway.
  }
  return rebased;
}

/** Raises each signer's lockout counter to the highest the kept audit tail recorded (never lowers it). */
async function raiseLockouts(d: AcknowledgeDeps, pending: PendingRestore): Promise<number> {
  const highest = new Map<string, number>();
  for await (const r of recordsOfEvent(d.store, FACTOR_CHECK_FAILED, pending.newHighWaterMarks, pending.oldHighWaterMarks)) {
    const body = bodyOf(r);
    const n = Number(body.details["failed_attempts"] ?? "0");
    if (body.signerId && Number.isSafeInteger(n)) highest.set(body.signerId, Math.max(highest.get(body.signerId) ?? 0, n));
  }
  const threshold = await d.lockoutThreshold();
  let raised = 0;
  for (const [signerId, failed] of highest) {
    const signer = await d.records.get("signer", signerId);
    if (!signer) continue; // enrolled after the snapshot: not in the store
    const body = JSON.parse(signer.body) as SignerBody;
    const lock = body.lockedAt === undefined && threshold > 0 && failed >= threshold;
    if ((body.failedAttempts ?? 0) >= failed && !lock) continue;
    const next: SignerBody = { ...body, failedAttempts: Math.max(body.failedAttempts ?? 0, failed), ...(lock ? { lockedAt: d.now.toISOString() } : {}) };
    const updated = await d.records.update({ kind: "signer", id: signer.id, version: signer.version + 1, status: signer.status, body: canonicalize(next)! }, signer.version);
    if (!updated) throw new Error(`signer:${signerId} changed while its lockout was raised`);
    raised++;
  }
  return raised;
}
