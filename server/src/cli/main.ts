import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, parseConfig, readEnv, withConfigFile, type RawConfig } from "../config/config.js";
import { createLogger } from "../log/logger.js";
import { serve } from "../main.js";
import { writeDevPki, type DevPkiPaths } from "../pki/dev-pki.js";

const usage = `usage:
  inkan init  --data-dir DIR [--json]      create the data directory and a development PKI
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
    throw err;
  }
}

async function init(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { "data-dir": { type: "string" }, json: { type: "boolean" } } });
  const dataDir = resolve(values["data-dir"] ?? readEnv().dataDir ?? ".data");
  const already = existsSync(resolve(dataDir, "pki", "ca.crt"));
  if (already) {
    // Never overwrite keys: a second init reports what is there.
    console.error(`inkan init: ${dataDir} is already initialized; nothing was changed`);
  }
  const paths: DevPkiPaths & { dataDir: string } = { dataDir, ...(already ? existingPaths(dataDir) : await writeDevPki(dataDir)) };
  if (values.json) {
    console.log(JSON.stringify(paths));
  } else {
    console.log(`Initialized ${dataDir}`);
    for (const [k, v] of Object.entries(paths)) console.log(`  ${k.padEnd(12)} ${v}`);
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
