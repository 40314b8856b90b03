/**
 * PolicyService.GetRestoreStatus and AcknowledgeRestore (issue 22): the dual-controlled way back
 * to service after `inkan restore`. The dual-control interceptor always holds AcknowledgeRestore
 * for a second security officer (dual-control.ts); the handler runs once approved.
 */
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { PolicyService } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import type { AuditLog } from "../audit/audit-log.js";
import { storeRestoreAcknowledged } from "../audit/events.js";
import { InkanError } from "../errors.js";
import { applyRestoreAcknowledgement, type AcknowledgeDeps } from "../integrity/restore-acknowledge.js";
import type { RestoreGate } from "../integrity/restore-state.js";
import { kAdmin } from "./admin-auth.js";
import { kApprovedBy } from "./dual-control.js";
import { kRequestId } from "./identity.js";

type Impl = Pick<ServiceImpl<typeof PolicyService>, "getRestoreStatus" | "acknowledgeRestore">;

export function restoreService(o: {
  gate: RestoreGate;
  audit: AuditLog;
  deps: Omit<AcknowledgeDeps, "now">;
  /** Run once acknowledged: e.g. the policy integrity gate checks the re-based policy at once. */
  afterAcknowledged?: () => Promise<unknown>;
  clock?: () => Date;
}): Impl {
  const clock = o.clock ?? (() => new Date());
  let acknowledging: Promise<unknown> | undefined;
  return {
    async getRestoreStatus() {
      const p = o.gate.pending;
      return p ? { awaitingAcknowledgement: true, snapshotId: p.snapshotId, restoredAt: timestampFromDate(p.restoredAt) } : { awaitingAcknowledgement: false, snapshotId: "" };
    },
    async acknowledgeRestore(req, ctx: HandlerContext) {
      const pending = o.gate.pending;
      if (!pending) throw new InkanError("STATE_CONFLICT", "no restore awaits acknowledgement", { field: "snapshot_id" });
      if (req.snapshotId !== pending.snapshotId) throw new InkanError("STATE_CONFLICT", "snapshot_id is not the restored snapshot's identity", { field: "snapshot_id" });
      if (acknowledging) throw new InkanError("STATE_CONFLICT", "the restore is being acknowledged", { field: "snapshot_id" });
      const user = ctx.values.get(kAdmin)!;
      const approvedBy = ctx.values.get(kApprovedBy);
      // R-3.2.1.6: never by one security officer (the interceptor always holds it; this guards its absence).
      if (!approvedBy || approvedBy === user.userId) throw new InkanError("APPROVAL_REQUIRED", "a second security officer must approve this request");
      const run = (async () => {
        const counts = await applyRestoreAcknowledgement({ ...o.deps, now: clock() }, pending);
        // Audited after every change: a failure above leaves the restore pending (each step is idempotent).
        await o.audit.record(
          storeRestoreAcknowledged({
            requester: { kind: "privileged-user", userId: user.userId, role: user.role },
            approver: { kind: "privileged-user", userId: approvedBy, role: "SECURITY_OFFICER" },
            restoreId: pending.restoreId,
            snapshotId: pending.snapshotId,
            oldHighWaterMarks: pending.oldHighWaterMarks,
            newHighWaterMarks: pending.newHighWaterMarks,
            ...counts,
            requestId: ctx.values.get(kRequestId),
          }),
        );
        o.gate.acknowledged(pending.restoreId);
        await o.afterAcknowledged?.();
        return counts;
      })();
      acknowledging = run;
      try {
        const c = await run;
        return { snapshotId: pending.snapshotId, voidedOneTimeObjects: c.voidedOneTimeObjects, voidedTransactions: c.voidedTransactions, rebasedRecords: c.rebasedRecords, raisedLockouts: c.raisedLockouts, rejectedApprovals: c.rejectedApprovals };
      } finally {
        acknowledging = undefined;
      }
    },
  };
}
