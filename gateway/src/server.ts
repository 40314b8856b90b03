import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { GatewayConfig } from "./config.js";
import { cscRoutesFor, PortalApprovals } from "./csc/index.js";
import type { SignerApprovals } from "./csc/signer-approvals.js";
import { HttpError, securityHeaders, sendError } from "./http/respond.js";
import { Router, type Route } from "./http/router.js";
import { portalApiRoutes } from "./portal/portal-api.js";
import { portalAssetRoutes } from "./portal/assets.js";
import { PortalSessions } from "./portal/sessions.js";
import { scaRoutes } from "./requests/sca-routes.js";
import { SigningRequests } from "./requests/signing-requests.js";
import { createSamClients, type SamClients } from "./sam/sam-client.js";
import { openGatewayStore, type GatewayStore } from "./store/gateway-store.js";

export interface Gateway {
  /** https://HOST:PORT as it listens. */
  url: string;
  /** Its public URL: config.publicUrl, or `url`. */
  publicUrl: string;
  /** Its store: the data directory's SQLite file, or the shared PostgreSQL database (config.store). */
  store: GatewayStore;
  sam: SamClients;
  close(): Promise<void>;
}

/** What a feature needs to build its routes. */
export interface GatewayContext {
  config: GatewayConfig;
  store: GatewayStore;
  sam: SamClients;
  /**
   * The gateway's public URL (an origin, no trailing slash): config.publicUrl, or the URL it listens
   * on. Every absolute URL the gateway hands out or checks (the CSC assertion audience, info's
   * oauth2, the portal's request links) is built from it, never from a request's Host header.
   */
  publicUrl(): string;
}

/** Extra routes (tests, later features) added after the built-in ones. */
export type RouteFactory = (ctx: GatewayContext) => Route[];

/**
 * Starts the gateway: HTTPS with the data directory's server certificate. Client certificates are
 * requested but not required, so that a browser connects without one; the SCA API checks the
 * certificate itself (it must chain to the SCA CA). `hooks.signerApprovals`: how the CSC API's
 * oauth2code reaches the signer; by default the signer portal (a test may put a double of the
 * portal and device there).
 */
export async function startGateway(config: GatewayConfig, extra: RouteFactory[] = [], hooks: { signerApprovals?: SignerApprovals } = {}): Promise<Gateway> {
  const store = await openGatewayStore({ dataDir: config.dataDir, store: config.store });
  const sam = createSamClients(config);
  let listenUrl: string | undefined; // known once it listens (port 0 picks one), before any request
  const publicUrl = (): string => {
    const url = config.publicUrl ?? listenUrl;
    if (url === undefined) throw new Error("the gateway's public URL is asked for before it listens");
    return url;
  };
  const ctx: GatewayContext = { config, store, sam, publicUrl };
  const router = new Router();
  try {
    const requests = await SigningRequests.open(store);
    await requests.purge();
    router.add(...portalAssetRoutes(), ...portalApiRoutes(ctx, requests, new PortalSessions(store)), ...scaRoutes(ctx, requests), ...cscRoutesFor(ctx, hooks.signerApprovals ?? (await PortalApprovals.open(requests, publicUrl, store.shared))));
    for (const f of extra) router.add(...f(ctx));
  } catch (err) {
    await store.close(); // e.g. a malformed csc-clients.json: nothing is left open behind the error
    throw err;
  }

  const server: Server = createServer(
    { cert: config.tls.serverCert, key: config.tls.serverKey, ca: config.tls.scaCa, requestCert: true, rejectUnauthorized: false, minVersion: "TLSv1.2" },
    (req, res) => {
      securityHeaders(res);
      const url = new URL(req.url ?? "/", "https://gateway.invalid");
      const found = router.match(req.method ?? "GET", url.pathname);
      if (found === undefined) return sendError(res, new HttpError(404, "not_found", "no such resource"));
      if (found === "methodNotAllowed") return sendError(res, new HttpError(405, "invalid_request", "method not allowed"));
      // Async wrapper: a handler that throws synchronously is answered like one that rejects.
      (async () => found.handler({ req, res, url, params: found.params }))().catch((err: unknown) => {
        if (res.headersSent) return void res.destroy();
        sendError(res, err instanceof HttpError ? err : new HttpError(500, "server_error", "internal error"));
        if (!(err instanceof HttpError)) console.error("inkan gateway:", err);
      });
    },
  );
  await new Promise<void>((done, fail) => {
    server.once("error", fail);
    server.listen(config.listen.port, config.listen.host, () => done());
  });
  const { port } = server.address() as AddressInfo;
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  listenUrl = `https://${host}:${port}`;
  return {
    url: listenUrl,
    publicUrl: publicUrl(),
    store,
    sam,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
      await store.close();
    },
  };
}
