/**
 * Builder of the signer's RequestSuspension request (signer.proto): a device-key JWS, "typ"
 * "inkan-suspension+jwt", over a one-time CHALLENGE_PURPOSE_SUSPENSION challenge issued for this
 * signer and credential, naming the credential and the action. Only the signer's registered device
 * key can make it (R-3.3.1, T-2.3.1.1); the challenge and "jti" work once and any altered byte
 * breaks the signature (R-3.3.2, T-2.3.1.2). It holds no secret, so it is not encrypted.
 * Browser-safe: jose over WebCrypto.
 */
import { signDeviceJws, type DeviceKey } from "./device-key.js";

export const suspensionRequestTyp = "inkan-suspension+jwt";

export interface SuspensionRequestInput {
  signerId: string;
  /** The credential to suspend: the one the challenge was issued for. */
  credentialId: string;
  /** A device key registered to the signer. */
  deviceKey: DeviceKey;
  /** CreateChallengeResponse.challenge of a CHALLENGE_PURPOSE_SUSPENSION challenge for credentialId. */
  challenge: Uint8Array;
  /** The SAM id (CreateChallengeResponse.audience). */
  audience: string;
  now?: Date;
}

/** A RequestSuspensionRequest's fields, ready for `signerClient.requestSuspension(request)`. */
export interface SuspensionRequest {
  signerId: string;
  credentialId: string;
  suspensionRequest: string;
}

/**
 * Builds a RequestSuspensionRequest.
 *
 * @example
 * const ch = await signer.createChallenge({ signerId, purpose: ChallengePurpose.SUSPENSION, credentialId });
 * const request = await buildSuspensionRequest({ signerId, credentialId, deviceKey, challenge: ch.challenge, audience: ch.audience });
 * const { status, suspendedAt } = await signer.requestSuspension(request);
 */
export async function buildSuspensionRequest(input: SuspensionRequestInput): Promise<SuspensionRequest> {
  const suspensionRequest = await signDeviceJws({
    deviceKey: input.deviceKey,
    typ: suspensionRequestTyp,
    signerId: input.signerId,
    audience: input.audience,
    challenge: input.challenge,
    claims: { cred: input.credentialId, action: "suspend" },
    ...(input.now ? { now: input.now } : {}),
  });
  return { signerId: input.signerId, credentialId: input.credentialId, suspensionRequest };
}
