/**
 * Translation of pkcs11js failures into domain errors. A `Pkcs11Error` (CKR_* code) never leaves
 * the adapter: it becomes an InkanError whose message is plain and whose `cause` keeps the CKR
 * name for the server's log. No message built here contains a PIN or key material.
 */
import { InkanError, type ReasonCode } from "../../errors.js";
import { ckrName, isPkcs11Error } from "./library.js";

/**
 * Wraps anything that is not already an InkanError as CRYPTO_MODULE_FAILURE. A module error's
 * CKR name (e.g. CKR_DEVICE_ERROR) is kept as the error's `pkcs11` property, which the server's log
 * shows with the error (pino copies an error's own properties); the message, which a client
 * sees, stays plain. A CKR name carries no secret.
 */
export function toInkanError(err: unknown, operation: string): InkanError {
  if (err instanceof InkanError) return err;
  const wrapped = new InkanError("CRYPTO_MODULE_FAILURE", `crypto module failure during ${operation}`, { cause: err });
  const name = ckrName(err);
  if (name !== undefined) Object.defineProperty(wrapped, "pkcs11", { value: name, enumerable: true });
  return wrapped;
}

/** An InkanError with the given code whose cause is the module's error. */
export function fromModule(code: ReasonCode, message: string, err: unknown): InkanError {
  return new InkanError(code, message, { cause: err });
}

/** True when `err` is a Pkcs11Error with one of the given CKR names. */
export function hasCkr(err: unknown, ...names: string[]): boolean {
  const name = ckrName(err);
  return name !== undefined && names.includes(name);
}

/** CKR codes meaning an object handle no longer names an object (destroyed or stale). */
export function isStaleHandle(err: unknown): boolean {
  return hasCkr(err, "CKR_OBJECT_HANDLE_INVALID", "CKR_KEY_HANDLE_INVALID");
}

/**
 * CKR codes a decryption returns for bad input. SoftHSM2 reports an OAEP padding or GCM tag
 * failure as CKR_GENERAL_ERROR, so that one counts too; the caller turns them all into one
 * uniform error (no padding oracle).
 */
export function isBadCiphertext(err: unknown): boolean {
  return hasCkr(err, "CKR_ENCRYPTED_DATA_INVALID", "CKR_ENCRYPTED_DATA_LEN_RANGE", "CKR_GENERAL_ERROR", "CKR_DATA_LEN_RANGE");
}

export { isPkcs11Error };

/**
 * CKR codes meaning the module itself is gone or no longer knows this application: the device was
 * removed, the token left its slot, a session or the login vanished (an HSM that restarted), the
 * library was finalized. None is caused by a request's input. CKR_DEVICE_ERROR and
 * CKR_DEVICE_MEMORY may be passing: they are "suspect", and the check decides.
 */
const MODULE_LOST = new Set([
  "CKR_DEVICE_REMOVED",
  "CKR_TOKEN_NOT_PRESENT",
  "CKR_TOKEN_NOT_RECOGNIZED",
  "CKR_SESSION_HANDLE_INVALID",
  "CKR_SESSION_CLOSED",
  "CKR_USER_NOT_LOGGED_IN",
  "CKR_CRYPTOKI_NOT_INITIALIZED",
]);

/**
 * What a failed module call says about the module: "lost" (it is unusable: reconnect), "suspect"
 * (an unexpected failure: check the module) or undefined (a refusal of the request, e.g. a bad
 * ciphertext or an unknown key id, which says nothing about the module). Looks through `cause`.
 */
export function moduleFailureKind(err: unknown): { kind: "lost" | "suspect"; reason: string } | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && depth < 5; depth++) {
    const name = ckrName(e);
    if (name !== undefined) return { kind: MODULE_LOST.has(name) ? "lost" : "suspect", reason: name };
    if (e instanceof InkanError) {
      if (e.code !== "CRYPTO_MODULE_FAILURE") return undefined;
      if (e.cause === undefined) return { kind: "suspect", reason: e.message };
      e = e.cause;
      continue;
    }
    return { kind: "suspect", reason: e instanceof Error ? e.message : "unexpected failure" };
  }
  return { kind: "suspect", reason: "unexpected failure" };
}
