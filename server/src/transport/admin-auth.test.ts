import { clone, create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import { CertificateBindingSchema, CreatePrivilegedUserRequestSchema, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindingOf, newRequestSigningKey, startTestServer, type TestServer } from "../testing/harness.js";
import { unknownFieldPath } from "./admin-auth.js";

// Issue 18 item 4 (auth.proto): a field the SAM's schema does not have is not covered by what the
// SAM checks, so an admin request holding one is refused before its signature is checked, even
// when the signature covers it (R-3.2.2.1, T-2.2.2.1).
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

/** `message` with an extra field number 1000 (varint 1) that no Inkan schema has. */
function withUnknownField<D extends DescMessage>(schema: D, message: MessageShape<D>): MessageShape<D> {
  const m = clone(schema, message);
  m.$unknown = [{ no: 1000, wireType: WireType.Varint, data: Uint8Array.of(1) }];
  return m;
}

describe("admin requests with unknown fields (issue 18, R-3.2.2.1)", () => {
  it("T-2.2.2.1: refuses a correctly signed request that carries an unknown field, and nothing changes", async () => {
    const so = createClient(PrivilegedUserService, t.adminTransport());
    const before = (await so.listPrivilegedUsers({})).users.length;
    const request = create(CreatePrivilegedUserRequestSchema, {
      displayName: "smuggled", role: PrivilegedRole.AUDITOR, certificateBinding: bindingOf(t.pki.unboundAdmin),
      publicKeyJwk: (await newRequestSigningKey()).publicJwk,
    });
    // The SDK's signer signs the bytes it sends, unknown field included: the signature is valid.
    const err = await so.createPrivilegedUser(withUnknownField(CreatePrivilegedUserRequestSchema, request)).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(inkanErrorReason(err)).toBe(Reason.INVALID_REQUEST);
    expect((await so.listPrivilegedUsers({})).users).toHaveLength(before);
    // The same request without the field goes through: the field alone was refused.
    await so.createPrivilegedUser(request);
    expect((await so.listPrivilegedUsers({})).users).toHaveLength(before + 1);
  });

  it("finds an unknown field at any depth", () => {
    const request = create(CreatePrivilegedUserRequestSchema, { displayName: "x" });
    expect(unknownFieldPath(CreatePrivilegedUserRequestSchema, request)).toBeUndefined();
    expect(unknownFieldPath(CreatePrivilegedUserRequestSchema, withUnknownField(CreatePrivilegedUserRequestSchema, request))).toBe("(the request)");
    const nested = create(CreatePrivilegedUserRequestSchema, { displayName: "x", certificateBinding: withUnknownField(CertificateBindingSchema, create(CertificateBindingSchema)) });
    expect(unknownFieldPath(CreatePrivilegedUserRequestSchema, nested)).toBe("certificate_binding");
  });
});
