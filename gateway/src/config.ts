import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

/** How the gateway runs: where it listens, where the SAM is, and its TLS material from `inkan init`. */
export interface GatewayConfig {
  dataDir: string;
  listen: { host: string; port: number };
  /**
   * The gateway's public URL (`--public-url`, INKAN_GATEWAY_PUBLIC_URL): the origin clients and
   * signers reach it by, e.g. behind a load balancer. The CSC client-assertion audience, the CSC
   * `info` oauth2 URL and the portal's request links are built from it, never from a request's Host
   * header (a client assertion made for another server must not be accepted here). Undefined: the
   * URL the gateway listens on.
   */
  publicUrl?: string | undefined;
  /** The SAM's URL, e.g. https://127.0.0.1:8443. */
  samUrl: string;
  tls: {
    /** The gateway's HTTPS server certificate and key (PEM): the data directory's server certificate. */
    serverCert: string;
    serverKey: string;
    /** The CA that issued the SAM's server certificate. */
    samCa: string;
    /** The CA whose client certificates identify SCAs calling the gateway's request API. */
    scaCa: string;
    /**
     * The gateway's client certificate and key toward the SAM's SignerService: a signer front end
     * (issue 18 item 7; `inkan init`'s pki/front-end.crt, issued by the front-end CA).
     */
    clientCert: string;
    clientKey: string;
    /**
     * Its SCA certificate and key for the SAP calls it makes itself (GetInfo: the SAM's
     * challenge-signing key and limits): `inkan init`'s pki/sca.crt.
     */
    scaClientCert: string;
    scaClientKey: string;
  };
  /** How long an SCA's wait for a decision may last before it must ask again (ms). */
  waitTimeoutMs: number;
  /**
   * Its store: undefined for the data directory's SQLite file, or the SAM nodes' shared database
   * (INKAN_STORE=postgres://...), where the gateway keeps its tables in a schema of its own.
   */
  store?: string | undefined;
}

export class GatewayConfigError extends Error {}

export function parseListen(value: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = Number(m?.[2]);
  if (!m || port > 65535) throw new GatewayConfigError(`listen: "${value}" is not HOST:PORT (port 0 picks a free port)`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

/**
 * A public URL: an absolute https:// or http:// URL of an origin (scheme, host, optional port),
 * without credentials, path, query or fragment, since the gateway serves the portal and the CSC API
 * at its root. Returned as its origin (lower-case host, no default port, no trailing slash), the
 * exact string a client puts in its assertion's aud before /csc/v2/oauth2/token.
 */
export function parsePublicUrl(value: string): string {
  const bad = (why: string) => new GatewayConfigError(`public-url: "${value}" ${why} (an origin such as https://rssp.example or https://rssp.example:8444)`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw bad("is not an absolute URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw bad("is not an https:// or http:// URL");
  if (/[?#]/.test(value)) throw bad("has a query or fragment");
  if (url.username || url.password) throw bad("has a user name or password");
  if (url.pathname !== "/") throw bad("has a path: the gateway serves at its root");
  return url.origin;
}

/** The configuration for a data directory initialized by `inkan init`, with its development PKI. */
export function gatewayConfig(options: {
  dataDir: string;
  listen?: string | undefined;
  /** The public URL (parsePublicUrl); default the listen URL. */
  publicUrl?: string | undefined;
  samUrl?: string | undefined;
  /** The gateway's front-end client certificate and key toward the SAM (PEM files); default pki/front-end.crt and pki/front-end.key. */
  clientCertFile?: string | undefined;
  clientKeyFile?: string | undefined;
  /** Its SCA client certificate and key (PEM files); default pki/sca.crt and pki/sca.key. */
  scaClientCertFile?: string | undefined;
  scaClientKeyFile?: string | undefined;
  waitTimeoutMs?: number;
  /** INKAN_STORE: a postgres:// URI to keep the gateway's state in the shared database. */
  store?: string | undefined;
}): GatewayConfig {
  const dataDir = resolve(options.dataDir);
  const pki = (name: string) => {
    try {
      return readFileSync(join(dataDir, "pki", name), "utf8");
    } catch {
      throw new GatewayConfigError(`${join(dataDir, "pki", name)} is missing: run \`inkan init --data-dir ${dataDir}\` first`);
    }
  };
  const file = (path: string) => {
    try {
      return readFileSync(path, "utf8");
    } catch {
      throw new GatewayConfigError(`${path} cannot be read`);
    }
  };
  if (Boolean(options.clientCertFile) !== Boolean(options.clientKeyFile)) throw new GatewayConfigError("client-cert and client-key go together");
  if (Boolean(options.scaClientCertFile) !== Boolean(options.scaClientKeyFile)) throw new GatewayConfigError("sca-client-cert and sca-client-key go together");
  const publicUrl = options.publicUrl ? parsePublicUrl(options.publicUrl) : undefined;
  const samUrl = options.samUrl ?? "https://127.0.0.1:8443";
  if (!/^https:\/\//.test(samUrl)) throw new GatewayConfigError(`sam: "${samUrl}" is not an https:// URL`);
  return {
    dataDir,
    listen: parseListen(options.listen ?? "127.0.0.1:8444"),
    publicUrl,
    samUrl,
    tls: {
      serverCert: pki("server.crt"),
      serverKey: pki("server.key"),
      samCa: pki("ca.crt"),
      scaCa: pki("sca-ca.crt"),
      clientCert: options.clientCertFile ? file(options.clientCertFile) : pki("front-end.crt"),
      clientKey: options.clientKeyFile ? file(options.clientKeyFile) : pki("front-end.key"),
      scaClientCert: options.scaClientCertFile ? file(options.scaClientCertFile) : pki("sca.crt"),
      scaClientKey: options.scaClientKeyFile ? file(options.scaClientKeyFile) : pki("sca.key"),
    },
    waitTimeoutMs: options.waitTimeoutMs ?? 25_000,
    store: options.store || undefined,
  };
}
