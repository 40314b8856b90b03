import { toBinary } from "@bufbuild/protobuf";
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { CompactSign, importJWK, type JWK } from "jose";
import { PrivilegedSessionService } from "./gen/inkan/admin/v1/auth_pb.js";

/** The header and JWS type of a privileged user's per-request signature (see inkan/admin/v1/auth.proto). */
export const requestSignatureHeader = "inkan-request-signature";
export const requestSignatureType = "inkan-admin-req+jwt";
const nonceMethod = `/${PrivilegedSessionService.typeName}/${PrivilegedSessionService.method.createRequestNonce.name}`;

export interface AdminRequestSignerOptions {
  /** The privileged user's id (the JWS `sub`). */
  userId: string;
  /** The user's request-signing private key as a JWK (P-256 for ES256, Ed25519 for EdDSA) with its `kid`. */
  privateJwk: JWK & { kid: string };
  /** Where nonces come from; default: CreateRequestNonce over `nonceTransport`. */
  nonceTransport: Transport;
  /** Signature lifetime in seconds (at most 120); default 60. */
  lifetimeSeconds?: number;
}

/**
 * A client interceptor that signs every admin request as auth.proto describes: a fresh nonce from
 * CreateRequestNonce, the SHA-256 of the request's binary encoding, the method, and a short
 * expiry, in a compact JWS by the user's key. Works in browsers too (WebCrypto through jose).
 *
 * @example
 * const base = createGrpcTransport({ baseUrl, httpVersion: "2", nodeOptions: { ca, cert, key } });
 * const signed = createGrpcTransport({ baseUrl, httpVersion: "2", nodeOptions: { ca, cert, key },
 *   interceptors: [createAdminRequestSigner({ userId, privateJwk, nonceTransport: base })] });
 * await createClient(PrivilegedUserService, signed).listPrivilegedUsers({});
 */
export function createAdminRequestSigner(options: AdminRequestSignerOptions): Interceptor {
  const alg = options.privateJwk.crv === "Ed25519" ? "EdDSA" : "ES256";
  const key = importJWK(options.privateJwk, alg);
  const session = createClient(PrivilegedSessionService, options.nonceTransport);
  return (next) => async (req) => {
    const method = `/${req.service.typeName}/${req.method.name}`;
    if (!req.service.typeName.startsWith("inkan.admin.") || method === nonceMethod) return next(req);
    let message: unknown = req.message;
    if (req.stream) {
      const received: unknown[] = [];
      for await (const m of req.message) received.push(m);
      message = received[0];
      req = { ...req, message: (async function* () { yield* received; })() } as typeof req;
    }
    const { nonce } = await session.createRequestNonce({});
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", toBinary(req.method.input, message as never)));
    const now = Math.floor(Date.now() / 1000);
    const payload = { sub: options.userId, mth: method, dig: base64url(digest), non: nonce, iat: now, exp: now + (options.lifetimeSeconds ?? 60) };
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
      .setProtectedHeader({ alg, typ: requestSignatureType, kid: options.privateJwk.kid })
      .sign(await key);
    req.header.set(requestSignatureHeader, jws);
    return next(req);
  };
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
