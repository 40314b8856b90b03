import type { GatewayContext } from "../server.js";
import type { Route } from "../http/router.js";
import { loadCscClients } from "./clients.js";
import { cscRoutes } from "./routes.js";
import { portalNotWired, type SignerApprovals } from "./signer-approvals.js";

export { cscRoutes, cscMethods, cscBase } from "./routes.js";
export { loadCscClients, parseCscClients, cscClientsFile, type CscClient } from "./clients.js";
export type { SignerApprovals, ApprovalRequest, ApprovalOutcome } from "./signer-approvals.js";

/**
 * The CSC API's routes for the gateway's route table: the clients registered in the data
 * directory's csc-clients.json, and the signer portal's approvals (not wired yet: oauth2code then
 * answers temporarily_unavailable).
 */
export function cscRoutesFor(ctx: GatewayContext, approvals: SignerApprovals = portalNotWired): Route[] {
  return cscRoutes({ sam: ctx.sam, clients: loadCscClients(ctx.config.dataDir), approvals, approvalWaitMs: ctx.config.waitTimeoutMs });
}
