import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorDetailSchema, Reason } from "./gen/inkan/sam/v1/error_pb.js";
import { certificateAlertOf, InkanError, mapErrors, toInkanError } from "./inkan-error.js";

// Unit tests of the SDK's error mapping: every SAM refusal becomes one typed InkanError.
describe("toInkanError", () => {
  it("takes reason, field and index from the ErrorDetail, the code and the request id from the error", () => {
    const ce = new ConnectError("too many hashes", Code.PermissionDenied, { "inkan-request-id": "req-7" }, [
      { desc: ErrorDetailSchema, value: create(ErrorDetailSchema, { reason: Reason.HASH_NOT_AUTHORIZED, field: "hashes[3]", index: 3, hasIndex: true }) },
    ]);
    const e = toInkanError(ce);
    expect(e).toBeInstanceOf(InkanError);
    expect(e).toMatchObject({ reason: Reason.HASH_NOT_AUTHORIZED, code: Code.PermissionDenied, requestId: "req-7", field: "hashes[3]", index: 3, retryable: false, detectedBySdk: false, message: "too many hashes" });
    expect(e.reasonName).toBe("HASH_NOT_AUTHORIZED");
    expect(e.codeName).toBe("PermissionDenied");
    expect(e.cause).toBe(ce);
  });

  it("is retryable exactly for UNAVAILABLE, ABORTED and DEADLINE_EXCEEDED", () => {
    for (const code of Object.values(Code).filter((c): c is Code => typeof c === "number")) {
      expect(toInkanError(new ConnectError("x", code)).retryable, Code[code]).toBe([Code.Unavailable, Code.Aborted, Code.DeadlineExceeded].includes(code));
    }
  });

  it("maps a TLS certificate alert (the SAM refused the client certificate in the handshake) to CLIENT_CERTIFICATE_REJECTED, not retryable (issue 18)", () => {
    const alert = Object.assign(new Error("ssl3_read_bytes:tlsv13 alert certificate required"), { code: "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED" });
    const fromConnect = toInkanError(new ConnectError("[internal] alert", Code.Internal, undefined, undefined, alert));
    expect(fromConnect).toMatchObject({ reason: Reason.CLIENT_CERTIFICATE_REJECTED, code: Code.Unauthenticated, retryable: false, detectedBySdk: true });
    const fromGrpcJs = toInkanError(new ConnectError("No connection established. Last error: ... tlsv13 alert certificate required", Code.Unavailable));
    expect(fromGrpcJs).toMatchObject({ reason: Reason.CLIENT_CERTIFICATE_REJECTED, retryable: false });
    expect(certificateAlertOf(new Error("alert unknown ca"))).toBe("UNKNOWN_CA");
    expect(certificateAlertOf(new ConnectError("http/2 stream closed with error code CANCEL", Code.Canceled))).toBeUndefined();
  });

  it("maps a non-Inkan failure to Reason.UNSPECIFIED and passes an InkanError through", async () => {
    const e = toInkanError(new Error("socket hang up"));
    expect(e).toMatchObject({ reason: Reason.UNSPECIFIED, code: Code.Unknown, index: undefined, field: undefined });
    expect(toInkanError(e)).toBe(e);
    await expect(mapErrors(() => Promise.reject(new ConnectError("gone", Code.Unavailable)))).rejects.toMatchObject({ code: Code.Unavailable, retryable: true });
  });
});
