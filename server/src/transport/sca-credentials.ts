import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { AuthenticationMethod, type SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { PolicyVersion, SecurityPolicies } from "../admin/security-policy.js";
import type { CredentialView } from "../registration/credentials.js";
import { InkanError } from "../errors.js";
import type { ScaCredentials, ScopedScaCaller } from "../registration/sca-view.js";
import { kCaller, kRequestId } from "./identity.js";
import type { CredentialStatus as StoreCredentialStatus } from "../store/port.js";
import { credentialOut, credentialStatusIn } from "./registration-service.js";
import { list as policyList } from "./sam-info.js";

type Impl = Partial<ServiceImpl<typeof SignatureActivationService>>;

/** The signature schemes a key algorithm can use (sam.proto SignatureAlgorithm). */
const schemesOf = (keyAlgorithm: string): SignatureAlgorithm[] =>
  keyAlgorithm.startsWith("EC_") ? [SignatureAlgorithm.ECDSA]
  : keyAlgorithm.startsWith("RSA_") ? [SignatureAlgorithm.RSA_PKCS1_V1_5, SignatureAlgorithm.RSA_PSS]
  : keyAlgorithm === "ED25519" ? [SignatureAlgorithm.ED25519]
  : [];

/** How many factors each method checks: the level it meets (R-3.1.4; level 3 is level 2 on a certified SAM). */
const factorsOf: Partial<Record<AuthenticationMethod, number>> = {
  [AuthenticationMethod.DEVICE_KEY_AND_PIN]: 2,
  [AuthenticationMethod.PIN_AND_TOTP]: 2,
  [AuthenticationMethod.PIN]: 1,
  [AuthenticationMethod.LOGIN_ASSERTION]: 1,
};

/** Proto3 JSON enum names of a policy list ("SIGNATURE_ALGORITHM_ECDSA") as enum values. */
function enumValues<E extends number>(policy: PolicyVersion, field: string, prefix: string, values: Record<string, E | string>): E[] {
  return policyList(policy, field).flatMap((name) => {
    const v = name.startsWith(prefix) ? values[name.slice(prefix.length)] : undefined;
    return typeof v === "number" ? [v] : [];
  });
}

/**
 * A credential as an SCA sees it (CredentialInfo): the fields it shares with the registration
 * operator's Credential come from that mapping (no key id, origin or audit fields); what the key may
 * do comes from the policy in force. Never any secret (T-2.2.2.3). `certificate` is empty
 * (CERTIFICATE_STATUS_UNSPECIFIED) before ImportCertificate; its chain only when `includeChain`.
 */
export function credentialInfoOut(view: CredentialView, policy: PolicyVersion, now: Date = new Date(), includeChain = false) {
  const { credentialId, signerId, label, status, keyAlgorithm, publicKeySpki, publicKeyFingerprint, assuranceLevel, certificate } = credentialOut(view, now, includeChain);
  const schemes = schemesOf(view.body.keyAlgorithm);
  const pure = schemes.includes(SignatureAlgorithm.ED25519); // pure EdDSA signs the bytes themselves (HASH_ALGORITHM_NONE) and nothing else
  const level = Math.min(view.body.assuranceLevel, 2);
  return {
    credentialId,
    signerId,
    label,
    status,
    keyAlgorithm,
    publicKeySpki,
    publicKeyFingerprint,
    signatureAlgorithms: enumValues(policy, "allowedSignatureAlgorithms", "SIGNATURE_ALGORITHM_", SignatureAlgorithm).filter((a) => schemes.includes(a)),
    hashAlgorithms: enumValues(policy, "allowedHashAlgorithms", "HASH_ALGORITHM_", HashAlgorithm).filter((h) => (h === HashAlgorithm.NONE) === pure),
    assuranceLevel,
    authenticationMethods: enumValues(policy, "enabledAuthenticationMethods", "AUTHENTICATION_METHOD_", AuthenticationMethod).filter((m) => (factorsOf[m] ?? 0) >= level),
    maxSignaturesPerTransaction: policy.maxHashesPerTransaction,
    certificate,
  };
}

/** The calling SCA, with what the policy's scopes name it by (issue 19); the SCA-only access rule already ran. */
function scopedCaller(ctx: HandlerContext): ScopedScaCaller {
  const caller = ctx.values.get(kCaller);
  if (!caller || caller.kind !== "sca") throw new InkanError("ROLE_NOT_PERMITTED", "only an SCA may call this method");
  return { certificateSha256: caller.sha256, subject: caller.subject, requestId: ctx.values.get(kRequestId), scope: { spkiSha256: caller.spkiSha256, issuerSha256: caller.issuerSha256 } };
}

/**
 * SignatureActivationService.ListCredentials and GetCredential for trusted SCAs (R-3.1.1.3), with
 * the scope of {@link ScaCredentials}: only the signers the policy's SCA scopes give the caller
 * (issue 19), only an ACTIVE signer's credentials, never DESTROYED ones, and NOT_FOUND (never
 * PERMISSION_DENIED) for everything outside it. The SCA-only access rule ran before these
 * handlers. Spread into the same service object as GetInfo.
 */
export function scaCredentialsService(view: ScaCredentials, policies: Pick<SecurityPolicies, "current">, clock: () => Date = () => new Date()): Impl {
  return {
    async listCredentials(req, ctx) {
      const statuses = req.statuses.map(credentialStatusIn).filter((s): s is StoreCredentialStatus => s !== undefined);
      const page = await view.list({
        signerId: req.signerId,
        statuses,
        ...(req.page?.pageToken ? { pageToken: req.page.pageToken } : {}),
        limit: req.page?.pageSize || 100,
      }, scopedCaller(ctx));
      const policy = await policies.current();
      const now = clock();
      return { credentials: page.credentials.map((c) => credentialInfoOut(c, policy, now, req.includeCertificateChain)), page: { nextPageToken: page.nextPageToken } };
    },
    async getCredential(req, ctx) {
      const credential = await view.get(req.credentialId, scopedCaller(ctx));
      // sam.proto GetCredentialResponse: the credential "with its certificate chain".
      return { credential: credentialInfoOut(credential, await policies.current(), clock(), true) };
    },
  };
}
