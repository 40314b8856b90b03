/**
 * The `store` setting names the SQLite file for every command that opens the store, not only for
 * `inkan serve`: `inkan init` creates and fills the file it names (the first security officer and
 * policy land where the SAM will look), and `inkan audit verify --config FILE` checks the log of the
 * data directory and store the file names (R-3.2.2.4: an auditor's check of the wrong, empty store
 * would say OK about nothing). Flags win over INKAN_* variables, which win over the file.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runInkan as inkan } from "../testing/inkan-processes.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("the store setting, for init and audit verify", () => {
  it("init creates the SQLite file the store setting names (relative to the data directory), not the default one", async () => {
    const root = mkdtempSync(join(tmpdir(), "inkan-store-setting-"));
    dirs.push(root);
    const dataDir = join(root, "data");
    const init = await inkan(["init", "--data-dir", dataDir, "--json"], { INKAN_STORE: "db.sqlite3" });
    expect(init.code, init.stderr).toBe(0);
    expect((JSON.parse(init.stdout) as { store: string }).store).toBe(join(dataDir, "db.sqlite3"));
    expect(existsSync(join(dataDir, "db.sqlite3"))).toBe(true);
    expect(existsSync(join(dataDir, "store.sqlite3")), "the default file").toBe(false);
    expect(init.stderr).toMatch(/created .*store/);
    // audit verify with the same setting reads that file (init's records are there).
    const verify = await inkan(["audit", "verify", "--data-dir", dataDir], { INKAN_STORE: "db.sqlite3" });
    expect(verify.stderr).toBe("");
    expect(verify.stdout).toMatch(/^OK/m); // the old reading looked for the default file and answered "no store at …", exit 1
    expect(verify.code).toBe(0);
  }, 120_000);

  it("audit verify --config FILE reads the file's dataDir and store (a flag still wins)", async () => {
    const root = mkdtempSync(join(tmpdir(), "inkan-store-setting-"));
    dirs.push(root);
    const dataDir = join(root, "data");
    const store = join(root, "elsewhere.sqlite3");
    const config = join(root, "inkan.json");
    writeFileSync(config, JSON.stringify({ dataDir, store }));
    const init = await inkan(["init", "--config", config, "--json"]);
    expect(init.code, init.stderr).toBe(0);
    expect(existsSync(store)).toBe(true);
    expect(existsSync(join(dataDir, "store.sqlite3"))).toBe(false);
    // Run from another directory, so that the default .data would be somewhere else entirely.
    const verify = await inkan(["audit", "verify", "--config", config], {}, root);
    expect(verify.stderr).toBe("");
    expect(verify.stdout).toMatch(/^OK/m); // the old reading looked for the default file and answered "no store at …", exit 1
    expect(verify.code).toBe(0);
    const flag = await inkan(["audit", "verify", "--config", config, "--data-dir", join(root, "empty")], {}, root);
    expect(flag.code).toBe(1);
  }, 120_000);
});
