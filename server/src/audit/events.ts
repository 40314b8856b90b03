/**
 * Every audit event of the SAM, one function per event (R-3.2.2.4). Each builds the record's
 * event fields in the proto3 JSON form of `inkan.admin.v1.AuditRecord` (audit.proto); the
 * AuditLog adds node, sequence, time and the chain.
 *
 * T-2.2.2.3: the audit log never contains a PIN, an R.SAD, a SAD token, an activation code, a
 * nonce, a request signature, a key or any other secret. Records carry ids, hashes, algorithms,
 * outcomes and reasons only. This is enforced three ways:
 * - each function takes a typed input with named non-secret fields and no free-form details, and
 *   {@link AuditEvent} can only be made here (it is branded), so a caller cannot add a field;
 * - detail keys that look like secrets are refused at runtime ({@link looksSecret});
 * - events.test.ts writes a record with every function and scans it for secret-looking names.
 * An id field is still a string: never pass anything but the id it names.
 *
 * Event types are dot-separated, lower case, past tense (`signature.created`).
 */
import type { FactorType, PrivilegedRole } from "../store/port.js";
import type { HashAlgorithm, KeyAlgorithm } from "../crypto/port.js";
import type { ReasonCode } from "../errors.js";
import type { ActorJson, AuditEventFields, AuditOutcomeJson, Member } from "./record-form.js";
import { attachMembers, equalBytes, fieldMembers, memberOf, sha256, toBase64, toHex } from "./record-form.js";

declare const auditEventBrand: unique symbol;

/** A security event ready to be recorded; only the functions of this module make one. */
export type AuditEvent = AuditEventFields & {
  readonly eventType: string;
  readonly [auditEventBrand]: true;
};

// ---------------------------------------------------------------------------------------------
// Actors
// ---------------------------------------------------------------------------------------------

/** Who caused an event. Certificate hashes are SHA-256 over the DER of the client certificate. */
export type Actor =
  | { readonly kind: "system" }
  | { readonly kind: "privileged-user"; readonly userId: string; readonly role: PrivilegedRole; readonly certificateSha256?: Uint8Array }
  | { readonly kind: "sca"; readonly subject: string; readonly certificateSha256?: Uint8Array }
  | { readonly kind: "signer"; readonly signerId: string }
  | { readonly kind: "unauthenticated"; readonly certificateSha256?: Uint8Array };

export type SystemActor = Extract<Actor, { kind: "system" }>;
export type PrivilegedUserActor = Extract<Actor, { kind: "privileged-user" }>;
export type ScaActor = Extract<Actor, { kind: "sca" }>;

/** The SAM itself (start, stop, lockouts, integrity checks). */
export const systemActor: SystemActor = Object.freeze({ kind: "system" });

function actorJson(actor: Actor): ActorJson {
  const cert = "certificateSha256" in actor && actor.certificateSha256 ? { certificateSha256: toBase64(actor.certificateSha256) } : {};
  switch (actor.kind) {
    case "system":
      return { kind: "ACTOR_KIND_SYSTEM" };
    case "privileged-user":
      return { kind: "ACTOR_KIND_PRIVILEGED_USER", ...nonEmpty("id", actor.userId), role: `PRIVILEGED_ROLE_${actor.role}`, ...cert };
    case "sca":
      return { kind: "ACTOR_KIND_SCA", ...nonEmpty("id", actor.subject), ...cert };
    case "signer":
      return { kind: "ACTOR_KIND_SIGNER", ...nonEmpty("id", actor.signerId) };
    case "unauthenticated":
      return { kind: "ACTOR_KIND_UNAUTHENTICATED", ...cert };
  }
}

// ---------------------------------------------------------------------------------------------
// The builder every event goes through
// ---------------------------------------------------------------------------------------------

/**
 * Words that, ending a field name, mean the field holds a secret (T-2.2.2.3). Policy settings
 * about secrets are fine (`sad_lifetime`, `pin_min_length`); the secrets themselves are not
 * (`pin`, `sad_token`, `privateKey`, `activation_code`, `request_signature`, `pin_hash`).
 */
const secretLastWords = new Set([
  "pin", "puk", "password", "passphrase", "passcode", "secret", "sad", "rsad", "token", "otp", "totp",
  "nonce", "seed", "jws", "jwt", "assertion", "cookie", "key", "keys", "credentials",
]);
const secretEndings = [
  ["activation", "code"], ["request", "signature"], ["pin", "hash"], ["key", "material"], ["private", "key", "der"],
] as const;

/** True when a field name looks like it holds a secret (`pin`, `sad_token`, `privateKey`, `activation_code`, ...). */
export function looksSecret(name: string): boolean {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  const last = words[words.length - 1];
  if (last !== undefined && secretLastWords.has(last)) return true;
  return secretEndings.some((ending) => ending.length <= words.length && ending.every((w, i) => words[words.length - ending.length + i] === w));
}

const eventTypePattern = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const detailKeyPattern = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/;
// Room for "policy.updated" with every setting of the policy changed (old.* and new.*), e.g. a
// restore after the stored policy failed its check, when no old value can be trusted.
const MAX_DETAILS = 256;
const MAX_DETAIL_KEY = 64;
const MAX_DETAIL_VALUE = 4096;
/**
 * Issue 20: detail keys that passed the name and secret checks (both depend on the key alone), so a
 * stream's per-signature records skip the checks; bounded, a key not kept is checked every time.
 */
const checkedDetailKeys = new Set<string>();
const MAX_CHECKED_DETAIL_KEYS = 1024;

type DetailValue = string | number | boolean | undefined;

type Outcome = { outcome: "SUCCESS" } | { outcome: "DENIED" | "FAILURE"; reason?: ReasonCode | undefined };

interface EventSpec {
  actor: Actor;
  approver?: Actor | undefined;
  result?: Outcome;
  signerId?: string | undefined;
  credentialId?: string | undefined;
  transactionId?: string | undefined;
  subjectUserId?: string | undefined;
  pendingRequestId?: string | undefined;
  requestId?: string | undefined;
  details?: Readonly<Record<string, DetailValue>>;
}

/** String.prototype.isWellFormed (ES2024, in Node 20): true when the string has no lone surrogate. */
const isWellFormed = (String.prototype as unknown as { isWellFormed?: (this: string) => boolean }).isWellFormed;

/** Replaces lone UTF-16 surrogates (e.g. from a BMPString certificate subject) so every record has a JCS form. */
function wellFormed(text: string): string {
  if (isWellFormed?.call(text)) return text; // issue 20: the common case, checked natively
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}

function nonEmpty<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value ? { [key]: wellFormed(value) } : {}) as { [P in K]?: string };
}

/** A value longer than a record allows is replaced by its SHA-256 (still comparable, never cut). */
function detailText(value: string | number | boolean): string {
  const text = wellFormed(String(value));
  return text.length <= MAX_DETAIL_VALUE ? text : `sha256:${toHex(sha256(text))}`;
}

function build(eventType: string, spec: EventSpec): AuditEvent {
  if (!eventTypePattern.test(eventType)) throw new RangeError(`audit event type "${eventType}" is not dotted lower case`);
  const details: Record<string, string> = {};
  for (const [key, value] of Object.entries(spec.details ?? {})) {
    if (value === undefined || value === "") continue;
    if (!checkedDetailKeys.has(key)) {
      if (!detailKeyPattern.test(key) || key.length > MAX_DETAIL_KEY) throw new RangeError(`audit detail key "${key}" is not lower_snake_case`);
      // T-2.2.2.3: a detail named like a secret is a bug in the caller; refuse to record it.
      if (looksSecret(key)) throw new RangeError(`audit detail "${key}" looks like a secret and is never recorded`);
      if (checkedDetailKeys.size < MAX_CHECKED_DETAIL_KEYS) checkedDetailKeys.add(key);
    }
    details[key] = detailText(value);
  }
  if (Object.keys(details).length > MAX_DETAILS) throw new RangeError(`an audit record holds at most ${MAX_DETAILS} details`);
  const result = spec.result ?? { outcome: "SUCCESS" };
  const outcome: AuditOutcomeJson = `AUDIT_OUTCOME_${result.outcome}`;
  const event: AuditEventFields & { eventType: string } = {
    eventType,
    actor: actorJson(spec.actor),
    ...(spec.approver ? { approver: actorJson(spec.approver) } : {}),
    outcome,
    ...(result.outcome === "SUCCESS" || result.reason === undefined ? {} : { reason: `REASON_${result.reason}` }),
    ...nonEmpty("signerId", spec.signerId),
    ...nonEmpty("credentialId", spec.credentialId),
    ...nonEmpty("transactionId", spec.transactionId),
    ...nonEmpty("subjectUserId", spec.subjectUserId),
    ...nonEmpty("pendingRequestId", spec.pendingRequestId),
    ...nonEmpty("requestId", spec.requestId),
    ...(Object.keys(details).length > 0 ? { details } : {}),
  };
  return Object.freeze(event) as AuditEvent;
}

const hex = (bytes: Uint8Array): string => toHex(bytes);

/** Fields most events share: the RPC's request id, for correlation with the server log. */
interface Requested {
  /** The request id of the RPC that caused the event; omit for system events. */
  requestId?: string;
}

/** An outcome other than success: who was refused (DENIED) or what failed (FAILURE), and why. */
export type Refusal = { outcome: "DENIED" | "FAILURE"; reason?: ReasonCode | undefined };

// ---------------------------------------------------------------------------------------------
// SAP: transactions, SAD, signatures
// ---------------------------------------------------------------------------------------------

/** An SCA created a SAP transaction for a signer's credential ("transaction.created"). */
export function transactionCreated(input: Requested & {
  sca: ScaActor;
  signerId: string;
  credentialId: string;
  transactionId: string;
  hashCount: number;
  hashAlgorithm: HashAlgorithm;
  /** Issue 16: the party the SCA acts for (e.g. a CSC client id), when it named one. */
  onBehalfOf?: string | undefined;
}): AuditEvent {
  return build("transaction.created", {
    actor: input.sca,
    signerId: input.signerId,
    credentialId: input.credentialId,
    transactionId: input.transactionId,
    requestId: input.requestId,
    details: { hash_count: input.hashCount, hash_algorithm: input.hashAlgorithm, on_behalf_of: input.onBehalfOf },
  });
}

/** A SAP transaction was cancelled or revoked before completion ("transaction.cancelled"). */
export function transactionCancelled(input: Requested & { actor: Actor; transactionId: string; signerId?: string; credentialId?: string }): AuditEvent {
  return build("transaction.cancelled", {
    actor: input.actor,
    signerId: input.signerId,
    credentialId: input.credentialId,
    transactionId: input.transactionId,
    requestId: input.requestId,
  });
}

/**
 * The verdict on a SAD ("sad.verified"): SUCCESS when it authorized the transaction, DENIED with
 * the reason (SAD_INVALID, SAD_REPLAYED, EXPIRED, ...) otherwise. The SAD itself is never recorded.
 */
export function sadVerified(input: Requested & {
  sca: ScaActor;
  signerId?: string;
  credentialId?: string;
  transactionId?: string;
  verdict: { outcome: "SUCCESS" } | Refusal;
}): AuditEvent {
  return build("sad.verified", {
    actor: input.sca,
    result: input.verdict,
    signerId: input.signerId,
    credentialId: input.credentialId,
    transactionId: input.transactionId,
    requestId: input.requestId,
  });
}

type SignatureCreatedInput = Requested & {
  sca: ScaActor;
  signerId: string;
  credentialId: string;
  transactionId: string;
  /** The DTBS/R that was signed (recorded in hex). */
  hash: Uint8Array;
  hashAlgorithm: HashAlgorithm;
  signatureAlgorithm: string;
};

/**
 * A signature left the SAM ("signature.created"): one record per signed hash (DTBS/R).
 *
 * Issue 20: a call records one of these per signature with the same fields but the hash, so the
 * event is made from a per-call template: everything but the hash is built and made canonical
 * once, and each event gets its hash and the template's canonical members with the hash's filled
 * in (record-form.ts attachMembers). The event and its record are exactly what the builder gives
 * ({@link builtForms}; record-form.test.ts compares them over many random inputs).
 */
export function signatureCreated(input: SignatureCreatedInput): AuditEvent {
  const text = hex(input.hash);
  if (text.length === 0 || text.length > MAX_DETAIL_VALUE) return signatureCreatedByBuild(input); // detailText's other cases
  const t = signatureTemplate(input);
  const details = Object.freeze({ ...t.proto.details, hash: text });
  const event = { ...t.proto, details };
  if (t.members) {
    const members = t.members.slice();
    members[t.detailsAt] = { key: "details", text: `"details":{"hash":"${text}"${t.detailsRest}` }; // hex needs no escape
    attachMembers(event, members);
  }
  return Object.freeze(event) as AuditEvent;
}

/** signature.created through the builder every event goes through: the reference form of {@link signatureCreated}. */
function signatureCreatedByBuild(input: SignatureCreatedInput): AuditEvent {
  return build("signature.created", {
    actor: input.sca,
    signerId: input.signerId,
    credentialId: input.credentialId,
    transactionId: input.transactionId,
    requestId: input.requestId,
    details: { hash: hex(input.hash), hash_algorithm: input.hashAlgorithm, signature_algorithm: input.signatureAlgorithm },
  });
}

/** The events made from a template, as the builder makes them: the reference their tests compare with. */
export const builtForms = Object.freeze({ signatureCreated: signatureCreatedByBuild });

/** The fields of signature.created but the hash, as given (compared by value), and what they make. */
interface SignatureTemplate {
  kind: string;
  subject: string;
  certificateSha256: Uint8Array | undefined;
  requestId: string | undefined;
  signerId: string;
  credentialId: string;
  transactionId: string;
  hashAlgorithm: string;
  signatureAlgorithm: string;
  /** The event for a placeholder hash; its actor is frozen and shared. */
  proto: AuditEvent;
  /** proto's canonical members (undefined: none attached, the record is made canonical in full). */
  members: readonly Member[] | undefined;
  detailsAt: number;
  /** The details' JCS text after the hash (the hash's key sorts first). */
  detailsRest: string;
}

/** The last template: one call's records are made one after another, synchronously. */
let lastSignatureTemplate: SignatureTemplate | undefined;

function signatureTemplate(input: SignatureCreatedInput): SignatureTemplate {
  const t = lastSignatureTemplate;
  const cert = input.sca.certificateSha256;
  if (
    t &&
    t.kind === input.sca.kind &&
    t.subject === input.sca.subject &&
    (cert === undefined ? t.certificateSha256 === undefined : t.certificateSha256 !== undefined && equalBytes(t.certificateSha256, cert)) &&
    t.requestId === input.requestId &&
    t.signerId === input.signerId &&
    t.credentialId === input.credentialId &&
    t.transactionId === input.transactionId &&
    t.hashAlgorithm === input.hashAlgorithm &&
    t.signatureAlgorithm === input.signatureAlgorithm
  ) {
    return t;
  }
  const proto = signatureCreatedByBuild({ ...input, hash: new Uint8Array(1) });
  Object.freeze(proto.actor);
  let members: readonly Member[] | undefined;
  let detailsAt = -1;
  let detailsRest = "";
  try {
    members = fieldMembers(proto);
    detailsAt = members.findIndex((m) => m.key === "details");
    const { hash: _placeholder, ...rest } = proto.details!;
    const restText = memberOf("details", rest).text.slice('"details":'.length);
    detailsRest = restText === "{}" ? "}" : `,${restText.slice(1)}`;
    // The template must give the placeholder's own member, or none is used.
    if (detailsAt < 0 || members[detailsAt]!.text !== `"details":{"hash":"00"${detailsRest}`) members = undefined;
  } catch {
    members = undefined; // no canonical form: the record's own check refuses it, as before
  }
  const made: SignatureTemplate = {
    kind: input.sca.kind,
    subject: input.sca.subject,
    certificateSha256: cert && new Uint8Array(cert),
    requestId: input.requestId,
    signerId: input.signerId,
    credentialId: input.credentialId,
    transactionId: input.transactionId,
    hashAlgorithm: input.hashAlgorithm,
    signatureAlgorithm: input.signatureAlgorithm,
    proto,
    members,
    detailsAt,
    detailsRest,
  };
  lastSignatureTemplate = made;
  return made;
}

/** A signing request was refused or failed; no signature left ("signature.failed"). */
export function signatureFailed(input: Requested & {
  sca: ScaActor;
  signerId?: string;
  credentialId: string;
  transactionId?: string;
  hash?: Uint8Array;
  refusal: Refusal;
}): AuditEvent {
  return build("signature.failed", {
    actor: input.sca,
    result: input.refusal,
    signerId: input.signerId,
    credentialId: input.credentialId,
    transactionId: input.transactionId,
    requestId: input.requestId,
    details: { hash: input.hash ? hex(input.hash) : undefined },
  });
}

// ---------------------------------------------------------------------------------------------
// Factors and lockouts
// ---------------------------------------------------------------------------------------------

/** A signer's factor (device key, PIN, TOTP) verified ("factor.verified"). */
export function factorVerified(input: Requested & { actor: Actor; signerId: string; credentialId?: string; transactionId?: string; factor: FactorType }): AuditEvent {
  return build("factor.verified", {
    actor: input.actor,
    signerId: input.signerId,
    credentialId: input.credentialId,
    transactionId: input.transactionId,
    requestId: input.requestId,
    details: { factor: input.factor },
  });
}

/** A factor check failed ("factor.check_failed"); `failedAttempts` counts consecutive failures. */
export function factorCheckFailed(input: Requested & {
  actor: Actor;
  signerId: string;
  credentialId?: string;
  transactionId?: string;
  factor: FactorType;
  failedAttempts: number;
  reason?: ReasonCode;
}): AuditEvent {
  return build("factor.check_failed", {
    actor: input.actor,
    result: { outcome: "DENIED", reason: input.reason ?? "AUTHENTICATION_FAILED" },
    signerId: input.signerId,
    credentialId: input.credentialId,
    transactionId: input.transactionId,
    requestId: input.requestId,
    details: { factor: input.factor, failed_attempts: input.failedAttempts },
  });
}

/** Failed factor checks reached the threshold; the credential is locked ("credential.locked"). */
export function credentialLocked(input: Requested & { signerId: string; credentialId: string; failedAttempts: number; threshold: number }): AuditEvent {
  return build("credential.locked", {
    actor: systemActor,
    signerId: input.signerId,
    credentialId: input.credentialId,
    requestId: input.requestId,
    details: { failed_attempts: input.failedAttempts, threshold: input.threshold },
  });
}

/** A registration operator reset a lockout ("credential.unlocked"). */
export function credentialUnlocked(input: Requested & { operator: PrivilegedUserActor; signerId: string; credentialId: string }): AuditEvent {
  return build("credential.unlocked", { actor: input.operator, signerId: input.signerId, credentialId: input.credentialId, requestId: input.requestId });
}

// ---------------------------------------------------------------------------------------------
// Signer lifecycle
// ---------------------------------------------------------------------------------------------

/** A signer was enrolled ("signer.enrolled"), with its signer group if any (which SCA scopes reach it, issue 19). */
export function signerEnrolled(input: Requested & { actor: Actor; signerId: string; signerGroup?: string | undefined }): AuditEvent {
  return build("signer.enrolled", { actor: input.actor, signerId: input.signerId, requestId: input.requestId, details: { signer_group: input.signerGroup } });
}

/** An activation code was issued to a signer ("activation_code.issued"); the code itself is never recorded. */
export function activationCodeIssued(input: Requested & { actor: Actor; signerId: string; expiresAt: Date; approver?: PrivilegedUserActor }): AuditEvent {
  return build("activation_code.issued", {
    actor: input.actor,
    signerId: input.signerId,
    requestId: input.requestId,
    // With an approver: issued in two halves, one to each of them (split knowledge, T-2.2.2.3).
    ...(input.approver ? { approver: input.approver } : {}),
    details: { expires_at: input.expiresAt.toISOString(), split_knowledge: input.approver ? "true" : "" },
  });
}

/** A signer completed activation with these factors ("signer.activated"). */
export function signerActivated(input: Requested & { signerId: string; factors: readonly FactorType[] }): AuditEvent {
  return build("signer.activated", {
    actor: { kind: "signer", signerId: input.signerId },
    signerId: input.signerId,
    requestId: input.requestId,
    details: { factors: [...input.factors].sort().join(",") },
  });
}

/** A signer was suspended ("signer.suspended"). */
export function signerSuspended(input: Requested & { actor: Actor; signerId: string }): AuditEvent {
  return build("signer.suspended", { actor: input.actor, signerId: input.signerId, requestId: input.requestId });
}

/** A suspended signer was resumed ("signer.resumed"). */
export function signerResumed(input: Requested & { actor: Actor; signerId: string }): AuditEvent {
  return build("signer.resumed", { actor: input.actor, signerId: input.signerId, requestId: input.requestId });
}

/** A signer was disabled for good ("signer.disabled"). */
export function signerDisabled(input: Requested & { actor: Actor; signerId: string; approver?: PrivilegedUserActor; pendingRequestId?: string }): AuditEvent {
  return build("signer.disabled", {
    actor: input.actor,
    approver: input.approver,
    signerId: input.signerId,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
  });
}

/** A factor was bound to a signer ("factor.enrolled"); never its secret, only its type and id. */
export function factorEnrolled(input: Requested & { actor: Actor; signerId: string; factor: FactorType; factorId: string }): AuditEvent {
  return build("factor.enrolled", {
    actor: input.actor,
    signerId: input.signerId,
    requestId: input.requestId,
    details: { factor: input.factor, factor_id: input.factorId },
  });
}

/** A factor was revoked ("factor.revoked"). */
export function factorRevoked(input: Requested & { actor: Actor; signerId: string; factor: FactorType; factorId: string }): AuditEvent {
  return build("factor.revoked", {
    actor: input.actor,
    signerId: input.signerId,
    requestId: input.requestId,
    details: { factor: input.factor, factor_id: input.factorId },
  });
}

// ---------------------------------------------------------------------------------------------
// Keys and credentials
// ---------------------------------------------------------------------------------------------

interface KeyFacts {
  signerId: string;
  credentialId: string;
  /** The key's id in the crypto module (hex CKA_ID). */
  keyId: string;
  keyAlgorithm: KeyAlgorithm;
  /** SHA-256 of the public key (DER SPKI), recorded in hex. */
  publicKeySha256: Uint8Array;
}

/** A signing key pair was generated inside the crypto module (R-3.1.1.3) ("key.generated"). */
export function keyGenerated(input: Requested & KeyFacts & { actor: Actor }): AuditEvent {
  return build("key.generated", {
    actor: input.actor,
    signerId: input.signerId,
    credentialId: input.credentialId,
    requestId: input.requestId,
    details: { key_id: input.keyId, key_algorithm: input.keyAlgorithm, public_key_sha256: hex(input.publicKeySha256) },
  });
}

/** An existing signing key was imported into the crypto module ("key.imported"). */
export function keyImported(input: Requested & KeyFacts & { actor: Actor }): AuditEvent {
  return build("key.imported", {
    actor: input.actor,
    signerId: input.signerId,
    credentialId: input.credentialId,
    requestId: input.requestId,
    details: { key_id: input.keyId, key_algorithm: input.keyAlgorithm, public_key_sha256: hex(input.publicKeySha256) },
  });
}

/** A certificate was installed on a credential ("certificate.installed"). */
export function certificateInstalled(input: Requested & { actor: Actor; signerId: string; credentialId: string; certificateSha256: Uint8Array }): AuditEvent {
  return build("certificate.installed", {
    actor: input.actor,
    signerId: input.signerId,
    credentialId: input.credentialId,
    requestId: input.requestId,
    details: { certificate_sha256: hex(input.certificateSha256) },
  });
}

/** A credential was suspended ("credential.suspended"). */
export function credentialSuspended(input: Requested & { actor: Actor; signerId: string; credentialId: string }): AuditEvent {
  return build("credential.suspended", { actor: input.actor, signerId: input.signerId, credentialId: input.credentialId, requestId: input.requestId });
}

/** A suspended credential was resumed ("credential.resumed"). */
export function credentialResumed(input: Requested & { actor: Actor; signerId: string; credentialId: string }): AuditEvent {
  return build("credential.resumed", { actor: input.actor, signerId: input.signerId, credentialId: input.credentialId, requestId: input.requestId });
}

/** A credential's key was destroyed in the crypto module, under dual control ("credential.destroyed"). */
export function credentialDestroyed(input: Requested & {
  requester: PrivilegedUserActor;
  approver?: PrivilegedUserActor;
  pendingRequestId?: string;
  signerId: string;
  credentialId: string;
  keyId: string;
}): AuditEvent {
  return build("credential.destroyed", {
    actor: input.requester,
    approver: input.approver,
    signerId: input.signerId,
    credentialId: input.credentialId,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
    details: { key_id: input.keyId },
  });
}

// ---------------------------------------------------------------------------------------------
// Privileged users, dual control, policy
// ---------------------------------------------------------------------------------------------

/**
 * A privileged user asked for an operation (an admin RPC), authenticated and authorized, about to
 * be performed ("privileged_operation.requested"). Written before anything changes, so an audit
 * log that cannot be written stops the operation (fail closed); "performed" follows with the outcome.
 */
export function privilegedOperationRequested(input: Requested & { method: string; requester: PrivilegedUserActor; pendingRequestId?: string }): AuditEvent {
  return build("privileged_operation.requested", {
    actor: input.requester,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
    details: { method: input.method },
  });
}

/**
 * A privileged operation (an admin RPC) was performed, with both people when under dual control
 * ("privileged_operation.performed"). `method` is the RPC's full name.
 */
export function privilegedOperationPerformed(input: Requested & {
  method: string;
  requester: PrivilegedUserActor;
  approver?: PrivilegedUserActor;
  pendingRequestId?: string;
  subjectUserId?: string;
  signerId?: string;
  credentialId?: string;
  result?: { outcome: "SUCCESS" } | Refusal;
}): AuditEvent {
  return build("privileged_operation.performed", {
    actor: input.requester,
    approver: input.approver,
    result: input.result,
    subjectUserId: input.subjectUserId,
    signerId: input.signerId,
    credentialId: input.credentialId,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
    details: { method: input.method },
  });
}

/** An operation under dual control awaits a second security officer ("approval.requested"). */
export function approvalRequested(input: Requested & { requester: PrivilegedUserActor; method: string; pendingRequestId: string }): AuditEvent {
  return build("approval.requested", {
    actor: input.requester,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
    details: { method: input.method },
  });
}

/** A second security officer approved a pending request ("approval.granted"). */
export function approvalGranted(input: Requested & { approver: PrivilegedUserActor; requester: PrivilegedUserActor; method: string; pendingRequestId: string }): AuditEvent {
  return build("approval.granted", {
    actor: input.requester,
    approver: input.approver,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
    details: { method: input.method },
  });
}

/** A pending request was rejected, withdrawn or expired ("approval.rejected"). */
export function approvalRejected(input: Requested & { actor: PrivilegedUserActor | SystemActor; method: string; pendingRequestId: string }): AuditEvent {
  return build("approval.rejected", {
    actor: input.actor,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
    details: { method: input.method },
  });
}

/** A privileged user was created ("privileged_user.created"). */
export function privilegedUserCreated(input: Requested & {
  actor: PrivilegedUserActor | SystemActor;
  approver?: PrivilegedUserActor;
  pendingRequestId?: string;
  subjectUserId: string;
  role: PrivilegedRole;
}): AuditEvent {
  return build("privileged_user.created", {
    actor: input.actor,
    approver: input.approver,
    subjectUserId: input.subjectUserId,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
    details: { role: input.role },
  });
}

/** A privileged user was removed or disabled ("privileged_user.removed"). */
export function privilegedUserRemoved(input: Requested & { actor: PrivilegedUserActor; approver?: PrivilegedUserActor; pendingRequestId?: string; subjectUserId: string }): AuditEvent {
  return build("privileged_user.removed", {
    actor: input.actor,
    approver: input.approver,
    subjectUserId: input.subjectUserId,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
  });
}

/** A privileged user's request-signing key was registered ("privileged_user.key_registered"). */
export function privilegedUserKeyRegistered(input: Requested & { actor: PrivilegedUserActor | SystemActor; subjectUserId: string; keyThumbprint: string }): AuditEvent {
  return build("privileged_user.key_registered", {
    actor: input.actor,
    subjectUserId: input.subjectUserId,
    requestId: input.requestId,
    details: { key_thumbprint: input.keyThumbprint },
  });
}

/** A privileged user's request-signing key was revoked ("privileged_user.key_revoked"). */
export function privilegedUserKeyRevoked(input: Requested & { actor: PrivilegedUserActor; subjectUserId: string; keyThumbprint: string }): AuditEvent {
  return build("privileged_user.key_revoked", {
    actor: input.actor,
    subjectUserId: input.subjectUserId,
    requestId: input.requestId,
    details: { key_thumbprint: input.keyThumbprint },
  });
}

/**
 * An admin request was refused before it did anything: wrong certificate, missing or bad request
 * signature, replayed nonce, wrong role ("admin_request.refused"). Only the method and reason are
 * recorded, never the request's signature or nonce.
 */
export function adminRequestRefused(input: Requested & { caller: Actor; method: string; reason: ReasonCode }): AuditEvent {
  return build("admin_request.refused", refused(input));
}

/**
 * A request to the SAP or SignerService was refused before it did anything because its caller may
 * not call that service: no accepted client certificate, or a certificate of another kind (an SCA
 * at SignerService, the signer front end at the SAP) ("request.refused"). Method and reason only.
 */
export function requestRefused(input: Requested & { caller: Actor; method: string; reason: ReasonCode }): AuditEvent {
  return build("request.refused", refused(input));
}

/** The fields of a refused request's record (admin_request.refused, request.refused). */
function refused(input: Requested & { caller: Actor; method: string; reason: ReasonCode }) {
  return { actor: input.caller, result: { outcome: "DENIED" as const, reason: input.reason }, requestId: input.requestId, details: { method: input.method } };
}

/**
 * An SCA asked for a signer outside its scopes (SecurityPolicy.sca_scopes) in `method`
 * ("ListCredentials", "GetCredential", "BeginTransaction", "SealTransaction") and was answered as
 * if the signer or credential did not exist ("sca_scope.refused", issue 19). The record keeps the
 * real cause, the signer's group and the scopes that named the SCA ("" when none did).
 */
export function scaScopeRefused(input: Requested & { sca: ScaActor; method: string; signerId: string; credentialId?: string | undefined; signerGroup: string; scopes: readonly string[] }): AuditEvent {
  return build("sca_scope.refused", {
    actor: input.sca,
    result: { outcome: "DENIED", reason: "ROLE_NOT_PERMITTED" },
    signerId: input.signerId,
    credentialId: input.credentialId,
    requestId: input.requestId,
    details: { method: input.method, cause: "signer_outside_sca_scope", signer_group: input.signerGroup, sca_scopes: input.scopes.join(",") },
  });
}

/** A security policy setting: scalars, lists of scalars, or nested settings. */
export type PolicyValue = string | number | boolean | readonly (string | number)[] | PolicySnapshot;
/** A security policy as recorded: settings only (it holds no secrets; trusted CAs by fingerprint). */
export interface PolicySnapshot {
  readonly [setting: string]: PolicyValue;
}

function flattenPolicy(prefix: string, value: PolicyValue, out: Map<string, string>): void {
  if (typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value as PolicySnapshot)) flattenPolicy(`${prefix}.${snake(k)}`, v, out);
  } else {
    out.set(prefix, Array.isArray(value) ? value.join(",") : String(value));
  }
}

function snake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

/**
 * The security policy changed ("policy.updated"): the settings that differ, as "old.<setting>"
 * and "new.<setting>" details, and both versions.
 */
export function policyChanged(input: Requested & {
  requester: PrivilegedUserActor;
  approver?: PrivilegedUserActor;
  pendingRequestId?: string;
  oldVersion: number;
  newVersion: number;
  oldPolicy: PolicySnapshot;
  newPolicy: PolicySnapshot;
}): AuditEvent {
  const before = new Map<string, string>();
  const after = new Map<string, string>();
  for (const [k, v] of Object.entries(input.oldPolicy)) flattenPolicy(snake(k), v, before);
  for (const [k, v] of Object.entries(input.newPolicy)) flattenPolicy(snake(k), v, after);
  const details: Record<string, string> = { old_version: String(input.oldVersion), new_version: String(input.newVersion) };
  for (const key of [...new Set([...before.keys(), ...after.keys()])].sort()) {
    if (before.get(key) === after.get(key)) continue;
    details[`old.${key}`] = before.get(key) ?? "(unset)";
    details[`new.${key}`] = after.get(key) ?? "(unset)";
  }
  return build("policy.updated", {
    actor: input.requester,
    approver: input.approver,
    pendingRequestId: input.pendingRequestId,
    requestId: input.requestId,
    details,
  });
}

// ---------------------------------------------------------------------------------------------
// Integrity, start and stop, audit reads
// ---------------------------------------------------------------------------------------------

/**
 * A stored record failed its integrity check, or the audit chain or policy was found tampered
 * with ("integrity.failed"). `kind` is the record kind ("signer", "policy", "audit-chain"...).
 */
export function integrityViolationDetected(input: Requested & { kind: string; id: string; cause?: "seal" | "rolled-back" }): AuditEvent {
  return build("integrity.failed", {
    actor: systemActor,
    result: { outcome: "FAILURE", reason: "INTEGRITY_VIOLATION" },
    requestId: input.requestId,
    // cause "rolled-back": an older, validly sealed copy was put back, or the record deleted (issue 14).
    details: { record_kind: input.kind, record_id: input.id, cause: input.cause },
  });
}

/**
 * A versioned object reached a new version ("record.versioned"): a sealed record written, a
 * policy version appended, a transaction's progress; or a newer version than this node knew was
 * read (written by another node, or by a write whose entry a crash lost). `key` names the object
 * (`signer:<id>`, `policy:<stream>`, `txn:<id>`): ids only, never content. The journal of heads
 * that rollback detection rebuilds at start (integrity/ROLLBACK.md, audit/versioned-journal.ts).
 */
export function recordVersioned(input: { key: string; version: number }): AuditEvent {
  if (input.key === "") throw new RangeError("a versioned key is not empty");
  if (!Number.isSafeInteger(input.version) || input.version < 1) throw new RangeError(`version ${input.version} is not a positive integer`);
  if (input.key.length > MAX_DETAIL_VALUE) throw new RangeError("a versioned key is at most 4096 characters");
  return build("record.versioned", { actor: systemActor, details: { record: input.key, version: input.version } });
}

/**
 * The SAM started ("sam.started"). `headSequence` and `moduleCheckpointSequence` come from the
 * AuditLog's start state: records after the module's checkpoint were written but not yet signed
 * when the SAM last stopped (a crash, or records appended by someone else).
 */
export function samStarted(input: { version: string; headSequence: number; moduleCheckpointSequence: number }): AuditEvent {
  return build("sam.started", {
    actor: systemActor,
    details: { version: input.version, head_sequence: input.headSequence, module_checkpoint_sequence: input.moduleCheckpointSequence },
  });
}

/** The SAM is stopping ("sam.stopped"); record it before closing the AuditLog. */
export function samStopped(input: { cause: "signal" | "shutdown" | "fatal-error" }): AuditEvent {
  return build("sam.stopped", { actor: systemActor, details: { cause: input.cause } });
}

/**
 * The crypto module became unusable ("crypto_module.disconnected", issue 22): module calls are refused
 * and the node reports NOT_SERVING while it reconnects. `cause` is a CKR name or the failed check.
 */
export function cryptoModuleDisconnected(input: { cause: string }): AuditEvent {
  return build("crypto_module.disconnected", {
    actor: systemActor,
    result: { outcome: "FAILURE", reason: "CRYPTO_MODULE_FAILURE" },
    details: { cause: input.cause },
  });
}

/** The node reconnected to its crypto module, checked its system keys and serves again ("crypto_module.reconnected"). */
export function cryptoModuleReconnected(input: { attempts: number; downMs: number }): AuditEvent {
  return build("crypto_module.reconnected", { actor: systemActor, details: { attempts: input.attempts, down_ms: input.downMs } });
}

/** An auditor listed audit records ("audit.listed"). */
export function auditListed(input: Requested & { auditor: PrivilegedUserActor; records: number }): AuditEvent {
  return build("audit.listed", { actor: input.auditor, requestId: input.requestId, details: { records: input.records } });
}

/** An auditor verified the audit log ("audit.verified"), with the verdict. */
export function auditVerified(input: Requested & { auditor: PrivilegedUserActor; nodeId?: string; ok: boolean; brokenNodes: readonly string[] }): AuditEvent {
  return build("audit.verified", {
    actor: input.auditor,
    requestId: input.requestId,
    details: { node_id: input.nodeId, ok: input.ok, broken_nodes: input.brokenNodes.join(",") },
  });
}

/** An auditor exported the audit log ("audit.exported"). */
export function auditExported(input: Requested & { auditor: PrivilegedUserActor; nodeId?: string; fromSequence?: number; toSequence?: number }): AuditEvent {
  return build("audit.exported", {
    actor: input.auditor,
    requestId: input.requestId,
    details: { node_id: input.nodeId, from_sequence: input.fromSequence, to_sequence: input.toSequence },
  });
}

// ---------------------------------------------------------------------------------------------
// Backup and restore (issue 22, integrity/ROLLBACK.md "Backup and restore")
// ---------------------------------------------------------------------------------------------

/**
 * Audit high-water marks, node -> newest sequence, as one detail value: `node=sequence` pairs in
 * node order, comma-separated (node ids are 1 to 64 characters without "," or "=").
 */
function highWaterMarksText(marks: Readonly<Record<string, number>>): string {
  return Object.keys(marks)
    .sort()
    .map((node) => `${node}=${marks[node]}`)
    .join(",");
}

/** `inkan backup` took a snapshot ("store.backup_created"): its identity and the audit high-water marks it holds. */
export function storeBackupTaken(input: { snapshotId: string; highWaterMarks: Readonly<Record<string, number>>; store: string }): AuditEvent {
  return build("store.backup_created", {
    actor: systemActor,
    details: { snapshot_id: input.snapshotId, high_water_marks: highWaterMarksText(input.highWaterMarks), store: input.store },
  });
}

/**
 * `inkan restore` put a snapshot back ("store.restored"): the SAM refuses to sign until two
 * security officers acknowledge it. `oldHighWaterMarks`: the audit log before the restore (its
 * tail after the snapshot is kept); `newHighWaterMarks`: the snapshot's.
 */
export function storeRestored(input: { restoreId: string; snapshotId: string; oldHighWaterMarks: Readonly<Record<string, number>>; newHighWaterMarks: Readonly<Record<string, number>> }): AuditEvent {
  return build("store.restored", {
    actor: systemActor,
    details: {
      restore_id: input.restoreId,
      snapshot_id: input.snapshotId,
      old_high_water_marks: highWaterMarksText(input.oldHighWaterMarks),
      new_high_water_marks: highWaterMarksText(input.newHighWaterMarks),
    },
  });
}

/**
 * Two security officers acknowledged a restore ("store.restore_acknowledged"): what was voided,
 * raised and re-sealed, with the snapshot's identity and both high-water marks.
 */
export function storeRestoreAcknowledged(input: Requested & {
  requester: PrivilegedUserActor;
  approver?: PrivilegedUserActor | undefined;
  restoreId: string;
  snapshotId: string;
  oldHighWaterMarks: Readonly<Record<string, number>>;
  newHighWaterMarks: Readonly<Record<string, number>>;
  voidedOneTimeObjects: number;
  voidedTransactions: number;
  rebasedRecords: number;
  raisedLockouts: number;
  rejectedApprovals: number;
}): AuditEvent {
  return build("store.restore_acknowledged", {
    actor: input.requester,
    approver: input.approver,
    requestId: input.requestId,
    details: {
      restore_id: input.restoreId,
      snapshot_id: input.snapshotId,
      old_high_water_marks: highWaterMarksText(input.oldHighWaterMarks),
      new_high_water_marks: highWaterMarksText(input.newHighWaterMarks),
      voided_one_time_objects: input.voidedOneTimeObjects,
      voided_transactions: input.voidedTransactions,
      rebased_records: input.rebasedRecords,
      raised_lockouts: input.raisedLockouts,
      rejected_approvals: input.rejectedApprovals,
    },
  });
}
