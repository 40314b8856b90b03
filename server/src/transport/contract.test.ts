import { create } from "@bufbuild/protobuf";
import { ViolationsSchema } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { Reason, contractFiles, encryptToSam, inkanErrorReason } from "@inkan/sdk";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import {
  AuthenticationMethod,
  GetInfoRequestSchema,
  JweAlgorithm,
  JwsAlgorithm,
  SignatureActivationService,
} from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { AssuranceLevel, HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { calculateJwkThumbprint, importJWK, type JWK } from "jose";
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
    it(`R-3.2.1.2 / T-2.2.1.5: GetInfo over ${protocol} with the SCA certificate returns the policy's levels and limits and the current JWE key`, async () => {
      const sam = createClient(SignatureActivationService, t.transport(protocol, t.pki.sca));
      const info = await sam.getInfo({});
      expect(info.name).toBe("Inkan");
      expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(info.samId).toMatch(/^urn:inkan:sam:[A-Za-z0-9_-]{22}$/);
      // The policy `inkan init` writes: level 2 only, its algorithms and limits (R-3.1.4, R-3.2.2.3).
      expect(info.assuranceLevels).toEqual([AssuranceLevel.ASSURANCE_LEVEL_2]);
      expect(info.hashAlgorithms).toEqual([HashAlgorithm.SHA256, HashAlgorithm.SHA384, HashAlgorithm.SHA512]);
      expect(info.deviceKeyAlgorithms).toContain(JwsAlgorithm.ES256);
      expect(info.authenticationMethods).toContain(AuthenticationMethod.DEVICE_KEY_AND_PIN);
      expect(info.limits).toMatchObject({
        maxHashesPerTransaction: 100_000,
        maxHashesPerChunk: 10_000,
        maxRSadBytes: 16_384,
        maxAuthorizeAttempts: 3,
        defaultTransactionLifetime: { seconds: 300n },
        maxClockSkew: { seconds: 60n },
      });
      const current = info.encryptionKeys.filter((k) => k.current);
      expect(current).toHaveLength(1);
      const key = current[0]!;
      expect(key.alg).toBe(JweAlgorithm.ECDH_ES_A256KW);
      const jwk = JSON.parse(key.jwk) as JWK;
      expect(jwk).not.toHaveProperty("d");
      expect(jwk).toMatchObject({ kty: "EC", crv: "P-256", kid: key.kid, use: "enc", alg: "ECDH-ES+A256KW" });
      expect(await calculateJwkThumbprint(jwk, "sha256")).toBe(key.kid);
      await importJWK(jwk, "ECDH-ES+A256KW");
      expect(await encryptToSam(key, { pin: "123456" })).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+$/);
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
      "/inkan.admin.v1.PolicyService/GetRestoreStatus", // issue 22: a status read, always answered
      ...["GetInfo", "ListCredentials", "GetCredential"].map((m) => `/inkan.sam.v1.SignatureActivationService/${m}`),
      ...["BeginTransaction", "AppendHashes", "SealTransaction", "CancelTransaction", "Authorize", "SignHash"].map((m) => `/inkan.sam.v1.SignatureActivationService/${m}`),
      ...["EnrollSigner", "GetSigner", "ListSigners", "UpdateSigner", "DisableSigner", "EnableSigner", "IssueActivationCode", "ResetLockout",
        "GenerateKey", "GetCredential", "ListCredentials", "ResetFactors", "RevokeDevice"].map((m) => `/inkan.admin.v1.RegistrationService/${m}`),
      ...["CreateChallenge", "Activate", "ChangePin"].map((m) => `/inkan.sam.v1.SignerService/${m}`),
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

  it("answers a well-formed BeginTransaction for an unknown credential with CREDENTIAL_NOT_FOUND, not a transaction (T-2.2.1.4)", async () => {
    const sam = createClient(SignatureActivationService, t.transport("connect", t.pki.sca));
    const err = await errorOf(sam.beginTransaction(validBegin));
    expect(err.code).toBe(Code.NotFound);
    expect(inkanErrorReason(err)).toBe(Reason.CREDENTIAL_NOT_FOUND);
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
