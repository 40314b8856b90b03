import type { GatewayContext } from "../server.js";
import type { Route } from "../http/router.js";
import { createInkanClient, type InkanClient } from "@inkan/sdk";
import { loadCscClients, type CscClient } from "./clients.js";
import { cscRoutes } from "./routes.js";
import type { SignerApprovals } from "./signer-approvals.js";

export { cscRoutes, cscMethods, cscBase } from "./routes.js";
export { loadCscClients, parseCscClients, cscClientsFile, CscClientsError, type CscClient } from "./clients.js";
export type { SignerApprovals, ApprovalRequest, ApprovalOutcome } from "./signer-approvals.js";
export { PortalApprovals } from "./portal-approvals.js";

/**
 * The CSC API's routes for the gateway's route table: the clients registered in the data
 * directory's csc-clients.json, and the signer approvals of oauth2code (the gateway passes the
 * signer portal's, PortalApprovals).
 */
export function cscRoutesFor(ctx: GatewayContext, approvals: SignerApprovals): Route[] {
  const clients = loadCscClients(ctx.config.dataDir);
  // A client registered with its own SCA certificate reaches the SAM as that SCA (its scopes apply).
  const own = new Map<string, InkanClient>();
  const samFor = (client: CscClient): InkanClient => {
    if (!client.sca) return ctx.sam.inkan;
    let c = own.get(client.clientId);
    if (!c) {
      c = createInkanClient({ baseUrl: ctx.config.samUrl, tls: { ca: ctx.config.tls.samCa, cert: client.sca.cert, key: client.sca.key } });
      own.set(client.clientId, c);
    }
    return c;
  };
  return cscRoutes({ sam: ctx.sam, samFor, clients, approvals, approvalWaitMs: ctx.config.waitTimeoutMs, publicUrl: ctx.publicUrl });
}
