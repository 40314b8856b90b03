import { execFile, execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { createInkanClient, createInkanGrpcJsClient, InkanError, probeClientCertificate, Reason, toInkanError } from "@inkan/sdk";
import { Health, HealthCheckRequestSchema } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { grpcJsClient, unary } from "../testing/grpc-js.js";
import { protocols, startTestServer, type TestServer } from "../testing/harness.js";

// Issue 18 item 2 (error.proto, "Refused handshakes"): a missing, untrusted or expired client
// certificate is refused in the TLS handshake; every client stack sees what the contract says,
// and the SDK reports it as CLIENT_CERTIFICATE_REJECTED, not retryable. Items 8 and 11: a C-core
// client built from proto/ alone (Python stubs from grpc_tools) reads the request id and decodes
// grpc-status-details-bin with the shipped google/rpc/status.proto.
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

type Who = "missing" | "untrusted" | "expired";
const bad: Who[] = ["missing", "untrusted", "expired"];
const tlsOf = (who: Who) => {
  const pem = who === "missing" ? undefined : who === "untrusted" ? t.pki.foreign : t.pki.expired;
  return { ca: t.pki.ca, cert: pem?.cert ?? "", key: pem?.key ?? "" };
};
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

describe("what each client stack sees when the handshake refuses the certificate (issue 18)", () => {
  for (const who of bad) {
    it(`connect-node (the harness transports) fails the call: ${who}`, async () => {
      for (const protocol of protocols) {
        const tls = tlsOf(who);
        const err = ConnectError.from(await failure(createClient(Health, t.transport(protocol, tls.cert ? { cert: tls.cert, key: tls.key } : undefined)).check({}, { timeoutMs: 10_000 })));
        // error.proto: missing -> INTERNAL with the alert; untrusted or expired -> CANCELED.
        expect(err.code, protocol).toBe(who === "missing" ? Code.Internal : Code.Canceled);
      }
    });

    it(`@grpc/grpc-js says UNAVAILABLE: ${who}`, async () => {
      const tls = tlsOf(who);
      const client = grpcJsClient(Health, t.server.url, tls.cert ? tls : { ca: tls.ca });
      try {
        const err = (await failure(unary(client, Health.method.check, create(HealthCheckRequestSchema, {})))) as grpc.ServiceError;
        expect(err.code).toBe(grpc.status.UNAVAILABLE);
        if (who === "missing") expect(err.details).toMatch(/alert certificate required/);
      } finally {
        client.close();
      }
    });
  }
});

describe("the SDK reports a refused certificate as CLIENT_CERTIFICATE_REJECTED, not retryable (issue 18)", () => {
  const expectRejected = (err: unknown, who: Who, what: string) => {
    expect(err, what).toBeInstanceOf(InkanError);
    const e = err as InkanError;
    expect({ reason: e.reasonName, code: e.code, retryable: e.retryable, detectedBySdk: e.detectedBySdk }, `${what}: ${e.message}`)
      .toEqual({ reason: "CLIENT_CERTIFICATE_REJECTED", code: Code.Unauthenticated, retryable: false, detectedBySdk: true });
    if (who === "expired") expect(e.message).toMatch(/expired on/);
    if (who === "missing") expect(e.message).toMatch(/no client certificate/);
  };

  for (const who of bad) {
    it(`createInkanClient over gRPC, Connect and gRPC-Web: ${who}`, async () => {
      for (const protocol of protocols) {
        const inkan = createInkanClient({ baseUrl: t.server.url, tls: tlsOf(who), protocol });
        expectRejected(await failure(inkan.getInfo()), who, protocol);
      }
    });

    it(`createInkanGrpcJsClient: ${who}`, async () => {
      const inkan = createInkanGrpcJsClient({ address: t.server.url, tls: tlsOf(who) });
      try {
        expectRejected(await failure(inkan.getInfo()), who, "grpc-js");
      } finally {
        inkan.close();
      }
    });
  }

  it("leaves other failures alone: a good certificate is accepted, and an unreachable SAM stays a retryable transport failure", async () => {
    expect(await probeClientCertificate({ url: t.server.url, tls: { ca: t.pki.ca, ...t.pki.sca } })).toBeUndefined();
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const down = toInkanError(await failure(createInkanClient({ baseUrl: `https://127.0.0.1:${port}`, tls: { ca: t.pki.ca, ...t.pki.sca } }).getInfo()));
    expect({ reason: down.reason, retryable: down.retryable }).toEqual({ reason: Reason.UNSPECIFIED, retryable: true });
  });
});

/** Debian's python3 with python3-grpcio and python3-grpc-tools (scripts/setup.sh installs them). */
const python = "/usr/bin/python3";
const hasCCore = spawnSync(python, ["-c", "import grpc, grpc_tools.protoc"]).status === 0;
if (!hasCCore) console.log("C-core tests skipped: /usr/bin/python3 lacks grpcio or grpc_tools (apt-get install python3-grpcio python3-grpc-tools)");
const script = fileURLToPath(new URL("../testing/c-core/inkan_ccore.py", import.meta.url));
const protoDir = fileURLToPath(new URL("../../../proto", import.meta.url));

describe.skipIf(!hasCCore)("a C-core client (grpcio) built from proto/ alone (issue 18 items 2, 8, 11)", () => {
  let stubs: string;
  beforeAll(() => {
    stubs = mkdtempSync(join(tmpdir(), "inkan-py-"));
    // README "Clients in other languages": generate inkan/, buf/validate/ and google/rpc/; take
    // grpc.health.v1 and grpc.reflection from the language's own gRPC packages.
    const files = ["inkan/sam/v1", "inkan/admin/v1", "buf/validate", "google/rpc"].flatMap((d) =>
      readdirSync(join(protoDir, d)).filter((f) => f.endsWith(".proto")).map((f) => `${d}/${f}`));
    execFileSync(python, ["-m", "grpc_tools.protoc", `-I${protoDir}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, ...files]);
  });
  afterAll(() => {
    if (stubs) rmSync(stubs, { recursive: true, force: true });
  });

  /** Runs the script in a child process (asynchronously: the SAM answers from this process). */
  const run = (input: object) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const child = execFile(python, [script], { timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as Record<string, unknown>);
      });
      child.stdin!.end(JSON.stringify({ stubs, target: t.server.url.replace("https://", ""), ca: t.pki.ca, ...input }));
    });

  it("is refused as the contract says (UNAVAILABLE) for a missing, an untrusted and an expired certificate, and served with a good one", async () => {
    expect(await run({ mode: "handshake", ...t.pki.sca })).toEqual({ code: "OK" });
    for (const who of bad) {
      const tls = tlsOf(who);
      const answer = await run({ mode: "handshake", ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}) });
      expect(answer.code, who).toBe("UNAVAILABLE");
      expect(answer.details, who).toMatch(who === "missing" ? /Endpoint read failed|Socket closed/ : /Socket closed|Endpoint read failed|failed to connect/);
    }
  });

  it("reads inkan-request-id from the initial metadata of a success and the trailers of an error, and decodes google.rpc.Status with its ErrorDetail", async () => {
    const answer = await run({ mode: "contract", ...t.pki.sca });
    expect(answer.samId).toMatch(/^urn:inkan:sam:/);
    expect(answer.okRequestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(answer).toMatchObject({ code: "NOT_FOUND", statusCode: 5, details: [{ reason: "REASON_CREDENTIAL_NOT_FOUND", field: "credential_id" }] });
    expect(answer.errorRequestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(answer.errorRequestId).not.toBe(answer.okRequestId);
  });
});
