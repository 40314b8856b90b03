import { ConnectError, Code } from "@connectrpc/connect";
import { createAsyncIterable, encodeEnvelope, readAllBytes, type UniversalServerRequest, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, endStreamFlag, endStreamToJson, errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";

/**
 * The wire form of a call, from its request: how its errors are written. Connect unary answers an
 * error with an HTTP status and a JSON body; Connect streaming with an end-stream message; gRPC
 * with trailers; gRPC-Web with a trailer message in the body.
 */
export type Wire = "connect" | "connect-stream" | "grpc" | "grpc-web";

export function wireOf(req: Pick<UniversalServerRequest, "method" | "header">): Wire | undefined {
  if (req.method === "GET") return "connect";
  const type = (req.header.get("content-type") ?? "").toLowerCase();
  if (/^application\/grpc-web(\+(proto|json).*)?$/.test(type)) return "grpc-web";
  if (/^application\/grpc(\+(proto|json).*)?$/.test(type)) return "grpc";
  if (/^application\/connect\+(proto|json)/.test(type)) return "connect-stream";
  if (/^application\/(proto|json)/.test(type)) return "connect";
  return undefined;
}

/** Framework errors are a few hundred bytes; anything longer is not one of them. */
const maxErrorBytes = 64 * 1024;

/**
 * Reads the error out of a response connect-es wrote, if it is an error response. The body, when
 * it had to be read, is handed back in `response` unchanged.
 */
export async function errorOfResponse(wire: Wire, res: UniversalServerResponse): Promise<{ error: ConnectError | undefined; response: UniversalServerResponse }> {
  switch (wire) {
    case "connect": {
      if (res.status === 200 || !(res.header?.get("content-type") ?? "").startsWith("application/json") || !res.body) return { error: undefined, response: res };
      const fallback = new ConnectError("unreadable framework error", Code.Unknown);
      try {
        return { error: errorFromJsonBytes(await readBody(res), undefined, fallback), response: res };
      } catch {
        return { error: fallback, response: res };
      }
    }
    case "grpc": {
      const status = res.trailer?.get("grpc-status") ?? res.header?.get("grpc-status");
      return { error: status && status !== "0" ? findTrailerError(res.trailer ?? res.header ?? new Headers()) : undefined, response: res };
    }
    case "grpc-web": {
      if (!res.body) return { error: undefined, response: res };
      const bytes = await readBody(res);
      const trailer = lastTrailer(bytes);
      const error = trailer ? findTrailerError(trailer) : undefined;
      return { error, response: { ...res, body: createAsyncIterable([bytes]) } };
    }
    case "connect-stream":
      return { error: undefined, response: res }; // streaming calls always reach the interceptors
  }
}

/** The response that carries `error` in `wire`'s form. `header`: headers to keep (e.g. the framework's). */
export function errorResponse(wire: Wire, error: ConnectError, requestContentType: string | null, header?: Headers): UniversalServerResponse {
  const h = new Headers(header);
  h.delete("content-length");
  h.delete("content-encoding");
  switch (wire) {
    case "connect": {
      const body = errorToJsonBytes(error, {});
      h.set("content-type", "application/json");
      error.metadata.forEach((v, k) => h.set(k, v));
      h.set("content-length", String(body.byteLength));
      return { status: codeToHttpStatus(error.code), header: h, body: createAsyncIterable([body]) };
    }
    case "connect-stream": {
      h.set("content-type", requestContentType ?? "application/connect+proto");
      const json = new TextEncoder().encode(JSON.stringify(endStreamToJson(error.metadata, error, {})));
      return { status: 200, header: h, body: createAsyncIterable([encodeEnvelope(endStreamFlag, json)]) };
    }
    case "grpc":
      h.set("content-type", requestContentType ?? "application/grpc+proto");
      return { status: 200, header: h, body: createAsyncIterable([]), trailer: setTrailerStatus(new Headers(), error) };
    case "grpc-web": {
      h.set("content-type", requestContentType ?? "application/grpc-web+proto");
      const trailer = trailerSerialize(setTrailerStatus(new Headers(), error));
      return { status: 200, header: h, body: createAsyncIterable([encodeEnvelope(trailerFlag, trailer)]) };
    }
  }
}

async function readBody(res: UniversalServerResponse): Promise<Uint8Array> {
  if (!res.body) return new Uint8Array(0);
  return readAllBytes(res.body, maxErrorBytes);
}

/** The trailers of a gRPC-Web body: its envelope flagged as trailer (RFC-less: gRPC-Web spec). */
function lastTrailer(bytes: Uint8Array): Headers | undefined {
  let at = 0;
  let found: Headers | undefined;
  while (at + 5 <= bytes.length) {
    const len = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
    if (bytes[at]! & trailerFlag) found = trailerParse(bytes.subarray(at + 5, at + 5 + len));
    at += 5 + len;
  }
  return found;
}
