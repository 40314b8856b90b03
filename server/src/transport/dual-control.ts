import { createHash } from "node:crypto";
import { clone, create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import { anyPack, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  createHandlerContext,
  type HandlerContext,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import { ErrorDetailSchema, Reason } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import {
  PendingApprovalState,
  type CreatePrivilegedUserRequest,
  type PrivilegedUserService,
  type UpdatePrivilegedUserRequest,
} from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { ActivationCodePart, ActivationCodeSchema, type DestroyCredentialRequest } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { rebindingMethods, type DualControl, type PendingApprovalBody } from "../admin/dual-control.js";
import { bindingKey, type PrivilegedUsers } from "../admin/privileged-users.js";
import { rolesFor } from "../admin/roles.js";
import type { DualControlSwitch, SecurityPolicies } from "../admin/security-policy.js";
import type { RandomSource } from "../crypto/port.js";
import { newActivationCodeHalf } from "../registration/activation-code.js";
import { pageToken, readPageToken } from "../registration/ids.js";
import type { Credentials } from "../registration/credentials.js";
import type { RebindingApproval, Signers } from "../registration/signers.js";
import type { AuditLog } from "../audit/audit-log.js";
import {
  approvalGranted,
  approvalRejected,
  approvalRequested,
  privilegedOperationPerformed,
  privilegedOperationRequested,
  type PrivilegedUserActor,
} from "../audit/events.js";
import { InkanError } from "../errors.js";
import { IntegrityViolationError } from "../integrity/record-sealer.js";
import type { PendingApprovalRecord } from "../store/port.js";
import { kAdmin } from "./admin-auth.js";
import { kRequestId } from "./identity.js";
import { adminOf } from "./privileged-user-service.js";

const actorOf = (u: { userId: string; role: PrivilegedUserActor["role"] }): PrivilegedUserActor => ({ kind: "privileged-user", userId: u.userId, role: u.role });

/** The second security officer who approved the request being performed (for the audit record). */
export const kApprovedBy = createContextKey<string | undefined>(undefined, { description: "approving security officer" });

/**
 * Set only while an approved ResetFactors or IssueActivationCode is performed: who approved it and
 * the hash of the requester's half, so the handler issues the code in two halves (T-2.2.2.3).
 */
export const kRebindingApproval = createContextKey<RebindingApproval | undefined>(undefined, { description: "approved re-binding of a signer" });

/** What the guards consult. */
export interface GuardDeps {
  users: PrivilegedUsers;
  policies: SecurityPolicies;
  /** Credential reads, so that a DestroyCredential the handler refuses anyway is not held for approval. */
  credentials?: Pick<Credentials, "get">;
  /** Whether a ResetFactors or IssueActivationCode is held; without it, every one is (fail closed). */
  signers?: Pick<Signers, "rebindingHeld">;
  /** The crypto module's RNG, for the requester's half of a split activation code. */
  random: RandomSource;
  /** Issue 22: whether a restore awaits acknowledgement; without it, every AcknowledgeRestore is held (fail closed). */
  restore?: { readonly pending: unknown };
}

/** Which requests need a second privileged user's approval (R-3.2.1.6), decided on the request as decoded. */
type Guard = (message: unknown, deps: GuardDeps) => Promise<boolean>;

const isSecurityOfficer = async (users: PrivilegedUsers, userId: string) => {
  try {
    return (await users.get(userId)).user.role === "SECURITY_OFFICER";
  } catch {
    return false; // an unknown user: the handler reports it
  }
};

/**
 * Whether the policy in force puts `operation` under dual control (UNSPECIFIED counts as on), and
 * always when the policy failed its integrity check (R-3.2.2.3): a tampered switch never lets one
 * officer act alone.
 */
const policyRequires = async (policies: SecurityPolicies, operation: DualControlSwitch) => {
  try {
    return (await policies.current()).requiresDualControl(operation);
  } catch (err) {
    if (err instanceof IntegrityViolationError) return true;
    throw err;
  }
};

/**
 * True when DestroyCredential names a destroyed credential, or a fingerprint that is not its key's:
 * the handler refuses such a request at once (CREDENTIAL_DESTROYED, KEY_MISMATCH) and, as neither
 * state ever changes back, it can destroy nothing; so no second officer is bothered. Any doubt (an
 * unknown credential, an integrity failure, no credential reads) holds the request.
 */
const destructionRefusedAnyway = async (credentials: GuardDeps["credentials"], req: DestroyCredentialRequest) => {
  if (!credentials) return false;
  const credential = await credentials.get(req.credentialId).then((v) => v.credential, () => undefined);
  return credential !== undefined && (credential.status === "DESTROYED" || credential.publicKeyFingerprint !== Buffer.from(req.publicKeyFingerprint).toString("hex"));
};

/**
 * The guarded operations. Changes to security officers are guarded because otherwise one officer
 * could take over a second officer's identity and approve their own requests. While at most one
 * security officer exists, that officer may add a second one (there is nobody to approve).
 * Each is switched by the policy's dual_control settings, on by default.
 */
const guards: Record<string, Guard> = {
  "/inkan.admin.v1.PrivilegedUserService/CreatePrivilegedUser": async (m, { users, policies }) =>
    (m as CreatePrivilegedUserRequest).role === PrivilegedRole.SECURITY_OFFICER &&
    (await users.countSecurityOfficers(2)) >= 2 &&
    (await policyRequires(policies, "securityOfficerChanges")),
  // Removing the only security officer is refused outright (LAST_SECURITY_OFFICER), not held.
  "/inkan.admin.v1.PrivilegedUserService/RemovePrivilegedUser": async (m, { users, policies }) =>
    (await isSecurityOfficer(users, (m as { userId: string }).userId)) &&
    (await users.countSecurityOfficers(2)) >= 2 &&
    (await policyRequires(policies, "securityOfficerChanges")),
  "/inkan.admin.v1.PrivilegedUserService/AddUserKey": async (m, { users, policies }) =>
    (await isSecurityOfficer(users, (m as { userId: string }).userId)) && (await policyRequires(policies, "securityOfficerChanges")),
  "/inkan.admin.v1.PrivilegedUserService/UpdatePrivilegedUser": async (m, { users, policies }) => {
    const req = m as UpdatePrivilegedUserRequest;
    if (!(await isSecurityOfficer(users, req.userId))) return false;
    const current = (await users.get(req.userId)).user.certificateFingerprint;
    const b = req.certificateBinding?.binding;
    const next = b?.case === "spkiSha256" ? bindingKey({ spkiSha256: Buffer.from(b.value).toString("hex") }) : current;
    return next !== current && (await policyRequires(policies, "securityOfficerChanges"));
  },
  "/inkan.admin.v1.PolicyService/UpdateSecurityPolicy": async (_m, { policies }) => policyRequires(policies, "securityPolicyChanges"),
  // Issue 22: the way back to service after a restore is never one security officer's (no policy switch).
  // With no restore awaiting, the handler refuses at once (STATE_CONFLICT) and nothing is held (issue 18).
  "/inkan.admin.v1.PolicyService/AcknowledgeRestore": async (_m, { restore }) => !restore || restore.pending !== undefined,
  // Key destruction is irreversible: never by one security officer alone (R-3.2.1.6, R-3.3.x).
  "/inkan.admin.v1.RegistrationService/DestroyCredential": async (m, { policies, credentials }) =>
    (await policyRequires(policies, "credentialDestruction")) && !(await destructionRefusedAnyway(credentials, m as DestroyCredentialRequest)),
  // T-2.2.2.1: no lone registration operator binds new factors to a signer who holds a key.
  "/inkan.admin.v1.RegistrationService/ResetFactors": async (m, { signers }) => !signers || (await signers.rebindingHeld((m as { signerId: string }).signerId, "reset")),
  "/inkan.admin.v1.RegistrationService/IssueActivationCode": async (m, { signers }) => !signers || (await signers.rebindingHeld((m as { signerId: string }).signerId, "issue")),
};

/** Runs the guard of each admin RPC; a guarded request is held for approval and nothing changes. */
export function createDualControlInterceptor(dual: DualControl, deps: GuardDeps, audit: AuditLog, clock: () => Date = () => new Date()): Interceptor {
  return (next) => async (req) => {
    const method = `/${req.service.typeName}/${req.method.name}`;
    const guard = guards[method];
    if (!guard || req.stream || !(await guard(req.message, deps))) return next(req);
    const request = toBinary(req.method.input, req.message as never);
    const digest = createHash("sha256").update(request).digest();
    const requester = req.contextValues.get(kAdmin);
    if (!requester) throw new InkanError("CLIENT_CERTIFICATE_REJECTED", "not authenticated");
    // T-2.2.2.3 split knowledge: the requester's half is drawn now and leaves only in this answer; the
    // pending request keeps its hash. A request already pending keeps its own (the half went out then).
    let half: { half: string; halfHash: string } | undefined;
    if (rebindingMethods.includes(method)) half = await newActivationCodeHalf(deps.random); // R-3.2.2.2: the module's RNG
    const pending = await dual.hold({ method, request, digest, requestedBy: requester.userId, now: clock(), ...(half ? { requesterHalfHash: half.halfHash } : {}) });
    await audit.record(approvalRequested({ requester: actorOf(requester), method, pendingRequestId: pending.id, requestId: req.contextValues.get(kRequestId) }));
    const fresh = half && (JSON.parse(pending.body) as PendingApprovalBody).requesterHalfHash === half.halfHash;
    throw approvalRequired(pending, fresh ? half!.half : undefined);
  };
}

/** The APPROVAL_REQUIRED refusal: the pending request, and the requester's half of a split activation code when one was drawn. */
function approvalRequired(pending: PendingApprovalRecord, requesterHalf?: string): ConnectError {
  const message = rebindingMethods.includes(pending.method)
    ? "a second registration operator or a security officer must approve this request"
    : "a second security officer must approve this request";
  const half = requesterHalf ? [{ desc: ActivationCodeSchema, value: create(ActivationCodeSchema, { code: requesterHalf, part: ActivationCodePart.REQUESTER_HALF }) }] : [];
  return new ConnectError(message, Code.FailedPrecondition, undefined, [
    { desc: ErrorDetailSchema, value: create(ErrorDetailSchema, { reason: Reason.APPROVAL_REQUIRED }) },
    {
      desc: ApprovalRequiredSchema,
      value: create(ApprovalRequiredSchema, {
        pendingRequestId: pending.id,
        method: pending.method,
        requestDigest: Buffer.from(pending.requestDigest, "base64url"),
        expiresAt: timestampFromDate(pending.expiresAt),
      }),
    },
    ...half,
  ]);
}

/**
 * The copy of an approved request's response that the pending approval keeps (GetPendingApproval):
 * the approver's half of an activation code is returned once, to the approver, and never stored.
 */
function storedResult(method: string, schema: DescMessage, response: Message): Message {
  if (!rebindingMethods.includes(method)) return response;
  const copy = clone(schema, response) as Message & { activationCode?: { code: string } };
  if (copy.activationCode) copy.activationCode.code = "";
  return copy;
}

type UnaryHandler = (message: unknown, ctx: HandlerContext) => Promise<unknown>;

export interface ApprovalServiceOptions {
  dual: DualControl;
  audit: AuditLog;
  users: PrivilegedUsers;
  /** Every service of the contract, to decode stored requests. */
  services: DescService[];
  /** The implementation of a method by full path, to perform an approved request. */
  handlerOf(method: string): UnaryHandler | undefined;
  clock?: () => Date;
}

const stateOut: Record<PendingApprovalRecord["state"], PendingApprovalState> = {
  PENDING: PendingApprovalState.PENDING,
  APPROVED: PendingApprovalState.PENDING, // approved, execution in progress (or interrupted)
  EXECUTED: PendingApprovalState.EXECUTED,
  FAILED: PendingApprovalState.FAILED,
  REJECTED: PendingApprovalState.REJECTED,
  EXPIRED: PendingApprovalState.EXPIRED,
};

/** The approval half of PrivilegedUserService. */
export function approvalService(o: ApprovalServiceOptions): Partial<ServiceImpl<typeof PrivilegedUserService>> {
  const clock = o.clock ?? (() => new Date());
  const methods = new Map<string, DescMethod>(o.services.flatMap((s) => s.methods.map((m) => [`/${s.typeName}/${m.name}`, m] as const)));
  const out = (r: PendingApprovalRecord) => {
    const method = methods.get(r.method);
    const body = JSON.parse(r.body) as PendingApprovalBody;
    const now = clock();
    return {
      pendingRequestId: r.id,
      method: r.method,
      request: method ? anyPack(method.input, fromBinary(method.input, Buffer.from(r.request, "base64url"))) : undefined,
      requestDigest: Buffer.from(r.requestDigest, "base64url"),
      requestedBy: r.requestedBy,
      requestedAt: timestampFromDate(r.requestedAt),
      expiresAt: timestampFromDate(r.expiresAt),
      state: r.state === "PENDING" && r.expiresAt <= now ? PendingApprovalState.EXPIRED : stateOut[r.state],
      decidedBy: r.decidedBy ?? "",
      decidedAt: r.decidedAt ? timestampFromDate(r.decidedAt) : undefined,
      decisionComment: body.comment ?? "",
      result: method && body.result ? anyPack(method.output, fromBinary(method.output, Buffer.from(body.result, "base64url"))) : undefined,
      errorCode: body.errorCode ?? "",
    };
  };

  /**
   * Performs an approved request once, on behalf of its requester, re-checking who they are now.
   * Returns the completed record and, on success, the response as performed (which may hold the
   * approver's half of an activation code: for the approver only, never stored).
   */
  async function perform(approved: PendingApprovalRecord, approverActor: PrivilegedUserActor): Promise<{ record: PendingApprovalRecord; response?: Message }> {
    const approver = approverActor.userId;
    const now = clock();
    const method = methods.get(approved.method);
    const handler = o.handlerOf(approved.method);
    try {
      if (!method || !handler) throw new InkanError("NOT_IMPLEMENTED", "the approved method is not available");
      const requester = (await o.users.get(approved.requestedBy)).user;
      if (requester.status !== "ACTIVE" || !rolesFor(approved.method).includes(requester.role)) {
        throw new InkanError("ROLE_NOT_PERMITTED", "the requester may no longer call this method");
      }
      const message = fromBinary(method.input, Buffer.from(approved.request, "base64url"));
      const requesterActor = actorOf({ userId: requester.id, role: requester.role });
      const { requesterHalfHash } = JSON.parse(approved.body) as PendingApprovalBody;
      const facts = { method: approved.method, requester: requesterActor, pendingRequestId: approved.id };
      await o.audit.record(privilegedOperationRequested(facts)); // fail closed: nothing runs unrecorded
      const ctx = createHandlerContext({
        service: method.parent,
        method,
        protocolName: "inkan-dual-control",
        requestMethod: "POST",
        url: approved.method,
        contextValues: createContextValues()
          .set(kAdmin, { userId: requester.id, role: requester.role, keyId: undefined })
          .set(kApprovedBy, approver)
          .set(kRebindingApproval, requesterHalfHash ? { approver: approverActor, requesterHalfHash } : undefined),
      });
      let response: unknown;
      try {
        response = await handler(message, ctx);
      } catch (err) {
        await o.audit.record(privilegedOperationPerformed({ ...facts, approver: approverActor, result: { outcome: "FAILURE", reason: err instanceof InkanError ? err.code : undefined } }));
        throw err;
      }
      await o.audit.record(privilegedOperationPerformed({ ...facts, approver: approverActor, result: { outcome: "SUCCESS" } }));
      const performed = create(method.output, response as never) as Message;
      const result = toBinary(method.output, storedResult(approved.method, method.output, performed));
      return { record: await o.dual.complete({ approved, outcome: { result }, now }), response: performed };
    } catch (err) {
      const errorCode = err instanceof InkanError ? err.code : "INTERNAL";
      return { record: await o.dual.complete({ approved, outcome: { errorCode }, now }) };
    }
  }
  const roleOf = (ctx: HandlerContext) => ctx.values.get(kAdmin)?.role;

  return {
    async listPendingApprovals(req, ctx) {
      const state = req.state ? (PendingApprovalState[req.state] as PendingApprovalRecord["state"]) : undefined;
      const filters = { state, requestedBy: req.requestedBy };
      const after = readPageToken(req.page?.pageToken, filters);
      const page = await o.dual.list({
        ...(state ? { state } : {}),
        ...(req.requestedBy ? { requestedBy: req.requestedBy } : {}),
        ...(after ? { after } : {}),
        limit: req.page?.pageSize || 100,
        now: clock(),
        role: roleOf(ctx),
      });
      return { pendingApprovals: page.items.map(out), page: { nextPageToken: pageToken(page.next, filters) } };
    },
    async getPendingApproval(req, ctx) {
      return { pendingApproval: out(await o.dual.get(req.pendingRequestId, roleOf(ctx))) };
    },
    async approvePendingRequest(req, ctx) {
      const approver = actorOf({ userId: adminOf(ctx), role: roleOf(ctx)! }); // adminOf: authenticated, or it throws
      const approved = await o.dual.decide({ id: req.pendingRequestId, digest: req.requestDigest, by: approver.userId, byRole: approver.role, approve: true, comment: req.comment, now: clock() });
      // The requester held the one role that may call the method (roles.ts), or it would not have been held.
      const requesterRole = rolesFor(approved.method)[0] ?? "SECURITY_OFFICER";
      await o.audit.record(approvalGranted({
        approver, requester: actorOf({ userId: approved.requestedBy, role: requesterRole }),
        method: approved.method, pendingRequestId: approved.id, requestId: ctx.values.get(kRequestId),
      }));
      const { record, response } = await perform(approved, approver);
      const view = out(record);
      const method = methods.get(record.method);
      // The response as performed goes to the approver once (with their half, if any); the record keeps the redacted copy.
      return { pendingApproval: response && method ? { ...view, result: anyPack(method.output, response) } : view };
    },
    async rejectPendingRequest(req, ctx) {
      const by = adminOf(ctx); // the requester may withdraw their own request
      const rejected = await o.dual.decide({ id: req.pendingRequestId, digest: req.requestDigest, by, byRole: roleOf(ctx)!, approve: false, comment: req.comment, now: clock() });
      await o.audit.record(approvalRejected({ actor: actorOf(ctx.values.get(kAdmin)!), method: rejected.method, pendingRequestId: rejected.id, requestId: ctx.values.get(kRequestId) }));
      return { pendingApproval: out(rejected) };
    },
  };
}
