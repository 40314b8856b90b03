import { connect, type ClientHttp2Session } from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { protocols, startTestServer, type TestServer } from "../testing/harness.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ readMaxBytes: String(64 * 1024) });
});
afterAll(async () => {
  await t?.close();
});

/** One raw HTTP/2 request with the SCA certificate: for bodies no well-behaved client would send. */
async function rawPost(path: string, headers: Record<string, string>, body: Uint8Array) {
  const session: ClientHttp2Session = connect(t.server.url, { ca: t.pki.ca, ...t.pki.sca });
  try {
    return await new Promise<{ status: number; headers: Record<string, unknown>; trailers: Record<string, unknown>; body: string }>((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": path, ...headers });
      let status = 0;
      let responseHeaders: Record<string, unknown> = {};
      let trailers: Record<string, unknown> = {};
      const chunks: Buffer[] = [];
      req.on("response", (h) => {
        status = Number(h[":status"]);
        responseHeaders = h;
      });
      req.on("trailers", (h) => (trailers = h));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ status, headers: responseHeaders, trailers, body: Buffer.concat(chunks).toString() }));
      req.on("error", reject);
      req.end(body);
    });
  } finally {
    session.close();
  }
}

async function expectStillServing() {
  const health = createClient(Health, t.transport("grpc", t.pki.sca));
  expect((await health.check({})).status).toBe(Status.SERVING);
}

describe("message-size limit (readMaxBytes)", () => {
  for (const protocol of protocols) {
    it(`refuses an oversized request over ${protocol} with RESOURCE_EXHAUSTED and stays up`, async () => {
      const health = createClient(Health, t.transport(protocol, t.pki.sca));
      const err = await health.check({ service: "x".repeat(65 * 1024) }).then(() => undefined, (e) => ConnectError.from(e));
      expect(err?.code).toBe(Code.ResourceExhausted);
      expect(inkanErrorReason(err)).toBe(Reason.LIMIT_EXCEEDED);
      expect(err?.rawMessage).toBe("the request message is larger than Limits.max_message_bytes"); // issue 18: the documented limit, not readMaxBytes
      await expectStillServing();
    });
  }
});

describe("malformed messages", () => {
  const garbage = new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]); // field 1, length beyond the body

  // Issue 17.5: an unparseable body is the client's error, not the SAM's (undecodable.test.ts
  // covers every protocol and a seeded fuzz); nothing runs and the server stays up.
  it("answers a malformed Connect body with INVALID_ARGUMENT and nothing else", async () => {
    const res = await rawPost("/grpc.health.v1.Health/Check", { "content-type": "application/proto", "connect-protocol-version": "1" }, garbage);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: "invalid_argument", message: "the request message could not be decoded" });
    await expectStillServing();
  });

  it("answers a malformed gRPC frame with INVALID_ARGUMENT", async () => {
    const frame = new Uint8Array(5 + garbage.length);
    new DataView(frame.buffer).setUint32(1, garbage.length);
    frame.set(garbage, 5);
    const res = await rawPost("/grpc.health.v1.Health/Check", { "content-type": "application/grpc", te: "trailers" }, frame);
    expect(Number(res.trailers["grpc-status"] ?? res.headers["grpc-status"])).toBe(grpc.status.INVALID_ARGUMENT);
    await expectStillServing();
  });

  it("answers a gRPC frame that claims more bytes than it carries with an error", async () => {
    const frame = new Uint8Array([0, 0, 0, 0x10, 0, 1, 2]);
    const res = await rawPost("/grpc.health.v1.Health/Check", { "content-type": "application/grpc", te: "trailers" }, frame);
    expect(Number(res.trailers["grpc-status"] ?? res.headers["grpc-status"])).not.toBe(grpc.status.OK);
    await expectStillServing();
  });

  it("answers an unknown method as gRPC does: HTTP 200, UNIMPLEMENTED in the trailers, with its detail (issue 18; unknown-method.test.ts)", async () => {
    const res = await rawPost("/inkan.sam.v1.NoSuchService/Nothing", { "content-type": "application/grpc", te: "trailers" }, new Uint8Array(5));
    expect(res.status).toBe(200);
    expect(res.trailers["grpc-status"]).toBe("12");
    expect(res.trailers["grpc-status-details-bin"]).toBeTruthy();
  });
});

describe("error details", () => {
  it("carries no Inkan reason for framework transport errors a client cannot act on", () => {
    expect(inkanErrorReason(new Error("boom"))).toBe(Reason.UNSPECIFIED);
  });
});
