import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";

/** Bootstrap configuration: where the SAM listens, its TLS material and its data directory. */
export interface Config {
  /** Absolute path of the data directory (PKI, crypto-module token, store). */
  dataDir: string;
  listen: { host: string; port: number };
  tls: {
    /** PEM files of the server certificate (with its chain) and private key. */
    certFile: string;
    keyFile: string;
    /** PEM files of the CAs whose certificates identify SCAs (R-3.2.1.2: the SCA is known by its certificate). */
    scaCaFiles: string[];
    /** PEM files of the CAs whose certificates identify privileged users (R-3.1.2.1). */
    adminCaFiles: string[];
    /** PEM files of the CAs whose certificates identify the signer front end (SignerService's caller, issue 18 item 7). */
    frontEndCaFiles: string[];
  };
  limits: {
    /** Largest request message the server reads, in bytes; larger ones get RESOURCE_EXHAUSTED. */
    readMaxBytes: number;
  } & TransportLimits;
  /**
   * The crypto module. "embedded": the SoftHSM2 token that `inkan init` created in the data
   * directory. "pkcs11": any HSM's PKCS#11 library, its token as an RFC 7512 URI, and the user
   * PIN from a file (never from the command line).
   */
  cryptoModule: { kind: "embedded" } | { kind: "pkcs11"; library: string; token: string; pinFile: string | undefined };
  /**
   * Issue 20: worker threads that run the crypto module's operations off the event loop
   * (cryptoWorkers / INKAN_CRYPTO_WORKERS, 1 to 256). Unset: as many as the module has sessions (4).
   */
  cryptoWorkers?: number | undefined;
  /** This SAM node's id: each node writes its own audit chain (R-3.2.2.4). */
  nodeId: string;
  /**
   * The store: a SQLite file (embedded default), or a database shared by several nodes: PostgreSQL
   * (`postgres://…`, with a pool of `poolSize` connections per node, storePoolSize /
   * INKAN_STORE_POOL_SIZE, default 10) or a MongoDB replica set.
   */
  store: { kind: "sqlite"; file: string } | { kind: "postgres"; uri: string; poolSize: number } | { kind: "mongodb"; uri: string };
  /**
   * Issue 17.4, SQLite: how long a call waits for another process's write lock on the file before
   * it fails with UNAVAILABLE STORE_FAILURE, in milliseconds (5,000 by default). The wait is
   * asynchronous: the event loop, and so every other call and the health check, go on meanwhile.
   */
  storeBusyWaitMs: number;
  /** How long a graceful shutdown waits for in-flight calls before closing them, in milliseconds. */
  shutdownGraceMs: number;
  /**
   * Issue 17/21: how long this node's claim of DTBS/R entries holds, in milliseconds (claimLeaseMs /
   * INKAN_CLAIM_LEASE_MS, 30,000 by default, at least 1,000). A claim of a node that died (SIGKILL,
   * power loss) is taken over by another node once its lease ran out (by the shared time source); a
   * later boot of the same node takes it over at once. Longer than the slowest claimed batch takes
   * to sign, audit and record (a few seconds on a busy module): a claim taken over earlier only
   * withholds its holder's signatures, never releases one twice, but wastes the work.
   */
  claimLeaseMs: number;
  /**
   * How often the security policy's seal is checked, in milliseconds (R-3.2.2.3); also how soon
   * a node sees a policy another node wrote. It is checked at start and on every read as well.
   */
  policyCheckIntervalMs: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /**
   * The RSSP's OpenID provider, for AUTHENTICATION_METHOD_LOGIN_ASSERTION (level 1, R-3.1.4): its
   * issuer ("iss" of its ID tokens), the SAM's client id there ("aud" must contain it) and a file
   * holding its public signing keys as a JWK set (read at start; nothing is ever fetched). Set with
   * oidcIssuer / INKAN_OIDC_ISSUER, oidcClientId / INKAN_OIDC_CLIENT_ID and oidcJwksFile /
   * INKAN_OIDC_JWKS_FILE, all three or none. Undefined: the login assertion is not available, even
   * where the security policy enables it.
   */
  oidc: { issuer: string; clientId: string; jwksFile: string } | undefined;
  /**
   * Issue 23: the plain-HTTP listener of /metrics (Prometheus), /healthz and /readyz, without
   * client certificates (metricsListen / INKAN_METRICS_LISTEN / --metrics-listen, HOST:PORT).
   * Undefined (the default): not served. Bind it to an internal address only.
   */
  metricsListen: { host: string; port: number } | undefined;
}

/**
 * Issue 17.6: what one SAM node accepts at once, so that no client (or attacker holding a client
 * certificate) can grow its memory without bound or starve the health check. Defaults and why:
 * - maxConnections 512: TLS connections at once; more are closed on accept. Behind a load balancer
 *   a node sees tens; 512 stays under the common 1,024 open-file limit with room for the store and
 *   the crypto module.
 * - maxConcurrentStreams 100: streams per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS), the
 *   value RFC 9113 recommends as the least; a stream beyond it is refused (REFUSED_STREAM, safe to
 *   retry). Node's default is 4,294,967,295.
 * - maxConcurrentCalls 256 and maxConcurrentCallsPerClient 128: calls in progress on this node, and
 *   per client certificate; a call beyond either fails at once (RESOURCE_EXHAUSTED LIMIT_EXCEEDED)
 *   before its request is read. A request is read whole before its handler runs, so the request
 *   memory is at most maxConcurrentCalls x readMaxBytes (1 GiB with the defaults, only if every call
 *   uploads a 4 MiB chunk at once); signing is CPU-bound, so more calls than this would only queue.
 *   The per-client limit leaves half the node to other clients. Health Check is not counted, so
 *   probes are answered under load.
 * - maxSessionMemoryMib 10: per HTTP/2 connection, what nghttp2 may hold (header tables, queued
 *   frames); new streams are refused above it (Node's default, stated).
 * - maxHeaderBytes 16,384: the request header list, HTTP/2 (SETTINGS_MAX_HEADER_LIST_SIZE) and
 *   HTTP/1.1; the SAM's own headers (a request signature) are under 1 KiB.
 * - handshakeTimeoutMs 10,000: a TLS handshake not done by then is dropped (Node's is 120 s, which
 *   lets half-open sockets pile up).
 * - requestTimeoutMs 60,000: a request (headers, message, end of stream) must have arrived by then,
 *   or its stream is reset (HTTP/1.1: the connection closed): a 4 MiB chunk at 1 Mbit/s takes 34 s.
 *   Streams that never send their body cannot hold a call slot longer.
 * - idleTimeoutMs 300,000: a connection without traffic for this long is closed (HTTP/2 with
 *   GOAWAY, so open streams finish).
 */
export interface TransportLimits {
  maxConnections: number;
  maxConcurrentStreams: number;
  maxConcurrentCalls: number;
  maxConcurrentCallsPerClient: number;
  maxSessionMemoryMib: number;
  maxHeaderBytes: number;
  handshakeTimeoutMs: number;
  requestTimeoutMs: number;
  idleTimeoutMs: number;
}

/** Each transport limit: its default, and the range a setting may take. */
export const transportLimitRanges: Record<keyof TransportLimits, { fallback: number; min: number; max: number }> = {
  maxConnections: { fallback: 512, min: 1, max: 100_000 },
  maxConcurrentStreams: { fallback: 100, min: 1, max: 10_000 },
  maxConcurrentCalls: { fallback: 256, min: 1, max: 100_000 },
  maxConcurrentCallsPerClient: { fallback: 128, min: 1, max: 100_000 },
  maxSessionMemoryMib: { fallback: 10, min: 1, max: 1_024 },
  maxHeaderBytes: { fallback: 16_384, min: 1_024, max: 1_048_576 },
  handshakeTimeoutMs: { fallback: 10_000, min: 100, max: 600_000 },
  requestTimeoutMs: { fallback: 60_000, min: 100, max: 3_600_000 },
  idleTimeoutMs: { fallback: 300_000, min: 100, max: 86_400_000 },
};

/** Raw settings, all strings, as they come from the environment, a file or the command line. */
export type RawConfig = Partial<Record<RawKey, string>>;

const rawKeys = [
  "dataDir", "listen", "tlsCertFile", "tlsKeyFile", "tlsScaCaFiles", "tlsAdminCaFiles", "tlsFrontEndCaFiles",
  "readMaxBytes", "shutdownGraceMs", "logLevel", "configFile", "pkcs11Library", "pkcs11Token",
  "pkcs11PinFile", "store", "storePoolSize", "nodeId", "policyCheckIntervalMs", "oidcIssuer", "oidcClientId", "oidcJwksFile", "storeBusyWaitMs", "metricsListen", "claimLeaseMs", "cryptoWorkers",
  ...(Object.keys(transportLimitRanges) as (keyof TransportLimits)[]),
] as const;
type RawKey = (typeof rawKeys)[number];

/** The environment variable that sets each raw key (`INKAN_` + upper snake case). */
export const envNames: Record<RawKey, string> = Object.fromEntries(
  rawKeys.map((k) => [k, "INKAN_" + k.replace(/[A-Z]/g, (c) => "_" + c).toUpperCase()]),
) as Record<RawKey, string>;

/** Reads the `INKAN_*` variables; unset variables stay unset. */
export function readEnv(env: NodeJS.ProcessEnv = process.env): RawConfig {
  const raw: RawConfig = {};
  for (const k of rawKeys) {
    const v = env[envNames[k]];
    if (v !== undefined && v !== "") raw[k] = v;
  }
  return raw;
}

/**
 * Reads a JSON config file whose keys are the raw keys (`{"listen": "0.0.0.0:8443"}`). Values set
 * in `over` (flags, then environment) win over the file.
 */
export function withConfigFile(over: RawConfig): RawConfig {
  if (!over.configFile) return over;
  const parsed: unknown = JSON.parse(readFileSync(over.configFile, "utf8"));
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError([`configFile: ${over.configFile} does not hold a JSON object`]);
  }
  const fromFile: RawConfig = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (!(rawKeys as readonly string[]).includes(k)) throw new ConfigError([`configFile: unknown key ${k}`]);
    fromFile[k as RawKey] = Array.isArray(v) ? v.join(",") : String(v);
  }
  return { ...fromFile, ...over };
}

/** Every problem found in a configuration, each prefixed by the path of the setting. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super("invalid configuration:\n  " + problems.join("\n  "));
    this.name = "ConfigError";
  }
}

const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export const defaultReadMaxBytes = 4 * 1024 * 1024;

/**
 * Applies defaults and checks every setting, reporting all problems at once by path
 * (`tls.certFile: not readable`). Defaults point into the data directory that `inkan init` fills.
 */
export function parseConfig(raw: RawConfig): Config {
  const problems: string[] = [];
  const dataDir = resolve(raw.dataDir ?? ".data");
  const inData = (p: string) => (isAbsolute(p) ? p : join(dataDir, p));

  const listen = parseListen(raw.listen ?? "127.0.0.1:8443", problems);
  const file = (path: string, value: string) => {
    try {
      readFileSync(value);
    } catch {
      problems.push(`${path}: ${value} is not readable`);
    }
    return value;
  };
  const existing = (p: string) => (existsSync(inData(p)) ? [p] : []);
  const files = (path: string, value: string) =>
    value.split(",").map((v) => v.trim()).filter(Boolean).map((v, i) => file(`${path}[${i}]`, inData(v)));

  const tls = {
    certFile: file("tls.certFile", inData(raw.tlsCertFile ?? "pki/server.crt")),
    keyFile: file("tls.keyFile", inData(raw.tlsKeyFile ?? "pki/server.key")),
    // The CAs `inkan init` added later (issues 18.7 and 19) are defaults only where they exist, so a
    // data directory initialized before them still starts.
    scaCaFiles: files("tls.scaCaFiles", raw.tlsScaCaFiles ?? ["pki/sca-ca.crt", ...existing("pki/sca-b-ca.crt")].join(",")),
    adminCaFiles: files("tls.adminCaFiles", raw.tlsAdminCaFiles ?? "pki/admin-ca.crt"),
    frontEndCaFiles: files("tls.frontEndCaFiles", raw.tlsFrontEndCaFiles ?? existing("pki/front-end-ca.crt").join(",")),
  };
  if (tls.scaCaFiles.length + tls.adminCaFiles.length === 0) {
    problems.push("tls: at least one SCA or admin CA is needed: client certificates are mandatory");
  }
  const readMaxBytes = parseInteger("limits.readMaxBytes", raw.readMaxBytes, defaultReadMaxBytes, 1024, 64 * 1024 * 1024, problems);
  const transport = parseTransportLimits(raw, problems);
  const shutdownGraceMs = parseInteger("shutdownGraceMs", raw.shutdownGraceMs, 10_000, 0, 600_000, problems);
  const policyCheckIntervalMs = parseInteger("policyCheckIntervalMs", raw.policyCheckIntervalMs, 10_000, 100, 3_600_000, problems);
  const claimLeaseMs = parseInteger("claimLeaseMs", raw.claimLeaseMs, 30_000 /* sap/signing-core.ts defaultClaimLeaseMs */, 1_000, 3_600_000, problems);
  const logLevel = (raw.logLevel ?? "info") as Config["logLevel"];
  if (!logLevels.includes(logLevel)) problems.push(`logLevel: must be one of ${logLevels.join(", ")}`);

  const cryptoModule = parseCryptoModule(raw, inData, file, problems);
  const cryptoWorkers = raw.cryptoWorkers === undefined ? undefined : parseInteger("cryptoWorkers", raw.cryptoWorkers, 4, 1, 256, problems);
  const storePoolSize = parseInteger("storePoolSize", raw.storePoolSize, 10, 1, 1000, problems);
  const store = parseStore(raw.store ?? defaultStore, storePoolSize, inData, problems);
  const storeBusyWaitMs = parseInteger("storeBusyWaitMs", raw.storeBusyWaitMs, 5_000, 0, 600_000, problems);
  const nodeId = raw.nodeId ?? "node-1";
  if (!/^[A-Za-z0-9._:-]{1,64}$/.test(nodeId)) problems.push(`nodeId: "${nodeId}" must be 1 to 64 of A-Z a-z 0-9 . _ : -`);

  const oidc = parseOidc(raw, inData, file, problems);
  const metricsListen = raw.metricsListen === undefined ? undefined : parseListen(raw.metricsListen, problems, "metricsListen");
  if (metricsListen && metricsListen.port !== 0 && metricsListen.port === listen.port && metricsListen.host === listen.host) {
    problems.push("metricsListen: must differ from listen (the metrics listener is plain HTTP, the SAM's port is mTLS)");
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return { dataDir, listen, tls, limits: { readMaxBytes, ...transport }, cryptoModule, store, storeBusyWaitMs, nodeId, shutdownGraceMs, claimLeaseMs, policyCheckIntervalMs, logLevel, oidc, metricsListen, cryptoWorkers };
}

function parseCryptoModule(
  raw: RawConfig,
  inData: (p: string) => string,
  file: (path: string, value: string) => string,
  problems: string[],
): Config["cryptoModule"] {
  if (raw.pkcs11Library === undefined) {
    if (raw.pkcs11Token !== undefined || raw.pkcs11PinFile !== undefined) {
      problems.push("pkcs11Library: required when pkcs11Token or pkcs11PinFile is set");
    }
    return { kind: "embedded" };
  }
  const library = file("pkcs11Library", raw.pkcs11Library);
  const token = raw.pkcs11Token ?? "";
  if (!token.startsWith("pkcs11:")) problems.push(`pkcs11Token: must be an RFC 7512 URI such as "pkcs11:token=inkan"`);
  if (/[;?&]pin-value=/.test(token)) problems.push("pkcs11Token: must not carry the PIN (pin-value); use pkcs11PinFile");
  const pinFile = raw.pkcs11PinFile === undefined ? undefined : file("pkcs11PinFile", inData(raw.pkcs11PinFile));
  if (pinFile === undefined && !token.includes("pin-source=")) {
    problems.push("pkcs11PinFile: required unless pkcs11Token names a pin-source");
  }
  return { kind: "pkcs11", library, token, pinFile };
}

/** The OpenID provider of the login assertion: all three settings or none (see Config.oidc). */
function parseOidc(
  raw: RawConfig,
  inData: (p: string) => string,
  file: (path: string, value: string) => string,
  problems: string[],
): Config["oidc"] {
  const { oidcIssuer: issuer, oidcClientId: clientId, oidcJwksFile: jwksFile } = raw;
  if (issuer === undefined && clientId === undefined && jwksFile === undefined) return undefined;
  if (issuer === undefined || clientId === undefined || jwksFile === undefined) {
    problems.push("oidc: oidcIssuer, oidcClientId and oidcJwksFile are set together or not at all");
    return undefined;
  }
  if (!/^https:\/\/[^\s]+$/.test(issuer)) problems.push(`oidc.issuer: "${issuer}" must be an https URL (the provider's issuer identifier)`);
  if (!/^[\x21-\x7E]{1,256}$/.test(clientId)) problems.push("oidc.clientId: must be 1 to 256 printable ASCII characters");
  const before = problems.length;
  const path = file("oidc.jwksFile", inData(jwksFile));
  if (problems.length > before) return undefined;
  try {
    const keys = (JSON.parse(readFileSync(path, "utf8")) as { keys?: unknown }).keys;
    if (!Array.isArray(keys) || keys.length === 0) problems.push("oidc.jwksFile: not a JWK set with at least one key");
  } catch {
    problems.push("oidc.jwksFile: not a JSON JWK set");
  }
  return { issuer, clientId, jwksFile: path };
}

function parseTransportLimits(raw: RawConfig, problems: string[]): TransportLimits {
  const out = {} as TransportLimits;
  for (const [key, r] of Object.entries(transportLimitRanges) as [keyof TransportLimits, (typeof transportLimitRanges)[keyof TransportLimits]][]) {
    out[key] = parseInteger(`limits.${key}`, raw[key], r.fallback, r.min, r.max, problems);
  }
  if (out.maxConcurrentCallsPerClient > out.maxConcurrentCalls) {
    problems.push(`limits.maxConcurrentCallsPerClient: ${out.maxConcurrentCallsPerClient} is more than limits.maxConcurrentCalls (${out.maxConcurrentCalls})`);
  }
  return out;
}

/**
 * The store the `store` setting names (default: store.sqlite3 in the data directory), resolved as
 * `inkan serve` resolves it, for the commands that open the store without serving: `inkan init`
 * and `inkan audit verify` (a SQLite path is relative to the data directory).
 */
export function storeOf(setting: string | undefined, dataDir: string, poolSize = 2): Config["store"] {
  const problems: string[] = [];
  const store = parseStore(setting ?? defaultStore, poolSize, (p) => (isAbsolute(p) ? p : join(resolve(dataDir), p)), problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return store;
}

/** The embedded default: this SQLite file in the data directory (sqlite-store.ts sqliteStoreFile). */
const defaultStore = "store.sqlite3";

function parseStore(value: string, poolSize: number, inData: (p: string) => string, problems: string[]): Config["store"] {
  if (/^postgres(ql)?:\/\//.test(value)) return { kind: "postgres", uri: value, poolSize };
  if (/^mongodb(\+srv)?:\/\//.test(value)) return { kind: "mongodb", uri: value };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    problems.push(`store: "${value.replace(/\/\/[^@/]*@/, "//***@")}" is neither a SQLite file path nor a postgres:// or mongodb:// URI`);
  }
  return { kind: "sqlite", file: inData(value) };
}

function parseListen(value: string, problems: string[], path = "listen"): Config["listen"] {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) {
    problems.push(`${path}: "${value}" is not HOST:PORT (port 0 picks a free port)`);
    return { host: "127.0.0.1", port: 0 };
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

function parseInteger(path: string, value: string | undefined, fallback: number, min: number, max: number, problems: string[]): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    problems.push(`${path}: must be an integer from ${min} to ${max}, got "${value}"`);
    return fallback;
  }
  return n;
}
