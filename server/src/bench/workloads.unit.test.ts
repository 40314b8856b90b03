import { describe, expect, it } from "vitest";
import { defaultPolicyPinHashCost, pinCheckCpu, singleTxCpuLine, streamAll, transactionCpu, transactionCpuGoal } from "./workloads.js";

// streamAll's reading of a SignStream against the sam.proto contract, with scripted streams.
type Msg = { signatures: { index: number; signature: Uint8Array }[]; resumeToken: string; resumeIndex: number; signaturesRemaining: number };
const sig = (index: number) => ({ index, signature: new Uint8Array([index]) });
const run = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => sig(from + i));

function scripted(streams: Msg[][]) {
  const calls: { sadToken: string; startIndex: number }[] = [];
  return {
    calls,
    sam: {
      signStream(req: { sadToken: string; startIndex: number }) {
        calls.push(req);
        const msgs = streams[calls.length - 1] ?? [];
        return (async function* () { yield* msgs; })();
      },
    } as never,
  };
}

describe("streamAll (SignStream client side)", () => {
  it("reads one stream to the end: every signature once, in index order", async () => {
    const { sam, calls } = scripted([[
      { signatures: [], resumeToken: "r0", resumeIndex: 0, signaturesRemaining: 5 },
      { signatures: run(0, 3), resumeToken: "", resumeIndex: 0, signaturesRemaining: 2 },
      { signatures: run(3, 5), resumeToken: "", resumeIndex: 0, signaturesRemaining: 0 },
    ]]);
    const seen: number[] = [];
    expect(await streamAll(sam, 5, "t", (i) => seen.push(i))).toBe(1);
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(calls).toEqual([{ sadToken: "t", startIndex: 0 }]);
  });

  it("resumes a stream that ended with signatures remaining: newest resume token, next index", async () => {
    const { sam, calls } = scripted([
      [
        { signatures: [], resumeToken: "r0", resumeIndex: 0, signaturesRemaining: 4 },
        { signatures: run(0, 2), resumeToken: "r2", resumeIndex: 2, signaturesRemaining: 2 },
      ],
      [
        { signatures: [], resumeToken: "r2b", resumeIndex: 2, signaturesRemaining: 2 },
        { signatures: run(2, 4), resumeToken: "", resumeIndex: 0, signaturesRemaining: 0 },
      ],
    ]);
    expect(await streamAll(sam, 4, "t")).toBe(2);
    expect(calls).toEqual([{ sadToken: "t", startIndex: 0 }, { sadToken: "r2", startIndex: 2 }]);
  });

  it("refuses a gap or a repeat in the indices, and a stream that stops without progress", async () => {
    await expect(streamAll(scripted([[{ signatures: [sig(0), sig(2)], resumeToken: "", resumeIndex: 0, signaturesRemaining: 0 }]]).sam, 3, "t")).rejects.toThrow(/index 2, expected 1/);
    await expect(streamAll(scripted([[{ signatures: [], resumeToken: "r", resumeIndex: 0, signaturesRemaining: 3 }]]).sam, 3, "t")).rejects.toThrow(/stopped at index 0/);
    await expect(streamAll(scripted([[{ signatures: run(0, 1), resumeToken: "", resumeIndex: 0, signaturesRemaining: 0 }]]).sam, 3, "t")).rejects.toThrow(/stopped at index 1/);
  });
});

// Issue 20: the single-document transaction's CPU against what the goal rate allows. Arithmetic and plumbing only: no speed asserted.
describe("CPU per transaction (issue 20)", () => {
  it("server + client CPU over every transaction of the window, and the most transactions a second the cores give at that cost", () => {
    const t = transactionCpu({ server: 5.888, client: 1.024 }, 256, 2);
    expect(t.cpuMs).toBeCloseTo(27, 9); // (5.888 + 1.024) s / 256
    expect(t.serverCpuMs).toBeCloseTo(23, 9);
    expect(t.ceilingPerSecond).toBeCloseTo(2_000 / 27, 9);
    expect(() => transactionCpu({ server: 1, client: 0 }, 0, 2)).toThrow(RangeError);
  });

  it("the goal is 0.04 x the raw mean, and allows cores x 1000 / goal ms of CPU per transaction", () => {
    expect(transactionCpuGoal(8_800, 2).goalPerSecond).toBeCloseTo(352, 9);
    expect(transactionCpuGoal(8_800, 2).allowedCpuMs).toBeCloseTo(2_000 / 352, 9);
    expect(transactionCpuGoal(10_000, 4, 0.1)).toEqual({ goalPerSecond: 1_000, allowedCpuMs: 4 });
  });

  it("prints the goal, the allowed and the used CPU per transaction and the PIN check's share of each, from a run's figures or their medians", () => {
    const f = { single_tx_goal_per_s_64: 352, single_tx_goal_cpu_ms_64: 5.68, single_tx_cpu_ms_64: 27.1, single_tx_cpu_ceiling_per_s_64: 73.8, single_tx_cpu_transactions_64: 256, pin_check_ms: 5.5, cpus: 2 };
    expect(singleTxCpuLine(f)).toBe(
      "CPU per transaction: the goal (0.04 x raw) is 352.0 tx/s, which allows 5.68 ms of CPU per transaction on 2 cores; " +
        "this run used 27.10 ms (server + client, over all 256 transactions of its CPU window, warm-up included; at most 73.8 tx/s on these cores at that cost); " +
        "one PIN check 5.50 ms = 97% of the allowed, 20% of the used",
    );
    expect(singleTxCpuLine(f, "the median")).toContain("; the median used 27.10 ms");
    expect(singleTxCpuLine({ ...f, pin_check_ms: null })).toBeUndefined(); // figures from before pin_check_ms
  });

  it("the PIN check is timed at the default policy's scrypt cost (issue 20's decision: N = 2^12, r = 8, p = 1), as many checks as asked", async () => {
    expect(defaultPolicyPinHashCost()).toEqual({ N: 2 ** 12, r: 8, p: 1 });
    const cheap = { N: 2 ** 10, r: 8, p: 1 };
    const r = await pinCheckCpu(3, cheap);
    expect(r).toMatchObject({ checks: 3, cost: cheap });
    expect(Number.isFinite(r.medianMs) && r.medianMs >= 0).toBe(true);
    expect((await pinCheckCpu(1)).cost).toEqual(defaultPolicyPinHashCost());
    await expect(pinCheckCpu(0)).rejects.toThrow(RangeError);
  });
});
