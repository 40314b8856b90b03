import { Code, ConnectError } from "@connectrpc/connect";
import { InkanError, inkanErrorReason, Reason } from "@inkan/sdk";
import { HttpError } from "./respond.js";

const statusOf: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.Unauthenticated]: 403,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.FailedPrecondition]: 409,
  [Code.ResourceExhausted]: 429,
};

/** The SAM's refusal as the gateway's HTTP error: the reason name and the SAM's message (which reveals nothing by design). */
export function samError(err: unknown): HttpError {
  if (err instanceof InkanError) return new HttpError(statusOf[err.code] ?? 502, `REASON_${Reason[err.reason] ?? "UNSPECIFIED"}`, err.message);
  if (err instanceof ConnectError) return new HttpError(statusOf[err.code] ?? 502, `REASON_${Reason[inkanErrorReason(err)] ?? "UNSPECIFIED"}`, err.rawMessage);
  return new HttpError(502, "sam_unavailable", "the SAM could not be reached");
}

/** Calls the SAM; its refusal becomes the HTTP error. */
export async function atSam<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw samError(err);
  }
}
