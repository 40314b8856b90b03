/**
 * `inkan admin restore ...` (issue 22): after `inkan restore`, the SAM refuses to sign until two
 * security officers acknowledge the restore. One runs `restore acknowledge` (held: exit 4 with the
 * pending request id), a second runs `inkan admin approval approve ID`.
 */
import { AcknowledgeRestoreResponseSchema, GetRestoreStatusResponseSchema, PolicyService } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { AdminUsageError } from "./admin-identity.js";
import { stringOption, type Noun } from "./admin-command.js";
import { isoOf } from "./admin-output.js";

export const restoreNoun: Noun = {
  summary: "see and acknowledge a restore from a backup (security officer, dual control)",
  verbs: {
    status: {
      summary: "whether a restore awaits acknowledgement, and the restored snapshot's identity",
      async run(ctx) {
        const status = await ctx.client(PolicyService).getRestoreStatus({});
        const text = status.awaitingAcknowledgement
          ? `A restore of snapshot ${status.snapshotId} (${isoOf(status.restoredAt)}) awaits acknowledgement: nothing is signed meanwhile`
          : "No restore awaits acknowledgement";
        ctx.out.message(GetRestoreStatusResponseSchema, status, text);
      },
    },
    acknowledge: {
      summary: "acknowledge the restore of --snapshot-id; held for a second security officer's approval",
      help: `Check the snapshot id against the one \`inkan restore\` printed, and review the kept audit tail
(\`inkan admin audit list\`) for changes made after the snapshot that the restore undid (revocations,
suspensions, new users) before acknowledging. This exits 4 with the pending request id; a second
security officer runs \`inkan admin approval approve ID\`. Then every one-time object and open
transaction is voided, lockout counters are raised from the kept tail, and the SAM signs again.`,
      options: { "snapshot-id": { type: "string", help: "the restored snapshot's identity (64 hex characters)" } },
      async run(ctx, _args, o) {
        const snapshotId = stringOption(o, "snapshot-id");
        if (!snapshotId || !/^[0-9a-f]{64}$/.test(snapshotId)) throw new AdminUsageError("--snapshot-id: the restored snapshot's identity (64 lowercase hex characters) is required");
        const res = await ctx.client(PolicyService).acknowledgeRestore({ snapshotId });
        ctx.out.message(AcknowledgeRestoreResponseSchema, res, `Restore of snapshot ${res.snapshotId} acknowledged: ${res.voidedOneTimeObjects} one-time objects and ${res.voidedTransactions} transactions voided, ${res.rebasedRecords} records re-sealed, ${res.raisedLockouts} lockout counters raised`);
      },
    },
  },
};
