import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { InkanError } from "../errors.js";
import { ContinuousRngCheck, RNG_BLOCK_SIZE } from "./continuous-rng-check.js";

async function failure(p: Promise<unknown>): Promise<InkanError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InkanError);
  return err as InkanError;
}

describe("continuous RNG test (R-3.2.2.2)", () => {
  it("R-3.2.2.2 passes a healthy source through, with the requested length", async () => {
    const rng = new ContinuousRngCheck((n) => randomBytes(n));
    for (const n of [1, 12, 16, 17, 32, 1000]) expect((await rng.randomBytes(n)).length).toBe(n);
    expect((await rng.randomBytes(0)).length).toBe(0);
    expect(rng.failed).toBe(false);
  });

  it("R-3.2.2.2 fails when two consecutive blocks inside one draw are identical", async () => {
    const block = randomBytes(RNG_BLOCK_SIZE);
    const rng = new ContinuousRngCheck((n) => Buffer.concat(Array.from({ length: n / RNG_BLOCK_SIZE }, () => block)));
    const err = await failure(rng.randomBytes(32));
    expect(err.code).toBe("CRYPTO_MODULE_FAILURE");
    expect(rng.failed).toBe(true);
  });

  it("R-3.2.2.2 fails when a draw starts with the block the previous draw ended with", async () => {
    const repeated = randomBytes(RNG_BLOCK_SIZE);
    let calls = 0;
    const rng = new ContinuousRngCheck((n) => (calls++ === 0 ? Buffer.concat([randomBytes(n - RNG_BLOCK_SIZE), repeated]) : Buffer.concat([repeated, randomBytes(n - RNG_BLOCK_SIZE)])));
    await rng.randomBytes(32);
    expect((await failure(rng.randomBytes(32))).code).toBe("CRYPTO_MODULE_FAILURE");
  });

  it("R-3.2.2.2 catches a stuck source even for requests shorter than a block", async () => {
    const stuck = randomBytes(RNG_BLOCK_SIZE);
    const rng = new ContinuousRngCheck(() => Buffer.from(stuck));
    await rng.randomBytes(4); // the first block has no predecessor
    expect((await failure(rng.randomBytes(4))).code).toBe("CRYPTO_MODULE_FAILURE");
  });

  it("R-3.2.2.2 latches: after a failure even a healthy source is refused", async () => {
    let stuck = true;
    const block = randomBytes(RNG_BLOCK_SIZE);
    const rng = new ContinuousRngCheck((n) => (stuck ? Buffer.concat([block, block]).subarray(0, n) : randomBytes(n)));
    await failure(rng.randomBytes(32));
    stuck = false;
    expect((await failure(rng.randomBytes(16))).message).toMatch(/disabled/);
  });

  it("R-3.2.2.2 fails on a source that returns the wrong number of bytes", async () => {
    const rng = new ContinuousRngCheck((n) => randomBytes(n - 1));
    expect((await failure(rng.randomBytes(16))).code).toBe("CRYPTO_MODULE_FAILURE");
  });

  it("refuses negative, fractional and huge lengths without calling the source", async () => {
    let calls = 0;
    const rng = new ContinuousRngCheck((n) => {
      calls++;
      return randomBytes(n);
    });
    for (const n of [-1, 1.5, 1e9]) expect((await failure(rng.randomBytes(n))).code).toBe("INVALID_REQUEST");
    expect(calls).toBe(0);
  });

  it("a caller changing its buffer cannot disturb the check", async () => {
    const rng = new ContinuousRngCheck((n) => randomBytes(n));
    const first = await rng.randomBytes(16);
    first.fill(0);
    await expect(rng.randomBytes(16)).resolves.toHaveLength(16);
  });
});
