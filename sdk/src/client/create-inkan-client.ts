import * as grpc from "@grpc/grpc-js";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { InkanClient, type InkanClientOptions } from "../sca/inkan-client.js";
import { createGrpcJsTransport } from "./grpc-js-transport.js";
import { withHandshakeDiagnosis } from "./handshake-refusal.js";

/** The SCA's TLS material: the CA that issued the SAM's certificate, and the SCA's client certificate and key (PEM). */
export interface InkanTls {
  ca: string | Uint8Array;
  cert: string | Uint8Array;
  key: string | Uint8Array;
}

export interface CreateInkanClientOptions extends InkanClientOptions {
  /** The SAM's URL, e.g. "https://sam.rssp.example:8443". */
  baseUrl: string;
  /** Mutual TLS: the SCA's certificate is its identity at the SAM. */
  tls: InkanTls;
  /** Wire protocol over HTTP/2; default "grpc". */
  protocol?: "grpc" | "connect" | "grpc-web";
  /** Connect interceptors (logging, tracing). */
  interceptors?: Interceptor[];
}

/**
 * A SAM client over `@connectrpc/connect-node` with mutual TLS.
 *
 * @example
 * const inkan = createInkanClient({ baseUrl: "https://sam.example:8443",
 *   tls: { ca: readFileSync("ca.pem", "utf8"), cert: readFileSync("sca.pem", "utf8"), key: readFileSync("sca-key.pem", "utf8") } });
 * const { samId } = await inkan.getInfo();
 */
export function createInkanClient(options: CreateInkanClientOptions): InkanClient {
  return new InkanClient(createInkanTransport(options), options);
}

/**
 * The Connect transport `createInkanClient` uses, for the generated clients of other services.
 *
 * @example
 * const signerService = createClient(SignerService, createInkanTransport({ baseUrl, tls }));
 */
export function createInkanTransport(options: Omit<CreateInkanClientOptions, keyof InkanClientOptions>): Transport {
  const tls = { ca: asNodeTls(options.tls.ca), cert: asNodeTls(options.tls.cert), key: asNodeTls(options.tls.key) };
  const o = { baseUrl: options.baseUrl, httpVersion: "2" as const, nodeOptions: tls, interceptors: options.interceptors ?? [] };
  // Issue 18: a client certificate refused in the TLS handshake is reported as such, not as a retryable transport failure.
  const diagnosed = (t: Transport) => withHandshakeDiagnosis(t, { url: options.baseUrl, tls: options.tls });
  switch (options.protocol ?? "grpc") {
    case "connect":
      return diagnosed(createConnectTransport(o));
    case "grpc":
      return diagnosed(createGrpcTransport(o));
    case "grpc-web":
      return diagnosed(createGrpcWebTransport(o));
  }
}

export interface CreateInkanGrpcJsClientOptions extends InkanClientOptions {
  /** The SAM's address: "host:port" or "https://host:port". */
  address: string;
  /** Mutual TLS material; or pass `credentials` built by the application. */
  tls?: InkanTls;
  /** grpc-js channel credentials (instead of `tls`). */
  credentials?: grpc.ChannelCredentials;
  /** grpc-js client options: `interceptors`, `channelOverride`, channel arguments. */
  clientOptions?: grpc.ClientOptions;
}

/**
 * The same high-level client over `@grpc/grpc-js`, for applications built on it: their channel
 * options and grpc-js interceptors apply to every SAM call.
 *
 * @example
 * const inkan = createInkanGrpcJsClient({ address: "sam.example:8443", tls: { ca, cert, key } });
 * const tx = await inkan.beginTransaction({ signerId, credentialId, hashes, description: "Batch 7" });
 */
export function createInkanGrpcJsClient(options: CreateInkanGrpcJsClientOptions): InkanClient {
  const credentials = options.credentials ?? (options.tls
    ? grpc.credentials.createSsl(Buffer.from(options.tls.ca), options.tls.key.length ? Buffer.from(options.tls.key) : null, options.tls.cert.length ? Buffer.from(options.tls.cert) : null)
    : undefined);
  if (!credentials) throw new TypeError("pass tls or credentials: the SAM accepts only mutual TLS");
  const grpcJs = createGrpcJsTransport({
    address: options.address,
    credentials,
    ...(options.clientOptions ? { clientOptions: options.clientOptions } : {}),
  });
  // Issue 18: with tls the SDK can tell a refused client certificate from a network failure.
  const transport = options.tls ? withHandshakeDiagnosis(grpcJs, { url: options.address, tls: options.tls }) : grpcJs;
  return new InkanClient(transport, options, () => transport.close());
}

/**
 * The high-level client over any Connect transport (e.g. `createGrpcJsTransport`, or a
 * transport with custom interceptors).
 *
 * @example
 * const inkan = createInkanClientFromTransport(createGrpcTransport({ baseUrl, httpVersion: "2", nodeOptions: { ca, cert, key } }));
 */
export function createInkanClientFromTransport(transport: Transport, options: InkanClientOptions = {}): InkanClient {
  return new InkanClient(transport, options);
}

function asNodeTls(v: string | Uint8Array): string | Buffer {
  return typeof v === "string" ? v : Buffer.from(v);
}
