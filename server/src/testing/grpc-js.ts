import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type MessageShape } from "@bufbuild/protobuf";

/**
 * A plain @grpc/grpc-js client for `service`, built from the protobuf-es descriptors (no second
 * code generator): the independent gRPC stack that interop tests call the server with.
 */
export function grpcJsClient(service: DescService, address: string, tls: { ca: string; cert?: string; key?: string }) {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    definition[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      requestSerialize: serializer(m.input),
      requestDeserialize: deserializer(m.input),
      responseSerialize: serializer(m.output),
      responseDeserialize: deserializer(m.output),
    };
  }
  const Client = grpc.makeGenericClientConstructor(definition, service.name);
  const credentials = grpc.credentials.createSsl(
    Buffer.from(tls.ca),
    tls.key ? Buffer.from(tls.key) : null,
    tls.cert ? Buffer.from(tls.cert) : null,
  );
  return new Client(address.replace(/^https:\/\//, ""), credentials) as grpc.Client & Record<string, Function>;
}

function serializer(desc: DescMessage) {
  return (m: unknown) => Buffer.from(toBinary(desc, m as MessageShape<DescMessage>));
}
function deserializer(desc: DescMessage): (b: Buffer) => unknown {
  return (b) => fromBinary(desc, b);
}

/** Calls a unary method of a grpcJsClient and resolves with the response or the ServiceError. */
export function unary<O>(client: grpc.Client & Record<string, Function>, method: DescMethod, request: unknown): Promise<O> {
  return new Promise((resolve, reject) => {
    client[method.localName]!(request, (err: grpc.ServiceError | null, res: O) => (err ? reject(err) : resolve(res)));
  });
}
