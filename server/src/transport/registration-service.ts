import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  ActivationCodePart,
  CredentialOrigin,
  IdentityProofingMethod,
  SignerKind,
  SignerStatus,
  type IdentityProofing as IdentityProofingPb,
  type RegistrationService,
  type SignerIdentity as SignerIdentityPb,
} from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ErrorDetailSchema, Reason } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import { JwsAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { CertificateStatus, CredentialStatus, HashAlgorithm, KeyAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { PrivilegedUserActor } from "../audit/events.js";
import type { KeyAlgorithm as DomainKeyAlgorithm, HashAlgorithm as DomainHashAlgorithm, SignatureScheme } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { Activation } from "../registration/activation.js";
import { certificateState, type StoredCertificate } from "../registration/certificates.js";
import type { Credentials, CredentialView } from "../registration/credentials.js";
import type { SapCsrApproval } from "../sap/csr-approval.js";
import type { Acting, IdentityProofing, IssuedActivationCode, SignerIdentity, Signers, SignerView } from "../registration/signers.js";
import type { CredentialStatus as StoreCredentialStatus, SignerStatus as StoreSignerStatus } from "../store/port.js";
import { kAdmin } from "./admin-auth.js";
import { kRebindingApproval } from "./dual-control.js";
import { kCaller, kRequestId } from "./identity.js";

type Impl = Partial<ServiceImpl<typeof RegistrationService>>;
const ts = (iso: string | undefined) => (iso ? timestampFromDate(new Date(iso)) : undefined);
const hexToBytes = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"));

/** The operator making this request, as the audit log records them (set by the admin-auth interceptor). */
export function acting(ctx: HandlerContext, now: Date): Acting {
  const user = ctx.values.get(kAdmin);
  if (!user) throw new InkanError("CLIENT_CERTIFICATE_REJECTED", "not authenticated"); // unreachable by construction
  const caller = ctx.values.get(kCaller);
  const actor: PrivilegedUserActor = {
    kind: "privileged-user",
    userId: user.userId,
    role: user.role,
    ...(caller ? { certificateSha256: hexToBytes(caller.sha256) } : {}),
  };
  return { actor, requestId: ctx.values.get(kRequestId), now };
}

function identityIn(p: SignerIdentityPb | undefined): SignerIdentity {
  if (!p) throw new InkanError("INVALID_REQUEST", "identity is required", { field: "identity" });
  const kind = SignerKind[p.kind];
  if (kind !== "NATURAL_PERSON" && kind !== "LEGAL_PERSON") throw new InkanError("INVALID_REQUEST", "identity.kind is required", { field: "identity.kind" });
  return {
    kind,
    legalName: p.legalName,
    displayName: p.displayName,
    email: p.email,
    phoneNumber: p.phoneNumber,
    organization: p.organization,
    country: p.country,
    externalId: p.externalId,
  };
}

function proofingIn(p: IdentityProofingPb | undefined): IdentityProofing {
  if (!p?.proofedAt) throw new InkanError("INVALID_REQUEST", "proofing.proofed_at is required", { field: "proofing.proofed_at" });
  const method = IdentityProofingMethod[p.method];
  if (!method || method === "UNSPECIFIED") throw new InkanError("INVALID_REQUEST", "proofing.method is required", { field: "proofing.method" });
  return { method: method as IdentityProofing["method"], evidenceReference: p.evidenceReference, proofedAt: timestampDate(p.proofedAt as Timestamp).toISOString() };
}

const signerStatusOut: Record<StoreSignerStatus, SignerStatus> = {
  PENDING_ACTIVATION: SignerStatus.PENDING_ACTIVATION,
  ACTIVE: SignerStatus.ACTIVE,
  SUSPENDED: SignerStatus.DISABLED, // not used by this SAM; reported as what it means to the signer
  DISABLED: SignerStatus.DISABLED,
};

/** A signer as RegistrationService returns it: identity, proofing and factors without any secret (T-2.2.2.3). */
export function signerOut({ signer, body, factors }: SignerView) {
  const code = factors.activationCode;
  return {
    signerId: signer.id,
    identity: { ...body.identity, kind: SignerKind[body.identity.kind] },
    proofing: { method: IdentityProofingMethod[body.proofing.method], evidenceReference: body.proofing.evidenceReference, proofedAt: ts(body.proofing.proofedAt) },
    status: signerStatusOut[signer.status],
    factors: {
      pinSet: factors.pinSet,
      totpEnrolled: factors.totpEnrolled,
      devices: factors.devices.map((d) => ({
        deviceKeyId: d.deviceKeyId,
        publicKeyJwk: d.publicKeyJwk,
        algorithm: (JwsAlgorithm as unknown as Record<string, JwsAlgorithm>)[d.algorithm === "EdDSA" ? "EDDSA" : d.algorithm] ?? JwsAlgorithm.UNSPECIFIED,
        registeredAt: ts(d.registeredAt),
        revokedAt: ts(d.revokedAt),
      })),
      failedAttempts: factors.failedAttempts,
      lockedAt: ts(factors.lockedAt),
      // The outstanding code's dates and attempts, never the code (T-2.1.1.3).
      pendingActivationCode: code ? { issuedAt: ts(code.issuedAt), expiresAt: ts(code.expiresAt), attemptsLeft: code.maxAttempts, split: code.split === true } : undefined,
    },
    createdAt: ts(body.createdAt),
    createdBy: body.createdBy,
    updatedAt: ts(body.updatedAt),
    version: BigInt(signer.version),
    statusReason: body.statusReason,
    group: body.group ?? "",
  };
}

const credentialStatusOut: Record<StoreCredentialStatus, CredentialStatus> = {
  PENDING: CredentialStatus.KEY_GENERATED,
  ACTIVE: CredentialStatus.ACTIVE,
  SUSPENDED: CredentialStatus.SUSPENDED,
  LOCKED: CredentialStatus.LOCKED,
  DESTROYED: CredentialStatus.DESTROYED,
};

/** A proto credential status as the store names it; undefined for UNSPECIFIED. Shared with the SCA-facing credential reads. */
export const credentialStatusIn = (s: CredentialStatus): StoreCredentialStatus | undefined =>
  s === CredentialStatus.KEY_GENERATED ? "PENDING" : s === CredentialStatus.UNSPECIFIED ? undefined : (CredentialStatus[s] as StoreCredentialStatus);

/**
 * CertificateInfo of a credential's imported chain; empty (CERTIFICATE_STATUS_UNSPECIFIED) before
 * ImportCertificate. No revocation is recorded by this SAM yet, so the status is VALID within the
 * validity period and EXPIRED outside it (before notBefore too, which only a clock set back can
 * produce: the proto has no "not yet valid", and such a certificate is not valid).
 */
export function certificateOut(c: StoredCertificate | undefined, now: Date, includeChain: boolean) {
  if (!c) return {};
  return {
    status: certificateState(c, now) === "VALID" ? CertificateStatus.VALID : CertificateStatus.EXPIRED,
    chain: includeChain ? c.chain.map((b64) => new Uint8Array(Buffer.from(b64, "base64"))) : [],
    subjectDn: c.subjectDn,
    issuerDn: c.issuerDn,
    serialNumber: c.serialNumber,
    notBefore: ts(c.notBefore),
    notAfter: ts(c.notAfter),
  };
}

/** A credential: key id, public key, fingerprint and certificate (with its chain unless told otherwise); never anything secret. */
export function credentialOut({ credential, body }: CredentialView, now: Date = new Date(), includeChain = true) {
  return {
    credentialId: credential.id,
    signerId: credential.signerId,
    status: credentialStatusOut[credential.status],
    keyAlgorithm: KeyAlgorithm[body.keyAlgorithm],
    assuranceLevel: body.assuranceLevel,
    origin: body.origin === "GENERATED" ? CredentialOrigin.GENERATED : CredentialOrigin.IMPORTED,
    keyId: body.keyId,
    publicKeySpki: Buffer.from(body.publicKeySpki, "base64"),
    publicKeyFingerprint: hexToBytes(credential.publicKeyFingerprint),
    label: body.label,
    createdAt: ts(body.createdAt),
    updatedAt: ts(body.updatedAt),
    statusReason: body.statusReason,
    certificate: certificateOut(body.certificate, now, includeChain),
  };
}

function keyAlgorithmIn(a: KeyAlgorithm): DomainKeyAlgorithm {
  const name = KeyAlgorithm[a];
  if (!name || name === "UNSPECIFIED") throw new InkanError("INVALID_REQUEST", "key_algorithm is required", { field: "key_algorithm" });
  return name as DomainKeyAlgorithm;
}

/** Proto enum values as the domain names them; undefined for UNSPECIFIED (the key's default). */
const hashIn = (h: HashAlgorithm): DomainHashAlgorithm | undefined => (h === HashAlgorithm.UNSPECIFIED ? undefined : (HashAlgorithm[h] as DomainHashAlgorithm));
const schemeIn = (a: SignatureAlgorithm): SignatureScheme | undefined => (a === SignatureAlgorithm.UNSPECIFIED ? undefined : (SignatureAlgorithm[a] as SignatureScheme));

/** A fresh code (or the approver's half) as registration.proto's ActivationCode; the only place it leaves the SAM (T-2.1.1.3). */
const activationCodeOut = (c: IssuedActivationCode) => ({
  code: c.code,
  expiresAt: timestampFromDate(c.expiresAt),
  maxAttempts: c.maxAttempts,
  part: c.part === "WHOLE" ? ActivationCodePart.WHOLE : ActivationCodePart.APPROVER_HALF,
});

const signerStatusIn = (s: SignerStatus): StoreSignerStatus | undefined =>
  s === SignerStatus.UNSPECIFIED ? undefined : (SignerStatus[s] as StoreSignerStatus);

/**
 * RegistrationService, the registration operator's part that has landed: signers (enroll, read,
 * update, disable, enable), activation codes, factor reset and device revocation, lockout reset,
 * key generation with credential reads, CSR preparation and certificate import (CreateCsr is
 * {@link createCsrService}). Authentication,
 * the role check, validation and the privileged-operation audit ran before these handlers; the
 * other RPCs answer UNIMPLEMENTED until their issues land.
 */
export function registrationService(signers: Signers, credentials: Credentials, activation: Activation, clock: () => Date = () => new Date()): Impl {
  return {
    async enrollSigner(req, ctx) {
      const view = await signers.enroll({ ...acting(ctx, clock()), identity: identityIn(req.identity), proofing: proofingIn(req.proofing), group: req.group });
      return { signer: signerOut(view) };
    },
    async getSigner(req) {
      return { signer: signerOut(await signers.get(req.signerId, clock())) };
    },
    async listSigners(req) {
      const status = signerStatusIn(req.status);
      const page = await signers.list({
        ...(status ? { status } : {}),
        ...(req.externalId ? { externalId: req.externalId } : {}),
        ...(req.email ? { email: req.email } : {}),
        ...(req.page?.pageToken ? { pageToken: req.page.pageToken } : {}),
        limit: req.page?.pageSize || 100,
        now: clock(),
      });
      return { signers: page.signers.map(signerOut), page: { nextPageToken: page.nextPageToken } };
    },
    async updateSigner(req, ctx) {
      const view = await signers.update({
        ...acting(ctx, clock()),
        signerId: req.signerId,
        expectedVersion: Number(req.expectedVersion),
        identity: identityIn(req.identity),
        proofing: proofingIn(req.proofing),
      });
      return { signer: signerOut(view) };
    },
    async disableSigner(req, ctx) {
      return { signer: signerOut(await signers.disable({ ...acting(ctx, clock()), signerId: req.signerId, reason: req.reason })) };
    },
    async enableSigner(req, ctx) {
      return { signer: signerOut(await signers.enable({ ...acting(ctx, clock()), signerId: req.signerId, reason: req.reason })) };
    },
    async issueActivationCode(req, ctx) {
      // T-2.2.2.1: set only when dual control performs an approved request (split knowledge).
      const approval = ctx.values.get(kRebindingApproval);
      const issued = await signers.issueActivationCode({ ...acting(ctx, clock()), signerId: req.signerId, approval });
      // The only place the code exists outside the signer's hands: this response, once (T-2.1.1.3).
      return { activationCode: activationCodeOut(issued) };
    },
    async resetLockout(req, ctx) {
      return { signer: signerOut(await credentials.resetLockout({ ...acting(ctx, clock()), signerId: req.signerId, reason: req.reason })) };
    },
    async resetFactors(req, ctx) {
      const approval = ctx.values.get(kRebindingApproval); // T-2.2.2.1, as in issueActivationCode
      const out = await activation.resetFactors({ ...acting(ctx, clock()), signerId: req.signerId, reason: req.reason, approval });
      // The new code exists outside the signer's hands only in this response, once (T-2.1.1.3).
      return { signer: signerOut(out.signer), activationCode: activationCodeOut(out.code) };
    },
    async revokeDevice(req, ctx) {
      try {
        return { signer: signerOut(await activation.revokeDevice({ ...acting(ctx, clock()), signerId: req.signerId, deviceKeyId: req.deviceKeyId, reason: req.reason })) };
      } catch (err) {
        // registration.proto: an unknown or revoked device key is NOT_FOUND with REASON_INVALID_REQUEST.
        if (err instanceof InkanError && err.code === "INVALID_REQUEST" && err.field === "device_key_id") {
          throw new ConnectError(err.message, Code.NotFound, undefined, [
            { desc: ErrorDetailSchema, value: create(ErrorDetailSchema, { reason: Reason.INVALID_REQUEST, field: "device_key_id" }) },
          ]);
        }
        throw err;
      }
    },
    async generateKey(req, ctx) {
      const view = await credentials.generate({
        ...acting(ctx, clock()),
        signerId: req.signerId,
        algorithm: keyAlgorithmIn(req.keyAlgorithm),
        assuranceLevel: req.assuranceLevel,
        label: req.label,
      });
      return { credential: credentialOut(view, clock()) };
    },
    async getCredential(req) {
      return { credential: credentialOut(await credentials.get(req.credentialId), clock()) };
    },
    async listCredentials(req) {
      const status = credentialStatusIn(req.status);
      const page = await credentials.list({
        signerId: req.signerId,
        ...(status ? { status } : {}),
        ...(req.page?.pageToken ? { pageToken: req.page.pageToken } : {}),
        limit: req.page?.pageSize || 100,
      });
      const now = clock();
      return { credentials: page.credentials.map((c) => credentialOut(c, now)), page: { nextPageToken: page.nextPageToken } };
    },
    async prepareCsr(req) {
      const out = await credentials.prepareCsr({ credentialId: req.credentialId, subject: req.subject, hashAlgorithm: hashIn(req.hashAlgorithm), signatureScheme: schemeIn(req.signatureAlgorithm) });
      return {
        certificationRequestInfo: out.certificationRequestInfo,
        dtbsr: out.dtbsr,
        hashAlgorithm: HashAlgorithm[out.hashAlgorithm],
        signatureAlgorithm: SignatureAlgorithm[out.signatureScheme],
        publicKeyFingerprint: out.publicKeyFingerprint,
      };
    },
    async importCertificate(req, ctx) {
      const now = clock();
      const view = await credentials.importCertificate({ ...acting(ctx, now), credentialId: req.credentialId, chain: req.certificateChain });
      return { credential: credentialOut(view, now) };
    },
  };
}

/**
 * RegistrationService.CreateCsr: the PKCS#10 request for a credential, signed in the crypto module
 * once the signer's SAD approval is redeemed (sap/csr-approval.ts; R-3.1.3.1, R-3.1.3.2). Separate
 * from {@link registrationService} because it is wired to the SAP's signing core.
 */
export function createCsrService(approval: Pick<SapCsrApproval, "createCsr">): Impl {
  return {
    async createCsr(req, ctx) {
      const hashAlgorithm = hashIn(req.hashAlgorithm);
      const signatureScheme = schemeIn(req.signatureAlgorithm);
      if (!hashAlgorithm) throw new InkanError("INVALID_REQUEST", "hash_algorithm is required", { field: "hash_algorithm" });
      if (!signatureScheme) throw new InkanError("INVALID_REQUEST", "signature_algorithm is required", { field: "signature_algorithm" });
      const csr = await approval.createCsr({
        credentialId: req.credentialId,
        certificationRequestInfo: req.certificationRequestInfo,
        hashAlgorithm,
        signatureScheme,
        transactionId: req.transactionId,
        sadToken: req.sadToken,
        requestId: ctx.values.get(kRequestId),
      });
      return { csr };
    },
  };
}
