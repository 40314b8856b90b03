import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { ServerReflection, type ServerReflectionRequestSchema } from "@inkan/sdk/gen/grpc/reflection/v1/reflection_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../testing/harness.js";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe("graceful shutdown", () => {
  it("tells health watchers NOT_SERVING, lets their streams end, then refuses new connections", async () => {
    t = await startTestServer();
    const health = createClient(Health, t.transport("grpc", t.pki.sca));
    const seen: Status[] = [];
    const watching = (async () => {
      for await (const m of health.watch({ service: "" })) {
        seen.push(m.status);
        if (seen.length === 1) void t!.server.close(5000);
      }
    })();
    await watching;
    expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
    await t.server.close();
    const fresh = createClient(Health, t.transport("grpc", t.pki.sca));
    const err = await fresh.check({}, { timeoutMs: 2000 }).then(() => undefined, (e) => ConnectError.from(e));
    expect(err?.code).toBe(Code.Unavailable);
  });

  it("closes calls still open when the grace period ends", async () => {
    t = await startTestServer();
    const reflection = createClient(ServerReflection, t.transport("grpc", t.pki.sca));
    let release!: () => void;
    const never = new Promise<void>((r) => (release = r));
    async function* requests(): AsyncGenerator<MessageInitShape<typeof ServerReflectionRequestSchema>> {
      yield { messageRequest: { case: "listServices", value: "" } };
      await never; // the client never ends its side: the call stays in flight
    }
    const call = (async () => {
      for await (const _ of reflection.serverReflectionInfo(requests())) {
        /* keep reading */
      }
    })().catch((e: unknown) => ConnectError.from(e));
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    await t.server.close(300);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    const outcome = await call;
    release();
    expect(outcome).toBeInstanceOf(ConnectError);
  });
});
