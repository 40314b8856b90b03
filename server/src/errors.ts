/**
 * Domain errors: a stable reason code (like jose's `ERR_JWT_EXPIRED`) and a short message that is
 * safe to show a client. The cause, kept for the log, never travels to the client. The transport
 * maps each code to a gRPC/Connect code in one table (transport/error-table.ts).
 */
export type ReasonCode =
  | "CLIENT_CERTIFICATE_REJECTED"
  | "ROLE_NOT_PERMITTED"
  | "REQUEST_SIGNATURE_INVALID"
  | "NONCE_REPLAYED"
  | "APPROVAL_REQUIRED"
  | "APPROVAL_REJECTED"
  | "INVALID_REQUEST"
  | "HASH_LENGTH_MISMATCH"
  | "ALGORITHM_NOT_ALLOWED"
  | "LIMIT_EXCEEDED"
  | "VERSION_CONFLICT"
  | "TRANSACTION_NOT_FOUND"
  | "TRANSACTION_STATE"
  | "EXPIRED"
  | "SAD_INVALID"
  | "SAD_REPLAYED"
  | "HASH_NOT_AUTHORIZED"
  | "SIGNATURE_COUNT_EXCEEDED"
  | "AUTHENTICATION_FAILED"
  | "ASSURANCE_LEVEL_NOT_MET"
  | "UPLOAD_INCOMPLETE"
  | "SIGNER_NOT_FOUND"
  | "CREDENTIAL_NOT_FOUND"
  | "CREDENTIAL_SUSPENDED"
  | "CREDENTIAL_DESTROYED"
  | "CREDENTIAL_LOCKED"
  | "SIGNER_INACTIVE"
  | "ACTIVATION_CODE_INVALID"
  | "ALREADY_EXISTS"
  | "KEY_MISMATCH"
  | "CERTIFICATE_INVALID"
  | "STATE_CONFLICT"
  | "CERTIFICATE_EXPIRED"
  | "PRIVILEGED_USER_NOT_FOUND"
  | "PENDING_REQUEST_NOT_FOUND"
  | "LAST_SECURITY_OFFICER"
  | "INTEGRITY_VIOLATION"
  | "CRYPTO_MODULE_FAILURE"
  | "AUDIT_FAILURE"
  | "STORE_FAILURE"
  | "SIGNATURE_CHECK_FAILED"
  | "NOT_IMPLEMENTED";

export interface InkanErrorOptions {
  /** The underlying cause, for the server's log only. */
  cause?: unknown;
  /** The input field the error is about, e.g. "hashes[3]". */
  field?: string;
  /** For batches: the index of the first failing item. */
  index?: number;
}

export class InkanError extends Error {
  readonly field: string | undefined;
  readonly index: number | undefined;
  constructor(readonly code: ReasonCode, message: string, options: InkanErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "InkanError";
    this.field = options.field;
    this.index = options.index;
  }
}
