import { describe, expect, it } from "vitest";
import { applyServerHeapPolicy, heapGrowingPercent } from "./heap-policy.js";

describe("the SAM process's heap policy (issue 20)", () => {
  it("sets V8's heap growing percent once, to the policy's value (well below V8's default growth of up to 4x)", () => {
    const set: string[] = [];
    applyServerHeapPolicy((flags) => set.push(flags));
    expect(set).toEqual([`--heap-growing-percent=${heapGrowingPercent}`]);
    expect(heapGrowingPercent).toBeGreaterThan(0);
    expect(heapGrowingPercent).toBeLessThanOrEqual(100);
  });
});
