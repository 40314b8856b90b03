import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import type { Logger } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "../config/config.js";
import { initDataDir } from "../init.js";
import { serve } from "../main.js";
import { transportFor } from "../testing/harness.js";
import type { InkanServer } from "../transport/server.js";
import { createLogger, endLogger, logWriteStats } from "./logger.js";

// Issue 17.3: a log that cannot be written (a full disk) never takes the SAM down. The real server
// is started with a logger made as `inkan serve` makes it, on a destination that fails.

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** `inkan init` + `inkan serve` on 127.0.0.1:0 with `log`; and clients with the SCA certificate. */
async function startWithLogger(log: Logger) {
  const dataDir = mkdtempSync(join(tmpdir(), "inkan-logfault-"));
  dirs.push(dataDir);
  const { paths } = await initDataDir(dataDir);
  const server: InkanServer = await serve(parseConfig({ dataDir, listen: "127.0.0.1:0" }), log);
  const tls = { ca: readFileSync(paths.caCert, "utf8"), cert: readFileSync(paths.scaCert, "utf8"), key: readFileSync(paths.scaKey, "utf8") };
  const transport = transportFor("grpc", server.url, tls);
  return {
    server,
    health: createClient(Health, transport),
    sap: createClient(SignatureActivationService, transport),
  };
}

/** Health and a real RPC, `n` times: every call is logged, so every call writes to the failing log. */
async function callsAnswer(s: Awaited<ReturnType<typeof startWithLogger>>, n: number) {
  for (let i = 0; i < n; i++) {
    expect((await s.health.check({})).status).toBe(Status.SERVING);
    expect((await s.sap.getInfo({})).name).toBe("Inkan");
  }
}

async function until(what: string, cond: () => boolean, deadlineMs = 20_000) {
  const end = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`still waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("a log that cannot be written (issue 17.3)", () => {
  it("keeps serving with its log on /dev/full (every write ENOSPC), and counts the failed writes and dropped lines", async () => {
    const fd = openSync("/dev/full", "w");
    const log = createLogger("info", fd, { maxBufferedBytes: 4096 });
    const s = await startWithLogger(log);
    try {
      await callsAnswer(s, 25);
      const stats = logWriteStats(log)!;
      console.log("/dev/full:", stats);
      expect(stats.failing).toBe(true);
      expect(stats.lastError).toBe("ENOSPC");
      expect(stats.failedWrites).toBeGreaterThan(0);
      expect(stats.droppedLines).toBeGreaterThan(0);
      expect(s.server.health.get("")).toBe(Status.SERVING); // the log is not the audit log
    } finally {
      await s.server.close(500);
      endLogger(log);
      closeSync(fd);
    }
  }, 60_000);

  it("on a full tmpfs: keeps serving while the disk is full, and reports the lines it dropped once space is back", async (ctx) => {
    const mnt = mkdtempSync(join(tmpdir(), "inkan-logtmpfs-"));
    dirs.push(mnt);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt], { stdio: "pipe" });
    } catch (err) {
      const reason = `mounting a tmpfs is not allowed here (${String((err as Error).message).split("\n")[0]}); the /dev/full test covers the fault`;
      console.log(`skipped: ${reason}`);
      ctx.skip(reason);
      return;
    }
    let fd: number | undefined;
    let log: Logger | undefined;
    let s: Awaited<ReturnType<typeof startWithLogger>> | undefined;
    try {
      const file = join(mnt, "logs", "server.log");
      mkdirSync(join(mnt, "logs"));
      fd = openSync(file, "a");
      log = createLogger("info", fd, { maxBufferedBytes: 8192 });
      s = await startWithLogger(log);
      await callsAnswer(s, 2);
      await until("the first lines written", () => readFileSync(file, "utf8").includes('"msg":"listening"'));
      // Fill the disk to the last byte.
      const filler = openSync(join(mnt, "filler"), "w");
      const chunk = Buffer.alloc(4096, 0x61);
      try {
        for (;;) writeSync(filler, chunk);
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
      }
      try {
        for (;;) writeSync(filler, chunk.subarray(0, 1));
      } catch {
        // full
      } finally {
        closeSync(filler);
      }
      await callsAnswer(s, 40);
      await until("the log noticed the full disk", () => logWriteStats(log!)!.failing);
      const whileFull = logWriteStats(log)!;
      expect(whileFull.lastError).toBe("ENOSPC");
      expect(whileFull.droppedLines).toBeGreaterThan(0);
      // Space comes back: the next lines are written, and so is the report of what was lost.
      rmSync(join(mnt, "filler"));
      await callsAnswer(s, 2);
      await until("the report of the lost lines is in the log", () => readFileSync(file, "utf8").includes("log lines dropped"));
      const report = readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l.includes("log lines dropped"))
        .map((l) => JSON.parse(l) as { droppedLines: number; failedWrites: number; lastError: string });
      console.log("tmpfs:", { whileFull, report, after: logWriteStats(log) });
      expect(report[0]!.lastError).toBe("ENOSPC");
      expect(report.reduce((n, r) => n + r.droppedLines, 0)).toBe(logWriteStats(log)!.droppedLines);
      expect(logWriteStats(log)!.failing).toBe(false);
    } finally {
      try {
        await s?.server.close(500);
        if (log) endLogger(log);
        if (fd !== undefined) closeSync(fd);
      } finally {
        execFileSync("umount", ["-l", mnt]);
      }
    }
  }, 60_000);
});
