/**
 * A Connect `Transport` over a `@grpc/grpc-js` channel, for applications already built on
 * grpc-js: the same generated clients and the same high-level SDK over their channel, credentials
 * and interceptors. Messages are the protobuf-es ones, serialized with toBinary/fromBinary, so no
 * second code generator is needed. Unary and server-streaming methods (all the SAP needs).
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type StreamResponse, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";

export interface GrpcJsTransportOptions {
  /** The SAM's address: "host:port" or "https://host:port". */
  address: string;
  /** Channel credentials, e.g. `grpc.credentials.createSsl(ca, key, cert)` for mTLS. */
  credentials: grpc.ChannelCredentials;
  /** grpc-js client options: `interceptors`, `channelOverride`, channel arguments. */
  clientOptions?: grpc.ClientOptions;
}

/**
 * Creates a Connect `Transport` that sends every call through one grpc-js client.
 *
 * @example
 * const transport = createGrpcJsTransport({ address: "sam.example:8443",
 *   credentials: grpc.credentials.createSsl(Buffer.from(ca), Buffer.from(key), Buffer.from(cert)) });
 * const inkan = createInkanClientFromTransport(transport);
 */
export function createGrpcJsTransport(options: GrpcJsTransportOptions): Transport & { close(): void } {
  const client = new grpc.Client(options.address.replace(/^https?:\/\//, ""), options.credentials, options.clientOptions ?? {});
  const callOptions = (timeoutMs: number | undefined): grpc.CallOptions => (timeoutMs && timeoutMs > 0 ? { deadline: new Date(Date.now() + timeoutMs) } : {});
  const pathOf = (method: DescMethod) => `/${method.parent.typeName}/${method.name}`;

  return {
    close: () => client.close(),
    unary(method, signal, timeoutMs, header, input) {
      const request = create(method.input, input);
      return new Promise<UnaryResponse<typeof method.input, typeof method.output>>((resolve, reject) => {
        if (signal?.aborted) return reject(aborted());
        let responseHeader = new Headers();
        let trailer = new Headers();
        const call = client.makeUnaryRequest(pathOf(method), serializer(method.input), deserializer(method.output), request, metadataFrom(header), callOptions(timeoutMs),
          (err, message) => {
            signal?.removeEventListener("abort", onAbort);
            if (err) return reject(signal?.aborted ? aborted() : connectErrorFrom(err));
            resolve({ stream: false, service: method.parent, method, header: responseHeader, trailer, message: message! } as UnaryResponse<typeof method.input, typeof method.output>);
          });
        const onAbort = () => call.cancel();
        signal?.addEventListener("abort", onAbort, { once: true });
        call.on("metadata", (md: grpc.Metadata) => (responseHeader = headersFrom(md)));
        call.on("status", (s: grpc.StatusObject) => (trailer = headersFrom(s.metadata)));
      });
    },
    async stream(method, signal, timeoutMs, header, input) {
      if (method.methodKind !== "server_streaming") throw new ConnectError(`${method.methodKind} is not supported over grpc-js`, Code.Unimplemented);
      let request: MessageShape<typeof method.input> | undefined;
      for await (const m of input) {
        request = create(method.input, m);
        break;
      }
      if (!request) throw new ConnectError("a server-streaming call needs one request message", Code.InvalidArgument);
      if (signal?.aborted) throw aborted();
      const call = client.makeServerStreamRequest(pathOf(method), serializer(method.input), deserializer(method.output), request, metadataFrom(header), callOptions(timeoutMs));
      const onAbort = () => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      const responseHeader = new Headers();
      const trailer = new Headers();
      call.on("metadata", (md: grpc.Metadata) => headersFrom(md).forEach((v, k) => responseHeader.set(k, v)));
      call.on("status", (s: grpc.StatusObject) => headersFrom(s.metadata).forEach((v, k) => trailer.set(k, v)));
      async function* messages() {
        try {
          for await (const m of call) yield m as MessageShape<typeof method.output>;
        } catch (err) {
          throw signal?.aborted ? aborted() : connectErrorFrom(err as grpc.ServiceError);
        } finally {
          signal?.removeEventListener("abort", onAbort);
          call.cancel(); // a consumer that stops reading ends the call (no-op once it has ended)
        }
      }
      return { stream: true, service: method.parent, method, header: responseHeader, trailer, message: messages(), contextValues: createContextValues() } as StreamResponse<typeof method.input, typeof method.output>;
    },
  };
}

const serializer = (desc: DescMessage) => (m: MessageShape<DescMessage>) => Buffer.from(toBinary(desc, m));
const deserializer = (desc: DescMessage) => (b: Buffer) => fromBinary(desc, b);

function aborted(): ConnectError {
  return new ConnectError("the operation was aborted", Code.Canceled);
}

function metadataFrom(header: ConstructorParameters<typeof Headers>[0]): grpc.Metadata {
  const md = new grpc.Metadata();
  new Headers(header).forEach((value, key) => md.set(key, key.endsWith("-bin") ? Buffer.from(value, "base64") : value));
  return md;
}

function headersFrom(md: grpc.Metadata | undefined): Headers {
  const h = new Headers();
  for (const [key, values] of Object.entries(md?.getMap() ?? {})) {
    h.set(key, typeof values === "string" ? values : Buffer.from(values).toString("base64"));
  }
  return h;
}

/** A grpc-js ServiceError as the ConnectError the Connect transports would have thrown (details included). */
function connectErrorFrom(err: grpc.ServiceError): ConnectError {
  const trailer = headersFrom(err.metadata);
  const fromDetails = findTrailerError(trailer);
  if (fromDetails) return fromDetails;
  const code = typeof err.code === "number" && err.code in Code ? (err.code as number as Code) : Code.Unknown;
  return new ConnectError(err.details ?? err.message, code, trailer, undefined, err);
}
