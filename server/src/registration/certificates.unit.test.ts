import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { execFileSync, spawnSync } from "node:child_process";
import { constants, generateKeyPairSync, sign, webcrypto, type KeyObject } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import { InkanError } from "../errors.js";
import { certificateState, certificationRequest, csrSignatureAlgorithm, parseCertificateChain, parseCertificationRequestInfo, rfc4514, storedCertificate, validateSigningChain } from "./certificates.js";
import { certificationRequestInfo, csrDefaults, schemeFitsKey, subjectNameDer } from "./certificates-csr.js";

// The chain rules of ImportCertificate (R-3.1.1.4, T-2.1.1.2, T-2.1.3.1, T-2.1.3.2) as pure logic,
// on real certificates made here and a fixed clock.
x509.cryptoProvider.set(webcrypto as never);
const day = 24 * 60 * 60 * 1000;
const now = new Date("2026-06-01T00:00:00Z");

interface Issued {
  der: Uint8Array;
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
}

interface Make {
  subject: string | x509.Name;
  issuer?: Issued;
  ca?: boolean;
  pathLength?: number;
  keyUsage?: number;
  notBefore?: Date;
  notAfter?: Date;
  hash?: "SHA-1" | "SHA-256";
  extensions?: x509.Extension[];
}

let serial = 0;
/** A certificate signed by `issuer` (self-signed without one), ECDSA P-256. */
async function make(m: Make): Promise<Issued> {
  const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const ca = m.ca ?? false;
  const usage = m.keyUsage ?? (ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.nonRepudiation);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: (++serial).toString(16).padStart(4, "0"),
    subject: m.subject,
    issuer: m.issuer ? m.issuer.cert.subjectName : m.subject,
    notBefore: m.notBefore ?? new Date(now.getTime() - day),
    notAfter: m.notAfter ?? new Date(now.getTime() + 365 * day),
    publicKey: keys.publicKey,
    signingKey: (m.issuer?.keys ?? keys).privateKey,
    signingAlgorithm: { name: "ECDSA", hash: m.hash ?? "SHA-256" },
    extensions: [
      new x509.BasicConstraintsExtension(ca, m.pathLength, true),
      ...(usage ? [new x509.KeyUsagesExtension(usage, true)] : []),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create((m.issuer?.keys ?? keys).publicKey),
      ...(m.extensions ?? []),
    ],
  });
  return { der: new Uint8Array(cert.rawData), cert, keys };
}

const refusal = (fn: () => void): { code: string; field: string | undefined } => {
  try {
    fn();
  } catch (err) {
    if (err instanceof InkanError) return { code: err.code, field: err.field };
    throw err;
  }
  throw new Error("expected a refusal");
};
const validate = (chain: Issued[], anchors: Issued[], at = now) => validateSigningChain(parseCertificateChain(chain.map((c) => c.der)), anchors.map((a) => a.der), at);

let root: Issued;
let intermediate: Issued;
let signer: Issued;

beforeAll(async () => {
  root = await make({ subject: "CN=Root CA, O=Test", ca: true });
  intermediate = await make({ subject: "CN=Issuing CA, O=Test", issuer: root, ca: true, pathLength: 0 });
  signer = await make({ subject: "C=JP, O=Example Corp, CN=Sato Hanako", issuer: intermediate });
});

describe("validateSigningChain (R-3.1.1.4, T-2.1.1.2, T-2.1.3.2)", () => {
  it("T-2.1.3.2: accepts a chain to a trusted root (root omitted or sent), or to a trusted intermediate (with the root after it)", () => {
    expect(() => validate([signer, intermediate], [root])).not.toThrow();
    expect(() => validate([signer, intermediate, root], [root])).not.toThrow();
    expect(() => validate([signer], [intermediate])).not.toThrow();
    expect(() => validate([signer, intermediate, root], [intermediate])).not.toThrow();
  });

  it("T-2.1.3.2: refuses a chain that reaches no trusted CA, an empty trust list, and a CA sent along but not trusted", async () => {
    const other = await make({ subject: "CN=Root CA, O=Test", ca: true }); // the same name, another key
    expect(refusal(() => validate([signer, intermediate], [other]))).toEqual({ code: "CERTIFICATE_INVALID", field: "certificate_chain[1]" });
    expect(refusal(() => validate([signer, intermediate, root], [other])).code).toBe("CERTIFICATE_INVALID");
    expect(refusal(() => validate([signer, intermediate], [])).code).toBe("CERTIFICATE_INVALID");
    expect(refusal(() => validate([signer], [root])).code).toBe("CERTIFICATE_INVALID"); // the intermediate is missing
  });

  it("T-2.1.1.2: refuses a chain out of order and a certificate whose signature was altered", () => {
    expect(refusal(() => validate([intermediate, signer], [root])).code).toBe("CERTIFICATE_INVALID");
    const altered = { ...signer, der: Uint8Array.from(signer.der) };
    altered.der[altered.der.length - 5]! ^= 0x01; // inside the signature value
    expect(refusal(() => validate([altered, intermediate], [root]))).toEqual({ code: "CERTIFICATE_INVALID", field: "certificate_chain[0]" });
  });

  it("T-2.1.3.2: refuses a path longer than a CA's path length, an issuer that is not a CA, and an end-entity certificate that is a CA", async () => {
    const second = await make({ subject: "CN=Second Issuing CA", issuer: intermediate, ca: true });
    const deep = await make({ subject: "CN=Deep Signer", issuer: second });
    expect(refusal(() => validate([deep, second, intermediate], [root])).code).toBe("CERTIFICATE_INVALID");
    const fromSigner = await make({ subject: "CN=Issued by an end entity", issuer: signer });
    expect(refusal(() => validate([fromSigner, signer, intermediate], [root])).code).toBe("CERTIFICATE_INVALID");
    const caAsSigner = await make({ subject: "CN=A CA", issuer: intermediate, ca: true, keyUsage: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.digitalSignature });
    expect(refusal(() => validate([caAsSigner, intermediate], [root]))).toEqual({ code: "CERTIFICATE_INVALID", field: "certificate_chain[0]" });
  });

  it("T-2.1.3.2: refuses a key usage without digitalSignature or nonRepudiation, and no key usage at all; accepts either bit", async () => {
    for (const keyUsage of [x509.KeyUsageFlags.keyEncipherment, 0]) {
      const c = await make({ subject: "CN=Not for signing", issuer: intermediate, keyUsage });
      expect(refusal(() => validate([c, intermediate], [root])).code).toBe("CERTIFICATE_INVALID");
    }
    for (const keyUsage of [x509.KeyUsageFlags.digitalSignature, x509.KeyUsageFlags.nonRepudiation]) {
      const c = await make({ subject: "CN=For signing", issuer: intermediate, keyUsage });
      expect(() => validate([c, intermediate], [root])).not.toThrow();
    }
  });

  it("T-2.1.3.2: refuses an extended key usage for TLS only; accepts document signing, S/MIME and anyExtendedKeyUsage", async () => {
    const eku = (...usages: string[]) => [new x509.ExtendedKeyUsageExtension(usages, false)];
    for (const usages of [["1.3.6.1.5.5.7.3.1"], ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]]) {
      const c = await make({ subject: "CN=TLS only", issuer: intermediate, keyUsage: x509.KeyUsageFlags.digitalSignature, extensions: eku(...usages) });
      expect(refusal(() => validate([c, intermediate], [root]))).toEqual({ code: "CERTIFICATE_INVALID", field: "certificate_chain[0]" });
    }
    for (const usages of [["1.3.6.1.5.5.7.3.36"], ["1.3.6.1.5.5.7.3.4"], ["2.5.29.37.0"], ["1.3.6.1.5.5.7.3.2", "1.2.840.113583.1.1.5"]]) {
      const c = await make({ subject: "CN=Document signer", issuer: intermediate, extensions: eku(...usages) });
      expect(() => validate([c, intermediate], [root])).not.toThrow();
    }
  });

  it("T-2.1.3.2: refuses any certificate of the path outside its validity period, and an expired trusted CA", async () => {
    expect(refusal(() => validate([signer, intermediate], [root], new Date(now.getTime() + 400 * day))).code).toBe("CERTIFICATE_INVALID");
    expect(refusal(() => validate([signer, intermediate], [root], new Date(now.getTime() - 2 * day))).code).toBe("CERTIFICATE_INVALID");
    const shortIntermediate = await make({ subject: "CN=Short-lived CA", issuer: root, ca: true, notAfter: new Date(now.getTime() - 1000) });
    const c = await make({ subject: "CN=Under an expired CA", issuer: shortIntermediate });
    expect(refusal(() => validate([c, shortIntermediate], [root]))).toEqual({ code: "CERTIFICATE_INVALID", field: "certificate_chain[1]" });
    const oldRoot = await make({ subject: "CN=Old Root", ca: true, notBefore: new Date(now.getTime() - 10 * day), notAfter: new Date(now.getTime() - day) });
    const underOld = await make({ subject: "CN=Under an old root", issuer: oldRoot, notBefore: new Date(now.getTime() - 5 * day) });
    expect(refusal(() => validate([underOld], [oldRoot])).code).toBe("CERTIFICATE_INVALID");
  });

  it("T-2.1.3.2: refuses a certificate signed over SHA-1, and one with a critical extension it does not understand", async () => {
    const sha1 = await make({ subject: "CN=SHA-1 signer", issuer: intermediate, hash: "SHA-1" });
    expect(refusal(() => validate([sha1, intermediate], [root]))).toEqual({ code: "CERTIFICATE_INVALID", field: "certificate_chain[0]" });
    const odd = await make({ subject: "CN=Odd", issuer: intermediate, extensions: [new x509.Extension("1.3.6.1.4.1.99999.1", true, new Uint8Array([5, 0]))] });
    expect(refusal(() => validate([odd, intermediate], [root])).code).toBe("CERTIFICATE_INVALID");
    const fine = await make({ subject: "CN=Fine", issuer: intermediate, extensions: [new x509.Extension("1.3.6.1.4.1.99999.1", false, new Uint8Array([5, 0]))] });
    expect(() => validate([fine, intermediate], [root])).not.toThrow();
  });
});

describe("parseCertificateChain and what is stored", () => {
  it("T-2.1.3.1: refuses PEM, trailing bytes and garbage, naming the certificate", () => {
    const pem = new TextEncoder().encode(signer.cert.toString("pem"));
    expect(refusal(() => parseCertificateChain([signer.der, pem]))).toEqual({ code: "CERTIFICATE_INVALID", field: "certificate_chain[1]" });
    expect(refusal(() => parseCertificateChain([Uint8Array.from([...signer.der, 0])])).field).toBe("certificate_chain[0]");
    expect(refusal(() => parseCertificateChain([Uint8Array.from([0x30, 0x03, 0x02, 0x01, 0x00])])).code).toBe("CERTIFICATE_INVALID");
  });

  it("R-3.1.1.4: keeps the SubjectPublicKeyInfo exactly as encoded in the certificate", async () => {
    const [parsed] = parseCertificateChain([signer.der]);
    expect(Buffer.from(parsed!.spki)).toEqual(Buffer.from(await webcrypto.subtle.exportKey("spki", signer.keys.publicKey)));
  });

  it("stores the end-entity facts: RFC 4514 names as openssl prints them, serial without leading zeros, validity, status by date", () => {
    const stored = storedCertificate(parseCertificateChain([signer.der, intermediate.der]));
    const openssl = execFileSync("openssl", ["x509", "-inform", "DER", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253"], { input: signer.der }).toString();
    expect(openssl).toContain(`subject=${stored.subjectDn}\n`);
    expect(openssl).toContain(`issuer=${stored.issuerDn}\n`);
    expect(stored).toMatchObject({ subjectDn: "CN=Sato Hanako,O=Example Corp,C=JP", issuerDn: "O=Test,CN=Issuing CA", serialNumber: signer.cert.serialNumber.replace(/^0+/, "") });
    expect(stored.serialNumber).not.toMatch(/^0/);
    expect(stored.chain).toEqual([Buffer.from(signer.der).toString("base64"), Buffer.from(intermediate.der).toString("base64")]);
    expect(certificateState(stored, now)).toBe("VALID");
    expect(certificateState(stored, new Date(now.getTime() + 400 * day))).toBe("EXPIRED");
    expect(certificateState(stored, new Date(now.getTime() - 2 * day))).toBe("NOT_YET_VALID");
  });

  it("rfc4514 escapes special characters, keeps UTF-8, joins multi-valued RDNs with + and writes other types as #hex", () => {
    const hashLeading = { utf8String: '#1 "Boss" <x>;' } as unknown as string; // a leading "#" would otherwise be read as hex
    const name = new x509.Name([{ C: ["JP"] }, { O: ["Doe, Smith & Partners+Co"] }, { CN: [hashLeading], SN: ["佐藤"] }, { CN: ["trailing "] }]);
    expect(rfc4514(new Uint8Array(name.toArrayBuffer()))).toBe(
      "CN=trailing\\ ,CN=\\#1 \\\"Boss\\\" \\<x\\>\\;+2.5.4.4=#0c06e4bd90e897a4,O=Doe\\, Smith & Partners\\+Co,C=JP",
    );
  });
});

describe("PrepareCsr's subject and CertificationRequestInfo (R-3.1.1.4, R-3.1.3.2)", () => {
  it("R-3.1.3.2: an RFC 4514 subject becomes the DER Name in reverse order (C first), PrintableString for C, UTF8String otherwise, and reads back the same", () => {
    for (const subject of [
      "CN=Sato Hanako,O=Example Corp,C=JP",
      "CN=佐藤花子,OU=営業部,O=株式会社例,C=JP",
      "CN=Doe\\, John+UID=jdoe,O=A\\+B \\<C\\>,DC=example,DC=jp",
      "CN=\\#1 \\\"Boss\\\",O=trailing\\ ",
    ]) {
      expect(rfc4514(subjectNameDer(subject)), subject).toBe(subject);
    }
    const der = subjectNameDer("CN=Sato Hanako,O=Example Corp,C=JP");
    const text = execFileSync("openssl", ["asn1parse", "-inform", "DER"], { input: der }).toString();
    expect(text).toMatch(/PRINTABLESTRING\s+:JP[\s\S]*UTF8STRING\s+:Example Corp[\s\S]*UTF8STRING\s+:Sato Hanako/);
    // Hex escapes are UTF-8 bytes; "#" values are DER taken as given; spaces after separators are tolerated.
    expect(rfc4514(subjectNameDer("CN=\\E4\\BD\\90\\E8\\97\\A4, C=JP"))).toBe("CN=佐藤,C=JP");
    expect(rfc4514(subjectNameDer("2.5.4.5=#130431323334,CN=x"))).toBe("2.5.4.5=#130431323334,CN=x");
    expect(rfc4514(subjectNameDer("serialNumber=1234,CN=x"))).toBe("2.5.4.5=#130431323334,CN=x"); // PrintableString by definition
  });

  it("R-3.1.3.2: refuses what is not an RFC 4514 name, naming the subject field", () => {
    for (const bad of ["Sato", "=x", "XX=1", "CN=a;b", "CN=a\"b", "CN= a", "CN=a ", "CN=", "CN=a,", "CN=a,,O=b", "CN=\\ZZ", "CN=\\ff", "C=Japan", "C=jp", "2.5.4.3=#zz", "2.5.4.3=#0c05ab"]) {
      expect(refusal(() => subjectNameDer(bad)), bad).toEqual({ code: "INVALID_REQUEST", field: "subject" });
    }
  });

  it("R-3.1.1.4: the CertificationRequestInfo is version 0, the subject, the SPKI exactly as given and no attributes", () => {
    const subject = subjectNameDer("CN=x");
    const spki = Uint8Array.from([0x30, 0x03, 0x02, 0x01, 0x07]);
    expect(Buffer.from(certificationRequestInfo(subject, spki)).toString("hex")).toBe(`30${(3 + subject.length + spki.length + 2).toString(16).padStart(2, "0")}020100${Buffer.from(subject).toString("hex")}3003020107a000`);
  });

  it("picks each key's default hash and scheme, and refuses schemes that do not fit the key", () => {
    expect(csrDefaults("EC_P384")).toEqual({ hash: "SHA384", scheme: "ECDSA" });
    expect(csrDefaults("EC_P521")).toEqual({ hash: "SHA512", scheme: "ECDSA" });
    expect(csrDefaults("RSA_3072")).toEqual({ hash: "SHA256", scheme: "RSA_PKCS1_V1_5" });
    expect(csrDefaults("ED25519")).toEqual({ hash: "NONE", scheme: "ED25519" });
    expect(schemeFitsKey("RSA_2048", "RSA_PSS", "SHA256")).toBe(true);
    expect(schemeFitsKey("EC_P256", "RSA_PSS", "SHA256")).toBe(false);
    expect(schemeFitsKey("EC_P256", "ECDSA", "NONE")).toBe(false);
    expect(schemeFitsKey("ED25519", "ED25519", "SHA256")).toBe(false);
  });
});

describe("CreateCsr's PKCS#10: the approved CertificationRequestInfo read back, and the signed request (T-2.1.3.1, R-3.1.3.2)", () => {
  const spkiOf = (key: KeyObject) => new Uint8Array(key.export({ type: "spki", format: "der" }));
  const infoFor = (key: KeyObject, subject = "CN=Sato Hanako,O=Example Corp,C=JP") => certificationRequestInfo(subjectNameDer(subject), spkiOf(key));

  it("T-2.1.3.1: reads back the subject and the SubjectPublicKeyInfo byte for byte", () => {
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const parts = parseCertificationRequestInfo(infoFor(publicKey, "CN=x,C=JP"));
    expect(Buffer.from(parts.spki)).toEqual(Buffer.from(spkiOf(publicKey)));
    expect(rfc4514(parts.subject)).toBe("CN=x,C=JP");
  });

  it("T-2.1.3.1: refuses anything but exactly one DER CertificationRequestInfo, naming certification_request_info", () => {
    const info = Buffer.from(infoFor(generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey));
    expect(info[1]).toBe(0x81); // long form, one length octet: the non-minimal form below is two
    const nonMinimal = Buffer.concat([Buffer.from([0x30, 0x82, 0x00, info[2]!]), info.subarray(3)]);
    const version = info.indexOf(Buffer.from([0x02, 0x01, 0x00]));
    const version1 = Buffer.from(info);
    version1[version + 2] = 1;
    const noAttributes = Buffer.concat([Buffer.from([0x30, 0x81, info[2]! - 2]), info.subarray(3, info.length - 2)]);
    const notAName = Buffer.from(info);
    notAName[version + 3] = 0x31; // the subject as a SET
    const badKey = certificationRequestInfo(subjectNameDer("CN=x"), Uint8Array.from([0x30, 0x03, 0x02, 0x01, 0x07]));
    for (const bad of [Buffer.alloc(0), Buffer.from("30", "hex"), Buffer.concat([info, Buffer.from([0])]), info.subarray(0, -1), nonMinimal, version1, noAttributes, notAName, badKey]) {
      expect(refusal(() => parseCertificationRequestInfo(bad)), bad.toString("hex").slice(0, 24)).toEqual({ code: "INVALID_REQUEST", field: "certification_request_info" });
    }
  });

  it("R-3.1.3.2: the assembled request verifies with openssl for ECDSA, RSA PKCS#1 v1.5, RSA-PSS and Ed25519 (signatures from node:crypto)", () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const ed = generateKeyPairSync("ed25519");
    const cases = [
      { pair: ec, scheme: "ECDSA", hash: "SHA384", sign: (d: Uint8Array) => sign("sha384", d, ec.privateKey) },
      { pair: rsa, scheme: "RSA_PKCS1_V1_5", hash: "SHA256", sign: (d: Uint8Array) => sign("sha256", d, rsa.privateKey) },
      { pair: rsa, scheme: "RSA_PSS", hash: "SHA512", sign: (d: Uint8Array) => sign("sha512", d, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 }) },
      { pair: ed, scheme: "ED25519", hash: "NONE", sign: (d: Uint8Array) => sign(null, d, ed.privateKey) },
    ] as const;
    // OpenSSL 3.0's `req -verify` exits 0 even when the signature fails: read its verdict instead.
    const opensslVerify = (csr: Uint8Array) => {
      const out = spawnSync("openssl", ["req", "-inform", "DER", "-verify", "-noout", "-subject", "-nameopt", "RFC2253"], { input: csr });
      return { ok: out.status === 0 && /verify OK/.test(out.stderr.toString()) && !/failure/.test(out.stderr.toString()), text: out.stdout.toString() };
    };
    for (const c of cases) {
      const info = infoFor(c.pair.publicKey);
      const verified = opensslVerify(certificationRequest(info, c.scheme, c.hash, c.sign(info)));
      expect(verified.ok, c.scheme).toBe(true);
      expect(verified.text, c.scheme).toContain("subject=CN=Sato Hanako,O=Example Corp,C=JP");
      // A signature over other bytes does not verify: openssl really checked it.
      const forged = certificationRequest(info, c.scheme, c.hash, c.sign(infoFor(c.pair.publicKey, "CN=Mallory")));
      expect(opensslVerify(forged).ok, c.scheme).toBe(false);
    }
  });

  it("refuses a scheme without a hash (or Ed25519 with one)", () => {
    expect(refusal(() => csrSignatureAlgorithm("ECDSA", "NONE"))).toEqual({ code: "ALGORITHM_NOT_ALLOWED", field: "hash_algorithm" });
    expect(refusal(() => csrSignatureAlgorithm("ED25519", "SHA256"))).toEqual({ code: "ALGORITHM_NOT_ALLOWED", field: "signature_algorithm" });
  });
});
