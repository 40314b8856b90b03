import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ErrorDetailSchema, Reason } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import { InkanError } from "../errors.js";
import type { CredentialLifecycle } from "../registration/credential-lifecycle.js";
import { kApprovedBy } from "./dual-control.js";
import { acting, credentialOut } from "./registration-service.js";

type Impl = Partial<ServiceImpl<typeof RegistrationService>>;

/**
 * RegistrationService's SuspendCredential, ResumeCredential and DestroyCredential (R-3.3.x): map
 * in, call the domain, map out. Authentication, the role check, validation, the privileged-operation
 * audit and, for DestroyCredential, dual control ran before these handlers.
 */
export function credentialLifecycleService(lifecycle: CredentialLifecycle, clock: () => Date = () => new Date()): Impl {
  return {
    async suspendCredential(req, ctx) {
      const now = clock();
      return { credential: credentialOut(await lifecycle.suspend({ ...acting(ctx, now), credentialId: req.credentialId, reason: req.reason }), now) };
    },
    async resumeCredential(req, ctx) {
      try {
        const now = clock();
        return { credential: credentialOut(await lifecycle.resume({ ...acting(ctx, now), credentialId: req.credentialId, reason: req.reason }), now) };
      } catch (err) {
        // registration.proto: resuming a credential that is not suspended is FAILED_PRECONDITION with REASON_INVALID_REQUEST.
        if (err instanceof InkanError && err.code === "INVALID_REQUEST" && err.field === "credential_id") {
          throw new ConnectError(err.message, Code.FailedPrecondition, undefined, [
            { desc: ErrorDetailSchema, value: create(ErrorDetailSchema, { reason: Reason.INVALID_REQUEST, field: "credential_id" }) },
          ]);
        }
        throw err;
      }
    },
    async destroyCredential(req, ctx) {
      const approvedBy = ctx.values.get(kApprovedBy); // set only when a second security officer approved (dual control)
      const now = clock();
      const view = await lifecycle.destroy({
        ...acting(ctx, now),
        credentialId: req.credentialId,
        publicKeyFingerprint: req.publicKeyFingerprint,
        reason: req.reason,
        ...(approvedBy ? { approver: { kind: "privileged-user", userId: approvedBy, role: "SECURITY_OFFICER" } } : {}),
      });
      return { credential: credentialOut(view, now) };
    },
  };
}
