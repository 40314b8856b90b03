/**
 * A CSC API v2 client for the tests, written from the public references, not from the gateway's
 * code: the request members and flows of the EUDI rqes-csc-swift client (OAuth2AuthorizeRequest,
 * OAuth2TokenRequest with client_assertion, SignHashRequest, CSCCredentialsAuthorizeRequest with
 * authData) and the asitplus vck CSC v2.0.0.2 data classes for the JSON member names (credentialID,
 * SAD, hashAlgorithmOID, signAlgo, ...), RFC 7523 for private_key_jwt and RFC 7636 for PKCE.
 * Every exchange is recorded, so the OpenAPI document can be checked against real traffic.
 */
import { createHash, randomBytes } from "node:crypto";
import { request } from "node:https";
import { SignJWT, type CryptoKey } from "jose";

export interface Exchange {
  method: string;
  path: string;
  requestBody: unknown;
  status: number;
  contentType: string;
  responseBody: unknown;
  location?: string;
}

export interface CscResponse {
  status: number;
  body: Record<string, unknown>;
  location?: string;
  headers?: Record<string, string | string[] | undefined>;
}

export class CscTestClient {
  readonly exchanges: Exchange[] = [];
  accessToken: string | undefined;

  constructor(
    readonly baseUrl: string, // https://host:port/csc/v2
    readonly ca: string,
    readonly clientId: string,
    private readonly key: CryptoKey,
    readonly redirectUri: string,
  ) {}

  /** RFC 7523 2.2 client assertion: iss = sub = client_id, aud = the token endpoint, a fresh jti. */
  async assertion(o: { aud?: string; jti?: string; key?: CryptoKey; iss?: string } = {}): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg: "ES256" })
      .setIssuer(o.iss ?? this.clientId)
      .setSubject(o.iss ?? this.clientId)
      .setAudience(o.aud ?? `${this.baseUrl}/oauth2/token`)
      .setIssuedAt()
      .setExpirationTime("2m")
      .setJti(o.jti ?? randomBytes(16).toString("base64url"))
      .sign(o.key ?? this.key);
  }

  /** oauth2/token with grant_type=client_credentials: the service access token. */
  async serviceToken(): Promise<string> {
    const res = await this.token({ grant_type: "client_credentials", client_id: this.clientId, client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: await this.assertion() });
    if (res.status !== 200) throw new Error(`token: ${res.status} ${JSON.stringify(res.body)}`);
    this.accessToken = res.body.access_token as string;
    return this.accessToken;
  }

  /** `hostHeader`: the Host header to send instead of the URL's (an attacker's request; TLS still checks the gateway's name). */
  token(form: Record<string, string>, o: { hostHeader?: string } = {}): Promise<CscResponse> {
    return this.send("POST", "/oauth2/token", new URLSearchParams(form).toString(), "application/x-www-form-urlencoded", form, { hostHeader: o.hostHeader });
  }

  /** A JSON method call with the service token (or `bearer`). */
  call(method: string, body: unknown, o: { bearer?: string | null; contentType?: string; raw?: string; hostHeader?: string } = {}): Promise<CscResponse> {
    const bearer = o.bearer === null ? undefined : o.bearer ?? this.accessToken;
    return this.send("POST", `/${method}`, o.raw ?? JSON.stringify(body), o.contentType ?? "application/json", body, { bearer, hostHeader: o.hostHeader });
  }

  /** oauth2/authorize (CSC v2 8.4.2) as the browser would open it; answers 302 to the portal. */
  authorizeUrl(p: { credentialID: string; hashes: string[]; hashAlgorithmOID: string; codeChallenge: string; state: string; extra?: Record<string, string> }): string {
    const q = new URLSearchParams({
      response_type: "code", client_id: this.clientId, redirect_uri: this.redirectUri, scope: "credential",
      code_challenge: p.codeChallenge, code_challenge_method: "S256", state: p.state,
      credentialID: p.credentialID, numSignatures: String(p.hashes.length), hashes: p.hashes.join(","), hashAlgorithmOID: p.hashAlgorithmOID,
      ...p.extra,
    });
    return `/oauth2/authorize?${q.toString()}`;
  }

  get(pathAndQuery: string): Promise<CscResponse> {
    return this.send("GET", pathAndQuery, undefined, undefined, undefined);
  }

  /** An absolute gateway path (the portal's returnTo). */
  getAbsolute(path: string): Promise<CscResponse> {
    return this.send("GET", path, undefined, undefined, undefined, { absolute: true });
  }

  private send(method: string, path: string, body: string | undefined, contentType: string | undefined, recorded: unknown, o: { bearer?: string | undefined; absolute?: boolean; hostHeader?: string | undefined } = {}): Promise<CscResponse> {
    const { bearer, absolute = false, hostHeader } = o;
    const base = new URL(this.baseUrl);
    const url = absolute ? `${base.origin}${path}` : `${this.baseUrl}${path}`;
    return new Promise((done, fail) => {
      const req = request(url, {
        method,
        ca: this.ca,
        headers: { ...(contentType ? { "content-type": contentType } : {}), ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...(hostHeader ? { host: hostHeader } : {}) },
        // Node would take the TLS server name (and the name the certificate is checked against) from a
        // Host header: no SNI instead, so the certificate is still checked against the URL's host.
        ...(hostHeader ? { servername: "" } : {}),
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: Record<string, unknown> = {};
          try {
            parsed = text ? JSON.parse(text) as Record<string, unknown> : {};
          } catch {
            parsed = { unparsed: text };
          }
          const location = typeof res.headers.location === "string" ? res.headers.location : undefined;
          const p = new URL(url).pathname;
          this.exchanges.push({ method, path: p, requestBody: recorded, status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? ""), responseBody: text ? parsed : undefined, ...(location ? { location } : {}) });
          done({ status: res.statusCode ?? 0, body: parsed, headers: res.headers, ...(location ? { location } : {}) });
        });
        res.on("error", fail);
      });
      req.on("error", fail);
      req.end(body);
    });
  }
}

/** RFC 7636 S256: a verifier and its challenge. */
export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

export const oids = {
  sha256: "2.16.840.1.101.3.4.2.1",
  sha384: "2.16.840.1.101.3.4.2.2",
  ecdsaSha256: "1.2.840.10045.4.3.2",
  sha256WithRsa: "1.2.840.113549.1.1.11",
  rsaPss: "1.2.840.113549.1.1.10",
} as const;
