/**
 * Issue 20: the SDK's check of returned signatures (T-2.2.1.8) on worker threads, so that the SCA
 * keeps up with the SAM's stream. A batch is split into contiguous slices, one per worker; each
 * worker checks its slice in order with its own verifier for the transaction's key (created once
 * per transaction) and answers the position of its first failure. The batch's answer is the first
 * failure in list order, exactly what checking one after the other would find.
 *
 * - Fail closed: a worker that stops (crash, termination) or throws rejects every slice it had;
 *   the batch then rejects (nothing of it is accepted), and the next batch starts a new worker.
 * - Workers are started when a batch needs them and unref'd while idle, so an SCA process can
 *   exit without close(); a batch in flight keeps the process alive.
 * - Node only: the browser-safe entry (@inkan/sdk/device) does not import it.
 */
import { statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { createSignatureVerifier, type SignatureVerifierOptions } from "./signature-verifier.js";

/** One slice of a batch, to a worker. */
export interface VerifyRequest {
  id: number;
  /** The transaction's key: the worker creates its verifier once per keyId. */
  keyId: number;
  key: SignatureVerifierOptions;
  hashes: Uint8Array[];
  signatures: Uint8Array[];
}

/** The worker's answer: the position of the slice's first failure (-1: all verify), or an error. */
export type VerifyReply = { id: number; failed: number } | { id: number; error: string };

/** Batches smaller than this are checked on the calling thread (a message costs more than it saves). */
export const verifyParallelMin = 64;

/**
 * The SDK's default number of verifier threads: min(4, os.availableParallelism()).
 *
 * @example
 * console.log(`signatures are checked on ${defaultVerifyThreads()} threads`);
 */
export function defaultVerifyThreads(): number {
  return Math.min(4, availableParallelism());
}

/** Checks a batch in list order; resolves the index of the first signature that does not verify, or -1. */
export interface BatchSignatureCheck {
  check(hashes: readonly Uint8Array[], signatures: readonly Uint8Array[]): Promise<number>;
  /** Stops the worker threads (idle ones never keep the process alive). */
  close(): Promise<void>;
}

let keyIds = 0;

/**
 * The batch form of createSignatureVerifier, as signAll uses it (issue 20): a batch of at least
 * {@link verifyParallelMin} signatures is split across `threads` worker threads (default
 * {@link defaultVerifyThreads}), or across `pool` when given (InkanClient shares one across its
 * transactions); a smaller one, or any with threads 1 and no pool, is checked on this thread.
 *
 * @example
 * const verifier = createBatchSignatureVerifier({ spki, hashAlgorithm: HashAlgorithm.SHA256 });
 * if ((await verifier.check(hashes, signatures)) >= 0) throw new Error("forged");
 */
export function createBatchSignatureVerifier(o: SignatureVerifierOptions & { threads?: number; pool?: VerifyPool }): BatchSignatureCheck {
  const { threads = defaultVerifyThreads(), pool: shared, ...key } = o;
  const inThread = createSignatureVerifier(key); // also refuses an unusable key at once
  const pool = shared ?? (threads > 1 ? new VerifyPool(threads) : undefined);
  const keyId = ++keyIds; // one per verifier: its key, among the others a shared pool holds
  return {
    async check(hashes, signatures) {
      if (pool && hashes.length >= verifyParallelMin) return pool.check(keyId, key, hashes, signatures);
      if (hashes.length !== signatures.length) throw new Error("hashes and signatures differ in number");
      return hashes.findIndex((h, i) => !inThread(h, signatures[i]!));
    },
    close: async () => (shared ? undefined : pool?.close()), // a shared pool is its owner's to close
  };
}

interface Member {
  worker: Worker;
  pending: Map<number, { resolve(failed: number): void; reject(err: Error): void }>;
  exitError: Error | undefined;
}

export interface VerifyPoolHooks {
  /** Test-only: one slice sent to `worker`. */
  onDispatch?(worker: Worker): void;
}

export class VerifyPool {
  readonly #members: (Member | undefined)[];
  #nextId = 1;
  #next = 0;
  #closed = false;

  /** @param size worker threads (at least 1). */
  constructor(readonly size: number, readonly testHooks: VerifyPoolHooks = {}) {
    this.#members = Array.from({ length: Math.max(1, Math.floor(size)) }, () => undefined);
  }

  /**
   * Checks signatures[i] against hashes[i] for every i; resolves the first i (in order) whose
   * signature does not verify, or -1. Rejects when a worker fails: the batch is then unchecked.
   *
   * @example
   * const failed = await pool.check(txKeyId, { spki, hashAlgorithm }, hashes, signatures);
   */
  async check(keyId: number, key: SignatureVerifierOptions, hashes: readonly Uint8Array[], signatures: readonly Uint8Array[]): Promise<number> {
    if (this.#closed) throw new Error("the signature verifier pool is closed");
    if (hashes.length !== signatures.length) throw new Error("hashes and signatures differ in number");
    const n = hashes.length;
    if (n === 0) return -1;
    const slices = Math.min(this.#members.length, n);
    const per = Math.ceil(n / slices);
    const k = { ...key, spki: compact(key.spki) };
    const answers: { offset: number; answer: Promise<number> }[] = [];
    const first = this.#next;
    this.#next = (this.#next + slices) % this.#members.length;
    for (let s = 0, offset = 0; offset < n; s++, offset += per) {
      const member = this.#member((first + s) % this.#members.length);
      const end = Math.min(n, offset + per);
      answers.push({ offset, answer: this.#send(member, { keyId, key: k, hashes: hashes.slice(offset, end).map(compact), signatures: signatures.slice(offset, end).map(compact) }) });
    }
    const settled = await Promise.allSettled(answers.map((a) => a.answer));
    // In list order: the first slice that failed to be checked, or that holds a failure, decides.
    for (let s = 0; s < settled.length; s++) {
      const r = settled[s]!;
      if (r.status === "rejected") throw r.reason;
      if (r.value >= 0) return answers[s]!.offset + r.value;
    }
    return -1;
  }

  /** Stops every worker (slices in flight reject). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#members.map((m) => m?.worker.terminate()));
  }

  #send(member: Member, request: Omit<VerifyRequest, "id">): Promise<number> {
    const id = this.#nextId++;
    return new Promise<number>((resolve, reject) => {
      member.pending.set(id, { resolve, reject });
      if (member.pending.size === 1) member.worker.ref(); // a batch in flight keeps the process alive
      member.worker.postMessage({ id, ...request } satisfies VerifyRequest);
      this.testHooks.onDispatch?.(member.worker);
    });
  }

  #member(slot: number): Member {
    const existing = this.#members[slot];
    if (existing) return existing;
    const worker = spawn();
    worker.unref(); // an idle worker does not keep the process alive
    const member: Member = { worker, pending: new Map(), exitError: undefined };
    this.#members[slot] = member;
    worker.on("message", (reply: VerifyReply) => {
      const p = member.pending.get(reply.id);
      if (!p) return;
      member.pending.delete(reply.id);
      if (member.pending.size === 0) worker.unref();
      if ("error" in reply) p.reject(new Error(`signature check failed in a worker thread: ${reply.error}`));
      else p.resolve(reply.failed);
    });
    worker.on("error", (err) => (member.exitError = err));
    worker.on("messageerror", (err) => (member.exitError = err));
    worker.on("exit", (code) => {
      if (this.#members[slot] === member) this.#members[slot] = undefined; // the next batch starts a new one
      // Fail closed: none of its answers arrived.
      const failure = new Error(`a signature verifier worker thread stopped (exit code ${code})`, { cause: member.exitError });
      for (const p of member.pending.values()) p.reject(failure);
      member.pending.clear();
    });
    return member;
  }
}

/**
 * The worker's entry: the compiled verify-worker.js beside this file. When this file runs from its
 * TypeScript source (this repository's tests), the SDK's build if it is at least as new as the
 * sources the worker runs, otherwise the .ts entry through the repository's TypeScript loader for
 * worker threads (server/src/store/testing/ts-worker.mjs, test support).
 */
function spawn(): Worker {
  // No inherited execArgv: flags for the process's entry (`--input-type=module -e ...`) refuse a worker.
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL("./verify-worker.js", import.meta.url), { execArgv: [] });
  const fresh = ["verify-worker", "signature-verifier"].every((name) => {
    try {
      return statSync(new URL(`../../dist/sca/${name}.js`, import.meta.url)).mtimeMs >= statSync(new URL(`./${name}.ts`, import.meta.url)).mtimeMs;
    } catch {
      return false; // not built
    }
  });
  if (fresh) return new Worker(new URL("../../dist/sca/verify-worker.js", import.meta.url), { execArgv: [] });
  const entry = new URL("./verify-worker.ts", import.meta.url).href;
  return new Worker(new URL("../../../server/src/store/testing/ts-worker.mjs", import.meta.url), { workerData: { entry }, execArgv: [] });
}

/** A structured clone copies a view's whole ArrayBuffer: views into a larger buffer are copied to their own first. */
function compact(value: Uint8Array): Uint8Array {
  return value.byteOffset === 0 && value.byteLength === value.buffer.byteLength ? value : new Uint8Array(value);
}
