import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason, requestSignatureHeader, requestSignatureType } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PrivilegedSessionService } from "@inkan/sdk/gen/inkan/admin/v1/auth_pb.js";
import {
  GetPrivilegedUserRequestSchema,
  ListPrivilegedUsersRequestSchema,
  PrivilegedUserService,
} from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { CompactSign, generateKeyPair, importJWK, type JWK } from "jose";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../testing/harness.js";

// Every admin request: a client certificate from the admin CA AND a per-request signature by the
// user's registered key over method, request digest, one-time nonce and a short expiry
// (R-3.1.2.1, R-3.2.2.1, T-2.1.2.1, T-2.2.2.1, T-2.2.2.2).
let t: TestServer;
let userId: string;
let privateJwk: JWK & { kid: string };
beforeAll(async () => {
  t = await startTestServer();
  userId = t.pki.paths.adminUserId;
  privateJwk = JSON.parse(readFileSync(t.pki.paths.adminRequestKey, "utf8")) as JWK & { kid: string };
});
afterAll(async () => {
  await t?.close();
});

const unsigned = () => t.transport("grpc", t.pki.admin);
async function nonce(): Promise<string> {
  return (await createClient(PrivilegedSessionService, unsigned()).createRequestNonce({})).nonce;
}

interface SignOptions<D extends DescMessage> {
  method: string;
  schema: D;
  message: MessageInitShape<D>;
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
  key?: JWK & { kid: string };
}
async function sign<D extends DescMessage>(o: SignOptions<D>): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const dig = createHash("sha256").update(toBinary(o.schema, create(o.schema, o.message))).digest("base64url");
  const key = o.key ?? privateJwk;
  const payload = { sub: userId, mth: o.method, dig, non: await nonce(), iat: now, exp: now + 60, ...o.claims };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: "ES256", typ: requestSignatureType, kid: key.kid, ...o.header })
    .sign(await importJWK(key, "ES256"));
}

const listPath = "/inkan.admin.v1.PrivilegedUserService/ListPrivilegedUsers";
const users = () => createClient(PrivilegedUserService, unsigned());
const withSignature = (jws: string) => ({ headers: { [requestSignatureHeader]: jws } });

async function outcome(p: Promise<unknown>): Promise<{ code: Code | "ok"; reason: Reason }> {
  try {
    await p;
    return { code: "ok", reason: Reason.UNSPECIFIED };
  } catch (err) {
    return { code: ConnectError.from(err).code, reason: inkanErrorReason(err) };
  }
}
const passed = { code: "ok", reason: Reason.UNSPECIFIED };
const badSignature = { code: Code.Unauthenticated, reason: Reason.REQUEST_SIGNATURE_INVALID };

describe("privileged-user authentication (R-3.1.2.1, R-3.2.2.1)", () => {
  it("hands a nonce to a registered admin certificate alone, with the user and role", async () => {
    const res = await createClient(PrivilegedSessionService, unsigned()).createRequestNonce({});
    expect(res.userId).toBe(userId);
    expect(res.role).toBe(PrivilegedRole.SECURITY_OFFICER);
    expect(Buffer.from(res.nonce, "base64url")).toHaveLength(32);
  });

  it("accepts a correctly signed request (the SDK's signer)", async () => {
    expect(await outcome(createClient(PrivilegedUserService, t.adminTransport()).listPrivilegedUsers({}))).toEqual(passed);
    expect(await outcome(createClient(PrivilegedUserService, t.adminTransport("connect")).listPrivilegedUsers({}))).toEqual(passed);
  });

  it("a user holds at most 100 unused nonces: the 101st is RESOURCE_EXHAUSTED LIMIT_EXCEEDED", async () => {
    const auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "nonce-hoarder");
    const session = createClient(PrivilegedSessionService, t.transport("grpc", auditor.cert));
    const nonces = await Promise.all(Array.from({ length: 100 }, () => session.createRequestNonce({})));
    expect(new Set(nonces.map((n) => n.nonce)).size).toBe(100);
    expect(await outcome(session.createRequestNonce({}))).toEqual({ code: Code.ResourceExhausted, reason: Reason.LIMIT_EXCEEDED });
    // Another user is not affected.
    expect((await createClient(PrivilegedSessionService, unsigned()).createRequestNonce({})).nonce).not.toBe("");
  });

  it("T-2.2.2.1: refuses a valid admin-CA certificate bound to no privileged user", async () => {
    const session = createClient(PrivilegedSessionService, t.transport("grpc", t.pki.unboundAdmin));
    expect(await outcome(session.createRequestNonce({}))).toEqual({ code: Code.Unauthenticated, reason: Reason.CLIENT_CERTIFICATE_REJECTED });
  });

  it("T-2.1.2.1: a stolen certificate alone does nothing (no request signature)", async () => {
    expect(await outcome(users().listPrivilegedUsers({}))).toEqual(badSignature);
  });

  it("T-2.2.2.1: refuses a replayed request (its nonce is spent)", async () => {
    const jws = await sign({ method: listPath, schema: ListPrivilegedUsersRequestSchema, message: {} });
    expect(await outcome(users().listPrivilegedUsers({}, withSignature(jws)))).toEqual(passed);
    expect(await outcome(users().listPrivilegedUsers({}, withSignature(jws)))).toEqual({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
  });

  it("T-2.2.2.1: lets exactly one of 16 concurrent copies of a signed request through", async () => {
    const jws = await sign({ method: listPath, schema: ListPrivilegedUsersRequestSchema, message: {} });
    const results = await Promise.all(Array.from({ length: 16 }, () => outcome(users().listPrivilegedUsers({}, withSignature(jws)))));
    expect(results.filter((r) => r.code === "ok")).toHaveLength(1);
    expect(results.filter((r) => r.reason === Reason.NONCE_REPLAYED)).toHaveLength(15);
  });

  it("refuses an altered request (the digest covers the message)", async () => {
    const jws = await sign({ method: listPath, schema: ListPrivilegedUsersRequestSchema, message: {} });
    expect(await outcome(users().listPrivilegedUsers({ role: PrivilegedRole.AUDITOR }, withSignature(jws)))).toEqual(badSignature);
  });

  it("refuses a request signed for another method, even with byte-identical messages", async () => {
    const jws = await sign({ method: listPath, schema: ListPrivilegedUsersRequestSchema, message: {} });
    const get = create(GetPrivilegedUserRequestSchema, {});
    expect(toBinary(GetPrivilegedUserRequestSchema, get)).toEqual(toBinary(ListPrivilegedUsersRequestSchema, create(ListPrivilegedUsersRequestSchema, {})));
    expect(await outcome(users().getPrivilegedUser(get, withSignature(jws)))).toEqual(badSignature);
  });

  it("refuses expired, too long-lived, future-dated and other-user signatures", async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const claims of [
      { iat: now - 200, exp: now - 100 },
      { iat: now, exp: now + 121 },
      { iat: now + 300, exp: now + 360 },
      { sub: "pu-someone-else" },
    ]) {
      const jws = await sign({ method: listPath, schema: ListPrivilegedUsersRequestSchema, message: {}, claims });
      expect(await outcome(users().listPrivilegedUsers({}, withSignature(jws))), JSON.stringify(claims)).toEqual(badSignature);
    }
  });

  it("refuses a signature by a key not registered to the user, and a wrong typ", async () => {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const { exportJWK } = await import("jose");
    const stranger = { ...(await exportJWK(privateKey)), kid: privateJwk.kid };
    const forged = await sign({ method: listPath, schema: ListPrivilegedUsersRequestSchema, message: {}, key: stranger });
    expect(await outcome(users().listPrivilegedUsers({}, withSignature(forged)))).toEqual(badSignature);
    const wrongTyp = await sign({ method: listPath, schema: ListPrivilegedUsersRequestSchema, message: {}, header: { typ: "JWT" } });
    expect(await outcome(users().listPrivilegedUsers({}, withSignature(wrongTyp)))).toEqual(badSignature);
  });

  it("T-2.2.2.2: a security officer cannot act as an auditor (least privilege)", async () => {
    const audit = createClient(AuditService, t.adminTransport());
    expect(await outcome(audit.verifyAuditLog({}))).toEqual({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
  });

  it("refuses an SCA certificate on every admin service, signed or not", async () => {
    const session = createClient(PrivilegedSessionService, t.transport("grpc", t.pki.sca));
    expect(await outcome(session.createRequestNonce({}))).toEqual({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
  });
});
