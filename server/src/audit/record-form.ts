/**
 * The wire form of audit records: the proto3 JSON mapping of `inkan.admin.v1.AuditRecord`
 * (proto/inkan/admin/v1/audit.proto), built by hand so the domain needs no generated code.
 *
 * R-3.2.2.4: `hash = SHA-256(UTF-8(JCS(record JSON without "hash")))`, where the JSON uses
 * lowerCamelCase names, omits fields at their default value, writes enums by name, bytes in
 * standard base64 with padding, 64-bit integers as strings and timestamps in RFC 3339 UTC. The
 * hashed form includes nodeId, sequence, occurredAt, eventType and prevHash, so every column of
 * the stored row is bound, and each record commits to the whole chain before it.
 *
 * In the store, a record is kept as its columns (`nodeId`, `sequence`, `time`, `event`,
 * `prevHash`, `hash`) plus `body`: the JCS text of the event fields (actor, approver, outcome,
 * reason, ids, details). {@link recordJsonOf} rebuilds the exact hashed form from a row; a body
 * that is not compact JSON, or that carries a key outside the event fields, does not verify.
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import type { AuditRecord } from "../store/port.js";

/** SHA-256 output length; every prevHash, hash and recordHash has it. */
export const HASH_LENGTH = 32;

/** prevHash of sequence 1: 32 zero bytes. */
export const ZERO_HASH: Uint8Array = new Uint8Array(HASH_LENGTH);

/** `inkan.admin.v1.Actor` in proto3 JSON. */
export interface ActorJson {
  readonly kind:
    | "ACTOR_KIND_SYSTEM"
    | "ACTOR_KIND_PRIVILEGED_USER"
    | "ACTOR_KIND_SCA"
    | "ACTOR_KIND_SIGNER"
    | "ACTOR_KIND_UNAUTHENTICATED";
  readonly id?: string;
  readonly role?: "PRIVILEGED_ROLE_SECURITY_OFFICER" | "PRIVILEGED_ROLE_REGISTRATION_OPERATOR" | "PRIVILEGED_ROLE_AUDITOR";
  /** Standard base64 of 32 bytes. */
  readonly certificateSha256?: string;
}

export type AuditOutcomeJson = "AUDIT_OUTCOME_SUCCESS" | "AUDIT_OUTCOME_DENIED" | "AUDIT_OUTCOME_FAILURE";

/** The event fields of an AuditRecord: everything but the chain fields. Kept in the store's body. */
export interface AuditEventFields {
  readonly actor: ActorJson;
  readonly approver?: ActorJson;
  readonly outcome: AuditOutcomeJson;
  /** `REASON_<ReasonCode>`; absent for SUCCESS. */
  readonly reason?: string;
  readonly signerId?: string;
  readonly credentialId?: string;
  readonly transactionId?: string;
  readonly subjectUserId?: string;
  readonly pendingRequestId?: string;
  readonly requestId?: string;
  readonly details?: Readonly<Record<string, string>>;
}

/** The proto3 JSON of an AuditRecord: what is hashed (without `hash`) and exported (with it). */
export interface AuditRecordJson extends AuditEventFields {
  readonly nodeId: string;
  /** Decimal string (uint64 in proto3 JSON). */
  readonly sequence: string;
  /** RFC 3339 UTC, whole milliseconds. */
  readonly occurredAt: string;
  readonly eventType: string;
  /** Standard base64 of 32 bytes. */
  readonly prevHash: string;
  readonly hash?: string;
}

const eventFieldNames: ReadonlySet<string> = new Set([
  "actor",
  "approver",
  "outcome",
  "reason",
  "signerId",
  "credentialId",
  "transactionId",
  "subjectUserId",
  "pendingRequestId",
  "requestId",
  "details",
]);

/** RFC 8785 canonical JSON (the `canonicalize` package). */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError("value has no JSON form");
  return text;
}

export function sha256(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest()); // a string is hashed as UTF-8
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64"); // a view, no copy
}

/** Decodes standard base64 with padding; undefined unless it is exactly that (no other alphabet, no junk). */
export function fromBase64(text: unknown): Uint8Array | undefined {
  if (typeof text !== "string" || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return undefined;
  return new Uint8Array(Buffer.from(text, "base64"));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

export function equalBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** A timestamp in proto3 JSON as protobuf-es writes it: RFC 3339 UTC, ".sss" only when not zero. */
export function timestampJson(time: Date): string {
  return time.toISOString().replace(".000Z", "Z");
}

/** Parses a proto3 JSON timestamp written by {@link timestampJson}; undefined if it is not one. */
export function parseTimestampJson(text: unknown): Date | undefined {
  if (typeof text !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/.test(text)) return undefined;
  const time = new Date(text);
  return Number.isNaN(time.getTime()) || timestampJson(time) !== text ? undefined : time;
}

/** Parses a uint64 in proto3 JSON (a decimal string) into a positive safe integer. */
export function parseSequenceJson(text: unknown): number | undefined {
  if (typeof text !== "string" || !/^[1-9][0-9]{0,15}$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The store's body for an event: JCS of its fields. */
export function eventBody(fields: AuditEventFields): string {
  return canonicalJson(fields);
}

/** The record's hash: SHA-256 over JCS of its proto3 JSON without "hash" (audit.proto, AuditRecord). */
export function recordHash(json: AuditRecordJson): Uint8Array {
  const { hash: _hash, ...hashed } = json;
  return sha256(canonicalJson(hashed));
}

/**
 * One top-level member of a record's JSON as JCS writes it (`"key":value`), keyed for sorting.
 * Issue 20: the store's body and the hashed form share the event fields, so each field's value is
 * made canonical once and both texts are joined from the same members.
 */
export interface Member {
  readonly key: string;
  readonly text: string;
}

/**
 * JCS of one field value, byte for byte what `canonicalize` gives: a fast path for the shapes the
 * events build (a string, or a plain object of strings: actor, details), the package otherwise.
 */
function canonicalValue(value: unknown): string {
  if (typeof value === "string") return canonicalString(value);
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
      const object = value as Record<string, unknown>;
      const keys = Object.keys(object);
      let plain = true;
      for (const key of keys) {
        const v = object[key];
        if (typeof v !== "string" && v !== undefined) {
          plain = false;
          break;
        }
      }
      if (plain) {
        sortByKey(keys, itself);
        let text = "{";
        let first = true;
        for (const key of keys) {
          const v = object[key];
          if (v === undefined) continue;
          text += `${first ? "" : ","}${canonicalString(key)}:${canonicalString(v as string)}`;
          first = false;
        }
        return `${text}}`;
      }
    }
  }
  return canonicalJson(value);
}

/** The chain fields' names in JCS order. */
const chainKeysSorted = ["eventType", "nodeId", "occurredAt", "prevHash", "sequence"] as const;

/** String.prototype.isWellFormed (ES2024, in Node 20): true when the string has no lone surrogate. */
const isWellFormed = (String.prototype as unknown as { isWellFormed?: (this: string) => boolean }).isWellFormed;

/**
 * JCS of a string: what `canonicalize` gives (JSON.stringify, a lone surrogate refused), with the
 * surrogate check done natively rather than by the package's per-character loop.
 */
function canonicalString(value: string): string {
  if (isWellFormed === undefined) return canonicalJson(value);
  if (!isWellFormed.call(value)) throw new Error("Lone surrogate is not allowed");
  return JSON.stringify(value);
}

/**
 * Sorts a few items in place by `keyOf`, in UTF-16 code unit order (JCS; what Array.prototype.sort
 * does with strings). Issue 20: an insertion sort, since V8's sort allocates a work array per call
 * (about 2.5 KB per record here) and a record has a handful of fields.
 */
function sortByKey<T>(items: T[], keyOf: (item: T) => string): void {
  for (let i = 1; i < items.length; i++) {
    const item = items[i]!;
    const key = keyOf(item);
    let j = i - 1;
    for (; j >= 0 && keyOf(items[j]!) > key; j--) items[j + 1] = items[j]!;
    items[j + 1] = item;
  }
}

const memberKey = (m: Member): string => m.key;
const itself = (k: string): string => k;

function joinMembers(members: readonly Member[]): string {
  let text = "{";
  for (let i = 0; i < members.length; i++) text += i === 0 ? members[i]!.text : `,${members[i]!.text}`;
  return `${text}}`;
}

/** One field as JCS writes it in an object (`"key":value`). */
export function memberOf(key: string, value: unknown): Member {
  return { key, text: `${canonicalString(key)}:${canonicalValue(value)}` };
}

/** The event fields' members in JCS order (an AuditEvent's eventType is not a field). */
export function fieldMembers(fields: AuditEventFields & { readonly eventType?: string }): Member[] {
  const own: Member[] = [];
  for (const key of Object.keys(fields)) {
    if (key === "eventType") continue; // an AuditEvent passed whole: its type is the chain's eventType, not a field
    const value = (fields as unknown as Record<string, unknown>)[key];
    if (value === undefined || typeof value === "symbol") continue;
    own.push(memberOf(key, value));
  }
  sortByKey(own, memberKey);
  return own;
}

/**
 * Issue 20: the members of an event made from a per-call template (events.ts, signature.created)
 * are made canonical once for the call, and each event carries its own list (a non-enumerable
 * symbol: no spread, copy, comparison or JSON of the event sees it). The list must be what
 * {@link fieldMembers} gives for the event's fields (record-form.test.ts proves it byte for byte);
 * the event is frozen once it is attached, and only events.ts attaches one.
 */
const membersKey = Symbol("inkan.audit.canonicalMembers");

/** Attaches `members` (exactly {@link fieldMembers} of `fields`) to `fields`, before it is frozen. */
export function attachMembers<T extends object>(fields: T, members: readonly Member[]): T {
  Object.defineProperty(fields, membersKey, { value: members, enumerable: false, writable: false, configurable: false });
  return fields;
}

/** The members attached by {@link attachMembers}, if any. */
export function precomputedMembers(fields: object): readonly Member[] | undefined {
  return (fields as { [membersKey]?: readonly Member[] })[membersKey];
}

/**
 * The store's body (JCS of the event fields) and the hashed text (JCS of the record's proto3 JSON
 * without `hash`) of a new record, each field made canonical once. Byte-identical to
 * `eventBody(fields)` and `canonicalJson({ ...fields, ...chain })` (record-form.test.ts proves it
 * against that form); the chain fields' names never clash with an event field's.
 */
export function recordTexts(fields: AuditEventFields & { readonly eventType?: string }, chain: { nodeId: string; sequence: string; occurredAt: string; eventType: string; prevHash: string }): { body: string; hashed: string } {
  const own = precomputedMembers(fields) ?? fieldMembers(fields);
  // The hashed form: the sorted event fields merged with the chain fields (already in key order).
  let hashed = "{";
  let i = 0;
  for (const key of chainKeysSorted) {
    for (; i < own.length && own[i]!.key < key; i++) hashed += `${hashed.length > 1 ? "," : ""}${own[i]!.text}`;
    // As the spread `{ ...fields, ...chain }` did: a chain field overrides an event field of its name (none has one).
    if (i < own.length && own[i]!.key === key) i++;
    hashed += `${hashed.length > 1 ? "," : ""}"${key}":${canonicalString(chain[key])}`;
  }
  for (; i < own.length; i++) hashed += `,${own[i]!.text}`;
  hashed += "}";
  return { body: joinMembers(own), hashed };
}

/** Builds the next stored record: the event's fields in `body`, prevHash and hash filled in. */
export function newStoredRecord(args: {
  nodeId: string;
  sequence: number;
  time: Date;
  eventType: string;
  /** The event's fields; an AuditEvent may be passed whole (its `eventType` member is not a field). */
  fields: AuditEventFields & { readonly eventType?: string };
  prevHash: Uint8Array;
  /** toBase64(prevHash), when the caller has it already (the previous record's hash). */
  prevHashBase64?: string;
  /** timestampJson(time), when the caller has it already (records of one batch share a time). */
  occurredAt?: string;
}): AuditRecord {
  const time = new Date(args.time.getTime());
  const { body, hashed } = recordTexts(args.fields, {
    nodeId: args.nodeId,
    sequence: String(args.sequence),
    occurredAt: args.occurredAt ?? timestampJson(time),
    eventType: args.eventType,
    prevHash: args.prevHashBase64 ?? toBase64(args.prevHash),
  });
  return {
    nodeId: args.nodeId,
    sequence: args.sequence,
    time,
    event: args.eventType,
    body,
    prevHash: args.prevHash,
    hash: sha256(hashed),
  };
}

/**
 * The hashed form of a stored record (its proto3 JSON without `hash`), built on the parsed body
 * without copies (verification reads every record). Undefined when the body is not compact JSON
 * of an object holding only event fields: such a row cannot match any hash the SAM wrote.
 */
function hashedFormOf(record: AuditRecord): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(record.body);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
  const form = parsed as Record<string, unknown>;
  for (const key in form) if (!eventFieldNames.has(key)) return undefined;
  // The body must be compact JSON as written (no duplicate keys, whitespace or other escapes);
  // a full canonical-form check would cost a second JCS pass per record for no semantic gain:
  // the hash is computed over the JCS form of what was parsed.
  if (JSON.stringify(form) !== record.body) return undefined;
  if (Number.isNaN(record.time.getTime())) return undefined;
  form["nodeId"] = record.nodeId;
  form["sequence"] = String(record.sequence);
  form["occurredAt"] = timestampJson(record.time);
  form["eventType"] = record.event;
  form["prevHash"] = toBase64(record.prevHash);
  return form;
}

/** The proto3 JSON of a stored record, with `hash`; undefined when its body is malformed (see above). */
export function recordJsonOf(record: AuditRecord): AuditRecordJson | undefined {
  const form = hashedFormOf(record);
  if (!form) return undefined;
  form["hash"] = toBase64(record.hash);
  return form as unknown as AuditRecordJson;
}

/**
 * For the verifiers: the hash a stored record's content would have at a given sequence
 * (undefined if the content is malformed or has no canonical form).
 */
export function storedRecordHasher(record: AuditRecord): (sequence: number) => Uint8Array | undefined {
  const form = hashedFormOf(record);
  if (!form) return () => undefined;
  const own = form["sequence"];
  return (sequence) => {
    const text = String(sequence);
    try {
      return sha256(canonicalJson(text === own ? form : { ...form, sequence: text }));
    } catch {
      return undefined; // e.g. a lone surrogate planted in the store: canonicalize refuses it
    }
  };
}
