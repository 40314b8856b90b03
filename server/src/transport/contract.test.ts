import { create } from "@bufbuild/protobuf";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { Reason, contractFiles, inkanErrorReason } from "@inkan/sdk";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { GetInfoRequestSchema, SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
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

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

const validBegin = {
  credentialId: "cred-1",
  signerId: "signer-1",
  hashAlgorithm: HashAlgorithm.SHA256,
  numSignatures: 1,
  hashes: [new Uint8Array(32).fill(7)],
  description: "Invoice 2026-001",
};

describe("the v1 contract is served honestly before its issues land", () => {
  for (const protocol of protocols) {
    it(`answers GetInfo with UNIMPLEMENTED and reason NOT_IMPLEMENTED over ${protocol}`, async () => {
      const sam = createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
      const err = await errorOf(sam.getInfo({}));
      expect(err.code).toBe(Code.Unimplemented);
      expect(inkanErrorReason(err)).toBe(Reason.NOT_IMPLEMENTED);
    });
  }

  it("never answers any contract RPC with a fake success (R-3.2.1.2: no step can be bypassed)", async () => {
    const services = contractFiles.flatMap((f) => f.services);
    expect(services.length).toBeGreaterThanOrEqual(6);
    const implemented = new Set([
      "/inkan.admin.v1.PrivilegedSessionService/CreateRequestNonce",
      ...["Create", "Get", "List", "Update", "Remove"].map((v) => `/inkan.admin.v1.PrivilegedUserService/${v}PrivilegedUser${v === "List" ? "s" : ""}`),
      "/inkan.admin.v1.PrivilegedUserService/AddUserKey",
      "/inkan.admin.v1.PrivilegedUserService/RevokeUserKey",
      ...["ListPendingApprovals", "GetPendingApproval", "ApprovePendingRequest", "RejectPendingRequest"].map(
        (m) => `/inkan.admin.v1.PrivilegedUserService/${m}`,
      ),
      "/inkan.admin.v1.PolicyService/GetSecurityPolicy",
      "/inkan.admin.v1.PolicyService/UpdateSecurityPolicy",
    ]);
    for (const service of services) {
      const transport = service.typeName.startsWith("inkan.admin.") ? t.adminTransport() : t.transport("grpc", t.pki.sca);
      const client = createClient(service, transport) as unknown as Record<string, (req: object) => unknown>;
      for (const method of service.methods) {
        if (implemented.has(`/${service.typeName}/${method.name}`)) continue;
        const call = client[method.localName]!;
        let code: Code;
        if (method.methodKind === "server_streaming") {
          code = (await errorOf((async () => {
            for await (const _ of call({}) as AsyncIterable<unknown>) {
              /* drain */
            }
          })())).code;
        } else {
          code = (await errorOf(Promise.resolve(call({})))).code;
        }
        // The first security officer may not call the operator's and auditor's RPCs: PERMISSION_DENIED.
        expect([Code.Unimplemented, Code.InvalidArgument, Code.PermissionDenied], `${service.typeName}/${method.name}`).toContain(code);
      }
    }
  });

  it("answers a well-formed BeginTransaction with UNIMPLEMENTED, not a transaction", async () => {
    const sam = createClient(SignatureActivationService, t.transport("connect", t.pki.sca));
    const err = await errorOf(sam.beginTransaction(validBegin));
    expect(err.code).toBe(Code.Unimplemented);
  });
});

describe("request validation from the protovalidate rules", () => {
  for (const protocol of protocols) {
    it(`refuses a hash whose length does not fit its algorithm over ${protocol} with the violations`, async () => {
      const sam = createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
      const err = await errorOf(sam.beginTransaction({ ...validBegin, hashes: [new Uint8Array(31)] }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(inkanErrorReason(err)).toBe(Reason.INVALID_REQUEST);
      const violations = err.findDetails(ViolationsSchema)[0]?.violations ?? [];
      expect(violations.map((v) => v.ruleId)).toContain("begin_transaction.hash_length");
    });
  }

  it("refuses more hashes than signatures authorized (T-2.2.1.6 starts at the door)", async () => {
    const sam = createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
    const err = await errorOf(sam.beginTransaction({ ...validBegin, hashes: [new Uint8Array(32), new Uint8Array(32).fill(1)] }));
    expect(err.code).toBe(Code.InvalidArgument);
  });
});

describe("callers reach only the services of their kind", () => {
  it("refuses a privileged-user certificate on the SCA-facing SAP with PERMISSION_DENIED, before validation", async () => {
    const sam = createClient(SignatureActivationService, t.transport("grpc", t.pki.admin));
    const err = await errorOf(sam.beginTransaction({ ...validBegin, hashes: [new Uint8Array(3)] }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(inkanErrorReason(err)).toBe(Reason.ROLE_NOT_PERMITTED);
  });

  it("refuses an SCA certificate on the admin services (T-2.2.2.1)", async () => {
    const registration = createClient(RegistrationService, t.transport("connect", t.pki.sca));
    const err = await errorOf(registration.listSigners({}));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(inkanErrorReason(err)).toBe(Reason.ROLE_NOT_PERMITTED);
  });

  it("gives a plain @grpc/grpc-js client the same codes", async () => {
    const client = grpcJsClient(SignatureActivationService, t.server.url, { ca: t.pki.ca, ...t.pki.admin });
    try {
      const err = await unary(client, SignatureActivationService.method.getInfo, create(GetInfoRequestSchema, {}))
        .then(() => undefined, (e: grpc.ServiceError) => e);
      expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
    } finally {
      client.close();
    }
  });
});
