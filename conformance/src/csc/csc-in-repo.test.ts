/**
 * `--protocol csc` against the in-repo gateway and SAM (issue 16): every CSC replay, bypass and
 * forgery case passes; and against a broken gateway that signs whatever it is asked, they fail.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import type { IncomingMessage } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { decodeJwt, exportJWK, generateKeyPair, importJWK, jwtVerify, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { gatewayConfig } from "../../../gateway/src/config.js";
import { startGateway, type Gateway } from "../../../gateway/src/server.js";
import { startTestServer, type TestServer } from "../../../server/src/testing/harness.js";
import { targetFromInit } from "../cli-options.js";
import { main } from "../cli.js";
import type { SuiteReport } from "../runner.js";
import { prepareIdentities, type Identities, type TargetOptions } from "../target.js";
import type { CscTarget } from "./csc-client.js";
import { allCscCases, notApplicableOverCsc, runCscCases } from "./run-csc.js";

let t: TestServer;
let gateway: Gateway;
let target: TargetOptions;
let identities: Identities;
let first: CscTarget;
let second: CscTarget;
let k1Private: JWK;
let k1Public: JWK;

async function clientKey(): Promise<{ pub: JWK; priv: JWK }> {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  return { pub: await exportJWK(publicKey), priv: await exportJWK(privateKey) };
}

beforeAll(async () => {
  t = await startTestServer();
  const [k1, k2] = [await clientKey(), await clientKey()];
  k1Private = k1.priv;
  k1Public = k1.pub;
  // The suite's clients: every signer in scope (the suite enrolls its own), explicit mode allowed.
  writeFileSync(join(t.dataDir, "csc-clients.json"), JSON.stringify({ clients: [
    { clientId: "conformance-1", jwks: { keys: [k1.pub] }, signers: "*", explicit: true },
    { clientId: "conformance-2", jwks: { keys: [k2.pub] }, signers: "*", explicit: true },
  ] }));
  gateway = await startGateway(gatewayConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", samUrl: t.server.url }));
  target = targetFromInit(t.server.url, t.pki.paths);
  identities = await prepareIdentities(target);
  first = { baseUrl: `${gateway.url}/csc/v2`, ca: target.ca, clientId: "conformance-1", privateJwk: k1.priv };
  second = { baseUrl: `${gateway.url}/csc/v2`, ca: target.ca, clientId: "conformance-2", privateJwk: k2.priv };
}, 120_000);
afterAll(async () => {
  await gateway?.close();
  await t?.close();
});

describe("the conformance suite over CSC (issue 16)", () => {
  it("passes every CSC case and every catalogue case mapped to CSC against the in-repo gateway; the rest are not applicable with their reason", async () => {
    const run = await runCscCases({ target, identities, csc: first, otherCsc: second });
    expect(run.protocol).toBe("csc");
    expect(run.results.filter((r) => r.status !== "passed" && r.status !== "not-applicable").map((r) => `${r.id}: ${r.status} ${r.detail}`)).toEqual([]);
    expect(run.results.filter((r) => r.status === "passed").map((r) => r.id)).toEqual(allCscCases.map((c) => c.id));
    expect(run.results.filter((r) => r.status === "not-applicable")).toEqual(notApplicableOverCsc());
  });

  it("fails the cases against a gateway that signs whatever it is asked", async () => {
    const broken = await fakeGateway((_req, _body, answer) => {
      answer(200, { access_token: "t", token_type: "Bearer", expires_in: 60, SAD: "s", expiresIn: 60, signatures: [Buffer.from(`sig ${Math.random()}`).toString("base64")] });
    });
    try {
      const run = await runCscCases({ target, identities, csc: { ...first, baseUrl: broken.url }, otherCsc: { ...second, baseUrl: broken.url } });
      expect(run.results.filter((r) => r.status === "failed").map((r) => r.id)).toEqual(allCscCases.map((c) => c.id));
      // Each failed on the broken gateway's answer, not because it could not run.
      expect(run.results.filter((r) => r.detail.startsWith("the case could not run")).map((r) => `${r.id}: ${r.detail}`)).toEqual([]);
    } finally {
      await broken.close();
    }
  });
});

/**
 * An HTTPS server with the in-repo gateway's certificate that answers every request with `handle`
 * (its body read whole): the stand-in for a flawed gateway.
 */
async function fakeGateway(handle: (req: IncomingMessage, body: string, answer: (status: number, json: unknown) => void, url: string) => void): Promise<{ url: string; close(): Promise<void> }> {
  let url = "";
  const server: Server = createServer({ cert: readFileSync(join(t.dataDir, "pki", "server.crt")), key: readFileSync(join(t.dataDir, "pki", "server.key")) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => handle(req, Buffer.concat(chunks).toString("utf8"), (status, json) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(json)), url));
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/csc/v2`;
  return { url, close: () => new Promise<void>((done) => server.close(() => done())) };
}

/**
 * A gateway with one flaw: it takes its own URL from the request's Host header, for the audience
 * it accepts in a client assertion (`trusts: "token"`) or for info's oauth2 URL (`"info"`). The
 * assertion's signature is checked with the suite client's key, as a real gateway would.
 */
async function hostTrustingGateway(trusts: "token" | "info"): Promise<{ url: string; close(): Promise<void> }> {
  const key = await importJWK(k1Public, "ES256");
  return fakeGateway((req, body, answer, listening) => {
    const fromHost = `https://${req.headers.host}/csc/v2`;
    if (req.url === "/csc/v2/info") return answer(200, { oauth2: trusts === "info" ? fromHost : listening });
    const assertion = new URLSearchParams(body).get("client_assertion") ?? "";
    jwtVerify(assertion, key, { audience: `${trusts === "token" ? fromHost : listening}/oauth2/token` }).then(
      () => answer(200, { access_token: `t-${decodeJwt(assertion).jti}`, token_type: "Bearer", expires_in: 60 }),
      () => answer(401, { error: "invalid_client" }),
    );
  });
}

describe("T-2.2.1.3, T-2.2.1.1: csc-assertion-for-another-host against a gateway that trusts the Host header", () => {
  const only = allCscCases.filter((c) => c.id === "csc-assertion-for-another-host");

  it.each([
    ["token", "expected 401 invalid_client, got 200"],
    ["info", "info names the Host header's server as its OAuth 2.0 URL (https://other-rssp.example/csc/v2)"],
  ] as const)("fails when the gateway takes its URL from Host for %s", async (trusts, detail) => {
    expect(only).toHaveLength(1);
    const mutant = await hostTrustingGateway(trusts);
    try {
      const run = await runCscCases({ target, identities, csc: { ...first, baseUrl: mutant.url }, cases: only });
      expect(run.results.map((r) => [r.id, r.status, r.detail])).toEqual([["csc-assertion-for-another-host", "failed", detail]]);
    } finally {
      await mutant.close();
    }
  });
});

describe("inkan-conformance --protocol csc (issue 16)", () => {
  it("runs the CSC cases from the command line against the gateway and reports them as the protocol csc; exit 0", async () => {
    const dir = mkdtempSync(join(tmpdir(), "inkan-conformance-csc-"));
    const files = { init: join(dir, "init.json"), key: join(dir, "client.jwk"), report: join(dir, "report.json") };
    writeFileSync(files.init, JSON.stringify(t.pki.paths));
    writeFileSync(files.key, JSON.stringify(k1Private));
    const lines: string[] = [];
    const err = vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
    let status: number;
    try {
      status = await main(["--target", t.server.url, "--from-init", files.init, "--protocol", "csc", "--gateway", gateway.url, "--csc-client-id", "conformance-1", "--csc-client-key", files.key, "--report-json", files.report]);
    } finally {
      err.mockRestore();
    }
    const report = JSON.parse(readFileSync(files.report, "utf8")) as SuiteReport;
    expect(report.runs.map((r) => r.protocol)).toEqual(["csc"]);
    // Without a second client the cross-client cases are skipped with their reason; every other one passes.
    // The CLI was given no second security officer either, so the destroyed-credential case is skipped with its reason.
    const skipped = ["csc-sad-of-another-client", "bypass-other-sca-token", "bypass-other-sca-cancel", "bypass-destroyed-credential"];
    expect(report.runs[0]!.results.filter((r) => r.status !== "passed" && r.status !== "not-applicable").map((r) => `${r.id} ${r.status}`)).toEqual(skipped.map((id) => `${id} skipped`));
    expect(lines.join("\n")).toContain(`${allCscCases.length - skipped.length} passed, 0 failed, 0 known failures, ${skipped.length} skipped, 0 covered elsewhere, ${notApplicableOverCsc().length} not applicable`);
    expect(status).toBe(0);
  });
});
