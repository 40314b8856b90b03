/**
 * The signer's side of registration (SignerService; R-3.1.1.2, R-3.1.2.2, T-2.1.1.1, T-2.1.1.3,
 * T-2.1.1.4, T-2.1.2.2) and the registration operator's resets: one-time challenges, activation
 * from the signer's device, PIN change by the signer, ResetFactors and RevokeDevice.
 *
 * Choices where signer.proto leaves room (each also said where it is enforced):
 * - Store binding of challenges: ACTIVATION uses purpose "activation" with the signer id as subject;
 *   PIN_CHANGE and SUSPENSION use "signer-request" with the subjects "pin-change <signer>" and
 *   "suspension <signer> <credential>" ({@link challengeBinding}; ids are printable ASCII without
 *   spaces, so the subjects cannot collide). The stored hash is SHA-256 of the 32 challenge bytes.
 * - Order of checks: the envelope is decrypted, then the challenge named by the proof's "chal" is
 *   consumed (signer.proto: the first request that presents it consumes it, whether or not it
 *   succeeds), then the proof is verified, then its jti is used up, and only then is the activation
 *   code tried, so a request that fails an earlier check costs no code attempt.
 * - A malformed activation code (not 25 Crockford base32 characters, nor two halves of 25) is
 *   refused without a store attempt, as activation-code.ts intends ("a typo is never hashed and
 *   compared"). Whether the live code is whole or split is decided by its stored hash alone: the
 *   wrong form is a wrong attempt.
 * - enroll_totp when the policy does not enable AUTHENTICATION_METHOD_PIN_AND_TOTP: INVALID_REQUEST
 *   (field "enroll_totp"), before anything is consumed.
 * - The "jti" once-only key is "device-jws <jti>", kept until exp + the clock skew.
 * - Failed activations are audited as "factor.check_failed" for factor DEVICE_KEY (the possession
 *   factor being bound) with the refusal's reason; failedAttempts is the code's attempts used.
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { CompactEncrypt, importJWK } from "jose";
import { durationMs, type PolicyVersion, type SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { factorCheckFailed, factorEnrolled, factorRevoked, factorVerified, signerActivated, transactionCancelled, type Actor } from "../audit/events.js";
import type { RandomSource, SystemKeys } from "../crypto/port.js";
import { InkanError, type ReasonCode } from "../errors.js";
import type { Freshness } from "../integrity/freshness.js";
import type { FieldCipher } from "../integrity/record-sealer.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import { maxRSadBytes, type PublishedSamKey, type SamEncryptionKeys } from "../keys/sam-encryption-keys.js";
import { closedProgress, progressKey } from "../sap/authorization-seal.js";
import type { AttemptReservations, ChallengePurpose as StorePurpose, FactorRecord, FactorType, OneTimeObjects, Transactions } from "../store/port.js";
import { enteredActivationCodeHash } from "./activation-code.js";
import { DeviceProofRefused, parseDevicePublicJwk, registeredDeviceKey, parseStrictJsonObject, peekDeviceJws, policyNameOf, verifyDeviceJws, type DevicePublicKey } from "./device-jws.js";
import { newRecordId } from "./ids.js";
import { signerAttempts, signerLocked, withFactorAttempt } from "./lockout.js";
import { hashPin, pinAllowed, verifyPin, type PinFactorBody } from "./pin-hash.js";
import { requireOperator, requireSecondApprover, type Acting, type DeviceKeyFactorBody, type IssuedActivationCode, type RebindingApproval, type SignerBody, type Signers, type SignerView } from "./signers.js";
import { otpauthUri, totpSecretBytes, type TotpFactorBody } from "./totp.js";

export type SignerChallengePurpose = "ACTIVATION" | "PIN_CHANGE" | "SUSPENSION" | "KEY_IMPORT" | "DEVICE_AUTHENTICATION" | "AUTHORIZATION_HISTORY";

/** The JWE "cty" and JWS "typ" values of signer.proto. */
export const activationEnvelopeCty = "inkan-activation-envelope+json";
export const pinChangeEnvelopeCty = "inkan-pin-change-envelope+json";
export const activationProofTyp = "inkan-activation+jwt";
export const pinChangeProofTyp = "inkan-pin-change+jwt";
export const totpEnrollmentCty = "inkan-totp-enrollment";
/** The largest envelope plaintext (signer.proto: at most 8,192 bytes). */
const maxEnvelopeBytes = 8_192;
const challengeBytes = 32;
const defaultChallengeLifetimeMs = 5 * 60 * 1000;

/** How a challenge of `purpose` is kept in the store (see the module comment). */
export function challengeBinding(purpose: SignerChallengePurpose, signerId: string, credentialId = ""): { purpose: StorePurpose; subject: string } {
  switch (purpose) {
    case "ACTIVATION":
      return { purpose: "activation", subject: signerId };
    case "PIN_CHANGE":
      return { purpose: "signer-request", subject: `pin-change ${signerId}` };
    case "SUSPENSION":
      return { purpose: "signer-request", subject: `suspension ${signerId} ${credentialId}` };
    case "KEY_IMPORT":
      return { purpose: "signer-request", subject: `key-import ${signerId}` };
    case "DEVICE_AUTHENTICATION":
      return { purpose: "signer-request", subject: `device-auth ${signerId}` };
    case "AUTHORIZATION_HISTORY":
      return { purpose: "signer-request", subject: `authorization-history ${signerId}` };
  }
}

/** What the store keeps of a challenge: base64url(SHA-256(challenge bytes)); the challenge itself never. */
export function challengeHash(challenge: Uint8Array): string {
  return createHash("sha256").update(challenge).digest("base64url");
}

export interface IssuedChallenge {
  challenge: Uint8Array;
  expiresAt: Date;
  /** The SAM id: the "aud" of the device's JWS. */
  audience: string;
  encryptionKey: PublishedSamKey;
  /** Policy names, e.g. "JWS_ALGORITHM_ES256". */
  deviceKeyAlgorithms: string[];
}

export interface ActivationOptions {
  records: VerifiedRecords;
  oneTime: OneTimeObjects;
  /** The signer's attempt budget (lockout.ts): the old PIN is checked on a reserved attempt. */
  attempts: AttemptReservations;
  /** The module: its RNG (challenges, salts, TOTP secrets) and the PIN pepper (HMAC, record-seal key). */
  crypto: Pick<SystemKeys, "hmacSha256"> & RandomSource;
  /** Encrypts the TOTP secret at rest with the module's AES key. */
  fields: Pick<FieldCipher, "encrypt">;
  samKeys: Pick<SamEncryptionKeys, "decryptCompactJwe" | "samId" | "audienceAndCurrentKey">;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
  signers: Signers;
  /** R-3.3.1 (issue 13): RevokeDevice and ResetFactors end the signer's open transactions and tokens. */
  openTransactions: Pick<Transactions, "revokeSignerTransactions">;
  /** Issue 14: an ended authorization's progress is closed, so a row put back as AUTHORIZED signs nothing. */
  freshness: Pick<Freshness, "advance">;
}

interface Attempt {
  signerId: string;
  requestId?: string | undefined;
  now: Date;
}

/** Refusals of the signer's requests that are audited as failed factor checks. */
const audited = new Set<ReasonCode>(["NONCE_REPLAYED", "AUTHENTICATION_FAILED", "ACTIVATION_CODE_INVALID", "ALREADY_EXISTS", "INVALID_REQUEST", "ALGORITHM_NOT_ALLOWED", "SIGNER_INACTIVE", "CREDENTIAL_LOCKED", "LIMIT_EXCEEDED"]);
const refused = (cause?: unknown) => new InkanError("AUTHENTICATION_FAILED", "the request could not be verified", { cause });
const replayed = (cause?: unknown) => new InkanError("NONCE_REPLAYED", "the challenge is unknown, expired or already used", { cause });
const codeInvalid = () => new InkanError("ACTIVATION_CODE_INVALID", "the activation code is not valid");
const utf8 = new TextDecoder("utf-8", { fatal: true });
const signerBody = (s: { body: string }) => JSON.parse(s.body) as SignerBody;
const req = (a: { requestId?: string | undefined }) => (a.requestId ? { requestId: a.requestId } : {});

/**
 * Binding of a signer's factors: challenges, Activate and ChangePin from the signer's device, and
 * the registration operator's ResetFactors and RevokeDevice. Every outcome is audited.
 */
export class Activation {
  constructor(private readonly o: ActivationOptions) {}

  /**
   * A one-time challenge: 32 bytes from the module's RNG (R-3.2.2.2), only its hash stored, bound
   * to one signer and purpose (and credential). Issued for any well-formed signer id, known or not,
   * so that the answer does not reveal which signers exist (signer.proto); one for an unknown
   * signer simply never works.
   */
  async createChallenge(input: { signerId: string; purpose: SignerChallengePurpose; credentialId?: string; now: Date }): Promise<IssuedChallenge> {
    if ((input.purpose === "SUSPENSION") !== Boolean(input.credentialId)) {
      throw new InkanError("INVALID_REQUEST", "credential_id is required for suspension and must be empty otherwise", { field: "credential_id" });
    }
    const policy = await this.o.policies.current();
    const lifetime = policy.policy.challengeLifetime === undefined ? defaultChallengeLifetimeMs : durationMs(policy.policy.challengeLifetime, "challengeLifetime");
    const challenge = await this.o.crypto.randomBytes(challengeBytes);
    const expiresAt = new Date(input.now.getTime() + lifetime);
    const binding = challengeBinding(input.purpose, input.signerId, input.credentialId);
    // Open challenges are bounded per signer and purpose (policy.proto), counted and issued in one
    // atomic store step so concurrent requests cannot overshoot.
    const maxOpen = policy.maxOpenChallengesPerSigner;
    const issued = await this.o.oneTime.issueChallenge({ hash: challengeHash(challenge), ...binding, createdAt: input.now, expiresAt }, { maxOpen, now: input.now });
    if (!issued) throw new InkanError("LIMIT_EXCEEDED", `at most ${maxOpen} open challenges of this purpose per signer: use them or let them expire`);
    const { audience, encryptionKey } = await this.o.samKeys.audienceAndCurrentKey(input.now);
    return { challenge, expiresAt, audience, encryptionKey, deviceKeyAlgorithms: names(policy, "allowedDeviceKeyAlgorithms") };
  }

  /**
   * Activate (R-3.1.1.2, T-2.1.1.1, T-2.1.1.3, T-2.1.1.4): the activation code and the PIN arrive
   * only inside a JWE to the SAM; the device key proves possession by signing the challenge. On
   * success the signer gets its DEVICE_KEY and PIN factors (and TOTP when asked) and becomes
   * ACTIVE; the code is consumed, so activation completes once. Every refusal is audited.
   */
  async activate(input: Attempt & { devicePublicKeyJwk: string; activationEnvelope: string; enrollTotp: boolean; responseEncryptionJwk: string }): Promise<{ deviceKeyId: string; totpEnrollment: string; activatedAt: Date }> {
    const state = { failedAttempts: 0 };
    try {
      return await this.activateChecked(input, state);
    } catch (err) {
      await this.auditRefusal(input, err, "DEVICE_KEY", state.failedAttempts);
      throw err;
    }
  }

  private async activateChecked(input: Parameters<Activation["activate"]>[0], state: { failedAttempts: number }) {
    const { now, signerId } = input;
    const policy = await this.o.policies.current();
    let key: DevicePublicKey;
    try {
      key = await parseDevicePublicJwk(input.devicePublicKeyJwk);
    } catch (err) {
      throw new InkanError("INVALID_REQUEST", "device_public_key_jwk is not a valid public JWK", { field: "device_public_key_jwk", cause: err });
    }
    if (!names(policy, "allowedDeviceKeyAlgorithms").includes(policyNameOf(key.algorithm))) {
      throw new InkanError("ALGORITHM_NOT_ALLOWED", "the security policy does not allow this device key", { field: "device_public_key_jwk" });
    }
    let responseKey: DevicePublicKey | undefined;
    if (input.enrollTotp) {
      if (!names(policy, "enabledAuthenticationMethods").includes("AUTHENTICATION_METHOD_PIN_AND_TOTP")) {
        throw new InkanError("INVALID_REQUEST", "the security policy does not enable TOTP", { field: "enroll_totp" });
      }
      responseKey = await parseDevicePublicJwk(input.responseEncryptionJwk).catch(() => undefined);
      if (responseKey?.algorithm !== "ES256") throw new InkanError("INVALID_REQUEST", "response_encryption_jwk must be a public EC P-256 JWK", { field: "response_encryption_jwk" });
    } else if (input.responseEncryptionJwk) {
      throw new InkanError("INVALID_REQUEST", "response_encryption_jwk must be empty without enroll_totp", { field: "response_encryption_jwk" });
    }

    const envelope = await this.openEnvelope(input.activationEnvelope, activationEnvelopeCty, ["code", "pin", "proof"], now);
    await this.consumeChallenge(envelope.proof, "ACTIVATION", signerId, now); // T-2.1.1.1: once, whatever follows
    // Proof of possession: signed by the private key of the very key being registered.
    const claims = await this.verifyProof(envelope.proof, key, activationProofTyp, signerId, now, policy, responseKey ? { ejkt: responseKey.thumbprint } : {});
    await this.useJti(claims, now, policy);
    const pmin = uintOf(policy, "pinMinLength", 6);
    const pmax = uintOf(policy, "pinMaxLength", 64);
    if (!pinAllowed(envelope.pin, pmin, pmax)) throw new InkanError("INVALID_REQUEST", `the PIN must have ${pmin} to ${pmax} characters`, { field: "pin" });
    if (await this.o.records.get("factor", key.thumbprint)) throw new InkanError("ALREADY_EXISTS", "the device key is already registered", { field: "device_public_key_jwk" });

    // T-2.1.1.1, T-2.1.1.4: the signer's own live code, tried atomically (the store counts attempts).
    const signer = await this.o.records.get("signer", signerId);
    const pending = signer?.status === "PENDING_ACTIVATION" ? signerBody(signer).activationCode : undefined;
    // T-2.2.2.3: a split code matches only as the pair of halves (activation-code.ts).
    const codeHash = typeof envelope.code === "string" ? enteredActivationCodeHash(envelope.code) : undefined;
    if (!signer || !pending || !codeHash) throw codeInvalid();
    const attempt = await this.o.oneTime.attemptActivationCode({ id: pending.id, codeHash, now });
    if (attempt.outcome !== "accepted" || attempt.code.signerId !== signer.id) {
      state.failedAttempts = attempt.outcome === "rejected" ? pending.maxAttempts - attempt.attemptsLeft : pending.maxAttempts;
      throw codeInvalid();
    }

    const at = now.toISOString();
    const device: DeviceKeyFactorBody = { jwk: JSON.stringify(key.jwk), algorithm: key.algorithm, registeredAt: at };
    await this.createFactor(key.thumbprint, signerId, "DEVICE_KEY", device);
    const pinId = await newRecordId("fac", this.o.crypto, now);
    await this.createFactor(pinId, signerId, "PIN", await hashPin(this.o.crypto, envelope.pin as string, now, policy.pinHashCost)); // R-3.1.1.2: slow, salted, peppered in the module
    const enrolled: Array<[FactorType, string]> = [["DEVICE_KEY", key.thumbprint], ["PIN", pinId]];
    let totpEnrollment = "";
    if (responseKey) {
      const totpId = await newRecordId("fac", this.o.crypto, now);
      const secret = await this.o.crypto.randomBytes(totpSecretBytes); // R-3.2.2.2
      try {
        const body: TotpFactorBody = { encryptedSecret: await this.o.fields.encrypt("factor", totpId, secret), algorithm: "SHA1", digits: 6, periodSeconds: 30, enrolledAt: at };
        await this.createFactor(totpId, signerId, "TOTP", body);
        // Returned once, readable only by the device that holds the key whose thumbprint it signed ("ejkt").
        totpEnrollment = await new CompactEncrypt(new TextEncoder().encode(otpauthUri(signerId, secret)))
          .setProtectedHeader({ alg: "ECDH-ES", enc: "A256GCM", cty: totpEnrollmentCty })
          .encrypt(await importJWK(responseKey.jwk, "ECDH-ES"));
      } finally {
        secret.fill(0);
      }
      enrolled.push(["TOTP", totpId]);
    }
    const fresh = await this.o.signers.record(signerId);
    const { activationCode: _used, failedAttempts: _f, lockedAt: _l, ...rest } = signerBody(fresh);
    await this.o.signers.replace(fresh, "ACTIVE", { ...rest, updatedAt: at });
    const actor: Actor = { kind: "signer", signerId };
    for (const [factor, factorId] of enrolled) await this.o.audit.record(factorEnrolled({ actor, signerId, factor, factorId, ...req(input) }));
    await this.o.audit.record(signerActivated({ signerId, factors: enrolled.map(([f]) => f), ...req(input) }));
    return { deviceKeyId: key.thumbprint, totpEnrollment, activatedAt: now };
  }

  /**
   * ChangePin (R-3.1.2.2, T-2.1.2.2): both current factors, a JWS by a registered, unrevoked
   * device key over a PIN_CHANGE challenge and the old PIN, with the new PIN only inside the JWE.
   * A wrong old PIN counts toward the lockout threshold. The old PIN stops working as the new one
   * is stored.
   */
  async changePin(input: Attempt & { pinChangeEnvelope: string }): Promise<{ changedAt: Date }> {
    const state = { factor: "DEVICE_KEY" as FactorType, counted: false };
    try {
      return await this.changePinChecked(input, state);
    } catch (err) {
      if (!state.counted) await this.auditRefusal(input, err, state.factor, 0);
      throw err;
    }
  }

  private async changePinChecked(input: Attempt & { pinChangeEnvelope: string }, state: { factor: FactorType; counted: boolean }) {
    const { now, signerId } = input;
    const policy = await this.o.policies.current();
    const envelope = await this.openEnvelope(input.pinChangeEnvelope, pinChangeEnvelopeCty, ["old_pin", "new_pin", "proof"], now);
    await this.consumeChallenge(envelope.proof, "PIN_CHANGE", signerId, now);
    // The key is looked up only among the signer's registered, unrevoked device keys, by "kid".
    const signer = await this.o.records.get("signer", signerId);
    if (!signer) throw refused();
    const key = await registeredDeviceKey(this.o.records, signer.id, peekDeviceJws(envelope.proof).header.kid).catch((err: unknown) => {
      if (err instanceof InkanError) throw err; // a failed integrity check (a rolled-back device key) or store failure is no bad proof
      throw refused(err);
    });
    const claims = await this.verifyProof(envelope.proof, key, pinChangeProofTyp, signerId, now, policy, {});
    await this.useJti(claims, now, policy);
    if (signer.status !== "ACTIVE") throw new InkanError("SIGNER_INACTIVE", "the signer is not active");
    if (signerBody(signer).lockedAt) throw signerLocked();

    // The new PIN is checked first: no refusal after the old PIN's check may tell a right old PIN apart.
    const pmin = uintOf(policy, "pinMinLength", 6);
    const pmax = uintOf(policy, "pinMaxLength", 64);
    const oldPin = typeof envelope.old_pin === "string" ? envelope.old_pin : undefined;
    if (!pinAllowed(envelope.new_pin, pmin, pmax) || envelope.new_pin.normalize("NFC") === oldPin?.normalize("NFC")) {
      throw new InkanError("INVALID_REQUEST", `the new PIN must have ${pmin} to ${pmax} characters and differ from the old one`, { field: "new_pin" });
    }
    const newPin = envelope.new_pin;

    const pins = await this.activeFactors(signerId, "PIN");
    const current = pins[0];
    // T-2.1.2.2, R-3.1.2.2: the old PIN is checked on an attempt reserved within the signer's
    // lockout budget (refused unchecked when locked or taken by checks in flight); a wrong one
    // counts and is audited there, a right one ends the run of failures.
    await withFactorAttempt(this.o, { signerId, actor: { kind: "signer", signerId }, now, ...req(input) }, async () => {
      state.factor = "PIN"; // a refusal from here on is about the PIN (a refusal before any check is not)
      if (current && oldPin !== undefined && (await verifyPin(this.o.crypto, oldPin, JSON.parse(current.body) as PinFactorBody))) return { ok: true };
      state.counted = true;
      return { ok: false, factor: "PIN" };
    }, refused);

    const actor: Actor = { kind: "signer", signerId };
    await this.o.audit.record(factorVerified({ actor, signerId, factor: "DEVICE_KEY", ...req(input) }));
    await this.o.audit.record(factorVerified({ actor, signerId, factor: "PIN", ...req(input) }));
    const pinId = await newRecordId("fac", this.o.crypto, now);
    await this.createFactor(pinId, signerId, "PIN", await hashPin(this.o.crypto, newPin, now, policy.pinHashCost));
    for (const old of pins) await this.revokeFactor(old, now);
    for (const old of pins) await this.o.audit.record(factorRevoked({ actor, signerId, factor: "PIN", factorId: old.id, ...req(input) }));
    await this.o.audit.record(factorEnrolled({ actor, signerId, factor: "PIN", factorId: pinId, ...req(input) }));
    return { changedAt: now };
  }

  /**
   * ResetFactors (R-3.1.2.2, T-2.1.2.2), by a registration operator after re-verifying the signer's
   * identity outside the SAM: revokes every factor (PIN, device keys, TOTP), clears the lockout
   * count, returns the signer to PENDING_ACTIVATION and issues a new activation code. Each
   * revocation is audited with the operator's identity; credentials are kept, and sign nothing
   * while the signer is not ACTIVE. For a signer who holds a credential: only with a second
   * privileged user's `approval`, and the code in two halves (T-2.2.2.1, T-2.2.2.3; see
   * Signers.issueActivationCode); refused before anything changes otherwise.
   */
  async resetFactors(input: Acting & { signerId: string; reason: string; approval?: RebindingApproval | undefined }): Promise<{ signer: SignerView; code: IssuedActivationCode }> {
    requireOperator(input.actor);
    const signer = await this.o.signers.record(input.signerId);
    if (signer.status === "DISABLED" || signer.status === "SUSPENDED") throw new InkanError("SIGNER_INACTIVE", "the signer is disabled", { field: "signer_id" });
    if (input.approval) requireSecondApprover(input.actor, input.approval);
    else await this.o.signers.assertOneOperatorMayBind(signer.id); // T-2.2.2.1: checked before any factor is revoked
    const live = await this.activeFactors(signer.id);
    for (const f of live) {
      await this.revokeFactor(f, input.now);
      await this.o.audit.record(factorRevoked({ actor: input.actor, signerId: signer.id, factor: f.type, factorId: f.id, ...req(input) }));
    }
    await this.endAuthorizations(signer.id, input);
    const fresh = await this.o.signers.record(signer.id);
    const { failedAttempts: _f, lockedAt: _l, activationCode: _c, ...rest } = signerBody(fresh);
    await this.o.signers.replace(fresh, "PENDING_ACTIVATION", { ...rest, statusReason: input.reason, updatedAt: input.now.toISOString() });
    await this.o.attempts.releaseExpiredAttempts({ subject: signerAttempts(signer.id), now: input.now }); // a reset clears checks that crashed mid-way
    const code = await this.o.signers.issueActivationCode({ ...input, signerId: signer.id }); // voids earlier codes, audited
    return { signer: await this.o.signers.get(signer.id, input.now), code };
  }

  /**
   * RevokeDevice: revokes one device key of a signer (a lost phone), keeping the other factors;
   * JWSs by it are refused from then on. INVALID_REQUEST (field "device_key_id") when the signer
   * has no such unrevoked key.
   */
  async revokeDevice(input: Acting & { signerId: string; deviceKeyId: string; reason: string }): Promise<SignerView> {
    requireOperator(input.actor);
    const signer = await this.o.signers.record(input.signerId);
    const f = await this.o.records.get("factor", input.deviceKeyId);
    if (!f || f.signerId !== signer.id || f.type !== "DEVICE_KEY" || f.status !== "ACTIVE") {
      throw new InkanError("INVALID_REQUEST", "the signer has no such device key, or it is already revoked", { field: "device_key_id" });
    }
    await this.revokeFactor(f, input.now);
    await this.o.audit.record(factorRevoked({ actor: input.actor, signerId: signer.id, factor: "DEVICE_KEY", factorId: f.id, ...req(input) }));
    await this.endAuthorizations(signer.id, input);
    return this.o.signers.get(signer.id, input.now);
  }

  /**
   * T-2.1.2.2 (issue 13.2): what the revoked factors authorized is cancelled: the signer's
   * open transactions become REVOKED with their unused SAD tokens, each audited, and their progress
   * is closed. Signing also refuses any authorization whose factors are no longer active (the
   * sealed authorization names them), so a node that missed this, or a row put back, signs nothing.
   */
  private async endAuthorizations(signerId: string, input: Acting): Promise<void> {
    for (const transactionId of await this.o.openTransactions.revokeSignerTransactions({ signerId, now: input.now })) {
      await this.o.freshness.advance(progressKey(transactionId), closedProgress);
      await this.o.audit.record(transactionCancelled({ actor: input.actor, transactionId, signerId, ...req(input) }));
    }
  }

  // ---- internals ----------------------------------------------------------------------------

  /** Decrypts and parses an envelope: exactly `members`, no duplicates, at most 8,192 bytes; else AUTHENTICATION_FAILED. */
  private async openEnvelope(jwe: string, cty: string, members: readonly string[], now: Date): Promise<Record<string, unknown>> {
    let plaintext: Uint8Array;
    try {
      plaintext = await this.o.samKeys.decryptCompactJwe(jwe, { maxBytes: maxRSadBytes, now, cty }); // T-2.1.1.3: only the SAM reads it
    } catch (err) {
      if (err instanceof InkanError && err.code === "SAD_INVALID") throw refused(err); // signer.proto names AUTHENTICATION_FAILED here
      throw err;
    }
    try {
      if (plaintext.length > maxEnvelopeBytes) throw new DeviceProofRefused("envelope too large");
      const envelope = parseStrictJsonObject(utf8.decode(plaintext));
      const got = Object.keys(envelope).sort();
      const want = [...members].sort();
      if (got.length !== want.length || got.some((m, i) => m !== want[i])) throw new DeviceProofRefused("envelope members are not exactly the expected ones");
      return envelope;
    } catch (err) {
      throw refused(err);
    } finally {
      plaintext.fill(0);
    }
  }

  /** Consumes the challenge named by the proof's "chal" (T-2.1.2.2 replay); NONCE_REPLAYED unless it is live and bound to this signer and purpose. */
  private async consumeChallenge(proof: unknown, purpose: SignerChallengePurpose, signerId: string, now: Date): Promise<void> {
    let chal: unknown;
    try {
      chal = peekDeviceJws(proof).claims.chal;
    } catch (err) {
      throw refused(err);
    }
    if (typeof chal !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(chal)) throw refused(new DeviceProofRefused("chal is not 32 bytes base64url"));
    const binding = challengeBinding(purpose, signerId);
    const consumed = await this.o.oneTime.consumeChallenge({ hash: challengeHash(Buffer.from(chal, "base64url")), purpose: binding.purpose, now });
    if (!consumed || consumed.subject !== binding.subject) throw replayed();
  }

  private async verifyProof(proof: unknown, key: DevicePublicKey, typ: string, signerId: string, now: Date, policy: PolicyVersion, extra: Record<string, string>) {
    try {
      return await verifyDeviceJws(proof, {
        key,
        typ,
        claims: ["sub", "aud", "chal", "iat", "exp", "jti", ...Object.keys(extra)],
        expect: { sub: signerId, aud: await this.o.samKeys.samId(), ...extra },
        now,
        skewMs: msOf(policy, "maxClockSkew", 60_000),
        maxLifetimeMs: msOf(policy, "maxSadLifetime", 300_000),
      });
    } catch (err) {
      throw refused(err);
    }
  }

  /** The jti is accepted once by any node of this SAM. */
  private async useJti(claims: Record<string, unknown>, now: Date, policy: PolicyVersion): Promise<void> {
    const expiresAt = new Date((claims.exp as number) * 1000 + msOf(policy, "maxClockSkew", 60_000));
    if (!(await this.o.oneTime.useJti({ key: `device-jws ${String(claims.jti)}`, expiresAt, now }))) throw replayed();
  }

  private async auditRefusal(a: Attempt, err: unknown, factor: FactorType, failedAttempts: number): Promise<void> {
    if (!(err instanceof InkanError) || !audited.has(err.code)) return;
    await this.o.audit.record(factorCheckFailed({ actor: { kind: "signer", signerId: a.signerId }, signerId: a.signerId, factor, failedAttempts, reason: err.code, ...req(a) }));
  }

  private async createFactor(id: string, signerId: string, type: FactorType, body: object): Promise<void> {
    await this.o.records.create<FactorRecord>({ kind: "factor", id, version: 1, signerId, type, status: "ACTIVE", body: canonicalize(body)! });
  }

  private async revokeFactor(f: FactorRecord, now: Date): Promise<void> {
    const body = f.type === "DEVICE_KEY" ? canonicalize({ ...(JSON.parse(f.body) as DeviceKeyFactorBody), revokedAt: now.toISOString() })! : f.body;
    const updated = await this.o.records.update<FactorRecord>({ ...f, version: f.version + 1, status: "REVOKED", body }, f.version);
    if (!updated) throw new InkanError("VERSION_CONFLICT", "a factor changed meanwhile; retry");
  }

  private async activeFactors(signerId: string, type?: FactorType): Promise<FactorRecord[]> {
    const out: FactorRecord[] = [];
    let after: string | undefined;
    do {
      const page = await this.o.records.list({ kind: "factor", where: { signerId, status: "ACTIVE", ...(type ? { type } : {}) }, after, limit: 100 });
      out.push(...page.items);
      after = page.next;
    } while (after);
    return out;
  }
}

/** An enum list of the policy (proto3 JSON names). */
function names(policy: PolicyVersion, field: string): string[] {
  const v = policy.policy[field];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}

function uintOf(policy: PolicyVersion, field: string, fallback: number): number {
  const v = policy.policy[field];
  return typeof v === "number" && v > 0 ? v : fallback;
}

function msOf(policy: PolicyVersion, field: string, fallback: number): number {
  const v = policy.policy[field];
  return v === undefined ? fallback : durationMs(v, field);
}

