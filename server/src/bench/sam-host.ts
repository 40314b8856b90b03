import { fork } from "node:child_process";
import { existsSync, openSync, readFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { parseConfig } from "../config/config.js";
import type { FullCryptoModule, SigningKeys } from "../crypto/port.js";
import { applyServerHeapPolicy } from "../heap-policy.js";
import { createLogger } from "../log/logger.js";
import { serve, type ServeHooks } from "../main.js";
import { threadCpu, type ThreadCpu, type Throughput } from "./measure.js";
import { rawSignAndVerify, type Durations } from "./workloads.js";

type SignRequest = Parameters<SigningKeys["sign"]>[0];

/** What a process uses so far: resident set size and CPU time. */
export interface ProcessUsage {
  rssBytes: number;
  /** process.memoryUsage() without rss: where the memory is (V8 heap, external, array buffers). */
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
  arrayBuffersBytes: number;
  /** process.cpuUsage(): user and system CPU time, microseconds. */
  cpu: NodeJS.CpuUsage;
  /** The process's main thread alone (the event loop: the SAM's store, audit, RPC and dispatch work); undefined off Linux. */
  mainThread?: ThreadCpu | undefined;
}

/**
 * Where the bench's SAM runs (issue 20): in this process, or in its own (as deployed), with the
 * SCA clients and the simulated devices in this one. Either way the raw figures run where the
 * server runs, on the server's own crypto module (same token, same session pool).
 */
export interface SamHost {
  url: string;
  /** The server's process id (this process's when in-process). */
  pid: number;
  ownProcess: boolean;
  /** The raw work in the server's process: module sign (+ verify before release), `concurrency` callers. */
  raw(keyId: string, concurrency: number, d: Durations, verify: boolean): Promise<Throughput>;
  /** One signature by the server's crypto module (for the SDK verification figure). */
  sign(request: SignRequest): Promise<Uint8Array>;
  /**
   * The sampling heap profiler over every allocation, garbage included (what drives the heap's
   * growth between collections): `start` begins, stop returns the profile (a .heapprofile's JSON).
   */
  allocations?(start: boolean): Promise<unknown>;
  /** `gc`: a full collection first, when the process runs with --expose-gc (what is live, not garbage). */
  usage(gc?: boolean): Promise<ProcessUsage>;
  close(graceMs: number): Promise<void>;
}

const ownUsage = (): ProcessUsage => {
  const m = process.memoryUsage();
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external, arrayBuffersBytes: m.arrayBuffers, cpu: process.cpuUsage(), mainThread: threadCpu() }; // answered on the main thread
};

/**
 * `serve()` on `dataDir` (an `inkan init` data directory) in this process, logging into server.log.
 * `hooks`: wrappers of the store and the crypto module (the per-call probe counts through them).
 */
export async function inProcessSam(dataDir: string, hooks: Pick<ServeHooks, "wrapStore" | "wrapCrypto"> = {}): Promise<SamHost> {
  const { server, crypto } = await serveBench(dataDir, hooks);
  return {
    url: server.url,
    pid: process.pid,
    ownProcess: false,
    raw: (keyId, concurrency, d, verify) => rawSignAndVerify(crypto, keyId, concurrency, d, verify),
    sign: (request) => crypto.sign(request),
    usage: async () => ownUsage(),
    close: (graceMs) => server.close(graceMs),
  };
}

async function serveBench(dataDir: string, hooks: Pick<ServeHooks, "wrapStore" | "wrapCrypto"> = {}) {
  const log = createLogger("info", openSync(join(dataDir, "server.log"), "a"));
  let crypto: FullCryptoModule | undefined;
  const server = await serve(parseConfig({ dataDir, listen: "127.0.0.1:0" }), log, {
    ...(hooks.wrapStore ? { wrapStore: hooks.wrapStore } : {}),
    // The raw figures use the module unwrapped; the SAM gets the caller's wrapper, if any.
    wrapCrypto: (opened) => ((crypto = opened), hooks.wrapCrypto ? hooks.wrapCrypto(opened) : opened),
  });
  if (!crypto) throw new Error("serve() did not hand out its crypto module");
  return { server, crypto };
}

/** The built child entry (this file, compiled): from src/ or dist/, always server/dist/bench/sam-host.js. */
export const samHostEntry = fileURLToPath(new URL("../../dist/bench/sam-host.js", import.meta.url));

type Op = { op: "raw"; keyId: string; concurrency: number; d: Durations; verify: boolean } | { op: "sign"; request: SignRequest } | { op: "usage"; gc?: boolean } | { op: "allocations"; start: boolean } | { op: "close"; graceMs: number };
type Request = { id: number } & Op;
type Reply = { id: number; value?: unknown; error?: string };

/**
 * `serve()` on `dataDir` in a child process (node server/dist/bench/sam-host.js, IPC with the
 * structured-clone serialization): the SAM alone in its process, as deployed. Needs the build.
 * `nodeArgs`: node's own flags for the child (a profile: `--cpu-prof`, `--expose-gc`), none by default.
 */
export async function childProcessSam(dataDir: string, nodeArgs: string[] = []): Promise<SamHost> {
  if (!existsSync(samHostEntry)) throw new Error(`the SAM's own process needs the build: ${samHostEntry} is missing (npm run build)`);
  // execArgv []: not the parent's flags (under vitest, a resolve condition that points @inkan/* at sources).
  const child = fork(samHostEntry, ["--serve-bench", dataDir], { execArgv: nodeArgs, serialization: "advanced", stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let next = 0;
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  const url = await new Promise<string>((resolve, reject) => {
    child.once("message", (m: { ready?: string; error?: string }) => (m.ready ? resolve(m.ready) : reject(new Error(`the SAM process failed to start: ${m.error}`))));
    void exited.then((code) => reject(new Error(`the SAM process exited (${code}) before serving; see ${join(dataDir, "server.log")}`)));
  });
  child.on("message", (m: Reply) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error !== undefined) p.reject(new Error(`SAM process: ${m.error}`));
    else p.resolve(m.value);
  });
  void exited.then((code) => {
    for (const p of pending.values()) p.reject(new Error(`the SAM process exited (${code})`));
    pending.clear();
  });
  const call = <T>(req: Op): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ ...req, id });
    });
  return {
    url,
    pid: child.pid!,
    ownProcess: true,
    raw: (keyId, concurrency, d, verify) => call<Throughput>({ op: "raw", keyId, concurrency, d, verify }),
    sign: (request) => call<Uint8Array>({ op: "sign", request }),
    usage: (gc) => call<ProcessUsage>({ op: "usage", gc }),
    allocations: (start) => call<unknown>({ op: "allocations", start }),
    async close(graceMs) {
      await call({ op: "close", graceMs }).catch(() => undefined);
      child.disconnect();
      await exited;
    },
  };
}

/** The resident set size of process `pid` (Linux /proc), bytes; undefined where unavailable. */
export function rssOf(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

let inspector: Session | undefined;

async function startAllocationSampling(): Promise<boolean> {
  inspector = new Session();
  inspector.connect();
  await inspector.post("HeapProfiler.startSampling", { samplingInterval: 16_384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
  return true;
}

async function stopAllocationSampling(): Promise<unknown> {
  const { profile } = await inspector!.post("HeapProfiler.stopSampling");
  inspector!.disconnect();
  return JSON.stringify(profile);
}

// The child's side: serve, then answer the parent's requests until it disconnects.
if (process.argv[2] === "--serve-bench" && process.send) {
  const send = process.send.bind(process);
  try {
    applyServerHeapPolicy(); // as `inkan serve` does (issue 20)
    const { server, crypto } = await serveBench(process.argv[3]!);
    process.on("message", (m: Request) => {
      const answer = async (): Promise<unknown> => {
        switch (m.op) {
          case "raw":
            return rawSignAndVerify(crypto, m.keyId, m.concurrency, m.d, m.verify);
          case "sign":
            return crypto.sign(m.request);
          case "usage":
            if (m.gc) (globalThis as { gc?: () => void }).gc?.(); // only with --expose-gc: the live memory
            return ownUsage();
          case "allocations":
            return m.start ? startAllocationSampling() : stopAllocationSampling();
          case "close":
            await server.close(m.graceMs);
            return true;
        }
      };
      answer().then((value) => send({ id: m.id, value }), (err: unknown) => send({ id: m.id, error: String(err) }));
    });
    process.on("disconnect", () => process.exit(0));
    send({ ready: server.url });
  } catch (err) {
    send({ error: String(err) });
    process.exit(1);
  }
}
