/**
 * OAuth 2.0 for the CSC API (CSC v2.0.0.2 section 8): client authentication with `private_key_jwt`
 * (RFC 7523 2.2, as the EUDI rqes-csc-swift `OAuth2TokenRequest` sends it: `client_assertion_type` +
 * `client_assertion`), service access tokens (client_credentials), and the authorization codes of
 * the oauth2code flow bound to PKCE (RFC 7636, S256 only). Everything lives in memory: tokens and
 * codes die with the gateway process.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { errors as joseErrors, jwtVerify } from "jose";
import { CscClients, type CscClient } from "./clients.js";
import { CscError } from "./errors.js";

export const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const maxAssertionLifetimeS = 300;

/** A map whose entries expire; swept on write. */
class Expiring<V> {
  readonly #m = new Map<string, { value: V; until: number }>();
  set(k: string, value: V, ttlMs: number): void {
    const now = Date.now();
    for (const [key, e] of this.#m) if (e.until <= now) this.#m.delete(key);
    this.#m.set(k, { value, until: now + ttlMs });
  }
  get(k: string): V | undefined {
    const e = this.#m.get(k);
    if (!e || e.until <= Date.now()) return undefined;
    return e.value;
  }
  take(k: string): V | undefined {
    const v = this.get(k);
    this.#m.delete(k);
    return v;
  }
  has(k: string): boolean {
    return this.get(k) !== undefined;
  }
}

/**
 * Verifies the client assertion of a token request: a JWT signed by a key registered for
 * `client_id`, with iss = sub = client_id, aud = this token endpoint's URL, exp at most five minutes
 * ahead, and a jti seen once (replay of an assertion fails). Any failure: invalid_client, no detail.
 */
export class ClientAuthenticator {
  readonly #seen = new Expiring<true>();

  constructor(private readonly clients: CscClients) {}

  async authenticate(form: Record<string, string>, tokenUrl: string): Promise<CscClient> {
    const fail = () => new CscError("invalid_client", "client authentication failed");
    const clientId = form.client_id;
    if (form.client_assertion_type !== assertionType || !form.client_assertion) throw fail();
    let payload;
    let client: CscClient | undefined;
    try {
      // The client is named by the assertion's own iss; client_id, when sent, must agree (RFC 7523 3).
      const iss = JSON.parse(Buffer.from(form.client_assertion.split(".")[1] ?? "", "base64url").toString("utf8")) as { iss?: unknown };
      client = typeof iss.iss === "string" ? this.clients.get(iss.iss) : undefined;
      if (!client || (clientId !== undefined && clientId !== client.clientId)) throw fail();
      ({ payload } = await jwtVerify(form.client_assertion, client.keys, {
        issuer: client.clientId,
        subject: client.clientId,
        audience: tokenUrl,
        algorithms: ["ES256", "ES384", "ES512", "PS256", "EdDSA"],
        maxTokenAge: `${maxAssertionLifetimeS}s`,
        requiredClaims: ["exp", "iat", "jti"],
      }));
    } catch (err) {
      if (err instanceof CscError || err instanceof joseErrors.JOSEError || err instanceof SyntaxError) throw fail();
      throw err;
    }
    const exp = payload.exp!;
    if (exp - Date.now() / 1000 > maxAssertionLifetimeS) throw fail();
    const jti = `${client.clientId} ${String(payload.jti)}`;
    if (this.#seen.has(jti)) throw fail(); // a replayed assertion
    this.#seen.set(jti, true, (maxAssertionLifetimeS + 60) * 1000);
    return client;
  }
}

/** Service access tokens (client_credentials): opaque, in memory, by their SHA-256. */
export class ServiceTokens {
  readonly #tokens = new Expiring<string>();
  constructor(readonly lifetimeS = 600) {}

  issue(clientId: string): { access_token: string; token_type: "Bearer"; expires_in: number } {
    const token = randomBytes(32).toString("base64url");
    this.#tokens.set(sha256(token), clientId, this.lifetimeS * 1000);
    return { access_token: token, token_type: "Bearer", expires_in: this.lifetimeS };
  }

  clientOf(token: string): string | undefined {
    return this.#tokens.get(sha256(token));
  }
}

/** What an authorization code stands for until oauth2/token redeems it. */
export interface CodeGrant {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  /** The CSC SAD the code turns into (the credential access token). */
  sad: string;
  expiresIn: number;
  credentialId: string;
  /** Ends the SAD when the code is replayed (RFC 6749 4.1.2: revoke what the code gave). */
  revoke(): void;
}

export class AuthorizationCodes {
  readonly #codes = new Expiring<CodeGrant>();
  readonly #used = new Expiring<CodeGrant>();

  issue(grant: CodeGrant): string {
    const code = randomBytes(32).toString("base64url");
    this.#codes.set(sha256(code), grant, 60_000); // a code lives one minute
    return code;
  }

  /**
   * Redeems a code once, for the client it was issued to, with the PKCE verifier of its challenge
   * and the same redirect_uri. A second redemption fails and revokes what the first gave.
   */
  redeem(code: string, clientId: string, verifier: string | undefined, redirectUri: string | undefined): CodeGrant {
    const key = sha256(code);
    const replayed = this.#used.get(key);
    if (replayed) {
      replayed.revoke();
      throw new CscError("invalid_grant", "the authorization code is invalid, expired or already used");
    }
    const grant = this.#codes.take(key);
    if (!grant) throw new CscError("invalid_grant", "the authorization code is invalid, expired or already used");
    this.#used.set(key, grant, 10 * 60_000);
    const ok = grant.clientId === clientId && grant.redirectUri === redirectUri && typeof verifier === "string" && /^[A-Za-z0-9._~-]{43,128}$/.test(verifier)
      && safeEqual(createHash("sha256").update(verifier).digest("base64url"), grant.codeChallenge);
    if (!ok) {
      grant.revoke();
      throw new CscError("invalid_grant", "the authorization code is invalid, expired or already used");
    }
    return grant;
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const sha256 = (v: string) => createHash("sha256").update(v).digest("hex");
