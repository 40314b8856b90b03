/**
 * The heads of versioned records (issue 14) with fakes: the journal is an in-memory AuditLog, the
 * other nodes' chains an in-memory store. What is journaled when, what is refused, and the races
 * a read may lose against a write without being a rollback.
 */
import { describe, expect, it } from "vitest";
import type { AuditLog } from "../audit/audit-log.js";
import { recordVersioned, type AuditEvent } from "../audit/events.js";
import type { NodeJournalStore } from "../audit/node-journal.js";
import { newStoredRecord, ZERO_HASH } from "../audit/record-form.js";
import { InkanError } from "../errors.js";
import type { AuditRecord, SignerRecord } from "../store/port.js";
import { MemoryFreshness } from "./freshness.js";
import { RecordHeads, type RecordHeadsOptions } from "./record-heads.js";
import { IntegrityViolationError, RecordSealer } from "./record-sealer.js";
import { STALE_REREADS, VerifiedRecords } from "./sealed-records.js";

/** An AuditLog that keeps what it is given; `fail` makes the next writes fail like a full disk. */
class MemoryAuditLog implements AuditLog {
  events: AuditEvent[] = [];
  fail = false;
  async record(event: AuditEvent): Promise<void> {
    await Promise.resolve();
    if (this.fail) throw new InkanError("AUDIT_FAILURE", "the audit record could not be written");
    this.events.push(event);
  }
  get journaled(): string[] {
    return this.events.filter((e) => e.eventType === "record.versioned").map((e) => `${e.details?.["record"]}@${e.details?.["version"]}`);
  }
}

/** Other nodes' chains, for the tail. */
function otherNodes(records: AuditRecord[]): NodeJournalStore {
  return {
    listAuditNodes: async () => [...new Set(records.map((r) => r.nodeId))].sort(),
    readAuditRecordsByEvent: async (req) =>
      records.filter((r) => r.nodeId === req.nodeId && r.event === req.event && r.sequence >= req.fromSequence).slice(0, req.limit),
    readAuditRecords: async () => [],
    latestAuditRecord: async () => undefined,
    latestAuditCheckpoint: async () => undefined,
  };
}

function versionedRecord(nodeId: string, sequence: number, key: string, version: number): AuditRecord {
  const { eventType, ...fields } = recordVersioned({ key, version });
  return newStoredRecord({ nodeId, sequence, time: new Date(0), eventType, fields, prevHash: ZERO_HASH });
}

function heads(options: Partial<RecordHeadsOptions> = {}): { heads: RecordHeads; audit: MemoryAuditLog } {
  const audit = new MemoryAuditLog();
  const h = new RecordHeads({
    nodeId: "node-1",
    audit,
    store: otherNodes([]),
    cryptoModule: undefined as never, // loadOtherNodes is not called here
    ownHeads: new Map(),
    tailIntervalMs: 0,
    ...options,
  });
  return { heads: h, audit: (options.audit as MemoryAuditLog | undefined) ?? audit };
}

describe("issue 14: RecordHeads", () => {
  it("advance journals each new head in this node's chain; the same or an older version again journals nothing", async () => {
    const { heads: h, audit } = heads();
    await h.advance("signer:s1", 1);
    await h.advance("signer:s1", 2);
    await h.advance("signer:s1", 2);
    await h.advance("signer:s1", 1); // a concurrent write that finished after a newer one
    await h.advance("policy:security-policy", 4);
    expect(audit.journaled).toEqual(["signer:s1@1", "signer:s1@2", "policy:security-policy@4"]);
    expect(h.head("signer:s1")).toBe(2);
    await expect(h.advance("signer:s1", 0)).rejects.toBeInstanceOf(RangeError);
    await expect(h.advance("signer:s1", 1.5)).rejects.toBeInstanceOf(RangeError);
  });

  it("check refuses a copy older than the head (INTEGRITY_VIOLATION, kind and id from the key) and a deleted record (version 0)", async () => {
    const { heads: h } = heads({ ownHeads: new Map([["factor:fct_1", 3]]) });
    const err = await h.check("factor:fct_1", 2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IntegrityViolationError);
    expect(err).toMatchObject({ code: "INTEGRITY_VIOLATION", recordKind: "factor", recordId: "fct_1" });
    await expect(h.check("factor:fct_1", 0)).rejects.toBeInstanceOf(IntegrityViolationError);
    await h.check("factor:fct_1", 3);
    await h.check("factor:unknown", 0); // never seen: nothing to compare
    expect(h.head("factor:unknown")).toBe(0);
  });

  it("check accepts a newer copy (another node's write, or a write whose entry a crash lost), raises the head and journals it", async () => {
    const { heads: h, audit } = heads({ ownHeads: new Map([["credential:crd_1", 2]]) });
    await h.check("credential:crd_1", 5);
    expect(h.head("credential:crd_1")).toBe(5);
    expect(audit.journaled).toEqual(["credential:crd_1@5"]);
    await expect(h.check("credential:crd_1", 4)).rejects.toBeInstanceOf(IntegrityViolationError);
  });

  it("a writer whose version a reader journaled first waits for that entry; when the journal cannot be written both fail (fail closed)", async () => {
    const { heads: h, audit } = heads();
    const read = h.check("signer:s1", 1); // the reader saw version 1 before its writer advanced
    audit.fail = true;
    const write = h.advance("signer:s1", 1);
    await expect(read).rejects.toMatchObject({ code: "AUDIT_FAILURE" });
    await expect(write).rejects.toMatchObject({ code: "AUDIT_FAILURE" });
    await expect(h.advance("signer:s1", 2)).rejects.toMatchObject({ code: "AUDIT_FAILURE" });
    expect(h.head("signer:s1")).toBe(2); // the memory still protects this process
  });

  it("the tail raises heads from other nodes' versioned events, once each, without journaling them", async () => {
    const records = [versionedRecord("node-2", 4, "signer:s1", 7), versionedRecord("node-1", 9, "signer:s1", 99)];
    const { heads: h, audit } = heads({ store: otherNodes(records) });
    await h.tail();
    expect(h.head("signer:s1")).toBe(7); // its own chain is not tailed
    records.push(versionedRecord("node-2", 8, "credential:c", 2), versionedRecord("node-3", 1, "signer:s1", 9));
    await h.tail();
    expect([h.head("signer:s1"), h.head("credential:c")]).toEqual([9, 2]);
    expect(audit.journaled).toEqual([]);
  });
});

describe("issue 14: VerifiedRecords with heads", () => {
  const seal = async (_key: string, data: Uint8Array) => new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  const keys = { hmacSha256: seal, encrypt: async () => new Uint8Array(), decrypt: async () => new Uint8Array() };

  /** A store of signer rows; `during` runs inside a read (a concurrent write), `older` is served instead for `times` reads. */
  function setup() {
    const rows = new Map<string, SignerRecord>();
    const served: { older?: SignerRecord; times: number; during?: () => Promise<void> } = { times: 0 };
    const pick = async (id: string) => {
      const copy = rows.get(id);
      const during = served.during;
      served.during = undefined;
      await during?.();
      if (served.older && served.times > 0) {
        served.times--;
        return served.older;
      }
      return copy;
    };
    const store = {
      async createRecord(r: SignerRecord) {
        rows.set(r.id, r);
      },
      async updateRecord(r: SignerRecord, expected: number) {
        if (rows.get(r.id)?.version !== expected) return false;
        rows.set(r.id, r);
        return true;
      },
      getRecord: (_kind: string, id: string) => pick(id),
      async listRecords() {
        const record = await pick("sgn_1");
        return { items: record ? [record] : [], next: undefined };
      },
    };
    const violations: string[] = [];
    const sealer = new RecordSealer({ keys, onViolation: (kind, id, cause) => void violations.push(`${kind}/${id}/${cause}`) });
    const records = new VerifiedRecords(store as never, sealer, new MemoryFreshness());
    return { rows, served, records, violations };
  }
  const signer = { kind: "signer" as const, id: "sgn_1", status: "ACTIVE" as const, body: "{}" };
  const list = (records: VerifiedRecords) => records.list({ kind: "signer", where: {}, limit: 10 });

  it("an older, validly sealed copy put back is refused and reported once as rolled back; so is the record deleted", async () => {
    const { rows, records, violations } = setup();
    const v1 = await records.create<SignerRecord>({ ...signer, version: 1 });
    await records.update<SignerRecord>({ ...signer, version: 2, body: '{"lockedAt":"2030-01-01T00:00:00Z"}' }, 1);
    rows.set("sgn_1", v1); // the insider's restore
    await expect(records.get("signer", "sgn_1")).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION", recordKind: "signer", recordId: "sgn_1" });
    expect(violations).toEqual(["signer/sgn_1/rolled-back"]);
    await expect(list(records)).rejects.toBeInstanceOf(IntegrityViolationError);
    rows.delete("sgn_1");
    await expect(records.get("signer", "sgn_1")).rejects.toBeInstanceOf(IntegrityViolationError);
    expect(violations).toHaveLength(3);
  });

  it("a read by id that a write overtook (the copy it read was current when read) is not a rollback", async () => {
    const { served, records, violations } = setup();
    await records.create<SignerRecord>({ ...signer, version: 1 });
    served.during = async () => void (await records.update<SignerRecord>({ ...signer, version: 2, body: '{"failedAttempts":1}' }, 1));
    expect((await records.get("signer", "sgn_1"))?.version).toBe(1);
    expect(violations).toEqual([]);
  });

  it(`a list whose copy looks old when it returns is read again (${STALE_REREADS} times); still old, it is a rollback`, async () => {
    const { served, records, violations } = setup();
    const v1 = await records.create<SignerRecord>({ ...signer, version: 1 });
    await records.update<SignerRecord>({ ...signer, version: 2, body: '{"failedAttempts":1}' }, 1);
    served.older = v1;
    served.times = STALE_REREADS;
    expect((await list(records)).items.map((r) => r.version)).toEqual([2]);
    expect(violations).toEqual([]);
    served.times = STALE_REREADS + 1;
    await expect(list(records)).rejects.toBeInstanceOf(IntegrityViolationError);
    expect(violations).toEqual(["signer/sgn_1/rolled-back"]);
  });
});
