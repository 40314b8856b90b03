/**
 * Issue 20: seal checks remembered across calls (seal-cache.ts). A copy whose exact bytes and seal
 * passed is not sent to the module again; any change misses and is checked (T-2.2.2.2, R-3.1.1.1);
 * a failure is never remembered; the cache is bounded (LRU) and cleared on demand (module lost or
 * reconnected). Unit test: an HMAC key in Node stands for the module's record-seal key.
 */
import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { SystemKeys } from "../crypto/port.js";
import type { SignerRecord } from "../store/port.js";
import { IntegrityViolationError, RecordSealer } from "./record-sealer.js";
import { SealCache } from "./seal-cache.js";

function sealer(cache: SealCache): { sealer: RecordSealer; hmacs: () => number } {
  let calls = 0;
  const keys = { hmacSha256: async (_key: string, data: Uint8Array) => (calls++, new Uint8Array(createHmac("sha256", "module-key").update(data).digest())) } as unknown as SystemKeys;
  return { sealer: new RecordSealer({ keys, cache }), hmacs: () => calls };
}

const unsealed: Omit<SignerRecord, "seal"> = { kind: "signer", id: "sgn_1", version: 1, status: "ACTIVE", body: "{}" };

describe("seal checks remembered across calls (issue 20)", () => {
  it("a record the SAM sealed, or whose seal passed, is not sent to the module again; a cleared cache checks again", async () => {
    const cache = new SealCache();
    const { sealer: s, hmacs } = sealer(cache);
    const record = await s.seal<SignerRecord>(unsealed);
    const sealed = hmacs();
    for (let i = 0; i < 3; i++) await s.verify({ ...record, seal: new Uint8Array(record.seal) });
    expect(hmacs()).toBe(sealed);
    cache.clear();
    await s.verify(record);
    await s.verify(record);
    expect(hmacs()).toBe(sealed + 1);
  });

  it("T-2.2.2.2: an edited copy (body, status, version, id) or a seal copied from another record misses, is checked and refused, every time", async () => {
    const { sealer: s, hmacs } = sealer(new SealCache());
    const record = await s.seal<SignerRecord>(unsealed);
    const other = await s.seal<SignerRecord>({ ...unsealed, id: "sgn_2" });
    await s.verify(record);
    await s.verify(other);
    const forged: SignerRecord[] = [
      { ...record, body: "{ }" },
      { ...record, status: "SUSPENDED" },
      { ...record, version: 2 },
      { ...record, seal: other.seal },
      { ...other, id: "sgn_1" },
    ];
    const before = hmacs();
    for (const f of forged) {
      await expect(s.verify(f)).rejects.toBeInstanceOf(IntegrityViolationError);
      await expect(s.verify(f)).rejects.toBeInstanceOf(IntegrityViolationError); // never remembered
    }
    expect(hmacs() - before).toBe(2 * forged.length);
    await s.verify(record); // the genuine copy still passes
  });

  it("T-2.2.2.2: a read with a record's exact fields and seal is a hit; the object handed back changed by its caller, or a copy with a field added, removed or of another type, is checked and refused", async () => {
    const { sealer: s, hmacs } = sealer(new SealCache());
    const record = await s.seal<SignerRecord>({ ...unsealed, body: JSON.stringify({ note: "x".repeat(500) }) });
    const before = hmacs();
    const copy = { ...record, body: (" " + record.body).slice(1), seal: new Uint8Array(record.seal) }; // equal strings, other objects
    const got = await s.verify(copy);
    expect(hmacs()).toBe(before); // the fields' hit: no module call
    (got as { status: string }).status = "SUSPENDED"; // the caller's object is not the remembered copy
    const forged: object[] = [got, { ...record, extra: "x" }, { ...record, version: "1" }, { ...record, status: undefined }];
    const { status: _dropped, ...withoutStatus } = record;
    forged.push(withoutStatus);
    for (const f of forged) await expect(s.verify(f as SignerRecord)).rejects.toBeInstanceOf(IntegrityViolationError);
    expect(hmacs() - before).toBe(forged.length);
    await s.verify({ ...record });
    expect(hmacs() - before).toBe(forged.length); // the genuine fields still hit
  });

  it("is bounded: the least recently used seal goes first", async () => {
    const cache = new SealCache(2);
    const { sealer: s, hmacs } = sealer(cache);
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((id) => s.seal<SignerRecord>({ ...unsealed, id })));
    expect(cache.size.seals).toBe(2); // a was evicted by c
    const before = hmacs();
    await s.verify(b!); // hit, b is now the most recent
    await s.verify(a!); // miss: checked, evicts c
    await s.verify(b!); // hit
    await s.verify(c!); // miss
    expect(hmacs() - before).toBe(2);
  });

  it("derived keys are remembered by their exact input", () => {
    const cache = new SealCache();
    const input = new TextEncoder().encode("context\ntxn_1");
    cache.rememberDerivedKey(input, new Uint8Array([1, 2, 3]));
    expect(cache.derivedKey(new TextEncoder().encode("context\ntxn_1"))).toEqual(new Uint8Array([1, 2, 3]));
    expect(cache.derivedKey(new TextEncoder().encode("context\ntxn_2"))).toBeUndefined();
  });
});
