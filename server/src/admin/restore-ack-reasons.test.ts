import { Code, createClient } from "@connectrpc/connect";
import { Reason } from "@inkan/sdk";
import { PolicyService } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refusalOf, startTestServer, type TestServer } from "../testing/harness.js";

// Issue 18, item 1: PolicyService.AcknowledgeRestore's declared STATE_CONFLICT, produced by the RPC
// itself over the real server (SoftHSM2 + SQLite, mTLS). With a restore awaiting, the call is held
// for a second security officer (integrity/backup-restore.test.ts); with none, nothing is held.
let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe("PolicyService.AcknowledgeRestore: declared reasons (issue 18, item 1)", () => {
  it("R-3.2.1.6: with no restore awaiting acknowledgement it is FAILED_PRECONDITION STATE_CONFLICT at once, and no request is held for approval", async () => {
    const policies = createClient(PolicyService, t.adminTransport());
    expect((await policies.getRestoreStatus({})).awaitingAcknowledgement).toBe(false);
    expect(await refusalOf(policies.acknowledgeRestore({ snapshotId: "0".repeat(64) }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.STATE_CONFLICT });
    const { pendingApprovals } = await createClient(PrivilegedUserService, t.adminTransport()).listPendingApprovals({});
    expect(pendingApprovals.filter((p) => p.method === "/inkan.admin.v1.PolicyService/AcknowledgeRestore")).toEqual([]);
  });
});
