/**
 * The suite's CSC API v2 client (black box, no gateway code): JSON methods over HTTPS, OAuth 2.0
 * client credentials with a private_key_jwt assertion (RFC 7523), member names as the CSC v2.0.0.2
 * references spell them (credentialID, SAD, hashes, hashAlgorithmOID, signAlgo, authData).
 */
import { randomBytes } from "node:crypto";
import { request } from "node:https";
import { importJWK, SignJWT, type JWK } from "jose";

export interface CscTarget {
  /** https://host:port/csc/v2 */
  baseUrl: string;
  /** PEM of the CA the gateway's certificate chains to. */
  ca: string;
  clientId: string;
  /** The client's private JWK (ES256) registered with the gateway. */
  privateJwk: JWK;
}

/** Per request: `hostHeader`, a Host header other than the URL's (an attacker's request; TLS still checks the gateway's name). */
export interface CscRequestOptions {
  hostHeader?: string;
}

export interface CscAnswer {
  status: number;
  body: Record<string, unknown>;
}

export class CscClient {
  #token: string | undefined;
  constructor(readonly target: CscTarget) {}

  /** A private_key_jwt assertion for this gateway's token endpoint, or for `audience` (another server's). */
  async assertion(jti = randomBytes(16).toString("base64url"), audience = `${this.target.baseUrl}/oauth2/token`): Promise<string> {
    const key = await importJWK(this.target.privateJwk, "ES256");
    return new SignJWT({}).setProtectedHeader({ alg: "ES256" }).setIssuer(this.target.clientId).setSubject(this.target.clientId)
      .setAudience(audience).setIssuedAt().setExpirationTime("2m").setJti(jti).sign(key);
  }

  token(form: Record<string, string>, options: CscRequestOptions = {}): Promise<CscAnswer> {
    return this.send("/oauth2/token", new URLSearchParams(form).toString(), "application/x-www-form-urlencoded", undefined, options);
  }

  clientCredentials(assertion: string, options: CscRequestOptions = {}): Promise<CscAnswer> {
    return this.token({ grant_type: "client_credentials", client_id: this.target.clientId, client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion }, options);
  }

  /** A method call with the service access token (fetched once). */
  async call(method: string, body: unknown, bearer?: string | null, options: CscRequestOptions = {}): Promise<CscAnswer> {
    if (bearer === undefined) {
      if (!this.#token) {
        const t = await this.clientCredentials(await this.assertion());
        if (t.status !== 200) throw new Error(`the gateway refused the suite's client credentials: ${t.status} ${JSON.stringify(t.body)}`);
        this.#token = t.body.access_token as string;
      }
      bearer = this.#token;
    }
    return this.send(`/${method}`, JSON.stringify(body), "application/json", bearer ?? undefined, options);
  }

  private send(path: string, body: string, contentType: string, bearer?: string, options: CscRequestOptions = {}): Promise<CscAnswer> {
    return new Promise((done, fail) => {
      const req = request(`${this.target.baseUrl}${path}`, {
        method: "POST", ca: this.target.ca,
        // Node would take the TLS server name (and the name the certificate is checked against) from
        // a Host header: no SNI then, so the certificate is still checked against the URL's host.
        ...(options.hostHeader !== undefined ? { servername: "" } : {}),
        headers: { "content-type": contentType, ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...(options.hostHeader !== undefined ? { host: options.hostHeader } : {}) },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
          } catch {
            parsed = {};
          }
          done({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on("error", fail);
      });
      req.on("error", fail);
      req.end(body);
    });
  }
}
