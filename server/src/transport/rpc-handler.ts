import type { IncomingMessage, ServerResponse } from "node:http";
import { constants as http2Constants, type Http2ServerRequest, type Http2ServerResponse, type Http2Stream } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, type ConnectRouter, type ContextValues, type Interceptor, type UnaryRequest } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { InkanError } from "../errors.js";
import type { CallAdmission } from "./call-admission.js";
import { requestReadError, toConnectError } from "./error-table.js";
import { kRequestId } from "./identity.js";
import { kCallEntered } from "./interceptors.js";
import { errorOfResponse, errorResponse, wireOf, type Wire } from "./wire-errors.js";

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

export interface RpcHandlerOptions {
  routes: (router: ConnectRouter) => void;
  readMaxBytes: number;
  /** Every interceptor, outermost first. */
  interceptors: Interceptor[];
  /**
   * The outer part of `interceptors` (the call interceptor first, the access check last): the
   * errors connect-es raises before any interceptor ran go through these, so they are mapped,
   * logged and audited on the one error path.
   */
  frameworkErrorInterceptors: Interceptor[];
  contextValues: (req: NodeRequest) => ContextValues;
  log: Logger;
  /** Issue 17.6: calls at once, in all and per client; paths in `exempt` are not counted. */
  admission?: { calls: CallAdmission; clientOf: (values: ContextValues) => string; exempt: ReadonlySet<string> };
  /** Issue 17.6: an HTTP/2 request not received whole by then has its stream reset (HTTP/1.1: Node's requestTimeout). */
  requestTimeoutMs?: number;
  /** Issue 17.6: request header lists larger than this are refused with LIMIT_EXCEEDED. */
  maxHeaderBytes?: number;
}

/**
 * The Node request handler for Connect, gRPC and gRPC-Web (connect-node's connectNodeAdapter,
 * plus one error path for framework errors, issue 17.5).
 */
export function createRpcHandler(o: RpcHandlerOptions): (req: NodeRequest, res: NodeResponse) => void {
  const router = createConnectRouter({
    readMaxBytes: o.readMaxBytes,
    interceptors: o.interceptors,
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  o.routes(router);
  const paths = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));
  return (req, res) => {
    const path = req.url?.split("?", 1)[0] ?? "";
    const handler = paths.get(path);
    const values = o.contextValues(req);
    if (!handler) {
      noSuchRpc(req, res, path, values, o);
      return;
    }
    let uReq: UniversalServerRequest;
    try {
      const u = universalRequestFromNodeRequest(req, res as never, undefined, values);
      uReq = { ...u, body: untilAborted(u.body as AsyncIterable<Uint8Array>, u.signal) };
    } catch {
      res.writeHead(400);
      res.end();
      return;
    }
    const wire = wireOf(uReq);
    if (o.maxHeaderBytes !== undefined && wire && headerListBytes(req) > o.maxHeaderBytes) {
      // HTTP/2 enforces SETTINGS_MAX_HEADER_LIST_SIZE only once the client acknowledged it; HTTP/1.1 answers 431 itself.
      refuse(handler, uReq, wire, res, new InkanError("LIMIT_EXCEEDED", "the request headers are larger than Limits.max_header_bytes"), o);
      return;
    }
    let release: (() => void) | undefined;
    if (o.admission && wire && !o.admission.exempt.has(handler.requestPath)) {
      // Admitted before the request is read: a refused call costs its answer and nothing more.
      release = o.admission.calls.admit(o.admission.clientOf(values));
      if (!release) {
        refuse(handler, uReq, wire, res, new InkanError("LIMIT_EXCEEDED", "too many calls in progress; retry when one ends"), o);
        return;
      }
    }
    if (o.requestTimeoutMs !== undefined && "stream" in req) resetIfIncomplete(req, res, o.requestTimeoutMs);
    // The slot is held until the handler is done and the stream is closed: a client that resets
    // its streams at once cannot have more work running than its slots (rapid reset), and a
    // stream's slot is held while its response is sent.
    let handled = false;
    let closed = false;
    const releaseWhenDone = () => handled && closed && release?.();
    res.once("close", () => {
      closed = true;
      releaseWhenDone();
    });
    void handleCall(handler, uReq, o)
      .finally(() => {
        handled = true;
        releaseWhenDone();
      })
      .then((uRes) => universalResponseToNodeResponse(uRes, res as never))
      .catch((reason: unknown) => {
        // The answer could not be written: the client reset its stream or went away.
        if (ConnectError.from(reason).code !== Code.Aborted) o.log.debug({ err: reason }, "response not written");
      });
  };
}

/**
 * The request body, failing as soon as the call's stream is gone (reset, connection closed): a
 * handler still reading a request that can no longer arrive ends, and gives its call slot back.
 */
async function* untilAborted(body: AsyncIterable<Uint8Array>, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const it = body[Symbol.asyncIterator]();
  const gone = new Promise<never>((_, reject) => {
    const fail = () => reject(new ConnectError("the request stream was closed", Code.Canceled));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
  gone.catch(() => undefined);
  let done = false;
  try {
    for (;;) {
      const r = await Promise.race([it.next(), gone]);
      if (r.done) {
        done = true;
        return;
      }
      yield r.value;
    }
  } finally {
    if (!done) void it.return?.()?.catch(() => undefined);
  }
}

/**
 * Issue 18 (error.proto, "Errors without a call"): a path that names no RPC is answered in the
 * caller's protocol like an RPC this SAM does not implement (UNIMPLEMENTED, REASON_NOT_IMPLEMENTED,
 * the request id), not with a bare HTTP 404; anything that is not an RPC still gets the 404.
 */
function noSuchRpc(req: NodeRequest, res: NodeResponse, path: string, values: ContextValues, o: RpcHandlerOptions): void {
  const contentType = typeof req.headers["content-type"] === "string" ? req.headers["content-type"] : null;
  const wire = wireOf({ method: req.method ?? "", header: new Headers(contentType ? { "content-type": contentType } : {}) });
  if (!wire) {
    res.writeHead(404);
    res.end();
    return;
  }
  const requestId = values.get(kRequestId);
  const err = toConnectError(new InkanError("NOT_IMPLEMENTED", "this SAM has no such RPC"), () => undefined);
  if (requestId) err.metadata.set("inkan-request-id", requestId);
  o.log.info({ requestId, path: path.slice(0, 256), code: "NOT_IMPLEMENTED" }, "no such RPC");
  req.resume(); // the request is not read: let it drain
  void universalResponseToNodeResponse(errorResponse(wire, err, contentType), res as never).catch((reason: unknown) => o.log.debug({ err: reason }, "refusal not written"));
}

/** Answers a call with `refusal` without reading its request; the outer interceptors log it. */
function refuse(handler: UniversalHandler, uReq: UniversalServerRequest, wire: Wire, res: NodeResponse, refusal: InkanError, o: RpcHandlerOptions): void {
  void throughInterceptors(handler, uReq, refusal, o.frameworkErrorInterceptors)
    .then((err) => universalResponseToNodeResponse(errorResponse(wire, err, uReq.header.get("content-type")), res as never))
    .catch((reason: unknown) => o.log.debug({ err: reason }, "refusal not written"));
}

/** The size of a header list as HTTP/2 counts it (RFC 9113 §6.5.2: name + value + 32 per field). */
function headerListBytes(req: NodeRequest): number {
  let n = 0;
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) n += req.rawHeaders[i]!.length + req.rawHeaders[i + 1]!.length + 32;
  return n;
}

/** Streams the SAM reset itself (request timeout): not the client's resets, which are rate-limited. */
export const resetByServer = new WeakSet<Http2Stream>();

/**
 * A stream whose request has not fully arrived after `ms` is reset (CANCEL): streams that never
 * send their message cannot hold a call slot or memory for longer (issue 17.6).
 */
function resetIfIncomplete(req: Http2ServerRequest, res: NodeResponse, ms: number): void {
  const timer = setTimeout(() => {
    if (req.readableEnded || req.stream.destroyed) return;
    resetByServer.add(req.stream);
    req.stream.close(http2Constants.NGHTTP2_CANCEL);
  }, ms);
  const clear = () => clearTimeout(timer);
  req.once("end", clear);
  res.once("close", clear);
}

async function handleCall(handler: UniversalHandler, uReq: UniversalServerRequest, o: RpcHandlerOptions): Promise<UniversalServerResponse> {
  const res = await handler(uReq);
  if (uReq.contextValues?.get(kCallEntered)) return res;
  const wire = wireOf(uReq);
  if (!wire) return res; // 415, 405 and the like: no call, no error message to map
  const { error, response } = await errorOfResponse(wire, res);
  if (!error) return response;
  const mapped = await throughInterceptors(handler, uReq, requestReadError(error), o.frameworkErrorInterceptors);
  return errorResponse(wire, mapped, uReq.header.get("content-type"), res.header);
}

/**
 * Runs `interceptors` around a call whose handler fails with `error`: they see it as they see any
 * failed call (the access check still comes first), and the error they let out is what is sent.
 */
async function throughInterceptors(handler: UniversalHandler, uReq: UniversalServerRequest, error: unknown, interceptors: Interceptor[]): Promise<ConnectError> {
  const { method } = handler;
  const req = {
    stream: false,
    service: handler.service,
    method,
    requestMethod: uReq.method,
    url: uReq.url,
    signal: uReq.signal,
    header: uReq.header,
    contextValues: uReq.contextValues,
    message: create(method.input),
  } as unknown as UnaryRequest;
  const call = interceptors.reduceRight((next, interceptor) => interceptor(next), (async () => {
    throw error;
  }) as Parameters<Interceptor>[0]);
  try {
    await call(req);
  } catch (err) {
    return ConnectError.from(err);
  }
  return new ConnectError("internal error", Code.Internal);
}
