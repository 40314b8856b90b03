import type { Logger } from "pino";
import { contractFiles } from "@inkan/sdk";
import type { Config } from "./config/config.js";
import { startServer, type InkanServer } from "./transport/server.js";

/**
 * The composition root: the only place that sees every adapter. The crypto module and the store
 * join here with their issues; until then every contract RPC answers UNIMPLEMENTED.
 */
export async function serve(config: Config, log: Logger): Promise<InkanServer> {
  return startServer({ config, log, contract: contractFiles });
}
