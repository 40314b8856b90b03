/**
 * `inkan audit verify` (cli/audit-command.ts) on a real data directory (R-3.2.2.4): the embedded
 * SoftHSM2 token and the SQLite store in it. OK and exit 0 on an intact log; the first break with
 * its sequence and kind and exit 1 after tampering; the same for an exported file verified
 * offline with the public key.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { auditVerifyCommand } from "../cli/audit-command.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import { createSqliteStore, sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { createAuditLog } from "./audit-log.js";
import { signerEnrolled, systemActor } from "./events.js";
import { exportAuditLog } from "./export.js";

let dataDir: string;
let exportFile: string;
let keyFile: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-audit-cli-"));
  await initEmbeddedToken(dataDir);
  // Write a log, export it, and close everything: the command opens the module and store itself.
  const hsm = await openEmbeddedCryptoModule(dataDir);
  const store = await createSqliteStore({ file: sqliteStoreFile(dataDir) });
  const log = await createAuditLog({ store, nodeId: "node-1", cryptoModule: hsm, checkpointEveryRecords: 5, checkpointTimer: false });
  for (let i = 1; i <= 12; i++) await log.record(signerEnrolled({ actor: systemActor, signerId: `s-${i}` }));
  const spki = await hsm.systemPublicKey("audit-signing");
  let text = "";
  for await (const line of exportAuditLog(store, { auditKeys: spki, auditLog: log })) text += line;
  await log.close();
  await store.close();
  await hsm.close();
  exportFile = join(dataDir, "export.jsonl");
  keyFile = join(dataDir, "audit-key.pem");
  await writeFile(exportFile, text);
  await writeFile(keyFile, `-----BEGIN PUBLIC KEY-----\n${Buffer.from(spki).toString("base64")}\n-----END PUBLIC KEY-----\n`);
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

afterEach(() => {
  vi.restoreAllMocks();
});

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
  vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void err.push(a.join(" ")));
  const code = await auditVerifyCommand(args);
  vi.restoreAllMocks();
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("R-3.2.2.4 inkan audit verify", () => {
  it("R-3.2.2.4: prints OK and exits 0 for an intact log, and for its export verified offline", async () => {
    const live = await run(["verify", "--data-dir", dataDir]);
    expect(live).toMatchObject({ code: 0, err: "" });
    expect(live.out).toContain("node node-1: OK, 12 records, last checkpoint 12, crypto module checkpoint 12");
    expect(live.out.split("\n").at(-1)).toBe("OK");
    const offline = await run(["verify", "--file", exportFile, "--public-key", keyFile]);
    expect(offline).toMatchObject({ code: 0, err: "" });
    expect(offline.out.split("\n").at(-1)).toBe("OK");
  });

  it("R-3.2.2.4: usage errors exit 2", async () => {
    expect((await run(["check"])).code).toBe(2);
    expect((await run(["verify", "--file", exportFile])).code).toBe(2);
    expect((await run(["verify", "--bogus"])).code).toBe(2);
  });

  it("R-3.2.2.4: prints the first break with its sequence and kind and exits 1 after tampering", async () => {
    const db = new Database(sqliteStoreFile(dataDir));
    db.exec("DROP TRIGGER audit_records_no_delete");
    db.prepare("DELETE FROM audit_records WHERE node_id = 'node-1' AND sequence = 3").run();
    db.close();
    const live = await run(["verify", "--data-dir", dataDir, "--node", "node-1"]);
    expect(live.code).toBe(1);
    expect(live.out).toMatch(/node node-1: BROKEN at sequence 3: DELETED/);
    const json = await run(["verify", "--data-dir", dataDir, "--json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toMatchObject({ ok: false, nodes: [{ nodeId: "node-1", ok: false, problem: { kind: "DELETED", firstBadSequence: 3 } }] });
  });

  it("R-3.2.2.4: an export with one edited line fails offline with exit 1", async () => {
    const text = (await readFile(exportFile, "utf8")).replace('"signerId":"s-7"', '"signerId":"s-X"');
    const tampered = join(dataDir, "tampered.jsonl");
    await writeFile(tampered, text);
    const offline = await run(["verify", "--file", tampered, "--public-key", keyFile]);
    expect(offline.code).toBe(1);
    expect(offline.out).toMatch(/node node-1: BROKEN at sequence 7: EDITED/);
  });
});
