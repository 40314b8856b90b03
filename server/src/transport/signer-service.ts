import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ChallengePurpose, CreateChallengeResponseSchema, type SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { CredentialStatus } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { InkanError } from "../errors.js";
import type { Activation, SignerChallengePurpose } from "../registration/activation.js";
import type { CredentialLifecycle } from "../registration/credential-lifecycle.js";
import type { SignerDevice } from "../registration/signer-device.js";
import type { ChallengeSigner } from "../sap/challenge-signature.js";
import { kRequestId } from "./identity.js";
import { credentialOut } from "./registration-service.js";
import { signingKeyOut } from "./sam-info.js";

type Impl = Partial<ServiceImpl<typeof SignerService>>;

const purposeIn: Partial<Record<ChallengePurpose, SignerChallengePurpose>> = {
  [ChallengePurpose.ACTIVATION]: "ACTIVATION",
  [ChallengePurpose.PIN_CHANGE]: "PIN_CHANGE",
  [ChallengePurpose.SUSPENSION]: "SUSPENSION",
  [ChallengePurpose.KEY_IMPORT]: "KEY_IMPORT",
  [ChallengePurpose.DEVICE_AUTHENTICATION]: "DEVICE_AUTHENTICATION",
  [ChallengePurpose.AUTHORIZATION_HISTORY]: "AUTHORIZATION_HISTORY",
};

const credentialStatusOut: Record<string, CredentialStatus> = {
  PENDING: CredentialStatus.KEY_GENERATED,
  ACTIVE: CredentialStatus.ACTIVE,
  SUSPENDED: CredentialStatus.SUSPENDED,
  LOCKED: CredentialStatus.LOCKED,
};

/**
 * SignerService (signer.proto), reached through the RSSP's signer front end with its SCA
 * certificate: map in, call the domain, map out. CreateChallenge, Activate, ChangePin and
 * RequestSuspension.
 */
export function signerService(activation: Activation, lifecycle: CredentialLifecycle, challengeKey: Pick<ChallengeSigner, "publicKey">, clock: () => Date = () => new Date(), device?: SignerDevice): Impl {
  return {
    async createChallenge(req) {
      const purpose = purposeIn[req.purpose];
      if (!purpose) throw new InkanError("INVALID_REQUEST", "purpose is required", { field: "purpose" });
      const issued = await activation.createChallenge({ signerId: req.signerId, purpose, ...(req.credentialId ? { credentialId: req.credentialId } : {}), now: clock() });
      const k = issued.encryptionKey;
      return fromJson(CreateChallengeResponseSchema, {
        challenge: Buffer.from(issued.challenge).toString("base64"),
        expiresAt: issued.expiresAt.toISOString(),
        audience: issued.audience,
        encryptionKey: { kid: k.kid, alg: "JWE_ALGORITHM_ECDH_ES_A256KW", jwk: JSON.stringify(k.jwk), current: k.current, ...(k.notAfter ? { notAfter: k.notAfter.toISOString() } : {}) },
        deviceKeyAlgorithms: issued.deviceKeyAlgorithms,
        challengeSigningKey: signingKeyOut(await challengeKey.publicKey()),
      } as JsonObject);
    },
    async activate(req, ctx) {
      const out = await activation.activate({
        signerId: req.signerId,
        devicePublicKeyJwk: req.devicePublicKeyJwk,
        activationEnvelope: req.activationEnvelope,
        enrollTotp: req.enrollTotp,
        responseEncryptionJwk: req.responseEncryptionJwk,
        requestId: ctx.values.get(kRequestId),
        now: clock(),
      });
      return { deviceKeyId: out.deviceKeyId, totpEnrollment: out.totpEnrollment, activatedAt: timestampFromDate(out.activatedAt) };
    },
    async changePin(req, ctx) {
      const out = await activation.changePin({ signerId: req.signerId, pinChangeEnvelope: req.pinChangeEnvelope, requestId: ctx.values.get(kRequestId), now: clock() });
      return { changedAt: timestampFromDate(out.changedAt) };
    },
    async requestSuspension(req, ctx) {
      const now = clock();
      const out = await lifecycle.requestSuspension({
        signerId: req.signerId,
        credentialId: req.credentialId,
        suspensionRequest: req.suspensionRequest,
        requestId: ctx.values.get(kRequestId),
        now,
      });
      return { credentialId: out.view.credential.id, status: credentialOut(out.view, now).status, suspendedAt: timestampFromDate(out.suspendedAt) };
    },
    ...(device ? deviceRpcs(device, clock) : {}),
  };
}

/** AuthenticateDevice and ListAuthorizations (issue 15): the signer portal's device-key checked reads. */
function deviceRpcs(device: SignerDevice, clock: () => Date): Impl {
  return {
    async authenticateDevice(req, ctx) {
      const out = await device.authenticate({ signerId: req.signerId, deviceProof: req.deviceProof, requestId: ctx.values.get(kRequestId), now: clock() });
      return {
        signerId: out.signerId,
        deviceKeyId: out.deviceKeyId,
        authenticatedAt: timestampFromDate(out.authenticatedAt),
        credentials: out.credentials.map((c) => ({ credentialId: c.credentialId, status: credentialStatusOut[c.status] ?? CredentialStatus.UNSPECIFIED })),
      };
    },
    async listAuthorizations(req, ctx) {
      const out = await device.listAuthorizations({ signerId: req.signerId, historyRequest: req.historyRequest, limit: req.limit, requestId: ctx.values.get(kRequestId), now: clock() });
      return { authorizations: out.map((a) => ({ ...a, time: timestampFromDate(a.time) })) };
    },
  };
}
