/**
 * Deletes expired one-time objects and transactions (with their DTBS/R lists and SAD tokens) on a
 * timer. Purging only bounds the store's size: an expired challenge, token, code or jti is refused
 * whether or not it was purged yet. Expired transactions are kept for `retentionMs` first, so that
 * an SCA still learns that its transaction EXPIRED rather than that it never existed. (MongoDB's
 * TTL indexes delete on their own; the SQLite store has nothing else.)
 */
import type { OneTimeObjects, PurgeCounts } from "./port.js";

export interface PurgeScheduleOptions {
  store: Pick<OneTimeObjects, "purgeExpired">;
  intervalMs: number;
  retentionMs: number;
  clock?: () => Date;
  onPurged?: (counts: PurgeCounts) => void;
  /** A failed purge is reported and retried at the next tick: nothing depends on it. */
  onError: (err: unknown) => void;
}

export interface PurgeSchedule {
  /** One purge now (also what each tick runs); overlapping calls share the run in progress. */
  runOnce(): Promise<PurgeCounts>;
  stop(): void;
}

export function schedulePurge(o: PurgeScheduleOptions): PurgeSchedule {
  const clock = o.clock ?? (() => new Date());
  let running: Promise<PurgeCounts> | undefined;
  const runOnce = () =>
    (running ??= o.store.purgeExpired(new Date(clock().getTime() - o.retentionMs)).finally(() => (running = undefined)));
  const timer = setInterval(() => {
    runOnce().then((counts) => o.onPurged?.(counts), o.onError);
  }, o.intervalMs);
  timer.unref();
  return { runOnce, stop: () => clearInterval(timer) };
}
