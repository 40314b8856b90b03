import { afterEach, describe, expect, it, vi } from "vitest";
import type { PurgeCounts } from "./port.js";
import { schedulePurge } from "./purge-schedule.js";

// Pure scheduling logic with a fake store; the purge itself is in the store contract suite.
const counts: PurgeCounts = { challenges: 1, sadTokens: 2, activationCodes: 0, jtis: 3, transactions: 1 };

afterEach(() => {
  vi.useRealTimers();
});

describe("schedulePurge", () => {
  it("purges on every tick what expired before now minus the retention, and reports the counts", async () => {
    vi.useFakeTimers();
    const calls: Date[] = [];
    const purged: PurgeCounts[] = [];
    const now = new Date("2026-11-25T12:00:00Z");
    const s = schedulePurge({ store: { purgeExpired: async (before) => (calls.push(before), counts) }, intervalMs: 60_000, retentionMs: 3_600_000, clock: () => now, onPurged: (c) => purged.push(c), onError: () => undefined });
    await vi.advanceTimersByTimeAsync(120_000);
    expect(calls).toEqual([new Date("2026-11-25T11:00:00Z"), new Date("2026-11-25T11:00:00Z")]);
    expect(purged).toEqual([counts, counts]);
    s.stop();
    await vi.advanceTimersByTimeAsync(120_000);
    expect(calls).toHaveLength(2);
  });

  it("reports a failed purge and keeps its schedule; overlapping runs share one store call", async () => {
    vi.useFakeTimers();
    const errors: unknown[] = [];
    let fail = true;
    let calls = 0;
    const s = schedulePurge({
      store: { purgeExpired: async () => (calls++, fail ? Promise.reject(new Error("disk")) : counts) },
      intervalMs: 1_000, retentionMs: 0, onError: (e) => errors.push(e),
    });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(errors).toHaveLength(1);
    fail = false;
    const [a, b] = await Promise.all([s.runOnce(), s.runOnce()]);
    expect(a).toBe(b);
    expect(calls).toBe(2);
    s.stop();
  });
});
