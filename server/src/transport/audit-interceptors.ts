import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ErrorDetailSchema, Reason } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import type { AuditLog } from "../audit/audit-log.js";
import { adminRequestRefused, requestRefused, privilegedOperationPerformed, privilegedOperationRequested, type Actor, type Refusal } from "../audit/events.js";
import { InkanError, type ReasonCode } from "../errors.js";
import { kAdmin } from "./admin-auth.js";
import { kCaller, kRequestId } from "./identity.js";
import { kApprovedBy } from "./dual-control.js";

const refusals = new Set<ReasonCode>(["CLIENT_CERTIFICATE_REJECTED", "ROLE_NOT_PERMITTED", "REQUEST_SIGNATURE_INVALID", "NONCE_REPLAYED"]);
const deniedCodes = new Set<ReasonCode>([...refusals, "APPROVAL_REJECTED", "LAST_SECURITY_OFFICER", "APPROVAL_REQUIRED"]);
/** The reason of an error on its way out: a domain error's code, or the typed detail of a ConnectError. */
function reasonOf(err: unknown): ReasonCode | undefined {
  if (err instanceof InkanError) return err.code;
  if (err instanceof ConnectError) {
    const reason = err.findDetails(ErrorDetailSchema)[0]?.reason;
    if (reason !== undefined && reason !== Reason.UNSPECIFIED) return Reason[reason] as ReasonCode;
    if (err.code === Code.InvalidArgument) return "INVALID_REQUEST";
  }
  return undefined; // an unexpected error: recorded as a failure without a reason
}

const isAdmin = (typeName: string) => typeName.startsWith("inkan.admin.");
const hexToBytes = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"));

/** Refusals of the caller itself on the SAP and SignerService (their other refusals are the handlers' own records). */
const callerRefusals = new Set<ReasonCode>(["CLIENT_CERTIFICATE_REJECTED", "ROLE_NOT_PERMITTED"]);

/**
 * Records every refused admin request ("admin_request.refused": who by certificate, which method,
 * why; never the request signature), before the refusal leaves (T-2.1.2.1, T-2.2.2.1, T-2.2.2.2),
 * and every caller the SAP or SignerService refuses by certificate or kind ("request.refused",
 * R-3.2.2.4). Sits outside the access and admin-auth interceptors so it sees their refusals.
 */
export function createRefusalAuditInterceptor(audit: AuditLog): Interceptor {
  return (next) => async (req) => {
    const admin = isAdmin(req.service.typeName);
    try {
      return await next(req);
    } catch (err) {
      if (err instanceof InkanError && (admin ? refusals : callerRefusals).has(err.code)) {
        const caller = req.contextValues.get(kCaller);
        const cert = caller ? { certificateSha256: hexToBytes(caller.sha256) } : {};
        // Only an SCA is an actor with a name here; any other caller was not authenticated for this service.
        const actor: Actor = caller?.kind === "sca" ? { kind: "sca", subject: caller.subject, ...cert } : { kind: "unauthenticated", ...cert };
        const refusal = { caller: actor, method: `/${req.service.typeName}/${req.method.name}`, reason: err.code, requestId: req.contextValues.get(kRequestId) };
        // The refusal stands whether or not it could be recorded; a failure to record is an AUDIT_FAILURE.
        await audit.record(admin ? adminRequestRefused(refusal) : requestRefused(refusal));
      }
      throw err;
    }
  };
}

/**
 * Records each authenticated admin operation twice: "requested" before it runs, so that when the
 * audit log cannot be written nothing changes (fail closed, R-3.2.2.4), and "performed" with its
 * outcome after. Runs after authentication and validation, before dual control.
 */
export function createOperationAuditInterceptor(audit: AuditLog): Interceptor {
  return (next) => async (req) => {
    const user = req.contextValues.get(kAdmin);
    const method = `/${req.service.typeName}/${req.method.name}`;
    if (!isAdmin(req.service.typeName) || !user || method.endsWith("/CreateRequestNonce")) return next(req);
    const caller = req.contextValues.get(kCaller);
    const requester = {
      kind: "privileged-user" as const,
      userId: user.userId,
      role: user.role,
      ...(caller ? { certificateSha256: hexToBytes(caller.sha256) } : {}),
    };
    const requestId = req.contextValues.get(kRequestId);
    await audit.record(privilegedOperationRequested({ method, requester, requestId }));
    let result: { outcome: "SUCCESS" } | Refusal = { outcome: "SUCCESS" };
    try {
      return await next(req);
    } catch (err) {
      const code = reasonOf(err);
      result = { outcome: code && deniedCodes.has(code) ? "DENIED" : "FAILURE", reason: code };
      throw err;
    } finally {
      const approvedBy = req.contextValues.get(kApprovedBy);
      await audit.record(privilegedOperationPerformed({
        method, requester, result, requestId,
        ...(approvedBy ? { approver: { kind: "privileged-user", userId: approvedBy, role: "SECURITY_OFFICER" } } : {}),
      }));
    }
  };
}
