/**
 * Builders of the signer's SignerService requests (signer.proto): Activate and ChangePin. The
 * activation code and PINs travel only inside a JWE to the SAM's encryption key, so the RSSP's front
 * end relays them without reading them (T-2.1.1.3, T-2.1.2.2); the device key signs the SAM's
 * one-time challenge (proof of possession, R-3.1.1.2). Browser-safe: jose over WebCrypto.
 */
import { calculateJwkThumbprint, compactDecrypt, exportJWK, generateKeyPair, type CryptoKey } from "jose";
import type { SamEncryptionKey } from "../gen/inkan/sam/v1/sam_pb.js";
import { signDeviceJws, type DeviceKey } from "./device-key.js";
import { encryptToSam, type SamPublicKey } from "./encrypt-to-sam.js";

export const activationEnvelopeCty = "inkan-activation-envelope+json";
export const pinChangeEnvelopeCty = "inkan-pin-change-envelope+json";
export const activationProofTyp = "inkan-activation+jwt";
export const pinChangeProofTyp = "inkan-pin-change+jwt";

export interface ActivationRequestInput {
  signerId: string;
  /**
   * The activation code delivered out of band (as typed: case and "-" do not matter), or, for a
   * code issued in two halves (split knowledge, inkan.admin.v1.ActivationCode.part), both halves
   * in either order: they are sent joined, the SAM accepts only the pair.
   */
  activationCode: string | readonly [string, string];
  /** The new PIN (6 to 64 characters under the default policy). */
  pin: string;
  deviceKey: DeviceKey;
  /** CreateChallengeResponse.challenge of a CHALLENGE_PURPOSE_ACTIVATION challenge. */
  challenge: Uint8Array;
  /** The SAM's encryption key (CreateChallengeResponse.encryption_key, or from a trusted source). */
  samKey: SamEncryptionKey | SamPublicKey;
  /** The SAM id (CreateChallengeResponse.audience). */
  audience: string;
  /** Also enroll a TOTP generator; the response's totp_enrollment opens with {@link openTotpEnrollment}. */
  enrollTotp?: boolean;
  now?: Date;
}

/** An ActivateRequest's fields, ready for `signerClient.activate(request)`. */
export interface ActivationRequest {
  signerId: string;
  devicePublicKeyJwk: string;
  activationEnvelope: string;
  enrollTotp: boolean;
  responseEncryptionJwk: string;
}

/**
 * Builds an ActivateRequest: the device's public JWK, and the envelope {code, pin, proof} encrypted
 * to the SAM, where proof is the device key's "inkan-activation+jwt" JWS over the challenge (with
 * "ejkt" binding the ephemeral response key when enrolling TOTP). Returns the request and, when
 * enrolling TOTP, the ephemeral private key that opens the response's totp_enrollment.
 *
 * @example
 * const ch = await signer.createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
 * const { request } = await buildActivationRequest({ signerId, activationCode, pin, deviceKey,
 *   challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
 * const { deviceKeyId } = await signer.activate(request);
 */
export async function buildActivationRequest(input: ActivationRequestInput): Promise<{ request: ActivationRequest; responseKey?: CryptoKey }> {
  let responseKey: CryptoKey | undefined;
  let responseEncryptionJwk = "";
  const claims: Record<string, string> = {};
  if (input.enrollTotp) {
    const pair = await generateKeyPair("ECDH-ES", { crv: "P-256", extractable: false });
    const jwk = await exportJWK(pair.publicKey);
    const pub = { kty: "EC", crv: "P-256", x: jwk.x!, y: jwk.y! };
    responseKey = pair.privateKey;
    responseEncryptionJwk = JSON.stringify(pub);
    claims.ejkt = await calculateJwkThumbprint(pub, "sha256"); // no relay can substitute its own key
  }
  const proof = await signDeviceJws({
    deviceKey: input.deviceKey,
    typ: activationProofTyp,
    signerId: input.signerId,
    audience: input.audience,
    challenge: input.challenge,
    claims,
    ...(input.now ? { now: input.now } : {}),
  });
  const code = typeof input.activationCode === "string" ? input.activationCode : input.activationCode.join("-");
  const activationEnvelope = await encryptToSam(input.samKey, { code, pin: input.pin, proof }, { cty: activationEnvelopeCty });
  return {
    request: { signerId: input.signerId, devicePublicKeyJwk: JSON.stringify(input.deviceKey.publicJwk), activationEnvelope, enrollTotp: input.enrollTotp === true, responseEncryptionJwk },
    ...(responseKey ? { responseKey } : {}),
  };
}

/**
 * Opens ActivateResponse.totp_enrollment with the responseKey of {@link buildActivationRequest}: the otpauth:// URI.
 *
 * @example
 * const { request, responseKey } = await buildActivationRequest({ ...input, enrollTotp: true });
 * const res = await signerService.activate(request);
 * const uri = await openTotpEnrollment(res.totpEnrollment, responseKey!); // show as a QR code
 */
export async function openTotpEnrollment(totpEnrollment: string, responseKey: CryptoKey): Promise<string> {
  const { plaintext, protectedHeader } = await compactDecrypt(totpEnrollment, responseKey, { keyManagementAlgorithms: ["ECDH-ES"], contentEncryptionAlgorithms: ["A256GCM"] });
  if (protectedHeader.cty !== "inkan-totp-enrollment") throw new TypeError("not a TOTP enrollment");
  return new TextDecoder().decode(plaintext);
}

export interface PinChangeRequestInput {
  signerId: string;
  oldPin: string;
  newPin: string;
  /** A device key registered to the signer. */
  deviceKey: DeviceKey;
  /** CreateChallengeResponse.challenge of a CHALLENGE_PURPOSE_PIN_CHANGE challenge. */
  challenge: Uint8Array;
  samKey: SamEncryptionKey | SamPublicKey;
  audience: string;
  now?: Date;
}

/**
 * Builds a ChangePinRequest: the envelope {old_pin, new_pin, proof} encrypted to the SAM, where
 * proof is the device key's "inkan-pin-change+jwt" JWS over the challenge.
 *
 * @example
 * const ch = await signerService.createChallenge({ signerId, purpose: ChallengePurpose.PIN_CHANGE });
 * await signerService.changePin(await buildPinChangeRequest({ signerId, oldPin, newPin, deviceKey,
 *   challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience }));
 */
export async function buildPinChangeRequest(input: PinChangeRequestInput): Promise<{ signerId: string; pinChangeEnvelope: string }> {
  const proof = await signDeviceJws({
    deviceKey: input.deviceKey,
    typ: pinChangeProofTyp,
    signerId: input.signerId,
    audience: input.audience,
    challenge: input.challenge,
    ...(input.now ? { now: input.now } : {}),
  });
  const pinChangeEnvelope = await encryptToSam(input.samKey, { old_pin: input.oldPin, new_pin: input.newPin, proof }, { cty: pinChangeEnvelopeCty });
  return { signerId: input.signerId, pinChangeEnvelope };
}
