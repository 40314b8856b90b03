/**
 * Keeps watch over the connection to a crypto module (issue 22): a network HSM restarts, a
 * session handle goes stale, a token is removed or its files become unreadable.
 *
 * - Available: calls go to the module. A call that fails with a CKR code meaning the module is
 *   gone (moduleFailureKind "lost") marks it lost at once; any other unexpected failure
 *   ("suspect") runs the check, and a failed check marks it lost. The check also runs every
 *   `probeIntervalMs`, so a module lost while the node is idle is noticed without a caller.
 * - Lost: every call fails at once with CRYPTO_MODULE_FAILURE (fail closed: nothing reaches a
 *   module in an unknown state), listeners hear "lost" (the node reports NOT_SERVING), and
 *   reconnect attempts follow: the first at once, then after backoff delays doubling from
 *   `initialDelayMs` up to `maxDelayMs`, with jitter so that several nodes do not retry in step.
 *   A permanent failure (a refused PIN) ends the attempts: retrying could lock the token's user.
 * - Recovered: an attempt reopened the sessions, logged in and checked the system keys; calls
 *   are served again without a restart.
 * Pure logic: what a check and a reconnect do is the adapter's (pkcs11-crypto-module.ts).
 */
import { InkanError } from "../../errors.js";
import type { ModuleStateChange } from "../port.js";
import { moduleFailureKind } from "./errors.js";

export interface ModuleSupervisorOptions {
  /** Checks the module as it is now; throws when it is unusable. */
  check(): Promise<void>;
  /** Gives the old sessions up, opens and logs in new ones and checks them; throws when that fails. */
  reconnect(attempt: number): Promise<void>;
  /** True for a reconnect failure that must not be retried (a refused PIN: retries would lock the token's user). */
  isPermanent?(err: unknown): boolean;
  /** First delay between reconnect attempts (default 250 ms). */
  initialDelayMs?: number;
  /** Longest delay between reconnect attempts (default 5 s). */
  maxDelayMs?: number;
  /** How often an available module is checked; 0 turns the periodic check off (default 5 s). */
  probeIntervalMs?: number;
  /** [0, 1) for the jitter; Math.random by default (not a secret). */
  random?: () => number;
  now?: () => number;
}

type State = { kind: "available" } | { kind: "lost"; since: number; attempts: number } | { kind: "closed" };

export class ModuleSupervisor {
  readonly #o: ModuleSupervisorOptions;
  readonly #initialDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #now: () => number;
  readonly #listeners = new Set<(change: ModuleStateChange) => void>();
  #state: State = { kind: "available" };
  #checking: Promise<void> | undefined;
  #attempt: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #probeTimer: NodeJS.Timeout | undefined;

  constructor(options: ModuleSupervisorOptions) {
    this.#o = options;
    this.#initialDelayMs = options.initialDelayMs ?? 250;
    this.#maxDelayMs = Math.max(options.maxDelayMs ?? 5_000, this.#initialDelayMs);
    this.#now = options.now ?? Date.now;
    const probeMs = options.probeIntervalMs ?? 5_000;
    if (probeMs > 0) {
      this.#probeTimer = setInterval(() => void this.#probe().catch(() => undefined), probeMs);
      this.#probeTimer.unref();
    }
  }

  get available(): boolean {
    return this.#state.kind === "available";
  }

  onStateChange(listener: (change: ModuleStateChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Throws CRYPTO_MODULE_FAILURE unless the module is available: nothing is sent to a lost module. */
  assertAvailable(): void {
    if (this.#state.kind === "lost") throw unavailable();
    if (this.#state.kind === "closed") throw new InkanError("CRYPTO_MODULE_FAILURE", "crypto module is closed");
  }

  /** Looks at a failed call: a lost module is marked lost, a suspect failure is checked. */
  observe(err: unknown): void {
    if (this.#state.kind !== "available") return;
    const failure = moduleFailureKind(err);
    if (failure?.kind === "lost") this.#lose(failure.reason);
    else if (failure?.kind === "suspect") void this.#probe().catch(() => undefined);
  }

  /**
   * Checks the module before a refusal that a broken module would also cause (a key not found, a
   * tag that does not verify): throws CRYPTO_MODULE_FAILURE when the check fails, so the caller
   * reports the module and not a missing key or tampered data.
   */
  async confirm(): Promise<void> {
    this.assertAvailable();
    await this.#probe();
  }

  /** Stops checking and reconnecting; waits for a check or attempt under way. */
  async close(): Promise<void> {
    this.#state = { kind: "closed" };
    clearInterval(this.#probeTimer);
    clearTimeout(this.#retryTimer);
    await Promise.allSettled([this.#checking, this.#attempt]);
  }

  /** Runs the check (one at a time; callers join the one under way); a failure marks the module lost. */
  #probe(): Promise<void> {
    if (this.#state.kind !== "available") return Promise.reject(unavailable());
    this.#checking ??= this.#o
      .check()
      .catch((err: unknown) => {
        this.#lose(reasonOf(err));
        throw unavailable(err);
      })
      .finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  #lose(reason: string): void {
    if (this.#state.kind !== "available") return;
    this.#state = { kind: "lost", since: this.#now(), attempts: 0 };
    this.#emit({ state: "lost", reason });
    this.#scheduleAttempt(0);
  }

  #scheduleAttempt(delayMs: number): void {
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#attempt = this.#tryReconnect().finally(() => (this.#attempt = undefined));
    }, delayMs);
    this.#retryTimer.unref();
  }

  async #tryReconnect(): Promise<void> {
    const lost = this.#state;
    if (lost.kind !== "lost") return;
    lost.attempts++;
    try {
      await this.#o.reconnect(lost.attempts);
    } catch (err) {
      if (this.#state !== lost) return; // closed meanwhile
      if (this.#o.isPermanent?.(err)) {
        this.#emit({ state: "reconnect-failed", attempt: lost.attempts, reason: reasonOf(err), retryInMs: null });
        return; // stays lost: calls are refused until the node is restarted
      }
      const base = Math.min(this.#maxDelayMs, this.#initialDelayMs * 2 ** Math.min(lost.attempts - 1, 30));
      const retryInMs = Math.round(base * (0.5 + 0.5 * (this.#o.random ?? Math.random)()));
      this.#emit({ state: "reconnect-failed", attempt: lost.attempts, reason: reasonOf(err), retryInMs });
      this.#scheduleAttempt(retryInMs);
      return;
    }
    if (this.#state !== lost) return;
    this.#state = { kind: "available" };
    this.#emit({ state: "recovered", attempts: lost.attempts, downMs: this.#now() - lost.since });
  }

  #emit(change: ModuleStateChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch {
        // a listener's failure must not stop the supervision or the other listeners
      }
    }
  }
}

function unavailable(cause?: unknown): InkanError {
  return new InkanError("CRYPTO_MODULE_FAILURE", "the crypto module is unavailable", cause === undefined ? {} : { cause });
}

/** A CKR name or the failed check's message: what an operator reads in the log and the audit record. */
function reasonOf(err: unknown): string {
  return moduleFailureKind(err)?.reason ?? (err instanceof Error ? err.message : "unexpected failure");
}
