/**
 * Messages between the PKCS#11 adapter and its worker threads (issue 20, see crypto-worker.ts).
 * Small on purpose: a key handle, a mechanism and a hash go in, a signature comes out. Buffers
 * cross the thread boundary as Uint8Array (structured clone) and are made Buffers again there.
 */
import type { Mechanism, Template } from "./library.js";

/** One module operation, done as Init + operation in the worker's own session. */
export type WorkerJob =
  /** C_SignInit + C_Sign (C_SignFinal for empty data: pkcs11js passes an empty buffer as NULL). */
  | { op: "sign"; mechanism: Mechanism; key: Uint8Array; data: Uint8Array; outLength: number }
  /** C_VerifyInit + C_Verify; CKR_SIGNATURE_INVALID / CKR_SIGNATURE_LEN_RANGE give false. */
  | { op: "verify"; mechanism: Mechanism; key: Uint8Array; data: Uint8Array; signature: Uint8Array }
  /** C_EncryptInit + C_Encrypt (C_EncryptFinal for empty data). */
  | { op: "encrypt"; mechanism: Mechanism; key: Uint8Array; data: Uint8Array; outLength: number }
  /** C_DecryptInit + C_Decrypt. */
  | { op: "decrypt"; mechanism: Mechanism; key: Uint8Array; data: Uint8Array; outLength: number }
  /** C_DeriveKey of a session object, its CKA_VALUE read, the object destroyed. */
  | { op: "derive"; mechanism: Mechanism; key: Uint8Array; template: Template }
  /** C_GenerateRandom. */
  | { op: "random"; length: number }
  /**
   * A data object's next version (R-3.2.2.4, the audit high-water mark): the stored versions of
   * `label` found (class CKO_DATA, `application`), a token object created holding the next
   * sequence number (8 bytes, big-endian) and `value`, then the older versions destroyed (one
   * already gone is fine: another node's write). Answers false, creating nothing, when a stored
   * version is malformed (shorter than its sequence number).
   */
  | { op: "writeData"; application: string; label: string; value: Uint8Array }
  /**
   * The newest stored version of a data object (its 8-byte sequence number, then its value), as
   * written by "writeData": the versions of `label` found (class CKO_DATA, `application`), the
   * highest sequence number taken, ties broken by the greater value so that every reader takes
   * the same one. Answers an empty array when there is none, false when a version is malformed.
   */
  | { op: "readData"; application: string; label: string }
  /**
   * Tests only (no module call): sets `signal[1]` to 1, then blocks the worker until `signal[0]`
   * is not 0, so that a test can stop a worker while a job of it is certainly in flight (two
   * Int32 values). Answers true. The pool ends a batch with it: no job waits behind it in a worker.
   */
  | { op: "hold"; signal: SharedArrayBuffer };

export interface WorkerData {
  /** Path of the PKCS#11 library the main thread loaded and initialized. */
  library: string;
  /** Source runs only (vitest): the .ts entry ts-worker.mjs imports. */
  entry?: string;
}

/** Most jobs in one message: a batch's answers cross together, so a long batch delays its first answer. */
export const maxBatch = 32;

/**
 * A batch of jobs and the session to run them in, one after the other (issue 20: one message each
 * way per batch, not per job). The session is opened (and closed) by the main thread and lent to
 * one worker for one batch at a time: session handles are process-wide, and the main thread can
 * close the session of a worker that died.
 */
export interface WorkerRequest {
  id: number;
  session: Uint8Array;
  jobs: WorkerJob[];
}

/** A failure in the worker: a CKR_* code keeps its name, code and method, so it reads like the main thread's. */
export interface WorkerFailure {
  pkcs11: boolean;
  message: string;
  code?: number;
  method?: string;
}

/** The answer of one job of a batch. */
export type WorkerResult = { ok: true; value: Uint8Array | boolean } | { ok: false; error: WorkerFailure };

export type WorkerReply =
  /** Sent once, when the library is loaded and the main thread's initialization found. */
  | { ready: true; threadId: number }
  /**
   * The answers of a batch, in its order. The worker stops at the first failure (its session may
   * be left with an operation active): the jobs after it are not run, and have no result here.
   */
  | { id: number; results: WorkerResult[]; threadId: number };
