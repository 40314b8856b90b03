/**
 * Suspension, resumption and destruction of credentials (R-3.3.1, R-3.3.2, T-2.3.1.1, T-2.3.1.2):
 * by a registration operator (suspend, resume), by a security officer under dual control
 * (destroy), and by the signer from their device (RequestSuspension: a device-key JWS over a
 * one-time SAM challenge bound to the signer and the credential).
 *
 * Choices where the protos leave room (each also said where it is enforced):
 * - The sealed credential body gains `statusBeforeSuspension` and `suspendedAt` while SUSPENDED,
 *   and `usableSince`, the instant of the last suspension or resumption: transactions created up
 *   to it stay unusable after a resumption (credential-usability.ts; no store change needed).
 * - Resumption restores the status from before (ACTIVE or KEY_GENERATED). A credential that was
 *   LOCKED when suspended resumes LOCKED while its signer is still locked out (a suspension never
 *   lifts a lockout), and to its status before the lockout once ResetLockout cleared it.
 * - The signer's request is checked in the order of activation.ts: the challenge named by "chal"
 *   is consumed first (signer.proto: whether or not the request succeeds), then the JWS is verified
 *   with a device key registered to the signer, then its jti is used up; only then are the signer
 *   and the credential read. Refusals are audited as "factor.check_failed" for the DEVICE_KEY
 *   factor with the refusal's reason, as activation does.
 * - Destruction destroys the key pair in the crypto module first and tombstones the record after;
 *   if the module fails, nothing is tombstoned. A key that is already gone from the module (a
 *   destruction whose tombstone write failed) counts as destroyed, so a retry can finish the job.
 * - A write that loses a race with another change of the credential (a lockout, a second request)
 *   is retried on the fresh record a few times, then VERSION_CONFLICT.
 */
import { timingSafeEqual } from "node:crypto";
import canonicalize from "canonicalize";
import { durationMs, type PolicyVersion, type SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { credentialDestroyed, credentialResumed, credentialSuspended, factorCheckFailed, factorVerified, type Actor, type PrivilegedUserActor } from "../audit/events.js";
import type { SigningKeys } from "../crypto/port.js";
import { InkanError, type ReasonCode } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { SamEncryptionKeys } from "../keys/sam-encryption-keys.js";
import type { CredentialRecord, CredentialStatus, OneTimeObjects } from "../store/port.js";
import { challengeBinding } from "./activation.js";
import type { CredentialBody, CredentialView } from "./credentials.js";
import { verifySignerRequest } from "./signer-request.js";
import { requireOperator, type Acting, type SignerBody } from "./signers.js";

/** The JWS "typ" of RequestSuspensionRequest.suspension_request (signer.proto). */
export const suspensionRequestTyp = "inkan-suspension+jwt";
/** The only "action" claim RequestSuspension accepts. */
export const suspendAction = "suspend";

/** The credential body with what this module adds (see the module comment). */
export interface LifecycleBody extends CredentialBody {
  /** While SUSPENDED: the status ResumeCredential returns to. */
  statusBeforeSuspension?: CredentialStatus;
  /** While SUSPENDED: when it was suspended (ISO 8601). */
  suspendedAt?: string;
  /** ISO 8601: the last suspension or resumption; transactions created up to it never sign. */
  usableSince?: string;
  /** When the key pair was destroyed (ISO 8601). */
  destroyedAt?: string;
}

export interface CredentialLifecycleOptions {
  records: VerifiedRecords;
  keys: Pick<SigningKeys, "destroyKeyPair" | "findPublicKey">;
  oneTime: Pick<OneTimeObjects, "consumeChallenge" | "useJti">;
  samKeys: Pick<SamEncryptionKeys, "samId">;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
}

/** The outcome of RequestSuspension. */
export interface SignerSuspension {
  view: CredentialView;
  /** When the credential was suspended (for one that already was: the original instant). */
  suspendedAt: Date;
}

const suspensionClaims = ["sub", "cred", "action", "aud", "chal", "iat", "exp", "jti"];
/** Refusals of RequestSuspension that are audited (infrastructure failures are the log's). */
const audited = new Set<ReasonCode>(["NONCE_REPLAYED", "AUTHENTICATION_FAILED", "CREDENTIAL_NOT_FOUND", "CREDENTIAL_DESTROYED", "SIGNER_INACTIVE"]);
const refused = (cause?: unknown) => new InkanError("AUTHENTICATION_FAILED", "the request could not be verified", { cause });
const replayed = () => new InkanError("NONCE_REPLAYED", "the challenge is unknown, expired or already used");
const notFound = () => new InkanError("CREDENTIAL_NOT_FOUND", "no such credential", { field: "credential_id" });
const destroyed = () => new InkanError("CREDENTIAL_DESTROYED", "the credential was destroyed", { field: "credential_id" });
const bodyOf = (c: CredentialRecord) => JSON.parse(c.body) as LifecycleBody;
const req = (a: { requestId?: string | undefined }) => (a.requestId ? { requestId: a.requestId } : {});
const writeAttempts = 3;

/** Only a security officer destroys keys (R-3.2.1.6; registration.proto DestroyCredential). */
function requireSecurityOfficer(actor: PrivilegedUserActor): void {
  if (actor.kind !== "privileged-user" || actor.role !== "SECURITY_OFFICER") {
    throw new InkanError("ROLE_NOT_PERMITTED", "only a security officer destroys keys");
  }
}

/**
 * The lifecycle of a credential after key generation: suspension (privileged or by the signer),
 * resumption and destruction. Every change is audited; every refusal changes nothing.
 */
export class CredentialLifecycle {
  constructor(private readonly o: CredentialLifecycleOptions) {}

  /**
   * SuspendCredential: the credential can be neither authorized nor used, including by
   * transactions and SAD tokens issued before. CREDENTIAL_SUSPENDED when it already is,
   * CREDENTIAL_DESTROYED when it was destroyed.
   */
  async suspend(input: Acting & { credentialId: string; reason: string }): Promise<CredentialView> {
    requireOperator(input.actor);
    const view = await this.change(input.credentialId, (c) => {
      if (c.status === "DESTROYED") throw destroyed();
      if (c.status === "SUSPENDED") throw new InkanError("CREDENTIAL_SUSPENDED", "the credential is already suspended", { field: "credential_id" });
      return suspended(c, input.reason, input.now);
    });
    await this.o.audit.record(credentialSuspended({ actor: input.actor, signerId: view.credential.signerId, credentialId: view.credential.id, ...req(input) }));
    return view;
  }

  /**
   * ResumeCredential: back to the status from before the suspension. Transactions and SAD tokens
   * from before stay unusable (`usableSince`). CREDENTIAL_DESTROYED when destroyed; INVALID_REQUEST
   * (field "credential_id") when not suspended.
   */
  async resume(input: Acting & { credentialId: string; reason: string }): Promise<CredentialView> {
    requireOperator(input.actor);
    const view = await this.change(input.credentialId, async (c) => {
      if (c.status === "DESTROYED") throw destroyed();
      if (c.status !== "SUSPENDED") throw new InkanError("INVALID_REQUEST", "the credential is not suspended", { field: "credential_id" });
      const { statusBeforeSuspension, suspendedAt: _s, ...rest } = bodyOf(c);
      const at = input.now.toISOString();
      // whatever was issued before this instant stays unusable (credential-usability.ts).
      const body: LifecycleBody = { ...rest, statusReason: input.reason, updatedAt: at, usableSince: at };
      if (statusBeforeSuspension === "LOCKED") {
        // Locked when suspended: stays locked unless ResetLockout cleared the signer's lockout meanwhile
        // (ResetLockout only unlocks credentials that are LOCKED at that moment).
        const signer = await this.o.records.get("signer", c.signerId);
        if (!signer || (JSON.parse(signer.body) as SignerBody).lockedAt !== undefined) return { status: "LOCKED", body };
        const { statusBeforeLock, ...unlocked } = body;
        return { status: statusBeforeLock === "ACTIVE" ? "ACTIVE" : "PENDING", body: unlocked };
      }
      // A certificate imported while suspended (ImportCertificate keeps a suspended credential
      // suspended) makes a KEY_GENERATED one ACTIVE now; an unknown earlier status resumes to
      // KEY_GENERATED, which cannot sign (fail closed).
      const certified = (rest as { certificate?: unknown }).certificate !== undefined;
      return { status: statusBeforeSuspension === "ACTIVE" || (statusBeforeSuspension === "PENDING" && certified) ? "ACTIVE" : "PENDING", body };
    });
    await this.o.audit.record(credentialResumed({ actor: input.actor, signerId: view.credential.signerId, credentialId: view.credential.id, ...req(input) }));
    return view;
  }

  /**
   * DestroyCredential (R-3.3.x): the key pair is destroyed in the crypto module, then the record is
   * tombstoned as DESTROYED, irreversibly; its public key stays on record, so the same key can never
   * be imported again. Dual control is the transport's (the request reaches here once approved).
   * KEY_MISMATCH (field "public_key_fingerprint") when the fingerprint is not the credential's,
   * CREDENTIAL_DESTROYED when already destroyed; nothing changes on either.
   */
  async destroy(input: Acting & { credentialId: string; publicKeyFingerprint: Uint8Array; reason: string; approver?: PrivilegedUserActor | undefined }): Promise<CredentialView> {
    requireSecurityOfficer(input.actor);
    const current = await this.o.records.get("credential", input.credentialId);
    if (!current) throw notFound();
    const fingerprint = Buffer.from(current.publicKeyFingerprint, "hex");
    // The officer (and the approver) named this very key: a wrong one destroys nothing.
    if (fingerprint.length !== input.publicKeyFingerprint.length || !timingSafeEqual(fingerprint, input.publicKeyFingerprint)) {
      throw new InkanError("KEY_MISMATCH", "the fingerprint is not the credential's", { field: "public_key_fingerprint" });
    }
    if (current.status === "DESTROYED") throw destroyed();
    const { keyId } = bodyOf(current);
    await this.destroyKeyPair(keyId); // fail closed: when the module fails, nothing is tombstoned
    const view = await this.change(input.credentialId, (c) => {
      if (c.status === "DESTROYED") throw destroyed(); // a concurrent destruction won
      const { statusBeforeSuspension: _b, suspendedAt: _s, ...rest } = bodyOf(c);
      const at = input.now.toISOString();
      return { status: "DESTROYED", body: { ...rest, statusReason: input.reason, updatedAt: at, usableSince: at, destroyedAt: at } };
    });
    await this.o.audit.record(credentialDestroyed({
      requester: input.actor,
      ...(input.approver ? { approver: input.approver } : {}),
      signerId: view.credential.signerId,
      credentialId: view.credential.id,
      keyId,
      ...req(input),
    }));
    return view;
  }

  /**
   * RequestSuspension (R-3.3.1, R-3.3.2, T-2.3.1.1, T-2.3.1.2): the signer's own request, a JWS by a
   * device key registered to `signerId` over a one-time SUSPENSION challenge for this signer and
   * credential, with exactly the claims of signer.proto. A replayed, altered or foreign request
   * fails and changes nothing (except that its challenge is used up). Suspending a suspended
   * credential succeeds and changes nothing. Every outcome is audited.
   */
  async requestSuspension(input: { signerId: string; credentialId: string; suspensionRequest: string; requestId?: string | undefined; now: Date }): Promise<SignerSuspension> {
    try {
      return await this.requestSuspensionChecked(input);
    } catch (err) {
      if (err instanceof InkanError && audited.has(err.code)) {
        await this.o.audit.record(factorCheckFailed({
          actor: { kind: "signer", signerId: input.signerId }, signerId: input.signerId, credentialId: input.credentialId,
          factor: "DEVICE_KEY", failedAttempts: 0, reason: err.code, ...req(input),
        }));
      }
      throw err;
    }
  }

  private async requestSuspensionChecked(input: Parameters<CredentialLifecycle["requestSuspension"]>[0]): Promise<SignerSuspension> {
    const { signerId, credentialId, now } = input;
    const policy = await this.o.policies.current();
    // T-2.3.1.1, T-2.3.1.2: the challenge works once, only for this signer and credential;
    // signed by this signer's own device key; "cred" and "action" exactly the request's; jti once.
    await verifySignerRequest(this.o, {
      jws: input.suspensionRequest,
      signerId,
      binding: challengeBinding("SUSPENSION", signerId, credentialId),
      typ: suspensionRequestTyp,
      claims: suspensionClaims,
      expect: { sub: signerId, cred: credentialId, action: suspendAction, aud: await this.o.samKeys.samId() },
      now,
      skewMs: msOf(policy, "maxClockSkew", 60_000),
      maxLifetimeMs: msOf(policy, "maxSadLifetime", 300_000),
      refused,
      replayed,
    });

    const actor: Actor = { kind: "signer", signerId };
    const signer = await this.o.records.get("signer", signerId);
    if (!signer || signer.status !== "ACTIVE") throw new InkanError("SIGNER_INACTIVE", "the signer is not active");
    await this.o.audit.record(factorVerified({ actor, signerId, credentialId, factor: "DEVICE_KEY", ...req(input) }));
    let changed = false;
    const view = await this.change(credentialId, (c) => {
      if (c.signerId !== signerId) throw notFound(); // another signer's credential is reported as unknown
      if (c.status === "DESTROYED") throw destroyed();
      changed = c.status !== "SUSPENDED";
      return changed ? suspended(c, "requested by the signer", now) : undefined; // already suspended: succeeds, changes nothing
    });
    if (changed) await this.o.audit.record(credentialSuspended({ actor, signerId, credentialId, ...req(input) }));
    const at = bodyOf(view.credential).suspendedAt;
    return { view, suspendedAt: at ? new Date(at) : now };
  }

  /** Destroys the key pair in the module; a key already gone counts as destroyed (see the module comment). */
  private async destroyKeyPair(keyId: string): Promise<void> {
    try {
      await this.o.keys.destroyKeyPair(keyId);
    } catch (err) {
      if (!(err instanceof InkanError && err.code === "CREDENTIAL_NOT_FOUND")) throw err;
      if ((await this.o.keys.findPublicKey(keyId)) !== undefined) {
        throw new InkanError("CRYPTO_MODULE_FAILURE", "the key pair could not be destroyed", { cause: err });
      }
    }
  }

  /**
   * Reads the credential and writes `next(record)` as its new version; re-reads and retries when
   * another change won the race. `next` throws to refuse, or returns undefined to change nothing.
   */
  private async change(credentialId: string, next: (c: CredentialRecord) => Transition | undefined | Promise<Transition | undefined>): Promise<CredentialView> {
    for (let attempt = 0; attempt < writeAttempts; attempt++) {
      const c = await this.o.records.get("credential", credentialId);
      if (!c) throw notFound();
      const to = await next(c);
      if (!to) return { credential: c, body: bodyOf(c) };
      const updated = await this.o.records.update<CredentialRecord>({ ...c, version: c.version + 1, status: to.status, body: canonicalize(to.body)! }, c.version);
      if (updated) return { credential: updated, body: to.body };
    }
    throw new InkanError("VERSION_CONFLICT", "the credential changed meanwhile; retry");
  }
}

/** A credential's next status and sealed body. */
interface Transition {
  status: CredentialStatus;
  body: LifecycleBody;
}

/** The SUSPENDED version of `c`, remembering its status and the instant. */
function suspended(c: CredentialRecord, reason: string, now: Date): Transition {
  const at = now.toISOString();
  return { status: "SUSPENDED", body: { ...bodyOf(c), statusBeforeSuspension: c.status, suspendedAt: at, usableSince: at, statusReason: reason, updatedAt: at } };
}

function msOf(policy: PolicyVersion, field: string, fallback: number): number {
  const v = policy.policy[field];
  return v === undefined ? fallback : durationMs(v, field);
}
