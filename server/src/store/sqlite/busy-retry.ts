import { StoreFailureError } from "../port.js";

/**
 * Issue 17.4: how the SAM lives with other processes on its SQLite file. better-sqlite3 is
 * synchronous, so SQLite's busy_timeout waits for another process's write lock on the event loop:
 * with 10 s, one `BEGIN EXCLUSIVE` held elsewhere froze every call and the health check. The
 * concurrency model: several processes may share the file (WAL: readers never wait), each with one
 * connection; a statement waits at most `sqliteBusyTimeoutMs` on the event loop, and a call whose
 * write lock is taken is retried asynchronously with backoff until `maxWaitMs`, then fails with
 * UNAVAILABLE STORE_FAILURE. Retrying is safe because every store method is one statement or one
 * BEGIN IMMEDIATE transaction: SQLITE_BUSY means it took no effect.
 */
export const sqliteBusyTimeoutMs = 5;

/** Whether `err` is a store failure because another connection holds the lock. */
export function isBusy(err: unknown): boolean {
  const cause = err instanceof StoreFailureError ? err.cause : err;
  const code = (cause as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}

/** Runs `attempt` again while the store is busy, waiting 5, 10, 20 … 100 ms between tries, for at most `maxWaitMs` in all. */
export async function retryWhileBusy<T>(attempt: () => Promise<T>, maxWaitMs: number): Promise<T> {
  const started = performance.now();
  for (let pause = 5; ; pause = Math.min(100, pause * 2)) {
    try {
      return await attempt();
    } catch (err) {
      const waited = performance.now() - started;
      if (!isBusy(err) || waited >= maxWaitMs) throw err;
      await new Promise((r) => setTimeout(r, Math.min(pause, maxWaitMs - waited)));
    }
  }
}

/**
 * The store with every asynchronous method retried while busy (retryWhileBusy); synchronous
 * members pass through unchanged.
 */
export function withBusyRetry<S extends object>(store: S, maxWaitMs: number): S {
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const method = value as (...args: unknown[]) => unknown;
      return (...args: unknown[]) => {
        const first = method.apply(target, args);
        if (!(first instanceof Promise)) return first;
        let tries = 0;
        return retryWhileBusy(() => (tries++ === 0 ? first : (method.apply(target, args) as Promise<unknown>)), maxWaitMs);
      };
    },
  });
}
