/**
 * Signer-device side of R.SAD confidentiality (R-3.2.1.2, T-2.2.1.5): encrypts data (the R.SAD
 * envelope with the PIN, or the PIN at activation) to the SAM's public JWE key, so that the SCA
 * and any relay only pass it on. Browser-safe: jose over WebCrypto, no Node-only imports.
 */
import { CompactEncrypt, importJWK, type JWK } from "jose";
import { JweAlgorithm, type SamEncryptionKey } from "../gen/inkan/sam/v1/sam_pb.js";

/** A SAM encryption key as the server domain publishes it (kid, alg and the public JWK). */
export interface SamPublicKey {
  kid: string;
  /** "ECDH-ES+A256KW" (the only algorithm this SDK encrypts with). */
  alg: string;
  /** The public JWK, as an object or as its JSON text. */
  jwk: JWK | string;
}

export interface EncryptToSamOptions {
  /** The JWE "kid"; default the key's kid. When given it must equal the key's kid. */
  kid?: string;
  /** The JWE "cty", e.g. "inkan-sad-envelope+json" for R.SAD; default none. */
  cty?: string;
}

const privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const keyAlg = "ECDH-ES+A256KW";

/**
 * Encrypts `payload` (bytes, or an object sent as UTF-8 JSON) to a SAM encryption key from
 * GetInfoResponse.encryption_keys or SadChallenge.encryption_key: a compact JWE with
 * alg ECDH-ES+A256KW, enc A256GCM and the key's kid in the protected header (a fresh ephemeral
 * P-256 key per call). A key that carries a private member, or is not EC P-256, is refused.
 *
 * @example
 * const { encryptionKeys } = await sam.getInfo({});
 * const jwe = await encryptToSam(encryptionKeys.find((k) => k.current)!, { sad, pin }, { cty: "inkan-sad-envelope+json" });
 */
export async function encryptToSam(key: SamEncryptionKey | SamPublicKey, payload: Uint8Array | object, options: EncryptToSamOptions = {}): Promise<string> {
  const alg = typeof key.alg === "string" ? key.alg : key.alg === JweAlgorithm.ECDH_ES_A256KW ? keyAlg : undefined;
  if (alg !== keyAlg) throw new TypeError(`unsupported SAM key algorithm: only ${keyAlg} is supported`);
  const jwk = (typeof key.jwk === "string" ? JSON.parse(key.jwk) : key.jwk) as JWK;
  if (typeof jwk !== "object" || jwk === null) throw new TypeError("the SAM key's jwk is not a JSON object");
  // sam.proto: a published key never carries a private member; a client that finds one refuses it.
  if (privateMembers.some((m) => m in jwk)) throw new TypeError("the SAM key carries a private member; refusing it");
  if (jwk.kty !== "EC" || jwk.crv !== "P-256") throw new TypeError("the SAM key is not an EC P-256 key");
  if (jwk.use !== undefined && jwk.use !== "enc") throw new TypeError('the SAM key is not for encryption (use must be "enc")');
  if (jwk.kid !== undefined && jwk.kid !== key.kid) throw new TypeError("the SAM key's jwk names another kid");
  const kid = options.kid ?? key.kid;
  if (!kid || kid !== key.kid) throw new TypeError("kid must be the SAM key's kid");
  const publicKey = await importJWK({ kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y }, keyAlg);
  const bytes = payload instanceof Uint8Array ? payload : new TextEncoder().encode(JSON.stringify(payload));
  return new CompactEncrypt(bytes)
    .setProtectedHeader({ alg: keyAlg, enc: "A256GCM", kid, ...(options.cty !== undefined ? { cty: options.cty } : {}) })
    .encrypt(publicKey);
}
