import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { constants as http2Constants, createSecureServer, type Http2Session } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import type { Logger } from "pino";
import type { Config } from "../config/config.js";
import { createAdminAuthInterceptor, type AdminAuthenticator } from "./admin-auth.js";
import { CallAdmission } from "./call-admission.js";
import { HealthState, registerHealth } from "./health.js";
import { identityOfRequest, kCaller, kRequestId, parseCertificates, type TrustedCas } from "./identity.js";
import { createAccessInterceptor, createCallInterceptor } from "./interceptors.js";
import { registerReflection } from "./reflection.js";
import { createRpcHandler, resetByServer } from "./rpc-handler.js";
import { registerService } from "./register-service.js";
import { createSchemaValidator } from "./schema-patterns.js";

export interface InkanServerOptions {
  config: Config;
  log: Logger;
  /** The generated files of the Inkan contract; every service in them is served. */
  contract: DescFile[];
  /** Implementations by service type name: every method of every contract service (the start fails otherwise). */
  implementations?: Record<string, Record<string, unknown>>;
  /** Authenticates every admin request (certificate + per-request signature); see admin-auth.ts. */
  authenticateAdmin: AdminAuthenticator;
  /**
   * Interceptors that run right after the caller's access was checked, before admin
   * authentication and validation (the policy integrity gate: it refuses SAP calls whatever they hold).
   */
  gateInterceptors?: Interceptor[];
  /** Interceptors right inside the call interceptor, before access checks (refusal audit). */
  outerInterceptors?: Interceptor[];
  /** Interceptors that run last, after authentication and validation (dual control). */
  innerInterceptors?: Interceptor[];
}

/** What the transport holds and refused so far (issue 17.6): for operators' metrics and the abuse tests. */
export interface TransportStats {
  /** TCP connections open (TLS handshake done or not). */
  connections: number;
  /** Connections closed on accept because maxConnections were open. */
  droppedConnections: number;
  callsInProgress: number;
  peakCallsInProgress: number;
  /** Calls refused with LIMIT_EXCEEDED (maxConcurrentCalls or maxConcurrentCallsPerClient). */
  refusedCalls: number;
  /** The most streams one HTTP/2 connection had open at once. */
  peakStreamsPerConnection: number;
  /** TLS handshakes that did not finish within handshakeTimeoutMs. */
  handshakeTimeouts: number;
  /** Connections closed after idleTimeoutMs without traffic. */
  idleClosed: number;
  /** HTTP/2 connections closed because their client reset streams too fast. */
  resetFloods: number;
}

export interface InkanServer {
  /** `https://host:port`, with the port actually bound (port 0 picks a free one). */
  url: string;
  port: number;
  health: HealthState;
  transportStats(): TransportStats;
  /** Issue 23: `http://host:port` of /metrics, /healthz and /readyz, when metricsListen is set. */
  metricsUrl?: string;
  /**
   * Graceful shutdown: stop accepting, report NOT_SERVING, let in-flight calls finish within
   * `graceMs` (default: the configured shutdownGraceMs), then close what is left.
   */
  close(graceMs?: number): Promise<void>;
}

/** Starts the SAM's HTTP/2 + mTLS endpoint: Connect, gRPC and gRPC-Web on one port. */
export async function startServer(options: InkanServerOptions): Promise<InkanServer> {
  const { config, log } = options;
  const read = (f: string) => readFileSync(f, "utf8");
  const cas: TrustedCas = {
    sca: config.tls.scaCaFiles.flatMap((f) => parseCertificates(read(f))),
    frontEnd: config.tls.frontEndCaFiles.flatMap((f) => parseCertificates(read(f))),
    privileged: config.tls.adminCaFiles.flatMap((f) => parseCertificates(read(f))),
  };
  const services: DescService[] = options.contract.flatMap((f) => f.services);
  const health = new HealthState(services.map((s) => s.typeName));

  const limits = config.limits;
  const admission = new CallAdmission(limits);
  const routes = (router: ConnectRouter) => {
    for (const s of services) registerService(router, s, options.implementations?.[s.typeName]);
    registerHealth(router, health);
    registerReflection(router, options.contract, [
      ...services.map((s) => s.typeName),
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
    ]);
  };
  // Order matters: errors are mapped and logged outermost; unknown callers are refused before
  // validation, so they learn nothing about the schema. Requests connect-es could not read go
  // through the outer part only (issue 17.5: one error path).
  const outer = [createCallInterceptor(log), ...(options.outerInterceptors ?? []), createAccessInterceptor()];
  const handler = createRpcHandler({
    routes,
    readMaxBytes: config.limits.readMaxBytes,
    interceptors: [
      ...outer,
      ...(options.gateInterceptors ?? []),
      createAdminAuthInterceptor(options.authenticateAdmin),
      createValidateInterceptor({ validator: createSchemaValidator() }), // issue 20: the schema's own patterns on V8's RegExp
      ...(options.innerInterceptors ?? []),
    ],
    frameworkErrorInterceptors: outer,
    contextValues: (req) =>
      createContextValues().set(kCaller, identityOfRequest(req, cas)).set(kRequestId, randomUUID()),
    log,
    // Issue 17.6: calls in progress per node and per client certificate; health probes are not
    // counted, so a node at its limit still says it is alive.
    admission: { calls: admission, clientOf: (v) => v.get(kCaller)?.sha256 ?? "", exempt: new Set(["/grpc.health.v1.Health/Check"]) },
    requestTimeoutMs: limits.requestTimeoutMs,
    maxHeaderBytes: limits.maxHeaderBytes,
  });

  const server = createSecureServer(
    {
      cert: read(config.tls.certFile),
      key: read(config.tls.keyFile),
      ca: [...cas.sca, ...(cas.frontEnd ?? []), ...cas.privileged].map((c) => c.toString()),
      requestCert: true,
      rejectUnauthorized: true, // a client certificate is mandatory and must chain to a configured CA
      minVersion: "TLSv1.2",
      allowHTTP1: true, // Connect and gRPC-Web also work over HTTP/1.1
      // Issue 17.6: the limits of config.ts (TransportLimits), each justified there.
      handshakeTimeout: limits.handshakeTimeoutMs,
      maxSessionMemory: limits.maxSessionMemoryMib,
      settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
    },
    handler,
  );
  server.maxConnections = limits.maxConnections;
  // HTTP/1.1 connections are served by node:http's parser, which reads these from the server.
  Object.assign(server, {
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: Math.min(limits.requestTimeoutMs, 60_000),
    connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(limits.requestTimeoutMs / 4))),
  });
  // Idle connections: node:http2 calls this with the session (HTTP/2) or the socket (HTTP/1.1).
  server.setTimeout(limits.idleTimeoutMs);
  const stats = { droppedConnections: 0, peakStreamsPerConnection: 0, handshakeTimeouts: 0, idleClosed: 0, resetFloods: 0 };
  const openStreams = new WeakMap<Http2Session, () => number>();
  server.on("timeout", (idle: Http2Session | Socket) => {
    stats.idleClosed++;
    if (!("goaway" in idle)) idle.destroy();
    else if ((openStreams.get(idle)?.() ?? 0) > 0) idle.close(); // GOAWAY: the open streams may finish
    else idle.destroy(); // GOAWAY NO_ERROR, and the socket closes (close() waits for a preface that may never come)
  });
  server.on("drop", () => stats.droppedConnections++);
  let connections = 0;
  server.on("connection", (socket: Socket) => {
    connections++;
    socket.once("close", () => connections--);
  });
  // A client that breaks the protocol (e.g. more streams than it was allowed) loses its connection.
  server.on("sessionError", (err) => log.debug({ err: { message: err.message, code: (err as { code?: string }).code } }, "HTTP/2 connection closed on a protocol error"));
  const sessions = new Set<Http2Session>();
  const sockets = new Set<Socket>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
    let open = 0;
    openStreams.set(s, () => open);
    const resets = new ResetBudget(limits.maxConcurrentStreams);
    s.on("stream", (stream) => {
      stats.peakStreamsPerConnection = Math.max(stats.peakStreamsPerConnection, ++open);
      stream.once("close", () => {
        open--;
        // Rapid reset (CVE-2023-44487): a client that cancels its streams faster than the budget
        // allows loses the connection; Node 20 has no streamResetBurst/streamResetRate options.
        if (stream.rstCode === http2Constants.NGHTTP2_NO_ERROR || resetByServer.has(stream) || resets.take() || s.destroyed) return;
        stats.resetFloods++;
        log.warn("HTTP/2 connection closed: its client resets streams too fast (rapid reset)");
        s.goaway(http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
        s.destroy();
      });
    });
  });
  server.on("secureConnection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("tlsClientError", (err) => {
    const code = (err as { code?: string }).code;
    if (code === "ERR_TLS_HANDSHAKE_TIMEOUT") {
      stats.handshakeTimeouts++;
      log.debug("TLS handshake timed out");
      return;
    }
    log.warn({ err: { message: err.message, code } }, "TLS handshake refused");
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.listen.port, config.listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  const url = `https://${host}:${port}`;
  log.info({ url }, "listening");

  let closing: Promise<void> | undefined;
  const close = (graceMs = config.shutdownGraceMs) =>
    (closing ??= new Promise<void>((resolve) => {
      health.setAll(Status.NOT_SERVING);
      health.stop();
      const timer = setTimeout(() => {
        log.warn({ open: sessions.size + sockets.size }, "shutdown grace period over; closing remaining connections");
        for (const s of sessions) s.destroy();
        for (const s of sockets) s.destroy();
      }, graceMs);
      server.close(() => {
        clearTimeout(timer);
        log.info("stopped");
        resolve();
      });
      for (const s of sessions) s.close(); // GOAWAY: no new streams, in-flight ones finish
    }));
  const transportStats = (): TransportStats => ({ connections, ...stats, ...admission.stats() });
  return { url, port, health, transportStats, close };
}

/**
 * How many streams one HTTP/2 connection may see its client reset (before the SAM answered): a
 * burst of 2 x maxConcurrentStreams, then 33 a second, the values nghttp2 chose for the same defence.
 */
class ResetBudget {
  private tokens: number;
  private last = performance.now();
  constructor(maxConcurrentStreams: number, private readonly perSecond = 33) {
    this.burst = 2 * maxConcurrentStreams;
    this.tokens = this.burst;
  }
  private readonly burst: number;

  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}
