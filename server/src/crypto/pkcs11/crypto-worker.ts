/**
 * Worker-thread entry of the PKCS#11 adapter (issue 20): runs the module calls that can block
 * (C_*Init and the operation, synchronously: the worker is the thread) so that the event loop does
 * not. Rules from the spike (WORKER-THREADS.md):
 * 1. The main thread initializes and finalizes the library. Here C_Initialize must answer
 *    CKR_CRYPTOKI_ALREADY_INITIALIZED (the process-wide initialization is reused); this thread
 *    never calls C_Finalize, which would end every session of the process.
 * 2. The session of each batch is lent by the main thread, to this worker alone, for that batch
 *    alone; its jobs run one after the other, and the batch is answered in one message.
 * 3. Always `new PKCS11()` (pkcs11js keeps one process-global constructor reference).
 * No state but the loaded library: a failed job's session is replaced by the main thread.
 */
import { createRequire } from "node:module";
import { parentPort, threadId, workerData } from "node:worker_threads";
import type * as Pkcs11Types from "pkcs11js";
import type { WorkerData, WorkerFailure, WorkerJob, WorkerReply, WorkerRequest, WorkerResult } from "./crypto-worker-protocol.js";

const require = createRequire(import.meta.url);
const pkcs11js = require("pkcs11js") as typeof Pkcs11Types;

const port = parentPort;
if (!port) throw new Error("crypto-worker runs in a worker thread");
const { library } = workerData as WorkerData;

const p11 = new pkcs11js.PKCS11();
p11.load(library);
try {
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  // This thread initialized the library: the main thread had not (or had finalized it). Undone at
  // once, and the worker stops: calls must run under the main thread's initialization.
  p11.C_Finalize();
  throw new Error("the PKCS#11 library is not initialized by the main thread");
} catch (err) {
  if (!(err instanceof pkcs11js.Pkcs11Error) || err.message !== "CKR_CRYPTOKI_ALREADY_INITIALIZED") throw err;
}

port.postMessage({ ready: true, threadId } satisfies WorkerReply);

port.on("message", (request: WorkerRequest) => {
  const session = buffer(request.session);
  const results: WorkerResult[] = [];
  for (const job of request.jobs) {
    try {
      const value = run(session, job);
      // A structured clone copies a view's whole ArrayBuffer: a result inside a larger one is copied first.
      const own = typeof value === "boolean" || (value.byteOffset === 0 && value.byteLength === value.buffer.byteLength) ? value : new Uint8Array(value);
      results.push({ ok: true, value: own });
    } catch (err) {
      // The session may be left with an active operation: the rest of the batch is not run in it
      // (the main thread runs those jobs again in a new session).
      results.push({ ok: false, error: failure(err) });
      break;
    }
  }
  port.postMessage({ id: request.id, results, threadId } satisfies WorkerReply);
});

function run(s: Pkcs11Types.Handle, job: WorkerJob): Uint8Array | boolean {
  switch (job.op) {
    case "sign": {
      p11.C_SignInit(s, mechanism(job.mechanism), buffer(job.key));
      const out = Buffer.alloc(job.outLength);
      return job.data.length === 0 ? p11.C_SignFinal(s, out) : p11.C_Sign(s, buffer(job.data), out);
    }
    case "verify": {
      p11.C_VerifyInit(s, mechanism(job.mechanism), buffer(job.key));
      try {
        return p11.C_Verify(s, buffer(job.data), buffer(job.signature));
      } catch (err) {
        // C_Verify ends the operation either way; a wrong signature is an answer, not a failure.
        if (err instanceof pkcs11js.Pkcs11Error && (err.message === "CKR_SIGNATURE_INVALID" || err.message === "CKR_SIGNATURE_LEN_RANGE")) return false;
        throw err;
      }
    }
    case "encrypt": {
      p11.C_EncryptInit(s, mechanism(job.mechanism), buffer(job.key));
      const out = Buffer.alloc(job.outLength);
      return job.data.length === 0 ? p11.C_EncryptFinal(s, out) : p11.C_Encrypt(s, buffer(job.data), out);
    }
    case "decrypt":
      p11.C_DecryptInit(s, mechanism(job.mechanism), buffer(job.key));
      return p11.C_Decrypt(s, buffer(job.data), Buffer.alloc(job.outLength));
    case "derive": {
      const secret = p11.C_DeriveKey(s, mechanism(job.mechanism), buffer(job.key), template(job.template));
      try {
        const value = p11.C_GetAttributeValue(s, secret, [{ type: pkcs11js.CKA_VALUE }])[0]?.value;
        if (!Buffer.isBuffer(value)) throw new Error("attribute missing in the module's answer");
        return value;
      } finally {
        p11.C_DestroyObject(s, secret);
      }
    }
    case "random":
      return p11.C_GenerateRandom(s, Buffer.alloc(job.length));
    case "writeData":
      return writeData(s, job.application, job.label, buffer(job.value));
    case "readData":
      return readData(s, job.application, job.label);
    case "hold": {
      // A JavaScript loop, not Atomics.wait: worker.terminate() interrupts the one, not the other.
      const signal = new Int32Array(job.signal);
      Atomics.store(signal, 1, 1); // started
      while (Atomics.load(signal, 0) === 0);
      return true;
    }
  }
}

/**
 * The one reader and writer of the data-object layout (an 8-byte big-endian sequence number, then
 * the value): the stored versions of `label`, or undefined when one is malformed (shorter than its
 * sequence number). A version removed by another node's write meanwhile is skipped.
 */
function storedVersions(s: Pkcs11Types.Handle, application: string, label: string): { handle: Pkcs11Types.Handle; stored: Buffer; sequence: bigint }[] | undefined {
  const p = pkcs11js;
  p11.C_FindObjectsInit(s, [{ type: p.CKA_CLASS, value: p.CKO_DATA }, { type: p.CKA_APPLICATION, value: application }, { type: p.CKA_LABEL, value: label }]);
  let found: Pkcs11Types.Handle[];
  try {
    found = p11.C_FindObjects(s, 16);
  } finally {
    p11.C_FindObjectsFinal(s);
  }
  const versions: { handle: Pkcs11Types.Handle; stored: Buffer; sequence: bigint }[] = [];
  for (const handle of found) {
    let stored: Buffer | undefined;
    try {
      stored = p11.C_GetAttributeValue(s, handle, [{ type: p.CKA_VALUE }])[0]?.value as Buffer | undefined;
    } catch (err) {
      if (gone(err)) continue;
      throw err;
    }
    if (!Buffer.isBuffer(stored)) throw new Error("attribute missing in the module's answer");
    if (stored.length < 8) return undefined;
    versions.push({ handle, stored, sequence: stored.readBigUInt64BE(0) });
  }
  return versions;
}

/** See the "readData" job (crypto-worker-protocol.ts); the adapter's readDataObject strips the sequence number. */
function readData(s: Pkcs11Types.Handle, application: string, label: string): Uint8Array | boolean {
  const versions = storedVersions(s, application, label);
  if (!versions) return false;
  // Ties (two processes wrote the same next version) are broken by value, so every reader takes the same one.
  let newest: { stored: Buffer; sequence: bigint } | undefined;
  for (const v of versions) {
    if (!newest || v.sequence > newest.sequence || (v.sequence === newest.sequence && Buffer.compare(v.stored, newest.stored) > 0)) newest = v;
  }
  return newest?.stored ?? new Uint8Array(0); // a view is copied to its own buffer by the reply, as every result
}

/** See the "writeData" job (crypto-worker-protocol.ts); the reader is the "readData" job. */
function writeData(s: Pkcs11Types.Handle, application: string, label: string, value: Buffer): boolean {
  const p = pkcs11js;
  const versions = storedVersions(s, application, label);
  if (!versions) return false;
  const newest = versions.reduce((max, v) => (v.sequence > max ? v.sequence : max), 0n);
  // R-3.2.2.4: never lost or half-written: the next version first, then the older ones removed
  // (SoftHSM2 keeps a data object's CKA_VALUE read-only); a crash between leaves both, readers take the newest.
  const stored = Buffer.alloc(8 + value.length);
  stored.writeBigUInt64BE(newest + 1n, 0);
  stored.set(value, 8);
  p11.C_CreateObject(s, [
    { type: p.CKA_CLASS, value: p.CKO_DATA },
    { type: p.CKA_TOKEN, value: true },
    { type: p.CKA_PRIVATE, value: true },
    { type: p.CKA_APPLICATION, value: application },
    { type: p.CKA_LABEL, value: label },
    { type: p.CKA_VALUE, value: stored },
  ]);
  for (const { handle } of versions) {
    try {
      p11.C_DestroyObject(s, handle);
    } catch (err) {
      if (!gone(err)) throw err; // already removed by another node: fine
    }
  }
  return true;
}

function gone(err: unknown): boolean {
  return err instanceof pkcs11js.Pkcs11Error && err.message === "CKR_OBJECT_HANDLE_INVALID";
}

/** A Uint8Array from the structured clone as the Buffer pkcs11js wants (no copy). */
function buffer(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** A mechanism whose parameter (or the Buffers inside it: IV, AAD, an ECDH public point) crossed as Uint8Array. */
function mechanism(m: Pkcs11Types.Mechanism): Pkcs11Types.Mechanism {
  const parameter = m.parameter;
  if (parameter instanceof Uint8Array) return { ...m, parameter: buffer(parameter) };
  if (parameter === undefined || typeof parameter !== "object") return m;
  const revived = Object.fromEntries(Object.entries(parameter).map(([k, v]) => [k, v instanceof Uint8Array ? buffer(v) : v]));
  return { ...m, parameter: revived as unknown as Pkcs11Types.IParams };
}

function template(t: Pkcs11Types.Template): Pkcs11Types.Template {
  return t.map((a) => (a.value instanceof Uint8Array ? { ...a, value: buffer(a.value) } : a));
}

function failure(err: unknown): WorkerFailure {
  if (err instanceof pkcs11js.Pkcs11Error) return { pkcs11: true, message: err.message, code: err.code, method: err.method };
  return { pkcs11: false, message: err instanceof Error ? err.message : "unexpected failure" };
}
