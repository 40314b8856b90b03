export { contractFiles } from "./contract.js";
export { inkanErrorDetail, inkanErrorReason } from "./errors.js";
export { Reason, type ErrorDetail, ErrorDetailSchema } from "./gen/inkan/sam/v1/error_pb.js";
export { createAdminRequestSigner, requestSignatureHeader, requestSignatureType, type AdminRequestSignerOptions } from "./admin-signer.js";
export { encryptToSam, type EncryptToSamOptions, type SamPublicKey } from "./device/encrypt-to-sam.js";
export { createDeviceKey, signDeviceJws, newJti, type DeviceKey, type DeviceKeyAlgorithm, type DeviceJwsOptions } from "./device/device-key.js";
export { buildClaimsRSad, buildRSad, rSadEnvelopeCty, rSadTyp, type ClaimsRSadFactors, type ClaimsRSadInput, type RSadInput, type RSadTransactionInput } from "./device/r-sad.js";
export { buildActivationRequest, buildPinChangeRequest, openTotpEnrollment, type ActivationRequest, type ActivationRequestInput, type PinChangeRequestInput } from "./device/signer-requests.js";
export { dtbsrDigest } from "./sca/dtbsr-digest.js";
