import { createHash } from "node:crypto";
import type { HashAlgorithm, KeyAlgorithm, SignatureScheme } from "../crypto/port.js";
import { InkanError } from "../errors.js";

/**
 * The pure half of a CSR (PrepareCsr): the PKCS#10 CertificationRequestInfo of RFC 2986 over a
 * credential's public key exactly as generated (R-3.1.1.4) and the subject the signer approves
 * (R-3.1.3.2, T-2.1.3.2), and the DTBS/R the signer authorizes through the SAP.
 */

/** DER of one element: tag, definite length, content. */
function der(tag: number, ...content: Uint8Array[]): Uint8Array {
  const body = Buffer.concat(content);
  const n = body.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return new Uint8Array(Buffer.concat([Buffer.from([tag, ...length]), body]));
}

function oidDer(oid: string): Uint8Array {
  const arcs = oid.split(".").map(Number);
  const bytes: number[] = [];
  const push = (v: number) => {
    const out = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) out.unshift((v & 0x7f) | 0x80);
    bytes.push(...out);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const arc of arcs.slice(2)) push(arc);
  return der(0x06, Uint8Array.from(bytes));
}

/** RFC 4514 short names (and the few other names people write), by upper-case name. */
const typeOids: Record<string, string> = {
  CN: "2.5.4.3", L: "2.5.4.7", ST: "2.5.4.8", O: "2.5.4.10", OU: "2.5.4.11", C: "2.5.4.6", STREET: "2.5.4.9",
  DC: "0.9.2342.19200300.100.1.25", UID: "0.9.2342.19200300.100.1.1",
  SERIALNUMBER: "2.5.4.5", SN: "2.5.4.4", SURNAME: "2.5.4.4", GN: "2.5.4.42", GIVENNAME: "2.5.4.42", TITLE: "2.5.4.12",
  ORGANIZATIONIDENTIFIER: "2.5.4.97",
};
const printableOids = new Set(["2.5.4.6", "2.5.4.5"]); // countryName and serialNumber are PrintableString by definition (X.520)
const ia5Oids = new Set(["0.9.2342.19200300.100.1.25"]); // domainComponent is IA5String (RFC 4519)
const printable = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const specials = new Set([..."\"+,;<>\\ #="]);

const badSubject = (message: string) => new InkanError("INVALID_REQUEST", `subject: ${message}`, { field: "subject" });

/**
 * Parses an RFC 4514 distinguished name ("CN=Sato Hanako,O=Example Corp,C=JP": the most specific RDN
 * first) into its DER Name, whose RDNs are in the reverse order (C first). Values are encoded as
 * RFC 5280 recommends: PrintableString for C (and serialNumber), IA5String for DC, UTF8String
 * otherwise; a "#" hex value is taken as the DER of the value itself. INVALID_REQUEST (field
 * "subject") for anything else, including unescaped special characters.
 */
export function subjectNameDer(subject: string): Uint8Array {
  const rdns: Uint8Array[][] = [];
  let at = 0;
  const s = subject;
  while (at <= s.length) {
    const rdn: Uint8Array[] = [];
    for (;;) {
      while (s[at] === " ") at++; // tolerated after a separator: a type never starts with a space
      const eq = s.indexOf("=", at);
      if (eq < 0) throw badSubject("an attribute has no \"=\"");
      const typeText = s.slice(at, eq);
      const oid = /^\d+(\.\d+)+$/.test(typeText) ? typeText : typeOids[typeText.toUpperCase()];
      if (!oid) throw badSubject(`unknown attribute type "${typeText.slice(0, 40)}"`);
      const parsed = readValue(s, eq + 1);
      at = parsed.end;
      rdn.push(der(0x30, oidDer(oid), parsed.hex ?? encodeValue(oid, parsed.text)));
      if (s[at] === "+") {
        at++;
        continue;
      }
      break;
    }
    rdns.push(rdn);
    if (at >= s.length) break;
    if (s[at] !== ",") throw badSubject("expected \",\" between RDNs");
    at++;
  }
  // DER: the RDNs in reverse order of the string; within an RDN (a SET OF) sorted by encoding.
  const sets = rdns.reverse().map((atvs) => der(0x31, ...[...atvs].sort(Buffer.compare)));
  return der(0x30, ...sets);
}

function encodeValue(oid: string, text: string): Uint8Array {
  if (text.length === 0) throw badSubject("an attribute value is empty");
  if (printableOids.has(oid)) {
    if (!printable.test(text)) throw badSubject("a PrintableString value has characters outside its set");
    if (oid === "2.5.4.6" && !/^[A-Z]{2}$/.test(text)) throw badSubject("C must be an ISO 3166 two-letter code");
    return der(0x13, Buffer.from(text, "latin1"));
  }
  if (ia5Oids.has(oid)) {
    if (!/^[\x00-\x7f]*$/.test(text)) throw badSubject("an IA5String value is not ASCII");
    return der(0x16, Buffer.from(text, "latin1"));
  }
  return der(0x0c, Buffer.from(text, "utf8"));
}

/** One RFC 4514 attribute value starting at `at`: its text, or the DER given as "#hex"; `end` is at the separator or the end. */
function readValue(s: string, at: number): { text: string; hex?: Uint8Array; end: number } {
  if (s[at] === "#") {
    const m = /^#((?:[0-9A-Fa-f]{2})+)/.exec(s.slice(at));
    if (!m) throw badSubject("a \"#\" value is not hexadecimal");
    const bytes = Uint8Array.from(Buffer.from(m[1]!, "hex"));
    if (bytes.length < 2 || bytes[1]! >= 0x80 || bytes[1]! + 2 !== bytes.length) throw badSubject("a \"#\" value is not one short DER element");
    return { text: "", hex: bytes, end: at + m[0].length };
  }
  const bytes: number[] = [];
  let lastEscaped = false;
  let i = at;
  for (; i < s.length && s[i] !== "," && s[i] !== "+"; i++) {
    const c = s[i]!;
    if (c === "\\") {
      const next = s[i + 1];
      if (next !== undefined && specials.has(next)) {
        bytes.push(next.charCodeAt(0));
        i++;
      } else if (/^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
        bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
        i += 2;
      } else {
        throw badSubject("a \"\\\" escapes nothing");
      }
      lastEscaped = true;
      continue;
    }
    if (c === "\"" || c === ";" || c === "<" || c === ">" || c === "\0") throw badSubject(`"${c}" must be escaped`);
    if (i === at && c === " ") throw badSubject("a value starts with an unescaped space");
    bytes.push(...Buffer.from(c, "utf8"));
    lastEscaped = false;
  }
  if (!lastEscaped && s[i - 1] === " " && i > at) throw badSubject("a value ends with an unescaped space");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    throw badSubject("an escaped value is not UTF-8");
  }
  return { text, end: i };
}

/** The DER CertificationRequestInfo: version 0, the subject, the SPKI exactly as given, no attributes (RFC 2986 4.1). */
export function certificationRequestInfo(subject: Uint8Array, spki: Uint8Array): Uint8Array {
  return der(0x30, Uint8Array.from([0x02, 0x01, 0x00]), subject, spki, Uint8Array.from([0xa0, 0x00]));
}

/** The key's default hash and scheme for a CSR (registration.proto PrepareCsrRequest). */
export function csrDefaults(key: KeyAlgorithm): { hash: HashAlgorithm; scheme: SignatureScheme } {
  switch (key) {
    case "EC_P256":
      return { hash: "SHA256", scheme: "ECDSA" };
    case "EC_P384":
      return { hash: "SHA384", scheme: "ECDSA" };
    case "EC_P521":
      return { hash: "SHA512", scheme: "ECDSA" };
    case "ED25519":
      return { hash: "NONE", scheme: "ED25519" };
    default:
      return { hash: "SHA256", scheme: "RSA_PKCS1_V1_5" };
  }
}

/** Whether `scheme` with `hash` can sign with a key of `key` (pure Ed25519 signs the bytes themselves, and only it). */
export function schemeFitsKey(key: KeyAlgorithm, scheme: SignatureScheme, hash: HashAlgorithm): boolean {
  const fits = key.startsWith("EC_") ? scheme === "ECDSA" : key.startsWith("RSA_") ? scheme === "RSA_PKCS1_V1_5" || scheme === "RSA_PSS" : scheme === "ED25519";
  return fits && (hash === "NONE") === (scheme === "ED25519");
}

/** The DTBS/R of the CertificationRequestInfo: its hash, or the bytes themselves for HASH_ALGORITHM_NONE. */
export function csrDtbsr(info: Uint8Array, hash: HashAlgorithm): Uint8Array {
  if (hash === "NONE") return info;
  return new Uint8Array(createHash(hash === "SHA256" ? "sha256" : hash === "SHA384" ? "sha384" : "sha512").update(info).digest());
}
