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
     * The gateway's client certificate and key toward the SAM. Until the "signer front end" caller
     * kind exists, this is the development SCA certificate of `inkan init` (pki/sca.crt).
     */
    clientCert: string;
    clientKey: string;
  };
  /** How long an SCA's wait for a decision may last before it must ask again (ms). */
  waitTimeoutMs: number;
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
  /** The gateway's client certificate and key toward the SAM (PEM files); default pki/sca.crt and pki/sca.key. */
  clientCertFile?: string | undefined;
  clientKeyFile?: string | undefined;
  waitTimeoutMs?: number;
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
      clientCert: options.clientCertFile ? file(options.clientCertFile) : pki("sca.crt"),
      clientKey: options.clientKeyFile ? file(options.clientKeyFile) : pki("sca.key"),
    },
    waitTimeoutMs: options.waitTimeoutMs ?? 25_000,
  };
}
