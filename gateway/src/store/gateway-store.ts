import { join } from "node:path";
import Database from "better-sqlite3";
import { migrations } from "./migrations.js";

/** The gateway's own SQLite file in the data directory (beside the SAM's, never shared with it). */
export function gatewayStoreFile(dataDir: string): string {
  return join(dataDir, "gateway.sqlite");
}

/** Opens (creating and migrating as needed) the gateway store. */
export function openGatewayDatabase(file: string): Database.Database {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("busy_timeout = 5000");
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT");
  const applied = new Set((db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map((r) => r.version));
  const known = Math.max(...migrations.map((m) => m.version));
  const newest = Math.max(0, ...applied);
  // A store written by a newer gateway: refuse rather than run on a schema we do not know.
  if (newest > known) throw new Error(`gateway store ${file} has schema version ${newest}; this gateway knows up to ${known}`);
  for (const m of migrations) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(m.version, Date.now());
    })();
  }
  return db;
}
