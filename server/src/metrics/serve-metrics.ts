/**
 * Issue 23: the metrics listener of a running SAM node, wired from the parts main.ts already holds:
 * what /readyz checks, and what the gauges read at scrape time.
 */
import { HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import type { Logger } from "pino";
import type { HealthState } from "../transport/health.js";
import type { TransportStats } from "../transport/server.js";
import { startMetricsListener, type MetricsListener } from "./metrics-listener.js";
import type { MetricSources, SamMetrics } from "./metrics.js";

export interface ServeMetricsOptions {
  metrics: SamMetrics;
  listen: { host: string; port: number };
  /** The gRPC health state and the names of its services ("" is added). */
  health: HealthState;
  services: string[];
  module: { readonly available: boolean; readonly sessionPoolStats?: { open: number; busy: number; waiting: number } };
  policy: { readonly isOpen: boolean };
  audit: { readonly checkpointLag: { uncheckpointedRecords: number; sinceCheckpointMs: number; usable: boolean } };
  /** A cheap read of the store: resolves when the store answers. */
  storeProbe: () => Promise<unknown>;
  transportStats: () => TransportStats;
  log: Logger;
}

/**
 * Starts the listener and returns it with the sources the metrics read. /readyz: the gRPC health
 * state of every service (the crypto module, the policy gate, a shutdown), the crypto module and
 * policy themselves, the audit log usable, and a store read answered within 2 s.
 */
export async function serveMetrics(o: ServeMetricsOptions): Promise<{ listener: MetricsListener; sources: MetricSources }> {
  const names = ["", ...o.services];
  const serving = () => names.every((n) => o.health.get(n) === Status.SERVING);
  const storeAnswers = () => withTimeout(o.storeProbe(), 2_000).then(() => true, () => false);
  const sources: MetricSources = {
    moduleAvailable: () => o.module.available,
    sessionPool: () => o.module.sessionPoolStats,
    policyOpen: () => o.policy.isOpen,
    audit: () => {
      const lag = o.audit.checkpointLag;
      return { uncheckpointedRecords: lag.uncheckpointedRecords, checkpointAgeSeconds: lag.sinceCheckpointMs / 1000, usable: lag.usable };
    },
    transport: o.transportStats,
    ready: () => serving() && o.module.available && o.policy.isOpen && o.audit.checkpointLag.usable,
  };
  const listener = await startMetricsListener({
    ...o.listen,
    registry: o.metrics.registry,
    readiness: async () => ({ serving: serving(), cryptoModule: o.module.available, policy: o.policy.isOpen, audit: o.audit.checkpointLag.usable, store: await storeAnswers() }),
    onError: (err) => o.log.warn({ err }, "metrics listener request failed"),
  });
  o.log.info({ url: listener.url }, "metrics, /healthz and /readyz listening (plain HTTP: internal only)");
  return { listener, sources };
}

/** `p`, or a rejection after `ms` (a store that hangs makes /readyz answer not ready instead of never). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("timed out")), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
