import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import type { SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { certificateInstalled, credentialUnlocked, keyGenerated } from "../audit/events.js";
import type { HashAlgorithm, KeyAlgorithm, RandomSource, SignatureScheme, SigningKeys } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { AttemptReservations, CredentialRecord, CredentialStatus } from "../store/port.js";
import { certificationRequestInfo, csrDefaults, csrDtbsr, schemeFitsKey, subjectNameDer } from "./certificates-csr.js";
import { certificateSha256, parseCertificateChain, storedCertificate, validateSigningChain, type StoredCertificate } from "./certificates.js";
import { newRecordId, pageToken, readPageToken } from "./ids.js";
import { signerAttempts } from "./lockout.js";
import { requireOperator, type Acting, type Signers, type SignerView } from "./signers.js";

export type AssuranceLevel = 1 | 2 | 3;
export type CredentialOrigin = "GENERATED" | "IMPORTED";

/**
 * The sealed body of a credential record (R-3.1.1.1, R-3.1.1.3). With the record's queryable
 * fields (signer id, status, public-key fingerprint) it binds the module's key to exactly one
 * signer: moving a credential to another signer, or swapping its key, breaks the seal.
 */
export interface CredentialBody {
  /** The key pair's CKA_ID in the crypto module (lowercase hex). */
  keyId: string;
  /** Its RFC 7512 PKCS#11 URI. */
  keyUri: string;
  keyAlgorithm: KeyAlgorithm;
  assuranceLevel: AssuranceLevel;
  origin: CredentialOrigin;
  /** DER SubjectPublicKeyInfo, base64, exactly as the module returned it. */
  publicKeySpki: string;
  label: string;
  createdAt: string;
  createdBy: string;
  updatedAt: string;
  /** The reason of the last suspension, resumption or destruction; "" if none. */
  statusReason: string;
  /** While LOCKED: the status to return to when the lockout is reset. */
  statusBeforeLock?: CredentialStatus;
  /** The certificate chain imported last (ImportCertificate); absent before the first import. */
  certificate?: StoredCertificate;
  /**
   * While KEY_GENERATED: the DTBS/R (base64url) and hash algorithm of the last PrepareCsr, the only
   * DTBS/R a CSR approval on this credential may carry (R-3.1.3.2, issue 13.4).
   */
  preparedCsr?: { dtbsr: string; hashAlgorithm: HashAlgorithm };
}

/** What PrepareCsr returns: the CertificationRequestInfo to approve and its DTBS/R. */
export interface PreparedCsr {
  certificationRequestInfo: Uint8Array;
  dtbsr: Uint8Array;
  hashAlgorithm: HashAlgorithm;
  signatureScheme: SignatureScheme;
  publicKeyFingerprint: Uint8Array;
}

export interface CredentialView {
  credential: CredentialRecord;
  body: CredentialBody;
}

export interface CredentialsOptions {
  records: VerifiedRecords;
  keys: Pick<SigningKeys, "generateKeyPair" | "destroyKeyPair">;
  random: RandomSource;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
  signers: Signers;
  /** The signers' attempt budgets (lockout.ts): ResetLockout clears checks that crashed mid-way. */
  attempts: Pick<AttemptReservations, "releaseExpiredAttempts">;
}

const algorithms: readonly KeyAlgorithm[] = ["EC_P256", "EC_P384", "EC_P521", "RSA_2048", "RSA_3072", "RSA_4096", "ED25519"];

/**
 * The store's unique key of a public key (CredentialRecord.publicKeyFingerprint): SHA-256 over the
 * DER SPKI in lowercase hex. The same bytes as Credential.public_key_fingerprint (R-3.1.1.4).
 */
export function publicKeyFingerprint(spki: Uint8Array): string {
  return createHash("sha256").update(spki).digest("hex");
}

const bodyOf = (c: CredentialRecord) => JSON.parse(c.body) as CredentialBody;
const view = (credential: CredentialRecord): CredentialView => ({ credential, body: bodyOf(credential) });

/**
 * Credentials (R-3.1.1.3): signing key pairs generated inside the crypto module, each bound to
 * exactly one signer by a sealed record that holds the key's id, public key and fingerprint.
 * No private key, PIN or other secret is ever part of a credential (T-2.2.2.3).
 */
export class Credentials {
  constructor(private readonly o: CredentialsOptions) {}

  /**
   * Generates a key pair in the crypto module for `signerId` and records the credential in
   * "PENDING" (proto: CREDENTIAL_STATUS_KEY_GENERATED) until a certificate is imported. Every
   * check runs before the module is asked, so a refused request creates nothing.
   */
  async generate(input: Acting & { signerId: string; algorithm: KeyAlgorithm; assuranceLevel?: number | undefined; label: string }): Promise<CredentialView> {
    requireOperator(input.actor);
    const signer = await this.o.signers.record(input.signerId); // SIGNER_NOT_FOUND before any key exists
    if (signer.status === "DISABLED" || signer.status === "SUSPENDED") throw new InkanError("SIGNER_INACTIVE", "the signer is disabled", { field: "signer_id" });
    const policy = await this.o.policies.current();
    if (!algorithms.includes(input.algorithm) || !policy.allowedKeyAlgorithms.includes(input.algorithm)) {
      throw new InkanError("ALGORITHM_NOT_ALLOWED", "the security policy does not allow this key algorithm", { field: "key_algorithm" });
    }
    const level = input.assuranceLevel || policy.defaultAssuranceLevel;
    if (level === undefined || !policy.allowedAssuranceLevels.includes(level)) {
      throw new InkanError("INVALID_REQUEST", "the security policy does not allow this assurance level", { field: "assurance_level" });
    }
    const id = await newRecordId("crd", this.o.random, input.now);
    // R-3.1.1.3: generated inside the module from its RNG; the private key is a sensitive,
    // non-extractable token object that never leaves it. Only the public key comes back.
    const key = await this.o.keys.generateKeyPair(input.algorithm);
    const at = input.now.toISOString();
    const body: CredentialBody = {
      keyId: key.keyId,
      keyUri: key.uri,
      keyAlgorithm: key.algorithm,
      assuranceLevel: level as AssuranceLevel,
      origin: "GENERATED",
      publicKeySpki: Buffer.from(key.publicKeySpki).toString("base64"),
      label: input.label,
      createdAt: at,
      createdBy: input.actor.userId,
      updatedAt: at,
      statusReason: "",
    };
    const fingerprint = createHash("sha256").update(key.publicKeySpki).digest();
    let credential: CredentialRecord;
    try {
      // Sealed with the signer id, the fingerprint and the key id: bound to exactly this signer (R-3.1.1.3).
      credential = await this.o.records.create<CredentialRecord>({
        kind: "credential",
        id,
        version: 1,
        signerId: signer.id,
        status: "PENDING",
        publicKeyFingerprint: fingerprint.toString("hex"),
        body: canonicalize(body)!,
      });
    } catch (err) {
      await this.o.keys.destroyKeyPair(key.keyId).catch(() => undefined); // no key without its record
      throw err;
    }
    await this.o.audit.record(keyGenerated({
      actor: input.actor,
      signerId: signer.id,
      credentialId: id,
      keyId: key.keyId,
      keyAlgorithm: key.algorithm,
      publicKeySha256: fingerprint,
      ...(input.requestId ? { requestId: input.requestId } : {}),
    }));
    return view(credential);
  }

  /**
   * Attaches a CA-issued certificate chain (DER, end-entity first) to a credential
   * (ImportCertificate). Checks, in this order, before anything changes: the credential exists and
   * is not destroyed; the chain parses; the end-entity certificate's SubjectPublicKeyInfo is byte
   * for byte the key sealed at generation (R-3.1.1.4); the chain validates for signing against the
   * policy's trusted issuing CAs at `now` (see {@link validateSigningChain}). A PENDING credential
   * becomes ACTIVE; an ACTIVE one keeps its status and the new chain replaces the old (renewal);
   * a LOCKED one stays locked and returns to ACTIVE when its lockout is reset.
   */
  async importCertificate(input: Acting & { credentialId: string; chain: readonly Uint8Array[] }): Promise<CredentialView> {
    requireOperator(input.actor);
    const { credential, body } = await this.get(input.credentialId);
    if (credential.status === "DESTROYED") throw new InkanError("CREDENTIAL_DESTROYED", "the credential was destroyed", { field: "credential_id" });
    const chain = parseCertificateChain(input.chain);
    const certificateSpki = chain[0]!.spki;
    // R-3.1.1.4, T-2.1.1.2, T-2.1.3.1: the certified key is exactly the key generated in the module, byte for byte.
    if (!Buffer.from(certificateSpki).equals(Buffer.from(body.publicKeySpki, "base64"))) {
      const owner = await this.o.records.find("credential", "publicKeyFingerprint", publicKeyFingerprint(certificateSpki));
      if (owner && owner.id !== credential.id && bodyOf(owner).certificate?.sha256 === certificateSha256(chain[0]!.der)) {
        throw new InkanError("ALREADY_EXISTS", "this certificate is attached to another credential", { field: "certificate_chain[0]" });
      }
      throw new InkanError("KEY_MISMATCH", "the certificate's public key is not the credential's", { field: "certificate_chain[0]" });
    }
    const policy = await this.o.policies.current();
    const trusted = policy.policy["trustedIssuingCaCertificates"];
    const trustedCas = (Array.isArray(trusted) ? trusted : []).map((b64) => new Uint8Array(Buffer.from(String(b64), "base64")));
    // T-2.1.3.2: only a certificate from an issuing CA the security policy trusts binds the key to an identity.
    validateSigningChain(chain, trustedCas, input.now);
    const certificate = storedCertificate(chain);
    const status: CredentialStatus = credential.status === "PENDING" ? "ACTIVE" : credential.status;
    const next: CredentialBody = {
      ...body,
      certificate,
      ...(credential.status === "LOCKED" ? { statusBeforeLock: "ACTIVE" as const } : {}),
      updatedAt: input.now.toISOString(),
    };
    const updated = await this.o.records.update<CredentialRecord>({ ...credential, version: credential.version + 1, status, body: canonicalize(next)! }, credential.version);
    if (!updated) throw new InkanError("VERSION_CONFLICT", "the credential changed meanwhile; retry");
    await this.o.audit.record(certificateInstalled({
      actor: input.actor,
      signerId: credential.signerId,
      credentialId: credential.id,
      certificateSha256: Buffer.from(certificate.sha256, "hex"),
      ...(input.requestId ? { requestId: input.requestId } : {}),
    }));
    return view(updated);
  }

  /**
   * Builds, without signing, the CertificationRequestInfo for `subject` (RFC 4514) and the
   * credential's public key exactly as generated (R-3.1.1.4), and the DTBS/R the signer approves
   * with a SAD before CreateCsr signs it (R-3.1.3.2, T-2.1.3.2). Changes nothing.
   */
  async prepareCsr(input: { credentialId: string; subject: string; hashAlgorithm?: HashAlgorithm | undefined; signatureScheme?: SignatureScheme | undefined }): Promise<PreparedCsr> {
    const { credential, body } = await this.get(input.credentialId);
    if (credential.status === "SUSPENDED") throw new InkanError("CREDENTIAL_SUSPENDED", "the credential is suspended", { field: "credential_id" });
    if (credential.status === "DESTROYED") throw new InkanError("CREDENTIAL_DESTROYED", "the credential was destroyed", { field: "credential_id" });
    if (credential.status === "LOCKED") throw new InkanError("CREDENTIAL_LOCKED", "the credential is locked", { field: "credential_id" });
    const defaults = csrDefaults(body.keyAlgorithm);
    const hash = input.hashAlgorithm ?? defaults.hash;
    const scheme = input.signatureScheme ?? defaults.scheme;
    const policy = await this.o.policies.current();
    const allowed = (field: string, value: string) => {
      const list = policy.policy[field];
      return Array.isArray(list) && list.includes(value);
    };
    if (!schemeFitsKey(body.keyAlgorithm, scheme, hash)) throw new InkanError("ALGORITHM_NOT_ALLOWED", "the hash or signature algorithm does not fit the key", { field: "signature_algorithm" });
    if (!allowed("allowedHashAlgorithms", `HASH_ALGORITHM_${hash}`)) throw new InkanError("ALGORITHM_NOT_ALLOWED", "the security policy does not allow this hash algorithm", { field: "hash_algorithm" });
    if (!allowed("allowedSignatureAlgorithms", `SIGNATURE_ALGORITHM_${scheme}`)) throw new InkanError("ALGORITHM_NOT_ALLOWED", "the security policy does not allow this signature algorithm", { field: "signature_algorithm" });
    // R-3.1.1.4: the key certified is the SPKI sealed at generation, byte for byte.
    const info = certificationRequestInfo(subjectNameDer(input.subject), Buffer.from(body.publicKeySpki, "base64"));
    const dtbsr = csrDtbsr(info, hash);
    if (credential.status === "PENDING") {
      // R-3.1.3.2 (issue 13.4): a credential without a certificate approves this DTBS/R and no other (sealed;
      // internal, so the credential as the API shows it does not change).
      const preparedCsr = { dtbsr: Buffer.from(dtbsr).toString("base64url"), hashAlgorithm: hash };
      const updated = await this.o.records.update<CredentialRecord>({ ...credential, version: credential.version + 1, body: canonicalize({ ...body, preparedCsr })! }, credential.version);
      if (!updated) throw new InkanError("VERSION_CONFLICT", "the credential changed meanwhile; retry", { field: "credential_id" });
    }
    return {
      certificationRequestInfo: info,
      dtbsr,
      hashAlgorithm: hash,
      signatureScheme: scheme,
      publicKeyFingerprint: Buffer.from(credential.publicKeyFingerprint, "hex"),
    };
  }

  /** One credential, or CREDENTIAL_NOT_FOUND. */
  async get(credentialId: string): Promise<CredentialView> {
    const credential = await this.o.records.get("credential", credentialId);
    if (!credential) throw new InkanError("CREDENTIAL_NOT_FOUND", "no such credential", { field: "credential_id" });
    return view(credential);
  }

  /** One page of one signer's credentials, oldest first, destroyed ones included. Never another signer's. */
  async list(query: { signerId: string; status?: CredentialStatus; pageToken?: string; limit: number }): Promise<{ credentials: CredentialView[]; nextPageToken: string }> {
    const signer = await this.o.signers.record(query.signerId);
    const filters = { signerId: signer.id, status: query.status };
    const after = readPageToken(query.pageToken, filters);
    const page = await this.o.records.list({ kind: "credential", where: { signerId: signer.id, ...(query.status ? { status: query.status } : {}) }, after, limit: query.limit });
    return { credentials: page.items.map(view), nextPageToken: pageToken(page.next, filters) };
  }

  /**
   * Clears the signer's failed factor attempts (and the attempts left reserved by checks that
   * crashed mid-way) and returns its LOCKED credentials to the status they had before the lockout
   * (ACTIVE, or PENDING before a certificate). Each unlock is audited.
   */
  async resetLockout(input: Acting & { signerId: string; reason: string }): Promise<SignerView> {
    requireOperator(input.actor);
    const signer = await this.o.signers.record(input.signerId);
    let after: string | undefined;
    do {
      const page = await this.o.records.list({ kind: "credential", where: { signerId: signer.id, status: "LOCKED" }, after, limit: 100 });
      for (const c of page.items) {
        const { statusBeforeLock, ...rest } = bodyOf(c);
        const body: CredentialBody = { ...rest, statusReason: input.reason, updatedAt: input.now.toISOString() };
        const status = statusBeforeLock === "ACTIVE" ? "ACTIVE" : "PENDING";
        const updated = await this.o.records.update<CredentialRecord>({ ...c, version: c.version + 1, status, body: canonicalize(body)! }, c.version);
        if (!updated) throw new InkanError("VERSION_CONFLICT", "a credential changed meanwhile; retry");
        await this.o.audit.record(credentialUnlocked({ operator: input.actor, signerId: signer.id, credentialId: c.id, ...(input.requestId ? { requestId: input.requestId } : {}) }));
      }
      after = page.next;
    } while (after);
    const fresh = await this.o.signers.record(signer.id);
    const { failedAttempts: _f, lockedAt: _l, ...rest } = JSON.parse(fresh.body) as SignerView["body"];
    await this.o.signers.replace(fresh, fresh.status, { ...rest, updatedAt: input.now.toISOString() });
    await this.o.attempts.releaseExpiredAttempts({ subject: signerAttempts(signer.id), now: input.now }); // T-2.1.2.2: a full budget again
    return this.o.signers.get(signer.id, input.now);
  }
}
