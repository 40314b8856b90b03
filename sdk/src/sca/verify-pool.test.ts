import { createHash, generateKeyPairSync, sign } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { HashAlgorithm } from "../gen/inkan/sam/v1/types_pb.js";
import { createSignatureVerifier } from "./signature-verifier.js";
import { createBatchSignatureVerifier, VerifyPool } from "./verify-pool.js";

// Issue 20: the SDK's signature check (T-2.2.1.8) on worker threads finds exactly what the
// one-thread check finds: the first signature in list order that does not verify.
const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const spki = new Uint8Array(publicKey.export({ format: "der", type: "spki" }));
const key = { spki, hashAlgorithm: HashAlgorithm.SHA256, expectedSignatures: 2_000 };
const docs = Array.from({ length: 600 }, (_, i) => Buffer.from(`document ${i}`));
const hashes = docs.map((d) => new Uint8Array(createHash("sha256").update(d).digest()));
const genuine = docs.map((d) => new Uint8Array(sign("sha256", d, privateKey)));
const inThread = createSignatureVerifier(key);
const firstFailure = (sigs: Uint8Array[]) => sigs.findIndex((s, i) => !inThread(hashes[i]!, s));

/** A deterministic pseudo-random generator (the test is repeatable). */
function random(seed: number): () => number {
  return () => ((seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);
}

const pools: VerifyPool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
});

describe("VerifyPool (issue 20, T-2.2.1.8)", () => {
  it("parity with the in-thread check over random valid and invalid signatures: the same first failing index, or none", async () => {
    const pool = new VerifyPool(3);
    pools.push(pool);
    const next = random(20);
    for (let round = 0; round < 12; round++) {
      const n = 64 + Math.floor(next() * 500);
      const sigs = genuine.slice(0, n).map((s) => new Uint8Array(s));
      const bad = round % 4 === 0 ? 0 : 1 + Math.floor(next() * 3); // some rounds all genuine
      for (let b = 0; b < bad; b++) {
        const at = Math.floor(next() * n);
        const kind = Math.floor(next() * 3);
        if (kind === 0) sigs[at]![Math.floor(next() * sigs[at]!.length)]! ^= 0x01; // a flipped bit
        else if (kind === 1) sigs[at] = genuine[(at + 1) % n]!; // another hash's signature
        else sigs[at] = new Uint8Array([0x30, 0x02, 0x01]); // garbage
      }
      expect(await pool.check(round, key, hashes.slice(0, n), sigs)).toBe(firstFailure(sigs));
    }
  }, 60_000);

  it("a forged signature in the middle is reported by its index even when later slices fail too", async () => {
    const pool = new VerifyPool(4);
    pools.push(pool);
    const sigs = [...genuine];
    sigs[333] = genuine[334]!;
    sigs[590] = genuine[0]!;
    expect(await pool.check(1, key, hashes, sigs)).toBe(333);
    expect(await pool.check(1, key, hashes, genuine)).toBe(-1);
  }, 60_000);

  it("fails closed: a worker that stops during a batch rejects the batch, and the next batch starts a new worker", async () => {
    let crash = true;
    const pool = new VerifyPool(2, { onDispatch: (w) => void (crash && w.terminate()) });
    pools.push(pool);
    await expect(pool.check(1, key, hashes, genuine)).rejects.toThrow(/worker thread stopped/);
    crash = false;
    expect(await pool.check(1, key, hashes, genuine)).toBe(-1);
  }, 60_000);

  it("fails closed: a key the worker cannot use rejects the batch", async () => {
    const pool = new VerifyPool(2);
    pools.push(pool);
    await expect(pool.check(9, { ...key, spki: new Uint8Array([1, 2, 3]) }, hashes, genuine)).rejects.toThrow(/signature check failed in a worker thread/);
  }, 60_000);

  it("createBatchSignatureVerifier: the first failing index on worker threads (large batch) and on this thread (small batch or threads 1)", async () => {
    const sigs = [...genuine];
    sigs[40] = genuine[41]!;
    sigs[400] = genuine[401]!;
    for (const threads of [2, 1]) {
      const verifier = createBatchSignatureVerifier({ ...key, threads });
      try {
        expect(await verifier.check(hashes, sigs)).toBe(40);
        expect(await verifier.check(hashes.slice(100), sigs.slice(100))).toBe(300);
        expect(await verifier.check(hashes.slice(0, 30), sigs.slice(0, 30))).toBe(-1);
        expect(await verifier.check(hashes, genuine)).toBe(-1);
      } finally {
        await verifier.close();
      }
    }
  }, 60_000);
});
