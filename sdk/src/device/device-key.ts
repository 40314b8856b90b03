/**
 * The signer's device key (possession factor): a WebCrypto key pair whose private half is not
 * extractable, and the device-key JWS every signer request carries (signer.proto, "Device-key JWS").
 * Browser-safe: jose over WebCrypto, no Node-only imports.
 */
import { base64url, calculateJwkThumbprint, CompactSign, exportJWK, generateKeyPair, type CryptoKey, type JWK } from "jose";

/** JWS algorithms a device key can sign with (GetInfoResponse.device_key_algorithms). */
export type DeviceKeyAlgorithm = "ES256" | "ES384" | "ES512" | "EdDSA";

export interface DeviceKey {
  /** The JWS "alg". */
  alg: DeviceKeyAlgorithm;
  /** Non-extractable where the platform allows (WebCrypto). Keep it in IndexedDB, never export it. */
  privateKey: CryptoKey;
  /** The public JWK (public members only): ActivateRequest.device_public_key_jwk. */
  publicJwk: JWK;
  /** The RFC 7638 SHA-256 thumbprint, base64url: the device key id and the JWS "kid". */
  kid: string;
}

/**
 * Creates a device key pair: ES256 (P-256) by default, the private key not extractable.
 *
 * @example
 * const deviceKey = await createDeviceKey();
 * // store deviceKey.privateKey (a CryptoKey) in IndexedDB; send deviceKey.publicJwk at activation
 */
export async function createDeviceKey(alg: DeviceKeyAlgorithm = "ES256"): Promise<DeviceKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: false, ...(alg === "EdDSA" ? { crv: "Ed25519" } : {}) });
  const exported = await exportJWK(publicKey);
  const publicJwk: JWK = exported.kty === "OKP" ? { kty: "OKP", crv: exported.crv!, x: exported.x! } : { kty: exported.kty!, crv: exported.crv!, x: exported.x!, y: exported.y! };
  return { alg, privateKey, publicJwk, kid: await calculateJwkThumbprint(publicJwk, "sha256") };
}

/**
 * 16 random bytes as base64url: a fresh "jti" (22 characters, 128 bits).
 *
 * @example
 * const jti = newJti(); // e.g. "x3Wk0lQ9c8mJ1pQmZ2f0qA"
 */
export function newJti(): string {
  return base64url.encode(crypto.getRandomValues(new Uint8Array(16)));
}

export interface DeviceJwsOptions {
  deviceKey: DeviceKey;
  /** The JWS "typ", e.g. "inkan-activation+jwt". */
  typ: string;
  signerId: string;
  /** The SAM id (CreateChallengeResponse.audience). */
  audience: string;
  /** CreateChallengeResponse.challenge (32 bytes). */
  challenge: Uint8Array;
  /** Further claims the request type lists (e.g. "ejkt", "cred", "action"). */
  claims?: Record<string, string | number>;
  /** Seconds the JWS stays valid; default 120 (at most the SAM's max_sad_lifetime). */
  lifetimeSeconds?: number;
  /** The signing instant; default now. */
  now?: Date;
}

/**
 * A device-key JWS as signer.proto defines it: header exactly alg, typ and kid; claims sub, aud,
 * chal, iat, exp, jti and any request-specific ones.
 *
 * @example
 * const jws = await signDeviceJws({ deviceKey, typ: "inkan-suspension+jwt", signerId,
 *   audience: ch.audience, challenge: ch.challenge, claims: { cred: credentialId } });
 */
export async function signDeviceJws(o: DeviceJwsOptions): Promise<string> {
  const iat = Math.floor((o.now ?? new Date()).getTime() / 1000);
  const payload = {
    sub: o.signerId,
    aud: o.audience,
    chal: base64url.encode(o.challenge),
    iat,
    exp: iat + (o.lifetimeSeconds ?? 120),
    jti: newJti(),
    ...o.claims,
  };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: o.deviceKey.alg, typ: o.typ, kid: o.deviceKey.kid })
    .sign(o.deviceKey.privateKey);
}
