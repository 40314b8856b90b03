import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, Reason } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import { InkanError, type ReasonCode } from "../errors.js";

/** The one table from a domain reason to the gRPC/Connect code it travels with. */
export const codeOfReason: Record<ReasonCode, Code> = {
  CLIENT_CERTIFICATE_REJECTED: Code.Unauthenticated,
  ROLE_NOT_PERMITTED: Code.PermissionDenied,
  REQUEST_SIGNATURE_INVALID: Code.Unauthenticated,
  NONCE_REPLAYED: Code.Unauthenticated,
  APPROVAL_REQUIRED: Code.FailedPrecondition,
  APPROVAL_REJECTED: Code.PermissionDenied,
  INVALID_REQUEST: Code.InvalidArgument,
  HASH_LENGTH_MISMATCH: Code.InvalidArgument,
  ALGORITHM_NOT_ALLOWED: Code.InvalidArgument,
  LIMIT_EXCEEDED: Code.ResourceExhausted,
  VERSION_CONFLICT: Code.Aborted,
  TRANSACTION_NOT_FOUND: Code.NotFound,
  TRANSACTION_STATE: Code.FailedPrecondition,
  EXPIRED: Code.FailedPrecondition,
  SAD_INVALID: Code.PermissionDenied,
  SAD_REPLAYED: Code.PermissionDenied,
  HASH_NOT_AUTHORIZED: Code.PermissionDenied,
  SIGNATURE_COUNT_EXCEEDED: Code.PermissionDenied,
  AUTHENTICATION_FAILED: Code.PermissionDenied,
  ASSURANCE_LEVEL_NOT_MET: Code.FailedPrecondition,
  UPLOAD_INCOMPLETE: Code.FailedPrecondition,
  SIGNER_NOT_FOUND: Code.NotFound,
  CREDENTIAL_NOT_FOUND: Code.NotFound,
  CREDENTIAL_SUSPENDED: Code.FailedPrecondition,
  CREDENTIAL_DESTROYED: Code.FailedPrecondition,
  CREDENTIAL_LOCKED: Code.FailedPrecondition,
  SIGNER_INACTIVE: Code.FailedPrecondition,
  ACTIVATION_CODE_INVALID: Code.PermissionDenied,
  ALREADY_EXISTS: Code.AlreadyExists,
  KEY_MISMATCH: Code.InvalidArgument,
  CERTIFICATE_INVALID: Code.InvalidArgument,
  STATE_CONFLICT: Code.FailedPrecondition,
  CERTIFICATE_EXPIRED: Code.FailedPrecondition,
  PRIVILEGED_USER_NOT_FOUND: Code.NotFound,
  PENDING_REQUEST_NOT_FOUND: Code.NotFound,
  LAST_SECURITY_OFFICER: Code.FailedPrecondition,
  INTEGRITY_VIOLATION: Code.Internal,
  CRYPTO_MODULE_FAILURE: Code.Unavailable,
  AUDIT_FAILURE: Code.Unavailable,
  STORE_FAILURE: Code.Unavailable,
  SIGNATURE_CHECK_FAILED: Code.Internal,
  NOT_IMPLEMENTED: Code.Unimplemented,
};

/** The reason attached to errors that the framework raised without one, by their code. */
const reasonOfFrameworkCode: Partial<Record<Code, ReasonCode>> = {
  [Code.InvalidArgument]: "INVALID_REQUEST",
  [Code.ResourceExhausted]: "LIMIT_EXCEEDED",
  [Code.Unimplemented]: "NOT_IMPLEMENTED",
};

function detail(code: ReasonCode, field?: string, index?: number) {
  return {
    desc: ErrorDetailSchema,
    value: create(ErrorDetailSchema, {
      reason: Reason[code],
      field: field ?? "",
      index: index ?? 0,
      hasIndex: index !== undefined,
    }),
  };
}

function hasInkanDetail(err: ConnectError): boolean {
  return err.details.some((d) => ("desc" in d ? d.desc.typeName : d.type) === ErrorDetailSchema.typeName);
}

/** Codes that mean the SAM itself failed: the client learns nothing more than "internal error". */
const internalCodes = new Set<Code>([Code.Internal, Code.Unknown, Code.DataLoss]);

/**
 * Turns anything a handler threw into the error the client sees. Domain errors keep their short
 * message and gain their code and typed detail; framework errors gain a detail where one fits;
 * anything else, and any framework error that reports an internal failure, is an internal error
 * whose message and cause stay in the log (`report`), never in the answer.
 */
export function toConnectError(err: unknown, report: (err: unknown) => void): ConnectError {
  if (err instanceof InkanError) {
    const code = codeOfReason[err.code];
    if (code === Code.Internal || code === Code.Unavailable) report(err);
    return new ConnectError(err.message, code, undefined, [detail(err.code, err.field, err.index)], err);
  }
  if (err instanceof ConnectError && !(internalCodes.has(err.code) && !hasInkanDetail(err))) {
    const reason = reasonOfFrameworkCode[err.code];
    if (reason && !hasInkanDetail(err)) err.details.push(detail(reason));
    return err;
  }
  report(err);
  return new ConnectError("internal error", Code.Internal);
}

/**
 * Issue 17.5: what a client sees when the SAM could not read its request (connect-es raises these
 * before or instead of the handler: an undecodable message, a broken envelope, a compressed message
 * without its encoding, none or two messages for a single-message call). They are the client's
 * errors, INVALID_ARGUMENT with REASON_INVALID_REQUEST and one short message: the decoder's text
 * (which may quote the request) is neither sent nor logged. A message over the size limit stays
 * RESOURCE_EXHAUSTED; a deadline, a cancellation or a shutdown keeps its code; an unknown
 * compression stays UNIMPLEMENTED with the encodings the SAM accepts, as gRPC specifies.
 */
export function requestReadError(err: unknown): InkanError | ConnectError {
  if (err instanceof InkanError) return err;
  if (err instanceof ConnectError) {
    switch (err.code) {
      case Code.ResourceExhausted:
        return new InkanError("LIMIT_EXCEEDED", "the request message is larger than Limits.max_message_bytes", { cause: err });
      case Code.DeadlineExceeded:
      case Code.Canceled:
      case Code.Unavailable:
      case Code.Aborted:
        return err;
      case Code.Unimplemented:
        if ([...err.metadata.keys()].some((k) => k.endsWith("accept-encoding"))) return err;
    }
  }
  return new InkanError("INVALID_REQUEST", "the request message could not be decoded", { cause: err });
}

