/**
 * Checks recorded CSC exchanges against openapi.json (issue 16): the operation exists (or an
 * unlisted path answered 404 / another method 405, as the document's x-unlisted says), the status
 * is one the operation documents, a JSON answer matches its schema (so an error code the document
 * does not list fails), a 302 carries a Location, and a successful request's body matches the
 * request schema. The JSON Schema subset the document uses is checked here (type, properties,
 * required, additionalProperties, items, enum): no validator dependency for so little.
 */
import { readFileSync } from "node:fs";
import type { Exchange } from "./testing/csc-test-client.js";

type Schema = { type?: string; properties?: Record<string, Schema>; required?: string[]; additionalProperties?: boolean; items?: Schema; enum?: unknown[] };
interface Response { content?: Record<string, { schema: Schema }>; headers?: Record<string, unknown> }
interface Operation { responses: Record<string, Response>; requestBody?: { content: Record<string, { schema: Schema }> } }

export const openApiDocument = JSON.parse(readFileSync(new URL("./openapi.json", import.meta.url), "utf8")) as {
  servers: { url: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: { "x-unlisted": Record<string, Response> };
};

export function validateExchanges(exchanges: readonly Exchange[]): string[] {
  const problems: string[] = [];
  const base = openApiDocument.servers[0]!.url;
  for (const x of exchanges) {
    const where = `${x.method} ${x.path} -> ${x.status}`;
    const rel = x.path.startsWith(base) ? x.path.slice(base.length) : undefined;
    const item = rel === undefined ? undefined : openApiDocument.paths[rel];
    let response: Response | undefined;
    if (!item) response = x.status === 404 ? openApiDocument.components["x-unlisted"]["404"] : undefined;
    else if (!item[x.method.toLowerCase()]) response = x.status === 405 ? openApiDocument.components["x-unlisted"]["405"] : undefined;
    else {
      const op = item[x.method.toLowerCase()]!;
      response = op.responses[String(x.status)];
      const reqSchema = op.requestBody?.content["application/json"]?.schema ?? op.requestBody?.content["application/x-www-form-urlencoded"]?.schema;
      if (response && x.status < 300 && reqSchema && x.requestBody !== undefined) problems.push(...check(reqSchema, x.requestBody, `${where} request`));
    }
    if (!response) {
      problems.push(`${where}: status not documented`);
      continue;
    }
    if (x.status === 302) {
      if (!x.location || !response.headers?.Location) problems.push(`${where}: a redirect without a documented Location`);
      continue;
    }
    const schema = response.content?.["application/json"]?.schema;
    if (!schema) {
      problems.push(`${where}: no JSON schema documented`);
      continue;
    }
    if (!x.contentType.startsWith("application/json")) problems.push(`${where}: content type ${x.contentType}`);
    problems.push(...check(schema, x.responseBody, where));
  }
  return problems;
}

function check(s: Schema, v: unknown, at: string): string[] {
  const out: string[] = [];
  if (s.enum && !s.enum.includes(v)) return [`${at}: ${JSON.stringify(v)} is not one of ${JSON.stringify(s.enum)}`];
  switch (s.type) {
    case "object": {
      if (typeof v !== "object" || v === null || Array.isArray(v)) return [`${at}: not an object`];
      const o = v as Record<string, unknown>;
      for (const r of s.required ?? []) if (!(r in o)) out.push(`${at}: missing ${r}`);
      for (const [k, val] of Object.entries(o)) {
        const p = s.properties?.[k];
        if (p) out.push(...check(p, val, `${at}.${k}`));
        else if (s.additionalProperties === false) out.push(`${at}: undocumented member ${k}`);
      }
      return out;
    }
    case "array":
      if (!Array.isArray(v)) return [`${at}: not an array`];
      return v.flatMap((e, i) => (s.items ? check(s.items, e, `${at}[${i}]`) : []));
    case "string":
      return typeof v === "string" ? [] : [`${at}: not a string`];
    case "integer":
      return Number.isInteger(v) ? [] : [`${at}: not an integer`];
    case "boolean":
      return typeof v === "boolean" ? [] : [`${at}: not a boolean`];
    default:
      return out;
  }
}
