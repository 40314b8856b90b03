import { describe, expect, it } from "vitest";
import { combine, loadWarning, median, medianOfRuns, parseRuns, summaryLines } from "./runs.js";

// Issue 20: `npm run bench -- --runs N` reports each figure as the median of N runs, with every run's values.
describe("bench --runs (issue 20)", () => {
  it("median: the middle value of an odd count, the mean of the middle two of an even count, whatever the order", () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4_000, 9_000, 5_000, 6_000])).toBe(5_500);
    expect(median([7])).toBe(7);
    expect(median([6_781.2, 6_762.9])).toBe(6_772.05); // no binary noise (6772.049999999999)
    expect(median([0.0024, 0.0017])).toBe(0.00205);
    expect(median([3, 4])).toBe(3.5);
    expect(() => median([])).toThrow(RangeError);
  });

  it("the median of three runs under the existing key names, plus every run's full figures", () => {
    const runs = [
      { stream_100k_sigs_per_s: 5_000, stream_100k_ratio: 0.6, stream_server_rss_growth_mb: 40, server_own_process: true, unreliable_ratios: ["signhash_1"], brackets: { stream_100k: { raw_before: 9_000, unreliable: false } } },
      { stream_100k_sigs_per_s: 6_000, stream_100k_ratio: 0.5, stream_server_rss_growth_mb: 90, server_own_process: true, unreliable_ratios: [], brackets: { stream_100k: { raw_before: 10_000, unreliable: true } } },
      { stream_100k_sigs_per_s: 5_500, stream_100k_ratio: 0.7, stream_server_rss_growth_mb: 50, server_own_process: true, unreliable_ratios: ["signhash_1", "single_tx_64"], brackets: { stream_100k: { raw_before: 11_000, unreliable: false } } },
    ];
    const out = medianOfRuns(runs);
    // Each figure is its own median (not the figures of one "median run").
    expect(out).toMatchObject({ stream_100k_sigs_per_s: 5_500, stream_100k_ratio: 0.6, stream_server_rss_growth_mb: 50, server_own_process: true });
    expect(out["unreliable_ratios"]).toEqual(["signhash_1", "single_tx_64"]); // unreliable in any run
    expect(out["brackets"]).toEqual({ stream_100k: { raw_before: 10_000, unreliable: true } });
    expect(out.runs).toEqual(runs);
  });

  it("a figure a run did not measure (null) is left out of its median; null when no run measured it", () => {
    expect(combine([null, 3, 5])).toBe(4);
    expect(combine([null, null])).toBeNull();
    expect(combine(["grpc", "grpc"])).toBe("grpc");
  });

  it("issue 20: the single-document CPU figures are medians like the others; the server's alone is null (left out) in an --in-process run", () => {
    const run = (cpu: number, server: number | null, pin: number) => ({ single_tx_cpu_ms_64: cpu, single_tx_server_cpu_ms_64: server, single_tx_goal_cpu_ms_64: 5.7, pin_check_ms: pin, pin_check_scrypt: { log2_n: 12, r: 8, p: 1 } });
    const runs = [run(27.1, 23.0, 5.5), run(25.2, null, 5.9), run(30.4, 24.4, 5.2)];
    expect(medianOfRuns(runs)).toMatchObject({ single_tx_cpu_ms_64: 27.1, single_tx_server_cpu_ms_64: 23.7, pin_check_ms: 5.5, pin_check_scrypt: { log2_n: 12, r: 8, p: 1 } });
    expect(summaryLines(runs)).toEqual([
      "single_tx_cpu_ms_64               27.1   (27.1, 25.2, 30.4)",
      "single_tx_server_cpu_ms_64        23.7   (23, -, 24.4)",
      "single_tx_goal_cpu_ms_64           5.7   (5.7, 5.7, 5.7)",
      "pin_check_ms                       5.5   (5.5, 5.9, 5.2)",
    ]);
  });

  it("prints each numeric figure's median with the runs' values in run order", () => {
    const lines = summaryLines([{ a_per_s: 3, label: "x" }, { a_per_s: 1, label: "x" }, { a_per_s: 2, label: "x" }]);
    expect(lines).toEqual(["a_per_s           2   (3, 1, 2)"]);
  });

  it("a run that starts at load 1.0 or more gets a warning (not an error); below 1.0 none", () => {
    expect(loadWarning(2, 0.99)).toBeUndefined();
    expect(loadWarning(2, 1.0)).toContain("load average 1.00 at the start of run 2: not a quiet run");
    expect(loadWarning(1, 6.5)).toContain("below 1.0");
  });

  it("--runs is a whole number of at least 1, 1 by default", () => {
    expect(parseRuns(undefined)).toBe(1);
    expect(parseRuns("3")).toBe(3);
    for (const bad of ["0", "-1", "1.5", "three", ""]) expect(() => parseRuns(bad)).toThrow(RangeError);
  });
});
