import { Code, ConnectError, createClient, createRouterTransport, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { Reason, inkanErrorDetail, inkanErrorReason } from "@inkan/sdk";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { InkanError, type ReasonCode } from "../errors.js";
import { callerKindsFor } from "./access.js";
import { codeOfReason, requestReadError } from "./error-table.js";
import { kCaller, type CallerIdentity } from "./identity.js";
import { createAccessInterceptor, createCallInterceptor } from "./interceptors.js";

const sca: CallerIdentity = { kind: "sca", commonName: "sca-test", fingerprint: "AA", sha256: "aa", subject: "CN=sca-test", spkiSha256: "cc", serialNumber: "01", issuerSha256: "bb" };
const lines: string[] = [];
const log = pino({ level: "info" }, { write: (l: string) => void lines.push(l) });

function clientWith(impl: Partial<ServiceImpl<typeof Health>>, caller: CallerIdentity | null = sca) {
  // Stands in for the server's contextValues hook, which reads the caller from the TLS socket.
  const asCaller: Interceptor = (next) => (req) => next((req.contextValues.set(kCaller, caller ?? undefined), req));
  const transport = createRouterTransport((router) => router.service(Health, impl), {
    router: { interceptors: [asCaller, createCallInterceptor(log), createAccessInterceptor()] },
  });
  return createClient(Health, transport);
}

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

describe("the error table", () => {
  it("maps every domain reason to a Reason the contract defines, and back", () => {
    const domain = Object.keys(codeOfReason) as ReasonCode[];
    for (const code of domain) expect(Reason[code], code).toBeTypeOf("number");
    const contract = Object.keys(Reason).filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED");
    expect(new Set(contract)).toEqual(new Set(domain));
  });

  it("sends a domain error with its code, short message and typed reason", async () => {
    const client = clientWith({
      check() {
        throw new InkanError("SAD_REPLAYED", "SAD already used", { field: "sad_token", index: 3 });
      },
    });
    const err = await errorOf(client.check({}));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toBe("SAD already used");
    expect(inkanErrorReason(err)).toBe(Reason.SAD_REPLAYED);
    expect(inkanErrorDetail(err)).toMatchObject({ field: "sad_token", index: 3, hasIndex: true });
  });

  it("hides the message and cause of an unexpected error from the client but logs it", async () => {
    const client = clientWith({
      check() {
        throw new Error("driver said: PIN 123456 mismatch");
      },
    });
    const err = await errorOf(client.check({}));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    expect(JSON.stringify(err.details)).not.toContain("123456");
    expect(lines.some((l) => l.includes("call failed"))).toBe(true);
  });

  it("maps errors raised while a response streams", async () => {
    const client = clientWith({
      async *watch() {
        yield { status: Status.SERVING };
        throw new InkanError("CREDENTIAL_SUSPENDED", "credential suspended");
      },
    });
    const seen: number[] = [];
    const err = await errorOf(
      (async () => {
        for await (const m of client.watch({})) seen.push(m.status);
      })(),
    );
    expect(seen).toEqual([Status.SERVING]);
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(inkanErrorReason(err)).toBe(Reason.CREDENTIAL_SUSPENDED);
  });

  it("hides a framework error that reports an internal failure, and logs its cause (issue 17.5)", async () => {
    lines.length = 0;
    const client = clientWith({
      check() {
        throw new ConnectError("serialize binary: field 7 of the secret thing", Code.Internal);
      },
    });
    const err = await errorOf(client.check({}));
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toBe("internal error");
    expect(lines.some((l) => l.includes("call failed") && l.includes("serialize binary"))).toBe(true);
  });

  it("makes every failure to read a request the client's error, and keeps limits, deadlines and unknown encodings (issue 17.5)", () => {
    const invalid = (e: unknown) => {
      const out = requestReadError(e);
      return out instanceof InkanError ? [out.code, out.message] : [Code[out.code]];
    };
    const decodeFailure = ["INVALID_REQUEST", "the request message could not be decoded"];
    expect(invalid(new ConnectError("parse binary: premature EOF", Code.Internal))).toEqual(decodeFailure);
    expect(invalid(new ConnectError("cannot decode message x from JSON: \"123456\"", Code.InvalidArgument))).toEqual(decodeFailure);
    expect(invalid(new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented))).toEqual(decodeFailure);
    expect(invalid(new ConnectError("decompression failed", Code.Internal))).toEqual(decodeFailure);
    expect(invalid(new Error("stream reset"))).toEqual(decodeFailure);
    expect(invalid(new ConnectError("message size 70000 is larger than configured readMaxBytes 65536", Code.ResourceExhausted))[0]).toBe("LIMIT_EXCEEDED");
    expect(invalid(new ConnectError("the operation timed out", Code.DeadlineExceeded))).toEqual(["DeadlineExceeded"]);
    const unknownEncoding = new ConnectError('unknown compression "zz"', Code.Unimplemented, { "grpc-accept-encoding": "gzip,br" });
    expect(invalid(unknownEncoding)).toEqual(["Unimplemented"]);
  });

  it("gives framework INVALID_ARGUMENT errors the INVALID_REQUEST reason", async () => {
    const client = clientWith({
      check() {
        throw new ConnectError("bad", Code.InvalidArgument);
      },
    });
    expect(inkanErrorReason(await errorOf(client.check({})))).toBe(Reason.INVALID_REQUEST);
  });
});

describe("access before any handler runs (R-3.1.2.1, R-3.2.2.1)", () => {
  it("refuses a caller whose certificate matched no configured CA as UNAUTHENTICATED", async () => {
    let ran = false;
    const client = clientWith({ check: () => ((ran = true), {}) }, null);
    const err = await errorOf(client.check({}));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(inkanErrorReason(err)).toBe(Reason.CLIENT_CERTIFICATE_REJECTED);
    expect(ran).toBe(false);
  });

  it("lets SCAs call the SAP and only privileged users call the admin services", () => {
    const svc = (typeName: string) => ({ typeName }) as Parameters<typeof callerKindsFor>[0];
    expect(callerKindsFor(svc("inkan.sam.v1.SignatureActivationService"))).toEqual(["sca"]);
    expect(callerKindsFor(svc("inkan.admin.v1.RegistrationService"))).toEqual(["privileged"]);
    expect(callerKindsFor(svc("inkan.sam.v1.SignerService"))).toEqual(["front-end"]); // issue 18.7
    expect(callerKindsFor(svc("grpc.health.v1.Health"))).toEqual(["sca", "front-end", "privileged"]);
    expect(callerKindsFor(svc("evil.v1.Anything"))).toEqual([]);
  });
});
