/**
 * The store `inkan init` writes to (issue 21): the data directory's SQLite file by default, or the
 * PostgreSQL database named by a `postgres://` store setting (INKAN_STORE), whose schema is then
 * created by the migrations (under their advisory lock) and which receives the first security
 * officer and the first sealed policy. The nodes that later share the database find them there.
 */
import { existsSync } from "node:fs";
import type { Store } from "./store/port.js";
import { createPostgresStore } from "./store/postgres/postgres-store.js";
import { createSqliteStore } from "./store/sqlite/sqlite-store.js";
import { storeOf } from "./config/config.js";

export interface InitStore {
  store: Store;
  /** What `inkan init --json` reports as `store`: the SQLite file, or the URI without its password. */
  shown: string;
  /** True when init creates the store (a SQLite file not there yet; a PostgreSQL database is migrated in place). */
  creates: boolean;
}

/** Opens the store `setting` names (config.ts storeOf; undefined: the SQLite file in `dataDir`). MongoDB is refused: init does not write it. */
export async function openInitStore(dataDir: string, setting: string | undefined): Promise<InitStore> {
  const named = storeOf(setting, dataDir);
  if (named.kind === "postgres") {
    return { store: await createPostgresStore({ uri: named.uri, poolSize: 2 }), shown: named.uri.replace(/\/\/([^@/:]*):[^@/]*@/, "//$1:***@"), creates: false };
  }
  if (named.kind === "mongodb") throw new Error("inkan init writes a SQLite file or a PostgreSQL database; a MongoDB store is not initialized by it");
  const creates = !existsSync(named.file);
  return { store: await createSqliteStore({ file: named.file }), shown: named.file, creates };
}
