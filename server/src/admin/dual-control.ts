import { timingSafeEqual } from "node:crypto";
import canonicalize from "canonicalize";
import type { RandomSource } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { RecordSealer } from "../integrity/record-sealer.js";
import type { NewPendingApproval, PendingApprovalRecord, PendingApprovals, PrivilegedRole } from "../store/port.js";

/** How long a pending request waits for its approver. */
export const approvalLifetimeMs = 24 * 60 * 60 * 1000;

/**
 * The requests a registration operator may approve as well as a security officer (T-2.2.2.1):
 * re-binding a signer who holds a credential, whose activation code is split between the two.
 */
export const rebindingMethods: readonly string[] = [
  "/inkan.admin.v1.RegistrationService/ResetFactors",
  "/inkan.admin.v1.RegistrationService/IssueActivationCode",
];

/** Who may see, approve or reject a pending request of `method`; never the requester for an approval (see decide). */
export function approverRolesFor(method: string): readonly PrivilegedRole[] {
  return rebindingMethods.includes(method) ? ["SECURITY_OFFICER", "REGISTRATION_OPERATOR"] : ["SECURITY_OFFICER"];
}

/** What the body of a pending approval records beyond its indexed fields. */
export interface PendingApprovalBody {
  comment?: string;
  /** Split knowledge (T-2.2.2.3): the hash of the half of an activation code given to the requester; never the half. */
  requesterHalfHash?: string;
  /** After execution: the response (base64url of its binary encoding) or the error code. */
  result?: string;
  errorCode?: string;
}

/** Thrown by a guarded operation: nothing changed; a second privileged user must approve. */
export class ApprovalRequiredError extends InkanError {
  constructor(readonly pending: PendingApprovalRecord) {
    super("APPROVAL_REQUIRED", "a second security officer must approve this request");
    this.name = "ApprovalRequiredError";
  }
}

export interface DualControlOptions {
  store: PendingApprovals;
  sealer: RecordSealer;
  random: RandomSource;
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");

/**
 * Dual control (R-3.2.1.6, T-2.2.2.1): a guarded operation is stored as a pending request and
 * performed only after a second security officer (or, for {@link rebindingMethods}, a second
 * registration operator) approves the same request by its digest, exactly once (the store's
 * atomic decide), never by the requester. Records are sealed like all others.
 */
export class DualControl {
  constructor(private readonly o: DualControlOptions) {}

  /**
   * Stores the request (or finds the same one already pending) and returns it. `requesterHalfHash`
   * is kept in the sealed body of a new request only; a request already pending keeps its own.
   */
  async hold(req: { method: string; request: Uint8Array; digest: Uint8Array; requestedBy: string; now: Date; requesterHalfHash?: string }): Promise<PendingApprovalRecord> {
    const requestDigest = b64(req.digest);
    const existing = await this.o.store.findPendingApproval({ method: req.method, requestDigest, requestedBy: req.requestedBy, now: req.now });
    if (existing) return this.o.sealer.verify(existing);
    const id = `pa-${b64(await this.o.random.randomBytes(12))}`;
    const record = await this.o.sealer.seal<PendingApprovalRecord>({
      kind: "pending-approval",
      id,
      version: 1,
      method: req.method,
      requestDigest,
      request: b64(req.request),
      requestedBy: req.requestedBy,
      requestedAt: req.now,
      expiresAt: new Date(req.now.getTime() + approvalLifetimeMs),
      state: "PENDING",
      decidedBy: undefined,
      decidedAt: undefined,
      body: canonicalize(req.requesterHalfHash ? { requesterHalfHash: req.requesterHalfHash } : {})!,
    });
    await this.o.store.createPendingApproval(record as NewPendingApproval);
    return record;
  }

  /** A pending request; PENDING_REQUEST_NOT_FOUND also when `role` may not see it (a registration operator asking for a security officer's request). */
  async get(id: string, role?: PrivilegedRole): Promise<PendingApprovalRecord> {
    const record = await this.o.store.getPendingApproval(id);
    if (!record || (role && !approverRolesFor(record.method).includes(role))) throw new InkanError("PENDING_REQUEST_NOT_FOUND", "no such pending request", { field: "pending_request_id" });
    return this.o.sealer.verify(record);
  }

  /** One page of pending requests; with `role`, only those that role may see (the page may then be short). */
  async list(query: { state?: PendingApprovalRecord["state"]; requestedBy?: string; after?: string; limit: number; now: Date; role?: PrivilegedRole }) {
    const { role, ...filters } = query;
    const page = await this.o.store.listPendingApprovals({ ...filters, order: "asc" });
    const visible = role ? page.items.filter((r) => approverRolesFor(r.method).includes(role)) : page.items;
    return { ...page, items: await Promise.all(visible.map((r) => this.o.sealer.verify(r))) };
  }

  /**
   * Approves or rejects a pending request. The decider must have a role that may approve the
   * request's method (T-2.2.2.1: a security officer, or a registration operator for re-binding a
   * signer) and must not be the requester, and names the request by its digest, so an approval
   * cannot be redirected to another request.
   */
  async decide(req: { id: string; digest: Uint8Array; by: string; byRole: PrivilegedRole; approve: boolean; comment: string; now: Date }): Promise<PendingApprovalRecord> {
    const pending = await this.get(req.id, req.byRole);
    if (req.approve && pending.requestedBy === req.by) throw new InkanError("APPROVAL_REJECTED", "the requester cannot approve their own request"); // dual control; withdrawing is allowed
    const digest = Buffer.from(pending.requestDigest, "base64url");
    if (digest.length !== req.digest.length || !timingSafeEqual(digest, req.digest)) {
      throw new InkanError("INVALID_REQUEST", "request_digest does not match the pending request", { field: "request_digest" });
    }
    if (pending.state !== "PENDING" || pending.expiresAt <= req.now) {
      throw new InkanError("STATE_CONFLICT", "the request is no longer pending");
    }
    const to = req.approve ? "APPROVED" : "REJECTED";
    const held = (JSON.parse(pending.body) as PendingApprovalBody).requesterHalfHash;
    const body: PendingApprovalBody = { ...(held ? { requesterHalfHash: held } : {}), ...(req.comment ? { comment: req.comment } : {}) };
    const next = await this.o.sealer.seal<PendingApprovalRecord>({
      ...pending, version: pending.version + 1, state: to, decidedBy: req.by, decidedAt: req.now, body: canonicalize(body)!,
    });
    // One atomic conditional update: of two concurrent approvers exactly one proceeds.
    const decided = await this.o.store.decidePendingApproval({ id: pending.id, from: "PENDING", to, decidedBy: req.by, decidedAt: req.now, body: next.body, seal: next.seal, now: req.now });
    if (!decided) throw new InkanError("STATE_CONFLICT", "the request is no longer pending");
    return this.o.sealer.verify(decided);
  }

  /** Records the outcome of an approved request's single execution. */
  async complete(req: { approved: PendingApprovalRecord; outcome: { result: Uint8Array } | { errorCode: string }; now: Date }): Promise<PendingApprovalRecord> {
    const prior = JSON.parse(req.approved.body) as PendingApprovalBody;
    const body: PendingApprovalBody = "result" in req.outcome ? { ...prior, result: b64(req.outcome.result) } : { ...prior, errorCode: req.outcome.errorCode };
    const to = "result" in req.outcome ? "EXECUTED" : "FAILED";
    const next = await this.o.sealer.seal<PendingApprovalRecord>({ ...req.approved, version: req.approved.version + 1, state: to, body: canonicalize(body)! });
    const done = await this.o.store.completePendingApproval({ id: req.approved.id, from: "APPROVED", to, body: next.body, seal: next.seal, now: req.now });
    if (!done) throw new InkanError("STATE_CONFLICT", "the approved request was already completed");
    return this.o.sealer.verify(done);
  }
}
