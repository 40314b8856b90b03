import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";

/**
 * Registers `service` with its handlers. Every RPC of the contract must have one: a missing handler
 * stops the start (fail closed) instead of being served as a placeholder.
 */
export function registerService(router: ConnectRouter, service: DescService, impl: Record<string, unknown> = {}): void {
  const missing = service.methods.filter((m) => typeof impl[m.localName] !== "function").map((m) => `${service.typeName}/${m.name}`);
  if (missing.length > 0) throw new Error(`no handler for ${missing.join(", ")}`);
  router.service(service, impl as never);
}
