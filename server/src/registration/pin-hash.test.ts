/**
 * The PIN hash's cost as a policy setting (issue 20, R-3.1.1.2): a hash made with other scrypt
 * parameters still verifies and is replaced by one with the policy's on its first successful
 * check; a failed check changes nothing. Unit tests of pure logic: the module's HMAC is a local
 * HMAC and the sealed records a fake that records its updates (the lockout's integration tests,
 * lockout.test.ts and activation.test.ts, cover the same functions over the real server).
 */
import canonicalize from "canonicalize";
import { createHmac, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { defaultPinHashCost, type PinHashCost } from "../admin/security-policy.js";
import type { FactorRecord } from "../store/port.js";
import { checkPinFactor, hashedWith, hashPin, verifyPin, type PinFactorBody } from "./pin-hash.js";

const hmacKey = randomBytes(32);
const crypto = {
  hmacSha256: async (_key: string, data: Uint8Array) => new Uint8Array(createHmac("sha256", hmacKey).update(data).digest()),
  randomBytes: async (n: number) => new Uint8Array(randomBytes(n)),
};

function fakeRecords() {
  const updates: Array<{ record: Omit<FactorRecord, "seal">; expectedVersion: number }> = [];
  return {
    updates,
    update: async <R,>(record: unknown, expectedVersion: number) => {
      updates.push({ record: record as Omit<FactorRecord, "seal">, expectedVersion });
      return record as R;
    },
  };
}

const factorOf = (body: PinFactorBody): FactorRecord =>
  ({ kind: "factor", id: "fac-1", version: 3, signerId: "sig-1", type: "PIN", status: "ACTIVE", body: canonicalize(body)!, seal: "x" }) as unknown as FactorRecord;

const old: PinHashCost = { N: 2 ** 15, r: 8, p: 1 }; // the cost before issue 20
const setAt = new Date("2026-01-02T03:04:05.000Z");

describe("PIN hash cost (issue 20, R-3.1.1.2)", () => {
  it("hashes with the default cost N = 2^12, r = 8, p = 1 and stores the cost with the hash", async () => {
    const body = await hashPin(crypto, "123456", setAt);
    expect(body.params).toEqual({ N: 4096, r: 8, p: 1, keyLength: 32 });
    expect(defaultPinHashCost).toEqual({ N: 4096, r: 8, p: 1 });
    expect(await verifyPin(crypto, "123456", body)).toBe(true);
    expect(await verifyPin(crypto, "123457", body)).toBe(false);
  });

  it("R-3.1.1.2: a PIN hashed with the former 2^15 cost still verifies and is re-hashed with the policy's on success", async () => {
    const body = await hashPin(crypto, "123456", setAt, old);
    const records = fakeRecords();
    expect(await checkPinFactor({ crypto, records }, factorOf(body), "123456", defaultPinHashCost)).toBe(true);
    expect(records.updates).toHaveLength(1);
    const { record, expectedVersion } = records.updates[0]!;
    expect(expectedVersion).toBe(3);
    expect(record.version).toBe(4);
    expect(record.status).toBe("ACTIVE");
    const rehashed = JSON.parse(record.body) as PinFactorBody;
    expect(rehashed.params).toEqual({ N: 4096, r: 8, p: 1, keyLength: 32 });
    expect(rehashed.setAt).toBe(body.setAt); // the PIN was not changed, only re-hashed
    expect(rehashed.salt).not.toBe(body.salt);
    expect(hashedWith(rehashed, defaultPinHashCost)).toBe(true);
    expect(await verifyPin(crypto, "123456", rehashed)).toBe(true);
    expect(await verifyPin(crypto, "654321", rehashed)).toBe(false);
  });

  it("R-3.1.1.2: a wrong PIN against an old-cost hash is refused and re-hashes nothing", async () => {
    const records = fakeRecords();
    expect(await checkPinFactor({ crypto, records }, factorOf(await hashPin(crypto, "123456", setAt, old)), "000000", defaultPinHashCost)).toBe(false);
    expect(records.updates).toHaveLength(0);
  });

  it("a hash already at the policy's cost is not rewritten", async () => {
    const records = fakeRecords();
    expect(await checkPinFactor({ crypto, records }, factorOf(await hashPin(crypto, "123456", setAt)), "123456", defaultPinHashCost)).toBe(true);
    expect(records.updates).toHaveLength(0);
  });

  it("a store failure during the re-hash fails the check closed (the error propagates)", async () => {
    const records = { update: async () => Promise.reject(new Error("disk full")) };
    await expect(checkPinFactor({ crypto, records }, factorOf(await hashPin(crypto, "123456", setAt, old)), "123456", defaultPinHashCost)).rejects.toThrow(/disk full/);
  });
});
