/**
 * The device-key JWS of SignerService (signer.proto, "Device-key JWS"): strict header and claim
 * checks, verification with one known public key, and the checks of a device's public JWK. Every
 * failure is a {@link DeviceProofRefused} whose message is for the log only; callers turn all of
 * them into one uniform error (a failure's message never says which check failed).
 */
import { calculateJwkThumbprint, compactVerify, importJWK, type CryptoKey, type JWK } from "jose";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import { Lru } from "../lru.js";
import type { DeviceKeyFactorBody } from "./signers.js";

/** Why a device JWS or JWK was refused: for the log only. */
export class DeviceProofRefused extends Error {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(reason, options);
    this.name = "DeviceProofRefused";
  }
}

/** The JWS's "exp" has passed (beyond the skew): a {@link DeviceProofRefused} that callers may report as expired. */
export class DeviceProofExpired extends DeviceProofRefused {
  constructor() {
    super("expired");
    this.name = "DeviceProofExpired";
  }
}

/** JWS algorithm names as the policy lists them (JWS_ALGORITHM_<name>) and as "alg" carries them. */
export type DeviceKeyAlgorithm = "ES256" | "ES384" | "ES512" | "EdDSA" | "PS256";

/** A device public key that passed {@link parseDevicePublicJwk}. */
export interface DevicePublicKey {
  /** Public members only, canonical order: what is stored and returned. */
  jwk: JWK;
  /** The RFC 7638 SHA-256 thumbprint, base64url: the device key id and the JWS "kid". */
  thumbprint: string;
  algorithm: DeviceKeyAlgorithm;
  /** The key imported for verification, once (issue 20: importing it cost as much as the JWS check). */
  publicKey: CryptoKey;
}

const privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
/** Issue 18 (signer.proto): the members a device JWK may have besides its key type's own. */
const optionalMembers = ["alg", "use", "key_ops", "kid", "ext"];
const keyMembers: Record<string, string[]> = { EC: ["kty", "crv", "x", "y"], OKP: ["kty", "crv", "x"], RSA: ["kty", "n", "e"] };
const ecAlgorithms: Record<string, DeviceKeyAlgorithm> = { "P-256": "ES256", "P-384": "ES384", "P-521": "ES512" };
const b64u = /^[A-Za-z0-9_-]+$/;

/** The policy's name of a JWS algorithm ("JWS_ALGORITHM_EDDSA" for "EdDSA"). */
export const policyNameOf = (alg: DeviceKeyAlgorithm) => `JWS_ALGORITHM_${alg.toUpperCase()}`;

/**
 * Checks a device public key (ActivateRequest.device_public_key_jwk): a JSON object, EC P-256/384/521,
 * OKP Ed25519 or RSA of 2048 bits or more, no private member; the key must import. Returns the
 * public members, the thumbprint and the one JWS algorithm the key signs with (RSA: PS256).
 */
export async function parseDevicePublicJwk(text: string): Promise<DevicePublicKey> {
  let parsed: unknown;
  try {
    parsed = parseStrictJsonObject(text);
  } catch (err) {
    throw new DeviceProofRefused("the JWK is not a JSON object", { cause: err });
  }
  const j = parsed as Record<string, unknown>;
  if (privateMembers.some((m) => m in j)) throw new DeviceProofRefused("the JWK carries a private member");
  // T-2.1.1.1 (issue 18): exactly the allowed members; a certificate or URL member ("x5c", "jku")
  // would suggest a trust the SAM never checks, and an unknown one a meaning it never gives.
  const allowed = new Set([...(typeof j.kty === "string" ? (keyMembers[j.kty] ?? []) : []), ...optionalMembers]);
  const extra = Object.keys(j).find((m) => !allowed.has(m));
  if (extra !== undefined) throw new DeviceProofRefused(`JWK member ${extra} is not allowed`);
  if (j.kid !== undefined && typeof j.kid !== "string") throw new DeviceProofRefused('the JWK\'s "kid" is not a string');
  if (j.ext !== undefined && typeof j.ext !== "boolean") throw new DeviceProofRefused('the JWK\'s "ext" is not a boolean');
  const str = (name: string) => {
    const v = j[name];
    if (typeof v !== "string" || !b64u.test(v)) throw new DeviceProofRefused(`JWK member ${name} is missing or not base64url`);
    return v;
  };
  let jwk: JWK;
  let algorithm: DeviceKeyAlgorithm;
  if (j.kty === "EC" && typeof j.crv === "string" && ecAlgorithms[j.crv]) {
    jwk = { kty: "EC", crv: j.crv, x: str("x"), y: str("y") };
    algorithm = ecAlgorithms[j.crv]!;
  } else if (j.kty === "OKP" && j.crv === "Ed25519") {
    jwk = { kty: "OKP", crv: "Ed25519", x: str("x") };
    algorithm = "EdDSA";
  } else if (j.kty === "RSA") {
    jwk = { kty: "RSA", n: str("n"), e: str("e") };
    // The modulus's real size: a minimal encoding (no leading zero byte padding a short key) of 2048 bits or more.
    const n = Buffer.from(jwk.n!, "base64url");
    if (n.length === 0 || n[0] === 0) throw new DeviceProofRefused("the RSA modulus is not minimally encoded");
    if (n.length < 256) throw new DeviceProofRefused("RSA keys have 2048 bits or more");
    // T-2.2.1.1: a small or even exponent makes signatures forgeable without the private key
    // (e = 1: the "signature" is the encoded message itself; Wycheproof json_web_key tcId 9).
    const e = Buffer.from(jwk.e!, "base64url");
    if (e.length > 0 && e[0] === 0) throw new DeviceProofRefused("the RSA exponent is not minimally encoded");
    if (e.length < 3 || (e.length === 3 && e.readUIntBE(0, 3) < 65537) || (e[e.length - 1]! & 1) === 0) {
      throw new DeviceProofRefused("the RSA exponent must be odd and at least 65537");
    }
    algorithm = "PS256";
  } else {
    throw new DeviceProofRefused("unsupported key type");
  }
  // A key labelled for another purpose or algorithm is refused rather than relabelled (RFC 7517
  // "use", "key_ops", "alg"; Wycheproof json_web_key tcIds 6, 19 to 21, json_web_signature 338, 354, 356).
  if (j.use !== undefined && j.use !== "sig") throw new DeviceProofRefused('the JWK\'s "use" is not "sig"');
  if (j.key_ops !== undefined && !(Array.isArray(j.key_ops) && j.key_ops.includes("verify"))) throw new DeviceProofRefused('the JWK\'s "key_ops" does not allow "verify"');
  if (j.alg !== undefined && j.alg !== algorithm) throw new DeviceProofRefused(`the JWK's "alg" is not ${algorithm}`);
  let publicKey: CryptoKey;
  try {
    publicKey = (await importJWK(jwk, algorithm)) as CryptoKey; // on the curve, well-formed (a public JWK imports as a key, never as bytes)
  } catch (err) {
    throw new DeviceProofRefused("the JWK does not import", { cause: err });
  }
  return { jwk, thumbprint: await calculateJwkThumbprint(jwk, "sha256"), algorithm, publicKey };
}

/**
 * The signer's registered, unrevoked device key named by `kid` (T-2.2.1.1): looked up only among
 * that signer's factors, never a key the JWS names or carries; the stored JWK must still parse and
 * its thumbprint be its id. DeviceProofRefused otherwise.
 */
export async function registeredDeviceKey(records: Pick<VerifiedRecords, "get">, signerId: string, kid: unknown): Promise<DevicePublicKey> {
  if (typeof kid !== "string") throw new DeviceProofRefused("kid is not a device key id");
  const device = await records.get("factor", kid);
  if (!device || device.signerId !== signerId || device.type !== "DEVICE_KEY" || device.status !== "ACTIVE") {
    throw new DeviceProofRefused("kid names no active device key of this signer");
  }
  const key = await parsedRegisteredJwk((JSON.parse(device.body) as DeviceKeyFactorBody).jwk ?? "");
  if (key.thumbprint !== kid) throw new DeviceProofRefused("the registered key does not match its id");
  return key;
}

/** Registered keys parsed and imported, by their stored JWK text (the 1,024 used last). */
const registeredKeys = new Lru<DevicePublicKey>(1024);

/**
 * Issue 20: {@link parseDevicePublicJwk} of a registered key, remembered by its exact text (the
 * parse is a function of the text alone, and a refusal is never remembered), so a signer's next
 * Authorize does not import the same key again. Which key a JWS is checked with stays decided on
 * every call by the factor record read above.
 */
async function parsedRegisteredJwk(text: string): Promise<DevicePublicKey> {
  const known = registeredKeys.get(text);
  if (known) return known;
  const key = Object.freeze(await parseDevicePublicJwk(text));
  Object.freeze(key.jwk);
  registeredKeys.set(text, key);
  return key;
}

export interface VerifyDeviceJwsOptions {
  key: DevicePublicKey;
  /** The expected "typ". */
  typ: string;
  /** The claims that must be present, exactly (no other claim is accepted). */
  claims: readonly string[];
  /** Expected string values of claims ("sub", "aud"...). */
  expect: Readonly<Record<string, string>>;
  now: Date;
  skewMs: number;
  maxLifetimeMs: number;
}

/** The protected header's members (signer.proto); "jwk", "jku", "x5u", "x5c", "crit", "b64", "zip" and others are refused. */
const headerMembers = ["alg", "kid", "typ"];
const compactJws = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const jtiPattern = /^[A-Za-z0-9_-]{22,128}$/;

/** The header and claims of a compact JWS, NOT verified: only to find the key and the challenge. */
export function peekDeviceJws(jws: unknown): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  if (typeof jws !== "string" || !compactJws.test(jws)) throw new DeviceProofRefused("not a compact JWS");
  const [h = "", p = ""] = jws.split(".");
  try {
    const header = parseStrictJsonObject(new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(h, "base64url")));
    const claims = parseStrictJsonObject(new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(p, "base64url")));
    return { header, claims };
  } catch (err) {
    throw new DeviceProofRefused("header or payload is not a JSON object", { cause: err });
  }
}

/**
 * Verifies a device-key JWS with `key` (never a key named by the JWS itself): header exactly
 * alg (the key's), typ and kid (the key's thumbprint); claims exactly `claims`, with the expected
 * values, integer iat and exp within the skew and lifetime, and a well-formed jti. Returns the claims.
 */
export async function verifyDeviceJws(jws: unknown, o: VerifyDeviceJwsOptions): Promise<Record<string, unknown>> {
  const { header, claims } = peekDeviceJws(jws);
  const names = Object.keys(header).sort();
  if (names.length !== headerMembers.length || names.some((n, i) => n !== headerMembers[i])) throw new DeviceProofRefused("header members are not exactly alg, kid, typ");
  if (header.alg !== o.key.algorithm) throw new DeviceProofRefused("alg does not match the device key");
  if (header.typ !== o.typ) throw new DeviceProofRefused("wrong typ");
  if (header.kid !== o.key.thumbprint) throw new DeviceProofRefused("kid is not the device key's thumbprint");
  try {
    await compactVerify(jws as string, o.key.publicKey, { algorithms: [o.key.algorithm] });
  } catch (err) {
    throw new DeviceProofRefused("the signature does not verify", { cause: err });
  }
  return checkClaimSet(claims, o);
}

/** What {@link checkClaimSet} checks a claim set against. */
export interface ClaimSetCheck {
  /** The claims that must be present, exactly (no other claim is accepted). */
  claims: readonly string[];
  /** Expected values of claims ("sub", "aud"...). */
  expect: Readonly<Record<string, unknown>>;
  now: Date;
  skewMs: number;
  maxLifetimeMs: number;
}

/**
 * A claim set (a verified JWS payload, or the R.SAD "claims" of the methods without a device key):
 * a JSON object with exactly `claims`, the expected values, integer iat and exp within the skew and
 * lifetime, and a well-formed jti. Returns it; throws {@link DeviceProofRefused} (or
 * {@link DeviceProofExpired}) with a reason for the log only.
 */
export function checkClaimSet(value: unknown, o: ClaimSetCheck): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new DeviceProofRefused("claims is not a JSON object");
  const claims = value as Record<string, unknown>;
  const got = Object.keys(claims).sort();
  const want = [...o.claims].sort();
  if (got.length !== want.length || got.some((n, i) => n !== want[i])) throw new DeviceProofRefused("the claim set is not exactly the expected one");
  for (const [name, expected] of Object.entries(o.expect)) {
    if (claims[name] !== expected) throw new DeviceProofRefused(`claim ${name} does not match`);
  }
  const { iat, exp, jti } = claims;
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) throw new DeviceProofRefused("iat and exp must be integer NumericDates");
  const nowS = o.now.getTime() / 1000;
  if ((iat as number) > nowS + o.skewMs / 1000) throw new DeviceProofRefused("iat is in the future");
  if ((exp as number) <= nowS - o.skewMs / 1000) throw new DeviceProofExpired();
  if ((exp as number) < (iat as number) || (exp as number) - (iat as number) > o.maxLifetimeMs / 1000) throw new DeviceProofRefused("lifetime too long");
  if (typeof jti !== "string" || !jtiPattern.test(jti)) throw new DeviceProofRefused("jti is not 22 to 128 base64url characters");
  return claims;
}

/**
 * JSON.parse for a JSON object that also refuses duplicate member names at its top level
 * (signer.proto: "no duplicate names"; JSON.parse would silently keep the last one).
 */
export function parseStrictJsonObject(text: string): Record<string, unknown> {
  const value: unknown = JSON.parse(text);
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new SyntaxError("not a JSON object");
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (/\s/.test(text[k] ?? "")) k++;
        if (text[k] === ":") {
          const name = JSON.parse(text.slice(i, j + 1)) as string;
          if (seen.has(name)) throw new SyntaxError(`duplicate member "${name}"`);
          seen.add(name);
        }
      }
      i = j;
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
  }
  return value as Record<string, unknown>;
}
