/**
 * Group commit for the SQLite store (issue 20): write operations that arrive together (in the
 * same turn of the event loop) run in ONE `BEGIN IMMEDIATE ... COMMIT`, each in its own SAVEPOINT,
 * so N concurrent writes pay one fsync instead of N. better-sqlite3 is synchronous; with
 * `synchronous = FULL` every commit fsynced on the event loop. Now the store runs NORMAL and the
 * WAL is fdatasynced on the thread pool after the COMMIT (wal-sync.ts, {@link Durability}): the
 * groups committed in one flush share one sync, and concurrent flushes share the next.
 *
 * What stays true:
 * - Atomic and isolated per operation: each runs alone, in queue order, in its savepoint; one that
 *   throws is rolled back to its savepoint (only its own effects go) and rejects; the others go on.
 *   Conditional updates (consume a token, claim an entry, decide an approval) see every earlier
 *   operation of the group, exactly as if each had committed on its own just before: of two
 *   concurrent consumers of one token, still exactly one wins.
 * - Never acknowledged before it is durable: every promise of a group settles only after the shared
 *   COMMIT returned AND the WAL sync that started after it finished (wal-sync.ts argues why that is
 *   FULL's guarantee). Refusals wait for it too (they may tell of another operation's effect). If
 *   the sync fails, every operation of the group rejects, and every later group too (poisoned:
 *   nothing more runs). If the COMMIT (or the BEGIN, or an error that ends the whole transaction)
 *   fails, the group is rolled back and EVERY operation of it rejects, also those whose own
 *   statements succeeded: none of them took effect. A crash before the sync finished loses at
 *   most what no caller was told succeeded.
 * - Nothing uncommitted is visible: the group runs synchronously from BEGIN to COMMIT, so no other
 *   code of this process (a read on the same connection) runs in between.
 */
import type Database from "better-sqlite3";

interface Queued {
  fn: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** An error that ended the whole transaction (SQLite rolled it back): the group is lost. */
class GroupAborted extends Error {
  constructor(readonly original: unknown) {
    super("the group's transaction ended");
  }
}

/** What makes a COMMIT durable before it is acknowledged (wal-sync.ts); absent: the COMMIT itself. */
export interface Durability {
  /** Called right after a COMMIT returned: settles when that commit is on the disk (or never will be). */
  afterCommit(): Promise<void>;
  /** Set once a sync failed: nothing more is run or acknowledged. */
  readonly failure: Error | undefined;
}

/** A better-sqlite3 transaction wrapper that runs the function it is given (see {@link transactionRunner}). */
export type TransactionRunner = Database.Transaction<(fn: () => unknown) => unknown>;

/**
 * Issue 20: better-sqlite3's transaction wrapper, made once per connection. `db.transaction(fn)`
 * builds four wrapped functions with their properties on every call (about 25 µs); this one runs
 * whatever function it is given: `run(fn)` in BEGIN ... COMMIT, `run.immediate(fn)` in BEGIN
 * IMMEDIATE, and either in a SAVEPOINT when a transaction is open, with the driver's own rollback
 * rules.
 */
export function transactionRunner(db: Database.Database): TransactionRunner {
  return db.transaction((fn: () => unknown) => fn());
}

/** The most operations committed together: bounds how long one group holds the event loop. */
export const maxGroupSize = 256;

export class GroupCommit {
  #queue: Queued[] = [];
  #scheduled = false;
  /** Groups committed and operations in them, for tests and diagnostics. */
  readonly stats = { groups: 0, operations: 0 };

  /** The group's BEGIN IMMEDIATE ... COMMIT and, inside it, each operation's SAVEPOINT. */
  readonly #transaction: TransactionRunner;

  constructor(
    private readonly db: Database.Database,
    private readonly durability?: Durability,
  ) {
    this.#transaction = transactionRunner(db);
  }

  /**
   * Queues `fn` (synchronous statements on this connection) for the next group and resolves with
   * its result once the group's COMMIT is durable; rejects with what `fn` threw (its effects rolled
   * back) or, when the group could not commit, with the driver's error (nothing of it happened).
   */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        // After this turn's I/O callbacks: every write issued meanwhile joins the same group.
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits everything queued now (also called before the connection closes). */
  flush(): void {
    this.#scheduled = false;
    const settle: ((failed?: { error: unknown }) => void)[] = [];
    while (this.#queue.length > 0) {
      const committed = this.#commit(this.#queue.splice(0, maxGroupSize));
      if (committed) settle.push(committed);
    }
    if (settle.length === 0) return;
    if (!this.durability) {
      for (const s of settle) s();
      return;
    }
    // One sync for every group of this flush, started after their COMMITs; nothing answered before it.
    this.durability.afterCommit().then(
      () => settle.forEach((s) => s()),
      (error: unknown) => settle.forEach((s) => s({ error })),
    );
  }

  /** Runs one group; returns what settles its promises (with an error: all reject), or undefined if it failed whole. */
  #commit(group: Queued[]): ((failed?: { error: unknown }) => void) | undefined {
    const poisoned = this.durability?.failure;
    if (poisoned) {
      for (const op of group) op.reject(poisoned); // fail closed: nothing runs after a failed sync
      return undefined;
    }
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.#transaction.immediate(() => {
        for (const op of group) {
          try {
            outcomes.push({ ok: true, value: this.#transaction(op.fn) }); // its own SAVEPOINT
          } catch (error) {
            // An error SQLite answers by ending the transaction (I/O, disk full) takes the group with it.
            if (!this.db.inTransaction) throw new GroupAborted(error);
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (err) {
      // BEGIN, an operation or COMMIT failed: rolled back whole (better-sqlite3 rolls back on a throw).
      if (this.db.inTransaction) {
        try {
          this.db.exec("ROLLBACK");
        } catch {
          // the connection is broken: the group did not commit either way
        }
      }
      const cause = err instanceof GroupAborted ? err.original : err;
      for (const op of group) op.reject(cause);
      return undefined;
    }
    this.stats.groups += 1;
    this.stats.operations += group.length;
    return (failed?: { error: unknown }) => {
      group.forEach((op, i) => {
        const outcome = outcomes[i]!;
        if (failed) op.reject(failed.error); // committed but not known to be on the disk: not acknowledged
        else if (outcome.ok) op.resolve(outcome.value);
        else op.reject(outcome.error);
      });
    };
  }
}
