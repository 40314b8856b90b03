import { MongoClient } from "mongodb";
import { describe, expect, it } from "vitest";
import { describeStoreContract, uniqueName } from "../contract.js";
import type { Store } from "../port.js";
import { createMongoStore, mongoMigrations } from "./mongo-store.js";

/** A replica set (transactions need one; a single-node replica set will do). */
const uri = process.env.INKAN_TEST_MONGODB_URI;
const skipReason = "MongoDB tests skipped: INKAN_TEST_MONGODB_URI is not set";
if (!uri) console.warn(skipReason);

const databases = new WeakMap<Store, string>();

describe.skipIf(!uri)(uri ? "MongoStore" : skipReason, () => {
  const mongoUri = uri ?? "";

  describeStoreContract("MongoStore", {
    async open() {
      const dbName = uniqueName("inkan-test");
      const store = await createMongoStore({ uri: mongoUri, dbName });
      databases.set(store, dbName);
      return store;
    },
    async connectAgain(store) {
      return createMongoStore({ uri: mongoUri, dbName: databases.get(store)! });
    },
    async dispose(store) {
      const client = new MongoClient(mongoUri);
      try {
        await client.db(databases.get(store)!).dropDatabase();
      } finally {
        await client.close();
      }
    },
  });

  it("creates its indexes once per migration version and reopens without change", async () => {
    const dbName = uniqueName("inkan-test");
    const client = new MongoClient(mongoUri);
    try {
      await (await createMongoStore({ uri: mongoUri, dbName })).close();
      await (await createMongoStore({ uri: mongoUri, dbName })).close();
      const db = client.db(dbName);
      expect(await db.collection("schemaMigrations").find().sort({ _id: 1 }).toArray()).toEqual(
        mongoMigrations.map((m) => ({ _id: m.version, name: m.name })),
      );
      const credentialIndexes = await db.collection("credentials").indexes();
      expect(credentialIndexes.find((i) => i.key.publicKeyFingerprint === 1)?.unique).toBe(true);
      const challengeIndexes = await db.collection("challenges").indexes();
      expect(challengeIndexes.find((i) => i.key.expiresAt === 1)?.expireAfterSeconds).toBe(0);
      // R-3.2.1.6: one PENDING approval per (method, requestDigest, requestedBy).
      const pendingIndexes = await db.collection("pendingApprovals").indexes();
      expect(pendingIndexes.find((i) => i.key.requestDigest === 1)).toMatchObject({
        key: { method: 1, requestDigest: 1, requestedBy: 1 },
        unique: true,
        partialFilterExpression: { state: "PENDING" },
      });
    } finally {
      await client.db(dbName).dropDatabase();
      await client.close();
    }
  });
});
