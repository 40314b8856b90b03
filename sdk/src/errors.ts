import { ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, Reason, type ErrorDetail } from "./gen/inkan/sam/v1/error_pb.js";

/**
 * The typed Inkan error detail of an error, if the SAM sent one.
 *
 * @example
 * const detail = inkanErrorDetail(err); // { reason, field, index, hasIndex }
 */
export function inkanErrorDetail(err: unknown): ErrorDetail | undefined {
  return ConnectError.from(err).findDetails(ErrorDetailSchema)[0];
}

/**
 * The stable reason of an error from an Inkan SAM (`Reason.SAD_REPLAYED`, …), or
 * `Reason.UNSPECIFIED` when there is none (a transport failure, or a non-Inkan server).
 *
 * @example
 * try { await sam.signHash(req); } catch (err) {
 *   if (inkanErrorReason(err) === Reason.SAD_REPLAYED) startOver();
 * }
 */
export function inkanErrorReason(err: unknown): Reason {
  return inkanErrorDetail(err)?.reason ?? Reason.UNSPECIFIED;
}
