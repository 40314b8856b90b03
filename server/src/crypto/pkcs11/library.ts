/**
 * The one place that loads pkcs11js and initializes PKCS#11 libraries.
 *
 * A PKCS#11 library has process-wide state: a second C_Initialize fails and one C_Finalize ends
 * every user's sessions. So each library path is loaded and initialized once per process and
 * shared by reference count. It is initialized with CKF_OS_LOCKING_OK: pkcs11js runs its *Async
 * calls on libuv's thread pool, and concurrent calls without the library's own locking crash
 * (see platform notes).
 *
 * SoftHSM2 reads the SOFTHSM2_CONF environment variable during C_Initialize, so the variable must
 * be set before the first acquire; the value in force at initialization is remembered so that a
 * later user asking for another configuration is refused instead of silently getting this one.
 */
import { createRequire } from "node:module";
import type * as Pkcs11Types from "pkcs11js";

const require = createRequire(import.meta.url);

/** The pkcs11js module (CommonJS, loaded once). Its constants are read from here. */
export const pkcs11js = require("pkcs11js") as typeof Pkcs11Types;

export type Pkcs11 = Pkcs11Types.PKCS11;
export type Handle = Pkcs11Types.Handle;
export type Template = Pkcs11Types.Template;
export type Mechanism = Pkcs11Types.Mechanism;
export type EcdhParams = Pkcs11Types.ECDH1;
export type OaepParams = Pkcs11Types.RsaOAEP;
export type PssParams = Pkcs11Types.RsaPSS;
export type GcmParams = Pkcs11Types.AesGCM;

/** PKCS#11 3.0 values pkcs11js 2.1.7 does not export. */
export const CKK_EC_EDWARDS = 0x40;
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
export const CKZ_DATA_SPECIFIED = 0x1;
export const CKF_TOKEN_INITIALIZED = 0x400;
export const CKF_USER_PIN_INITIALIZED = 0x8;

interface LoadedLibrary {
  p11: Pkcs11;
  refs: number;
  softhsmConf: string | undefined;
  /** False after a reinitialization whose C_Initialize failed (the next one tries again). */
  initialized: boolean;
}

const loaded = new Map<string, LoadedLibrary>();

/** Loads and initializes `libraryPath` (once per process) and counts one more user. */
export function acquireLibrary(libraryPath: string): Pkcs11 {
  const existing = loaded.get(libraryPath);
  if (existing) {
    if (existing.softhsmConf !== process.env["SOFTHSM2_CONF"]) {
      throw new Error(
        `PKCS#11 library ${libraryPath} is already initialized in this process with SOFTHSM2_CONF=${String(existing.softhsmConf)}; ` +
          "one process uses one SoftHSM2 configuration",
      );
    }
    existing.refs++;
    return existing.p11;
  }
  const p11 = new pkcs11js.PKCS11();
  p11.load(libraryPath);
  try {
    p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (err) {
    try {
      p11.close();
    } catch {
      // the library is unusable either way; the initialization error is the one to report
    }
    throw err;
  }
  loaded.set(libraryPath, { p11, refs: 1, softhsmConf: process.env["SOFTHSM2_CONF"], initialized: true });
  return p11;
}

/** Counts one user less; the last one finalizes and unloads the library. */
export function releaseLibrary(libraryPath: string): void {
  const entry = loaded.get(libraryPath);
  if (!entry) return;
  entry.refs--;
  if (entry.refs > 0) return;
  loaded.delete(libraryPath);
  try {
    if (entry.initialized) entry.p11.C_Finalize();
  } finally {
    entry.p11.close();
  }
}

/**
 * Finalizes and initializes a loaded library again, for a crypto module that lost its device:
 * some libraries only find their token again this way (SoftHSM2 after its token files were
 * unreadable answers CKR_GENERAL_ERROR until then; network HSM clients after a dropped
 * connection). It ends every session of the process on the library, and a call in flight during
 * C_Finalize is undefined behaviour, so it is done only for the library's single user, who must
 * have no call in flight. Returns false when it was not done (another user shares the library);
 * throws when C_Initialize fails (the next call tries again).
 */
export function reinitializeLibrary(libraryPath: string): boolean {
  const entry = loaded.get(libraryPath);
  if (!entry || entry.refs !== 1) return false;
  if (entry.initialized) {
    entry.initialized = false;
    try {
      entry.p11.C_Finalize();
    } catch {
      // a library that lost its device may refuse even this; it is initialized again below
    }
  }
  entry.p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  entry.initialized = true;
  return true;
}

/** The SOFTHSM2_CONF a loaded library was initialized with (undefined if not loaded). */
export function loadedLibraryConf(libraryPath: string): { loaded: boolean; softhsmConf: string | undefined } {
  const entry = loaded.get(libraryPath);
  return { loaded: entry !== undefined, softhsmConf: entry?.softhsmConf };
}

/** True for the errors pkcs11js raises for a CKR_* return value. */
export function isPkcs11Error(err: unknown): err is Pkcs11Types.Pkcs11Error {
  return err instanceof pkcs11js.Pkcs11Error;
}

/** The CKR_* name of a pkcs11js error, or undefined for other errors. */
export function ckrName(err: unknown): string | undefined {
  return isPkcs11Error(err) ? err.message : undefined;
}
