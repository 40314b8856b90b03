import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { notImplemented } from "./error-table.js";

/**
 * Registers `service` with every method answering UNIMPLEMENTED (REASON_NOT_IMPLEMENTED), except
 * those in `impl`. Until an RPC's issue lands, the contract is served honestly: never a fake success.
 */
export function registerService(router: ConnectRouter, service: DescService, impl: Record<string, unknown> = {}): void {
  const full: Record<string, unknown> = {};
  for (const m of service.methods) {
    const name = `${service.typeName}/${m.name}`;
    full[m.localName] =
      impl[m.localName] ??
      (m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming"
        ? async function* () {
            yield* [];
            throw notImplemented(name);
          }
        : async () => {
            throw notImplemented(name);
          });
  }
  router.service(service, full as never);
}
