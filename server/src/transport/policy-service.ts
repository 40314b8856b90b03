import { fromJson, toJson, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Interceptor, ServiceImpl } from "@connectrpc/connect";
import { SecurityPolicySchema, type PolicyService } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import type { PolicyIntegrityGate, PolicyJson, PolicyVersion, SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { policyChanged } from "../audit/events.js";
import { InkanError } from "../errors.js";
import { kAdmin } from "./admin-auth.js";
import { kCaller, kRequestId } from "./identity.js";
import { kApprovedBy } from "./dual-control.js";
import { adminOf } from "./privileged-user-service.js";

type Impl = Partial<ServiceImpl<typeof PolicyService>>;

function recordOut(v: PolicyVersion) {
  return {
    policy: fromJson(SecurityPolicySchema, v.policy as JsonObject),
    version: BigInt(v.version),
    updatedAt: timestampFromDate(v.updatedAt),
    updatedBy: v.updatedBy,
    approvedBy: v.approvedBy,
  };
}

/**
 * PolicyService (R-3.2.2.3): the security policy, read and replaced only by security officers.
 * Validation (protovalidate) and dual control ran before these handlers; an update performed on
 * a second officer's approval carries the approver in kApprovedBy.
 */
export function policyService(policies: SecurityPolicies, audit: AuditLog, clock: () => Date = () => new Date()): Impl {
  return {
    async getSecurityPolicy() {
      return { record: recordOut(await policies.current()) };
    },
    async updateSecurityPolicy(req, ctx) {
      if (!req.policy) throw new InkanError("INVALID_REQUEST", "policy is required", { field: "policy" });
      const approvedBy = ctx.values.get(kApprovedBy);
      const { previous, current } = await policies.update({
        policyJson: toJson(SecurityPolicySchema, req.policy) as PolicyJson,
        expectedVersion: Number(req.expectedVersion),
        by: adminOf(ctx),
        approvedBy,
        now: clock(),
      });
      // Every change with its old and new values (R-3.2.2.3, R-3.2.2.4).
      const user = ctx.values.get(kAdmin)!;
      await audit.record(policyChanged({
        requester: { kind: "privileged-user", userId: user.userId, role: user.role },
        ...(approvedBy ? { approver: { kind: "privileged-user", userId: approvedBy, role: "SECURITY_OFFICER" } } : {}),
        oldVersion: previous?.version ?? 0,
        newVersion: current.version,
        oldPolicy: previous?.auditSnapshot() ?? {},
        newPolicy: current.auditSnapshot(),
        requestId: ctx.values.get(kRequestId),
      }));
      return { record: recordOut(current) };
    },
  };
}

/**
 * R-3.2.2.3: while the policy integrity gate is closed, every SCA-facing call (inkan.sam.v1)
 * answers INTERNAL, INTEGRITY_VIOLATION, saying why; the admin services keep working so that
 * security officers can restore the policy. Runs after the caller's access was checked.
 */
export function createPolicyGateInterceptor(gate: Pick<PolicyIntegrityGate, "assertOpen">): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName.startsWith("inkan.sam.v1.")) gate.assertOpen();
    return next(req);
  };
}

/**
 * R-3.2.2.3: the CAs trusted to identify SCAs and privileged users are part of the sealed security
 * policy. TLS checks the chain against the bootstrap CA files; this also requires the issuing CA to
 * be in the policy version last verified, so a security-officer pair can withdraw a CA without a
 * restart. Before any version was verified (a broken policy at start), admin callers pass so the
 * policy can be restored; SCA calls are stopped by the integrity gate then anyway.
 */
export function createTrustedCaInterceptor(policies: Pick<SecurityPolicies, "lastVerified">): Interceptor {
  return (next) => async (req) => {
    const caller = req.contextValues.get(kCaller);
    const policy = policies.lastVerified;
    if (caller && policy && !policy.trustedCaSha256(caller.kind === "privileged" ? "admin" : caller.kind).has(caller.issuerSha256)) {
      throw new InkanError("CLIENT_CERTIFICATE_REJECTED", "client certificate not accepted");
    }
    return next(req);
  };
}
