/**
 * The JWE pieces of R.SAD confidentiality (R-3.2.1.2, T-2.2.1.5) that jose cannot do for us,
 * because the recipient's private key never leaves the crypto module: a strict parse of a compact
 * JWE for ECDH-ES(+A256KW) with A256GCM, the Concat KDF (RFC 7518 4.6.2), AES-256 key unwrap
 * (RFC 3394) and AES-256-GCM decryption. The key agreement itself (Z) is done by the caller, in the
 * module. Pure TypeScript over node:crypto; no policy about which keys exist lives here.
 */
import { createDecipheriv, createHash } from "node:crypto";
import { isP256Point } from "../crypto/ec-point.js";

/** The key-management algorithms accepted for a JWE to a SAM key ("RSA-OAEP" is not offered yet). */
export type JweKeyManagement = "ECDH-ES+A256KW" | "ECDH-ES";

/** A parsed compact JWE whose protected header passed the allow-list. */
export interface ParsedJwe {
  /** The first segment as sent: the AES-GCM associated data is exactly these ASCII bytes. */
  protectedB64: string;
  alg: JweKeyManagement;
  kid: string;
  cty: string | undefined;
  /** The sender's ephemeral public key, uncompressed SEC1 (0x04 || X || Y), checked on P-256. */
  epk: Uint8Array;
  apu: Uint8Array;
  apv: Uint8Array;
  /** 40 bytes (a wrapped 32-byte key) for ECDH-ES+A256KW; empty for direct ECDH-ES. */
  encryptedKey: Uint8Array;
  iv: Uint8Array;
  ciphertext: Uint8Array;
  tag: Uint8Array;
}

/** Why a JWE was refused: for the log only (the caller turns every one into the same error). */
export class JweRefused extends Error {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(reason, options);
    this.name = "JweRefused";
  }
}

/** The protected header's members (AuthorizeRequest.r_sad); every other member is refused. */
const allowedMembers = new Set(["alg", "enc", "kid", "cty", "epk", "apu", "apv"]);
const compactJwe = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const maxHeaderBytes = 2048;
const maxPartyInfoBytes = 64;
const maxKidLength = 128;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

export interface ParseOptions {
  /** The most characters the compact JWE may have; checked before anything is decoded. */
  maxBytes: number;
  /** When set, the header's "cty" must be exactly this. */
  cty?: string | undefined;
}

/**
 * Splits and checks a compact JWE: size first (before any decoding), then the shape, then the
 * protected header against the allow-list (alg ECDH-ES+A256KW or ECDH-ES, enc A256GCM, a kid, a
 * P-256 epk on the curve; no zip, jku, jwk, x5u, x5c, x5t, x5t#S256, crit or any unknown member),
 * then the lengths of the binary parts. Throws JweRefused.
 */
export function parseCompactJwe(jwe: unknown, options: ParseOptions): ParsedJwe {
  if (typeof jwe !== "string") throw new JweRefused("not a string");
  // T-2.2.1.5 / resource exhaustion: the bound holds before a single byte is decoded.
  if (jwe.length > options.maxBytes) throw new JweRefused(`longer than ${options.maxBytes} characters`);
  if (!compactJwe.test(jwe)) throw new JweRefused("not a compact JWE");
  const [protectedB64 = "", keyB64 = "", ivB64 = "", ciphertextB64 = "", tagB64 = ""] = jwe.split(".");
  if (protectedB64.length > Math.ceil((maxHeaderBytes * 4) / 3)) throw new JweRefused("protected header too large");

  let header: unknown;
  try {
    header = JSON.parse(utf8.decode(b64url(protectedB64, "protected header")));
  } catch (err) {
    throw new JweRefused("protected header is not JSON", { cause: err });
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw new JweRefused("protected header is not an object");
  const h = header as Record<string, unknown>;
  for (const member of Object.keys(h)) {
    // R-3.2.1.2: no zip (bounded plaintext), no key or certificate from the sender (jku, jwk, x5u,
    // x5c, x5t), no crit extensions: anything not on the list is refused.
    if (!allowedMembers.has(member)) throw new JweRefused(`header member "${member}" is not allowed`);
  }
  const alg = h.alg;
  if (alg !== "ECDH-ES+A256KW" && alg !== "ECDH-ES") throw new JweRefused(`alg ${JSON.stringify(alg)} is not allowed`);
  if (h.enc !== "A256GCM") throw new JweRefused(`enc ${JSON.stringify(h.enc)} is not allowed`);
  const kid = h.kid;
  if (typeof kid !== "string" || kid.length === 0 || kid.length > maxKidLength) throw new JweRefused("kid missing or malformed");
  const cty = h.cty;
  if (cty !== undefined && (typeof cty !== "string" || cty.length > 64)) throw new JweRefused("cty malformed");
  if (options.cty !== undefined && cty !== options.cty) throw new JweRefused(`cty must be ${options.cty}`);
  const epk = epkPoint(h.epk);
  const apu = partyInfo(h.apu, "apu");
  const apv = partyInfo(h.apv, "apv");

  const encryptedKey = b64url(keyB64, "encrypted key");
  if (alg === "ECDH-ES+A256KW" ? encryptedKey.length !== 40 : encryptedKey.length !== 0) throw new JweRefused("encrypted key has the wrong length");
  const iv = b64url(ivB64, "iv");
  if (iv.length !== 12) throw new JweRefused("iv is not 96 bits");
  const tag = b64url(tagB64, "tag");
  if (tag.length !== 16) throw new JweRefused("tag is not 128 bits");
  const ciphertext = b64url(ciphertextB64, "ciphertext");
  return { protectedB64, alg, kid, cty, epk, apu, apv, encryptedKey, iv, ciphertext, tag };
}

/**
 * The content of a parsed JWE, given Z (the ECDH shared secret of the recipient key and the epk):
 * Concat KDF, then AES-256 key unwrap for ECDH-ES+A256KW, then AES-256-GCM with the protected
 * header as associated data. Throws JweRefused when anything does not verify.
 */
export function openParsedJwe(jwe: ParsedJwe, z: Uint8Array): Uint8Array {
  // RFC 7518 4.6.2: AlgorithmID is "enc" for direct key agreement, "alg" when a key is wrapped.
  const derived = concatKdf(z, jwe.alg === "ECDH-ES" ? "A256GCM" : jwe.alg, jwe.apu, jwe.apv);
  let cek: Uint8Array;
  if (jwe.alg === "ECDH-ES") {
    cek = derived;
  } else {
    try {
      const unwrap = createDecipheriv("id-aes256-wrap", derived, Buffer.from("a6a6a6a6a6a6a6a6", "hex"));
      cek = Buffer.concat([unwrap.update(jwe.encryptedKey), unwrap.final()]);
    } catch (err) {
      throw new JweRefused("key unwrap failed", { cause: err });
    }
    if (cek.length !== 32) throw new JweRefused("unwrapped key is not 256 bits");
  }
  try {
    const gcm = createDecipheriv("aes-256-gcm", cek, jwe.iv, { authTagLength: 16 });
    gcm.setAAD(Buffer.from(jwe.protectedB64, "ascii"));
    gcm.setAuthTag(jwe.tag);
    return new Uint8Array(Buffer.concat([gcm.update(jwe.ciphertext), gcm.final()]));
  } catch (err) {
    throw new JweRefused("content decryption failed", { cause: err });
  }
}

/**
 * The Concat KDF of RFC 7518 4.6.2 (NIST SP 800-56A single-step, SHA-256) for a 256-bit key:
 * SHA-256(counter 1 || Z || AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo), each info
 * field a 32-bit big-endian length followed by its bytes, SuppPubInfo = keydatalen 256 in bits.
 */
export function concatKdf(z: Uint8Array, algorithmId: string, apu: Uint8Array, apv: Uint8Array): Uint8Array {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const withLength = (bytes: Uint8Array) => Buffer.concat([u32(bytes.length), bytes]);
  return new Uint8Array(
    createHash("sha256")
      .update(u32(1))
      .update(z)
      .update(withLength(Buffer.from(algorithmId, "ascii")))
      .update(withLength(apu))
      .update(withLength(apv))
      .update(u32(256))
      .digest(),
  );
}

/** Decodes canonical unpadded base64url (the only form RFC 7515 allows); anything else is refused. */
function b64url(text: string, what: string): Uint8Array {
  const bytes = Buffer.from(text, "base64url");
  if (bytes.toString("base64url") !== text) throw new JweRefused(`${what} is not canonical base64url`);
  return new Uint8Array(bytes);
}

/** The epk as an uncompressed point: exactly kty EC, crv P-256, 32-byte x and y, on the curve. */
function epkPoint(epk: unknown): Uint8Array {
  if (typeof epk !== "object" || epk === null || Array.isArray(epk)) throw new JweRefused("epk missing or not an object");
  const e = epk as Record<string, unknown>;
  const members = Object.keys(e).sort().join(",");
  if (members !== "crv,kty,x,y") throw new JweRefused("epk must have exactly kty, crv, x and y");
  if (e.kty !== "EC" || e.crv !== "P-256") throw new JweRefused("epk is not an EC P-256 key");
  if (typeof e.x !== "string" || typeof e.y !== "string") throw new JweRefused("epk coordinates are not strings");
  const x = b64url(e.x, "epk.x");
  const y = b64url(e.y, "epk.y");
  if (x.length !== 32 || y.length !== 32) throw new JweRefused("epk coordinates are not 32 bytes");
  const point = new Uint8Array(65);
  point[0] = 0x04;
  point.set(x, 1);
  point.set(y, 33);
  // R-3.2.1.2: the 2017 invalid-curve attack on JOSE libraries; the module call checks again.
  if (!isP256Point(point)) throw new JweRefused("epk is not on P-256");
  return point;
}

function partyInfo(value: unknown, name: string): Uint8Array {
  if (value === undefined) return new Uint8Array(0);
  if (typeof value !== "string" || value.length > Math.ceil((maxPartyInfoBytes * 4) / 3)) throw new JweRefused(`${name} malformed or too long`);
  return b64url(value, name);
}
