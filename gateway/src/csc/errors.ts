/**
 * CSC API errors: `{ "error", "error_description" }` with an HTTP status, as the CSC API v2 and the
 * OAuth 2.0 RFCs it builds on use them (RFC 6749 5.2 for oauth2/token, RFC 6750 3.1 for bearer
 * tokens). Every code below is listed in openapi.json (a test checks the recorded answers against it).
 * The descriptions never carry a PIN, OTP, SAD, token or code.
 */
import { Code } from "@connectrpc/connect";
import { InkanError, Reason, toInkanError } from "@inkan/sdk";
import { HttpError } from "../http/respond.js";

/** The error codes this API answers with, and their HTTP status. */
export const cscErrors = {
  invalid_request: 400, // a parameter is missing, malformed or refers to nothing this client may see
  invalid_grant: 400, // oauth2/token: the code is unknown, used, expired, or the PKCE verifier/redirect_uri differ
  unsupported_grant_type: 400,
  invalid_scope: 400,
  access_denied: 403, // the signer's factors did not verify, or the signer declined
  invalid_client: 401, // oauth2/token: the client assertion is missing or does not verify
  invalid_token: 401, // the Bearer access token is missing, unknown or expired
  not_found: 404,
  method_not_allowed: 405,
  unsupported_media_type: 415,
  payload_too_large: 413,
  server_error: 500,
  temporarily_unavailable: 503, // the SAM or the signer portal cannot be reached; nothing was signed
} as const;

export type CscErrorCode = keyof typeof cscErrors;

export class CscError extends HttpError {
  constructor(readonly code: CscErrorCode, description: string) {
    super(cscErrors[code], code, description);
  }
}

export const invalidParameter = (name: string) => new CscError("invalid_request", `Invalid parameter ${name}`);
export const missingParameter = (name: string) => new CscError("invalid_request", `Missing (or invalid type) parameter ${name}`);
/** The answer for a SAD that is unknown, of another client or credential, replaced, or expired: one shape, no oracle. */
export const invalidSad = () => new CscError("invalid_request", "Invalid parameter SAD");

/**
 * A SAM refusal as a CSC error. A signer or credential outside the client's scope was already turned
 * into the not-found answer before the SAM was asked (issue 19), so both read the same.
 */
export function fromSam(err: unknown, subject: { credential?: boolean } = {}): CscError {
  if (err instanceof CscError) return err;
  const e: InkanError = toInkanError(err);
  switch (e.reason) {
    case Reason.SIGNER_NOT_FOUND:
      return invalidParameter("userID");
    case Reason.CREDENTIAL_NOT_FOUND:
      return invalidParameter("credentialID");
    case Reason.CREDENTIAL_SUSPENDED:
    case Reason.CREDENTIAL_DESTROYED:
    case Reason.CREDENTIAL_LOCKED:
    case Reason.SIGNER_INACTIVE:
    case Reason.CERTIFICATE_EXPIRED:
    case Reason.STATE_CONFLICT:
      return new CscError("invalid_request", subject.credential === false ? "the signer cannot sign now" : "the credential cannot sign now (suspended, locked, expired or the signer is inactive)");
    case Reason.AUTHENTICATION_FAILED:
    case Reason.SAD_INVALID:
    case Reason.ASSURANCE_LEVEL_NOT_MET:
      return new CscError("access_denied", "the signer's authorization did not verify");
    case Reason.HASH_LENGTH_MISMATCH:
      return invalidParameter("hashes");
    case Reason.ALGORITHM_NOT_ALLOWED:
      return new CscError("invalid_request", "the hash or signature algorithm is not allowed for this credential");
    case Reason.INVALID_REQUEST:
    case Reason.LIMIT_EXCEEDED:
      return new CscError("invalid_request", "the request exceeds a limit or breaks a rule of the SAM");
    case Reason.EXPIRED:
    case Reason.TRANSACTION_STATE:
    case Reason.TRANSACTION_NOT_FOUND:
    case Reason.SAD_REPLAYED:
    case Reason.HASH_NOT_AUTHORIZED:
    case Reason.SIGNATURE_COUNT_EXCEEDED:
      return invalidSad();
    case Reason.CRYPTO_MODULE_FAILURE:
    case Reason.AUDIT_FAILURE:
    case Reason.STORE_FAILURE:
      return new CscError("temporarily_unavailable", "the signing service is unavailable; nothing was signed");
    default:
      if (e.reason === Reason.UNSPECIFIED && [Code.Unavailable, Code.DeadlineExceeded, Code.Canceled].includes(e.code)) {
        return new CscError("temporarily_unavailable", "the signing service is unavailable; nothing was signed");
      }
      return new CscError("server_error", "internal error");
  }
}
