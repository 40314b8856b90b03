import { clone } from "@bufbuild/protobuf";
import { ConnectError, createClient } from "@connectrpc/connect";
import { PolicyService, SecurityPolicySchema, type SecurityPolicy } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { ApprovalRequiredSchema } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import type { PrivilegedPerson, TestServer } from "./harness.js";

/**
 * A security-policy change asked by the first security officer, held by dual control
 * (T-2.2.2.1) and approved by `approver`, a second security officer. Throws when the change was
 * not held for approval.
 */
export async function approvedPolicyChange(t: TestServer, approver: PrivilegedPerson, change: (p: SecurityPolicy) => void): Promise<void> {
  const policies = createClient(PolicyService, t.adminTransport());
  const { record } = await policies.getSecurityPolicy({});
  const policy = clone(SecurityPolicySchema, record!.policy!);
  change(policy);
  const held = await policies.updateSecurityPolicy({ expectedVersion: record!.version, policy }).then(
    () => { throw new Error("the policy change was not held for a second security officer"); },
    (e: unknown) => ConnectError.from(e),
  );
  const detail = held.findDetails(ApprovalRequiredSchema)[0];
  if (!detail) throw held;
  await createClient(PrivilegedUserService, t.as(approver)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
}
