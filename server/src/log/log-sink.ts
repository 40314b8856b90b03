import { closeSync, openSync, write as fsWrite, writeSync } from "node:fs";

/** What the log lost while it could not be written (issue 17.3). */
export interface LogWriteStats {
  /** Lines dropped because the log's buffer was full (its destination failing or too slow). */
  droppedLines: number;
  /** Writes to the destination that failed (ENOSPC, EIO, ...); their bytes stay buffered and are retried. */
  failedWrites: number;
  /** The code of the last failed write, e.g. "ENOSPC". */
  lastError: string | undefined;
  /** The last write failed and none has succeeded since. */
  failing: boolean;
}

export interface LogSinkOptions {
  /**
   * The most the log buffers while its destination cannot keep up or fails; lines beyond it are
   * dropped and counted. 8 MiB by default: some 30,000 lines, minutes of a busy node.
   */
  maxBufferedBytes?: number;
  /** How soon a failed write is tried again: 1 s by default (no write is tried in between). */
  retryMs?: number;
  /** Told once writes succeed again after failures or drops, with what was lost since the last report. */
  onResumed: (lost: Pick<LogWriteStats, "droppedLines" | "failedWrites" | "lastError">) => void;
}

export const defaultMaxBufferedBytes = 8 * 1024 * 1024;
/** One write takes at most this much, so a long backlog is written in steps. */
const maxChunkBytes = 256 * 1024;

/**
 * Issue 17.3: the log's destination (a file descriptor or a file) as a pino destination that never
 * takes the SAM down. pino's own destination re-emits a write error (ENOSPC on a full disk) as an
 * unhandled 'error', which ended the process. Here writes are asynchronous and never throw: a
 * failed write keeps its bytes and is tried again after `retryMs`, a full buffer drops new lines
 * and counts them, and once a write succeeds again the loss is reported
 * through `onResumed`. The SAM keeps serving throughout: this log is not the audit log (that one
 * is in the store and fails closed, R-3.2.2.4).
 */
export class LogSink {
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private readonly max: number;
  private readonly retryMs: number;
  private queue: string[] = [];
  private queuedBytes = 0;
  /** Bytes handed to the destination and not yet written (a failed or partial write keeps them). */
  private pending: Buffer | undefined;
  private writing = false;
  private retry: NodeJS.Timeout | undefined;
  private drained: (() => void)[] = [];
  private readonly total = { droppedLines: 0, failedWrites: 0 };
  private readonly sinceReport = { droppedLines: 0, failedWrites: 0 };
  private lastError: string | undefined;
  private failing = false;
  private reporting = false;

  constructor(
    dest: number | string,
    private readonly o: LogSinkOptions,
  ) {
    this.ownsFd = typeof dest === "string";
    this.fd = typeof dest === "number" ? dest : openSync(dest, "a");
    this.max = o.maxBufferedBytes ?? defaultMaxBufferedBytes;
    this.retryMs = o.retryMs ?? 1000;
  }

  /** pino's destination interface: one serialized line. Never throws, never blocks. */
  write(line: string): boolean {
    const bytes = Buffer.byteLength(line);
    if (!this.reporting && this.queuedBytes + (this.pending?.length ?? 0) + bytes > this.max) {
      this.total.droppedLines++;
      this.sinceReport.droppedLines++;
    } else {
      this.queue.push(line);
      this.queuedBytes += bytes;
    }
    this.next();
    return true;
  }

  /** Calls `cb` once everything buffered is written, or at once while the destination fails. */
  flush(cb?: (err?: Error) => void): void {
    if (!cb) return;
    if (this.failing || (!this.writing && this.queue.length === 0 && !this.pending)) cb();
    else this.drained.push(cb);
  }

  /** Writes what is buffered synchronously, as far as the destination takes it (at exit). */
  flushSync(): void {
    if (this.writing) return; // an asynchronous write owns the pending bytes
    try {
      const data = Buffer.concat([this.pending ?? Buffer.alloc(0), Buffer.from(this.queue.join(""))]);
      this.pending = undefined;
      this.queue = [];
      this.queuedBytes = 0;
      for (let at = 0; at < data.length; ) at += writeSync(this.fd, data, at);
    } catch {
      // nothing more can be done for these lines at exit
    }
  }

  /** Stops retrying and closes a destination this sink opened. */
  end(): void {
    clearTimeout(this.retry);
    this.flushSync();
    if (this.ownsFd) closeSync(this.fd);
  }

  stats(): LogWriteStats {
    return { ...this.total, lastError: this.lastError, failing: this.failing };
  }

  private next(): void {
    if (this.writing || this.retry) return;
    if (!this.pending) {
      if (this.queue.length === 0) {
        for (const cb of this.drained.splice(0)) cb();
        return;
      }
      let take = 0;
      let bytes = 0;
      while (take < this.queue.length && (take === 0 || bytes < maxChunkBytes)) bytes += Buffer.byteLength(this.queue[take++]!);
      this.pending = Buffer.from(this.queue.splice(0, take).join(""));
      this.queuedBytes -= bytes;
    }
    const chunk = this.pending;
    this.writing = true;
    fsWrite(this.fd, chunk, 0, chunk.length, null, (err, written) => {
      this.writing = false;
      if (err) {
        this.failed(err);
        return;
      }
      this.pending = written < chunk.length ? chunk.subarray(written) : undefined;
      this.succeeded();
      this.next();
    });
  }

  private failed(err: NodeJS.ErrnoException): void {
    this.total.failedWrites++;
    this.sinceReport.failedWrites++;
    this.lastError = err.code ?? err.message;
    this.failing = true;
    for (const cb of this.drained.splice(0)) cb();
    // Tried again after retryMs, whether or not new lines come (the timer keeps no process alive).
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.next();
    }, this.retryMs);
    this.retry.unref();
  }

  private succeeded(): void {
    this.failing = false;
    if (this.sinceReport.droppedLines === 0 && this.sinceReport.failedWrites === 0) return;
    const lost = { ...this.sinceReport, lastError: this.lastError };
    this.sinceReport.droppedLines = 0;
    this.sinceReport.failedWrites = 0;
    // Not from inside the sink's own write; the report itself is never dropped for lack of room.
    setImmediate(() => {
      this.reporting = true;
      try {
        this.o.onResumed(lost);
      } finally {
        this.reporting = false;
      }
    });
  }
}
