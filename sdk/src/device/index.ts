/**
 * The signer-device part of @inkan/sdk alone (`@inkan/sdk/device`): browser-safe, WebCrypto and
 * jose only, no Node-only imports. What a signer's app embeds.
 */
export { createDeviceKey, signDeviceJws, newJti, type DeviceKey, type DeviceKeyAlgorithm, type DeviceJwsOptions } from "./device-key.js";
export { buildActivationRequest, buildPinChangeRequest, openTotpEnrollment, type ActivationRequest, type ActivationRequestInput, type PinChangeRequestInput } from "./signer-requests.js";
export { buildClaimsRSad, buildClaimsRSadFor, buildRSad, buildRSadFor, rSadEnvelopeCty, rSadTyp, type ClaimsRSadFactors, type ClaimsRSadInput, type FromChallengeOptions, type RSadInput, type RSadTransactionInput } from "./r-sad.js";
export { descriptionDigest, sadChallengeTyp, SadChallengeRefused, verifySadChallenge, type ChallengeSigningKeyInput, type SadChallengeRefusal } from "./sad-challenge.js";
export { buildSuspensionRequest, suspensionRequestTyp, type SuspensionRequest, type SuspensionRequestInput } from "./suspension-request.js";
export { describeAuthorization, type AuthorizationSummary } from "./describe-authorization.js";
export { encryptToSam, type EncryptToSamOptions, type SamPublicKey } from "./encrypt-to-sam.js";
export { dtbsrDigest } from "../sca/dtbsr-digest.js";
