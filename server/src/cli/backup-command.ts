/**
 * `inkan backup --data-dir DIR --out FILE` and `inkan restore --data-dir DIR --from FILE`
 * (issue 22; backup.ts, restore.ts, the README runbook). Exit code 0 on
 * success, 1 when refused or failed (nothing restored), 2 for a usage error.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseConfig, readEnv, withConfigFile, type RawConfig } from "../config/config.js";
import type { Opener } from "./backup.js";

function configFrom(values: { "data-dir"?: string | undefined; config?: string | undefined }) {
  const flags: RawConfig = {};
  if (values["data-dir"]) flags.dataDir = resolve(values["data-dir"]);
  if (values.config) flags.configFile = values.config;
  return parseConfig(withConfigFile({ ...readEnv(), ...flags }));
}

/** The configured crypto module and store, as `inkan serve` opens them. */
export const openConfigured: Opener = async (config) => {
  const { openCryptoModule, openStore } = await import("../main.js");
  const cryptoModule = await openCryptoModule(config);
  try {
    return { cryptoModule, store: await openStore(config) };
  } catch (err) {
    await cryptoModule.close().catch(() => undefined);
    throw err;
  }
};

export async function backupCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { "data-dir": { type: "string" }, config: { type: "string" }, out: { type: "string" }, json: { type: "boolean" } } });
  if (!values.out) {
    console.error("usage: inkan backup --data-dir DIR --out FILE [--config FILE] [--json]");
    return 2;
  }
  const config = configFrom(values);
  const { takeBackup } = await import("./backup.js");
  const result = await takeBackup(config, resolve(values.out), openConfigured);
  if (values.json) {
    console.log(JSON.stringify(result));
  } else {
    console.log(`Backup written to ${result.out}`);
    console.log(`  snapshot id      ${result.snapshotId}`);
    console.log(`  audit marks      ${Object.entries(result.highWaterMarks).map(([n, s]) => `${n}=${s}`).join(", ") || "(none)"}`);
    console.log(`  files            ${result.files} (the store snapshot and the data directory's files)`);
    console.log(`  not backed up    ${result.excluded.join(", ")}: the crypto module's token and PIN; back up its keys with the HSM's own tools`);
  }
  return 0;
}

export async function restoreCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { "data-dir": { type: "string" }, config: { type: "string" }, from: { type: "string" }, json: { type: "boolean" } } });
  if (!values.from) {
    console.error("usage: inkan restore --data-dir DIR --from FILE [--config FILE] [--json]");
    return 2;
  }
  const config = configFrom(values);
  const { restoreBackup } = await import("./restore.js");
  const result = await restoreBackup(config, resolve(values.from), openConfigured);
  if (values.json) {
    console.log(JSON.stringify(result));
  } else {
    console.log(`Restored snapshot ${result.snapshotId} into ${config.dataDir}`);
    console.log(`  restore id       ${result.restoreId}`);
    console.log(`  audit marks      before ${Object.entries(result.oldHighWaterMarks).map(([n, s]) => `${n}=${s}`).join(", ")}; snapshot ${Object.entries(result.newHighWaterMarks).map(([n, s]) => `${n}=${s}`).join(", ") || "(none)"}`);
    console.log(`  audit tail kept  ${result.keptRecords} records after the snapshot (also in ${result.tailFile})`);
    if (result.keptDatabase) console.log(`  old database     ${result.keptDatabase}`);
    console.log(`\nThe SAM refuses to sign until two security officers acknowledge the restore:`);
    console.log(`  inkan admin restore acknowledge --snapshot-id ${result.snapshotId}   (one officer asks, a second approves)`);
  }
  return 0;
}
