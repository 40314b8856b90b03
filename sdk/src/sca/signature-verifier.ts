/**
 * Checks a signature the SAM returned against the credential's public key before the SDK hands
 * it to the caller (T-2.2.1.8: a signature altered or substituted in transit, or made with
 * another key, is caught). The DTBS/R is already a hash, and node:crypto verifies only over a
 * message it hashes itself, so ECDSA is checked over the hash with OpenSSL's scalar
 * multiplications (node:crypto's ECDH, see ecdsaVerifier; @noble/curves does the few field
 * operations around them and the rare edge cases), and RSA by opening the signature with the
 * public key and checking the padding (RFC 8017). Ed25519 is node:crypto's verify. This module is
 * for Node SCAs only: the browser-safe entry (@inkan/sdk/device) does not import it.
 */
import { createECDH, createHash, createPublicKey, constants, publicDecrypt, timingSafeEqual, verify, type ECDH, type KeyObject } from "node:crypto";
import { p256, p384, p521 } from "@noble/curves/nist.js";
import { HashAlgorithm, SignatureAlgorithm, SignatureFormat } from "../gen/inkan/sam/v1/types_pb.js";

/** Checks one signature over one DTBS/R; true when it verifies. */
export type SignatureCheck = (dtbsr: Uint8Array, signature: Uint8Array) => boolean;

export interface SignatureVerifierOptions {
  /** The credential's public key, DER SubjectPublicKeyInfo. */
  spki: Uint8Array;
  hashAlgorithm: HashAlgorithm;
  /** The transaction's scheme; UNSPECIFIED: the key's default (ECDSA, RSA PKCS#1 v1.5, Ed25519). */
  signatureAlgorithm?: SignatureAlgorithm;
  /** ECDSA encoding; UNSPECIFIED: DER. */
  signatureFormat?: SignatureFormat;
  /** How many signatures will be checked; large batches get an ECDSA precomputation (default 1,000). */
  expectedSignatures?: number;
}

const hashNames: Partial<Record<HashAlgorithm, { name: string; length: number }>> = {
  [HashAlgorithm.SHA256]: { name: "sha256", length: 32 },
  [HashAlgorithm.SHA384]: { name: "sha384", length: 48 },
  [HashAlgorithm.SHA512]: { name: "sha512", length: 64 },
};

/** DER DigestInfo prefixes (RFC 8017 section 9.2, note 1). */
const digestInfoPrefix: Partial<Record<HashAlgorithm, string>> = {
  [HashAlgorithm.SHA256]: "3031300d060960864801650304020105000420",
  [HashAlgorithm.SHA384]: "3041300d060960864801650304020205000430",
  [HashAlgorithm.SHA512]: "3051300d060960864801650304020305000440",
};

/**
 * A checker for every signature of one transaction: the key is parsed once (and, for ECDSA,
 * precomputed, so a 100,000-signature batch is checked in about a minute on one core).
 *
 * @example
 * const check = createSignatureVerifier({ spki: credential.publicKeySpki, hashAlgorithm: HashAlgorithm.SHA256 });
 * if (!check(hash, signature)) throw new Error("forged");
 */
export function createSignatureVerifier(o: SignatureVerifierOptions): SignatureCheck {
  const key = createPublicKey({ key: Buffer.from(o.spki), format: "der", type: "spki" });
  const scheme = o.signatureAlgorithm ?? SignatureAlgorithm.UNSPECIFIED;
  switch (key.asymmetricKeyType) {
    case "ec":
      if (scheme !== SignatureAlgorithm.UNSPECIFIED && scheme !== SignatureAlgorithm.ECDSA) break;
      return ecdsaVerifier(key, o.signatureFormat === SignatureFormat.RAW ? "compact" : "der", (o.expectedSignatures ?? 1_000) >= 100);
    case "ed25519":
      if (scheme !== SignatureAlgorithm.UNSPECIFIED && scheme !== SignatureAlgorithm.ED25519) break;
      return (data, sig) => safely(() => verify(null, data, key, sig)); // pure EdDSA: the DTBS/R is the message
    case "rsa":
      if (scheme === SignatureAlgorithm.RSA_PSS) return rsaPssVerifier(key, o.hashAlgorithm);
      if (scheme === SignatureAlgorithm.UNSPECIFIED || scheme === SignatureAlgorithm.RSA_PKCS1_V1_5) return rsaPkcs1Verifier(key, o.hashAlgorithm);
      break;
  }
  throw new TypeError(`cannot verify ${SignatureAlgorithm[scheme]} signatures with a ${key.asymmetricKeyType} key`);
}

function safely(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false; // malformed signature bytes
  }
}

/** OpenSSL's names of the NIST curves, and their scalar length in bytes. */
const opensslCurves: Record<string, { name: string; bytes: number }> = {
  "P-256": { name: "prime256v1", bytes: 32 },
  "P-384": { name: "secp384r1", bytes: 48 },
  "P-521": { name: "secp521r1", bytes: 66 },
};

const bigOf = (bytes: Uint8Array): bigint => (bytes.length ? BigInt(`0x${Buffer.from(bytes).toString("hex")}`) : 0n);

/**
 * FIPS 186-5 ECDSA verification over a given hash, accepting high-S (the module's signatures are
 * not normalized): R = u1·G + u2·Q with u1 = e/s, u2 = r/s, valid when x(R) mod n = r.
 *
 * Issue 20 (speed): the two scalar multiplications are OpenSSL's, through node:crypto's ECDH,
 * about four times faster than pure JS even with precomputed tables. ECDH gives a full point only
 * for k·G (the public key of private key k) and only the x coordinate of k·P, so R is computed
 * as u2·(Q + k·G) with k = u1/u2 = e/r: k·G from ECDH, the affine sum T = Q + k·G in JS (one
 * inversion), and x(u2·T) from ECDH against T. Exactly R, no sign ambiguity. The cases ECDH
 * cannot take (e = 0 mod n; k·G = ±Q, where the affine sum is undefined) go through @noble/curves,
 * and so does every check where node:crypto has no ECDH (never in Node 20+).
 */
function ecdsaVerifier(key: KeyObject, format: "der" | "compact", precompute: boolean): SignatureCheck {
  const jwk = key.export({ format: "jwk" });
  const curve = jwk.crv === "P-256" ? p256 : jwk.crv === "P-384" ? p384 : jwk.crv === "P-521" ? p521 : undefined;
  const openssl = opensslCurves[jwk.crv ?? ""];
  if (!curve || !openssl) throw new TypeError(`unsupported curve ${jwk.crv}`);
  const { Point } = curve;
  const Fn = Point.Fn;
  const Fp = Point.Fp;
  const qx = bigOf(Buffer.from(jwk.x!, "base64url"));
  const qy = bigOf(Buffer.from(jwk.y!, "base64url"));
  const q = Point.fromAffine({ x: qx, y: qy });
  q.assertValidity();
  let ecdh: ECDH | undefined;
  try {
    ecdh = createECDH(openssl.name);
  } catch {
    ecdh = undefined;
  }
  let precomputed = false;
  const fieldBytes = Math.ceil(Fp.BITS / 8);
  const scalar = (n: bigint) => Buffer.from(n.toString(16).padStart(openssl.bytes * 2, "0"), "hex");
  const coordinate = (n: bigint) => n.toString(16).padStart(fieldBytes * 2, "0");

  const slow = (e: bigint, r: bigint, s: bigint): boolean => {
    if (precompute && !precomputed) {
      q.precompute(8, false); // costs about as much as 100 checks, then halves each one
      precomputed = true;
    }
    const w = Fn.inv(s);
    const point = Point.BASE.multiplyUnsafe(Fn.mul(e, w)).add(q.multiplyUnsafe(Fn.mul(r, w)));
    return !point.is0() && Fn.create(point.toAffine().x) === r;
  };

  return (hash, signature) =>
    safely(() => {
      const { r, s } = curve.Signature.fromBytes(signature, format);
      if (r <= 0n || r >= Fn.ORDER || s <= 0n || s >= Fn.ORDER) return false;
      let e = bigOf(hash);
      if (hash.length * 8 > Fn.BITS) e >>= BigInt(hash.length * 8 - Fn.BITS); // bits2int: the leftmost bits
      e = Fn.create(e);
      if (!ecdh || e === 0n) return slow(e, r, s);
      // k·G, a full point: the public key of private key k = e/r (in [1, n-1]: e and r are).
      ecdh.setPrivateKey(scalar(Fn.mul(e, Fn.inv(r))));
      const kg = ecdh.getPublicKey(); // 04 || x || y
      const kx = bigOf(kg.subarray(1, 1 + fieldBytes));
      const ky = bigOf(kg.subarray(1 + fieldBytes));
      if (kx === qx) return slow(e, r, s); // k·G = ±Q: doubling or the point at infinity
      // T = Q + k·G (affine addition; both on the curve, distinct x).
      const lambda = Fp.mul(Fp.sub(ky, qy), Fp.inv(Fp.sub(kx, qx)));
      const tx = Fp.sub(Fp.sub(Fp.sqr(lambda), qx), kx);
      const ty = Fp.sub(Fp.mul(lambda, Fp.sub(qx, tx)), qy);
      // x(u2·T) = x(u2·Q + u1·G); ECDH refuses (throws: false) when u2·T is the point at infinity.
      ecdh.setPrivateKey(scalar(Fn.mul(r, Fn.inv(s))));
      const x = ecdh.computeSecret(Buffer.from(`04${coordinate(tx)}${coordinate(ty)}`, "hex"));
      return Fn.create(bigOf(x)) === r;
    });
}

function rsaPkcs1Verifier(key: KeyObject, hashAlgorithm: HashAlgorithm): SignatureCheck {
  const prefix = digestInfoPrefix[hashAlgorithm];
  if (!prefix) throw new TypeError(`RSA PKCS#1 v1.5 needs a SHA-2 hash, not ${HashAlgorithm[hashAlgorithm]}`);
  const p = Buffer.from(prefix, "hex");
  return (hash, signature) =>
    safely(() => {
      const digestInfo = publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, signature);
      const expected = Buffer.concat([p, hash]);
      return digestInfo.length === expected.length && timingSafeEqual(digestInfo, expected);
    });
}

function rsaPssVerifier(key: KeyObject, hashAlgorithm: HashAlgorithm): SignatureCheck {
  const h = hashNames[hashAlgorithm];
  if (!h) throw new TypeError(`RSA-PSS needs a SHA-2 hash, not ${HashAlgorithm[hashAlgorithm]}`);
  const modBits = key.asymmetricKeyDetails!.modulusLength!;
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  const hLen = h.length;
  const sLen = hLen; // the SAM signs with salt = hash length, MGF1 with the same hash
  return (mHash, signature) =>
    safely(() => {
      // EMSA-PSS-VERIFY (RFC 8017 section 9.1.2) over the opened signature.
      if (mHash.length !== hLen || signature.length !== Math.ceil(modBits / 8)) return false;
      let em = publicDecrypt({ key, padding: constants.RSA_NO_PADDING }, signature);
      if (em.length > emLen) {
        if (em[0] !== 0) return false;
        em = em.subarray(em.length - emLen);
      }
      if (emLen < hLen + sLen + 2 || em[emLen - 1] !== 0xbc) return false;
      const maskedDb = em.subarray(0, emLen - hLen - 1);
      const hPrime = em.subarray(emLen - hLen - 1, emLen - 1);
      const topBits = 8 * emLen - emBits;
      if ((maskedDb[0]! & (0xff << (8 - topBits)) & 0xff) !== 0) return false;
      const db = mgf1(h.name, hPrime, maskedDb.length);
      for (let i = 0; i < db.length; i++) db[i]! ^= maskedDb[i]!;
      db[0]! &= 0xff >> topBits;
      const psLen = emLen - hLen - sLen - 2;
      for (let i = 0; i < psLen; i++) if (db[i] !== 0) return false;
      if (db[psLen] !== 0x01) return false;
      const salt = db.subarray(db.length - sLen);
      const m = createHash(h.name).update(Buffer.alloc(8)).update(mHash).update(salt).digest();
      return timingSafeEqual(m, hPrime);
    });
}

function mgf1(hash: string, seed: Uint8Array, length: number): Buffer {
  const out: Buffer[] = [];
  let size = 0;
  for (let counter = 0; size < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    const block = createHash(hash).update(seed).update(c).digest();
    out.push(block);
    size += block.length;
  }
  return Buffer.concat(out).subarray(0, length);
}
