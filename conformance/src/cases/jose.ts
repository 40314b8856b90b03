/**
 * Hand-made JOSE objects for the attack cases: compact JWS with any header, and compact JWE
 * (ECDH-ES+A256KW, A256GCM) with any protected header and any "epk", built from node:crypto so that
 * no JOSE library's own safety checks stand between the attacker and the SAM.
 */
import { createCipheriv, createECDH, createHash, createHmac, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { deflateRawSync } from "node:zlib";
import type { DeviceKey, SamPublicKey } from "@inkan/sdk";
import type { SamEncryptionKey } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import type { JWK } from "jose";

export const b64 = (b: Uint8Array | string) => Buffer.from(b).toString("base64url");

/** A compact JWS over `claims` with any protected header, signed ES256 with `key` (WebCrypto). */
export async function rawJws(key: DeviceKey["privateKey"], header: Record<string, unknown>, claims: object): Promise<string> {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
  const sig = await globalThis.crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, new TextEncoder().encode(input));
  return `${input}.${b64(new Uint8Array(sig))}`;
}

/** A compact JWS "alg": "HS256" keyed with `secret` (the algorithm-confusion attack). */
export function hs256Jws(secret: Uint8Array, header: Record<string, unknown>, claims: object): string {
  const input = `${b64(JSON.stringify({ alg: "HS256", ...header }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${b64(createHmac("sha256", secret).update(input).digest())}`;
}

/** Flips one bit in the middle of segment `i` of a compact serialization. */
export function flip(compact: string, i: number): string {
  const parts = compact.split(".");
  const bytes = Buffer.from(parts[i]!, "base64url");
  if (bytes.length === 0) return compact;
  bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
  parts[i] = bytes.toString("base64url");
  return parts.join(".");
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** RFC 7518 section 4.6.2 Concat KDF, one round (a 256-bit key). */
function concatKdf(z: Buffer, alg: string): Buffer {
  return createHash("sha256").update(Buffer.concat([u32(1), z, u32(alg.length), Buffer.from(alg), u32(0), u32(0), u32(256)])).digest();
}

export interface RawJweOptions {
  /** Protected header members added to (or replacing) alg, enc, kid, cty, epk. */
  header?: Record<string, unknown>;
  /** Header members to leave out. */
  omit?: string[];
  /** Compress the plaintext with DEFLATE (the "zip" attack). */
  deflate?: boolean;
  /** Send this public point as "epk" instead of the real ephemeral key (the invalid-curve attack). */
  epk?: JWK;
  /** Direct key agreement ("alg" "ECDH-ES": the KDF output is the content key, no encrypted key) instead of ECDH-ES+A256KW. */
  direct?: boolean;
}

/** A compact JWE to the SAM key (ECDH-ES+A256KW, A256GCM) with a header the attacker chooses. */
export function rawJwe(samKey: SamEncryptionKey | SamPublicKey, plaintext: Uint8Array | object, o: RawJweOptions = {}): string {
  const jwk = (typeof samKey.jwk === "string" ? JSON.parse(samKey.jwk) : samKey.jwk) as JWK;
  const samPublic: KeyObject = createPublicKey({ key: { kty: "EC", crv: "P-256", x: jwk.x!, y: jwk.y! }, format: "jwk" });
  const eph = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const ephJwk = eph.publicKey.export({ format: "jwk" });
  const alg = o.direct ? "ECDH-ES" : "ECDH-ES+A256KW";
  const z = diffieHellman({ privateKey: eph.privateKey, publicKey: samPublic });
  // RFC 7518 4.6.2: the KDF's AlgorithmID is "enc" for direct key agreement, "alg" when a key is wrapped.
  const kek = concatKdf(z, o.direct ? "A256GCM" : alg);
  const cek = o.direct ? kek : randomBytes(32);
  const wrap = createCipheriv("id-aes256-wrap", kek, Buffer.from("A6A6A6A6A6A6A6A6", "hex"));
  const encryptedKey = o.direct ? Buffer.alloc(0) : Buffer.concat([wrap.update(cek), wrap.final()]);
  const header: Record<string, unknown> = {
    alg, enc: "A256GCM", kid: typeof samKey.kid === "string" ? samKey.kid : "", cty: "inkan-sad-envelope+json",
    epk: o.epk ?? { kty: "EC", crv: "P-256", x: ephJwk.x, y: ephJwk.y },
    ...(o.deflate ? { zip: "DEF" } : {}),
    ...o.header,
  };
  for (const m of o.omit ?? []) delete header[m];
  const protectedB64 = b64(JSON.stringify(header));
  let body = plaintext instanceof Uint8Array ? Buffer.from(plaintext) : Buffer.from(JSON.stringify(plaintext));
  if (o.deflate) body = deflateRawSync(body);
  const iv = randomBytes(12);
  const gcm = createCipheriv("aes-256-gcm", cek, iv);
  gcm.setAAD(Buffer.from(protectedB64, "ascii"));
  const ct = Buffer.concat([gcm.update(body), gcm.final()]);
  return [protectedB64, b64(encryptedKey), b64(iv), b64(ct), b64(gcm.getAuthTag())].join(".");
}

/** A point that is not on P-256 (x = 1, y = 1), as the invalid-curve attack sends it. */
export function offCurvePoint(): JWK {
  const one = Buffer.alloc(32);
  one[31] = 1;
  return { kty: "EC", crv: "P-256", x: b64(one), y: b64(one) };
}

/** The uncompressed public point of a fresh key on another curve, relabelled as P-256 (a foreign-curve epk). */
export function foreignCurvePoint(): JWK {
  const k = createECDH("secp256k1");
  k.generateKeys();
  const pub = k.getPublicKey();
  return { kty: "EC", crv: "P-256", x: b64(pub.subarray(1, 33)), y: b64(pub.subarray(33, 65)) };
}
