/**
 * ImportKey (T-2.1.4.1 to T-2.1.4.4): a signing key made outside the SAM, wrapped under a
 * key-import transport key, unwrapped inside the crypto module and bound to a signer as a new
 * credential, only with the signer's consent (device key + PIN).
 *
 * Choices where registration.proto leaves room (each also said where it is enforced):
 * - Cheap request checks run before the consent is consumed, so a mistyped request does not burn
 *   the signer's consent: signer (NOT_FOUND, INACTIVE, LOCKED), policy (key algorithm, assurance
 *   level), transport key (unknown: INVALID_REQUEST; expired: EXPIRED). Then the proto's order:
 *   consent, unwrap, key match, uniqueness, certificate chain.
 * - Consent challenges: signer.proto has no CHALLENGE_PURPOSE for key import yet, so
 *   {@link KeyImport.createConsentChallenge} issues them (store purpose "signer-request", subject
 *   "key-import <signer>"); SignerService.CreateChallenge should call it once the enum exists.
 * - A consent refused before its PIN is tried (it does not decrypt, is malformed, is not signed by a
 *   device key of this signer, or a claim differs from the request) is nothing the signer did: it
 *   counts against the calling operator, not the signer (issue 13, finding 5: otherwise an operator
 *   could lock a signer out with garbage). An operator's refused consents are held as attempt
 *   reservations for an hour; with lockout_threshold of them (or checks in flight) held, further
 *   ImportKey calls by that operator are refused unchecked with LIMIT_EXCEEDED until they age out.
 *   A wrong PIN behind a valid device signature counts toward the signer's lockout, checked on an
 *   attempt reserved within the signer's budget (lockout.ts). NONCE_REPLAYED is audited, not counted.
 * - Public-key uniqueness (T-2.1.4.4) rests on the store's unique index on the public-key fingerprint
 *   (destroyed credentials keep their record, so their keys stay known); the lookup before the
 *   create only gives the early, clean answer, the index decides a race.
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { durationMs, type PolicyVersion, type SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { certificateInstalled, factorCheckFailed, factorVerified, keyImported, type Actor } from "../audit/events.js";
import type { KeyAlgorithm, KeyImport as ModuleKeyImport, RandomSource, SigningKeys, SystemKeys } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { KeyImportTransportKeys } from "../keys/key-import-transport-key.js";
import { maxRSadBytes, type SamEncryptionKeys } from "../keys/sam-encryption-keys.js";
import type { AttemptReservations, CredentialRecord, CredentialStatus, OneTimeObjects } from "../store/port.js";
import { challengeBinding } from "./activation.js";
import { parseCertificateChain, storedCertificate, validateSigningChain, type StoredCertificate } from "./certificates.js";
import { publicKeyFingerprint, type AssuranceLevel, type CredentialBody, type CredentialView } from "./credentials.js";
import { DeviceProofRefused, parseStrictJsonObject } from "./device-jws.js";
import { verifySignerRequest } from "./signer-request.js";
import { newRecordId } from "./ids.js";
import { reserveAttempt, withFactorAttempt } from "./lockout.js";
import { checkPinFactor } from "./pin-hash.js";
import { requireOperator, type Acting, type SignerBody, type Signers } from "./signers.js";

/** The JWE "cty" and JWS "typ" of the consent (registration.proto, ImportKeyRequest.signer_consent). */
export const keyImportConsentEnvelopeCty = "inkan-key-import-consent-envelope+json";
export const keyImportConsentTyp = "inkan-key-import-consent+jwt";
export const keyImportAction = "import_key";
const consentClaims = ["sub", "aud", "action", "spki", "kalg", "chal", "iat", "exp", "jti"];
const maxEnvelopeBytes = 8_192;
const algorithms: readonly KeyAlgorithm[] = ["EC_P256", "EC_P384", "EC_P521", "RSA_2048", "RSA_3072", "RSA_4096", "ED25519"];
/** How long an operator's refused consent counts against them (see the module comment). */
export const refusedConsentWindowMs = 60 * 60 * 1000;
/** The reservation subject of an operator's key-import consents. */
export const operatorConsents = (userId: string) => `import-consents:${userId}`;

/** The store binding of a key-import consent challenge (see the module comment). */
export const keyImportChallengeBinding = (signerId: string) => challengeBinding("KEY_IMPORT", signerId);

/** base64url (no padding) of SHA-256 over the DER SPKI: the consent's "spki" claim. */
export const consentSpkiClaim = (spki: Uint8Array) => createHash("sha256").update(spki).digest("base64url");

const refused = (cause?: unknown) => new InkanError("AUTHENTICATION_FAILED", "the signer's consent could not be verified", { field: "signer_consent", cause });
const replayed = () => new InkanError("NONCE_REPLAYED", "the consent's challenge or jti is unknown, expired or already used", { field: "signer_consent" });
const utf8 = new TextDecoder("utf-8", { fatal: true });
const req = (a: { requestId?: string | undefined }) => (a.requestId ? { requestId: a.requestId } : {});

export interface KeyImportOptions {
  records: VerifiedRecords;
  oneTime: OneTimeObjects;
  /** Attempt budgets (lockout.ts): the signer's PIN checks, and the operator's refused consents. */
  attempts: AttemptReservations;
  crypto: Pick<ModuleKeyImport, "importWrappedKey"> & Pick<SigningKeys, "destroyKeyPair"> & Pick<SystemKeys, "hmacSha256"> & RandomSource;
  transportKeys: Pick<KeyImportTransportKeys, "unwrapKeyId">;
  samKeys: Pick<SamEncryptionKeys, "decryptCompactJwe" | "samId">;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
  signers: Signers;
}

export interface ImportKeyInput extends Acting {
  signerId: string;
  transportKeyId: string;
  encryptedKek: Uint8Array;
  wrappedPrivateKey: Uint8Array;
  algorithm: KeyAlgorithm;
  publicKeySpki: Uint8Array;
  assuranceLevel?: number | undefined;
  label: string;
  certificateChain: readonly Uint8Array[];
  signerConsent: string;
}

/** Import of signing keys into the module, bound to a signer with the signer's consent. */
export class KeyImport {
  constructor(private readonly o: KeyImportOptions) {}

  /** ImportKey, checks in the order of the module comment; any failure leaves nothing behind, in the module or the store. */
  async importKey(input: ImportKeyInput): Promise<CredentialView> {
    requireOperator(input.actor);
    const signer = await this.o.signers.record(input.signerId);
    if (signer.status !== "ACTIVE") throw new InkanError("SIGNER_INACTIVE", "the signer is disabled or not activated", { field: "signer_id" });
    if ((JSON.parse(signer.body) as SignerBody).lockedAt) throw new InkanError("CREDENTIAL_LOCKED", "the signer is locked out", { field: "signer_id" });
    const policy = await this.o.policies.current();
    if (!algorithms.includes(input.algorithm) || !policy.allowedKeyAlgorithms.includes(input.algorithm)) {
      throw new InkanError("ALGORITHM_NOT_ALLOWED", "the security policy does not allow this key algorithm", { field: "key_algorithm" });
    }
    const level = input.assuranceLevel || policy.defaultAssuranceLevel;
    if (level === undefined || !policy.allowedAssuranceLevels.includes(level)) {
      throw new InkanError("INVALID_REQUEST", "the security policy does not allow this assurance level", { field: "assurance_level" });
    }
    const importKeyId = await this.o.transportKeys.unwrapKeyId(input.transportKeyId, input.now);

    await this.verifyConsent(input, policy); // T-2.1.4.1, T-2.1.4.2: before the module sees the key

    const key = await this.unwrap(input, importKeyId);
    let view: CredentialView;
    try {
      view = await this.bind(input, key, level as AssuranceLevel);
    } catch (err) {
      await this.o.crypto.destroyKeyPair(key.keyId).catch(() => undefined); // any later failure discards the imported key too
      throw err;
    }
    await this.o.audit.record(keyImported({
      actor: input.actor,
      signerId: input.signerId,
      credentialId: view.credential.id,
      keyId: key.keyId,
      keyAlgorithm: key.algorithm,
      publicKeySha256: Buffer.from(view.credential.publicKeyFingerprint, "hex"),
      ...req(input),
    }));
    const certificate = view.body.certificate;
    if (certificate) {
      await this.o.audit.record(certificateInstalled({ actor: input.actor, signerId: input.signerId, credentialId: view.credential.id, certificateSha256: Buffer.from(certificate.sha256, "hex"), ...req(input) }));
    }
    return view;
  }

  // ---- the signer's consent -----------------------------------------------------------------

  private async verifyConsent(input: ImportKeyInput, policy: PolicyVersion): Promise<void> {
    const { signerId, now } = input;
    const signerActor: Actor = { kind: "signer", signerId };
    const operator = input.actor.kind === "privileged-user" ? input.actor.userId : "";
    // Finding 5: the device part is checked on an attempt of the OPERATOR (kept as a strike when
    // refused), so garbage consents use up the operator's budget, never the signer's.
    const subject = operatorConsents(operator);
    await this.o.attempts.releaseExpiredAttempts({ subject, now }); // strikes older than the window age out
    const attempt = await reserveAttempt(this.o.attempts, subject, now, refusedConsentWindowMs);
    if (attempt.held > policy.lockoutThreshold) {
      await attempt.release();
      throw new InkanError("LIMIT_EXCEEDED", "too many refused consents from this operator; retry later", { field: "signer_consent" });
    }
    let pin: unknown;
    try {
      pin = await this.verifyDevicePart(input, policy);
    } catch (err) {
      if (err instanceof InkanError && err.code === "AUTHENTICATION_FAILED") {
        // Counted against the operator: the attempt stays reserved for the window (audited with the operator as actor).
        await this.o.audit.record(factorCheckFailed({ actor: input.actor, signerId, factor: "DEVICE_KEY", failedAttempts: attempt.held, ...req(input) }));
      } else {
        await attempt.release();
        if (err instanceof InkanError && err.code === "NONCE_REPLAYED") {
          await this.o.audit.record(factorCheckFailed({ actor: signerActor, signerId, factor: "DEVICE_KEY", failedAttempts: 0, reason: err.code, ...req(input) }));
        }
      }
      throw err;
    }
    await attempt.release();

    // Knowledge factor: the signer's current PIN (T-2.1.4.1: a privileged user alone cannot consent),
    // T-2.1.2.2: checked on an attempt reserved within the signer's lockout budget; a wrong PIN
    // counts toward the signer's lockout (audited there), a right one ends the run of failures.
    const pinFactor = (await this.o.records.list({ kind: "factor", where: { signerId, status: "ACTIVE", type: "PIN" }, limit: 1 })).items[0];
    await withFactorAttempt(this.o, { signerId, actor: signerActor, now, ...req(input) }, async () =>
      pinFactor && typeof pin === "string" && (await checkPinFactor(this.o, pinFactor, pin, policy.pinHashCost))
        ? { ok: true }
        : { ok: false, factor: "PIN", cause: new WrongPin() }, // the same answer as any other refusal; which factor failed is logged and audited
    refused);
    await this.o.audit.record(factorVerified({ actor: signerActor, signerId, factor: "DEVICE_KEY", ...req(input) }));
    await this.o.audit.record(factorVerified({ actor: signerActor, signerId, factor: "PIN", ...req(input) }));
  }

  /** The consent's device part (T-2.1.4.1, T-2.1.4.2): envelope, challenge, device-key JWS, claims, jti. Returns the PIN it carries. */
  private async verifyDevicePart(input: ImportKeyInput, policy: PolicyVersion): Promise<unknown> {
    const { signerId, now } = input;
    const envelope = await this.openEnvelope(input.signerConsent, now);
    // T-2.1.4.1, T-2.1.4.2: the challenge works once, only for key import by this signer; signed by
    // this signer's own device key; the consent names this signer, this public key and this
    // algorithm, or it is refused; jti once.
    await verifySignerRequest(this.o, {
      jws: envelope.proof,
      signerId,
      binding: keyImportChallengeBinding(signerId),
      typ: keyImportConsentTyp,
      claims: consentClaims,
      expect: { sub: signerId, aud: await this.o.samKeys.samId(), action: keyImportAction, spki: consentSpkiClaim(input.publicKeySpki), kalg: `KEY_ALGORITHM_${input.algorithm}` },
      now,
      skewMs: msOf(policy, "maxClockSkew", 60_000),
      maxLifetimeMs: msOf(policy, "maxSadLifetime", 300_000),
      // A consent naming another signer is refused as such, after its challenge is used up.
      afterConsume: (claims: Record<string, unknown>) => {
        if (claims.sub !== signerId) throw refused(new DeviceProofRefused("sub is not signer_id"));
      },
      refused,
      replayed,
    });
    return envelope.pin;
  }

  /** Decrypts the consent envelope: exactly {pin, proof}, at most 8,192 bytes; else AUTHENTICATION_FAILED. */
  private async openEnvelope(jwe: string, now: Date): Promise<{ pin: unknown; proof: unknown }> {
    let plaintext: Uint8Array;
    try {
      plaintext = await this.o.samKeys.decryptCompactJwe(jwe, { maxBytes: maxRSadBytes, now, cty: keyImportConsentEnvelopeCty }); // only the SAM reads the PIN
    } catch (err) {
      if (err instanceof InkanError && err.code === "SAD_INVALID") throw refused(err); // a module failure is not the signer's failed attempt
      throw err;
    }
    try {
      if (plaintext.length > maxEnvelopeBytes) throw new DeviceProofRefused("envelope too large");
      const envelope = parseStrictJsonObject(utf8.decode(plaintext));
      const members = Object.keys(envelope).sort();
      if (members.length !== 2 || members[0] !== "pin" || members[1] !== "proof") throw new DeviceProofRefused("envelope members are not exactly pin and proof");
      return { pin: envelope.pin, proof: envelope.proof };
    } catch (err) {
      throw refused(err);
    } finally {
      plaintext.fill(0);
    }
  }

  // ---- the key ------------------------------------------------------------------------------

  /** Unwraps inside the module as a sensitive, non-extractable signing key that matches the stated key (T-2.1.4.3). */
  private async unwrap(input: ImportKeyInput, importKeyId: string) {
    let key;
    try {
      // The module splits at the transport key's modulus length: the CKM_RSA_AES_KEY_WRAP layout.
      key = await this.o.crypto.importWrappedKey({
        importKeyId,
        wrappedKey: Buffer.concat([input.encryptedKek, input.wrappedPrivateKey]),
        algorithm: input.algorithm,
        publicKeySpki: input.publicKeySpki,
      });
    } catch (err) {
      // T-2.1.4.3: a key that is not what was stated; the module has already destroyed the unwrapped object.
      if (err instanceof InkanError && err.code === "KEY_MISMATCH") throw new InkanError("KEY_MISMATCH", "the key is not what key_algorithm and public_key_spki state", { field: "public_key_spki", cause: err });
      if (err instanceof InkanError && err.code === "INVALID_REQUEST" && err.field === "publicKeySpki") throw new InkanError("INVALID_REQUEST", "public_key_spki is not a DER SubjectPublicKeyInfo", { field: "public_key_spki", cause: err });
      // Anything else (a wrong KEK, a corrupt wrapping or PKCS#8, a key type the module cannot unwrap) is one answer, no oracle.
      throw new InkanError("INVALID_REQUEST", "the wrapped key could not be unwrapped", { field: "wrapped_private_key", cause: err });
    }
    if (!Buffer.from(key.publicKeySpki).equals(Buffer.from(input.publicKeySpki))) {
      // T-2.1.4.3: the public key is byte for byte the stated SPKI (the module re-encodes it; a non-canonical statement is refused).
      await this.o.crypto.destroyKeyPair(key.keyId).catch(() => undefined);
      throw new InkanError("KEY_MISMATCH", "public_key_spki is not the key's DER SubjectPublicKeyInfo byte for byte", { field: "public_key_spki" });
    }
    return key;
  }

  /** Uniqueness, the certificate chain and the sealed record: the credential. */
  private async bind(input: ImportKeyInput, key: { keyId: string; uri: string; algorithm: KeyAlgorithm; publicKeySpki: Uint8Array }, level: AssuranceLevel): Promise<CredentialView> {
    const fingerprint = publicKeyFingerprint(key.publicKeySpki);
    // T-2.1.4.4: a public key any credential of this SAM has, destroyed ones included, is never added again.
    if (await this.o.records.find("credential", "publicKeyFingerprint", fingerprint)) {
      throw new InkanError("ALREADY_EXISTS", "this public key is already known to the SAM", { field: "public_key_spki" });
    }
    let certificate: StoredCertificate | undefined;
    if (input.certificateChain.length > 0) {
      const chain = parseCertificateChain(input.certificateChain);
      // R-3.1.1.4, T-2.1.1.2: the certified key is exactly the imported key, byte for byte (as ImportCertificate).
      if (!Buffer.from(chain[0]!.spki).equals(Buffer.from(key.publicKeySpki))) {
        throw new InkanError("KEY_MISMATCH", "the certificate's public key is not the imported key", { field: "certificate_chain[0]" });
      }
      const policy = await this.o.policies.current();
      const trusted = policy.policy["trustedIssuingCaCertificates"];
      const trustedCas = (Array.isArray(trusted) ? trusted : []).map((b64) => new Uint8Array(Buffer.from(String(b64), "base64")));
      validateSigningChain(chain, trustedCas, input.now); // T-2.1.3.2: only a trusted issuing CA binds the key to an identity
      certificate = storedCertificate(chain);
    }
    const id = await newRecordId("crd", this.o.crypto, input.now);
    const at = input.now.toISOString();
    const body: CredentialBody = {
      keyId: key.keyId,
      keyUri: key.uri,
      keyAlgorithm: key.algorithm,
      assuranceLevel: level,
      origin: "IMPORTED",
      publicKeySpki: Buffer.from(key.publicKeySpki).toString("base64"),
      label: input.label,
      createdAt: at,
      createdBy: input.actor.userId,
      updatedAt: at,
      statusReason: "",
      ...(certificate ? { certificate } : {}),
    };
    const status: CredentialStatus = certificate ? "ACTIVE" : "PENDING";
    // Sealed with the signer id and fingerprint: bound to exactly this signer (R-3.1.1.3). The store's
    // unique fingerprint index refuses a concurrent import of the same key (T-2.1.4.4, ALREADY_EXISTS).
    const credential = await this.o.records.create<CredentialRecord>({
      kind: "credential",
      id,
      version: 1,
      signerId: input.signerId,
      status,
      publicKeyFingerprint: fingerprint,
      body: canonicalize(body)!,
    });
    return { credential, body };
  }
}

/** The cause of a wrong-PIN refusal: tells verifyConsent which factor failed (never returned to the caller). */
class WrongPin extends Error {
  constructor() {
    super("wrong PIN");
  }
}

function msOf(policy: PolicyVersion, field: string, fallback: number): number {
  const v = policy.policy[field];
  return v === undefined ? fallback : durationMs(v, field);
}
