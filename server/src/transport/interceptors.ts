import { createContextKey, type ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import type { Logger } from "pino";
import { InkanError } from "../errors.js";
import { callerKindsFor } from "./access.js";
import { errorContractRecorder } from "./error-contract.js";
import { requestReadError, toConnectError } from "./error-table.js";
import { kCaller, kRequestId } from "./identity.js";

/**
 * Set when a call reached the interceptors. A call that ends without it failed inside connect-es
 * before any interceptor ran (a unary request it could not read); rpc-handler.ts then sends that
 * error through the outer interceptors, so it is mapped, logged and audited like any other.
 */
export const kCallEntered = createContextKey(false, { description: "call entered the interceptors" });

/**
 * Outermost: logs every call once (method, caller, code, duration; never a message body, so no
 * secret), returns the request id, and turns every error into the client-safe form with a typed
 * reason (transport/error-table.ts). Streaming responses are wrapped so that errors raised while
 * streaming are mapped too.
 */
export function createCallInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    req.contextValues.set(kCallEntered, true);
    const started = performance.now();
    const requestId = req.contextValues.get(kRequestId);
    const caller = req.contextValues.get(kCaller);
    const callLog = log.child({ requestId, method: `${req.service.typeName}/${req.method.name}`, caller: caller?.commonName });
    const report = (err: unknown) => callLog.error({ err }, "call failed");
    const done = (code: string) => callLog.info({ code, ms: Math.round(performance.now() - started) }, "call");
    try {
      // A streaming call's request messages are read lazily, under the interceptors: failures to
      // read them are told apart from the handler's own errors here (issue 17.5).
      const res = await next(req.stream ? { ...req, message: readRequestMessages(req.message, req.method.methodKind === "server_streaming") } : req);
      res.header.set("inkan-request-id", requestId);
      if (!res.stream) {
        done("ok");
        return res;
      }
      return { ...res, message: mapStreamErrors(res, requestId, report, done, (e) => errorContractRecorder?.(req.method, e)) } satisfies StreamResponse;
    } catch (err) {
      const mapped = toConnectError(err, report);
      errorContractRecorder?.(req.method, mapped); // tests only: is this reason declared for the RPC (issue 18)
      mapped.metadata.set("inkan-request-id", requestId);
      done(String(mapped.code));
      throw mapped;
    }
  };
}

async function* mapStreamErrors(
  res: StreamResponse,
  requestId: string,
  report: (err: unknown) => void,
  done: (code: string) => void,
  record: (err: ConnectError) => void,
) {
  try {
    yield* res.message;
    done("ok");
  } catch (err) {
    const mapped = toConnectError(err, report);
    record(mapped);
    mapped.metadata.set("inkan-request-id", requestId);
    done(String(mapped.code));
    throw mapped;
  }
}

/**
 * The request messages of a streaming call, with every failure to read one turned into the
 * client's error (requestReadError); `single`: exactly one message is expected (server streaming).
 */
async function* readRequestMessages<T>(input: AsyncIterable<T>, single: boolean): AsyncGenerator<T> {
  const it = input[Symbol.asyncIterator]();
  let count = 0;
  let ended = false;
  try {
    for (;;) {
      let r: IteratorResult<T>;
      try {
        r = await it.next();
      } catch (err) {
        ended = true;
        throw requestReadError(err);
      }
      if (r.done) break;
      if (single && ++count > 1) throw new InkanError("INVALID_REQUEST", "one request message expected, got more");
      yield r.value;
    }
    ended = true;
    if (single && count === 0) throw new InkanError("INVALID_REQUEST", "the request message is missing");
  } finally {
    if (!ended) await it.return?.();
  }
}

/**
 * Refuses a caller whose certificate matched no configured CA, or whose kind may not call the
 * service, before any handler logic or request validation runs (R-3.1.2.1, R-3.2.2.1).
 */
export function createAccessInterceptor(): Interceptor {
  return (next) => async (req) => {
    const caller = req.contextValues.get(kCaller);
    if (!caller) throw new InkanError("CLIENT_CERTIFICATE_REJECTED", "client certificate not accepted");
    if (!callerKindsFor(req.service).includes(caller.kind)) {
      throw new InkanError("ROLE_NOT_PERMITTED", "this caller may not call this service");
    }
    return next(req);
  };
}
