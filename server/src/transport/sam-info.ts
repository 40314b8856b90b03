import { fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { GetInfoResponseSchema, type SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import type { PolicyVersion, SecurityPolicies } from "../admin/security-policy.js";
import type { TransportLimits } from "../config/config.js";
import { maxRSadBytes, type PublishedSamKey, type SamEncryptionKeys } from "../keys/sam-encryption-keys.js";
import { enforcedMethods, type MethodAvailability } from "../sap/authentication-methods.js";
import type { ChallengeSigner, ChallengeSigningKey } from "../sap/challenge-signature.js";
import { maxSignaturesPerStreamMessage, streamCheckpointInterval } from "../sap/sign-stream.js";

type Impl = Partial<ServiceImpl<typeof SignatureActivationService>>;

/** Contract values that no setting changes yet (sam.proto, Limits). */
const contractLimits = {
  maxDtbsrBytes: 8_192,
  maxSignaturesPerStreamMessage,
  streamCheckpointInterval,
} as const;

const levelOrder = ["ASSURANCE_LEVEL_1", "ASSURANCE_LEVEL_2", "ASSURANCE_LEVEL_3"];

export interface SamInfoOptions {
  keys: Pick<SamEncryptionKeys, "publishedKeys" | "samId">;
  policies: Pick<SecurityPolicies, "current">;
  /** The server's version (its package.json). */
  version: string;
  /** The largest message the server reads (config limits.readMaxBytes). */
  maxMessageBytes: number;
  /** Issue 17.6: the transport limits a client must respect (config limits), when configured. */
  transport?: Pick<TransportLimits, "maxConcurrentStreams" | "maxConcurrentCallsPerClient" | "maxHeaderBytes" | "requestTimeoutMs" | "idleTimeoutMs">;
  /** What this deployment can verify beyond the policy (the login assertion needs an OpenID provider). */
  methods: MethodAvailability;
  /** The key that signs every SadChallenge (T-2.2.1.7), published for devices to pin. */
  challengeKey: Pick<ChallengeSigner, "publicKey">;
  clock?: () => Date;
}

/**
 * SignatureActivationService.GetInfo: the SAM's name, version and id, what the security policy in
 * force enforces (assurance levels, algorithms, limits, R-3.2.2.3) and the JWE keys that
 * R.SAD is encrypted to (R-3.2.1.2, T-2.2.1.5), and the key every SadChallenge is signed with
 * (T-2.2.1.7).
 *
 * sam_id: the R.SAD audience must be one value for the whole deployment (every node), so it is not
 * derived from the per-node nodeId; it is "urn:inkan:sam:" with 128 random bits from the crypto
 * module, drawn once with the first SAM encryption key and kept in the same sealed key set
 * (keys/sam-encryption-keys.ts). A deployment-chosen URL (e.g. "https://sam.rssp.example/") would
 * need a configuration setting, which does not exist yet.
 */
export function samInfoService(o: SamInfoOptions): Impl {
  const clock = o.clock ?? (() => new Date());
  return {
    async getInfo() {
      const now = clock();
      const [policy, samId, keys, challengeKey] = await Promise.all([o.policies.current(), o.keys.samId(), o.keys.publishedKeys(now), o.challengeKey.publicKey()]);
      return fromJson(GetInfoResponseSchema, {
        name: "Inkan",
        version: o.version,
        samId,
        assuranceLevels: assuranceLevels(policy),
        hashAlgorithms: list(policy, "allowedHashAlgorithms"),
        signatureAlgorithms: list(policy, "allowedSignatureAlgorithms"),
        keyAlgorithms: list(policy, "allowedKeyAlgorithms"),
        deviceKeyAlgorithms: list(policy, "allowedDeviceKeyAlgorithms"),
        // what the R.SAD verifier accepts, not merely what the policy names (no OpenID provider: no login assertion).
        authenticationMethods: enforcedMethods(policy, o.methods),
        limits: {
          maxHashesPerTransaction: policy.maxHashesPerTransaction,
          maxHashesPerChunk: policy.maxHashesPerChunk,
          maxMessageBytes: o.maxMessageBytes,
          maxDtbsrBytes: contractLimits.maxDtbsrBytes,
          maxRSadBytes,
          maxSignaturesPerStreamMessage: contractLimits.maxSignaturesPerStreamMessage,
          streamCheckpointInterval: contractLimits.streamCheckpointInterval,
          maxAuthorizeAttempts: uint(policy, "maxAuthorizeAttempts"),
          defaultTransactionLifetime: policy.policy.defaultTransactionLifetime ?? null,
          maxTransactionLifetime: policy.policy.maxTransactionLifetime ?? null,
          uploadTimeout: policy.policy.uploadTimeout ?? null,
          sadTokenLifetime: policy.policy.sadTokenLifetime ?? null,
          maxSadLifetime: policy.policy.maxSadLifetime ?? null,
          maxClockSkew: policy.policy.maxClockSkew ?? null,
          ...(o.transport
            ? {
                maxConcurrentStreams: o.transport.maxConcurrentStreams,
                maxConcurrentCalls: o.transport.maxConcurrentCallsPerClient,
                maxHeaderBytes: o.transport.maxHeaderBytes,
                requestTimeout: `${o.transport.requestTimeoutMs / 1000}s`,
                idleTimeout: `${o.transport.idleTimeoutMs / 1000}s`,
              }
            : {}),
        },
        encryptionKeys: keys.map(keyOut),
        challengeSigningKey: signingKeyOut(challengeKey),
      } as JsonObject);
    },
  };
}

function keyOut(k: PublishedSamKey): JsonObject {
  return {
    kid: k.kid,
    alg: "JWE_ALGORITHM_ECDH_ES_A256KW",
    jwk: JSON.stringify(k.jwk),
    current: k.current,
    ...(k.notAfter ? { notAfter: k.notAfter.toISOString() } : {}),
  };
}

/** sam.proto SamSigningKey (proto3 JSON), as GetInfo and CreateChallenge publish it. */
export function signingKeyOut(k: ChallengeSigningKey): JsonObject {
  return { kid: k.kid, alg: "JWS_ALGORITHM_ES256", jwk: JSON.stringify(k.jwk) };
}

/** the levels the policy allows, lowest first; level 3 only where the deployment declares a certified SAM. */
function assuranceLevels(policy: PolicyVersion): string[] {
  const certified = policy.policy.certified === true;
  return list(policy, "allowedAssuranceLevels")
    .filter((l) => l !== "ASSURANCE_LEVEL_3" || certified)
    .sort((a, b) => levelOrder.indexOf(a) - levelOrder.indexOf(b));
}

/** An enum list of the policy (proto3 JSON: names), empty when absent. */
export function list(policy: PolicyVersion, field: string): string[] {
  const v: JsonValue | undefined = policy.policy[field] as JsonValue | undefined;
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}

function uint(policy: PolicyVersion, field: string): number {
  const v = policy.policy[field];
  return typeof v === "number" ? v : 0;
}
