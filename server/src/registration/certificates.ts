import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { createHash, X509Certificate as NodeCertificate } from "node:crypto";
import * as x509 from "@peculiar/x509";
import type { HashAlgorithm, SignatureScheme } from "../crypto/port.js";
import { InkanError } from "../errors.js";

/**
 * A credential's certificate chain as sealed into its record (CredentialBody.certificate), with
 * the end-entity certificate's facts that every read reports, so a read never parses certificates.
 */
export interface StoredCertificate {
  /** DER X.509 certificates, base64, end-entity first, each next one issuing the previous. */
  chain: string[];
  /** SHA-256 over the end-entity certificate's DER, lowercase hex. */
  sha256: string;
  /** RFC 4514 string forms of the end-entity certificate's subject and issuer. */
  subjectDn: string;
  issuerDn: string;
  /** Lowercase hexadecimal without leading zeros. */
  serialNumber: string;
  notBefore: string;
  notAfter: string;
}

/** One certificate of a submitted chain, parsed twice: node:crypto verifies signatures and issuance, @peculiar/x509 reads the fields. */
export interface ParsedCertificate {
  der: Uint8Array;
  /** The SubjectPublicKeyInfo exactly as encoded in the certificate (not re-encoded), for the byte-for-byte comparison (R-3.1.1.4). */
  spki: Uint8Array;
  node: NodeCertificate;
  cert: x509.X509Certificate;
}

const invalid = (message: string, index?: number, cause?: unknown) =>
  new InkanError("CERTIFICATE_INVALID", message, { field: index === undefined ? "certificate_chain" : `certificate_chain[${index}]`, cause });

/** Parses DER certificates (never PEM, never trailing bytes); CERTIFICATE_INVALID names the first that is not one. */
export function parseCertificateChain(chain: readonly Uint8Array[]): ParsedCertificate[] {
  if (chain.length === 0) throw invalid("no certificate");
  return chain.map((der, i) => {
    try {
      if (tlv(der, 0).end !== der.length) throw new Error("not exactly one DER element"); // X509Certificate would also take PEM or trailing bytes
      return { der, spki: tbsField(der, 6), node: new NodeCertificate(der), cert: new x509.X509Certificate(der) };
    } catch (err) {
      throw invalid("not a DER X.509 certificate", i, err);
    }
  });
}

/** A TBSCertificate field as encoded in the certificate (never re-encoded): 3 issuer, 5 subject, 6 SubjectPublicKeyInfo. */
function tbsField(der: Uint8Array, field: 3 | 5 | 6): Uint8Array {
  const certificate = tlv(der, 0);
  const tbs = tlv(der, certificate.contentStart);
  let at = tbs.contentStart;
  if (der[at] === 0xa0) at = tlv(der, at).end; // [0] version
  for (let i = 1; i < field; i++) at = tlv(der, at).end; // serial, signature, issuer, validity, subject
  const element = tlv(der, at);
  if (der[at] !== 0x30 || element.end > tbs.end) throw new Error("malformed TBSCertificate");
  return der.subarray(at, element.end);
}

/** One DER element at `at`: where its content starts and where it ends (definite lengths only). */
function tlv(der: Uint8Array, at: number): { contentStart: number; end: number } {
  if (at + 2 > der.length || (der[at]! & 0x1f) === 0x1f) throw new Error("malformed DER");
  let length = der[at + 1]!;
  let contentStart = at + 2;
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 4 || contentStart + octets > der.length) throw new Error("malformed DER length");
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + der[contentStart + i]!;
    contentStart += octets;
  }
  const end = contentStart + length;
  if (end > der.length) throw new Error("truncated DER");
  return { contentStart, end };
}

const oid = {
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extendedKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  certificatePolicies: "2.5.29.32",
} as const;
/**
 * Extended key usages that allow document signing: anyExtendedKeyUsage, id-kp-documentSigning
 * (RFC 9336), emailProtection (S/MIME, CMS), Adobe's document signing and Microsoft's.
 */
const signingPurposes = new Set(["2.5.29.37.0", "1.3.6.1.5.5.7.3.36", "1.3.6.1.5.5.7.3.4", "1.2.840.113583.1.1.5", "1.3.6.1.4.1.311.10.3.12"]);
/** Critical extensions this check understands; a certificate with any other critical extension is refused (RFC 5280 6.1.4 (o)). */
const understood = new Set<string>(Object.values(oid));

/**
 * Validates `chain` (end-entity first) for a signing credential, as ImportCertificate requires:
 * each certificate is issued by the next (name, key identifiers, issuer key usage and signature
 * checked by OpenSSL through node:crypto), the chain reaches one of `trustedCas` (a trusted
 * certificate in the chain, or one that issued its last certificate), every certificate is within
 * its validity period at `now`, every issuer is a CA within its path length, no certificate has a
 * critical extension not understood here, and the end-entity certificate is not a CA, its key
 * usage allows signing (digitalSignature or nonRepudiation) and its extended key usage, if any,
 * allows document signing. CERTIFICATE_INVALID otherwise.
 */
export function validateSigningChain(chain: readonly ParsedCertificate[], trustedCas: readonly Uint8Array[], now: Date): void {
  const anchors = trustedCas.map((der) => new NodeCertificate(der));
  if (anchors.length === 0) throw invalid("the security policy trusts no issuing CA");
  chain.forEach((c, i) => {
    // R-3.1.1.4 / T-2.1.3.2: a certificate outside its validity period certifies nothing now.
    if (now < c.cert.notBefore || now > c.cert.notAfter) throw invalid("a certificate is not within its validity period", i);
    // T-2.1.3.2: a signature over MD5 or SHA-1 can be forged by collision; such a certificate proves nothing.
    if (weakSignature(c.der)) throw invalid("the certificate is signed with a broken hash algorithm", i);
    const unknownCritical = c.cert.extensions.find((e) => e.critical && !understood.has(e.type));
    if (unknownCritical) throw invalid(`a critical extension is not understood (${unknownCritical.type})`, i);
    if (i > 0) requireCa(c.cert, i - 1, i);
  });
  const ee = chain[0]!.cert;
  if (ee.getExtension(x509.BasicConstraintsExtension)?.ca) throw invalid("the end-entity certificate is a CA certificate", 0);
  const usage = ee.getExtension(x509.KeyUsagesExtension)?.usages ?? 0;
  if ((usage & (x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation)) === 0) {
    throw invalid("the certificate's key usage does not allow signing (digitalSignature or nonRepudiation)", 0);
  }
  // An extended key usage, when present, must allow document signing: a TLS-only certificate
  // (serverAuth, clientAuth) does not certify signatures.
  const eku = ee.getExtension(x509.ExtendedKeyUsageExtension)?.usages.map(String);
  if (eku && !eku.some((u) => signingPurposes.has(u))) throw invalid("the certificate's extended key usage does not allow document signing", 0);
  // Each certificate is issued by the next one, as CertificateInfo.chain promises.
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!issuedBy(chain[i]!.node, chain[i + 1]!.node)) throw invalid("a certificate is not issued by the next one in the chain", i);
  }
  // T-2.1.1.2, T-2.1.3.2: the path ends at a CA the security policy trusts: one sent in the chain (compared
  // byte for byte), or one that issued the chain's last certificate.
  if (chain.some((c, i) => i > 0 && anchors.some((a) => Buffer.from(a.raw).equals(c.der)))) return;
  const last = chain.length - 1;
  const anchor = anchors.find((a) => issuedBy(chain[last]!.node, a));
  if (!anchor) throw invalid("the chain does not lead to an issuing CA the security policy trusts", last);
  const trusted = new x509.X509Certificate(anchor.raw);
  if (now < trusted.notBefore || now > trusted.notAfter) throw invalid("the trusted issuing CA is not within its validity period", last);
  requireCa(trusted, last, last);
}

/** Signature algorithms over MD2, MD5 or SHA-1 (RSA, ECDSA, DSA), by OID. */
const weakSignatureOids = new Set([
  "1.2.840.113549.1.1.2", "1.2.840.113549.1.1.4", "1.2.840.113549.1.1.5", "1.2.840.10045.4.1", "1.2.840.10040.4.3", "1.3.14.3.2.29",
]);

/** The OID of Certificate.signatureAlgorithm (the element after the TBSCertificate) names a broken hash. */
function weakSignature(der: Uint8Array): boolean {
  const certificate = tlv(der, 0);
  const algorithm = tlv(der, tlv(der, certificate.contentStart).end);
  const id = tlv(der, algorithm.contentStart);
  return weakSignatureOids.has(oidString(der.subarray(id.contentStart, id.end)));
}

/** Name chaining, key identifiers and the issuer's keyCertSign (X509_check_issued), then the signature itself. */
function issuedBy(subject: NodeCertificate, issuer: NodeCertificate): boolean {
  try {
    return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** `cert` issues a path with `below` CA certificates under it: it must be a CA whose path length allows that. */
function requireCa(cert: x509.X509Certificate, below: number, index: number): void {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw invalid("an issuer in the chain is not a CA certificate", index);
  if (bc.pathLength !== undefined && below > bc.pathLength) throw invalid("an issuer's path length constraint is exceeded", index);
  const usage = cert.getExtension(x509.KeyUsagesExtension);
  if (usage && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) throw invalid("an issuer's key usage does not allow certificate signing", index);
}

/** What a credential record keeps of a validated chain (sealed with the record). */
export function storedCertificate(chain: readonly ParsedCertificate[]): StoredCertificate {
  const ee = chain[0]!;
  return {
    chain: chain.map((c) => Buffer.from(c.der).toString("base64")),
    sha256: certificateSha256(ee.der),
    subjectDn: rfc4514(tbsField(ee.der, 5)),
    issuerDn: rfc4514(tbsField(ee.der, 3)),
    serialNumber: ee.cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, ""),
    notBefore: ee.cert.notBefore.toISOString(),
    notAfter: ee.cert.notAfter.toISOString(),
  };
}

export const certificateSha256 = (der: Uint8Array) => createHash("sha256").update(der).digest("hex");

/** The certificate's state at `now`: within its validity period or not (no revocation is recorded by this SAM yet). */
export function certificateState(c: StoredCertificate, now: Date): "VALID" | "EXPIRED" | "NOT_YET_VALID" {
  return now > new Date(c.notAfter) ? "EXPIRED" : now < new Date(c.notBefore) ? "NOT_YET_VALID" : "VALID";
}

/** RFC 4514 short names; any other attribute type is written as its dotted OID with a "#" hex DER value. */
const shortNames: Record<string, string> = {
  "2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C",
  "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
};

/** The text of a DirectoryString-like value by its tag, or undefined for a type not read as text. */
function stringValue(value: Uint8Array): string | undefined {
  const content = value.subarray(tlv(value, 0).contentStart);
  try {
    return decodeString(value[0], content);
  } catch {
    return undefined; // not well-formed text: shown as hex
  }
}

function decodeString(tag: number | undefined, content: Uint8Array): string | undefined {
  switch (tag) {
    case 0x0c: // UTF8String
      return new TextDecoder("utf-8", { fatal: true }).decode(content);
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // TeletexString, read as Latin-1 as most software does
      return Buffer.from(content).toString("latin1");
    case 0x1e: // BMPString: UTF-16BE
      return new TextDecoder("utf-16be", { fatal: true }).decode(content);
    default:
      return undefined;
  }
}

function oidString(content: Uint8Array): string {
  const arcs: number[] = [];
  let n = 0;
  for (const b of content) {
    n = n * 128 + (b & 0x7f);
    if (b & 0x80) continue;
    if (arcs.length === 0) arcs.push(n < 80 ? Math.floor(n / 40) : 2, n < 80 ? n % 40 : n - 80);
    else arcs.push(n);
    n = 0;
  }
  return arcs.join(".");
}

/**
 * A DER Name (SEQUENCE OF SET OF SEQUENCE { type, value }) in RFC 4514 string form: the most
 * specific RDN first, values escaped, types without an RFC 4514 short name as dotted OIDs with the
 * value's DER in hex.
 */
export function rfc4514(der: Uint8Array): string {
  const rdns: string[] = [];
  const name = tlv(der, 0);
  for (let r = name.contentStart; r < name.end; r = tlv(der, r).end) {
    const set = tlv(der, r);
    const attributes: string[] = [];
    for (let a = set.contentStart; a < set.end; a = tlv(der, a).end) {
      const atv = tlv(der, a);
      const type = tlv(der, atv.contentStart);
      const oid = oidString(der.subarray(type.contentStart, type.end));
      const value = der.subarray(type.end, atv.end);
      const short = shortNames[oid];
      const text = short === undefined ? undefined : stringValue(value);
      attributes.push(short !== undefined && text !== undefined ? `${short}=${escapeValue(text)}` : `${oid}=#${Buffer.from(value).toString("hex")}`);
    }
    rdns.push(attributes.join("+"));
  }
  return rdns.reverse().join(",");
}

/** RFC 4514 section 2.4: escape the special characters, a leading space or "#", a trailing space, and NUL. */
function escapeValue(value: string): string {
  return value
    .replace(/[\\"+,;<>]/g, (c) => `\\${c}`)
    .replace(/\0/g, "\\00")
    .replace(/^([ #])/, "\\$1")
    .replace(/ $/, "\\ ");
}

// ---------------------------------------------------------------------------------------------
// PKCS#10 (CreateCsr): the CertificationRequestInfo the signer approved, and the signed request
// ---------------------------------------------------------------------------------------------

const badRequestInfo = (message: string, cause?: unknown) =>
  new InkanError("INVALID_REQUEST", `certification_request_info: ${message}`, { field: "certification_request_info", cause });

/** {@link tlv}, refusing what DER forbids: a non-minimal length. */
function derTlv(der: Uint8Array, at: number): { contentStart: number; end: number } {
  const element = tlv(der, at);
  const length = element.end - element.contentStart;
  const lengthOctets = element.contentStart - at - 2;
  if (lengthOctets > 0 && (length < 0x80 || der[at + 2] === 0)) throw new Error("non-minimal DER length");
  return element;
}

/**
 * The subject and SubjectPublicKeyInfo of a DER CertificationRequestInfo (RFC 2986 4.1), as
 * encoded (never re-encoded, so the key can be compared byte for byte: R-3.1.1.4, T-2.1.1.2):
 * exactly one SEQUENCE { version INTEGER 0, subject Name, subjectPKInfo, attributes [0] } and
 * nothing after it. INVALID_REQUEST (field certification_request_info) for anything else.
 */
export function parseCertificationRequestInfo(info: Uint8Array): { subject: Uint8Array; spki: Uint8Array } {
  let parts: { subject: Uint8Array; spki: Uint8Array };
  try {
    const outer = derTlv(info, 0);
    if (info[0] !== 0x30 || outer.end !== info.length) throw new Error("not exactly one SEQUENCE");
    const fields: Uint8Array[] = [];
    for (let at = outer.contentStart; at < outer.end; at = derTlv(info, at).end) fields.push(info.subarray(at, derTlv(info, at).end));
    const [version, subject, spki, attributes] = fields;
    if (fields.length !== 4 || !version || !subject || !spki || !attributes) throw new Error("not four fields");
    if (!Buffer.from(version).equals(Buffer.from([0x02, 0x01, 0x00]))) throw new Error("version is not 0");
    if (subject[0] !== 0x30 || spki[0] !== 0x30 || attributes[0] !== 0xa0) throw new Error("a field has the wrong type");
    parts = { subject, spki };
  } catch (err) {
    throw badRequestInfo("not a DER CertificationRequestInfo", err);
  }
  try {
    new x509.Name(parts.subject); // a well-formed Name ...
    new x509.PublicKey(parts.spki); // ... and SubjectPublicKeyInfo
  } catch (err) {
    throw badRequestInfo("the subject or public key is not well-formed", err);
  }
  return parts;
}

/** One DER element (definite length, up to 16 MiB). */
function derOf(tag: number, ...content: Uint8Array[]): Uint8Array {
  const body = Buffer.concat(content);
  const n = body.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return new Uint8Array(Buffer.concat([Buffer.from([tag, ...length]), body]));
}

const hexDer = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));
/** DER OIDs (tag, length, content) of the CSR signature algorithms (RFC 5758, RFC 4055, RFC 8410). */
const oidHex = {
  ecdsa: { SHA256: "06082a8648ce3d040302", SHA384: "06082a8648ce3d040303", SHA512: "06082a8648ce3d040304" },
  rsa: { SHA256: "06092a864886f70d01010b", SHA384: "06092a864886f70d01010c", SHA512: "06092a864886f70d01010d" },
  hash: { SHA256: "0609608648016503040201", SHA384: "0609608648016503040202", SHA512: "0609608648016503040203" },
  rsassaPss: "06092a864886f70d01010a",
  mgf1: "06092a864886f70d010108",
  ed25519: "06032b6570",
} as const;
const saltLength = { SHA256: 32, SHA384: 48, SHA512: 64 } as const;

/**
 * The AlgorithmIdentifier of a CSR signed with `scheme` over `hash`: ecdsa-with-SHAx (no
 * parameters), shaxWithRSAEncryption (NULL parameters), RSASSA-PSS with MGF1 over the same hash
 * and a salt as long as the hash (what the crypto module uses), or Ed25519 (hash NONE).
 */
export function csrSignatureAlgorithm(scheme: SignatureScheme, hash: HashAlgorithm): Uint8Array {
  if (scheme === "ED25519" && hash === "NONE") return derOf(0x30, hexDer(oidHex.ed25519));
  if (hash === "NONE") throw new InkanError("ALGORITHM_NOT_ALLOWED", "the signature algorithm needs a hash", { field: "hash_algorithm" });
  switch (scheme) {
    case "ECDSA":
      return derOf(0x30, hexDer(oidHex.ecdsa[hash]));
    case "RSA_PKCS1_V1_5":
      return derOf(0x30, hexDer(oidHex.rsa[hash]), hexDer("0500"));
    case "RSA_PSS": {
      const hashAlgorithm = derOf(0x30, hexDer(oidHex.hash[hash]), hexDer("0500"));
      const params = derOf(
        0x30,
        derOf(0xa0, hashAlgorithm),
        derOf(0xa1, derOf(0x30, hexDer(oidHex.mgf1), hashAlgorithm)),
        derOf(0xa2, derOf(0x02, Uint8Array.from([saltLength[hash]]))),
      );
      return derOf(0x30, hexDer(oidHex.rsassaPss), params);
    }
    default:
      throw new InkanError("ALGORITHM_NOT_ALLOWED", "the signature algorithm does not fit the hash", { field: "signature_algorithm" });
  }
}

/**
 * The PKCS#10 CertificationRequest (RFC 2986 4.2): the CertificationRequestInfo exactly as
 * approved, the signature algorithm and the module's signature (DER ECDSA-Sig-Value for ECDSA).
 */
export function certificationRequest(info: Uint8Array, scheme: SignatureScheme, hash: HashAlgorithm, signature: Uint8Array): Uint8Array {
  return derOf(0x30, info, csrSignatureAlgorithm(scheme, hash), derOf(0x03, Uint8Array.from([0]), signature));
}
