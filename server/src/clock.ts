/**
 * The SAM's one time source (issue 21): the time that decides security (a credential's usable-since,
 * the expiry of transactions, SAD tokens, challenges, activation codes and admin nonces, the
 * policy's check times) comes from here, never straight from `new Date()`.
 *
 * - One node (SQLite): the local clock ({@link systemClock}).
 * - Several nodes (PostgreSQL): the database server's clock ({@link SharedClock}), sampled with
 *   `SELECT clock_timestamp()` and carried forward between samples on this process's monotonic
 *   clock, so every node reads the same time and a step of a node's wall clock changes nothing.
 *
 * `now()` is synchronous (no database round trip on the signing path); a shared clock that cannot
 * vouch for its time throws STORE_FAILURE instead (fail closed). Tests inject their own Clock.
 */
import { InkanError } from "./errors.js";

/** The time port. `now()` throws (STORE_FAILURE) when the time source cannot be trusted. */
export interface Clock {
  now(): Date;
}

/** The local wall clock: the time source of a single node. */
export const systemClock: Clock = { now: () => new Date() };

/** A clock from a `() => Date` function (the form the domain's `clock` options take). */
export function clockOf(now: () => Date): Clock {
  return { now };
}

export interface SharedClockOptions {
  /** Reads the shared time, e.g. the database server's `clock_timestamp()`. */
  read: () => Promise<Date>;
  /** How often the shared time is sampled again (default 5 s). */
  refreshMs?: number;
  /** A sample older than this (monotonic) is no longer trusted: now() throws (default 3 × refreshMs). */
  maxAgeMs?: number;
  /** A sample whose round trip took longer than twice this is discarded (default 250 ms: ± 250 ms uncertainty). */
  maxUncertaintyMs?: number;
  /**
   * The most this node's wall clock may differ from the shared time (default 2,000 ms). Beyond
   * it now() throws: what still reads the local clock (TLS certificate validity in the handshake,
   * log time stamps) would then disagree with the SAM's decisions by more than the README states.
   */
  maxSkewMs?: number;
  /** A failed or refused sample (logged by the caller; now() fails closed once the last good one ages out). */
  onSampleError?: (err: unknown) => void;
  /** Monotonic milliseconds (default performance.now); tests inject it. */
  monotonic?: () => number;
  /** The local wall clock in milliseconds (default Date.now); tests inject it. */
  wallClock?: () => number;
}

interface Sample {
  /** The shared time at `monotonicAt`, in epoch milliseconds. */
  sharedMs: number;
  monotonicAt: number;
}

/**
 * The shared time source of a multi-node deployment. `start()` takes the first sample (and throws
 * when it cannot); a timer refreshes it. `now()` = last sample + monotonic time elapsed since.
 *
 * @example
 * const clock = new SharedClock({ read: time.read, onSampleError: (err) => log.warn({ err }, "shared time not read") });
 * await clock.start();          // the node does not serve without a trusted time
 * const expiresAt = new Date(clock.now().getTime() + ttlMs);
 */
export class SharedClock implements Clock {
  #sample: Sample | undefined;
  #skewMs = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #refreshMs: number;
  readonly #maxAgeMs: number;
  readonly #maxUncertaintyMs: number;
  readonly #maxSkewMs: number;
  readonly #monotonic: () => number;
  readonly #wall: () => number;

  constructor(private readonly o: SharedClockOptions) {
    this.#refreshMs = o.refreshMs ?? 5_000;
    this.#maxAgeMs = o.maxAgeMs ?? 3 * this.#refreshMs;
    this.#maxUncertaintyMs = o.maxUncertaintyMs ?? 250;
    this.#maxSkewMs = o.maxSkewMs ?? 2_000;
    this.#monotonic = o.monotonic ?? (() => performance.now());
    this.#wall = o.wallClock ?? (() => Date.now());
  }

  /**
   * Takes the first sample (throws STORE_FAILURE when three attempts fail: the first may include
   * opening the connection, too slow to be a sample) and starts refreshing.
   */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.refresh();
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
    this.now(); // a skew beyond the bound stops the start too
    this.#timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.o.onSampleError?.(err));
    }, this.#refreshMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Samples the shared time once; a sample with too long a round trip is refused (and the previous one kept). */
  async refresh(): Promise<void> {
    const before = this.#monotonic();
    const wallBefore = this.#wall();
    let shared: Date;
    try {
      shared = await this.o.read();
    } catch (err) {
      throw new InkanError("STORE_FAILURE", "the shared time source could not be read", { cause: err });
    }
    const after = this.#monotonic();
    const halfTrip = (after - before) / 2;
    if (!Number.isFinite(shared.getTime())) throw new InkanError("STORE_FAILURE", "the shared time source answered no valid time");
    if (halfTrip > this.#maxUncertaintyMs) {
      throw new InkanError("STORE_FAILURE", `the shared time sample took ${Math.round(2 * halfTrip)} ms; refused (at most ${2 * this.#maxUncertaintyMs} ms)`);
    }
    // The shared time was read about half-way through the round trip.
    this.#sample = { sharedMs: shared.getTime(), monotonicAt: before + halfTrip };
    this.#skewMs = shared.getTime() - (wallBefore + halfTrip);
  }

  /** The shared time now; throws STORE_FAILURE when no sample is fresh enough or this node's clock is off by more than the bound. */
  now(): Date {
    const s = this.#sample;
    const at = this.#monotonic();
    if (!s || at - s.monotonicAt > this.#maxAgeMs) {
      throw new InkanError("STORE_FAILURE", "the shared time source has not been read recently; refusing to decide on time");
    }
    if (Math.abs(this.#skewMs) > this.#maxSkewMs) {
      throw new InkanError("STORE_FAILURE", `this node's clock is ${Math.round(this.#skewMs)} ms off the shared time (at most ${this.#maxSkewMs} ms)`);
    }
    return new Date(s.sharedMs + (at - s.monotonicAt));
  }

  /** The last measured difference shared time − local wall clock, in ms (for logs and the health of a node). */
  get skewMs(): number {
    return this.#skewMs;
  }
}
