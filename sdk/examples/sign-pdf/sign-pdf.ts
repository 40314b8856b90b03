/**
 * Example SCA: PAdES baseline B-B signatures on PDFs, made by an Inkan SAM through @inkan/sdk.
 *
 * For each PDF: pdf-lib + @signpdf/placeholder-pdf-lib add a signature dictionary
 * (SubFilter ETSI.CAdES.detached) with a /Contents placeholder; the ByteRange is fixed; the signed
 * attributes (content-type, message-digest of the ByteRange, signing-certificate-v2; PAdES puts the
 * signing time in the dictionary's /M, not in a signing-time attribute) are DER-encoded and hashed:
 * that hash is the DTBS/R. All PDFs of a batch go into one transaction, so the signer authorizes
 * once; the signatures come back verified by the SDK (T-2.2.1.8) and are wrapped in CMS SignedData
 * (@peculiar/asn1-cms) with the signing certificate and embedded into /Contents.
 */
import { createHash } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Certificate } from "@peculiar/asn1-x509";
import {
  Attribute, CertificateChoices, CertificateSet, ContentInfo, DigestAlgorithmIdentifiers, EncapsulatedContentInfo, IssuerAndSerialNumber,
  SignedData, SignerIdentifier, SignerInfo, SignerInfos, id_data, id_signedData,
} from "@peculiar/asn1-cms";
import { pdflibAddPlaceholder } from "@signpdf/placeholder-pdf-lib";
import { SUBFILTER_ETSI_CADES_DETACHED, findByteRange, removeTrailingNewLine } from "@signpdf/utils";
import { PDFDocument } from "pdf-lib";
import { HashAlgorithm, describeAuthorization, type InkanClient, type SadChallenge, type SignProgress } from "@inkan/sdk";

const oid = {
  contentType: "1.2.840.113549.1.9.3",
  messageDigest: "1.2.840.113549.1.9.4",
  signingCertificateV2: "1.2.840.113549.1.9.16.2.47",
  sha256: "2.16.840.1.101.3.4.2.1",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  sha256WithRsa: "1.2.840.113549.1.1.11",
  ecPublicKey: "1.2.840.10045.2.1",
};
/** Room for the CMS in /Contents (bytes): certificate chain plus signature, with margin. */
const signatureLength = 16_384;

export interface PreparedPdf {
  /** The PDF with its ByteRange fixed and an empty /Contents. */
  pdf: Buffer;
  /** Where /Contents' hex string starts ("<") and how many hex digits it holds. */
  contentsAt: number;
  contentsHexLength: number;
  /** The DER SET OF signed attributes; its SHA-256 is the DTBS/R. */
  signedAttributes: Attribute[];
  dtbsr: Uint8Array;
}

export interface PdfSigner {
  /** The signing certificate (DER), then its issuers; the first must be the credential's. */
  chain: Uint8Array[];
  /** Signer's name, reason and location shown by PDF readers. */
  name: string;
  reason?: string;
  location?: string;
}

/**
 * Adds the signature placeholder and computes the DTBS/R of one PDF (PAdES B-B, SHA-256).
 *
 * @example
 * const prepared = await preparePdf(readFileSync("in.pdf"), { chain, name: "Sato Hanako" });
 */
export async function preparePdf(input: Uint8Array, signer: PdfSigner): Promise<PreparedPdf> {
  const doc = await PDFDocument.load(input);
  pdflibAddPlaceholder({
    pdfDoc: doc,
    reason: signer.reason ?? "Approved",
    contactInfo: "",
    name: signer.name,
    location: signer.location ?? "",
    signatureLength,
    subFilter: SUBFILTER_ETSI_CADES_DETACHED,
    signingTime: new Date(), // the dictionary's /M: PAdES B-B's claimed signing time
  });
  let pdf = removeTrailingNewLine(Buffer.from(await doc.save({ useObjectStreams: false })));
  const { byteRangePlaceholder, byteRangePlaceholderPosition } = findByteRange(pdf);
  if (byteRangePlaceholder === undefined || byteRangePlaceholderPosition === undefined) throw new Error("no ByteRange placeholder");
  const byteRangeEnd = byteRangePlaceholderPosition + byteRangePlaceholder.length;
  const contentsAt = pdf.indexOf("<", pdf.indexOf("/Contents ", byteRangeEnd));
  const contentsEnd = pdf.indexOf(">", contentsAt);
  const range = [0, contentsAt, contentsEnd + 1, pdf.length - (contentsEnd + 1)];
  const actual = `/ByteRange [${range.join(" ")}]`.padEnd(byteRangePlaceholder.length, " ");
  pdf = Buffer.concat([pdf.subarray(0, byteRangePlaceholderPosition), Buffer.from(actual), pdf.subarray(byteRangeEnd)]);
  const covered = createHash("sha256").update(pdf.subarray(0, range[1])).update(pdf.subarray(range[2]!)).digest();
  const signedAttributes = padesSignedAttributes(covered, signer.chain[0]!);
  return {
    pdf,
    contentsAt,
    contentsHexLength: contentsEnd - contentsAt - 1,
    signedAttributes,
    dtbsr: new Uint8Array(createHash("sha256").update(derSetOf(signedAttributes)).digest()),
  };
}

/**
 * Puts the CMS SignedData around `signature` (over `prepared.dtbsr`) into the PDF's /Contents.
 *
 * @example
 * writeFileSync("out.pdf", embedSignature(prepared, signature, chain));
 */
export function embedSignature(prepared: PreparedPdf, signature: Uint8Array, chain: Uint8Array[]): Buffer {
  const cms = Buffer.from(cmsSignedData(prepared.signedAttributes, signature, chain)).toString("hex");
  if (cms.length > prepared.contentsHexLength) throw new Error("the CMS does not fit the /Contents placeholder");
  const hex = cms.padEnd(prepared.contentsHexLength, "0");
  const pdf = Buffer.from(prepared.pdf);
  pdf.write(hex, prepared.contentsAt + 1, "latin1");
  return pdf;
}

/**
 * The detached CMS SignedData (CAdES-B-B shape) for signed attributes and their signature.
 *
 * @example
 * const der = cmsSignedData(prepared.signedAttributes, signature, chain); // openssl cms -verify -binary -content ...
 */
export function cmsSignedData(signedAttributes: Attribute[], signature: Uint8Array, chain: Uint8Array[]): Uint8Array {
  const certificates = chain.map((der) => AsnConvert.parse(der, Certificate));
  const leaf = certificates[0]!;
  const isEc = leaf.tbsCertificate.subjectPublicKeyInfo.algorithm.algorithm === oid.ecPublicKey;
  const digestAlgorithm = new AlgorithmIdentifier({ algorithm: oid.sha256 });
  const signerInfo = new SignerInfo({
    version: 1,
    sid: new SignerIdentifier({ issuerAndSerialNumber: new IssuerAndSerialNumber({ issuer: leaf.tbsCertificate.issuer, serialNumber: leaf.tbsCertificate.serialNumber }) }),
    digestAlgorithm,
    signedAttrs: signedAttributes,
    signatureAlgorithm: isEc ? new AlgorithmIdentifier({ algorithm: oid.ecdsaWithSha256 }) : new AlgorithmIdentifier({ algorithm: oid.sha256WithRsa, parameters: null }),
    signature: new OctetString(signature),
  });
  const signedData = new SignedData({
    version: 1,
    digestAlgorithms: new DigestAlgorithmIdentifiers([digestAlgorithm]),
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_data }), // detached: no eContent
    certificates: new CertificateSet(certificates.map((certificate) => new CertificateChoices({ certificate }))),
    signerInfos: new SignerInfos([signerInfo]),
  });
  return new Uint8Array(AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signedData) })));
}

export interface SignPdfsOptions {
  signerId: string;
  credentialId: string;
  /** What the signer's device shows, e.g. "Invoices 2026-11, 12 PDFs". */
  description: string;
  /** Relays the challenge to the signer's device and returns its R.SAD. */
  authorize: (challenge: SadChallenge, summary: string) => Promise<string>;
  name: string;
  onProgress?: (p: SignProgress) => void;
}

/**
 * Signs PDFs with one authorization: one transaction whose DTBS/R are the PDFs' signed-attribute
 * hashes. Returns the signed PDFs in input order.
 *
 * @example
 * const [signed] = await signPdfs(inkan, [readFileSync("contract.pdf")], { signerId, credentialId,
 *   description: "Contract 42", name: "Sato Hanako", authorize: (ch) => askSignersDevice(ch) });
 */
export async function signPdfs(inkan: InkanClient, pdfs: Uint8Array[], o: SignPdfsOptions): Promise<Buffer[]> {
  const credential = await inkan.getCredential(o.credentialId);
  const chain = credential.certificate?.chain ?? [];
  if (!chain.length) throw new Error("the credential has no certificate yet");
  const prepared = [];
  for (const pdf of pdfs) prepared.push(await preparePdf(pdf, { chain, name: o.name }));
  const tx = await inkan.beginTransaction({
    signerId: o.signerId, credentialId: o.credentialId, description: o.description, hashAlgorithm: HashAlgorithm.SHA256, hashes: prepared.map((p) => p.dtbsr),
  });
  // The SAM signed the challenge (T-2.2.1.7); a signer's device checks it against the key it pinned, here the SCA's own GetInfo.
  const challengeSigningKey = (await inkan.getInfo()).challengeSigningKey!;
  const summary = await describeAuthorization(tx.challenge, { challengeSigningKey, hashes: prepared.map((p) => p.dtbsr) });
  await tx.authorize(await o.authorize(tx.challenge, summary.text));
  const signatures = await tx.signAll(o.onProgress ? { onProgress: o.onProgress } : {});
  return prepared.map((p, i) => embedSignature(p, signatures[i]!, chain));
}

/** PAdES B-B signed attributes over the ByteRange digest, in DER SET OF order. */
function padesSignedAttributes(contentDigest: Uint8Array, certificate: Uint8Array): Attribute[] {
  const certHash = createHash("sha256").update(certificate).digest();
  const attributes = [
    new Attribute({ attrType: oid.contentType, attrValues: [der(0x06, oidBytes(id_data))] }),
    new Attribute({ attrType: oid.messageDigest, attrValues: [der(0x04, contentDigest)] }),
    // SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2 { certHash (SHA-256, the default) } }
    new Attribute({ attrType: oid.signingCertificateV2, attrValues: [der(0x30, der(0x30, der(0x30, der(0x04, certHash))))] }),
  ];
  const encoded = attributes.map((a) => ({ a, bytes: Buffer.from(AsnConvert.serialize(a)) }));
  encoded.sort((x, y) => Buffer.compare(x.bytes, y.bytes)); // DER: SET OF elements in ascending order
  return encoded.map((e) => e.a);
}

function derSetOf(attributes: Attribute[]): Uint8Array {
  return new Uint8Array(der(0x31, Buffer.concat(attributes.map((a) => Buffer.from(AsnConvert.serialize(a))))));
}

/** One DER TLV as an ArrayBuffer (the shape asn1-cms takes for attribute values). */
function der(tag: number, content: Uint8Array | ArrayBuffer): ArrayBuffer {
  const body = Buffer.from(content instanceof ArrayBuffer ? new Uint8Array(content) : content);
  const n = body.length;
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  const out = Buffer.concat([Buffer.from([tag]), length, body]);
  return out.buffer.slice(out.byteOffset, out.byteOffset + out.length) as ArrayBuffer;
}

function oidBytes(dotted: string): Uint8Array {
  const parts = dotted.split(".").map(Number);
  const out = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack = [p & 0x7f];
    for (let v = p >>> 7; v > 0; v >>>= 7) stack.unshift((v & 0x7f) | 0x80);
    out.push(...stack);
  }
  return Uint8Array.from(out);
}
