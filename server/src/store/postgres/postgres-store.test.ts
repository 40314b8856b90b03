import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeStoreContract } from "../contract.js";
import { StoreFailureError, type Store } from "../port.js";
import { findPostgresBinaries, startTestCluster, type TestCluster } from "../testing/postgres-cluster.js";
import type { Config } from "../../config/config.js";
import { openStore } from "../../main.js";
import { pgMigrations } from "./migrations.js";
import { PostgresStore, createPostgresStore } from "./postgres-store.js";

/** Connections per store in these tests: several, so the contract's races run on parallel connections. */
const poolSize = 8;

const binaries = findPostgresBinaries();
const skipReason = "missing" in binaries ? binaries.missing : undefined;
if (skipReason) console.warn(skipReason);

describe.skipIf(skipReason !== undefined)(skipReason ?? "PostgresStore", () => {
  let cluster: TestCluster;
  const uris = new WeakMap<Store, string>();

  beforeAll(async () => {
    cluster = await startTestCluster((binaries as { bindir: string }).bindir);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  describeStoreContract("PostgresStore", {
    async open() {
      const uri = await cluster.createDatabase();
      const store = await createPostgresStore({ uri, poolSize });
      uris.set(store, uri);
      return store;
    },
    async connectAgain(store) {
      return createPostgresStore({ uri: uris.get(store)!, poolSize });
    },
    async dispose(store) {
      await cluster.dropDatabase(uris.get(store)!);
    },
  });

  describe("PostgresStore deadlocks", () => {
    it("T-2.2.1.3: a single statement that loses a deadlock is run again, not failed (a replay storm across nodes once got STORE_FAILURE here)", async () => {
      const uri = await cluster.createDatabase();
      const store = await createPostgresStore({ uri, poolSize: 2 });
      const raw = new pg.Client({ connectionString: uri });
      const watcher = new pg.Client({ connectionString: uri }); // outside raw's transaction, whose activity snapshot would stay stale
      await raw.connect();
      await watcher.connect();
      try {
        const token = (hash: string, generation: number, previousHash?: string) => ({
          hash, transactionId: "tx-d", generation, previousHash, issuedAt: new Date(0), expiresAt: new Date(3_600_000), mac: new Uint8Array(32),
        });
        await store.issueSadToken(token("d0", 0));
        await store.issueSadToken(token("d1", 1, "d0"));
        // Only the store's connection detects the cycle (after the default 1 s), so the store's statement is the victim.
        await raw.query("SET deadlock_timeout = '30s'");
        await raw.query("BEGIN");
        await raw.query("UPDATE sad_tokens SET revoked_at = NULL WHERE hash = 'd1'"); // holds d1, changes nothing
        const revoked = store.revokeSadTokens({ transactionId: "tx-d", now: new Date(1_000) }); // one UPDATE of d0 and d1: takes d0, waits for d1
        revoked.catch(() => undefined);
        for (let i = 0; ; i++) {
          const waiting = await watcher.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE sad_tokens SET revoked_at = $1%'");
          if (waiting.rowCount) break;
          if (i > 500) throw new Error("the store's UPDATE never waited for the lock");
          await new Promise((r) => setTimeout(r, 10));
        }
        await raw.query("UPDATE sad_tokens SET revoked_at = NULL WHERE hash = 'd0'"); // waits for d0: a cycle; the store's statement is rolled back
        await raw.query("COMMIT");
        expect(await revoked).toBe(2); // run again once the other transaction ended: both revoked, no STORE_FAILURE
        expect((await store.findSadToken("d0"))?.revokedAt).toEqual(new Date(1_000));
      } finally {
        await raw.end();
        await watcher.end();
        await store.close();
        await cluster.dropDatabase(uri);
      }
    });
  });

  describe("PostgresStore migrations and connection", () => {
    it("nodes starting together on an empty database migrate once under the advisory lock; reopening changes nothing", async () => {
      const uri = await cluster.createDatabase();
      try {
        const nodes = await Promise.all(Array.from({ length: 4 }, () => createPostgresStore({ uri, poolSize: 2 })));
        await nodes[0]!.createRecord({ kind: "signer", id: "s1", version: 1, status: "ACTIVE", body: "{}", seal: new Uint8Array([1]) });
        for (const n of nodes) await n.close();
        const again = await createPostgresStore({ uri, poolSize: 3 });
        expect(await again.settings()).toEqual({ schemaVersion: pgMigrations[pgMigrations.length - 1]!.version, poolSize: 3 });
        expect((await again.getRecord("signer", "s1"))?.id).toBe("s1");
        await again.close();
        const raw = new pg.Client({ connectionString: uri });
        await raw.connect();
        try {
          expect((await raw.query("SELECT version, name FROM schema_migrations ORDER BY version")).rows).toEqual(
            pgMigrations.map((m) => ({ version: m.version, name: m.name })),
          );
        } finally {
          await raw.end();
        }
      } finally {
        await cluster.dropDatabase(uri);
      }
    });

    it("refuses a schema newer than it knows (fail closed: STORE_FAILURE, nothing changed)", async () => {
      const uri = await cluster.createDatabase();
      try {
        await (await createPostgresStore({ uri })).close();
        const raw = new pg.Client({ connectionString: uri });
        await raw.connect();
        await raw.query("INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')");
        await raw.end();
        const err = await createPostgresStore({ uri }).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(StoreFailureError);
        expect(String((err as Error).cause)).toMatch(/newer than this Inkan knows/);
      } finally {
        await cluster.dropDatabase(uri);
      }
    });

    it("INKAN_STORE=postgres://… opens a PostgresStore with the configured pool size", async () => {
      const uri = await cluster.createDatabase();
      try {
        const store = await openStore({ store: { kind: "postgres", uri, poolSize: 3 } } as Config);
        expect(store).toBeInstanceOf(PostgresStore);
        expect((await (store as PostgresStore).settings()).poolSize).toBe(3);
        await store.close();
      } finally {
        await cluster.dropDatabase(uri);
      }
    });

    it("when the server ends every connection (a restart, a failover), a call fails closed (STORE_FAILURE) or runs on a new connection; nothing is consumed twice", async () => {
      const uri = await cluster.createDatabase();
      const store = await createPostgresStore({ uri, poolSize: 2 });
      try {
        await store.issueChallenge({ hash: "c1", purpose: "transaction", subject: "tx", createdAt: new Date(0), expiresAt: new Date(60_000) });
        const admin = new pg.Client({ connectionString: cluster.uri("postgres") });
        await admin.connect();
        try {
          await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [new URL(uri).pathname.slice(1)]);
        } finally {
          await admin.end();
        }
        // The pool drops a connection it sees die while idle; one that dies unseen fails its call.
        const outcomes = [];
        for (let i = 0; i < 3; i++) {
          outcomes.push(await store.consumeChallenge({ hash: "c1", purpose: "transaction", now: new Date(1000) }).then((c) => c?.hash ?? "none", (e: unknown) => e));
        }
        for (const o of outcomes) if (typeof o !== "string") expect(o).toBeInstanceOf(StoreFailureError);
        expect(outcomes.filter((o) => o === "c1")).toHaveLength(1);
        expect(outcomes[outcomes.length - 1]).toBe("none");
      } finally {
        await store.close();
        await cluster.dropDatabase(uri);
      }
    });

    it("a statement that waits past the statement timeout (a lock held elsewhere, a database that stops answering) fails closed (STORE_FAILURE) and changes nothing", async () => {
      const uri = await cluster.createDatabase();
      const store = await createPostgresStore({ uri, poolSize: 2, statementTimeoutMs: 300 });
      const other = new pg.Client({ connectionString: uri });
      try {
        await store.issueChallenge({ hash: "c1", purpose: "transaction", subject: "tx", createdAt: new Date(0), expiresAt: new Date(60_000) });
        await other.connect();
        await other.query("BEGIN");
        await other.query("LOCK TABLE challenges IN ACCESS EXCLUSIVE MODE");
        const err = await store.consumeChallenge({ hash: "c1", purpose: "transaction", now: new Date(1000) }).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(StoreFailureError);
        expect((err as Error).cause).toMatchObject({ code: "57014" }); // query_canceled: the statement timeout
        await other.query("ROLLBACK");
        expect((await store.consumeChallenge({ hash: "c1", purpose: "transaction", now: new Date(1000) }))?.hash).toBe("c1");
      } finally {
        await other.end().catch(() => undefined);
        await store.close();
        await cluster.dropDatabase(uri);
      }
    });

    it("fails closed when the database cannot be reached, without echoing the password", async () => {
      const uri = cluster.uri("postgres").replace("inkan@", "inkan:hunter2@").replace(/:(\d+)\//, ":1/");
      const err = await createPostgresStore({ uri, connectionTimeoutMs: 2000 }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StoreFailureError);
      expect((err as Error).message).toBe("the store is unavailable");
      expect((err as Error).message).not.toContain("hunter2");
    });
  });
});
