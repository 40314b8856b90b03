import { createHash } from "node:crypto";
import { toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import { isReflectMessage, reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { AdminRequest, AuthenticatedUser } from "../admin/privileged-users.js";
import { InkanError } from "../errors.js";
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
    // R-3.2.2.1 (issue 18): a field this SAM's schema does not have is not what the handler acts
    // on, so no signature can vouch for it: refused before the signature and its nonce are checked.
    const unknown = unknownFieldPath(req.method.input, message as Message);
    if (unknown !== undefined) throw new InkanError("INVALID_REQUEST", "the request holds a field this SAM does not know", { field: unknown === "(the request)" ? undefined : unknown });
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

/**
 * The path of the first message, at any depth, that holds a field `schema` does not have
 * ("(the request)" for the top level, "certificate_binding", "items[2]"), or undefined.
 */
export function unknownFieldPath(schema: DescMessage, message: Message): string | undefined {
  return unknownIn(reflect(schema, message), "");
}

function unknownIn(r: ReflectMessage, path: string): string | undefined {
  if (r.getUnknown()?.length) return path || "(the request)";
  const at = (name: string) => (path ? `${path}.${name}` : name);
  for (const f of r.fields) {
    if (!r.isSet(f)) continue;
    if (f.fieldKind === "message") {
      const found = unknownIn(r.get(f), at(f.name));
      if (found !== undefined) return found;
    } else if (f.fieldKind === "list" && f.listKind === "message") {
      let i = 0;
      for (const item of r.get(f)) {
        const found = isReflectMessage(item) ? unknownIn(item, `${at(f.name)}[${i}]`) : undefined;
        if (found !== undefined) return found;
        i++;
      }
    } else if (f.fieldKind === "map" && f.mapKind === "message") {
      for (const [key, value] of r.get(f)) {
        const found = isReflectMessage(value) ? unknownIn(value, `${at(f.name)}[${String(key)}]`) : undefined;
        if (found !== undefined) return found;
      }
    }
  }
  return undefined;
}
