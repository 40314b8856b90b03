import { connect, type ClientHttp2Session } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromHttpStatus, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse } from "@connectrpc/connect/protocol-grpc-web";
import { inkanErrorReason, Reason } from "@inkan/sdk";
import type { Pem } from "../pki/dev-pki.js";

/** The wire formats a raw request can take. */
export type RawProtocol = "connect" | "connect-json" | "connect-stream" | "grpc" | "grpc-web";

/** What a raw call came back with: the status code (0 = OK), the Inkan reason and the client message. */
export interface RawOutcome {
  httpStatus: number;
  code: Code | 0;
  reason: Reason;
  message: string;
  requestId: string | undefined;
}

/**
 * Raw HTTP/2 calls with a client certificate, for bodies no well-behaved client would send
 * (mutated bytes, broken envelopes). One session serves many calls; `close()` ends it.
 */
export function rawRpcSession(url: string, tls: { ca: string } & Partial<Pem>) {
  const session: ClientHttp2Session = connect(url, { ca: tls.ca, cert: tls.cert, key: tls.key });
  session.on("error", () => undefined);
  return {
    session,
    /** POSTs `payload` as `protocol` to `path` (a gRPC/Connect-stream payload is enveloped unless `raw`). */
    call(protocol: RawProtocol, path: string, payload: Uint8Array, opts: { raw?: boolean } = {}): Promise<RawOutcome> {
      const body = opts.raw || protocol === "connect" || protocol === "connect-json" ? payload : envelope(0, payload);
      return new Promise((resolve, reject) => {
        const req = session.request({ ":method": "POST", ":path": path, ...headersFor(protocol) });
        let status = 0;
        let headers: Record<string, unknown> = {};
        let trailers: Record<string, unknown> = {};
        const chunks: Buffer[] = [];
        req.setTimeout(20_000, () => req.close());
        req.on("response", (h) => {
          status = Number(h[":status"]);
          headers = h;
        });
        req.on("trailers", (h) => (trailers = h));
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => resolve(outcomeOf(protocol, status, headers, trailers, Buffer.concat(chunks))));
        req.on("error", reject);
        req.end(body);
      });
    },
    close: () => new Promise<void>((resolve) => session.close(() => resolve())),
  };
}

function headersFor(protocol: RawProtocol): Record<string, string> {
  switch (protocol) {
    case "connect":
      return { "content-type": "application/proto", "connect-protocol-version": "1" };
    case "connect-json":
      return { "content-type": "application/json", "connect-protocol-version": "1" };
    case "connect-stream":
      return { "content-type": "application/connect+proto", "connect-protocol-version": "1" };
    case "grpc":
      return { "content-type": "application/grpc+proto", te: "trailers" };
    case "grpc-web":
      return { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
  }
}

/** A gRPC / Connect-streaming envelope: flags, big-endian length, data. */
export function envelope(flags: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + data.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.length);
  out.set(data, 5);
  return out;
}

function envelopesOf(bytes: Uint8Array): { flags: number; data: Uint8Array }[] {
  const out: { flags: number; data: Uint8Array }[] = [];
  let at = 0;
  while (at + 5 <= bytes.length) {
    const len = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
    out.push({ flags: bytes[at]!, data: bytes.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return out;
}

function toHeaders(h: Record<string, unknown>): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) if (!k.startsWith(":") && v !== undefined) out.set(k, String(v));
  return out;
}

function outcomeOf(protocol: RawProtocol, httpStatus: number, h: Record<string, unknown>, t: Record<string, unknown>, body: Buffer): RawOutcome {
  let requestId = (h["inkan-request-id"] ?? t["inkan-request-id"]) as string | undefined;
  const from = (err: ConnectError | undefined, metadata?: Headers): RawOutcome => {
    requestId ??= metadata?.get("inkan-request-id") ?? undefined;
    return err
      ? { httpStatus, code: err.code, reason: inkanErrorReason(err), message: err.rawMessage, requestId }
      : { httpStatus, code: 0, reason: Reason.UNSPECIFIED, message: "", requestId };
  };
  const fallback = new ConnectError(`HTTP ${httpStatus} without a readable error`, httpStatus === 200 ? Code.Unknown : codeFromHttpStatus(httpStatus));
  switch (protocol) {
    case "connect":
    case "connect-json":
      if (httpStatus === 200) return from(undefined);
      try {
        return from(errorFromJsonBytes(body, undefined, fallback));
      } catch {
        return from(fallback);
      }
    case "connect-stream": {
      const end = envelopesOf(body).find((e) => e.flags & 0b10);
      if (httpStatus !== 200 || !end) return from(fallback);
      const json = JSON.parse(new TextDecoder().decode(end.data)) as { error?: unknown; metadata?: Record<string, string[]> };
      const metadata = new Headers(Object.entries(json.metadata ?? {}).map(([k, v]) => [k, v.join(", ")] as [string, string]));
      return from(json.error ? errorFromJsonBytes(new TextEncoder().encode(JSON.stringify(json.error)), undefined, fallback) : undefined, metadata);
    }
    case "grpc": {
      if (httpStatus !== 200) return from(fallback);
      const all = toHeaders({ ...h, ...t });
      return from(all.has("grpc-status") ? findTrailerError(all) : fallback);
    }
    case "grpc-web": {
      if (httpStatus !== 200) return from(fallback);
      const trailer = envelopesOf(body).find((e) => e.flags & trailerFlag);
      const all = trailer ? trailerParse(trailer.data) : toHeaders(h);
      return from(all.has("grpc-status") ? findTrailerError(all) : fallback, all);
    }
  }
}
