/**
 * AUTHENTICATION_METHOD_LOGIN_ASSERTION (level 1, R-3.1.4: key authorization resting on the
 * signer's service login): an OpenID Connect ID token from the RSSP's OpenID provider, verified
 * against the provider's keys from a configured JWKS file only.
 *
 * Choices where sam.proto leaves room:
 * - "sub" maps to the signer's external id (the RSSP's own reference, unique among signers when
 *   set: EnrollSignerRequest identity.external_id), the account the provider knows; a signer
 *   without an external id cannot use this method.
 * - Algorithms: an allow-list of asymmetric ones (never "none" or HS*); the key is chosen by "kid"
 *   among the configured keys only. A token naming a key source in its header ("jku", "jwk",
 *   "x5u", "x5c") is refused: nothing is ever fetched or taken from the token.
 * - "aud" must contain the SAM's client id; with several audiences, "azp" must be the client id
 *   (OpenID Connect Core 3.1.3.7). "iss" must equal the configured issuer; "exp", "iat", "sub" and
 *   "nonce" are required; "iat" at most max_sad_lifetime old and not in the future (both with the
 *   clock skew).
 */
import { createLocalJWKSet, decodeProtectedHeader, importJWK, jwtVerify, type JSONWebKeySet, type JWK } from "jose";
import { DeviceProofRefused } from "../registration/device-jws.js";

/** The ID token algorithms accepted: asymmetric only (no "none", no HMAC keyed with a public key). */
export const loginAssertionAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const;

/** Header members that name a key source: never followed, the token is refused. */
const keySourceHeaders = ["jku", "jwk", "x5u", "x5c"];
const privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

export interface LoginAssertionOptions {
  /** The provider's issuer identifier: "iss" must equal it exactly. */
  issuer: string;
  /** The SAM's client id at the provider: "aud" must contain it. */
  clientId: string;
  /** The provider's public signing keys. */
  jwks: JSONWebKeySet;
}

export interface LoginAssertionCheck {
  /** The signer's external id: "sub" must equal it. */
  externalId: string;
  /** The R.SAD claim "chal": "nonce" must equal it. */
  nonce: string;
  now: Date;
  maxAgeMs: number;
  skewMs: number;
}

/** Verifies ID tokens of one OpenID provider (see the module comment). */
export interface LoginAssertionVerifier {
  verify(idToken: string, check: LoginAssertionCheck): Promise<void>;
}

/**
 * Checks the configured key set (public asymmetric keys for signing only, each importable) and
 * returns the verifier. Throws at start on a bad key set: the SAM does not start with it.
 *
 * @example
 * const login = await createLoginAssertionVerifier({ issuer, clientId, jwks: JSON.parse(readFileSync(file, "utf8")) });
 * await login.verify(envelope.login, { externalId, nonce: claims.chal, now, maxAgeMs, skewMs });
 */
export async function createLoginAssertionVerifier(o: LoginAssertionOptions): Promise<LoginAssertionVerifier> {
  const keys = (o.jwks as { keys?: unknown }).keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new Error("the OpenID provider's JWKS holds no keys");
  for (const [i, key] of keys.entries()) {
    const k = key as JWK;
    if (typeof k !== "object" || k === null) throw new Error(`JWKS keys[${i}] is not an object`);
    if (privateMembers.some((m) => m in k)) throw new Error(`JWKS keys[${i}] carries a private or symmetric member`);
    if (!["RSA", "EC", "OKP"].includes(k.kty ?? "")) throw new Error(`JWKS keys[${i}] is not an RSA, EC or OKP public key`);
    if (k.use !== undefined && k.use !== "sig") throw new Error(`JWKS keys[${i}] is not a signing key (use)`);
    if (k.alg !== undefined && !(loginAssertionAlgorithms as readonly string[]).includes(k.alg)) throw new Error(`JWKS keys[${i}] has an algorithm not accepted: ${k.alg}`);
    const alg = k.alg ?? (k.kty === "RSA" ? "RS256" : k.kty === "OKP" ? "EdDSA" : { "P-256": "ES256", "P-384": "ES384", "P-521": "ES512" }[k.crv ?? ""]);
    if (!alg) throw new Error(`JWKS keys[${i}] has an unsupported curve`);
    await importJWK(k, alg).catch((err: unknown) => {
      throw new Error(`JWKS keys[${i}] does not import`, { cause: err });
    });
  }
  const keySet = createLocalJWKSet({ keys: keys as JWK[] });
  return {
    async verify(idToken, c) {
      let header: Record<string, unknown>;
      try {
        header = decodeProtectedHeader(idToken) as Record<string, unknown>;
      } catch (err) {
        throw new DeviceProofRefused("the login assertion is not a JWS", { cause: err });
      }
      const source = keySourceHeaders.find((h) => h in header);
      if (source !== undefined) throw new DeviceProofRefused(`the login assertion names a key source (${source})`);
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(idToken, keySet, {
          algorithms: [...loginAssertionAlgorithms],
          issuer: o.issuer,
          audience: o.clientId,
          currentDate: c.now,
          clockTolerance: Math.floor(c.skewMs / 1000),
          maxTokenAge: Math.floor(c.maxAgeMs / 1000),
          requiredClaims: ["exp", "iat", "sub", "nonce"],
        }));
      } catch (err) {
        throw new DeviceProofRefused("the login assertion does not verify", { cause: err });
      }
      if (Array.isArray(payload.aud) && payload.aud.length > 1 && payload.azp !== o.clientId) throw new DeviceProofRefused("azp is not the SAM's client id");
      if (payload.azp !== undefined && payload.azp !== o.clientId) throw new DeviceProofRefused("azp is not the SAM's client id");
      if (!c.externalId || payload.sub !== c.externalId) throw new DeviceProofRefused("sub is not the signer's external id");
      if (payload.nonce !== c.nonce) throw new DeviceProofRefused("nonce is not the transaction's challenge");
    },
  };
}
