/**
 * Issue 23: the SAM's Prometheus metrics, counted at a few central points (the transport's
 * interceptor, the crypto module, the store, the audit log) rather than in every service.
 *
 * No label ever carries a signer id, credential id, transaction id, token or anything else a
 * caller chose: labels are RPC paths, status codes, reason codes, audit event types and port
 * method names, all fixed by the code (a test scrapes for the ids it created).
 */
import { Code, ConnectError, type Interceptor, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import { ErrorDetailSchema, Reason } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AuditEvent } from "../audit/events.js";
import { InkanError } from "../errors.js";
import { toConnectError } from "../transport/error-table.js";

/** Every metric the SAM registers, by name: the alert rules' check reads this list (deploy/prometheus). */
export const metricNames = [
  "inkan_rpc_requests_total",
  "inkan_rpc_duration_seconds",
  "inkan_rpc_in_flight",
  "inkan_signatures_released_total",
  "inkan_signatures_refused_total",
  "inkan_authorize_total",
  "inkan_lockouts_total",
  "inkan_integrity_violations_total",
  "inkan_audit_events_total",
  "inkan_audit_write_failures_total",
  "inkan_audit_uncheckpointed_records",
  "inkan_audit_checkpoint_age_seconds",
  "inkan_audit_log_usable",
  "inkan_sap_transactions_active",
  "inkan_sign_streams_open",
  "inkan_transport_connections",
  "inkan_transport_calls_in_progress",
  "inkan_transport_refused_calls",
  "inkan_crypto_module_call_duration_seconds",
  "inkan_crypto_module_call_errors_total",
  "inkan_crypto_module_available",
  "inkan_crypto_module_losses_total",
  "inkan_crypto_sessions",
  "inkan_crypto_session_waiters",
  "inkan_store_call_duration_seconds",
  "inkan_store_call_errors_total",
  "inkan_policy_integrity_ok",
  "inkan_policy_check_failures_total",
  "inkan_ready",
] as const;
export type MetricName = (typeof metricNames)[number];

/** What the SAM's parts report when scraped (gauges read at scrape time). */
export interface MetricSources {
  moduleAvailable(): boolean;
  /** The crypto module's session pool: sessions open, busy, and callers waiting for one. */
  sessionPool(): { open: number; busy: number; waiting: number } | undefined;
  policyOpen(): boolean;
  audit(): { uncheckpointedRecords: number; checkpointAgeSeconds: number; usable: boolean };
  transport(): { connections: number; callsInProgress: number; refusedCalls: number } | undefined;
  ready(): boolean;
}

const SIGNING = new Set(["SignHash", "SignStream"]);
/** How long a transaction is tracked as active at most when it is neither finished nor cancelled (it has expired by then). */
const TRANSACTION_TRACKING_MS = 60 * 60_000;

/** The registry and the hooks the composition root wires in (main.ts). */
export class SamMetrics {
  readonly registry = new Registry();
  readonly #rpcs: Counter<"method" | "code">;
  readonly #rpcDuration: Histogram<"method">;
  readonly #inFlight: Gauge<"method">;
  readonly #released: Counter<"method">;
  readonly #refused: Counter<"method" | "reason">;
  readonly #authorize: Counter<"outcome">;
  readonly #lockouts: Counter;
  readonly #violations: Counter<"kind">;
  readonly #auditEvents: Counter<"event">;
  readonly #auditFailures: Counter<"operation">;
  readonly #streamsOpen: Gauge;
  readonly #cryptoDuration: Histogram<"operation">;
  readonly #cryptoErrors: Counter<"operation">;
  readonly #moduleLosses: Counter;
  readonly #storeDuration: Histogram<"operation">;
  readonly #storeErrors: Counter<"operation">;
  readonly #policyCheckFailures: Counter;
  /** Transactions created on this node and not yet finished, cancelled or expired: id -> hashes left, created at. */
  readonly #transactions = new Map<string, { left: number; at: number }>();

  constructor(sources: () => MetricSources | undefined) {
    const registers = [this.registry];
    const src = () => sources();
    const gauge = (name: MetricName, help: string, read: (s: MetricSources, g: Gauge) => void) =>
      new Gauge({ name, help, registers, collect() {
        const s = src();
        if (s) read(s, this);
      } });
    this.#rpcs = new Counter({ name: "inkan_rpc_requests_total", help: "RPCs finished, by method and gRPC status code", labelNames: ["method", "code"], registers });
    this.#rpcDuration = new Histogram({ name: "inkan_rpc_duration_seconds", help: "RPC latency (streams: until the last message), by method", labelNames: ["method"], registers, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
    this.#inFlight = new Gauge({ name: "inkan_rpc_in_flight", help: "RPCs in progress, by method", labelNames: ["method"], registers });
    this.#released = new Counter({ name: "inkan_signatures_released_total", help: "signatures that left the SAM, by method (SignHash, SignStream)", labelNames: ["method"], registers });
    this.#refused = new Counter({ name: "inkan_signatures_refused_total", help: "signing calls refused or failed, by method and reason", labelNames: ["method", "reason"], registers });
    this.#authorize = new Counter({ name: "inkan_authorize_total", help: "Authorize outcomes: AUTHORIZED or the refusal reason", labelNames: ["outcome"], registers });
    this.#lockouts = new Counter({ name: "inkan_lockouts_total", help: "credentials locked after failed factor checks (credential.locked)", registers });
    this.#violations = new Counter({ name: "inkan_integrity_violations_total", help: "integrity violations detected (integrity.failed), by record kind", labelNames: ["kind"], registers });
    this.#auditEvents = new Counter({ name: "inkan_audit_events_total", help: "audit records written or attempted, by event type", labelNames: ["event"], registers });
    this.#auditFailures = new Counter({ name: "inkan_audit_write_failures_total", help: "audit writes that failed (record: an operation failed closed; checkpoint: a background checkpoint)", labelNames: ["operation"], registers });
    gauge("inkan_audit_uncheckpointed_records", "records of this node's audit chain not yet covered by a checkpoint", (s, g) => g.set(s.audit().uncheckpointedRecords));
    gauge("inkan_audit_checkpoint_age_seconds", "seconds since this node's last audit checkpoint", (s, g) => g.set(s.audit().checkpointAgeSeconds));
    gauge("inkan_audit_log_usable", "1 while the audit log accepts records, 0 once its chain is broken or closed", (s, g) => g.set(s.audit().usable ? 1 : 0));
    const transactions = this.#transactions;
    new Gauge({ name: "inkan_sap_transactions_active", help: "SAP transactions begun on this node, neither finished, cancelled nor older than an hour", registers, collect() {
      const oldest = Date.now() - TRANSACTION_TRACKING_MS;
      for (const [id, t] of transactions) if (t.at < oldest) transactions.delete(id);
      this.set(transactions.size);
    } });
    this.#streamsOpen = new Gauge({ name: "inkan_sign_streams_open", help: "SignStream calls in progress", registers });
    gauge("inkan_transport_connections", "TCP connections open on the mTLS port", (s, g) => g.set(s.transport()?.connections ?? 0));
    gauge("inkan_transport_calls_in_progress", "calls in progress on the mTLS port (admission)", (s, g) => g.set(s.transport()?.callsInProgress ?? 0));
    gauge("inkan_transport_refused_calls", "calls refused with LIMIT_EXCEEDED since start", (s, g) => g.set(s.transport()?.refusedCalls ?? 0));
    this.#cryptoDuration = new Histogram({ name: "inkan_crypto_module_call_duration_seconds", help: "crypto module call latency, by operation", labelNames: ["operation"], registers, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5] });
    this.#cryptoErrors = new Counter({ name: "inkan_crypto_module_call_errors_total", help: "crypto module calls that failed, by operation", labelNames: ["operation"], registers });
    gauge("inkan_crypto_module_available", "1 while the crypto module is usable, 0 while it is lost and being reconnected", (s, g) => g.set(s.moduleAvailable() ? 1 : 0));
    this.#moduleLosses = new Counter({ name: "inkan_crypto_module_losses_total", help: "times the crypto module was lost", registers });
    new Gauge({ name: "inkan_crypto_sessions", help: "the crypto module's session pool: open and busy sessions (busy / open is its saturation)", labelNames: ["state"], registers, collect() {
      const pool = src()?.sessionPool();
      if (!pool) return;
      this.set({ state: "open" }, pool.open);
      this.set({ state: "busy" }, pool.busy);
    } });
    gauge("inkan_crypto_session_waiters", "callers waiting for a crypto module session (the pool is saturated)", (s, g) => g.set(s.sessionPool()?.waiting ?? 0));
    this.#storeDuration = new Histogram({ name: "inkan_store_call_duration_seconds", help: "store call latency, by operation", labelNames: ["operation"], registers, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5] });
    this.#storeErrors = new Counter({ name: "inkan_store_call_errors_total", help: "store calls that failed (driver errors, STORE_FAILURE), by operation", labelNames: ["operation"], registers });
    gauge("inkan_policy_integrity_ok", "1 while the security policy passes its integrity check, 0 while signing is stopped for tampering", (s, g) => g.set(s.policyOpen() ? 1 : 0));
    this.#policyCheckFailures = new Counter({ name: "inkan_policy_check_failures_total", help: "security policy checks that could not be made", registers });
    gauge("inkan_ready", "1 while the gRPC health, crypto module, policy and audit checks pass (/readyz also reads the store)", (s, g) => g.set(s.ready() ? 1 : 0));
  }

  /**
   * The RPC interceptor: calls by method and code, latency, calls in flight, signatures released
   * and refused, Authorize outcomes. Runs right inside the call interceptor, so it sees every call
   * (refusals before the handler too) and the error before it is mapped; it maps a copy itself.
   */
  interceptor(): Interceptor {
    return (next) => async (req) => {
      const method = `${req.service.typeName}/${req.method.name}`;
      const name = req.method.name;
      const started = performance.now();
      this.#inFlight.inc({ method });
      const stream = name === "SignStream" && req.service.typeName === "inkan.sam.v1.SignatureActivationService";
      if (stream) this.#streamsOpen.inc();
      let ended = false;
      const end = (err: unknown) => {
        if (ended) return;
        ended = true;
        this.#inFlight.dec({ method });
        if (stream) this.#streamsOpen.dec();
        const { code, reason } = outcomeOf(err);
        this.#rpcs.inc({ method, code });
        this.#rpcDuration.observe({ method }, (performance.now() - started) / 1000);
        if (req.service.typeName !== "inkan.sam.v1.SignatureActivationService") return;
        if (SIGNING.has(name) && err !== undefined) this.#refused.inc({ method: name, reason });
        if (name === "Authorize") this.#authorize.inc({ outcome: err === undefined ? "AUTHORIZED" : reason });
      };
      let res: UnaryResponse | StreamResponse;
      try {
        res = await next(req);
      } catch (err) {
        end(err);
        throw err;
      }
      if (!res.stream) {
        this.#countSignatures(name, req.service.typeName, res.message);
        end(undefined);
        return res;
      }
      const count = (m: unknown) => this.#countSignatures(name, req.service.typeName, m);
      return { ...res, message: watched(res.message, count, end) } satisfies StreamResponse;
    };
  }

  #countSignatures(name: string, service: string, message: unknown): void {
    if (service !== "inkan.sam.v1.SignatureActivationService" || !SIGNING.has(name)) return;
    const n = (message as { signatures?: unknown[] }).signatures?.length ?? 0;
    if (n > 0) this.#released.inc({ method: name }, n);
  }

  /** Counts an audit event about to be written (before the write, so a failing write still shows what happened). */
  auditEvent(event: AuditEvent): void {
    const type = event.eventType;
    this.#auditEvents.inc({ event: type });
    const fields = event as unknown as { transactionId?: string; details?: Record<string, unknown> };
    if (type === "credential.locked") this.#lockouts.inc();
    else if (type === "integrity.failed") {
      const kind = fields.details?.["record_kind"];
      this.#violations.inc({ kind: typeof kind === "string" && /^[a-z][a-z-]{0,31}$/.test(kind) ? kind : "other" });
    } else if (type === "transaction.created" && fields.transactionId) {
      const count = fields.details?.["hash_count"];
      this.#transactions.set(fields.transactionId, { left: typeof count === "number" ? count : 1, at: Date.now() });
    } else if (type === "transaction.cancelled" && fields.transactionId) this.#transactions.delete(fields.transactionId);
    else if (type === "signature.created" && fields.transactionId) {
      const t = this.#transactions.get(fields.transactionId);
      if (t && --t.left <= 0) this.#transactions.delete(fields.transactionId);
    }
  }

  auditFailure(operation: "record" | "checkpoint"): void {
    this.#auditFailures.inc({ operation });
  }

  moduleLost(): void {
    this.#moduleLosses.inc();
  }

  policyCheckFailed(): void {
    this.#policyCheckFailures.inc();
  }

  /** The crypto module with every promise-returning call timed and its failures counted. */
  instrumentCrypto<T extends object>(module: T): T {
    return timed(module, this.#cryptoDuration, this.#cryptoErrors, () => true);
  }

  /** The store with every promise-returning call timed; driver failures (not domain refusals) counted. */
  instrumentStore<T extends object>(store: T): T {
    return timed(store, this.#storeDuration, this.#storeErrors, (err) => !(err instanceof InkanError) || err.code === "STORE_FAILURE");
  }
}

/** gRPC's status code name (OK, PERMISSION_DENIED, ...) and the Inkan reason of a call's outcome. */
export function outcomeOf(err: unknown): { code: string; reason: string } {
  if (err === undefined) return { code: "OK", reason: "" };
  const mapped = err instanceof ConnectError && err.findDetails(ErrorDetailSchema).length > 0 ? err : toConnectError(err, () => undefined);
  const detail = mapped.findDetails(ErrorDetailSchema)[0]?.reason;
  return {
    code: mapped.code === Code.Canceled ? "CANCELLED" : Code[mapped.code].replace(/[a-z][A-Z]/g, (s) => `${s[0]}_${s[1]}`).toUpperCase(),
    reason: detail !== undefined && detail !== Reason.UNSPECIFIED ? Reason[detail] : "UNSPECIFIED",
  };
}

/** Passes a response stream through, counting its messages and reporting its end once. */
async function* watched<T>(messages: AsyncIterable<T>, each: (m: T) => void, end: (err: unknown) => void): AsyncGenerator<T> {
  let outcome: unknown = new ConnectError("the client stopped reading", Code.Canceled); // abandoned (return()) unless set below
  try {
    for await (const m of messages) {
      each(m);
      yield m;
    }
    outcome = undefined;
  } catch (err) {
    outcome = err ?? new Error("stream failed");
    throw err;
  } finally {
    end(outcome);
  }
}

/** A proxy of `target` whose promise-returning methods are timed by method name. */
function timed<T extends object>(target: T, duration: Histogram<"operation">, errors: Counter<"operation">, isError: (err: unknown) => boolean): T {
  const wrappers = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(t, prop) {
      const value: unknown = Reflect.get(t, prop, t);
      if (typeof value !== "function" || typeof prop !== "string" || prop === "constructor") return value;
      let wrapper = wrappers.get(prop);
      if (!wrapper) {
        const fn = value as (...args: unknown[]) => unknown;
        wrapper = (...args: unknown[]) => {
          const started = performance.now();
          const result = fn.apply(t, args);
          if (!(result instanceof Promise)) return result;
          return result.then(
            (v: unknown) => {
              duration.observe({ operation: prop }, (performance.now() - started) / 1000);
              return v;
            },
            (err: unknown) => {
              duration.observe({ operation: prop }, (performance.now() - started) / 1000);
              if (isError(err)) errors.inc({ operation: prop });
              throw err;
            },
          );
        };
        wrappers.set(prop, wrapper);
      }
      return wrapper;
    },
  });
}

/**
 * Counts every audit event as the log is asked to write it, and every write that fails (the
 * operation then fails closed): the log's own record/recordAll, wrapped on this instance.
 */
export function countAuditWrites(audit: { record(e: AuditEvent): Promise<void>; recordAll(e: readonly AuditEvent[]): Promise<void> }, metrics: SamMetrics): void {
  const record = audit.record.bind(audit);
  const recordAll = audit.recordAll.bind(audit);
  const failed = (err: unknown) => {
    metrics.auditFailure("record");
    throw err;
  };
  audit.record = (event) => {
    metrics.auditEvent(event);
    return record(event).catch(failed);
  };
  audit.recordAll = (events) => {
    for (const e of events) metrics.auditEvent(e);
    return recordAll(events).catch(failed);
  };
}
