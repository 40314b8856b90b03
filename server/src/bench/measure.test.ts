import { describe, expect, it } from "vitest";
import { bracket, forDuration, idlePercent, machineCpu, peakRss, percentile, threadCpu, threadShare } from "./measure.js";

describe("bench measurements", () => {
  it("issue 20: the machine's idle share between two /proc/stat samples (idle + iowait over all ticks); none on another OS", () => {
    const at = (line: string) => machineCpu(() => `${line}\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1\n`);
    const before = at("cpu  100 0 50 800 50 0 0 0 0 0");
    const after = at("cpu  160 0 70 900 60 0 10 0 0 0");
    expect(before).toEqual({ idle: 850, total: 1000 });
    expect(after).toEqual({ idle: 960, total: 1200 });
    expect(idlePercent(before, after)).toBe(55); // 110 idle of 200 ticks
    expect(idlePercent(after, after)).toBeUndefined(); // no time passed
    expect(idlePercent(undefined, after)).toBeUndefined();
    expect(machineCpu(() => "intr 1 2 3\n")).toBeUndefined();
    expect(machineCpu(() => "cpu  1 2 x 4 5\n")).toBeUndefined();
    expect(
      machineCpu(() => {
        throw new Error("ENOENT");
      }),
    ).toBeUndefined();
  });

  it("issue 20: a thread's share of a measured window (on a CPU, waiting for one) and its CPU per item, from /proc/thread-self/schedstat; none on another OS", () => {
    const before = threadCpu(() => "1000000000 200000000 5000\n");
    const after = threadCpu(() => "3500000000 700000000 9000\n");
    expect(before).toEqual({ runNs: 1e9, waitNs: 2e8 });
    // 2.5 s on a CPU and 0.5 s waiting during 5 s, for 10,000 signatures: 50 %, 10 %, 250 µs each.
    expect(threadShare(before, after, 5_000, 10_000)).toEqual({ busyPct: 50, runqWaitPct: 10, cpuUsPerItem: 250 });
    expect(threadShare(after, before, 5_000, 10_000)).toBeUndefined(); // went back: not the same thread
    expect(threadShare(before, after, 0, 10_000)).toBeUndefined();
    expect(threadShare(before, after, 5_000, 0)).toBeUndefined();
    expect(threadShare(undefined, after, 5_000, 1)).toBeUndefined();
    expect(threadCpu(() => "12 x 3")).toBeUndefined();
    expect(threadCpu(() => "12")).toBeUndefined();
    expect(
      threadCpu(() => {
        throw new Error("ENOENT");
      }),
    ).toBeUndefined();
    // The real file (Linux, as the README requires) answers for the calling thread, and its CPU time grows.
    const real = threadCpu();
    expect(real).toBeDefined();
    let x = 0;
    for (let i = 0; i < 2e6; i++) x += Math.sqrt(i);
    expect(x).toBeGreaterThan(0);
    expect(threadCpu()!.runNs).toBeGreaterThan(real!.runNs);
  });

  it("issue 20: a ratio is taken against the mean of the raw figures before and after, and marked unreliable when the load moved by more than 1.0", () => {
    const steady = bracket(500, 4_000, 6_000, [3.2, 3.9, 3.5]);
    expect(steady.ratio).toBe(0.1);
    expect(steady).toMatchObject({ loadStart: 3.2, loadEnd: 3.5, unreliable: false });
    expect(steady.loadChange).toBeCloseTo(0.7);
    const moved = bracket(500, 5_000, 5_000, [1.0, 2.5, 1.2]); // rose and fell back: still unlike conditions
    expect(moved).toMatchObject({ ratio: 0.1, unreliable: true });
    expect(bracket(1, 1, 1, [2, 3]).unreliable).toBe(false); // exactly 1.0 is allowed
    expect(() => bracket(1, 0, 1, [1])).toThrow(RangeError);
    expect(() => bracket(1, 1, 1, [])).toThrow(RangeError);
  });

  it("percentile is nearest-rank: p50 and p99 are observed values", () => {
    const samples = Array.from({ length: 200 }, (_, i) => 200 - i); // 1..200, unsorted
    expect(percentile(samples, 50)).toBe(100);
    expect(percentile(samples, 99)).toBe(198);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([3, 1, 2], 100)).toBe(3);
    expect(() => percentile([], 50)).toThrow(RangeError);
    expect(() => percentile([1], 0)).toThrow(RangeError);
  });

  it("forDuration counts what the workers produced until the deadline, and stops a worker with no work left", async () => {
    const left = [3, 1_000_000];
    const run = await forDuration(2, 50, async (w) => {
      await new Promise((r) => setTimeout(r, 5));
      if (left[w]! === 0) return 0;
      left[w]! -= 1;
      return 2;
    });
    expect(left[0]).toBe(0); // worker 0 ran out and stopped
    expect(left[1]).toBeLessThan(1_000_000);
    expect(run.signatures).toBe(2 * (3 + (1_000_000 - left[1]!)));
    expect(run.seconds).toBeGreaterThanOrEqual(0.05);
    expect(run.perSecond).toBeCloseTo(run.signatures / run.seconds);
    expect(run.concurrency).toBe(2);
  });

  it("peakRss sees memory held during the run", async () => {
    const { result, peakMib, beforeMib } = await peakRss(async () => {
      const held = Buffer.alloc(64 * 2 ** 20, 1); // touched, so resident
      await new Promise((r) => setTimeout(r, 60));
      return held.length;
    }, 5);
    expect(result).toBe(64 * 2 ** 20);
    expect(peakMib).toBeGreaterThanOrEqual(beforeMib + 60);
  });
});
