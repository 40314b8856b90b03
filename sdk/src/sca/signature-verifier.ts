/**
 * Checks a signature the SAM returned against the credential's public key before the SDK hands
 * it to the caller (T-2.2.1.8: a signature altered or substituted in transit, or made with
 * another key, is caught). The DTBS/R is already a hash, and node:crypto verifies only over a
 * message it hashes itself, so ECDSA is checked with @noble/curves over the hash, and RSA by
 * opening the signature with the public key and checking the padding (RFC 8017).
 */
import { createHash, createPublicKey, constants, publicDecrypt, timingSafeEqual, verify, type KeyObject } from "node:crypto";
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

function ecdsaVerifier(key: KeyObject, format: "der" | "compact", precompute: boolean): SignatureCheck {
  const jwk = key.export({ format: "jwk" });
  const curve = jwk.crv === "P-256" ? p256 : jwk.crv === "P-384" ? p384 : jwk.crv === "P-521" ? p521 : undefined;
  if (!curve) throw new TypeError(`unsupported curve ${jwk.crv}`);
  const { Point } = curve;
  const Fn = Point.Fn;
  const x = Buffer.from(jwk.x!, "base64url");
  const y = Buffer.from(jwk.y!, "base64url");
  const q = Point.fromAffine({ x: BigInt(`0x${x.toString("hex")}`), y: BigInt(`0x${y.toString("hex")}`) });
  q.assertValidity();
  if (precompute) q.precompute(8, false); // costs about as much as 100 checks, then halves each one
  return (hash, signature) =>
    safely(() => {
      // FIPS 186-5 ECDSA verification over a given hash, accepting high-S (the module's signatures are not normalized).
      const { r, s } = curve.Signature.fromBytes(signature, format);
      if (r <= 0n || r >= Fn.ORDER || s <= 0n || s >= Fn.ORDER) return false;
      let e = hash.length ? BigInt(`0x${Buffer.from(hash).toString("hex")}`) : 0n;
      if (hash.length * 8 > Fn.BITS) e >>= BigInt(hash.length * 8 - Fn.BITS); // bits2int: the leftmost bits
      const w = Fn.inv(s);
      const point = Point.BASE.multiplyUnsafe(Fn.mul(Fn.create(e), w)).add(q.multiplyUnsafe(Fn.mul(r, w)));
      return !point.is0() && Fn.create(point.toAffine().x) === r;
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
