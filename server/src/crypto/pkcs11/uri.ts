/**
 * RFC 7512 PKCS#11 URIs, the parts Inkan uses: a token (`pkcs11:token=inkan`) and objects in it
 * (`pkcs11:token=inkan;id=%0a%10...;type=private`), with `pin-source` and `module-path` as query
 * attributes. A PIN is never accepted inside a URI (`pin-value` is refused): URIs end up in
 * configuration files, logs and command lines.
 */
import { InkanError } from "../../errors.js";

export type Pkcs11ObjectType = "public" | "private" | "cert" | "secret-key" | "data";

export interface Pkcs11Uri {
  token?: string;
  manufacturer?: string;
  serial?: string;
  model?: string;
  /** CKA_LABEL. */
  object?: string;
  /** CKA_ID. */
  id?: Uint8Array;
  type?: Pkcs11ObjectType;
  /** Query `module-path`: the PKCS#11 library. */
  modulePath?: string;
  /** Query `pin-source`: a file holding the PIN (`file:` URI or plain path). */
  pinSource?: string;
}

const PATH_ATTRIBUTES = new Set([
  "token",
  "manufacturer",
  "serial",
  "model",
  "object",
  "id",
  "type",
  "library-manufacturer",
  "library-description",
  "library-version",
  "slot-description",
  "slot-manufacturer",
  "slot-id",
]);
const OBJECT_TYPES: ReadonlySet<string> = new Set(["public", "private", "cert", "secret-key", "data"]);

/** RFC 7512 unreserved characters and pk11-res-avail (minus "="), left unescaped when formatting. */
const SAFE = /^[A-Za-z0-9\-._~:[\]@!$'()*+,]$/;
/** In query values "/" is also left unescaped (pk11-query-res-avail), so paths stay readable. */
const SAFE_QUERY = /^[A-Za-z0-9\-._~:[\]@!$'()*+,/]$/;

/** Formats the attributes in the order token, manufacturer, serial, model, object, id, type. */
export function formatPkcs11Uri(uri: Pkcs11Uri): string {
  const path: string[] = [];
  const add = (name: string, value: string | undefined) => {
    if (value !== undefined) path.push(`${name}=${encodeText(value)}`);
  };
  add("token", uri.token);
  add("manufacturer", uri.manufacturer);
  add("serial", uri.serial);
  add("model", uri.model);
  add("object", uri.object);
  if (uri.id !== undefined) path.push(`id=${encodeBytes(uri.id)}`);
  add("type", uri.type);
  const query: string[] = [];
  if (uri.modulePath !== undefined) query.push(`module-path=${encodeText(uri.modulePath, SAFE_QUERY)}`);
  if (uri.pinSource !== undefined) query.push(`pin-source=${encodeText(uri.pinSource, SAFE_QUERY)}`);
  return `pkcs11:${path.join(";")}${query.length ? `?${query.join("&")}` : ""}`;
}

/** Parses a PKCS#11 URI; throws INVALID_REQUEST (never echoing a PIN) when it is not one. */
export function parsePkcs11Uri(text: string): Pkcs11Uri {
  if (!/^pkcs11:/i.test(text)) throw invalid("not a pkcs11: URI");
  const rest = text.slice("pkcs11:".length);
  const q = rest.indexOf("?");
  const pathPart = q < 0 ? rest : rest.slice(0, q);
  const queryPart = q < 0 ? "" : rest.slice(q + 1);
  const out: Pkcs11Uri = {};
  const seen = new Set<string>();
  for (const attr of pathPart ? pathPart.split(";") : []) {
    const [name, raw] = splitAttribute(attr);
    if (seen.has(name)) throw invalid(`attribute "${name}" appears twice`);
    seen.add(name);
    if (!PATH_ATTRIBUTES.has(name) && !name.startsWith("x-")) throw invalid(`unknown attribute "${name}"`);
    switch (name) {
      case "token":
        out.token = decodeText(raw);
        break;
      case "manufacturer":
        out.manufacturer = decodeText(raw);
        break;
      case "serial":
        out.serial = decodeText(raw);
        break;
      case "model":
        out.model = decodeText(raw);
        break;
      case "object":
        out.object = decodeText(raw);
        break;
      case "id":
        out.id = decodeBytes(raw);
        break;
      case "type": {
        const type = decodeText(raw);
        if (!OBJECT_TYPES.has(type)) throw invalid(`unknown object type "${type}"`);
        out.type = type as Pkcs11ObjectType;
        break;
      }
      default:
        decodeBytes(raw); // other library/slot attributes and vendor ones: checked, not used
    }
  }
  const seenQuery = new Set<string>();
  for (const attr of queryPart ? queryPart.split("&") : []) {
    const eq = attr.indexOf("=");
    const name = (eq < 0 ? attr : attr.slice(0, eq)).toLowerCase();
    // A PIN in a URI would land in configuration files and logs: refused without echoing it.
    if (name === "pin-value") throw invalid("a PIN must not be written in a URI; use pin-source or the PIN file option");
    const [, raw] = splitAttribute(attr);
    if (seenQuery.has(name)) throw invalid(`query attribute "${name}" appears twice`);
    seenQuery.add(name);
    if (name === "module-path") out.modulePath = decodeText(raw, QUERY_RESERVED);
    else if (name === "pin-source") out.pinSource = decodeText(raw, QUERY_RESERVED);
    else decodeBytes(raw, QUERY_RESERVED); // unknown query attributes are ignored (RFC 7512 section 2.3)
  }
  return out;
}

/** The PIN file named by a `pin-source` value (`file:///p`, `file:/p` or a plain path). */
export function pinSourcePath(pinSource: string): string {
  if (/^file:/i.test(pinSource)) {
    const path = pinSource.replace(/^file:(\/\/)?/i, "");
    if (!path.startsWith("/")) throw invalid("pin-source file URI must be absolute");
    return path;
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(pinSource)) throw invalid("pin-source must be a file");
  return pinSource;
}

function splitAttribute(attr: string): [string, string] {
  const eq = attr.indexOf("=");
  if (eq <= 0) throw invalid("attribute without a name or value");
  return [attr.slice(0, eq).toLowerCase(), attr.slice(eq + 1)];
}

function encodeText(value: string, safe: RegExp = SAFE): string {
  return encodeBytes(new TextEncoder().encode(value), safe);
}

/** Percent-encodes every byte (the form RFC 7512 uses for `id`) except those `safe` matches. */
function encodeBytes(bytes: Uint8Array, safe?: RegExp): string {
  let out = "";
  for (const b of bytes) {
    const ch = String.fromCharCode(b);
    out += safe && b < 0x80 && safe.test(ch) ? ch : `%${b.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/** Characters that must be percent-encoded inside a path value and inside a query value. */
const PATH_RESERVED = new Set([";", "?", "#", "/"]);
const QUERY_RESERVED = new Set(["&", "#"]);

function decodeBytes(raw: string, reserved: ReadonlySet<string> = PATH_RESERVED): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i] as string;
    if (ch === "%") {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw invalid("bad percent-encoding");
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (reserved.has(ch) || ch.charCodeAt(0) > 0x7e || ch.charCodeAt(0) < 0x21) {
      throw invalid("character must be percent-encoded");
    } else {
      out.push(ch.charCodeAt(0));
    }
  }
  return Uint8Array.from(out);
}

function decodeText(raw: string, reserved?: ReadonlySet<string>): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(decodeBytes(raw, reserved));
  } catch (err) {
    if (err instanceof InkanError) throw err;
    throw invalid("attribute value is not UTF-8");
  }
}

function invalid(reason: string): InkanError {
  return new InkanError("INVALID_REQUEST", `invalid PKCS#11 URI: ${reason}`, { field: "pkcs11Uri" });
}
