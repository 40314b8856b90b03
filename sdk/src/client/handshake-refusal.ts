/**
 * Recognizes a SAM that refused the client certificate in the TLS handshake (error.proto,
 * "Refused handshakes"). The SAM sends no status then: the client stack reports a transport
 * failure (UNAVAILABLE, CANCELED or INTERNAL) that looks retryable and is not. After such a
 * failure the SDK opens one TLS connection with the same certificate and sends the HTTP/2
 * preface: a certificate alert, or a close before the server's first HTTP/2 frame, is a refusal.
 */
import { isIP } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { X509Certificate } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { ErrorDetailSchema, Reason } from "../gen/inkan/sam/v1/error_pb.js";
import { inkanErrorDetail } from "../errors.js";
import { certificateAlertOf, markDetectedBySdk } from "../inkan-error.js";

export interface HandshakeTarget {
  /** The SAM's URL ("https://host:port") or address ("host:port"). */
  url: string;
  tls: { ca: string | Uint8Array; cert?: string | Uint8Array | undefined; key?: string | Uint8Array | undefined };
  /** How long the probe waits for the SAM's first word; default 5,000 ms. */
  timeoutMs?: number;
}

/** The HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113 3.4, 6.5). */
const preface = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/**
 * Why the SAM at `target` refuses this client certificate, or undefined when it accepts it (or
 * cannot be reached, or does not answer in time: then the failure was something else).
 *
 * @example
 * const why = await probeClientCertificate({ url: "https://sam.example:8443", tls: { ca, cert, key } });
 * if (why) console.error(why); // "the SAM refused the client certificate in the TLS handshake: ..."
 */
export function probeClientCertificate(target: HandshakeTarget): Promise<string | undefined> {
  const u = new URL(/^[a-z]+:\/\//i.test(target.url) ? target.url : `https://${target.url}`);
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const tls = { ca: nodeTls(target.tls.ca), cert: nodeTls(target.tls.cert), key: nodeTls(target.tls.key) };
  return new Promise((resolve) => {
    let handshaken = false;
    let settled = false;
    const socket = tlsConnect({ host, port: Number(u.port || 443), ...(isIP(host) ? {} : { servername: host }), ...tls, ALPNProtocols: ["h2"] });
    const done = (why: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(undefined), target.timeoutMs ?? 5_000);
    socket.once("secureConnect", () => {
      handshaken = true;
      socket.write(preface);
    });
    socket.on("data", () => done(undefined)); // the SAM spoke HTTP/2: the certificate was accepted
    socket.on("error", (err) => {
      const alert = certificateAlertOf(err);
      done(alert ? refusalMessage(alert, target.tls.cert) : handshaken ? refusalMessage(undefined, target.tls.cert) : undefined);
    });
    socket.on("close", () => done(handshaken ? refusalMessage(undefined, target.tls.cert) : undefined));
  });
}

/** The client message for a refusal, saying what the SDK can tell about the certificate. */
export function refusalMessage(alert: string | undefined, cert: string | Uint8Array | undefined): string {
  const head = "the SAM refused the client certificate in the TLS handshake";
  if (!cert || cert.length === 0 || alert === "CERTIFICATE_REQUIRED") return `${head}: no client certificate was sent`;
  try {
    const c = new X509Certificate(nodeTls(cert)!);
    if (new Date(c.validTo) < new Date()) return `${head}: it expired on ${new Date(c.validTo).toISOString()}`;
    if (new Date(c.validFrom) > new Date()) return `${head}: it is not valid before ${new Date(c.validFrom).toISOString()}`;
  } catch {
    // not PEM the SDK can read: say what the SAM said
  }
  return `${head}: not issued by a CA the SAM trusts for this role, or otherwise not accepted${alert ? ` (TLS alert ${alert.toLowerCase()})` : ""}`;
}

/** The error a refused handshake is reported as: UNAUTHENTICATED with REASON_CLIENT_CERTIFICATE_REJECTED. */
export function certificateRejected(message: string, cause: unknown): ConnectError {
  const err = new ConnectError(message, Code.Unauthenticated, undefined, [{ desc: ErrorDetailSchema, value: create(ErrorDetailSchema, { reason: Reason.CLIENT_CERTIFICATE_REJECTED }) }], cause);
  markDetectedBySdk(err);
  return err;
}

const transportFailures = new Set<Code>([Code.Unavailable, Code.Canceled, Code.Internal, Code.Unknown]);

/**
 * The error to report for `err`: a refused handshake becomes {@link certificateRejected};
 * anything else (an answer of the SAM, the caller's own abort, a network failure) is unchanged.
 */
export async function diagnoseHandshake(err: unknown, target: HandshakeTarget, signal?: AbortSignal): Promise<unknown> {
  if (signal?.aborted) return err;
  const ce = ConnectError.from(err);
  // An answer of the SAM (it carries its detail or request id) is no handshake refusal.
  if (!transportFailures.has(ce.code) || inkanErrorDetail(ce) || ce.metadata.has("inkan-request-id")) return err;
  const alert = certificateAlertOf(err);
  const why = alert ? refusalMessage(alert, target.tls.cert) : await probeClientCertificate(target);
  return why ? certificateRejected(why, err) : err;
}

/**
 * `transport` whose calls report a refused client certificate as UNAUTHENTICATED
 * REASON_CLIENT_CERTIFICATE_REJECTED (not retryable) instead of a transport failure.
 *
 * @example
 * const transport = withHandshakeDiagnosis(createGrpcTransport({ baseUrl, httpVersion: "2", nodeOptions: { ca, cert, key } }), { url: baseUrl, tls: { ca, cert, key } });
 */
export function withHandshakeDiagnosis<T extends Transport>(transport: T, target: HandshakeTarget): T {
  return {
    ...transport,
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      try {
        return await transport.unary(method, signal, timeoutMs, header, input, contextValues);
      } catch (err) {
        throw await diagnoseHandshake(err, target, signal);
      }
    },
    async stream(method, signal, timeoutMs, header, input, contextValues) {
      let res: Awaited<ReturnType<T["stream"]>>;
      try {
        res = (await transport.stream(method, signal, timeoutMs, header, input, contextValues)) as typeof res;
      } catch (err) {
        throw await diagnoseHandshake(err, target, signal);
      }
      return { ...res, message: diagnosed(res.message, target, signal) } as typeof res;
    },
  };
}

async function* diagnosed<M>(messages: AsyncIterable<M>, target: HandshakeTarget, signal: AbortSignal | undefined): AsyncGenerator<M> {
  try {
    yield* messages;
  } catch (err) {
    throw await diagnoseHandshake(err, target, signal);
  }
}

function nodeTls(v: string | Uint8Array | undefined): string | Buffer | undefined {
  return v === undefined || typeof v === "string" ? v : Buffer.from(v);
}
