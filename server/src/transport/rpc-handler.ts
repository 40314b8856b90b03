import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, type ConnectRouter, type ContextValues, type Interceptor, type UnaryRequest } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { requestReadError } from "./error-table.js";
import { kCallEntered } from "./interceptors.js";
import { errorOfResponse, errorResponse, wireOf } from "./wire-errors.js";

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
    const handler = paths.get(req.url?.split("?", 1)[0] ?? "");
    if (!handler) {
      res.writeHead(404);
      res.end();
      return;
    }
    let uReq: UniversalServerRequest;
    try {
      uReq = universalRequestFromNodeRequest(req, res as never, undefined, o.contextValues(req));
    } catch {
      res.writeHead(400);
      res.end();
      return;
    }
    void handleCall(handler, uReq, o)
      .then((uRes) => universalResponseToNodeResponse(uRes, res as never))
      .catch((reason: unknown) => {
        // The answer could not be written: the client reset its stream or went away.
        if (ConnectError.from(reason).code !== Code.Aborted) o.log.debug({ err: reason }, "response not written");
      });
  };
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
