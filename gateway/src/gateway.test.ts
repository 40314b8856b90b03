import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { gatewayConfig } from "./config.js";
import { startGateway, type Gateway } from "./server.js";
import type { SqliteGatewayStore } from "./store/gateway-store.js";
import { httpsRequest } from "./testing/https.js";

describe("gateway scaffold (issue 15)", () => {
  let sam: TestServer;
  let gateway: Gateway;
  let ca: string;

  beforeAll(async () => {
    sam = await startTestServer();
    gateway = await startGateway(gatewayConfig({ dataDir: sam.dataDir, listen: "127.0.0.1:0", samUrl: sam.server.url }));
    ca = readFileSync(join(sam.dataDir, "pki", "ca.crt"), "utf8");
  });
  afterAll(async () => {
    await gateway?.close();
    await sam?.close();
  });

  it("serves the portal page over HTTPS with a strict CSP", async () => {
    const res = await httpsRequest(`${gateway.url}/`, { ca });
    expect(res.status).toBe(200);
    expect(res.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(res.body).toContain("Inkan");
  });

  it("answers 404 in JSON for an unknown path", async () => {
    const res = await httpsRequest(`${gateway.url}/nope`, { ca });
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body)).toMatchObject({ error: "not_found" });
  });

  it("reaches the SAM through the SDK over mTLS", async () => {
    const info = await gateway.sam.inkan.getInfo();
    expect(info.samId).not.toBe("");
  });

  it("takes its client certificate toward the SAM from --client-cert/--client-key, both or neither", () => {
    const p = sam.pki.paths;
    expect(() => gatewayConfig({ dataDir: sam.dataDir, clientCertFile: p.adminCert })).toThrow(/go together/);
    const c = gatewayConfig({ dataDir: sam.dataDir, clientCertFile: p.adminCert, clientKeyFile: p.adminKey });
    expect(c.tls.clientCert).toBe(readFileSync(p.adminCert, "utf8"));
    // Issue 18 item 7: SignerService takes only a signer front end; GetInfo goes with the SCA certificate.
    const defaults = gatewayConfig({ dataDir: sam.dataDir });
    expect(defaults.tls.clientCert).toBe(readFileSync(p.signerFrontEnd.cert, "utf8"));
    expect(defaults.tls.scaClientCert).toBe(readFileSync(p.scaCert, "utf8"));
    expect(() => gatewayConfig({ dataDir: sam.dataDir, scaClientCertFile: p.scaCert })).toThrow(/go together/);
  });

  it("keeps its own migrated SQLite store in the data directory", () => {
    const tables = (gateway.store as SqliteGatewayStore).db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
    expect(tables.map((t) => t.name)).toContain("requests");
  });
});

describe("inkan gateway (issue 15)", () => {
  it("prints `listening on https://HOST:PORT` once it accepts requests", async () => {
    const { spawn } = await import("node:child_process");
    const sam = await startTestServer();
    const child = spawn(process.execPath, ["server/bin/inkan.js", "gateway", "--data-dir", sam.dataDir, "--listen", "127.0.0.1:0", "--sam", sam.server.url, "--client-cert", sam.pki.paths.signerFrontEnd.cert, "--client-key", sam.pki.paths.signerFrontEnd.key], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      const url = await new Promise<string>((done, fail) => {
        let out = "";
        child.stdout.on("data", (c: Buffer) => {
          out += c.toString();
          const m = /listening on (https:\/\/\S+)\n/.exec(out);
          if (m) done(m[1]!);
        });
        child.once("exit", (code) => fail(new Error(`exited ${code}: ${out}`)));
      });
      const res = await httpsRequest(`${url}/`, { ca: readFileSync(join(sam.dataDir, "pki", "ca.crt"), "utf8") });
      expect(res.status).toBe(200);
    } finally {
      child.kill("SIGTERM");
      await sam.close();
    }
  });

  it("a malformed --public-url stops it at start with exit code 2 and what is wrong", async () => {
    const { spawnSync } = await import("node:child_process");
    const run = spawnSync(process.execPath, ["server/bin/inkan.js", "gateway", "--data-dir", "/nonexistent-inkan", "--public-url", "https://rssp.example/portal?x=1"], { encoding: "utf8", timeout: 30_000 });
    expect(run.status, run.stderr).toBe(2);
    expect(run.stderr).toContain('inkan gateway: public-url: "https://rssp.example/portal?x=1" has a query or fragment');
    expect(run.stdout).not.toContain("listening on");
  });

  it("issue 16: a malformed csc-clients.json stops it at start with exit code 2 and the reason, not a crash", async () => {
    const { spawnSync } = await import("node:child_process");
    const { writeFileSync } = await import("node:fs");
    const sam = await startTestServer();
    try {
      writeFileSync(join(sam.dataDir, "csc-clients.json"), JSON.stringify({ clients: [null] }));
      const run = spawnSync(process.execPath, ["server/bin/inkan.js", "gateway", "--data-dir", sam.dataDir, "--listen", "127.0.0.1:0", "--sam", sam.server.url], { encoding: "utf8", timeout: 30_000 });
      expect(run.status, run.stderr).toBe(2);
      expect(run.stderr).toContain("csc-clients.json: clients[0] must be an object");
      expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(run.stdout).not.toContain("listening on");
    } finally {
      await sam.close();
    }
  });
});
