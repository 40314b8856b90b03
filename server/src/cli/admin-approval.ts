/**
 * `inkan admin approval ...`: requests held under dual control (PrivilegedUserService's pending
 * approvals). A security officer sees and decides every request; a registration operator those of
 * ResetFactors and IssueActivationCode. The requester cannot approve; they may reject (withdraw).
 */
import {
  PendingApprovalSchema,
  PendingApprovalState,
  PrivilegedUserService,
  type PendingApproval,
} from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { enumOption, stringOption, type AdminContext, type Noun } from "./admin-command.js";
import { enumName, isoOf, jsonOf } from "./admin-output.js";
import { allPages } from "./admin-signer.js";

const columns = [
  { header: "PENDING_REQUEST_ID", value: (p: PendingApproval) => p.pendingRequestId },
  { header: "STATE", value: (p: PendingApproval) => enumName(PendingApprovalState, p.state) },
  { header: "METHOD", value: (p: PendingApproval) => p.method },
  { header: "REQUESTED_BY", value: (p: PendingApproval) => p.requestedBy },
  { header: "EXPIRES_AT", value: (p: PendingApproval) => isoOf(p.expiresAt) },
];

/** The pending approval with its request and result unpacked, as JSON. */
function rendered(p: PendingApproval): Record<string, unknown> {
  return jsonOf(PendingApprovalSchema, p) as Record<string, unknown>;
}

/** Prints a decided request: the outcome, and the approver's half of an activation code if any. */
function printDecision(ctx: AdminContext, p: PendingApproval, verb: string): void {
  const j = rendered(p);
  if (ctx.json) {
    console.log(JSON.stringify(j));
  } else {
    console.log(`${verb} pending request ${p.pendingRequestId} (${p.method}): ${enumName(PendingApprovalState, p.state)}`);
  }
  const code = (j["result"] as { activationCode?: { code?: string } } | undefined)?.activationCode?.code;
  if (code) {
    ctx.out.note(`Approver's half of the activation code (shown once; deliver it to the signer out of band, by another channel than the requester's half):\n  ${code}`);
  }
}

async function fetchPending(ctx: AdminContext, id: string): Promise<PendingApproval> {
  const { pendingApproval } = await ctx.client(PrivilegedUserService).getPendingApproval({ pendingRequestId: id });
  if (!pendingApproval) throw new Error(`the SAM returned no pending approval for ${id}`);
  return pendingApproval;
}

export const approvalNoun: Noun = {
  summary: "review, approve and reject requests held under dual control",
  verbs: {
    list: {
      summary: "list requests under dual control, newest first (default: only pending ones)",
      options: {
        state: { type: "string", help: "pending (default), executed, failed, rejected or expired" },
        "requested-by": { type: "string", help: "only requests of this privileged user id" },
      },
      async run(ctx, _args, o) {
        const state = stringOption(o, "state") ? enumOption(PendingApprovalState, "PENDING_APPROVAL_STATE", "state", stringOption(o, "state")!) : PendingApprovalState.UNSPECIFIED;
        const users = ctx.client(PrivilegedUserService);
        const items = await allPages(async (pageToken) => {
          const r = await users.listPendingApprovals({ page: { pageToken }, state, requestedBy: stringOption(o, "requested-by") ?? "" });
          return { items: r.pendingApprovals, next: r.page?.nextPageToken ?? "" };
        });
        ctx.out.list(PendingApprovalSchema, items, columns);
      },
    },
    show: {
      args: "PENDING_REQUEST_ID",
      summary: "show one request with the full stored request message rendered as JSON, and its outcome",
      async run(ctx, [id]) {
        const p = await fetchPending(ctx, id!);
        console.log(JSON.stringify(rendered(p), null, ctx.json ? undefined : 2));
      },
    },
    approve: {
      args: "PENDING_REQUEST_ID",
      summary: "approve and perform a request (not your own); prints the outcome and, for a code, the approver's half",
      help: `Review it first with \`inkan admin approval show ID\`: the approval covers exactly the stored
request (its SHA-256 digest is sent with the approval). For ResetFactors and IssueActivationCode
the result holds your half of the activation code: deliver it to the signer out of band.`,
      options: { comment: { type: "string", help: "a comment for the record" } },
      async run(ctx, [id], o) {
        const p = await fetchPending(ctx, id!);
        const { pendingApproval } = await ctx.client(PrivilegedUserService).approvePendingRequest({
          pendingRequestId: p.pendingRequestId,
          requestDigest: p.requestDigest,
          comment: stringOption(o, "comment") ?? "",
        });
        printDecision(ctx, pendingApproval ?? p, "Approved");
      },
    },
    reject: {
      args: "PENDING_REQUEST_ID",
      summary: "reject a request (or withdraw your own); it will never be performed",
      options: { comment: { type: "string", help: "why (required)" } },
      async run(ctx, [id], o) {
        const comment = stringOption(o, "comment", true);
        const p = await fetchPending(ctx, id!);
        const { pendingApproval } = await ctx.client(PrivilegedUserService).rejectPendingRequest({ pendingRequestId: p.pendingRequestId, requestDigest: p.requestDigest, comment });
        printDecision(ctx, pendingApproval ?? p, "Rejected");
      },
    },
  },
};
