import { describe, expect, it } from "vitest";
import { streamAll } from "./workloads.js";

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
