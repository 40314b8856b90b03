/**
 * The object identifiers of the CSC API (v2.0.0.2 `hashAlgorithmOID`, `signAlgo`, `signAlgoParams`,
 * `key.algo`, `key.curve`) and the SAM's enums they map onto. The OIDs are the registered ones (RFC
 * 5754 for SHA-2 and ECDSA-with-SHA-2, RFC 8017 for RSA, RFC 5480 for the curves); the CSC
 * reference clients (EUDI rqes-csc-swift `SignHashRequest`, asitplus vck `SignHashRequestParameters`)
 * send them as dotted strings, as here.
 */
import { HashAlgorithm, KeyAlgorithm, SignatureAlgorithm } from "@inkan/sdk";

export const hashOids: Readonly<Record<string, HashAlgorithm>> = {
  "2.16.840.1.101.3.4.2.1": HashAlgorithm.SHA256,
  "2.16.840.1.101.3.4.2.2": HashAlgorithm.SHA384,
  "2.16.840.1.101.3.4.2.3": HashAlgorithm.SHA512,
};

export const hashLength: Readonly<Partial<Record<HashAlgorithm, number>>> = {
  [HashAlgorithm.SHA256]: 32,
  [HashAlgorithm.SHA384]: 48,
  [HashAlgorithm.SHA512]: 64,
};

export function hashOidOf(h: HashAlgorithm): string | undefined {
  return Object.entries(hashOids).find(([, v]) => v === h)?.[0];
}

export const oid = {
  ecPublicKey: "1.2.840.10045.2.1",
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsassaPss: "1.2.840.113549.1.1.10",
} as const;

/** signAlgo OIDs that name the hash too: ECDSA-with-SHA-2 (RFC 5758) and shaNNNWithRSAEncryption (RFC 8017). */
const combined: Readonly<Record<string, { scheme: SignatureAlgorithm; hash: HashAlgorithm }>> = {
  "1.2.840.10045.4.3.2": { scheme: SignatureAlgorithm.ECDSA, hash: HashAlgorithm.SHA256 },
  "1.2.840.10045.4.3.3": { scheme: SignatureAlgorithm.ECDSA, hash: HashAlgorithm.SHA384 },
  "1.2.840.10045.4.3.4": { scheme: SignatureAlgorithm.ECDSA, hash: HashAlgorithm.SHA512 },
  "1.2.840.113549.1.1.11": { scheme: SignatureAlgorithm.RSA_PKCS1_V1_5, hash: HashAlgorithm.SHA256 },
  "1.2.840.113549.1.1.12": { scheme: SignatureAlgorithm.RSA_PKCS1_V1_5, hash: HashAlgorithm.SHA384 },
  "1.2.840.113549.1.1.13": { scheme: SignatureAlgorithm.RSA_PKCS1_V1_5, hash: HashAlgorithm.SHA512 },
};

/** Every signAlgo this gateway accepts (the `info` answer's signAlgorithms.algos). */
export const signAlgoOids: readonly string[] = [...Object.keys(combined), oid.ecPublicKey, oid.rsaEncryption, oid.rsassaPss];

/**
 * The SAM scheme and hash of a signHash `signAlgo` (+ `hashAlgorithmOID`, + `signAlgoParams` for
 * RSASSA-PSS). The CSC API lets a key-type OID (id-ecPublicKey, rsaEncryption) stand for the scheme
 * with the hash given apart, as the CSC reference server's signHash comment explains; a combined OID
 * must agree with hashAlgorithmOID. Undefined: not a combination this gateway signs.
 */
export function signAlgoOf(signAlgo: string, hash: HashAlgorithm | undefined, params: string | undefined): { scheme: SignatureAlgorithm; hash: HashAlgorithm } | undefined {
  const c = combined[signAlgo];
  if (c) return params === undefined && (hash === undefined || hash === c.hash) ? c : undefined;
  if (hash === undefined) return undefined;
  if (signAlgo === oid.ecPublicKey && params === undefined) return { scheme: SignatureAlgorithm.ECDSA, hash };
  if (signAlgo === oid.rsaEncryption && params === undefined) return { scheme: SignatureAlgorithm.RSA_PKCS1_V1_5, hash };
  // RSASSA-PSS needs its parameters (RFC 8017 A.2.3): the SAM signs with MGF1 over the same hash and
  // a salt as long as the hash, so only those parameters are accepted.
  if (signAlgo === oid.rsassaPss && params !== undefined && pssParamsDer(hash).some((p) => p === params.replace(/=+$/, ""))) return { scheme: SignatureAlgorithm.RSA_PSS, hash };
  return undefined;
}

/** The key-algorithm OIDs of credentials/info `key.algo`, and `key.len` and `key.curve`. */
export function keyInfoOf(k: KeyAlgorithm): { algo: string[]; len: number; curve?: string } {
  switch (k) {
    case KeyAlgorithm.EC_P256: return { algo: [oid.ecPublicKey, "1.2.840.10045.4.3.2"], len: 256, curve: "1.2.840.10045.3.1.7" };
    case KeyAlgorithm.EC_P384: return { algo: [oid.ecPublicKey, "1.2.840.10045.4.3.3"], len: 384, curve: "1.3.132.0.34" };
    case KeyAlgorithm.EC_P521: return { algo: [oid.ecPublicKey, "1.2.840.10045.4.3.4"], len: 521, curve: "1.3.132.0.35" };
    case KeyAlgorithm.RSA_2048: return { algo: rsaAlgos, len: 2048 };
    case KeyAlgorithm.RSA_3072: return { algo: rsaAlgos, len: 3072 };
    case KeyAlgorithm.RSA_4096: return { algo: rsaAlgos, len: 4096 };
    default: return { algo: [], len: 0 };
  }
}
const rsaAlgos = [oid.rsaEncryption, "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13", oid.rsassaPss];

/**
 * The DER RSASSA-PSS-params for `hash` with MGF1(hash) and salt = hash length, base64 without padding:
 * with and without the NULL parameters of the hash AlgorithmIdentifier (both are seen in practice).
 */
export function pssParamsDer(hash: HashAlgorithm): string[] {
  const h = hashOidOf(hash);
  const len = hashLength[hash];
  if (!h || !len) return [];
  const mgf1 = oidDer("1.2.840.113549.1.1.8");
  return [true, false].map((withNull) => {
    const algId = tlv(0x30, Buffer.concat([oidDer(h), withNull ? Buffer.from([5, 0]) : Buffer.alloc(0)]));
    const body = Buffer.concat([tlv(0xa0, algId), tlv(0xa1, tlv(0x30, Buffer.concat([mgf1, algId]))), tlv(0xa2, tlv(0x02, Buffer.from([len])))]);
    return tlv(0x30, body).toString("base64").replace(/=+$/, "");
  });
}

function tlv(tag: number, value: Buffer): Buffer {
  if (value.length > 127) throw new RangeError("short DER lengths only");
  return Buffer.concat([Buffer.from([tag, value.length]), value]);
}

function oidDer(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split(".").map(Number);
  const bytes = [a! * 40 + b!];
  for (const n of rest) {
    const groups = [n & 0x7f];
    for (let v = n >>> 7; v > 0; v >>>= 7) groups.unshift((v & 0x7f) | 0x80);
    bytes.push(...groups);
  }
  return tlv(0x06, Buffer.from(bytes));
}
