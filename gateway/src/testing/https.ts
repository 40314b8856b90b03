import { request } from "node:https";

export interface HttpsResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTPS request to the gateway, trusting `ca`; with `cert`/`key` as a client certificate. */
export function httpsRequest(
  url: string,
  options: { ca: string; cert?: string; key?: string; method?: string; json?: unknown; headers?: Record<string, string> },
): Promise<HttpsResponse> {
  const body = options.json === undefined ? undefined : JSON.stringify(options.json);
  return new Promise((done, fail) => {
    const req = request(
      url,
      {
        method: options.method ?? (body ? "POST" : "GET"),
        ca: options.ca,
        ...(options.cert ? { cert: options.cert, key: options.key } : {}),
        // Node would take the TLS server name (and the name the certificate is checked against) from
        // a Host header: no SNI instead, so the certificate is still checked against the URL's host.
        ...(Object.keys(options.headers ?? {}).some((h) => h.toLowerCase() === "host") ? { servername: "" } : {}),
        headers: { ...(body ? { "content-type": "application/json" } : {}), ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", fail);
      },
    );
    req.on("error", fail);
    req.end(body);
  });
}
