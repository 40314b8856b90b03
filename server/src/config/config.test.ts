import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, defaultReadMaxBytes, envNames, parseConfig, readEnv, withConfigFile } from "./config.js";

/** A data directory holding the files the defaults point at (their contents do not matter here). */
function dataDirWithPki(): string {
  const dir = mkdtempSync(join(tmpdir(), "inkan-config-"));
  mkdirSync(join(dir, "pki"));
  for (const f of ["server.crt", "server.key", "sca-ca.crt", "admin-ca.crt"]) writeFileSync(join(dir, "pki", f), "x");
  return dir;
}

describe("parseConfig", () => {
  it("applies the embedded defaults inside the data directory", () => {
    const dir = dataDirWithPki();
    const c = parseConfig({ dataDir: dir });
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 8443 });
    expect(c.tls.certFile).toBe(join(dir, "pki", "server.crt"));
    expect(c.tls.scaCaFiles).toEqual([join(dir, "pki", "sca-ca.crt")]);
    expect(c.limits.readMaxBytes).toBe(defaultReadMaxBytes);
    expect(c.policyCheckIntervalMs).toBe(10_000);
  });

  it("reports every problem at once, each by its path", () => {
    const dir = mkdtempSync(join(tmpdir(), "inkan-config-"));
    let err: unknown;
    try {
      parseConfig({ dataDir: dir, listen: "nowhere", readMaxBytes: "12", logLevel: "loud", policyCheckIntervalMs: "5" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^listen: /),
        expect.stringMatching(/^tls\.certFile: .* is not readable$/),
        expect.stringMatching(/^tls\.keyFile: /),
        expect.stringMatching(/^tls\.scaCaFiles\[0\]: /),
        expect.stringMatching(/^tls\.adminCaFiles\[0\]: /),
        expect.stringMatching(/^limits\.readMaxBytes: /),
        expect.stringMatching(/^logLevel: /),
        expect.stringMatching(/^policyCheckIntervalMs: /),
      ]),
    );
  });

  it("sets the claim lease (issue 21): 30 s by default, INKAN_CLAIM_LEASE_MS, at least 1 s", () => {
    const dir = dataDirWithPki();
    expect(parseConfig({ dataDir: dir }).claimLeaseMs).toBe(30_000);
    expect(envNames.claimLeaseMs).toBe("INKAN_CLAIM_LEASE_MS");
    expect(parseConfig({ dataDir: dir, ...readEnv({ INKAN_CLAIM_LEASE_MS: "2000" }) }).claimLeaseMs).toBe(2_000);
    for (const bad of ["999", "2.5", "soon", "3600001"]) {
      expect(() => parseConfig({ dataDir: dir, claimLeaseMs: bad }), bad).toThrow(/claimLeaseMs: must be an integer from 1000 to 3600000/);
    }
  });

  it("sets the crypto worker threads (issue 20): unset by default (the module's session count), INKAN_CRYPTO_WORKERS, 1 to 256", () => {
    const dir = dataDirWithPki();
    expect(parseConfig({ dataDir: dir }).cryptoWorkers).toBeUndefined();
    expect(parseConfig({ dataDir: dir, ...readEnv({ INKAN_CRYPTO_WORKERS: "2" }) }).cryptoWorkers).toBe(2);
    for (const bad of ["0", "1.5", "many", "257"]) {
      expect(() => parseConfig({ dataDir: dir, cryptoWorkers: bad }), bad).toThrow(/cryptoWorkers: must be an integer from 1 to 256/);
    }
  });

  it("sets the transport limits with their defaults, and reports a bad one by path (issue 17.6)", () => {
    const dir = dataDirWithPki();
    expect(parseConfig({ dataDir: dir }).limits).toEqual({
      readMaxBytes: defaultReadMaxBytes,
      maxConnections: 512,
      maxConcurrentStreams: 100,
      maxConcurrentCalls: 256,
      maxConcurrentCallsPerClient: 128,
      maxSessionMemoryMib: 10,
      maxHeaderBytes: 16_384,
      handshakeTimeoutMs: 10_000,
      requestTimeoutMs: 60_000,
      idleTimeoutMs: 300_000,
    });
    expect(parseConfig({ dataDir: dir, maxConcurrentStreams: "20", idleTimeoutMs: "1000" }).limits).toMatchObject({ maxConcurrentStreams: 20, idleTimeoutMs: 1000 });
    expect(parseConfig({ dataDir: dir }).storeBusyWaitMs).toBe(5_000); // issue 17.4
    expect(envNames.maxConcurrentCallsPerClient).toBe("INKAN_MAX_CONCURRENT_CALLS_PER_CLIENT");
    let err: unknown;
    try {
      parseConfig({ dataDir: dir, maxConcurrentStreams: "0", handshakeTimeoutMs: "soon", maxConcurrentCalls: "10", maxConcurrentCallsPerClient: "20" });
    } catch (e) {
      err = e;
    }
    expect((err as ConfigError).problems).toEqual([
      expect.stringMatching(/^limits\.maxConcurrentStreams: must be an integer from 1 to /),
      expect.stringMatching(/^limits\.handshakeTimeoutMs: must be an integer from 100 to /),
      "limits.maxConcurrentCallsPerClient: 20 is more than limits.maxConcurrentCalls (10)",
    ]);
  });

  it("accepts IPv6 listen addresses and port 0", () => {
    const dir = dataDirWithPki();
    expect(parseConfig({ dataDir: dir, listen: "[::1]:0" }).listen).toEqual({ host: "::1", port: 0 });
  });
});

describe("readEnv and the config file", () => {
  it("maps INKAN_* variables to settings and ignores empty ones", () => {
    expect(envNames.dataDir).toBe("INKAN_DATA_DIR");
    expect(envNames.tlsScaCaFiles).toBe("INKAN_TLS_SCA_CA_FILES");
    expect(readEnv({ INKAN_DATA_DIR: "/d", INKAN_LISTEN: "", OTHER: "x" })).toEqual({ dataDir: "/d" });
  });

  it("lets flags and environment win over the file, and refuses unknown keys", () => {
    const dir = mkdtempSync(join(tmpdir(), "inkan-config-"));
    const file = join(dir, "inkan.json");
    writeFileSync(file, JSON.stringify({ listen: "0.0.0.0:1", logLevel: "debug" }));
    expect(withConfigFile({ configFile: file, listen: "127.0.0.1:2" })).toMatchObject({ listen: "127.0.0.1:2", logLevel: "debug" });
    writeFileSync(file, JSON.stringify({ lisen: "typo" }));
    expect(() => withConfigFile({ configFile: file })).toThrow(/unknown key lisen/);
  });
});

describe("crypto module and store settings", () => {
  it("defaults to the embedded SoftHSM2 token and the SQLite file in the data directory", () => {
    const dir = dataDirWithPki();
    const c = parseConfig({ dataDir: dir });
    expect(c.cryptoModule).toEqual({ kind: "embedded" });
    expect(c.store).toEqual({ kind: "sqlite", file: join(dir, "store.sqlite3") });
  });

  it("takes an HSM's PKCS#11 library with a token URI and a PIN file, never a PIN in the URI", () => {
    const dir = dataDirWithPki();
    writeFileSync(join(dir, "libhsm.so"), "x");
    writeFileSync(join(dir, "pin"), "1234");
    const c = parseConfig({ dataDir: dir, pkcs11Library: join(dir, "libhsm.so"), pkcs11Token: "pkcs11:token=prod", pkcs11PinFile: "pin" });
    expect(c.cryptoModule).toEqual({ kind: "pkcs11", library: join(dir, "libhsm.so"), token: "pkcs11:token=prod", pinFile: join(dir, "pin") });
    expect(() => parseConfig({ dataDir: dir, pkcs11Library: join(dir, "libhsm.so"), pkcs11Token: "pkcs11:token=prod?pin-value=1234" }))
      .toThrow(/pkcs11Token: must not carry the PIN/);
    expect(() => parseConfig({ dataDir: dir, pkcs11Token: "pkcs11:token=prod" })).toThrow(/pkcs11Library: required/);
  });

  it("takes a PostgreSQL or MongoDB URI for several nodes (the pool sized by storePoolSize) and refuses other URIs without echoing credentials", () => {
    const dir = dataDirWithPki();
    expect(parseConfig({ dataDir: dir, store: "mongodb://db1,db2/inkan?replicaSet=rs0" }).store.kind).toBe("mongodb");
    expect(parseConfig({ dataDir: dir, store: "postgres://inkan:pw@db/inkan" }).store).toEqual({ kind: "postgres", uri: "postgres://inkan:pw@db/inkan", poolSize: 10 });
    expect(parseConfig({ dataDir: dir, store: "postgresql://db/inkan", storePoolSize: "32" }).store).toEqual({ kind: "postgres", uri: "postgresql://db/inkan", poolSize: 32 });
    expect(() => parseConfig({ dataDir: dir, store: "postgres://db/inkan", storePoolSize: "0" })).toThrow(/storePoolSize: must be an integer from 1 to 1000/);
    let message = "";
    try {
      parseConfig({ dataDir: dir, store: "mysql://user:secret@db/inkan" });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^invalid configuration:\n  store: /);
    expect(message).not.toContain("secret");
  });

  it("issue 23: metricsListen is off by default, HOST:PORT when set (INKAN_METRICS_LISTEN), and not the mTLS listener's address", () => {
    const dir = dataDirWithPki();
    expect(parseConfig({ dataDir: dir }).metricsListen).toBeUndefined();
    expect(parseConfig({ dataDir: dir, metricsListen: "10.0.0.5:9464" }).metricsListen).toEqual({ host: "10.0.0.5", port: 9464 });
    expect(envNames.metricsListen).toBe("INKAN_METRICS_LISTEN");
    expect(() => parseConfig({ dataDir: dir, metricsListen: "9464" })).toThrow(/metricsListen: "9464" is not HOST:PORT/);
    expect(() => parseConfig({ dataDir: dir, listen: "127.0.0.1:8443", metricsListen: "127.0.0.1:8443" })).toThrow(/metricsListen: must differ from listen/);
  });

  it("R-3.1.4: the login assertion's OpenID provider: issuer, client id and JWKS file together or not at all, each problem by path", () => {
    const dir = dataDirWithPki();
    expect(parseConfig({ dataDir: dir }).oidc).toBeUndefined();
    writeFileSync(join(dir, "op-jwks.json"), JSON.stringify({ keys: [{ kty: "EC", crv: "P-256", x: "x", y: "y" }] }));
    expect(parseConfig({ dataDir: dir, oidcIssuer: "https://op.example", oidcClientId: "inkan", oidcJwksFile: "op-jwks.json" }).oidc)
      .toEqual({ issuer: "https://op.example", clientId: "inkan", jwksFile: join(dir, "op-jwks.json") });
    expect(envNames.oidcIssuer).toBe("INKAN_OIDC_ISSUER");
    expect(envNames.oidcClientId).toBe("INKAN_OIDC_CLIENT_ID");
    expect(envNames.oidcJwksFile).toBe("INKAN_OIDC_JWKS_FILE");
    expect(() => parseConfig({ dataDir: dir, oidcIssuer: "https://op.example" })).toThrow(/oidc: oidcIssuer, oidcClientId and oidcJwksFile are set together/);
    writeFileSync(join(dir, "empty.json"), JSON.stringify({ keys: [] }));
    writeFileSync(join(dir, "not-json.json"), "{");
    const problems = (raw: Record<string, string>) => {
      try {
        parseConfig({ dataDir: dir, ...raw });
      } catch (e) {
        return (e as ConfigError).problems;
      }
      return [];
    };
    expect(problems({ oidcIssuer: "http://op.example", oidcClientId: "a b", oidcJwksFile: "empty.json" })).toEqual([
      'oidc.issuer: "http://op.example" must be an https URL (the provider\'s issuer identifier)',
      "oidc.clientId: must be 1 to 256 printable ASCII characters",
      "oidc.jwksFile: not a JWK set with at least one key",
    ]);
    expect(problems({ oidcIssuer: "https://op.example", oidcClientId: "inkan", oidcJwksFile: "not-json.json" })).toEqual(["oidc.jwksFile: not a JSON JWK set"]);
    expect(problems({ oidcIssuer: "https://op.example", oidcClientId: "inkan", oidcJwksFile: "missing.json" })).toEqual([`oidc.jwksFile: ${join(dir, "missing.json")} is not readable`]);
  });
});
