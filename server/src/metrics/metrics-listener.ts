/**
 * Issue 23: the plain-HTTP listener for Prometheus and load balancers (`metricsListen`, off by
 * default). It serves exactly three paths, without a client certificate: bind it to an internal
 * address, never to the network the SCAs reach.
 * - GET /metrics: the Prometheus text format.
 * - GET /healthz: 200 while the process answers (liveness).
 * - GET /readyz: 200 when every check passes, 503 otherwise, with the checks as JSON (readiness).
 * Anything else is 404 (405 for another method on these paths); nothing else is exposed.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

/** Readiness: each named check and whether it passes; ready when all pass. */
export type ReadinessChecks = Record<string, boolean>;

export interface MetricsListenerOptions {
  host: string;
  port: number;
  registry: Registry;
  readiness: () => Promise<ReadinessChecks>;
  onError?: (err: unknown) => void;
}

export interface MetricsListener {
  /** `http://host:port`, with the port actually bound. */
  url: string;
  close(): Promise<void>;
}

export async function startMetricsListener(o: MetricsListenerOptions): Promise<MetricsListener> {
  const server = createServer((req, res) => {
    void answer(req, res, o).catch((err: unknown) => {
      o.onError?.(err);
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end("internal error\n");
    });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = o.host.includes(":") ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const paths = new Set(["/metrics", "/healthz", "/readyz"]);

async function answer(req: IncomingMessage, res: ServerResponse, o: MetricsListenerOptions): Promise<void> {
  const path = (req.url ?? "").split("?", 1)[0] ?? "";
  if (!paths.has(path)) {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
    return;
  }
  const head = req.method === "HEAD";
  if (path === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain", "cache-control": "no-store" }).end(head ? undefined : "ok\n");
    return;
  }
  if (path === "/readyz") {
    const checks = await o.readiness();
    const ready = Object.values(checks).every(Boolean);
    res.writeHead(ready ? 200 : 503, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(head ? undefined : JSON.stringify({ ready, checks }) + "\n");
    return;
  }
  const body = await o.registry.metrics();
  res.writeHead(200, { "content-type": o.registry.contentType, "cache-control": "no-store" }).end(head ? undefined : body);
}
