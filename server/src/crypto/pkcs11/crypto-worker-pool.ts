/**
 * Issue 20: the PKCS#11 calls that can block run on worker threads, not on the event loop.
 * pkcs11js runs C_SignInit, C_VerifyInit, C_DecryptInit ... synchronously, and SoftHSM2 decrypts
 * the key inside them: on the main thread that stalled every other call (57 % of a SignStream's
 * event loop inside pkcs11js). Here each worker does Init + operation synchronously in a session
 * lent to it for that one job (rules: WORKER-THREADS.md).
 *
 * - Up to `size` workers, started when work needs them; a job waits in a queue when all are busy.
 *   One batch per worker at a time, its jobs run one after the other, and one session per worker:
 *   no session ever serves two operations in flight (platform notes).
 * - Batches (one message each way, not one per job): the jobs queued in one turn of the event loop
 *   are dealt out at its end, shared evenly between the idle workers and those that may still be
 *   started, at most {@link maxBatch} to a message; a worker that answers takes up to that many
 *   waiting jobs at once. Each job keeps its own answer: a failed job fails alone (the worker stops
 *   at it; the jobs after it run again in a new session), a worker that dies fails every job of
 *   its batch (their answers never arrived).
 * - Sessions are opened, logged in and closed by the main thread (handles are process-wide), so the
 *   session of a worker that died is closed all the same. A failed job's session is replaced: it
 *   may be left with an active operation.
 * - Fail closed: a worker that stops (crash, termination) rejects its batch's jobs with
 *   CRYPTO_MODULE_FAILURE and is replaced by the next job; a CKR_* error keeps its name and code
 *   (as a pkcs11js Pkcs11Error), so the supervisor judges it as it judges the main thread's.
 * - close() waits for the jobs in flight (and, unless discarding, the queued ones), then stops the
 *   workers and closes their sessions: nothing of this pool touches the library afterwards, so the
 *   module supervisor may finalize and initialize it again.
 */
import { statSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { InkanError } from "../../errors.js";
import { maxBatch, type WorkerData, type WorkerFailure, type WorkerJob, type WorkerReply, type WorkerRequest } from "./crypto-worker-protocol.js";
import { hasCkr } from "./errors.js";
import { pkcs11js, type Handle, type Pkcs11 } from "./library.js";

export interface CryptoWorkerPoolOptions {
  p11: Pkcs11;
  library: string;
  slot: Handle;
  /** The user PIN, to log a session in if the token is not logged in already; never logged. */
  pin: string;
  /** Most worker threads (and so sessions, and operations in flight) at once. */
  size: number;
}

/** Test-only observation of the pool (issue 20 tests): which session and thread served which job. */
export interface CryptoWorkerPoolHooks {
  /** One batch (`jobs` of them, in one message) lent `session` and sent to `worker`. */
  onDispatch?(event: { worker: Worker; session: string; jobs: number }): void;
  /** One job answered (or failed by its worker's end). */
  onSettle?(event: { session: string; threadId: number | undefined; ok: boolean }): void;
}

interface Job {
  job: WorkerJob;
  resolve(value: Uint8Array | boolean): void;
  reject(err: unknown): void;
}

interface Member {
  worker: Worker;
  session: Handle | undefined;
  /** The batch in flight (the message's id and its jobs), or undefined when idle. */
  batch: { id: number; jobs: Job[] } | undefined;
  /** Set once the worker reported it started: a worker that dies before could not start. */
  ready: boolean;
  exitError: unknown;
}

export class CryptoWorkerPool {
  readonly #o: CryptoWorkerPoolOptions;
  readonly #members = new Set<Member>();
  readonly #queue: Job[] = [];
  #nextId = 1;
  #closing: Promise<void> | undefined;
  #onIdle: (() => void) | undefined;
  /** A deal of the queue is due at the end of this turn (setImmediate). */
  #dealing = false;
  /** Set by close({ discard }): jobs not yet in a worker fail instead of running. */
  #discarding: InkanError | undefined;
  readonly #messages = { sent: 0, received: 0 };
  readonly #threadIds = new Set<number>();
  /** Test-only hooks; undefined in production. */
  testHooks: CryptoWorkerPoolHooks | undefined;

  constructor(options: CryptoWorkerPoolOptions) {
    if (!Number.isSafeInteger(options.size) || options.size < 1) {
      throw new InkanError("INVALID_REQUEST", "the crypto worker pool size must be a positive integer");
    }
    this.#o = options;
  }

  get size(): number {
    return this.#o.size;
  }

  /**
   * Issue 23 style figures: workers running, busy with a batch, and jobs waiting for one; the
   * batch messages sent to the workers and their answers received (the workers' start-up
   * messages not counted), since the pool started.
   */
  get stats(): { workers: number; busy: number; waiting: number; messages: { sent: number; received: number } } {
    let busy = 0;
    for (const m of this.#members) if (m.batch) busy++;
    return { workers: this.#members.size, busy, waiting: this.#queue.length, messages: { ...this.#messages } };
  }

  /** The thread ids of the workers that answered a job (tests: operations ran off the main thread). */
  get threadIds(): ReadonlySet<number> {
    return this.#threadIds;
  }

  /** Runs `job` on a worker; rejects with the module's error (a pkcs11js Pkcs11Error) or CRYPTO_MODULE_FAILURE. */
  run(job: WorkerJob): Promise<Uint8Array | boolean> {
    if (this.#closing) return Promise.reject(new InkanError("CRYPTO_MODULE_FAILURE", "crypto module is closed"));
    return new Promise((resolve, reject) => {
      this.#queue.push({ job, resolve, reject });
      // Dealt at the end of this turn, with the other jobs queued in it (one message per batch).
      if (!this.#dealing) {
        this.#dealing = true;
        setImmediate(() => {
          this.#dealing = false;
          this.#pump();
        });
      }
    });
  }

  /**
   * Stops the pool: no new jobs; queued jobs run (or, with `discard`, after a module loss, fail
   * with CRYPTO_MODULE_FAILURE); resolves once the jobs in flight answered, every worker stopped
   * and every session of the pool was closed (errors ignored: after a loss they are gone already).
   */
  close(options: { discard?: boolean } = {}): Promise<void> {
    if (options.discard) {
      this.#discarding ??= new InkanError("CRYPTO_MODULE_FAILURE", "the crypto module is unavailable");
      for (const j of this.#queue.splice(0)) j.reject(this.#discarding);
    }
    this.#closing ??= (async () => {
      while (this.#queue.length > 0 || [...this.#members].some((m) => m.batch)) {
        await new Promise<void>((resolve) => (this.#onIdle = resolve));
      }
      await Promise.all([...this.#members].map((m) => this.#stop(m)));
    })();
    return this.#closing;
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      let idle = 0;
      let member: Member | undefined;
      for (const m of this.#members) {
        if (m.batch) continue;
        idle++;
        member ??= m;
      }
      const workers = idle + this.#o.size - this.#members.size; // idle ones and those that may start
      if (workers <= 0) return; // all busy: the jobs wait for one
      member ??= this.#spawn();
      if (!member.session) {
        try {
          member.session = this.#openSession();
        } catch (err) {
          (this.#queue.shift() as Job).reject(err); // the module's own error: the supervisor judges it
          continue;
        }
      }
      // An even share of the waiting jobs for each worker that can take some now, at most maxBatch.
      const share = Math.min(maxBatch, Math.ceil(this.#queue.length / workers));
      const jobs: Job[] = [];
      while (jobs.length < share && this.#queue.length > 0) {
        const job = this.#queue.shift() as Job;
        jobs.push(job);
        if (job.job.op === "hold") break; // tests: nothing waits behind a held worker
      }
      this.#dispatch(member, member.session, jobs);
    }
    this.#idleCheck();
  }

  #dispatch(member: Member, session: Handle, jobs: Job[]): void {
    const id = this.#nextId++;
    member.batch = { id, jobs };
    member.worker.ref(); // a batch in flight keeps the process alive (a CLI command awaits it)
    const request: WorkerRequest = { id, session: compact(session), jobs: jobs.map((j) => compactJob(j.job)) };
    member.worker.postMessage(request);
    this.#messages.sent++;
    this.testHooks?.onDispatch?.({ worker: member.worker, session: session.toString("hex"), jobs: jobs.length });
  }

  #spawn(): Member {
    const workerData: WorkerData = { library: this.#o.library, ...(sourceEntry ? { entry: sourceEntry.href } : {}) };
    // No inherited execArgv: flags for the process's entry (`--input-type=module -e ...`) refuse a worker.
    const worker = new Worker(workerUrl, { workerData, execArgv: [] });
    worker.unref(); // an idle worker does not keep the process alive
    const member: Member = { worker, session: undefined, batch: undefined, ready: false, exitError: undefined };
    this.#members.add(member);
    worker.on("message", (reply: WorkerReply) => this.#answer(member, reply));
    worker.on("error", (err) => (member.exitError = err));
    worker.on("exit", (code) => this.#exited(member, code));
    return member;
  }

  #answer(member: Member, reply: WorkerReply): void {
    if ("ready" in reply) {
      member.ready = true;
      return;
    }
    const batch = member.batch;
    if (!batch || batch.id !== reply.id) return; // cannot happen: one batch per worker
    this.#messages.received++;
    member.batch = undefined;
    member.worker.unref();
    this.#threadIds.add(reply.threadId);
    const session = member.session?.toString("hex") ?? "";
    // The worker stopped at a failure, if any: the session may be left with an active operation
    // (CKR_ARGUMENTS_BAD, for one, does not end it), so it is closed, and the jobs after the
    // failure (never run) go back to the front of the queue, for a new session.
    const failed = reply.results.some((r) => !r.ok);
    if (failed) this.#closeSession(member);
    const unrun = batch.jobs.slice(reply.results.length);
    if (failed && this.#discarding) for (const j of unrun) j.reject(this.#discarding);
    else if (failed) this.#queue.unshift(...unrun);
    else for (const j of unrun) j.reject(new InkanError("CRYPTO_MODULE_FAILURE", "a crypto worker did not answer a job")); // cannot happen
    reply.results.forEach((result, i) => {
      const job = batch.jobs[i] as Job;
      if (result.ok) {
        const value = result.value;
        job.resolve(value instanceof Uint8Array ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : value);
      } else {
        job.reject(revive(result.error));
      }
      this.testHooks?.onSettle?.({ session, threadId: reply.threadId, ok: result.ok });
    });
    this.#pump();
  }

  #exited(member: Member, code: number): void {
    this.#members.delete(member);
    const session = member.session?.toString("hex") ?? "";
    this.#closeSession(member); // after 'exit' the thread is gone: no call of it is in flight
    const batch = member.batch;
    member.batch = undefined;
    if (batch) {
      // Fail closed: none of its answers arrived (the module may have done some of the jobs).
      const failure = new InkanError("CRYPTO_MODULE_FAILURE", "a crypto worker thread stopped during the operation", {
        cause: member.exitError ?? new Error(`crypto worker exited with code ${code}`),
      });
      for (const job of batch.jobs) {
        job.reject(failure);
        this.testHooks?.onSettle?.({ session, threadId: undefined, ok: false });
      }
    }
    if (!member.ready && !this.#closing) {
      // It never started (the library did not load, say): the queued jobs would only start more
      // workers that fail the same way, so they fail now; the next call tries again.
      const failure = new InkanError("CRYPTO_MODULE_FAILURE", "a crypto worker thread could not start", { cause: member.exitError });
      for (const j of this.#queue.splice(0)) j.reject(failure);
    }
    this.#pump();
  }

  async #stop(member: Member): Promise<void> {
    await member.worker.terminate(); // idle: no batch of it is in flight; 'exit' closes its session
    this.#members.delete(member);
    this.#closeSession(member);
  }

  #idleCheck(): void {
    if (!this.#onIdle || this.#queue.length > 0) return;
    for (const m of this.#members) if (m.batch) return;
    const resolve = this.#onIdle;
    this.#onIdle = undefined;
    resolve();
  }

  #openSession(): Handle {
    const { p11, slot, pin } = this.#o;
    const session = p11.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    try {
      p11.C_Login(session, pkcs11js.CKU_USER, pin);
    } catch (err) {
      if (!hasCkr(err, "CKR_USER_ALREADY_LOGGED_IN")) {
        try {
          p11.C_CloseSession(session);
        } catch {
          // the login error is the one to report
        }
        throw err;
      }
    }
    return session;
  }

  #closeSession(member: Member): void {
    const session = member.session;
    member.session = undefined;
    if (!session) return;
    try {
      this.#o.p11.C_CloseSession(session);
    } catch {
      // a session that cannot be closed is gone already
    }
  }
}

/**
 * The worker's entry: the compiled crypto-worker.js beside this file. When this file runs from its
 * TypeScript source (vitest), the compiled entry of the build if it is at least as new as the
 * source (it imports nothing of this repository at run time), otherwise the .ts entry through the
 * repository's TypeScript loader for worker threads (server/src/store/testing/ts-worker.mjs, test
 * support; it loads the compiler in every worker, which takes about a second).
 */
const { workerUrl, sourceEntry } = ((): { workerUrl: URL; sourceEntry: URL | undefined } => {
  if (!import.meta.url.endsWith(".ts")) return { workerUrl: new URL("./crypto-worker.js", import.meta.url), sourceEntry: undefined };
  const source = new URL("./crypto-worker.ts", import.meta.url);
  const built = new URL("../../../dist/crypto/pkcs11/crypto-worker.js", import.meta.url);
  try {
    if (statSync(built).mtimeMs >= statSync(source).mtimeMs) return { workerUrl: built, sourceEntry: undefined };
  } catch {
    // not built: the source it is
  }
  return { workerUrl: new URL("../../store/testing/ts-worker.mjs", import.meta.url), sourceEntry: source };
})();

/**
 * A structured clone copies a view's whole ArrayBuffer: a 32-byte hash in Node's 8 KiB Buffer
 * pool would cross as 8 KiB. Views into a larger buffer are copied to their own first.
 */
export function compact(value: Uint8Array): Uint8Array {
  return value.byteOffset === 0 && value.byteLength === value.buffer.byteLength ? value : new Uint8Array(value);
}

function compactJob(job: WorkerJob): WorkerJob {
  if (job.op === "random" || job.op === "hold" || job.op === "readData") return job;
  if (job.op === "writeData") return { ...job, value: compact(job.value) };
  const parameter = job.mechanism.parameter;
  const mechanism =
    parameter !== undefined && typeof parameter === "object" && !(parameter instanceof Uint8Array)
      ? { ...job.mechanism, parameter: Object.fromEntries(Object.entries(parameter).map(([k, v]) => [k, v instanceof Uint8Array ? compact(v) : v])) as typeof parameter }
      : job.mechanism;
  const key = compact(job.key);
  if (job.op === "derive") return { ...job, mechanism, key };
  if (job.op === "verify") return { ...job, mechanism, key, data: compact(job.data), signature: compact(job.signature) };
  return { ...job, mechanism, key, data: compact(job.data) };
}

/** A worker's failure as the main thread would have seen it: a CKR_* error stays a Pkcs11Error. */
function revive(failure: WorkerFailure): Error {
  if (failure.pkcs11) return new pkcs11js.Pkcs11Error(failure.message, failure.code, failure.method);
  return new Error(failure.message);
}
