// Writes proto/buf/validate/validate.proto from the descriptor that @bufbuild/protovalidate ships.
// Why: the Buf registry is not reachable from our machines, and our protos import this schema.
// The rule-definition options (predefined CEL expressions) are left out: they only matter to a
// validator's own copy of the schema, and @bufbuild/protovalidate evaluates with its own copy.
// Message, field, enum and extension names and numbers are exactly those of the package.
import { writeFileSync, readFileSync } from "node:fs";
import { toJson } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

const pkgJson = new URL("../node_modules/@bufbuild/protovalidate/package.json", import.meta.url);
const version = JSON.parse(readFileSync(pkgJson, "utf8")).version;
const file = toJson(FileDescriptorProtoSchema, file_buf_validate_validate.proto);
const scalar = {
  TYPE_DOUBLE: "double", TYPE_FLOAT: "float", TYPE_INT64: "int64", TYPE_UINT64: "uint64",
  TYPE_INT32: "int32", TYPE_FIXED64: "fixed64", TYPE_FIXED32: "fixed32", TYPE_BOOL: "bool",
  TYPE_STRING: "string", TYPE_BYTES: "bytes", TYPE_UINT32: "uint32", TYPE_SFIXED32: "sfixed32",
  TYPE_SFIXED64: "sfixed64", TYPE_SINT32: "sint32", TYPE_SINT64: "sint64",
};
const typeOf = (f) => scalar[f.type] ?? f.typeName;
const label = (f) => (f.label === "LABEL_REPEATED" ? "repeated" : f.label === "LABEL_REQUIRED" ? "required" : "optional");
const out = [];
const emit = (depth, line) => out.push("  ".repeat(depth) + line);

function printEnum(e, d) {
  emit(d, `enum ${e.name} {`);
  for (const v of e.value) emit(d + 1, `${v.name} = ${v.number};`);
  emit(d, "}");
}
function printMessage(m, d) {
  emit(d, `message ${m.name} {`);
  for (const e of m.enumType ?? []) printEnum(e, d + 1);
  for (const n of m.nestedType ?? []) printMessage(n, d + 1);
  const oneofs = (m.oneofDecl ?? []).map(() => []);
  for (const f of m.field ?? []) {
    if (f.oneofIndex !== undefined) oneofs[f.oneofIndex].push(f);
    else emit(d + 1, `${label(f)} ${typeOf(f)} ${f.name} = ${f.number};`);
  }
  (m.oneofDecl ?? []).forEach((o, i) => {
    emit(d + 1, `oneof ${o.name} {`);
    for (const f of oneofs[i]) emit(d + 2, `${typeOf(f)} ${f.name} = ${f.number};`);
    emit(d + 1, "}");
  });
  for (const r of m.extensionRange ?? []) {
    emit(d + 1, `extensions ${r.start} to ${r.end >= 536870912 ? "max" : r.end - 1};`);
  }
  emit(d, "}");
}

out.push(
  `// Derived from @bufbuild/protovalidate@${version} (Apache-2.0, Copyright Buf Technologies, Inc.)`,
  "// by scripts/vendor-protovalidate.mjs. Do not edit; run `node scripts/vendor-protovalidate.mjs`.",
  'syntax = "proto2";',
  "",
  `package ${file.package};`,
  "",
  ...file.dependency.map((d) => `import "${d}";`),
  "",
  ...Object.entries({ go_package: file.options.goPackage, java_multiple_files: file.options.javaMultipleFiles,
    java_outer_classname: file.options.javaOuterClassname, java_package: file.options.javaPackage })
    .map(([k, v]) => `option ${k} = ${typeof v === "string" ? JSON.stringify(v) : v};`),
  "",
);
const byExtendee = new Map();
for (const x of file.extension) byExtendee.set(x.extendee, [...(byExtendee.get(x.extendee) ?? []), x]);
for (const [extendee, xs] of byExtendee) {
  emit(0, `extend ${extendee} {`);
  for (const x of xs) emit(1, `${label(x)} ${typeOf(x)} ${x.name} = ${x.number};`);
  emit(0, "}");
}
for (const e of file.enumType ?? []) printEnum(e, 0);
for (const m of file.messageType) printMessage(m, 0);
writeFileSync(new URL("../proto/buf/validate/validate.proto", import.meta.url), out.join("\n") + "\n");
