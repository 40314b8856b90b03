/**
 * The conformance suite's rare "crypto module failure during key generation": SoftHSM2's key
 * generation on a libuv thread fails now and then (CKR_GENERAL_ERROR) while the main thread
 * searches the token's objects. Unit test of the lock, then the race on a real token.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ObjectIndexLock, type ObjectIndexGroup } from "./object-index-lock.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "./softhsm-token.js";

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("ObjectIndexLock", () => {
  it("runs calls of one group together, never calls of both groups, in arrival order", async () => {
    const lock = new ObjectIndexLock();
    const running = new Map<ObjectIndexGroup, number>([["create", 0], ["index", 0]]);
    let overlaps = 0;
    let most = 0;
    const order: string[] = [];
    const call = (group: ObjectIndexGroup, name: string, turns: number) =>
      lock.run(group, async () => {
        order.push(name);
        running.set(group, (running.get(group) ?? 0) + 1);
        most = Math.max(most, running.get(group) ?? 0);
        if ((running.get(group === "create" ? "index" : "create") ?? 0) > 0) overlaps++;
        for (let i = 0; i < turns; i++) await turn();
        running.set(group, (running.get(group) ?? 0) - 1);
      });
    await Promise.all([call("create", "c1", 3), call("create", "c2", 1), call("index", "i1", 1), call("create", "c3", 1), call("index", "i2", 2), call("index", "i3", 1)]);
    expect(overlaps).toBe(0);
    expect(most).toBeGreaterThan(1); // a group's calls do run together
    expect(order).toEqual(["c1", "c2", "i1", "c3", "i2", "i3"]); // c3 came after i1: it waits its turn
  });

  it("an \"alone\" call (a worker thread's data-object write: it searches and creates) runs with no other call, in arrival order", async () => {
    const lock = new ObjectIndexLock();
    const running = new Set<string>();
    let overlaps = 0;
    let most = 0;
    const order: string[] = [];
    const call = (group: ObjectIndexGroup, name: string, turns: number) =>
      lock.run(group, async () => {
        order.push(name);
        running.add(name);
        most = Math.max(most, running.size);
        if (running.size > 1 && [...running].some((n) => n.startsWith("a"))) overlaps++;
        for (let i = 0; i < turns; i++) await turn();
        running.delete(name);
      });
    await Promise.all([call("index", "i1", 2), call("index", "i2", 1), call("alone", "a1", 2), call("alone", "a2", 1), call("index", "i3", 1), call("index", "i4", 1), call("create", "c1", 1)]);
    expect(overlaps).toBe(0);
    expect(most).toBe(2); // the other groups' calls still run together (i1 with i2, i3 with i4)
    expect(order).toEqual(["i1", "i2", "a1", "a2", "i3", "i4", "c1"]);
  });

  it("a failing call releases the lock", async () => {
    const lock = new ObjectIndexLock();
    await expect(lock.run("create", () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    await expect(lock.run("index", () => Promise.resolve(1))).resolves.toBe(1);
  });
});

describe("key generation while other calls search the token (SoftHSM2 file store)", () => {
  it("200 EC key generations with two concurrent searchers: none fails", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "inkan-object-index-"));
    try {
      await initEmbeddedToken(dataDir);
      const hsm = await openEmbeddedCryptoModule(dataDir);
      const failures: string[] = [];
      let done = false;
      const searcher = async () => {
        while (!done) {
          await hsm.findKey(randomBytes(16).toString("hex")).catch((e: unknown) => failures.push(`find: ${String(e)}`));
          await turn();
        }
      };
      const generate = async () => {
        try {
          for (let i = 0; i < 200; i++) {
            await hsm.generateKeyPair("EC_P256").catch((e: unknown) => failures.push(`generate: ${String(e)} ${String((e as { pkcs11?: string }).pkcs11)}`));
          }
        } finally {
          done = true;
        }
      };
      try {
        await Promise.all([searcher(), searcher(), generate()]);
      } finally {
        await hsm.close();
      }
      expect(failures).toEqual([]);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});
