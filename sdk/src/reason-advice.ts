import { Reason } from "./gen/inkan/sam/v1/error_pb.js";

/**
 * What a caller should do about each Reason (the meaning of each is in error.proto). The SDK's
 * README lists them; a test checks that every Reason has advice here and a row there.
 */
const advice: Record<Reason, string> = {
  [Reason.UNSPECIFIED]: "Not an Inkan reason: a network, TLS or proxy failure, or a non-Inkan server. Act on the gRPC code; `retryable` says whether trying again can help.",
  [Reason.CLIENT_CERTIFICATE_REJECTED]: "Do not retry unchanged. Check the client certificate: sent at all, issued by the CA the SAM trusts for this role, within its validity, registered with the SAM; renew it if it expired. With detectedBySdk the SAM refused it in the TLS handshake and the message says what the SDK could tell.",
  [Reason.ROLE_NOT_PERMITTED]: "Call with the certificate of the right role: an SCA certificate for the SAP, a privileged user's for the admin services.",
  [Reason.REQUEST_SIGNATURE_INVALID]: "Sign every admin request afresh (createAdminRequestSigner) with the key registered to the user; check the clock.",
  [Reason.NONCE_REPLAYED]: "Fetch a new nonce or challenge and build the request again; each one works once.",
  [Reason.APPROVAL_REQUIRED]: "Ask a second security officer (for ResetFactors and IssueActivationCode also another registration operator) to approve the pending request (its id is in the ApprovalRequired detail).",
  [Reason.APPROVAL_REJECTED]: "The approval must come from a privileged user other than the requester.",
  [Reason.INVALID_REQUEST]: "Fix the request: the buf.validate.Violations detail and `field` name what is wrong. Do not retry unchanged.",
  [Reason.HASH_LENGTH_MISMATCH]: "Hash every document with the transaction's hash algorithm (`field` names the hash).",
  [Reason.ALGORITHM_NOT_ALLOWED]: "Choose a hash and signature algorithm that GetInfo and the credential (hash_algorithms, signature_algorithms) list.",
  [Reason.LIMIT_EXCEEDED]: "Stay within GetInfo's limits: split the work into several transactions or smaller messages (the SDK chunks uploads and signing itself). From Authorize, ChangePin or ImportKey: other factor checks are in progress; nothing was checked, send the request again once they end.",
  [Reason.VERSION_CONFLICT]: "Someone changed the record meanwhile: read it again and retry the change.",
  [Reason.TRANSACTION_NOT_FOUND]: "The transaction id is wrong or belongs to another SCA certificate: begin a new transaction.",
  [Reason.TRANSACTION_STATE]: "The transaction is past this step (authorized, completed, cancelled, revoked or failed) or not there yet: authorize first, or begin a new transaction.",
  [Reason.EXPIRED]: "The transaction, R.SAD or token expired: begin a new transaction (ask the signer sooner, or request a longer lifetime).",
  [Reason.SAD_INVALID]: "The R.SAD does not fit this transaction or SAM: have the signer's device build it again from this transaction's SadChallenge.",
  [Reason.SAD_REPLAYED]: "A one-time value was used twice; a reused SAD token revokes the transaction. Begin a new transaction and treat it as a possible attack; never resend a token (except the same SignHash retried after a call that got no answer).",
  [Reason.HASH_NOT_AUTHORIZED]: "Sign only the transaction's own hashes, each once (`index` names the first offending one).",
  [Reason.SIGNATURE_COUNT_EXCEEDED]: "Ask for no more signatures than the transaction authorizes; open a new transaction for more.",
  [Reason.AUTHENTICATION_FAILED]: "The signer's PIN, OTP or device key did not verify: let the signer try again with a new R.SAD (failures count towards the lockout).",
  [Reason.ASSURANCE_LEVEL_NOT_MET]: "Authorize with a method the credential accepts (SadChallenge.authentication_methods).",
  [Reason.UPLOAD_INCOMPLETE]: "Send every chunk in order and seal with the digest of exactly what was sent (the SDK's beginTransaction does this).",
  [Reason.SIGNER_NOT_FOUND]: "Check the signer id; a signer outside this SCA's scope is reported the same way.",
  [Reason.CREDENTIAL_NOT_FOUND]: "Check the credential id (ListCredentials) and that it belongs to the signer named in the request.",
  [Reason.CREDENTIAL_SUSPENDED]: "The credential is suspended: the signer or the registration authority must resume it first.",
  [Reason.CREDENTIAL_DESTROYED]: "The key no longer exists: the signer needs a new credential.",
  [Reason.CREDENTIAL_LOCKED]: "Too many failed factor attempts: a registration operator must unlock the credential.",
  [Reason.SIGNER_INACTIVE]: "The signer must activate (activation code) or be re-enabled by the registration authority.",
  [Reason.ACTIVATION_CODE_INVALID]: "Ask the registration authority for a new activation code.",
  [Reason.ALREADY_EXISTS]: "The key or certificate is already registered: use the existing record.",
  [Reason.KEY_MISMATCH]: "The certificate must certify exactly the credential's public key: have it issued again from the credential's CSR.",
  [Reason.CERTIFICATE_INVALID]: "The chain must validate to a CA the SAM trusts and be valid now: import the right chain.",
  [Reason.STATE_CONFLICT]: "The signer or credential is not in a state that allows this operation: read its status and act on it.",
  [Reason.CERTIFICATE_EXPIRED]: "The credential's certificate is outside its validity period: it signs again once the registration authority imports a renewed certificate (ImportCertificate).",
  [Reason.PRIVILEGED_USER_NOT_FOUND]: "Check the privileged user's id.",
  [Reason.PENDING_REQUEST_NOT_FOUND]: "The pending request expired or was already decided: make the request again.",
  [Reason.LAST_SECURITY_OFFICER]: "Add another security officer before removing or demoting this one.",
  [Reason.INTEGRITY_VIOLATION]: "The SAM (or, with detectedBySdk, the SDK) found data that does not match: do not retry; report it with the request id to the SAM's operator.",
  [Reason.CRYPTO_MODULE_FAILURE]: "Nothing was released: retry later (signAll resumes a stream itself; a failed SignHash may be retried with the same token and the same hashes once the SAM restarted or its claim lease ran out).",
  [Reason.AUDIT_FAILURE]: "The SAM could not write its audit record and did nothing: retry later.",
  [Reason.STORE_FAILURE]: "The SAM's store failed and nothing was done: retry later.",
  [Reason.SIGNATURE_CHECK_FAILED]: "A signature did not verify against the credential's key (withheld by the SAM, or altered in transit and caught by the SDK): do not use it, cancel the transaction and report it as a possible attack.",
  [Reason.NOT_IMPLEMENTED]: "This SAM does not offer the RPC or option yet: upgrade the SAM or do without it.",
};

/**
 * What to do about a reason, in one or two sentences for logs and support screens.
 *
 * @example
 * catch (err) { if (err instanceof InkanError) console.error(err.reasonName, reasonAdvice(err.reason)); }
 */
export function reasonAdvice(reason: Reason): string {
  return advice[reason] ?? advice[Reason.UNSPECIFIED];
}
