import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ChallengePurpose, CreateChallengeResponseSchema, type SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { InkanError } from "../errors.js";
import type { Activation, SignerChallengePurpose } from "../registration/activation.js";
import type { CredentialLifecycle } from "../registration/credential-lifecycle.js";
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
};

/**
 * SignerService (signer.proto), reached through the RSSP's signer front end with its SCA
 * certificate: map in, call the domain, map out. CreateChallenge, Activate, ChangePin and
 * RequestSuspension.
 */
export function signerService(activation: Activation, lifecycle: CredentialLifecycle, challengeKey: Pick<ChallengeSigner, "publicKey">, clock: () => Date = () => new Date()): Impl {
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
  };
}
