/**
 * Issue 20: a record's seal is checked in the module once per call (withSealMemo), never less: the
 * same copy read again inside the call is not sent to the module a second time; any change (body,
 * status, version, seal) is checked again and a forged copy is refused (T-2.2.2.2, R-3.1.1.1); outside
 * a call, and in the next call, every read is checked in the module. Unit test: an HMAC key in Node
 * stands for the module's record-seal key, counting its calls.
 */
import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { SystemKeys } from "../crypto/port.js";
import type { SignerRecord } from "../store/port.js";
import { IntegrityViolationError, RecordSealer } from "./record-sealer.js";
import { withSealMemo } from "./seal-memo.js";

function sealer(): { sealer: RecordSealer; hmacs: () => number; violations: string[] } {
  let calls = 0;
  const violations: string[] = [];
  const keys = { hmacSha256: async (_key: string, data: Uint8Array) => (calls++, new Uint8Array(createHmac("sha256", "module-key").update(data).digest())) } as unknown as SystemKeys;
  return { sealer: new RecordSealer({ keys, onViolation: (kind, id) => void violations.push(`${kind}:${id}`) }), hmacs: () => calls, violations };
}

const unsealed: Omit<SignerRecord, "seal"> = { kind: "signer", id: "sgn_1", version: 1, status: "ACTIVE", body: "{}" };

describe("seal checks once per call (issue 20)", () => {
  it("R-3.1.1.1: inside one call the same copy is checked in the module once; outside a call and in the next call, every time", async () => {
    const { sealer: s, hmacs } = sealer();
    const record = await s.seal<SignerRecord>(unsealed);
    const sealed = hmacs();
    await withSealMemo(async () => {
      for (let i = 0; i < 4; i++) await s.verify({ ...record, seal: new Uint8Array(record.seal) }); // a fresh copy of the same row each read
    });
    expect(hmacs() - sealed).toBe(1);
    await withSealMemo(async () => void (await s.verify(record)));
    expect(hmacs() - sealed).toBe(2);
    await s.verify(record);
    await s.verify(record);
    expect(hmacs() - sealed).toBe(4);
  });

  it("T-2.2.2.2: inside a call that already checked a record, an edited copy (status, version) or a copied seal is checked again and refused", async () => {
    const { sealer: s, violations } = sealer();
    const record = await s.seal<SignerRecord>(unsealed);
    const other = await s.seal<SignerRecord>({ ...unsealed, id: "sgn_2" });
    await withSealMemo(async () => {
      await s.verify(record);
      await expect(s.verify({ ...record, status: "SUSPENDED" } as SignerRecord)).rejects.toBeInstanceOf(IntegrityViolationError);
      await expect(s.verify({ ...record, version: 2 })).rejects.toBeInstanceOf(IntegrityViolationError);
      await expect(s.verify({ ...record, seal: other.seal })).rejects.toBeInstanceOf(IntegrityViolationError);
      await expect(s.verify({ ...other, id: "sgn_1" })).rejects.toBeInstanceOf(IntegrityViolationError);
      await s.verify(record); // the genuine copy still passes
    });
    expect(violations).toEqual(["signer:sgn_1", "signer:sgn_1", "signer:sgn_1", "signer:sgn_1"]);
  });

  it("a failed check is never remembered: the same forged copy read twice in one call is refused twice", async () => {
    const { sealer: s, hmacs } = sealer();
    const record = await s.seal<SignerRecord>(unsealed);
    const forged = { ...record, body: '{"x":1}' };
    const before = hmacs();
    await withSealMemo(async () => {
      await expect(s.verify(forged)).rejects.toBeInstanceOf(IntegrityViolationError);
      await expect(s.verify(forged)).rejects.toBeInstanceOf(IntegrityViolationError);
    });
    expect(hmacs() - before).toBe(2);
  });
});
