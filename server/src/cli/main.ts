import { parseArgs } from "node:util";
import { ConfigError, parseConfig, readEnv, withConfigFile, type RawConfig } from "../config/config.js";
import { InkanError } from "../errors.js";
// Each command imports what it needs when it runs: `inkan admin` then starts without loading the
// server (crypto module, stores), which keeps a script's many short calls quick.

const usage = `usage:
  inkan init  --data-dir DIR [--config FILE] [--json]
                                           create the data directory: development PKI, SoftHSM2
                                           token with the SAM's keys, SQLite store; with serve's
                                           pkcs11* and store settings, the SAM's keys on that
                                           HSM token and that store instead
  inkan init  --data-dir DIR --demo-signer [--target URL] [--json]
                                           DEVELOPMENT ONLY: through the running SAM (default
                                           https://127.0.0.1:8443), enroll a demo signer with a
                                           certified P-256 credential (kept on later runs) and
                                           print a fresh activation code
  inkan serve --data-dir DIR [--listen HOST:PORT] [--config FILE] [--metrics-listen HOST:PORT]
                                           serve the SAM (port 0 picks a free port); plain-HTTP
                                           /metrics, /healthz, /readyz on an internal address
  inkan audit verify --data-dir DIR [--config FILE] [--node ID] [--json]
                                           verify the audit log of every node (the configured
                                           store and module): OK, or the first break per node
  inkan audit verify --file EXPORT.jsonl --public-key KEY [--partial]
                                           verify an exported audit log offline
  inkan gateway --data-dir DIR [--listen HOST:PORT] [--sam https://HOST:PORT]
                                           serve the signer portal in front of the SAM
  inkan backup --data-dir DIR --out FILE   a consistent online snapshot of the store and the data
                                           directory's files (never the token: back up keys with the HSM's tools)
  inkan restore --data-dir DIR --from FILE put a backup back (server stopped); the SAM signs again
                                           once two security officers acknowledge it
  inkan admin NOUN VERB [ARGS] [--json]    the privileged tasks over the admin API (signer,
                                           approval, credential, policy, audit, user):
                                           \`inkan admin --help\`
Every flag has an INKAN_* environment variable (INKAN_DATA_DIR, INKAN_LISTEN, INKAN_CONFIG_FILE, ...).`;

/**
 * What lies under a failure, for the operator who has to fix it: the codes along the error's cause
 * chain (a CKR_* name of the crypto module, an SQLSTATE or errno code of the store or the system),
 * never a cause's free-form message, which could carry data of a request.
 */
export function causeCodes(err: Error): string[] {
  const codes: string[] = [];
  let cause: unknown = err.cause;
  for (let depth = 0; cause instanceof Error && depth < 8; depth++, cause = cause.cause) {
    const code = (cause as { code?: unknown }).code;
    if (/^CKR_[A-Z0-9_]+$/.test(cause.message)) codes.push(cause.message);
    else if (typeof code === "string" && /^[A-Z0-9_]{2,48}$/.test(code)) codes.push(code);
  }
  return [...new Set(codes)];
}

/** Runs the `inkan` command line; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "init":
        return await init(rest);
      case "serve":
        return await serveCommand(rest);
      case "audit":
        return await (await import("./audit-command.js")).auditVerifyCommand(rest);
      case "backup":
        return await (await import("./backup-command.js")).backupCommand(rest);
      case "restore":
        return await (await import("./backup-command.js")).restoreCommand(rest);
      case "admin":
        return await (await import("./admin.js")).adminCommand(rest);
      case "gateway":
        return await gatewayCommand(rest);
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
      const causes = causeCodes(err);
      console.error(`inkan ${command}: ${err.message} (${err.code}${causes.length > 0 ? `; cause: ${causes.join(", ")}` : ""})`);
      return 1;
    }
    throw err;
  }
}

/** `inkan init`: see initDataDir. Idempotent; stderr says what was created and what was kept. */
async function init(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { "data-dir": { type: "string" }, json: { type: "boolean" }, "demo-signer": { type: "boolean" }, target: { type: "string" }, config: { type: "string" } } });
  const [{ initDataDir, devIdentityPaths }, { externalModuleSettings }] = await Promise.all([import("../init.js"), import("../init-module.js")]);
  // Issues 21/23: the settings `inkan serve` reads (flags, INKAN_*, --config FILE) name the store and crypto module.
  const env = withConfigFile({ ...readEnv(), ...(values.config ? { configFile: values.config } : {}) });
  const dataDir = values["data-dir"] ?? env.dataDir ?? ".data";
  if (values["demo-signer"]) {
    // Issue 15, development only. An initialized directory is only read (the SAM may be serving it).
    const { demoSigner } = await import("./demo-signer.js");
    const paths = devIdentityPaths(dataDir) ?? (await initDataDir(dataDir, { store: env.store, cryptoModule: externalModuleSettings(env, dataDir) }), devIdentityPaths(dataDir));
    if (!paths) throw new InkanError("INVALID_REQUEST", `${dataDir} lacks the development registration operator: run \`inkan init --data-dir ${dataDir}\` while the SAM is stopped`);
    const target = values.target ?? "https://127.0.0.1:8443";
    let demo;
    try {
      demo = await demoSigner(paths, target);
    } catch (err) {
      console.error(`inkan init --demo-signer: ${(err as Error).message}\n(it works through the running SAM: start \`inkan serve --data-dir ${dataDir}\`, or give --target URL)`);
      return 1;
    }
    console.error("inkan init --demo-signer: DEVELOPMENT ONLY (a demo signer of the development PKI; never on a production SAM)");
    if (values.json) {
      console.log(JSON.stringify({ development: true, ...demo }));
    } else {
      console.log(`DEVELOPMENT ONLY: demo signer ${demo.created ? "enrolled" : "kept"}`);
      console.log(`  signerId         ${demo.signerId}`);
      console.log(`  credentialId     ${demo.credentialId}  (EC P-256, certified by the development signer issuing CA)`);
      console.log(`  activationCode   ${demo.activationCode}  (one-time, until ${demo.expiresAt}; earlier codes no longer work)`);
    }
    return 0;
  }
  const { paths, created } = await initDataDir(dataDir, { store: env.store, cryptoModule: externalModuleSettings(env, dataDir) });
  console.error(
    created.length === 0
      ? `inkan init: ${paths.dataDir} is already initialized; nothing was changed`
      : `inkan init: created ${created.join(", ")} in ${paths.dataDir}`,
  );
  if (values.json) {
    console.log(JSON.stringify(paths));
  } else {
    console.log(`Initialized ${paths.dataDir}`);
    for (const [k, v] of Object.entries(paths)) {
      if (v === undefined) continue;
      if (typeof v !== "object") console.log(`  ${k.padEnd(16)} ${v}`);
      else for (const [k2, v2] of Object.entries(v)) console.log(`  ${`${k}.${k2}`.padEnd(16)} ${String(v2)}`);
    }
    if (created.includes("first security officer")) {
      console.log(`\nThe first security officer is ${paths.adminUserId}: their client certificate is ${paths.adminCert}`);
      console.log(`and their request-signing key ${paths.adminRequestKey}. Keep both; this is printed once.`);
    }
  }
  return 0;
}

/** `inkan gateway`: the @inkan/gateway workspace, loaded by name so the server does not build against it. */
async function gatewayCommand(args: string[]): Promise<number> {
  const gatewayCli: string = "@inkan/gateway/cli";
  const { gatewayCommand } = (await import(gatewayCli)) as { gatewayCommand(args: string[]): Promise<number> };
  return gatewayCommand(args);
}

async function serveCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { "data-dir": { type: "string" }, listen: { type: "string" }, config: { type: "string" }, "metrics-listen": { type: "string" } },
  });
  const flags: RawConfig = {};
  if (values["data-dir"]) flags.dataDir = values["data-dir"];
  if (values.listen) flags.listen = values.listen;
  if (values.config) flags.configFile = values.config;
  if (values["metrics-listen"]) flags.metricsListen = values["metrics-listen"];
  const config = parseConfig(withConfigFile({ ...readEnv(), ...flags }));
  const [{ createLogger }, { serve }, { applyServerHeapPolicy }] = await Promise.all([import("../log/logger.js"), import("../main.js"), import("../heap-policy.js")]);
  applyServerHeapPolicy(); // issue 20: a streaming SAM's heap stays near its live data
  const log = createLogger(config.logLevel);
  // R-3.2.2.4: signals are caught before the SAM starts, so a stop asked for while it starts, or just
  // as it says it listens, ends it cleanly once started (samStopped and the final audit checkpoint
  // written) instead of the default action killing it with its audit tail unanchored. One stop: the
  // same signal again finds no listener left and ends the process at once.
  const stopAsked = new Promise<string>((ask) => {
    process.once("SIGTERM", () => ask("SIGTERM"));
    process.once("SIGINT", () => ask("SIGINT"));
  });
  log.info({ dataDir: config.dataDir }, "starting");
  const server = await serve(config, log);
  console.log(`listening on ${server.url}`);
  if (server.metricsUrl) console.log(`metrics, /healthz and /readyz on ${server.metricsUrl}`);
  log.info({ signal: await stopAsked }, "shutting down");
  await server.close();
  log.flush();
  return 0;
}
