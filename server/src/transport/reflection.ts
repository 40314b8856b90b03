import { createRegistry, toBinary, type DescFile, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "@inkan/sdk/gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "@inkan/sdk/gen/grpc/reflection/v1alpha/reflection_pb.js";

type Request = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
type SchemaIndex = Registry & { getFile(name: string): DescFile | undefined };

/**
 * gRPC server reflection (v1, and v1alpha for older grpcurl), so `grpcurl` and `buf curl` users can
 * list the services and fetch their schemas. Answers from the generated descriptors: the same
 * contract the SDK was generated from.
 */
export function registerReflection(router: ConnectRouter, files: DescFile[], serviceNames: string[]): void {
  const byName = new Map<string, DescFile>();
  const collect = (f: DescFile) => {
    if (byName.has(f.name)) return;
    byName.set(f.name, f);
    f.dependencies.forEach(collect);
  };
  files.forEach(collect);
  const registry = { ...createRegistry(...byName.values()), getFile: (name: string) => byName.get(name) };
  const impl = {
    async *serverReflectionInfo(requests: AsyncIterable<Request>) {
      const sent = new Set<string>();
      for await (const req of requests) yield answer(req, registry, serviceNames, sent);
    },
  };
  router.service(v1.ServerReflection, impl as never);
  router.service(v1alpha.ServerReflection, impl as never);
}

function answer(req: Request, registry: SchemaIndex, serviceNames: string[], sent: Set<string>) {
  const base = { validHost: req.host, originalRequest: req };
  const r = req.messageRequest;
  const files = (file: DescFile | undefined) =>
    file
      ? { ...base, messageResponse: { case: "fileDescriptorResponse" as const, value: { fileDescriptorProto: withDependencies(file, sent) } } }
      : { ...base, messageResponse: { case: "errorResponse" as const, value: { errorCode: Code.NotFound, errorMessage: "not found" } } };
  switch (r.case) {
    case "listServices":
      return { ...base, messageResponse: { case: "listServicesResponse" as const, value: { service: serviceNames.map((name) => ({ name })) } } };
    case "fileByFilename":
      return files(registry.getFile(r.value));
    case "fileContainingSymbol":
      return files(fileOfSymbol(registry, r.value));
    case "fileContainingExtension": {
      const extendee = registry.getMessage(r.value.containingType);
      return files(extendee && registry.getExtensionFor(extendee, r.value.extensionNumber)?.file);
    }
    case "allExtensionNumbersOfType": {
      if (!registry.getMessage(r.value)) {
        return { ...base, messageResponse: { case: "errorResponse" as const, value: { errorCode: Code.NotFound, errorMessage: "not found" } } };
      }
      const numbers = [...registry].filter((d) => d.kind === "extension" && d.extendee.typeName === r.value).map((d) => (d as { number: number }).number);
      return { ...base, messageResponse: { case: "allExtensionNumbersResponse" as const, value: { baseTypeName: r.value, extensionNumber: numbers } } };
    }
    default:
      return { ...base, messageResponse: { case: "errorResponse" as const, value: { errorCode: Code.InvalidArgument, errorMessage: "empty request" } } };
  }
}

function fileOfSymbol(registry: SchemaIndex, symbol: string): DescFile | undefined {
  const desc = registry.get(symbol);
  if (desc) return desc.file;
  const parent = registry.get(symbol.slice(0, Math.max(0, symbol.lastIndexOf(".")))); // a method or enum value
  return parent?.kind === "service" ? parent.file : undefined;
}

/** The file and, the first time on this stream, each of its transitive dependencies. */
function withDependencies(file: DescFile, sent: Set<string>): Uint8Array[] {
  const out: Uint8Array[] = [];
  const visit = (f: DescFile, root: boolean) => {
    if (!root && sent.has(f.name)) return;
    sent.add(f.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    for (const d of f.dependencies) visit(d, false);
  };
  visit(file, true);
  return out;
}
