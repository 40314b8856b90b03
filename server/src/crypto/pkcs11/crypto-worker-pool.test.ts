/**
 * Issue 20: the module's operations run on worker threads (crypto-worker-pool.ts), on a real
 * SoftHSM2 token. What is checked: every kind of operation answers from a worker thread, never
 * this one; the pool size setting is honoured; more calls than workers wait, and no session ever
 * serves two operations in flight; a worker killed mid-operation fails that call cleanly as
 * CRYPTO_MODULE_FAILURE (its session closed), and the next call works; a module error keeps its
 * CKR name for the log (not the client's message); close() stops the workers. Batches: the calls
 * made at once cross in about ceil(N / 32) messages each way (stats.messages); a failing job in a
 * batch fails alone; a worker that dies mid-batch fails all of its jobs; data-object writes run on
 * a worker too.
 */
import { createHash, createPublicKey, randomBytes, verify } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { threadId, type Worker } from "node:worker_threads";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { InkanError } from "../../errors.js";
import type { GeneratedKey } from "../port.js";
import type { WorkerJob } from "./crypto-worker-protocol.js";
import { toInkanError } from "./errors.js";
import { acquireLibrary, pkcs11js, releaseLibrary, type Pkcs11 } from "./library.js";
import type { Pkcs11CryptoModule } from "./pkcs11-crypto-module.js";
import { embeddedTokenPaths, initEmbeddedToken, openEmbeddedCryptoModule } from "./softhsm-token.js";

let dataDir: string;
let library: string;
let p11: Pkcs11;
let hsm: Pkcs11CryptoModule;
let ec: GeneratedKey;

const ecdsa = (data: Uint8Array) => ({ keyId: ec.keyId, scheme: "ECDSA" as const, hashAlgorithm: "SHA256" as const, data, format: "raw" as const });

/** "CKR_SESSION_HANDLE_INVALID" when the session is closed, "open" otherwise. */
function sessionState(hex: string): string {
  try {
    p11.C_GetSessionInfo(Buffer.from(hex, "hex"));
    return "open";
  } catch (err) {
    return (err as Error).message;
  }
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-crypto-workers-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir, { poolSize: 3 });
  library = embeddedTokenPaths(dataDir).library;
  p11 = acquireLibrary(library);
  ec = await hsm.generateKeyPair("EC_P256");
}, 60_000);

afterAll(async () => {
  await hsm?.close();
  if (library) releaseLibrary(library);
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("issue 20: PKCS#11 operations on worker threads", () => {
  it("every kind of operation is answered by a worker thread, never the event loop's thread", async () => {
    const pool = hsm.cryptoWorkers;
    const served: (number | undefined)[] = [];
    pool.testHooks = { onSettle: (e) => served.push(e.threadId) };
    try {
      const data = randomBytes(32);
      const signature = await hsm.sign(ecdsa(data));
      expect(await hsm.verify({ ...ecdsa(data), signature })).toBe(true);
      expect(await hsm.verify({ ...ecdsa(data), signature: randomBytes(64) })).toBe(false);
      expect(await hsm.hmacSha256("record-seal", data)).toHaveLength(32);
      expect(await hsm.hmacSha256("record-seal", new Uint8Array(0))).toHaveLength(32);
      const sealed = await hsm.encrypt("field-encryption", data, Buffer.from("aad"));
      expect(Buffer.from(await hsm.decrypt("field-encryption", sealed, Buffer.from("aad")))).toEqual(data);
      const auditKey = createPublicKey({ key: Buffer.from(await hsm.systemPublicKey("audit-signing")), format: "der", type: "spki" });
      const checkpoint = await hsm.signWithSystemKey("audit-signing", { hash: createHash("sha256").update("x").digest(), format: "raw" });
      expect(verify("sha256", Buffer.from("x"), { key: auditKey, dsaEncoding: "ieee-p1363" }, checkpoint)).toBe(true);
      expect(await hsm.randomBytes(48)).toHaveLength(48);
      const derive = await hsm.generateEncryptionKeyPair("EC_P256");
      const peer = createPublicKey({ key: Buffer.from(derive.publicKeySpki), format: "der", type: "spki" }).export({ format: "jwk" });
      const point = Buffer.concat([Buffer.from([4]), Buffer.from(peer.x ?? "", "base64url"), Buffer.from(peer.y ?? "", "base64url")]);
      expect(await hsm.deriveSharedSecret({ keyId: derive.keyId, peerPublicKey: point })).toHaveLength(32);
    } finally {
      pool.testHooks = undefined;
    }
    expect(served.length).toBeGreaterThanOrEqual(11);
    expect(served.every((id) => id !== undefined && id !== threadId)).toBe(true);
  });

  it("the event loop turns between the operations of a long batch (a setImmediate callback runs while they are in flight)", async () => {
    const pool = hsm.cryptoWorkers;
    let settled = 0;
    const turnsAt: number[] = [];
    pool.testHooks = { onSettle: () => settled++ };
    let done = false;
    const spin = () => {
      turnsAt.push(settled);
      if (!done) setImmediate(spin);
    };
    setImmediate(spin);
    try {
      await Promise.all(Array.from({ length: 300 }, () => hsm.sign(ecdsa(randomBytes(32)))));
    } finally {
      done = true;
      pool.testHooks = undefined;
    }
    // Turns happened while the batch was under way, not only before it started or after it ended.
    expect(turnsAt.some((n) => n > 0 && n < 300)).toBe(true);
  });

  it("the default pool size is the module's session count; cryptoWorkers sets it", async () => {
    expect(hsm.cryptoWorkers.size).toBe(3);
    const two = await openEmbeddedCryptoModule(dataDir, { workers: 2 });
    try {
      expect(two.cryptoWorkers.size).toBe(2);
      await Promise.all(Array.from({ length: 40 }, () => two.sign(ecdsa(randomBytes(32)))));
      expect(two.cryptoWorkers.stats.workers).toBe(2);
      expect(two.cryptoWorkers.threadIds.size).toBe(2);
    } finally {
      await two.close();
    }
    await expect(openEmbeddedCryptoModule(dataDir, { workers: 0 })).rejects.toMatchObject({ code: "INVALID_REQUEST" });
  });

  it("200 calls on 3 workers queue: at most 3 in flight, no session ever serves two operations in flight", async () => {
    const pool = hsm.cryptoWorkers;
    const inFlight = new Set<string>();
    let shared = 0;
    let most = 0;
    let mostWaiting = 0;
    pool.testHooks = {
      onDispatch: ({ session }) => {
        if (inFlight.has(session)) shared++;
        inFlight.add(session);
        most = Math.max(most, inFlight.size);
        mostWaiting = Math.max(mostWaiting, pool.stats.waiting);
      },
      onSettle: ({ session }) => inFlight.delete(session),
    };
    try {
      const hashes = Array.from({ length: 200 }, () => randomBytes(32));
      const signatures = await Promise.all(hashes.map((h) => hsm.sign(ecdsa(h))));
      const verified = await Promise.all(hashes.map((h, i) => hsm.verify({ ...ecdsa(h), signature: signatures[i] as Uint8Array })));
      expect(verified.every(Boolean)).toBe(true);
    } finally {
      pool.testHooks = undefined;
    }
    expect(shared).toBe(0);
    expect(most).toBeLessThanOrEqual(3);
    expect(mostWaiting).toBeGreaterThan(0);
  });

  it("a worker killed mid-operation fails that call as CRYPTO_MODULE_FAILURE, its session is closed, and the queued call runs on a new worker", async () => {
    const one = await openEmbeddedCryptoModule(dataDir, { workers: 1 });
    const signal = new SharedArrayBuffer(8); // [0] not released: the job is in flight until its worker dies
    try {
      const pool = one.cryptoWorkers;
      let held: { worker: Worker; session: string } | undefined;
      pool.testHooks = { onDispatch: (e) => (held ??= e) };
      const killed = pool.run({ op: "hold", signal }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const data = randomBytes(32);
      const queued = one.sign(ecdsa(data)); // waits for the only worker (after its key lookup)
      while (pool.stats.waiting === 0 || Atomics.load(new Int32Array(signal), 1) === 0) await new Promise((resolve) => setImmediate(resolve));
      expect(pool.stats).toMatchObject({ workers: 1, busy: 1, waiting: 1 });
      const killedThread = held?.worker.threadId;
      await held?.worker.terminate();
      const err = await killed;
      expect(err).toBeInstanceOf(InkanError);
      expect((err as InkanError).code).toBe("CRYPTO_MODULE_FAILURE");
      expect(sessionState(held?.session ?? "")).toBe("CKR_SESSION_HANDLE_INVALID");
      const signature = await queued;
      expect(await one.verify({ ...ecdsa(data), signature })).toBe(true);
      expect([...pool.threadIds]).toHaveLength(1); // the replacement answered, the killed worker never did
      expect(pool.threadIds.has(killedThread ?? -1)).toBe(false);
      expect(one.available).toBe(true);
    } finally {
      Atomics.store(new Int32Array(signal), 0, 1); // lets a worker that was not stopped answer, so close() returns
      await one.close();
    }
  });

  it("a CKR error in a worker reaches the adapter as the module's error (name kept), and that session is replaced", async () => {
    const pool = hsm.cryptoWorkers;
    const sessions: string[] = [];
    pool.testHooks = { onDispatch: ({ session }) => sessions.push(session) };
    let err: unknown;
    try {
      // A mechanism SoftHSM2 does not know, straight to the pool: the worker's C_SignInit fails.
      err = await pool.run({ op: "sign", mechanism: { mechanism: 0x7fff_fff0 }, key: Buffer.alloc(8), data: randomBytes(32), outLength: 64 }).then(
        () => undefined,
        (e: unknown) => e,
      );
    } finally {
      pool.testHooks = undefined;
    }
    expect(err).toBeInstanceOf(pkcs11js.Pkcs11Error);
    expect((err as Error).message).toMatch(/^CKR_/);
    expect(sessionState(sessions[0] ?? "")).toBe("CKR_SESSION_HANDLE_INVALID");
    const wrapped = toInkanError(err, "signing");
    expect(wrapped.code).toBe("CRYPTO_MODULE_FAILURE");
    expect(wrapped.message).not.toMatch(/CKR_/); // the client's message
    expect((wrapped as InkanError & { pkcs11?: string }).pkcs11).toBe((err as Error).message); // the log's
    expect(pino.stdSerializers.err(wrapped)).toMatchObject({ pkcs11: (err as Error).message }); // as the server's log writes it
  });

  it("jobs queued in the same turn cross in batches: N concurrent calls take about ceil(N / 32) messages each way, not N", async () => {
    const two = await openEmbeddedCryptoModule(dataDir, { workers: 2 });
    try {
      const pool = two.cryptoWorkers;
      await two.sign(ecdsa(randomBytes(32))); // the key's handles cached: the calls below reach the pool in one turn
      const before = { ...pool.stats.messages };
      const n = 256;
      const hashes = Array.from({ length: n }, () => randomBytes(32));
      const signatures = await Promise.all(hashes.map((h) => two.sign(ecdsa(h))));
      const verified = await Promise.all(hashes.map((h, i) => two.verify({ ...ecdsa(h), signature: signatures[i] as Uint8Array })));
      expect(verified.every(Boolean)).toBe(true);
      const sent = pool.stats.messages.sent - before.sent;
      const received = pool.stats.messages.received - before.received;
      // Two rounds of n jobs (sign, then verify): at most ceil(n / 32) batches each, plus one short batch per worker.
      expect(sent).toBeLessThanOrEqual(2 * (Math.ceil(n / 32) + 2));
      expect(received).toBe(sent); // one answer per batch
      // Straight to the pool, in one turn: the same.
      const mid = { ...pool.stats.messages };
      const random = await Promise.all(Array.from({ length: 100 }, () => pool.run({ op: "random", length: 16 })));
      expect(random.every((r) => r instanceof Uint8Array && r.length === 16)).toBe(true);
      expect(new Set(random.map((r) => Buffer.from(r as Uint8Array).toString("hex"))).size).toBe(100);
      expect(pool.stats.messages.sent - mid.sent).toBeLessThanOrEqual(Math.ceil(100 / 32) + 2);
      expect(pool.stats.messages.received - mid.received).toBe(pool.stats.messages.sent - mid.sent);
    } finally {
      await two.close();
    }
  });

  it("a failing job in a batch fails alone: its neighbours are answered, the ones after it in a new session (the failed one may keep an operation active)", async () => {
    const one = await openEmbeddedCryptoModule(dataDir, { workers: 1 });
    try {
      const pool = one.cryptoWorkers;
      // The module's own sign job for this key (handle, mechanism), taken as the adapter sends it.
      let job: WorkerJob | undefined;
      const spy = vi.spyOn(pool, "run");
      try {
        await one.sign(ecdsa(randomBytes(32)));
        job = spy.mock.calls.map((c) => c[0]).find((j) => j.op === "sign");
      } finally {
        spy.mockRestore();
      }
      if (job?.op !== "sign") throw new Error("no sign job seen");
      const sign = job;
      const settled: { session: string; ok: boolean }[] = [];
      const dispatched: number[] = [];
      pool.testHooks = { onDispatch: (e) => dispatched.push(e.jobs), onSettle: (e) => settled.push(e) };
      const before = { ...pool.stats.messages };
      let results: PromiseSettledResult<Uint8Array | boolean>[];
      try {
        // C_Sign into a too small buffer: CKR_BUFFER_TOO_SMALL, and the signing operation stays active in its session.
        const outLengths = [64, 64, 8, 64, 64];
        results = await Promise.allSettled(outLengths.map((outLength) => pool.run({ ...sign, outLength, data: randomBytes(32) })));
      } finally {
        pool.testHooks = undefined;
      }
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
      const failed = (results[2] as PromiseRejectedResult).reason as Error;
      expect(failed).toBeInstanceOf(pkcs11js.Pkcs11Error);
      expect(failed.message).toMatch(/^CKR_/);
      for (const r of results) if (r.status === "fulfilled") expect(r.value).toHaveLength(64);
      expect(dispatched[0]).toBe(5); // one message for all five
      expect(pool.stats.messages.sent - before.sent).toBe(2); // and one for the two after the failure
      const failedSession = settled.find((s) => !s.ok)?.session ?? "";
      expect(sessionState(failedSession)).toBe("CKR_SESSION_HANDLE_INVALID");
      expect(settled.slice(3).every((s) => s.ok && s.session !== failedSession)).toBe(true);
      expect(one.available).toBe(true);
    } finally {
      await one.close();
    }
  });

  it("after close({ discard }) (a module loss), the jobs behind a failed one in its batch fail instead of running again", async () => {
    const one = await openEmbeddedCryptoModule(dataDir, { workers: 1 });
    try {
      const pool = one.cryptoWorkers;
      let closing: Promise<void> | undefined;
      pool.testHooks = { onDispatch: () => (closing ??= pool.close({ discard: true })) }; // the batch is in flight
      const bad = { op: "sign" as const, mechanism: { mechanism: 0x7fff_fff0 }, key: Buffer.alloc(8), data: randomBytes(32), outLength: 64 };
      const results = await Promise.allSettled([pool.run(bad), pool.run({ op: "random", length: 8 }), pool.run({ op: "random", length: 8 })]);
      await closing;
      expect(results.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
      expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(pkcs11js.Pkcs11Error);
      for (const r of results.slice(1)) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: "CRYPTO_MODULE_FAILURE" });
      expect(pool.stats.messages.sent).toBe(1);
    } finally {
      await one.close();
    }
  });

  it("a worker that dies mid-batch fails every job of its batch as CRYPTO_MODULE_FAILURE, its session is closed, and the pool recovers", async () => {
    const one = await openEmbeddedCryptoModule(dataDir, { workers: 1 });
    const signal = new SharedArrayBuffer(8);
    try {
      const pool = one.cryptoWorkers;
      let held: { worker: Worker; session: string; jobs: number } | undefined;
      pool.testHooks = { onDispatch: (e) => (held ??= e) };
      const outcome = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);
      // One turn: two jobs the worker finishes, then one that holds it; their answers would cross together.
      const batch = [pool.run({ op: "random", length: 8 }), pool.run({ op: "random", length: 8 }), pool.run({ op: "hold", signal })].map(outcome);
      const after = pool.run({ op: "random", length: 8 }); // a batch ends with a hold: this one waits
      while (Atomics.load(new Int32Array(signal), 1) === 0) await new Promise((resolve) => setImmediate(resolve));
      expect(held?.jobs).toBe(3);
      expect(pool.stats).toMatchObject({ workers: 1, busy: 1, waiting: 1 });
      const killedThread = held?.worker.threadId;
      await held?.worker.terminate();
      const errors = await Promise.all(batch);
      for (const err of errors) {
        expect(err).toBeInstanceOf(InkanError);
        expect((err as InkanError).code).toBe("CRYPTO_MODULE_FAILURE");
      }
      expect(sessionState(held?.session ?? "")).toBe("CKR_SESSION_HANDLE_INVALID");
      expect(await after).toHaveLength(8);
      const data = randomBytes(32);
      expect(await one.verify({ ...ecdsa(data), signature: await one.sign(ecdsa(data)) })).toBe(true);
      expect(pool.threadIds.has(killedThread ?? -1)).toBe(false); // its batch was never answered
      expect(one.available).toBe(true);
    } finally {
      Atomics.store(new Int32Array(signal), 0, 1);
      await one.close();
    }
  });

  it("a data-object write (the audit high-water mark) runs on a worker thread; a module error keeps its CKR name for the log", async () => {
    const pool = hsm.cryptoWorkers;
    const served: (number | undefined)[] = [];
    pool.testHooks = { onSettle: (e) => served.push(e.threadId) };
    try {
      await hsm.writeDataObject("audit-cp:worker-test", Buffer.from("seq=1"));
      await hsm.writeDataObject("audit-cp:worker-test", Buffer.from("seq=2"));
    } finally {
      pool.testHooks = undefined;
    }
    expect(served).toHaveLength(2);
    expect(served.every((id) => id !== undefined && id !== threadId)).toBe(true);
    expect(Buffer.from((await hsm.readDataObject("audit-cp:worker-test")) ?? []).toString()).toBe("seq=2");
    expect(await hsm.listDataObjectLabels("audit-cp:worker-test")).toEqual(["audit-cp:worker-test"]);

    const injected = new pkcs11js.Pkcs11Error("CKR_DEVICE_MEMORY", 0x31, "C_CreateObject");
    const spy = vi.spyOn(pool, "run").mockRejectedValueOnce(injected);
    let err: unknown;
    try {
      err = await hsm.writeDataObject("audit-cp:worker-test", Buffer.from("seq=3")).catch((e: unknown) => e);
    } finally {
      spy.mockRestore();
    }
    expect(err).toMatchObject({ code: "CRYPTO_MODULE_FAILURE", pkcs11: "CKR_DEVICE_MEMORY" });
    expect((err as Error).message).not.toMatch(/CKR_/);
    expect(Buffer.from((await hsm.readDataObject("audit-cp:worker-test")) ?? []).toString()).toBe("seq=2");
  });

  it("issue 20, R-3.2.2.4: a data-object read runs on a worker thread and takes the newest version (a crash left several; ties by value), none = undefined", async () => {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trimEnd() === "inkan");
    if (!slot) throw new Error("token not found");
    const s = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    const version = (sequence: number, value: string) => {
      const stored = Buffer.alloc(8 + value.length);
      stored.writeBigUInt64BE(BigInt(sequence), 0);
      stored.write(value, 8);
      p11.C_CreateObject(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_APPLICATION, value: "inkan" },
        { type: pkcs11js.CKA_LABEL, value: "audit-cp:read-test" },
        { type: pkcs11js.CKA_VALUE, value: stored },
      ]);
    };
    try {
      version(5, "older");
      version(7, "tie-a");
      version(7, "tie-b"); // two writers of the same next version: every reader takes the greater value
    } finally {
      p11.C_CloseSession(s);
    }
    const pool = hsm.cryptoWorkers;
    const served: (number | undefined)[] = [];
    pool.testHooks = { onSettle: (e) => served.push(e.threadId) };
    let newest: Uint8Array | undefined;
    let none: Uint8Array | undefined = new Uint8Array(1);
    try {
      newest = await hsm.readDataObject("audit-cp:read-test");
      none = await hsm.readDataObject("audit-cp:never-written");
    } finally {
      pool.testHooks = undefined;
    }
    expect(Buffer.from(newest ?? []).toString()).toBe("tie-b");
    expect(none).toBeUndefined();
    expect(served).toHaveLength(2); // not the event loop: SoftHSM2's search walks every object of the token
    expect(served.every((id) => id !== undefined && id !== threadId)).toBe(true);
    await hsm.writeDataObject("audit-cp:read-test", Buffer.from("next")); // sequence 8; every older version removed
    expect(Buffer.from((await hsm.readDataObject("audit-cp:read-test")) ?? []).toString()).toBe("next");
  });

  it("a data-object write over a malformed stored version is refused as INTEGRITY_VIOLATION and changes nothing", async () => {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trimEnd() === "inkan");
    if (!slot) throw new Error("token not found");
    const s = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      p11.C_CreateObject(s, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_DATA },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_APPLICATION, value: "inkan" },
        { type: pkcs11js.CKA_LABEL, value: "audit-cp:malformed" },
        { type: pkcs11js.CKA_VALUE, value: Buffer.from("short") },
      ]);
    } finally {
      p11.C_CloseSession(s);
    }
    await expect(hsm.writeDataObject("audit-cp:malformed", Buffer.from("x"))).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
    await expect(hsm.readDataObject("audit-cp:malformed")).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
  });

  it("close() stops the workers and closes their sessions; later calls fail closed", async () => {
    const mod = await openEmbeddedCryptoModule(dataDir, { workers: 2 });
    const sessions = new Set<string>();
    mod.cryptoWorkers.testHooks = { onDispatch: ({ session }) => sessions.add(session) };
    await Promise.all(Array.from({ length: 10 }, () => mod.sign(ecdsa(randomBytes(32)))));
    const pool = mod.cryptoWorkers;
    await mod.close();
    expect(pool.stats.workers).toBe(0);
    expect([...sessions].map(sessionState)).toEqual([...sessions].map(() => "CKR_SESSION_HANDLE_INVALID"));
    await expect(pool.run({ op: "random", length: 8 })).rejects.toMatchObject({ code: "CRYPTO_MODULE_FAILURE" });
  });
});
