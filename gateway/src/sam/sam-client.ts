import { createClient, type Client } from "@connectrpc/connect";
import { createInkanClient, createInkanTransport, SignerService, type InkanClient } from "@inkan/sdk";
import type { GatewayConfig } from "../config.js";

/** The gateway's view of the SAM: the SDK over mutual TLS, with the gateway's own client certificate. */
export interface SamClients {
  inkan: InkanClient;
  signer: Client<typeof SignerService>;
}

export function createSamClients(config: GatewayConfig): SamClients {
  // Two caller kinds (issue 18 item 7): SignerService accepts only a signer front end, the SAP only SCAs.
  const frontEnd = { ca: config.tls.samCa, cert: config.tls.clientCert, key: config.tls.clientKey };
  const sca = { ca: config.tls.samCa, cert: config.tls.scaClientCert, key: config.tls.scaClientKey };
  return {
    inkan: createInkanClient({ baseUrl: config.samUrl, tls: sca }),
    signer: createClient(SignerService, createInkanTransport({ baseUrl: config.samUrl, tls: frontEnd })),
  };
}
