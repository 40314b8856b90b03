/**
 * The digest over a node's versioned events and its replay against signed anchors (issue 14),
 * with an in-memory store: pure logic, no crypto module.
 */
import { describe, expect, it } from "vitest";
import type { AuditRecord } from "../store/port.js";
import { recordVersioned, signerEnrolled, systemActor } from "./events.js";
import { newStoredRecord, ZERO_HASH } from "./record-form.js";
import {
  EMPTY_VERSIONED_DIGEST,
  extendVersionedDigest,
  replayVersionedJournal,
  sameVersionedDigest,
  versionedEntryOf,
  type VersionedAnchor,
  type VersionedDigest,
} from "./versioned-journal.js";

/** A chain of `n` records of node "n": every third one a versioned event of key k<i % 4>. */
function chain(n: number): AuditRecord[] {
  const records: AuditRecord[] = [];
  let prevHash = ZERO_HASH;
  for (let s = 1; s <= n; s++) {
    const { eventType, ...fields } = s % 3 === 0 ? recordVersioned({ key: `signer:k${s % 4}`, version: s }) : signerEnrolled({ actor: systemActor, signerId: `s${s}` });
    const record = newStoredRecord({ nodeId: "n", sequence: s, time: new Date(s * 1000), eventType, fields, prevHash });
    records.push(record);
    prevHash = record.hash;
  }
  return records;
}

/** The store's by-event read over an array (what the adapters do with their index). */
const storeOf = (records: AuditRecord[], calls: number[] = []) => ({
  async readAuditRecordsByEvent(req: { nodeId: string; event: string; fromSequence: number; limit: number }) {
    calls.push(req.fromSequence);
    return records.filter((r) => r.nodeId === req.nodeId && r.event === req.event && r.sequence >= req.fromSequence).slice(0, req.limit);
  },
});

/** The digest a node had at `sequence` (what its checkpoint there signed). */
function digestAt(records: AuditRecord[], sequence: number): VersionedDigest {
  let d = EMPTY_VERSIONED_DIGEST;
  for (const r of records) {
    const e = r.sequence <= sequence ? versionedEntryOf(r) : undefined;
    if (e) d = extendVersionedDigest(d, e);
  }
  return d;
}

const anchorAt = (records: AuditRecord[], sequence: number, label = "checkpoint"): VersionedAnchor => ({ sequence, versioned: digestAt(records, sequence), label });

describe("issue 14: the versioned digest", () => {
  it("covers each event's key, version and sequence, in order", () => {
    const a = { sequence: 3, key: "signer:x", version: 2 };
    const d1 = extendVersionedDigest(EMPTY_VERSIONED_DIGEST, a);
    expect(d1.count).toBe(1);
    expect(sameVersionedDigest(d1, extendVersionedDigest(EMPTY_VERSIONED_DIGEST, { ...a }))).toBe(true);
    for (const other of [{ ...a, version: 1 }, { ...a, key: "signer:y" }, { ...a, sequence: 4 }]) {
      expect(sameVersionedDigest(d1, extendVersionedDigest(EMPTY_VERSIONED_DIGEST, other))).toBe(false);
    }
    const b = { sequence: 6, key: "policy:security-policy", version: 4 };
    const ab = extendVersionedDigest(d1, b);
    const ba = extendVersionedDigest(extendVersionedDigest(EMPTY_VERSIONED_DIGEST, b), a);
    expect(sameVersionedDigest(ab, ba)).toBe(false);
  });

  it("reads the head a record.versioned record states; anything else or a malformed body is not one", () => {
    const [, , versioned, other] = chain(4);
    expect(versionedEntryOf(versioned!)).toEqual({ sequence: 3, key: "signer:k3", version: 3 });
    expect(versionedEntryOf(other!)).toBeUndefined();
    const edit = (details: unknown) => ({ ...versioned!, body: JSON.stringify({ actor: { kind: "ACTOR_KIND_SYSTEM" }, outcome: "AUDIT_OUTCOME_SUCCESS", details }) });
    for (const bad of [{ record: "signer:k3" }, { record: "", version: "3" }, { record: "signer:k3", version: "0" }, { record: "signer:k3", version: "03" }, { record: "signer:k3", version: 3 }, { record: 7, version: "3" }]) {
      expect(versionedEntryOf(edit(bad)), JSON.stringify(bad)).toBeUndefined();
    }
    expect(versionedEntryOf({ ...versioned!, body: "not json" })).toBeUndefined();
  });
});

describe("issue 14: replaying a node's versioned events against its checkpoints", () => {
  it("agrees with anchors at and between events, hands every event over in order, and pages", async () => {
    const records = chain(40);
    const seen: number[] = [];
    const calls: number[] = [];
    const replay = await replayVersionedJournal({
      store: storeOf(records, calls),
      nodeId: "n",
      anchors: [anchorAt(records, 30, "crypto module checkpoint"), anchorAt(records, 31), anchorAt(records, 40)],
      onEntry: (e) => seen.push(e.sequence),
      pageSize: 4,
    });
    expect(replay.problem).toBeUndefined();
    expect(seen).toEqual([3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39]);
    expect(replay.lastSequence).toBe(39);
    expect(replay.digest.count).toBe(13);
    expect(calls).toEqual([1, 13, 25, 37]); // pages of 4 from after the last one read
  });

  it("finds a versioned event deleted, edited (older version), or inserted before an anchor", async () => {
    const records = chain(30);
    const anchors = [anchorAt(records, 28)];
    const deleted = records.filter((r) => r.sequence !== 9);
    expect((await replayVersionedJournal({ store: storeOf(deleted), nodeId: "n", anchors })).problem).toMatch(/up to record 28 do not match .*deleted, edited or inserted/);
    const older = records.map((r) => (r.sequence === 9 ? { ...r, body: r.body.replace('"version":"9"', '"version":"2"') } : r));
    expect(versionedEntryOf(older[8]!)?.version).toBe(2);
    expect((await replayVersionedJournal({ store: storeOf(older), nodeId: "n", anchors })).problem).toMatch(/do not match/);
    const inserted = records.map((r) => (r.sequence === 10 ? { ...r, event: records[8]!.event, body: records[8]!.body } : r));
    expect((await replayVersionedJournal({ store: storeOf(inserted), nodeId: "n", anchors })).problem).toMatch(/do not match/);
    const renamed = records.map((r) => (r.sequence === 9 ? { ...r, event: "signer.enrolled" } : r)); // hidden from the by-event read
    expect((await replayVersionedJournal({ store: storeOf(renamed), nodeId: "n", anchors })).problem).toMatch(/do not match/);
  });

  it("an anchor beyond the last versioned event compares the final digest: a deleted last event is found", async () => {
    const records = chain(30);
    const anchors = [anchorAt(records, 30)];
    expect((await replayVersionedJournal({ store: storeOf(records.filter((r) => r.sequence !== 30)), nodeId: "n", anchors })).problem).toMatch(/do not match/);
  });

  it("a malformed versioned event is a problem, not skipped", async () => {
    const records = chain(12).map((r) => (r.sequence === 6 ? { ...r, body: "{}" } : r));
    expect((await replayVersionedJournal({ store: storeOf(records), nodeId: "n", anchors: [] })).problem).toBe("the versioned event at record 6 is malformed");
  });

  it("events after the newest anchor are not covered by it (the crash window: ROLLBACK.md)", async () => {
    const records = chain(30);
    const anchors = [anchorAt(records, 20)];
    const tailDeleted = records.filter((r) => r.sequence !== 27);
    const replay = await replayVersionedJournal({ store: storeOf(tailDeleted), nodeId: "n", anchors });
    expect(replay.problem).toBeUndefined(); // the AuditLog's chain check covers records after its checkpoint
    expect(replay.digest.count).toBe(9);
  });
});
