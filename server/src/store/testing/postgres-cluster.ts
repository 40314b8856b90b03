/**
 * A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, `pg_ctl start` on a
 * free port (TCP on 127.0.0.1 and a Unix socket in the directory), trust authentication for the
 * role `inkan`; `stop()` shuts it down and removes the directory. Test support only.
 *
 * initdb refuses to run as root and CI runs as root: as root, the binaries run as the `postgres`
 * system user (created by Debian's postgresql package) on a directory it owns (platform-notes).
 * Durability settings are off: the cluster lives for one test file and tests atomicity, not
 * crash safety.
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

export interface TestCluster {
  /** postgres://inkan@127.0.0.1:PORT/DATABASE */
  uri(database: string): string;
  /** Creates an empty database with a unique name and returns its URI. */
  createDatabase(): Promise<string>;
  /** Drops a database made by createDatabase, closing its remaining connections. */
  dropDatabase(uri: string): Promise<void>;
  /** Stops the cluster and removes its directory. */
  stop(): Promise<void>;
}

/** The directory holding initdb and pg_ctl, or a sentence saying why there is none. */
export function findPostgresBinaries(): { bindir: string } | { missing: string } {
  const candidates: string[] = [];
  if (process.env.INKAN_TEST_PG_BINDIR) candidates.push(process.env.INKAN_TEST_PG_BINDIR);
  const root = "/usr/lib/postgresql";
  if (existsSync(root)) {
    for (const v of readdirSync(root).sort((a, b) => Number(b) - Number(a))) candidates.push(join(root, v, "bin"));
  }
  const bindir = candidates.find((d) => existsSync(join(d, "initdb")) && existsSync(join(d, "pg_ctl")));
  if (!bindir) return { missing: "PostgreSQL tests skipped: initdb and pg_ctl not found (install Debian's postgresql: apt-get install -y postgresql, or scripts/setup.sh as root; or set INKAN_TEST_PG_BINDIR)" };
  if (process.getuid?.() === 0) {
    try {
      execFileSync("id", ["-u", "postgres"], { stdio: "pipe" });
    } catch {
      return { missing: "PostgreSQL tests skipped: running as root and there is no postgres system user to run initdb as (install Debian's postgresql package)" };
    }
  }
  return { bindir };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** Starts a cluster (about 2 s). */
export async function startTestCluster(bindir: string, options: { maxConnections?: number } = {}): Promise<TestCluster> {
  const asRoot = process.getuid?.() === 0;
  const run = (tool: string, args: string[]): void => {
    const [file, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", join(bindir, tool), ...args]] : [join(bindir, tool), args];
    execFileSync(file, argv, { stdio: "pipe", cwd: "/" });
  };
  const dir = mkdtempSync(join(tmpdir(), "inkan-pg-"));
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, "data");
  const port = await freePort();
  try {
    run("initdb", ["-D", data, "-A", "trust", "-U", "inkan", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]);
    const settings = [
      `-p ${port}`, `-k ${dir}`, "-c listen_addresses=127.0.0.1", `-c max_connections=${options.maxConnections ?? 200}`,
      "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
    ].join(" ");
    run("pg_ctl", ["-D", data, "-o", settings, "-l", join(dir, "server.log"), "-w", "-t", "60", "start"]);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`could not start a test PostgreSQL cluster: ${(e as { stderr?: Buffer }).stderr?.toString() ?? String(e)}`);
  }
  const uri = (database: string) => `postgres://inkan@127.0.0.1:${port}/${database}`;
  const admin = new pg.Pool({ connectionString: uri("postgres"), max: 2 });
  admin.on("error", () => undefined);
  return {
    uri,
    async createDatabase() {
      const name = `inkan_${randomUUID().replaceAll("-", "")}`;
      // FILE_COPY: a small template copies faster than PostgreSQL 15's default WAL_LOG strategy.
      await admin.query(`CREATE DATABASE ${name} STRATEGY FILE_COPY`);
      return uri(name);
    },
    async dropDatabase(databaseUri) {
      const name = new URL(databaseUri).pathname.slice(1);
      if (!/^inkan_[0-9a-f]{32}$/.test(name)) throw new RangeError(`not a test database: ${name}`);
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
    async stop() {
      await admin.end().catch(() => undefined);
      try {
        run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
