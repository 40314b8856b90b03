import { EventEmitter, on } from "node:events";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";

/** Serving status per service name; "" is the server as a whole (grpc.health.v1 semantics). */
export class HealthState {
  private readonly statuses = new Map<string, Status>();
  private readonly changes = new EventEmitter();
  private readonly stopped = new AbortController();

  constructor(services: string[]) {
    this.changes.setMaxListeners(0);
    for (const s of ["", ...services]) this.statuses.set(s, Status.SERVING);
  }

  get(service: string): Status | undefined {
    return this.statuses.get(service);
  }

  /** Marks every service NOT_SERVING (during shutdown) and tells the watchers. */
  setAll(status: Status): void {
    for (const s of this.statuses.keys()) this.statuses.set(s, status);
    this.changes.emit("change");
  }

  /** Sets the status of the known services that `matches` selects, and tells the watchers. */
  setWhere(matches: (service: string) => boolean, status: Status): void {
    for (const s of this.statuses.keys()) if (matches(s)) this.statuses.set(s, status);
    this.changes.emit("change");
  }

  /** Ends every watch (after it reported the last status), so a shutdown is not held open by watchers. */
  stop(): void {
    this.stopped.abort();
  }

  /** The current status, then each change, until `signal` aborts or the state is stopped. */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<Status> {
    const until = AbortSignal.any([signal, this.stopped.signal]);
    let last = this.get(service) ?? Status.SERVICE_UNKNOWN;
    yield last;
    try {
      for await (const _ of on(this.changes, "change", { signal: until })) {
        const now = this.get(service) ?? Status.SERVICE_UNKNOWN;
        if (now !== last) yield (last = now);
      }
    } catch (err) {
      if (!until.aborted) throw err;
    }
    const final = this.get(service) ?? Status.SERVICE_UNKNOWN;
    if (!signal.aborted && final !== last) yield final; // the NOT_SERVING of a shutdown
  }
}

/** grpc.health.v1.Health: Check and Watch, for load balancers and `grpc_health_probe`. */
export function registerHealth(router: ConnectRouter, state: HealthState): void {
  router.service(Health, {
    check(req) {
      const status = state.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return { status };
    },
    async *watch(req, ctx) {
      for await (const status of state.watch(req.service, ctx.signal)) yield { status };
    },
  });
}
