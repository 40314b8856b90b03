import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { Reason } from "@inkan/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { protocols, startTestServer, type TestServer } from "../testing/harness.js";
import { rawRpcSession, type RawProtocol } from "../testing/raw-rpc.js";

// Issue 18 item 3 (error.proto, "Errors without a call"): a path that names no RPC is answered
// like an RPC this SAM does not implement, UNIMPLEMENTED with REASON_NOT_IMPLEMENTED and the
// request id, on every protocol; an oversized request is RESOURCE_EXHAUSTED LIMIT_EXCEEDED
// (limits.test.ts) and an undecodable one INVALID_ARGUMENT INVALID_REQUEST (undecodable.test.ts).
let t: TestServer;
let raw: ReturnType<typeof rawRpcSession>;
beforeAll(async () => {
  t = await startTestServer();
  raw = rawRpcSession(t.server.url, { ca: t.pki.ca, ...t.pki.sca });
});
afterAll(async () => {
  await raw?.close();
  await t?.close();
});

const paths = ["/inkan.sam.v1.SignatureActivationService/NoSuchMethod", "/inkan.sam.v1.NoSuchService/GetInfo", "/no/such/path"];
const empty = new Uint8Array();

describe("a path that names no RPC (issue 18)", () => {
  for (const protocol of ["grpc", "grpc-web", "connect", "connect-json"] as RawProtocol[]) {
    it(`answers UNIMPLEMENTED NOT_IMPLEMENTED with the request id over ${protocol}`, async () => {
      for (const path of paths) {
        const o = await raw.call(protocol, path, empty);
        expect(o.code, `${path}: ${o.message}`).toBe(Code.Unimplemented);
        expect(o.reason, path).toBe(Reason.NOT_IMPLEMENTED);
        expect(o.requestId, path).toMatch(/^[0-9a-f-]{36}$/);
        if (protocol.startsWith("connect")) expect(o.httpStatus).toBe(501);
        else expect(o.httpStatus).toBe(200);
      }
    });
  }

  it("is UNIMPLEMENTED with the detail for a plain @grpc/grpc-js client", async () => {
    const client = new grpc.Client(t.server.url.replace("https://", ""), grpc.credentials.createSsl(Buffer.from(t.pki.ca), Buffer.from(t.pki.sca.key), Buffer.from(t.pki.sca.cert)));
    try {
      const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
        client.makeUnaryRequest(paths[0]!, (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (e) => (e ? resolve(e) : reject(new Error("the call succeeded"))));
      });
      expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(err.metadata.get("grpc-status-details-bin")).toHaveLength(1);
      expect(err.metadata.get("inkan-request-id")[0]).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      client.close();
    }
  });
});

describe("the request id travels with every answer (issue 18 item 8, error.proto)", () => {
  for (const protocol of protocols) {
    it(`in the response headers of a success and the error's metadata over ${protocol}`, async () => {
      const sam = createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
      let okHeader: string | null = null;
      await sam.getInfo({}, { onHeader: (h) => (okHeader = h.get("inkan-request-id")) });
      expect(okHeader).toMatch(/^[0-9a-f-]{36}$/);
      const err = await sam.getCredential({ credentialId: "no-such-credential" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
      expect(err?.code).toBe(Code.NotFound);
      expect(err?.metadata.get("inkan-request-id")).toMatch(/^[0-9a-f-]{36}$/);
      expect(err?.metadata.get("inkan-request-id")).not.toBe(okHeader);
    });
  }
});
