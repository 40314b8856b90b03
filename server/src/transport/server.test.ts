import { create, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@inkan/sdk/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "@inkan/sdk/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { grpcJsClient, unary } from "../testing/grpc-js.js";
import { protocols, startTestServer, type TestServer } from "../testing/harness.js";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("health over mTLS (R-3.2.1.2 secure channel)", () => {
  for (const protocol of protocols) {
    it(`answers SERVING over ${protocol} with an SCA certificate`, async () => {
      const health = createClient(Health, t.transport(protocol, t.pki.sca));
      const res = await health.check({ service: "" });
      expect(res.status).toBe(Status.SERVING);
    });
  }

  it("answers a plain @grpc/grpc-js client with a privileged-user certificate", async () => {
    const client = grpcJsClient(Health, t.server.url, { ca: t.pki.ca, ...t.pki.admin });
    try {
      const res = await unary<{ status: Status }>(client, Health.method.check, create(HealthCheckRequestSchema, { service: "" }));
      expect(res.status).toBe(Status.SERVING);
    } finally {
      client.close();
    }
  });

  it("reports NOT_FOUND for an unknown service", async () => {
    const health = createClient(Health, t.transport("grpc", t.pki.sca));
    expect(await codeOf(health.check({ service: "no.such.Service" }))).toBe(Code.NotFound);
  });
});

describe("client certificates are mandatory and must come from a configured CA", () => {
  const cases = [
    { name: "no client certificate", who: () => undefined },
    { name: "a certificate from another CA", who: () => t.pki.foreign },
    { name: "an expired certificate from the SCA CA", who: () => t.pki.expired },
  ];
  for (const c of cases) {
    for (const protocol of protocols) {
      it(`refuses ${c.name} over ${protocol}`, async () => {
        const health = createClient(Health, t.transport(protocol, c.who()));
        const code = await codeOf(health.check({ service: "" }, { timeoutMs: 5000 }));
        expect(code).not.toBe("ok");
      });
    }
    it(`refuses ${c.name} from @grpc/grpc-js`, async () => {
      const client = grpcJsClient(Health, t.server.url, { ca: t.pki.ca, ...c.who() });
      try {
        const err = await unary(client, Health.method.check, create(HealthCheckRequestSchema, {}))
          .then(() => undefined, (e: grpc.ServiceError) => e);
        expect(err?.code).toBe(grpc.status.UNAVAILABLE);
      } finally {
        client.close();
      }
    });
  }

  it("still serves good clients after refusing bad handshakes", async () => {
    const health = createClient(Health, t.transport("grpc", t.pki.sca));
    expect((await health.check({})).status).toBe(Status.SERVING);
  });
});

describe("server reflection", () => {
  it("lists the Inkan services and health to grpcurl-style clients", async () => {
    const reflection = createClient(ServerReflection, t.transport("grpc", t.pki.sca));
    async function* one() {
      yield { messageRequest: { case: "listServices" as const, value: "*" } };
    }
    const names: string[] = [];
    for await (const res of reflection.serverReflectionInfo(one())) {
      if (res.messageResponse.case === "listServicesResponse") names.push(...res.messageResponse.value.service.map((s) => s.name));
    }
    expect(names).toContain("grpc.health.v1.Health");
    expect(names.some((n) => n.startsWith("inkan.sam.v1."))).toBe(true);
  });

  it("serves the schema of a symbol with its dependencies, over v1 and v1alpha", async () => {
    for (const service of [ServerReflection, ServerReflectionV1Alpha]) {
      const reflection = createClient(service, t.transport("grpc", t.pki.sca));
      async function* ask() {
        yield { messageRequest: { case: "fileContainingSymbol" as const, value: "inkan.sam.v1.SignatureActivationService.Authorize" } };
        yield { messageRequest: { case: "fileByFilename" as const, value: "no/such.proto" } };
      }
      const answers = [];
      for await (const res of reflection.serverReflectionInfo(ask())) answers.push(res.messageResponse);
      expect(answers[0]?.case).toBe("fileDescriptorResponse");
      const files = answers[0]?.case === "fileDescriptorResponse" ? answers[0].value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b)) : [];
      expect(files[0]?.name).toBe("inkan/sam/v1/sam.proto");
      expect(files.map((f) => f.name)).toEqual(expect.arrayContaining(["inkan/sam/v1/types.proto", "google/protobuf/timestamp.proto"]));
      expect(answers[1]?.case).toBe("errorResponse");
    }
  });

  it("lists the extension numbers of a type (buf.validate's field rules extend FieldOptions)", async () => {
    const reflection = createClient(ServerReflection, t.transport("grpc", t.pki.sca));
    async function* ask() {
      yield { messageRequest: { case: "allExtensionNumbersOfType" as const, value: "google.protobuf.FieldOptions" } };
      yield { messageRequest: { case: "allExtensionNumbersOfType" as const, value: "no.such.Type" } };
    }
    const answers = [];
    for await (const res of reflection.serverReflectionInfo(ask())) answers.push(res.messageResponse);
    expect(answers[0]?.case === "allExtensionNumbersResponse" && answers[0].value.extensionNumber).toEqual(expect.arrayContaining([1159]));
    expect(answers[1]?.case).toBe("errorResponse");
  });
});

