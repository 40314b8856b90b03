import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureServer, type Http2Session } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { DescFile, DescService } from "@bufbuild/protobuf";
import { createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import type { Logger } from "pino";
import type { Config } from "../config/config.js";
import { createAdminAuthInterceptor, type AdminAuthenticator } from "./admin-auth.js";
import { HealthState, registerHealth } from "./health.js";
import { identityOfRequest, kCaller, kRequestId, parseCertificates, type TrustedCas } from "./identity.js";
import { createAccessInterceptor, createCallInterceptor } from "./interceptors.js";
import { registerReflection } from "./reflection.js";
import { createRpcHandler } from "./rpc-handler.js";
import { registerService } from "./register-service.js";

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

export interface InkanServer {
  /** `https://host:port`, with the port actually bound (port 0 picks a free one). */
  url: string;
  port: number;
  health: HealthState;
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
    privileged: config.tls.adminCaFiles.flatMap((f) => parseCertificates(read(f))),
  };
  const services: DescService[] = options.contract.flatMap((f) => f.services);
  const health = new HealthState(services.map((s) => s.typeName));

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
      createValidateInterceptor(),
      ...(options.innerInterceptors ?? []),
    ],
    frameworkErrorInterceptors: outer,
    contextValues: (req) =>
      createContextValues().set(kCaller, identityOfRequest(req, cas)).set(kRequestId, randomUUID()),
    log,
  });

  const server = createSecureServer(
    {
      cert: read(config.tls.certFile),
      key: read(config.tls.keyFile),
      ca: [...cas.sca, ...cas.privileged].map((c) => c.toString()),
      requestCert: true,
      rejectUnauthorized: true, // a client certificate is mandatory and must chain to a configured CA
      minVersion: "TLSv1.2",
      allowHTTP1: true, // Connect and gRPC-Web also work over HTTP/1.1
    },
    handler,
  );
  const sessions = new Set<Http2Session>();
  const sockets = new Set<Socket>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.on("secureConnection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("tlsClientError", (err) => log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, "TLS handshake refused"));

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
  return { url, port, health, close };
}
