/**
 * The restore state read from the audit log (issue 22, restore-state.ts), pure logic over a fake
 * audit store: the newest restore is pending until acknowledged; an older one is superseded.
 */
import { describe, expect, it } from "vitest";
import type { AuditRecord } from "../store/port.js";
import { findPendingRestore, parseHighWaterMarks, STORE_RESTORE_ACKNOWLEDGED, STORE_RESTORED } from "./restore-state.js";

type Step = ["restored" | "acknowledged", string];

function storeOf(steps: Step[]) {
  const records: AuditRecord[] = steps.map(([kind, restoreId], i) => ({
    nodeId: kind === "restored" ? "inkan-cli" : "node-1",
    sequence: i + 1,
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
    event: kind === "restored" ? STORE_RESTORED : STORE_RESTORE_ACKNOWLEDGED,
    body: JSON.stringify({ details: { restore_id: restoreId, snapshot_id: `snap-${restoreId}`, old_high_water_marks: "node-1=9", new_high_water_marks: "node-1=4" } }),
    prevHash: new Uint8Array(32),
    hash: new Uint8Array(32),
  }));
  return {
    listAuditNodes: async () => [...new Set(records.map((r) => r.nodeId))],
    readAuditRecordsByEvent: async (q: { nodeId: string; event: string; fromSequence: number; limit: number }) =>
      records.filter((r) => r.nodeId === q.nodeId && r.event === q.event && r.sequence >= q.fromSequence).slice(0, q.limit),
  };
}

describe("issue 22: the restore state in the audit log", () => {
  it.each<[string, Step[], string | undefined]>([
    ["never restored", [], undefined],
    ["restored, not acknowledged", [["restored", "a"]], "a"],
    ["restored and acknowledged", [["restored", "a"], ["acknowledged", "a"]], undefined],
    ["restored twice, the newer acknowledged (the older is superseded)", [["restored", "a"], ["restored", "b"], ["acknowledged", "b"]], undefined],
    ["restored twice, only the older acknowledged", [["restored", "a"], ["restored", "b"], ["acknowledged", "a"]], "b"],
    ["acknowledged, then restored again", [["restored", "a"], ["acknowledged", "a"], ["restored", "b"]], "b"],
  ])("%s", async (_name, steps, pending) => {
    const found = await findPendingRestore(storeOf(steps));
    expect(found?.restoreId).toBe(pending);
    if (found) expect(found).toMatchObject({ snapshotId: `snap-${pending}`, oldHighWaterMarks: { "node-1": 9 }, newHighWaterMarks: { "node-1": 4 } });
  });

  it("a malformed high-water mark is an integrity violation, not a guess", () => {
    expect(parseHighWaterMarks("node-1=3,inkan-cli=12")).toEqual({ "node-1": 3, "inkan-cli": 12 });
    expect(() => parseHighWaterMarks("node-1=x")).toThrow(/malformed/);
    expect(() => parseHighWaterMarks("=3")).toThrow(/malformed/);
  });
});
