import { parseArgs } from "node:util";
import { isPostgresStore } from "./store/gateway-store.js";
import { gatewayConfig, GatewayConfigError } from "./config.js";
import { cscClientsFile, CscClientsError } from "./csc/clients.js";
import { startGateway } from "./server.js";

export const gatewayUsage = `usage: inkan gateway --data-dir DIR [--listen HOST:PORT] [--public-url URL] [--sam https://HOST:PORT]
                     [--client-cert PEM --client-key PEM] [--sca-client-cert PEM --sca-client-key PEM]
  serve the signer portal and the SCA request API in front of the SAM (default listen
  127.0.0.1:8444, SAM https://127.0.0.1:8443; client certificates toward the SAM: the signer
  front end DIR/pki/front-end.crt for SignerService, the SCA DIR/pki/sca.crt for GetInfo;
  INKAN_DATA_DIR, INKAN_GATEWAY_LISTEN, INKAN_GATEWAY_PUBLIC_URL, INKAN_SAM_URL, INKAN_GATEWAY_CLIENT_CERT,
  INKAN_GATEWAY_CLIENT_KEY, INKAN_GATEWAY_SCA_CLIENT_CERT, INKAN_GATEWAY_SCA_CLIENT_KEY). --public-url: the
  origin clients and signers reach the gateway by (https://HOST[:PORT], or http://; no path, query or
  fragment; default https://LISTEN-HOST:PORT): the CSC client-assertion audience (URL/csc/v2/oauth2/token),
  info's oauth2 URL and the portal's request links, never a request's Host header; set it when
  listening on 0.0.0.0 or behind a proxy. Its state: DIR/gateway.sqlite, or with
  INKAN_STORE=postgres://... the SAM nodes' shared database (schema inkan_gateway)`;

/** `inkan gateway`: runs until SIGTERM or SIGINT; resolves to the exit code. */
export async function gatewayCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: {
      "data-dir": { type: "string" }, listen: { type: "string" }, "public-url": { type: "string" }, sam: { type: "string" },
      "client-cert": { type: "string" }, "client-key": { type: "string" }, help: { type: "boolean" },
      "sca-client-cert": { type: "string" }, "sca-client-key": { type: "string" },
    } });
  if (values.help) {
    console.log(gatewayUsage);
    return 0;
  }
  let config;
  try {
    config = gatewayConfig({
      dataDir: values["data-dir"] ?? process.env.INKAN_DATA_DIR ?? ".data",
      listen: values.listen ?? process.env.INKAN_GATEWAY_LISTEN,
      publicUrl: values["public-url"] ?? process.env.INKAN_GATEWAY_PUBLIC_URL,
      samUrl: values.sam ?? process.env.INKAN_SAM_URL,
      clientCertFile: values["client-cert"] ?? process.env.INKAN_GATEWAY_CLIENT_CERT,
      clientKeyFile: values["client-key"] ?? process.env.INKAN_GATEWAY_CLIENT_KEY,
      scaClientCertFile: values["sca-client-cert"] ?? process.env.INKAN_GATEWAY_SCA_CLIENT_CERT,
      scaClientKeyFile: values["sca-client-key"] ?? process.env.INKAN_GATEWAY_SCA_CLIENT_KEY,
      store: process.env.INKAN_STORE,
    });
    if (config.store && !isPostgresStore(config.store)) console.error("inkan gateway: INKAN_STORE is not postgres://: the gateway keeps its state in the data directory's gateway.sqlite");
  } catch (err) {
    if (err instanceof GatewayConfigError) {
      console.error(`inkan gateway: ${err.message}`);
      return 2;
    }
    throw err;
  }
  let gateway;
  try {
    gateway = await startGateway(config);
  } catch (err) {
    // Fail closed with the reason, not a stack trace: the operator fixes the file and starts again.
    if (err instanceof CscClientsError) {
      console.error(`inkan gateway: ${cscClientsFile(config.dataDir)}: ${err.message}`);
      return 2;
    }
    throw err;
  }
  console.log(`listening on ${gateway.url}`);
  if (gateway.publicUrl !== gateway.url) console.log(`public URL ${gateway.publicUrl}`);
  await new Promise<void>((done) => {
    const stop = () => void gateway.close().then(done);
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  return 0;
}
