/**
 * How `inkan admin` prints: with --json one JSON value on stdout (messages in their proto JSON form,
 * lists as arrays); otherwise `field  value` lines for one record and a table for a list.
 */
import { createRegistry, toJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import { file_inkan_admin_v1_audit } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { file_inkan_admin_v1_policy } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { file_inkan_admin_v1_privileged_user } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { file_inkan_admin_v1_registration } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";

/** The admin messages, so that a pending request's `google.protobuf.Any` renders as the request itself. */
export const adminRegistry = createRegistry(file_inkan_admin_v1_registration, file_inkan_admin_v1_policy, file_inkan_admin_v1_privileged_user, file_inkan_admin_v1_audit);

export interface Column<T> {
  header: string;
  value(item: T): string;
}

export interface Output {
  /** One message: its proto JSON, or `field  value` lines (nested fields dotted). */
  message<D extends DescMessage>(schema: D, message: MessageShape<D>, title?: string): void;
  /** Several messages: a JSON array, or a table of `columns`. */
  list<D extends DescMessage>(schema: D, messages: MessageShape<D>[], columns: Column<MessageShape<D>>[]): void;
  /** A line for a person: stdout without --json, stderr with it (stdout stays one JSON value). */
  note(text: string): void;
  /** A plain JSON value (with --json) or the given human text. */
  value(json: unknown, human: string): void;
}

export function jsonOf<D extends DescMessage>(schema: D, message: MessageShape<D>): JsonValue {
  return toJson(schema, message, { registry: adminRegistry });
}

export function createOutput(json: boolean): Output {
  return {
    message(schema, message, title) {
      const value = jsonOf(schema, message);
      if (json) {
        console.log(JSON.stringify(value));
        return;
      }
      if (title) console.log(title);
      const rows = flatten(value, "");
      const width = Math.min(40, Math.max(0, ...rows.map(([k]) => k.length)));
      for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
    },
    list(schema, messages, columns) {
      if (json) {
        console.log(JSON.stringify(messages.map((m) => jsonOf(schema, m))));
        return;
      }
      if (messages.length === 0) {
        console.log("(none)");
        return;
      }
      const cells = messages.map((m) => columns.map((c) => c.value(m)));
      const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
      const line = (r: string[]) => r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!))).join("  ").trimEnd();
      console.log(line(columns.map((c) => c.header)));
      for (const r of cells) console.log(line(r));
    },
    note(text) {
      (json ? console.error : console.log)(text);
    },
    value(value, human) {
      console.log(json ? JSON.stringify(value) : human);
    },
  };
}

function flatten(value: JsonValue, path: string): [string, string][] {
  if (value === null || typeof value !== "object") return [[path || "value", String(value)]];
  if (Array.isArray(value)) {
    if (value.length === 0) return [[path, "[]"]];
    if (value.every((v) => v === null || typeof v !== "object")) return [[path, value.join(", ")]];
    return value.flatMap((v, i) => flatten(v, `${path}[${i}]`));
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return path ? [[path, "{}"]] : [];
  return entries.flatMap(([k, v]) => flatten(v, path ? `${path}.${k}` : k));
}

/** A short enum name for tables: SIGNER_STATUS_ACTIVE -> ACTIVE. */
export function enumName(e: Record<number, string>, value: number, prefixWords = 0): string {
  const name = e[value] ?? String(value);
  return prefixWords > 0 ? name.split("_").slice(prefixWords).join("_") : name;
}

/** A protobuf Timestamp as ISO 8601 ("" when unset). */
export function isoOf(t: { seconds: bigint; nanos: number } | undefined): string {
  return t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString() : "";
}
