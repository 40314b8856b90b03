/**
 * Builder of the signer's consent to ImportKey (registration.proto, ImportKeyRequest.signer_consent;
 * T-2.1.4.1, T-2.1.4.2): a device-key JWS, "typ" "inkan-key-import-consent+jwt", naming the signer,
 * the SHA-256 of the imported key's DER SubjectPublicKeyInfo and its algorithm, over a one-time
 * challenge; with the PIN, encrypted to the SAM ("cty" "inkan-key-import-consent-envelope+json"),
 * so the operator who relays it can neither read nor alter it. Both factors, whatever the assurance
 * level. Browser-safe: jose and WebCrypto, no Node-only imports.
 */
import { base64url } from "jose";
import type { SamEncryptionKey } from "../gen/inkan/sam/v1/sam_pb.js";
import { signDeviceJws, type DeviceKey } from "./device-key.js";
import { encryptToSam, type SamPublicKey } from "./encrypt-to-sam.js";

export const keyImportConsentTyp = "inkan-key-import-consent+jwt";
export const keyImportConsentEnvelopeCty = "inkan-key-import-consent-envelope+json";

export interface KeyImportConsentInput {
  signerId: string;
  pin: string;
  /** A device key registered to the signer. */
  deviceKey: DeviceKey;
  /** The imported key's public key exactly as ImportKeyRequest.public_key_spki will carry it (DER SPKI). */
  publicKeySpki: Uint8Array;
  /** The KeyAlgorithm value name ImportKeyRequest.key_algorithm will carry, e.g. "KEY_ALGORITHM_EC_P256". */
  keyAlgorithm: string;
  /** A one-time key-import consent challenge issued for this signer (32 bytes). */
  challenge: Uint8Array;
  /** The SAM id (the challenge's audience). */
  audience: string;
  /** The SAM's current encryption key (CreateChallengeResponse.encryption_key or GetInfo). */
  samKey: SamEncryptionKey | SamPublicKey;
  now?: Date;
}

/**
 * Builds ImportKeyRequest.signer_consent on the signer's device.
 *
 * @example
 * const signerConsent = await buildKeyImportConsent({ signerId, pin, deviceKey, publicKeySpki, keyAlgorithm: "KEY_ALGORITHM_EC_P256", challenge, audience, samKey });
 * // the device hands signerConsent to the registration operator, who sends it in ImportKeyRequest
 */
export async function buildKeyImportConsent(input: KeyImportConsentInput): Promise<string> {
  if (!/^KEY_ALGORITHM_[A-Z0-9_]+$/.test(input.keyAlgorithm)) throw new TypeError("keyAlgorithm must be a KeyAlgorithm value name, e.g. KEY_ALGORITHM_EC_P256");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(input.publicKeySpki)));
  const proof = await signDeviceJws({
    deviceKey: input.deviceKey,
    typ: keyImportConsentTyp,
    signerId: input.signerId,
    audience: input.audience,
    challenge: input.challenge,
    claims: { action: "import_key", spki: base64url.encode(digest), kalg: input.keyAlgorithm },
    ...(input.now ? { now: input.now } : {}),
  });
  return encryptToSam(input.samKey, { pin: input.pin, proof }, { cty: keyImportConsentEnvelopeCty });
}
