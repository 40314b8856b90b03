/**
 * The importer's side of ImportKey (KEY_WRAP_SCHEME_RSA_OAEP_AES_KWP, registration.proto): a fresh
 * AES-256 key encrypted with RSA-OAEP under the SAM's transport key (the hash its JWK "alg" names),
 * and the PKCS#8 private key wrapped under it with AES Key Wrap with Padding (RFC 5649).
 */
import { constants, createCipheriv, createPublicKey, publicEncrypt, randomBytes, type KeyObject } from "node:crypto";

/** RFC 5649's alternative initial value. */
const kwpIv = Buffer.from("a65959a6", "hex");

/** Wraps `privateKey` for ImportKey under the transport key GetKeyImportTransportKey returned (its public_key_jwk). */
export function wrapForImport(privateKey: KeyObject, transportKeyJwk: string): { encryptedKek: Uint8Array; wrappedPrivateKey: Uint8Array } {
  const jwk = JSON.parse(transportKeyJwk) as { kty: string; n: string; e: string; alg: string };
  const oaepHash = jwk.alg === "RSA-OAEP-256" ? "sha256" : jwk.alg === "RSA-OAEP" ? "sha1" : undefined;
  if (jwk.kty !== "RSA" || !oaepHash) throw new TypeError("not an RSA-OAEP transport key");
  const rsa = createPublicKey({ key: { kty: "RSA", n: jwk.n, e: jwk.e }, format: "jwk" });
  const kek = randomBytes(32);
  try {
    const encryptedKek = publicEncrypt({ key: rsa, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, kek);
    const kwp = createCipheriv("id-aes256-wrap-pad", kek, kwpIv);
    const wrappedPrivateKey = Buffer.concat([kwp.update(privateKey.export({ type: "pkcs8", format: "der" })), kwp.final()]);
    return { encryptedKek, wrappedPrivateKey };
  } finally {
    kek.fill(0);
  }
}
