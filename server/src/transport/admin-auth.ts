import { createHash } from "node:crypto";
import { toBinary } from "@bufbuild/protobuf";
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { AdminRequest, AuthenticatedUser } from "../admin/privileged-users.js";
import { kCaller } from "./identity.js";

/** The privileged user an admin request was authenticated as. */
export const kAdmin = createContextKey<AuthenticatedUser | undefined>(undefined, { description: "privileged user" });

/** The header that carries a privileged user's per-request signature (a compact JWS). */
export const requestSignatureHeader = "inkan-request-signature";

export type AdminAuthenticator = (req: AdminRequest) => Promise<AuthenticatedUser>;

/**
 * Authenticates every call to an inkan.admin.v1 service before validation or the handler runs
 * (R-3.1.2.1, R-3.2.2.1): the digest is recomputed from the message as decoded, whatever the
 * protocol, so the signature covers exactly what the handler will act on.
 */
export function createAdminAuthInterceptor(authenticate: AdminAuthenticator, clock: () => Date = () => new Date()): Interceptor {
  return (next) => async (req) => {
    if (!req.service.typeName.startsWith("inkan.admin.")) return next(req);
    const caller = req.contextValues.get(kCaller);
    if (!caller) return next(req); // the access interceptor has refused it already
    let message: unknown;
    let forward = req;
    if (req.stream) {
      // Server streaming: the single request message arrives as a stream of one.
      const received: unknown[] = [];
      for await (const m of req.message) received.push(m);
      message = received[0];
      forward = { ...req, message: (async function* () { yield* received; })() } as typeof req;
    } else {
      message = req.message;
    }
    const digest = createHash("sha256").update(toBinary(req.method.input, message as never)).digest();
    const user = await authenticate({
      method: `/${req.service.typeName}/${req.method.name}`,
      digest,
      signature: req.header.get(requestSignatureHeader) ?? undefined,
      certificate: { spkiSha256: caller.spkiSha256 },
      now: clock(),
    });
    forward.contextValues.set(kAdmin, user);
    return next(forward);
  };
}
