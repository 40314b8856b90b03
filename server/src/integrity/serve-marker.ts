/**
 * A marker that a process serves a data directory (issue 22): `inkan restore` refuses while one
 * exists whose process is alive. A marker left by a crash names a dead process and is ignored.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const serveMarkerFile = (dataDir: string): string => join(dataDir, "serving.pid");

/** Writes the marker; `release()` removes it if it is still this process's. */
export function markServing(dataDir: string): { release(): void } {
  const file = serveMarkerFile(dataDir);
  writeFileSync(file, `${process.pid}\n`, { mode: 0o600 });
  return {
    release() {
      if (servingPid(dataDir) === process.pid) rmSync(file, { force: true });
    },
  };
}

/** The pid of the live process serving `dataDir`, or undefined. */
export function servingPid(dataDir: string): number | undefined {
  const file = serveMarkerFile(dataDir);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, "utf8").trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM" ? pid : undefined; // EPERM: alive, another user's
  }
}
