import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, parseConfig, readEnv, withConfigFile, type RawConfig } from "../config/config.js";
import { createLogger } from "../log/logger.js";
import { serve } from "../main.js";
import { initEmbeddedToken } from "../crypto/pkcs11/softhsm-token.js";
import { InkanError } from "../errors.js";
import { writeDevPki, type DevPkiPaths } from "../pki/dev-pki.js";
import { createSqliteStore, sqliteStoreFile } from "../store/sqlite/sqlite-store.js";

const usage = `usage:
  inkan init  --data-dir DIR [--json]      create the data directory: development PKI, SoftHSM2
                                           token with the SAM's keys, SQLite store
  inkan serve --data-dir DIR [--listen HOST:PORT] [--config FILE]
                                           serve the SAM (port 0 picks a free port)
Every flag has an INKAN_* environment variable (INKAN_DATA_DIR, INKAN_LISTEN, INKAN_CONFIG_FILE, ...).`;

/** Runs the `inkan` command line; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "init":
        return await init(rest);
      case "serve":
        return await serveCommand(rest);
      case "help":
      case "--help":
      case "-h":
        console.log(usage);
        return 0;
      default:
        console.error(command ? `inkan: unknown command "${command}"\n${usage}` : usage);
        return 2;
    }
  } catch (err) {
    if (err instanceof ConfigError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`inkan ${command}: ${(err as Error).message}`);
      return 2;
    }
    if (err instanceof InkanError) {
      console.error(`inkan ${command}: ${err.message} (${err.code})`);
      return 1;
    }
    throw err;
  }
}

/**
 * `inkan init`: the data directory with its development PKI, the embedded SoftHSM2 token with the
 * SAM's system keys, and the SQLite store. Idempotent: what exists is kept (never overwritten) and
 * only what is missing is created; stderr says which.
 */
async function init(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { "data-dir": { type: "string" }, json: { type: "boolean" } } });
  const dataDir = resolve(values["data-dir"] ?? readEnv().dataDir ?? ".data");
  const pkiExists = existsSync(resolve(dataDir, "pki", "ca.crt"));
  const pki = pkiExists ? existingPaths(dataDir) : await writeDevPki(dataDir);
  const token = await initEmbeddedToken(dataDir);
  const storeFile = sqliteStoreFile(dataDir);
  const storeExists = existsSync(storeFile);
  await (await createSqliteStore({ file: storeFile })).close(); // creates it and runs the migrations

  const created = [
    !pkiExists && "development PKI",
    token.tokenCreated && "crypto-module token",
    token.systemKeysCreated.length > 0 && `system keys (${token.systemKeysCreated.join(", ")})`,
    !storeExists && "store",
  ].filter(Boolean);
  console.error(
    created.length === 0
      ? `inkan init: ${dataDir} is already initialized; nothing was changed`
      : `inkan init: created ${created.join(", ")} in ${dataDir}` + (pkiExists || !token.tokenCreated || storeExists ? "; kept what existed" : ""),
  );
  const paths = {
    dataDir,
    ...pki,
    pkcs11Module: token.library,
    pkcs11Conf: token.confPath,
    pkcs11Token: token.tokenUri,
    pkcs11PinFile: token.userPinFile,
    pkcs11SoPinFile: token.soPinFile,
    store: storeFile,
  };
  if (values.json) {
    console.log(JSON.stringify(paths));
  } else {
    console.log(`Initialized ${dataDir}`);
    for (const [k, v] of Object.entries(paths)) console.log(`  ${k.padEnd(16)} ${v}`);
  }
  return 0;
}

function existingPaths(dataDir: string): DevPkiPaths {
  const p = (name: string) => resolve(dataDir, "pki", name);
  return {
    caCert: p("ca.crt"), serverCert: p("server.crt"), serverKey: p("server.key"),
    scaCaCert: p("sca-ca.crt"), scaCaKey: p("sca-ca.key"), scaCert: p("sca.crt"), scaKey: p("sca.key"),
    adminCaCert: p("admin-ca.crt"), adminCaKey: p("admin-ca.key"), adminCert: p("admin.crt"), adminKey: p("admin.key"),
  };
}

async function serveCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { "data-dir": { type: "string" }, listen: { type: "string" }, config: { type: "string" } },
  });
  const flags: RawConfig = {};
  if (values["data-dir"]) flags.dataDir = values["data-dir"];
  if (values.listen) flags.listen = values.listen;
  if (values.config) flags.configFile = values.config;
  const config = parseConfig(withConfigFile({ ...readEnv(), ...flags }));
  const log = createLogger(config.logLevel);
  const server = await serve(config, log);
  console.log(`listening on ${server.url}`);
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      log.info({ signal }, "shutting down");
      void server.close().then(done);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  log.flush();
  return 0;
}
