/**
 * Translation of pkcs11js failures into domain errors. A `Pkcs11Error` (CKR_* code) never leaves
 * the adapter: it becomes an InkanError whose message is plain and whose `cause` keeps the CKR
 * name for the server's log. No message built here contains a PIN or key material.
 */
import { InkanError, type ReasonCode } from "../../errors.js";
import { ckrName, isPkcs11Error } from "./library.js";

/** Wraps anything that is not already an InkanError as CRYPTO_MODULE_FAILURE. */
export function toInkanError(err: unknown, operation: string): InkanError {
  if (err instanceof InkanError) return err;
  return new InkanError("CRYPTO_MODULE_FAILURE", `crypto module failure during ${operation}`, { cause: err });
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
