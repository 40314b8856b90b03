import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

/** How the gateway runs: where it listens, where the SAM is, and its TLS material from `inkan init`. */
export interface GatewayConfig {
  dataDir: string;
  listen: { host: string; port: number };
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

/** The configuration for a data directory initialized by `inkan init`, with its development PKI. */
export function gatewayConfig(options: {
  dataDir: string;
  listen?: string | undefined;
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
  const samUrl = options.samUrl ?? "https://127.0.0.1:8443";
  if (!/^https:\/\//.test(samUrl)) throw new GatewayConfigError(`sam: "${samUrl}" is not an https:// URL`);
  return {
    dataDir,
    listen: parseListen(options.listen ?? "127.0.0.1:8444"),
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
