import { fork } from "node:child_process";
import { existsSync, openSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { parseConfig } from "../config/config.js";
import type { FullCryptoModule, SigningKeys } from "../crypto/port.js";
import { createLogger } from "../log/logger.js";
import { serve } from "../main.js";
import type { Throughput } from "./measure.js";
import { rawSignAndVerify, type Durations } from "./workloads.js";

type SignRequest = Parameters<SigningKeys["sign"]>[0];

/** What a process uses so far: resident set size and CPU time. */
export interface ProcessUsage {
  rssBytes: number;
  /** process.cpuUsage(): user and system CPU time, microseconds. */
  cpu: NodeJS.CpuUsage;
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
  usage(): Promise<ProcessUsage>;
  close(graceMs: number): Promise<void>;
}

const ownUsage = (): ProcessUsage => ({ rssBytes: process.memoryUsage.rss(), cpu: process.cpuUsage() });

/** `serve()` on `dataDir` (an `inkan init` data directory) in this process, logging into server.log. */
export async function inProcessSam(dataDir: string): Promise<SamHost> {
  const { server, crypto } = await serveBench(dataDir);
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

async function serveBench(dataDir: string) {
  const log = createLogger("info", openSync(join(dataDir, "server.log"), "a"));
  let crypto: FullCryptoModule | undefined;
  const server = await serve(parseConfig({ dataDir, listen: "127.0.0.1:0" }), log, {
    wrapCrypto: (opened) => (crypto = opened), // not wrapped: only kept for the raw figures
  });
  if (!crypto) throw new Error("serve() did not hand out its crypto module");
  return { server, crypto };
}

/** The built child entry (this file, compiled): from src/ or dist/, always server/dist/bench/sam-host.js. */
export const samHostEntry = fileURLToPath(new URL("../../dist/bench/sam-host.js", import.meta.url));

type Op = { op: "raw"; keyId: string; concurrency: number; d: Durations; verify: boolean } | { op: "sign"; request: SignRequest } | { op: "usage" } | { op: "close"; graceMs: number };
type Request = { id: number } & Op;
type Reply = { id: number; value?: unknown; error?: string };

/**
 * `serve()` on `dataDir` in a child process (node server/dist/bench/sam-host.js, IPC with the
 * structured-clone serialization): the SAM alone in its process, as deployed. Needs the build.
 */
export async function childProcessSam(dataDir: string): Promise<SamHost> {
  if (!existsSync(samHostEntry)) throw new Error(`the SAM's own process needs the build: ${samHostEntry} is missing (npm run build)`);
  // execArgv []: not the parent's flags (under vitest, a resolve condition that points @inkan/* at sources).
  const child = fork(samHostEntry, ["--serve-bench", dataDir], { execArgv: [], serialization: "advanced", stdio: ["ignore", "inherit", "inherit", "ipc"] });
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
    usage: () => call<ProcessUsage>({ op: "usage" }),
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

// The child's side: serve, then answer the parent's requests until it disconnects.
if (process.argv[2] === "--serve-bench" && process.send) {
  const send = process.send.bind(process);
  try {
    const { server, crypto } = await serveBench(process.argv[3]!);
    process.on("message", (m: Request) => {
      const answer = async (): Promise<unknown> => {
        switch (m.op) {
          case "raw":
            return rawSignAndVerify(crypto, m.keyId, m.concurrency, m.d, m.verify);
          case "sign":
            return crypto.sign(m.request);
          case "usage":
            return ownUsage();
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
