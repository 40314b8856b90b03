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
  });

  it("reports every problem at once, each by its path", () => {
    const dir = mkdtempSync(join(tmpdir(), "inkan-config-"));
    let err: unknown;
    try {
      parseConfig({ dataDir: dir, listen: "nowhere", readMaxBytes: "12", logLevel: "loud" });
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
      ]),
    );
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
