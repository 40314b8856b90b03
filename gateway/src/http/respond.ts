import type { IncomingMessage, ServerResponse } from "node:http";

/** The most a JSON request body may be (a 1,000-document SadChallenge fits with room to spare). */
export const maxJsonBodyBytes = 4 * 1024 * 1024;

export class HttpError extends Error {
  constructor(readonly status: number, readonly error: string, message: string) {
    super(message);
  }
}

/** Headers on every response: no caching of signer data, no framing, no sniffing. */
export function securityHeaders(res: ServerResponse): void {
  res.setHeader("Strict-Transport-Security", "max-age=31536000");
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Referrer-Policy", "no-referrer");
  res.setHeader("Cache-Control", "no-store");
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: err.error, error_description: err.message });
}

/** Reads a JSON object body of at most `limit` bytes; 413 above it, 400 when it is not JSON. */
export async function readJson(req: IncomingMessage, limit = maxJsonBodyBytes): Promise<Record<string, unknown>> {
  const type = req.headers["content-type"] ?? "";
  if (!type.toLowerCase().startsWith("application/json")) throw new HttpError(415, "invalid_request", "the body must be application/json");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, "invalid_request", `the body is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpError(400, "invalid_request", "the body is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new HttpError(400, "invalid_request", "the body must be a JSON object");
  return value as Record<string, unknown>;
}
