"""A gRPC C-core client (Debian's python3-grpcio) for the interop tests (issue 18).

Written from the contract alone: the Python stubs are generated from proto/ by the test (the
inkan/, buf/validate/ and google/rpc/ files; never grpc/health or grpc/reflection, whose
package would be named like grpcio's own `grpc`). Reads one JSON request on stdin, prints one
JSON answer on stdout:
  {"mode": "handshake", ...}: GetInfo with the given certificate -> {"code", "details"}
  {"mode": "contract", ...}: GetInfo, then GetCredential of an unknown id -> the request id of
    each (initial metadata, trailers) and the error's google.rpc.Status with its ErrorDetail
"""
import json
import sys

request = json.load(sys.stdin)
sys.path.insert(0, request["stubs"])

import grpc  # noqa: E402  (grpcio, C-core)
from google.rpc import status_pb2  # noqa: E402  (proto/google/rpc/status.proto)
from inkan.sam.v1 import error_pb2, sam_pb2, sam_pb2_grpc  # noqa: E402


def credentials():
    cert = request.get("cert")
    return grpc.ssl_channel_credentials(
        root_certificates=request["ca"].encode(),
        private_key=request["key"].encode() if cert else None,
        certificate_chain=cert.encode() if cert else None,
    )


def metadata_value(metadata, key):
    for k, v in metadata or ():
        if k == key:
            return v
    return None


with grpc.secure_channel(request["target"], credentials()) as channel:
    sam = sam_pb2_grpc.SignatureActivationServiceStub(channel)
    if request["mode"] == "handshake":
        try:
            sam.GetInfo(sam_pb2.GetInfoRequest(), timeout=10)
            print(json.dumps({"code": "OK"}))
        except grpc.RpcError as e:
            print(json.dumps({"code": e.code().name, "details": e.details()}))
    else:
        info, call = sam.GetInfo.with_call(sam_pb2.GetInfoRequest(), timeout=10)
        answer = {"samId": info.sam_id, "okRequestId": metadata_value(call.initial_metadata(), "inkan-request-id")}
        try:
            sam.GetCredential(sam_pb2.GetCredentialRequest(credential_id="no-such-credential"), timeout=10)
        except grpc.RpcError as e:
            status = status_pb2.Status.FromString(metadata_value(e.trailing_metadata(), "grpc-status-details-bin"))
            details = []
            for any_detail in status.details:
                if any_detail.Is(error_pb2.ErrorDetail.DESCRIPTOR):
                    detail = error_pb2.ErrorDetail()
                    any_detail.Unpack(detail)
                    details.append({"reason": error_pb2.Reason.Name(detail.reason), "field": detail.field})
                else:
                    details.append({"type": any_detail.type_url})
            answer.update({
                "code": e.code().name,
                "statusCode": status.code,
                "message": status.message,
                "details": details,
                "errorRequestId": metadata_value(e.trailing_metadata(), "inkan-request-id"),
                "errorInitialRequestId": metadata_value(e.initial_metadata(), "inkan-request-id"),
            })
        print(json.dumps(answer))
