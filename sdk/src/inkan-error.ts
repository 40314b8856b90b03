import { Code, ConnectError } from "@connectrpc/connect";
import { Reason } from "./gen/inkan/sam/v1/error_pb.js";
import { inkanErrorDetail } from "./errors.js";

/** Response headers that may carry the id under which the SAM logged a request. */
const requestIdHeaders = ["inkan-request-id", "x-request-id"];

/**
 * Codes after which the same step may succeed later unchanged: the SAM or the network failed
 * closed (UNAVAILABLE: crypto module, store or audit failure), a compare-and-set lost a race
 * (ABORTED), or the deadline passed. Everything else needs a change by the caller or the signer.
 */
const retryableCodes = new Set<Code>([Code.Unavailable, Code.Aborted, Code.DeadlineExceeded]);

/** Errors the SDK made itself from what it detected (e.g. a refused TLS handshake). */
const detectedBySdk = new WeakSet<object>();

/** Marks `err` as detected by the SDK: its InkanError has detectedBySdk true. */
export function markDetectedBySdk(err: object): void {
  detectedBySdk.add(err);
}

/**
 * TLS alerts about the client's certificate (OpenSSL's error codes and texts): the SAM refused it
 * in the handshake (error.proto, "Refused handshakes").
 */
const certificateAlertCode = /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNSUPPORTED_CERTIFICATE|CERTIFICATE_REVOKED|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|UNKNOWN_CA)\b/;
const certificateAlertText = /alert (certificate required|bad certificate|unsupported certificate|certificate revoked|certificate expired|certificate unknown|unknown ca)\b/i;

/**
 * The certificate alert (e.g. "CERTIFICATE_REQUIRED") anywhere in `err`, its causes or their
 * messages, or undefined.
 *
 * @example
 * if (certificateAlertOf(err)) console.error("the SAM refused our client certificate");
 */
export function certificateAlertOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, message, details } = e as { code?: unknown; message?: unknown; details?: unknown };
    const byCode = typeof code === "string" ? code.match(certificateAlertCode) : null;
    if (byCode) return byCode[1];
    for (const text of [message, details]) {
      const byText = typeof text === "string" ? text.match(certificateAlertText) : null;
      if (byText) return byText[1]!.toUpperCase().replaceAll(" ", "_");
    }
  }
  return undefined;
}

/**
 * The one error type every call of the SDK's high-level API throws: the SAM's stable reason
 * (`Reason.SAD_REPLAYED`, …; `Reason.UNSPECIFIED` for a transport failure or a non-Inkan server),
 * the gRPC code, whether retrying the same step later can help, and the SAM's request id when it
 * sent one. The message is the SAM's short client message; it never holds a PIN, SAD, token or key.
 *
 * @example
 * try { await tx.signAll(); } catch (err) {
 *   if (err instanceof InkanError && err.reason === Reason.EXPIRED) startOver();
 *   else if (err instanceof InkanError && err.retryable) retryLater();
 * }
 */
export class InkanError extends Error {
  override readonly name = "InkanError";
  /** The stable reason; see the SDK README for what to do about each. */
  readonly reason: Reason;
  /** The gRPC status code (Connect's `Code`, same numbers). */
  readonly code: Code;
  /** True when the same step may succeed later unchanged (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED). */
  readonly retryable: boolean;
  /** The SAM's id for the request (to quote to its operator), when the response carried one. */
  readonly requestId: string | undefined;
  /** The input field the reason applies to (ErrorDetail.field), e.g. "hashes[3]". */
  readonly field: string | undefined;
  /** For batch operations: the zero-based index of the first item that failed. */
  readonly index: number | undefined;
  /** True when the SDK itself detected the problem (e.g. a signature that does not verify). */
  readonly detectedBySdk: boolean;

  constructor(init: { message: string; reason: Reason; code: Code; requestId?: string | undefined; field?: string | undefined; index?: number | undefined; detectedBySdk?: boolean; cause?: unknown }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.reason = init.reason;
    this.code = init.code;
    this.retryable = retryableCodes.has(init.code);
    this.requestId = init.requestId;
    this.field = init.field || undefined;
    this.index = init.index;
    this.detectedBySdk = init.detectedBySdk ?? false;
  }

  /** The reason's name, e.g. "SAD_REPLAYED" ("UNSPECIFIED" when there is none). */
  get reasonName(): string {
    return Reason[this.reason] ?? `REASON_${this.reason}`;
  }

  /** The code's name, e.g. "PermissionDenied". */
  get codeName(): string {
    return Code[this.code] ?? String(this.code);
  }
}

/**
 * Maps any error of a call (a ConnectError from the SAM, an abort, a network failure) to an
 * {@link InkanError}; an InkanError passes through unchanged.
 *
 * @example
 * try { await client.getInfo({}); } catch (err) { throw toInkanError(err); }
 */
export function toInkanError(err: unknown): InkanError {
  if (err instanceof InkanError) return err;
  const ce = ConnectError.from(err);
  const detail = inkanErrorDetail(ce);
  let requestId: string | undefined;
  for (const h of requestIdHeaders) requestId ??= ce.metadata.get(h) ?? undefined;
  // A certificate alert in the handshake: no status was sent, and retrying cannot help.
  const alert = detail ? undefined : certificateAlertOf(err);
  if (alert) {
    return new InkanError({
      message: `the SAM refused the client certificate in the TLS handshake (TLS alert ${alert.toLowerCase()})`,
      reason: Reason.CLIENT_CERTIFICATE_REJECTED,
      code: Code.Unauthenticated,
      detectedBySdk: true,
      cause: err,
    });
  }
  return new InkanError({
    message: ce.rawMessage || Code[ce.code] || "request failed",
    reason: detail?.reason ?? Reason.UNSPECIFIED,
    code: ce.code,
    requestId,
    field: detail?.field,
    index: detail?.hasIndex ? detail.index : undefined,
    detectedBySdk: detectedBySdk.has(ce) || detectedBySdk.has(err as object),
    cause: err,
  });
}

/** Runs `call` and rethrows whatever it throws as an {@link InkanError}. */
export async function mapErrors<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw toInkanError(err);
  }
}
