/**
 * Issue 20: the WAL's fdatasync on libuv's thread pool, instead of SQLite's fsync inside COMMIT on
 * the event loop. The store runs WAL with `synchronous = NORMAL` and acknowledges no write before a
 * sync of the -wal file that STARTED AFTER its COMMIT returned has finished.
 *
 * Why this is as durable as `synchronous = FULL` for every acknowledged write (T-2.2.1.3, R-3.2.2.4):
 * - In WAL mode the only difference between FULL and NORMAL is the WAL sync at each commit: with
 *   both, a COMMIT writes its frames (ending with the commit frame) to the -wal file before it
 *   returns, and every checkpoint syncs the WAL before copying it and the database file after.
 *   NORMAL only leaves those frames in the page cache, where a crash of the PROCESS cannot lose
 *   them (the kernel holds them) and only power loss or an OS crash can.
 * - fdatasync on any descriptor of the -wal file flushes that file's data (and its size) from the
 *   page cache to the disk: every frame written before the call, by this or any other connection
 *   or process, is on the disk when it succeeds. A write is answered only after such a sync, so
 *   what it was told is on the disk, exactly as after FULL's fsync inside the COMMIT.
 * - The frames of a commit follow those of every commit it could see, in one sequential file, and
 *   a WAL is only restarted (written from its start again) after a complete checkpoint, which
 *   synced both files: a sync that covers a commit covers everything that commit depended on.
 * - The directory entry of a newly created -wal file is synced once, at open (FULL does that at
 *   its first WAL sync); while our connection is open SQLite never deletes or recreates the file,
 *   so our descriptor stays the live -wal file.
 * - What a crash can lose is what was never acknowledged: commits whose sync did not finish. A
 *   failed sync poisons (see {@link WalSync.failure}): after an fsync error the page cache may no
 *   longer say what the disk holds, so nothing more is acknowledged and the store fails closed.
 *
 * Coalescing: a sync in flight covers only the commits made before it started; a commit made
 * while it runs waits for the NEXT sync, and every commit made meanwhile shares that one.
 */
import { closeSync, fdatasync, fstatSync, fsyncSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { promisify } from "node:util";

/** Syncs one descriptor's data (the seam tests use to slow down or fail the sync). */
export type SyncFn = (fd: number) => Promise<void>;

const fdatasyncAsync: SyncFn = promisify(fdatasync);

/** A failed sync of the WAL: nothing after it is acknowledged. */
export class WalSyncError extends Error {
  constructor(readonly original: unknown) {
    super("the store's write-ahead log could not be synced or checkpointed; the store is closed for writes", { cause: original });
    this.name = "WalSyncError";
  }
}

export class WalSync {
  readonly #fd: number;
  readonly #sync: SyncFn;
  /** The sync running now (covers commits made before it started). */
  #running: Promise<void> | undefined;
  /** The sync that starts when the running one ends (covers commits made while it runs). */
  #queued: Promise<void> | undefined;
  #failure: WalSyncError | undefined;
  #closed = false;
  /** Syncs started and finished, for tests and diagnostics. */
  readonly stats = { started: 0, finished: 0 };

  /** Opens the -wal file of `walFile` (it must exist: open it after the connection's first transaction). */
  constructor(walFile: string, sync: SyncFn = fdatasyncAsync) {
    this.#sync = sync;
    this.#fd = openSync(walFile, "r"); // fdatasync needs no write access
    try {
      syncDirectory(dirname(walFile)); // the -wal file's own directory entry, once
    } catch (e) {
      closeSync(this.#fd);
      throw e;
    }
  }

  /** The failure that poisoned this store, if any. */
  get failure(): WalSyncError | undefined {
    return this.#failure;
  }

  /** Called once when the store is poisoned (the checkpointer stops). */
  onPoison: ((failure: WalSyncError) => void) | undefined;

  /** Poisons the store from outside (a failed checkpoint): as a failed sync. */
  poison(error: unknown): void {
    if (this.#failure) return;
    this.#failure = error instanceof WalSyncError ? error : new WalSyncError(error);
    this.onPoison?.(this.#failure);
  }

  /** The -wal file's size now (one fstat). */
  walBytes(): number {
    if (this.#closed) return 0; // the descriptor may be reused
    return fstatSync(this.#fd).size;
  }

  /**
   * Call right after a COMMIT returned (synchronously, in the same turn): resolves when a sync
   * that started after this call finished, so that commit is on the disk; rejects if it failed.
   */
  afterCommit(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new WalSyncError(new Error("the store is closed")));
    if (this.#running === undefined) return this.#start();
    // Started before this commit: not enough. Every commit meanwhile shares the next one.
    this.#queued ??= this.#running.then(
      () => {
        this.#queued = undefined;
        if (this.#failure) throw this.#failure; // poisoned meanwhile (a failed checkpoint)
        return this.#running ?? this.#start(); // one started meanwhile started after our commits too
      },
      () => {
        this.#queued = undefined;
        throw this.#failure;
      },
    );
    return this.#queued;
  }

  /**
   * Resolves once every commit this connection made so far is on the disk (the newest pending
   * sync finished); rejects once the store is poisoned. Never starts a sync by itself.
   */
  settled(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    return this.#queued ?? this.#running ?? Promise.resolve();
  }

  /** Waits for the pending syncs (their outcome is their writers'), then closes the descriptor. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.settled().catch(() => undefined);
    closeSync(this.#fd);
  }

  #start(): Promise<void> {
    this.stats.started += 1;
    const run: Promise<void> = this.#sync(this.#fd).then(
      () => {
        this.stats.finished += 1;
        if (this.#running === run) this.#running = undefined;
      },
      (e: unknown) => {
        this.poison(e);
        if (this.#running === run) this.#running = undefined;
        throw this.#failure;
      },
    );
    this.#running = run;
    return run;
  }
}

/**
 * Syncs the -wal file of the database `file` once, if it exists (`inkan backup`, issue 20): call
 * it while a connection to the file is open (so the WAL is not removed meanwhile).
 */
export async function syncWalOf(file: string, sync: SyncFn = fdatasyncAsync): Promise<void> {
  let fd: number;
  try {
    fd = openSync(`${file}-wal`, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return; // no WAL: every commit is in the synced database file
    throw e;
  }
  try {
    await sync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsyncs a directory (its entries: a created file's name survives power loss). */
function syncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
