/**
 * Continuous test of a random source (R-3.2.2.2), in the manner of the FIPS 140-2 continuous
 * random number generator test: output is drawn in fixed-size blocks, each block is compared with
 * the previous one (also across calls), and two identical consecutive blocks mean the source is
 * stuck. The failure latches: every later call fails too, until the process restarts.
 */
import { InkanError } from "../errors.js";

/** Draws exactly `length` bytes from the underlying generator. */
export type RandomBlockSource = (length: number) => Promise<Uint8Array> | Uint8Array;

/** Bytes per compared block: a false alarm needs two equal 128-bit blocks (probability 2^-128). */
export const RNG_BLOCK_SIZE = 16;

/** The largest single request served (callers want nonces, ids and keys, not bulk data). */
export const RNG_MAX_REQUEST = 64 * 1024;

export class ContinuousRngCheck {
  #previous: Uint8Array | undefined;
  #failed = false;

  constructor(private readonly source: RandomBlockSource) {}

  /** Whether the continuous test has failed (the source is then refused for good). */
  get failed(): boolean {
    return this.#failed;
  }

  async randomBytes(length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 0 || length > RNG_MAX_REQUEST) {
      throw new InkanError("INVALID_REQUEST", `random length must be an integer from 0 to ${RNG_MAX_REQUEST}`);
    }
    this.#assertHealthy();
    if (length === 0) return new Uint8Array(0);
    const total = Math.ceil(length / RNG_BLOCK_SIZE) * RNG_BLOCK_SIZE;
    const raw = await this.source(total);
    this.#assertHealthy(); // another call may have found a stuck block while this one waited
    if (raw.length !== total) return this.#fail("random source returned the wrong number of bytes");
    for (let offset = 0; offset < total; offset += RNG_BLOCK_SIZE) {
      const block = raw.subarray(offset, offset + RNG_BLOCK_SIZE);
      // R-3.2.2.2 continuous test: a block equal to its predecessor means a stuck generator.
      if (this.#previous && equalBytes(block, this.#previous)) {
        return this.#fail("random number generator failed its continuous test");
      }
      this.#previous = Uint8Array.from(block);
    }
    return raw.subarray(0, length);
  }

  #assertHealthy(): void {
    if (this.#failed) {
      throw new InkanError("CRYPTO_MODULE_FAILURE", "random number generator disabled after a failed continuous test");
    }
  }

  #fail(message: string): never {
    this.#failed = true;
    throw new InkanError("CRYPTO_MODULE_FAILURE", message);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}
