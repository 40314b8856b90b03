/**
 * Issue 20: WAL checkpoints off the event loop. The store's connection runs with
 * `wal_autocheckpoint = 0`, so no COMMIT copies the WAL into the database file (and syncs both)
 * on the event loop any more; instead this checkpointer looks at the -wal file's size every
 * `intervalMs` (one fstat on the event loop) and, once it reached `passiveAtBytes`, has a worker
 * thread with its own connection run `PRAGMA wal_checkpoint(PASSIVE)`: it copies what it can
 * without waiting for readers or writers, and writers restart the WAL from its start once all of
 * it was copied. `TRUNCATE` (the WAL file cut to zero) when it reached `truncateAtBytes` or nothing
 * was committed since the last look (idle), and only right after a PASSIVE one copied the whole
 * WAL: TRUNCATE holds the write lock while it copies, so it must find (almost) nothing left to
 * copy, or the event loop's writes would wait for it. The worker's connection never waits for a
 * lock (`busy_timeout = 0`): a checkpoint that cannot run now is tried at the next look.
 *
 * Durability is unchanged: a checkpoint syncs the WAL before copying and the database file after
 * (the worker's connection runs `synchronous = FULL`), and it never copies a frame of a commit
 * that is not complete in the WAL. A checkpoint that FAILS (an I/O error, not a busy lock)
 * poisons the store, as a failed WAL sync does (wal-sync.ts): the database file may be half
 * written and the page cache may not say what the disk holds. A worker that dies poisons it too.
 * The worker is started only when a checkpoint is first due (a small store never starts one).
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";

export interface CheckpointerOptions {
  /** The database file. */
  file: string;
  /** The -wal file's size now. */
  walBytes: () => number;
  /** A number that changes whenever anything was committed (idle: unchanged since the last look). */
  activity: () => number;
  /** Called once when a checkpoint failed or the worker died: the store is poisoned. */
  onFailure: (error: Error) => void;
  /** How often the WAL's size is looked at, in ms (default 100). */
  intervalMs?: number;
  /** The WAL size from which a PASSIVE checkpoint runs (default 4 MiB). */
  passiveAtBytes?: number;
  /** The WAL size from which a TRUNCATE checkpoint runs (default 64 MiB). */
  truncateAtBytes?: number;
  /** Tests only: the worker's checkpoint fails with an injected I/O error. */
  injectFailure?: boolean;
}

/** The worker: one connection, one checkpoint per message, synchronously on its own thread. */
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true, timeout: 0 });
db.pragma("busy_timeout = 0");
db.pragma("synchronous = FULL");
parentPort.on("message", (m) => {
  if (m.stop) {
    db.close();
    parentPort.close();
    return;
  }
  try {
    if (workerData.injectFailure) throw Object.assign(new Error("disk I/O error (injected)"), { code: "SQLITE_IOERR" });
    const r = db.pragma("wal_checkpoint(" + (m.mode === "TRUNCATE" ? "TRUNCATE" : "PASSIVE") + ")")[0];
    parentPort.postMessage({ ok: true, busy: r.busy === 1, log: r.log, checkpointed: r.checkpointed });
  } catch (e) {
    const code = e && typeof e.code === "string" ? e.code : undefined;
    if (code && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"))) parentPort.postMessage({ ok: true, busy: true });
    else parentPort.postMessage({ ok: false, message: String((e && e.message) || e), code });
  }
});
`;

type Reply = { ok: true; busy: boolean; log?: number; checkpointed?: number } | { ok: false; message: string; code?: string };

export class Checkpointer {
  readonly #o: Required<Omit<CheckpointerOptions, "injectFailure">> & { injectFailure: boolean };
  readonly #timer: NodeJS.Timeout;
  #worker: Worker | undefined;
  #exited: Promise<void> | undefined;
  #inFlight = false;
  #pendingMode: "PASSIVE" | "TRUNCATE" = "PASSIVE";
  #stopped = false;
  #lastActivity: number | undefined;
  /** The last checkpoint was a PASSIVE one that copied the whole WAL. */
  #copiedAll = false;
  /** Checkpoints run (by mode) and those that could not complete now, for tests and diagnostics. */
  readonly stats = { passive: 0, truncate: 0, busy: 0 };

  constructor(options: CheckpointerOptions) {
    this.#o = { intervalMs: 100, passiveAtBytes: 4 * 1024 * 1024, truncateAtBytes: 64 * 1024 * 1024, injectFailure: false, ...options };
    this.#timer = setInterval(() => this.#tick(), this.#o.intervalMs);
    this.#timer.unref(); // never keeps a process alive
  }

  /** Stops looking; a checkpoint in flight finishes; resolves once the worker's connection closed. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    if (this.#worker) {
      this.#worker.ref(); // waited for now: the process must not end before its connection closed
      this.#worker.postMessage({ stop: true }); // after a checkpoint in flight, in order
      await this.#exited;
    }
  }

  #tick(): void {
    if (this.#stopped || this.#inFlight) return;
    let size: number;
    let activity: number;
    try {
      size = this.#o.walBytes();
      if (size < this.#o.passiveAtBytes) return;
      activity = this.#o.activity();
    } catch (e) {
      this.#fail(e);
      return;
    }
    const idle = activity === this.#lastActivity;
    this.#lastActivity = activity;
    const mode = this.#copiedAll && (size >= this.#o.truncateAtBytes || idle) ? "TRUNCATE" : "PASSIVE";
    this.#inFlight = true;
    this.#spawn().postMessage({ mode });
    if (mode === "TRUNCATE") this.stats.truncate += 1;
    else this.stats.passive += 1;
    this.#pendingMode = mode;
  }

  #spawn(): Worker {
    if (this.#worker) return this.#worker;
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    const worker = new Worker(workerSource, { eval: true, workerData: { driver, file: this.#o.file, injectFailure: this.#o.injectFailure }, execArgv: [] });
    worker.unref();
    worker.on("message", (reply: Reply) => {
      this.#inFlight = false;
      if (!reply.ok) {
        this.#fail(Object.assign(new Error(`WAL checkpoint failed: ${reply.message}`), { code: reply.code }));
        return;
      }
      if (reply.busy) this.stats.busy += 1;
      this.#copiedAll = this.#pendingMode === "PASSIVE" && !reply.busy && reply.log !== undefined && reply.log === reply.checkpointed;
    });
    worker.on("error", (e) => this.#fail(e));
    this.#exited = new Promise<void>((resolve) =>
      worker.on("exit", () => {
        if (!this.#stopped) this.#fail(new Error("the WAL checkpointer's worker ended"));
        resolve();
      }),
    );
    this.#worker = worker;
    return worker;
  }

  #fail(error: unknown): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#worker?.postMessage({ stop: true });
    this.#o.onFailure(error instanceof Error ? error : new Error(String(error)));
  }
}
