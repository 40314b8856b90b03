import type { ConnectError, Interceptor, StreamResponse } from "@connectrpc/connect";
import type { Logger } from "pino";
import { InkanError } from "../errors.js";
import { callerKindsFor } from "./access.js";
import { errorContractRecorder } from "./error-contract.js";
import { toConnectError } from "./error-table.js";
import { kCaller, kRequestId } from "./identity.js";

/**
 * Outermost: logs every call once (method, caller, code, duration; never a message body, so no
 * secret), returns the request id, and turns every error into the client-safe form with a typed
 * reason (transport/error-table.ts). Streaming responses are wrapped so that errors raised while
 * streaming are mapped too.
 */
export function createCallInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const requestId = req.contextValues.get(kRequestId);
    const caller = req.contextValues.get(kCaller);
    const callLog = log.child({ requestId, method: `${req.service.typeName}/${req.method.name}`, caller: caller?.commonName });
    const report = (err: unknown) => callLog.error({ err }, "call failed");
    const done = (code: string) => callLog.info({ code, ms: Math.round(performance.now() - started) }, "call");
    try {
      const res = await next(req);
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
