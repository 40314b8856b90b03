import canonicalize from "canonicalize";
import type { SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { activationCodeIssued, signerDisabled, signerEnrolled, signerResumed, type PrivilegedUserActor } from "../audit/events.js";
import type { RandomSource } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import { IntegrityViolationError } from "../integrity/record-sealer.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { FactorRecord, OneTimeObjects, SignerRecord, SignerStatus } from "../store/port.js";
import { activationCodeHalfHash, activationCodeHash, activationCodePairHash, newActivationCode } from "./activation-code.js";
import { newRecordId, pageToken, readPageToken } from "./ids.js";

export type SignerKind = "NATURAL_PERSON" | "LEGAL_PERSON";
export type ProofingMethod = "IN_PERSON" | "REMOTE" | "ELECTRONIC_ID" | "CERTIFICATE" | "OTHER";

/** Identity attributes verified by the registration authority outside the SAM; "" means none. */
export interface SignerIdentity {
  kind: SignerKind;
  legalName: string;
  displayName: string;
  email: string;
  phoneNumber: string;
  organization: string;
  country: string;
  /** The RSSP's reference, unique among signers when set. */
  externalId: string;
}

/** How the identity was verified (T-2.1.1.4); the evidence stays with the registration authority. */
export interface IdentityProofing {
  method: ProofingMethod;
  evidenceReference: string;
  /** ISO 8601. */
  proofedAt: string;
}

/** The outstanding activation code of a signer: never the code, only what finds and describes it. */
export interface PendingActivationCode {
  /** The store id of the code (OneTimeObjects.attemptActivationCode): activation looks it up here. */
  id: string;
  issuedAt: string;
  expiresAt: string;
  maxAttempts: number;
  /** Issued in two halves (split knowledge): only the pair activates. */
  split?: true;
}

/** The sealed body of a signer record (R-3.1.1.1). */
export interface SignerBody {
  identity: SignerIdentity;
  proofing: IdentityProofing;
  createdAt: string;
  createdBy: string;
  updatedAt: string;
  /** The reason of the last DisableSigner, EnableSigner or ResetFactors; "" if none. */
  statusReason: string;
  /** Set by IssueActivationCode, removed when the code is voided (or used, by activation). */
  activationCode?: PendingActivationCode;
  /** Consecutive failed factor checks (written by factor verification). */
  failedAttempts?: number;
  /** When the signer was locked out (ISO 8601). */
  lockedAt?: string;
  /** Issue 19: the signer group given at enrollment, which SCA scopes name; absent: none. */
  group?: string;
}

/** A device key factor's body as the summary reads it (written by activation). */
export interface DeviceKeyFactorBody {
  /** The public JWK, JSON. */
  jwk?: string;
  /** JWS algorithm name, e.g. "ES256". */
  algorithm?: string;
  registeredAt?: string;
  revokedAt?: string;
}

/** A signer's factors without any secret (T-2.2.2.3): no PIN hash, no TOTP secret, public keys only. */
export interface FactorSummary {
  pinSet: boolean;
  totpEnrolled: boolean;
  devices: Array<{ deviceKeyId: string; publicKeyJwk: string; algorithm: string; registeredAt?: string; revokedAt?: string }>;
  failedAttempts: number;
  lockedAt?: string;
  /** The outstanding, unexpired activation code, if any (never the code itself). */
  activationCode?: PendingActivationCode;
}

export interface SignerView {
  signer: SignerRecord;
  body: SignerBody;
  factors: FactorSummary;
}

/** Who acts, for the record and the audit log; `now` is the request's time. */
export interface Acting {
  actor: PrivilegedUserActor;
  requestId?: string | undefined;
  now: Date;
}

export interface SignersOptions {
  records: VerifiedRecords;
  oneTime: OneTimeObjects;
  random: RandomSource;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
}

export interface IssuedActivationCode {
  /** The code (or the approver's half): returned once, never stored (only a hash is). */
  code: string;
  expiresAt: Date;
  maxAttempts: number;
  /** WHOLE, or the approver's half of a split code (the requester got the other half when asking). */
  part: "WHOLE" | "APPROVER_HALF";
}

/**
 * The second privileged user's approval of a held ResetFactors or IssueActivationCode, as dual
 * control performs it: who approved, and the hash of the half the requester was given.
 */
export interface RebindingApproval {
  approver: PrivilegedUserActor;
  requesterHalfHash: string;
}

/** Who may approve re-binding a signer (T-2.2.2.1): a second registration operator or a security officer. */
export const rebindingApproverRoles: readonly PrivilegedUserActor["role"][] = ["REGISTRATION_OPERATOR", "SECURITY_OFFICER"];

const bodyOf = (s: SignerRecord) => JSON.parse(s.body) as SignerBody;
/** registration.proto EnrollSignerRequest.group (checked by protovalidate too). */
const signerGroupPattern = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** A signer's group ("" for none), which SCA scopes name (issue 19). */
export function signerGroupOf(s: SignerRecord): string {
  return bodyOf(s).group ?? "";
}
const scanPage = 1000;

/** T-2.2.2.1: the approver of a re-binding is a second privileged user of an allowed role, never the requester. */
export function requireSecondApprover(requester: PrivilegedUserActor, approval: RebindingApproval): void {
  if (approval.approver.userId === requester.userId) throw new InkanError("APPROVAL_REJECTED", "the requester cannot approve their own request");
  if (!rebindingApproverRoles.includes(approval.approver.role)) throw new InkanError("ROLE_NOT_PERMITTED", "only a registration operator or a security officer approves this request");
}

/** R-3.1.1.1, T-2.1.1.4: only a registration operator enrolls or changes a signer; never the signer itself. */
export function requireOperator(actor: PrivilegedUserActor): void {
  if (actor.kind !== "privileged-user" || actor.role !== "REGISTRATION_OPERATOR") {
    throw new InkanError("ROLE_NOT_PERMITTED", "only a registration operator manages signers");
  }
}

/**
 * Signers (R-3.1.1.1, T-2.1.1.1, T-2.1.1.3, T-2.1.1.4): enrolled by a registration operator after
 * identity proofing outside the SAM, kept as sealed records, and given one-time activation codes
 * of which the store keeps only a hash. Every change is audited with the operator's identity.
 */
export class Signers {
  constructor(private readonly o: SignersOptions) {}

  /** Enrolls a signer in PENDING_ACTIVATION, with no factors. */
  async enroll(input: Acting & { identity: SignerIdentity; proofing: IdentityProofing; group?: string | undefined }): Promise<SignerView> {
    requireOperator(input.actor); // T-2.1.1.4: nobody enrolls themselves
    checkIdentity(input.identity, input.proofing, input.now);
    if (input.group && !signerGroupPattern.test(input.group)) throw new InkanError("INVALID_REQUEST", "not a signer group name", { field: "group" });
    await this.assertExternalIdFree(input.identity.externalId, undefined);
    const at = input.now.toISOString();
    const body: SignerBody = {
      identity: input.identity,
      proofing: input.proofing,
      createdAt: at,
      createdBy: input.actor.userId,
      updatedAt: at,
      statusReason: "",
      ...(input.group ? { group: input.group } : {}),
    };
    const id = await newRecordId("sgn", this.o.random, input.now);
    const signer = await this.o.records.create<SignerRecord>({ kind: "signer", id, version: 1, status: "PENDING_ACTIVATION", body: canonicalize(body)! }); // sealed (R-3.1.1.1)
    await this.o.audit.record(signerEnrolled({ actor: input.actor, signerId: id, signerGroup: input.group, ...req(input) }));
    return this.view(signer, input.now);
  }

  /** A signer with its factor summary, or SIGNER_NOT_FOUND. */
  async get(signerId: string, now: Date): Promise<SignerView> {
    return this.view(await this.record(signerId), now);
  }

  /** One page of signers, oldest first, filtered by status, external id and e-mail (case-insensitive). */
  async list(query: { status?: SignerStatus; externalId?: string; email?: string; pageToken?: string; limit: number; now: Date }): Promise<{ signers: SignerView[]; nextPageToken: string }> {
    const filters = { status: query.status, externalId: query.externalId, email: query.email?.toLowerCase() };
    let after = readPageToken(query.pageToken, filters);
    const matches = (s: SignerRecord) => {
      const { identity } = bodyOf(s);
      return (!filters.externalId || identity.externalId === filters.externalId) && (!filters.email || identity.email.toLowerCase() === filters.email);
    };
    const found: SignerRecord[] = [];
    let next: string | undefined;
    for (;;) {
      const page = await this.o.records.list({ kind: "signer", where: filters.status ? { status: filters.status } : {}, after, limit: Math.max(query.limit, filters.externalId || filters.email ? scanPage : 1) });
      for (const [i, s] of page.items.entries()) {
        if (!matches(s)) continue;
        found.push(s);
        if (found.length === query.limit) {
          next = i < page.items.length - 1 || page.next ? s.id : undefined;
          break;
        }
      }
      if (found.length === query.limit || !page.next) break;
      after = page.next;
    }
    return { signers: await Promise.all(found.map((s) => this.view(s, query.now))), nextPageToken: pageToken(next, filters) };
  }

  /** Replaces identity and proofing if the signer is still at `expectedVersion` (compare-and-set). */
  async update(input: Acting & { signerId: string; expectedVersion: number; identity: SignerIdentity; proofing: IdentityProofing }): Promise<SignerView> {
    requireOperator(input.actor);
    checkIdentity(input.identity, input.proofing, input.now);
    const signer = await this.record(input.signerId);
    if (signer.version !== input.expectedVersion) throw conflict();
    await this.assertExternalIdFree(input.identity.externalId, signer.id);
    const body: SignerBody = { ...bodyOf(signer), identity: input.identity, proofing: input.proofing, updatedAt: input.now.toISOString() };
    return this.view(await this.replace(signer, signer.status, body), input.now);
  }

  /**
   * Disables a signer: its unused activation codes are voided first, so none can activate it.
   * Factors and credentials are kept. SIGNER_INACTIVE when already disabled.
   */
  async disable(input: Acting & { signerId: string; reason: string }): Promise<SignerView> {
    requireOperator(input.actor);
    const signer = await this.record(input.signerId);
    if (signer.status === "DISABLED") throw new InkanError("SIGNER_INACTIVE", "the signer is already disabled", { field: "signer_id" });
    await this.o.oneTime.revokeActivationCodes({ signerId: signer.id, now: input.now }); // before anything else: no code activates it
    const { activationCode: _voided, ...rest } = bodyOf(signer);
    const updated = await this.replace(signer, "DISABLED", { ...rest, statusReason: input.reason, updatedAt: input.now.toISOString() });
    await this.o.audit.record(signerDisabled({ actor: input.actor, signerId: signer.id, ...req(input) }));
    return this.view(updated, input.now);
  }

  /** Undoes disable(): ACTIVE when the signer has factors, PENDING_ACTIVATION otherwise. */
  async enable(input: Acting & { signerId: string; reason: string }): Promise<SignerView> {
    requireOperator(input.actor);
    const signer = await this.record(input.signerId);
    if (signer.status !== "DISABLED") throw new InkanError("STATE_CONFLICT", "the signer is not disabled", { field: "signer_id" });
    const active = (await this.factorsOf(signer.id)).some((f) => f.status === "ACTIVE");
    const updated = await this.replace(signer, active ? "ACTIVE" : "PENDING_ACTIVATION", { ...bodyOf(signer), statusReason: input.reason, updatedAt: input.now.toISOString() });
    await this.o.audit.record(signerResumed({ actor: input.actor, signerId: signer.id, ...req(input) }));
    return this.view(updated, input.now);
  }

  /**
   * Issues the signer's one-time activation code (T-2.1.1.1, T-2.1.1.3): 125 bits from the module's
   * RNG, valid for the policy's lifetime and number of attempts, stored only as a hash, returned
   * here once. Earlier unused codes are voided. For a signer who holds a credential (while the
   * policy's signerRebinding switch is on) only with a second privileged user's `approval`, and
   * then in two halves: the approver's half is drawn here and returned, the stored hash is over
   * the pair, and the requester's half is known to the SAM only by its hash (T-2.2.2.1, T-2.2.2.3).
   */
  async issueActivationCode(input: Acting & { signerId: string; approval?: RebindingApproval | undefined }): Promise<IssuedActivationCode> {
    requireOperator(input.actor);
    const signer = await this.record(input.signerId);
    if (signer.status === "DISABLED" || signer.status === "SUSPENDED") throw new InkanError("SIGNER_INACTIVE", "the signer is disabled", { field: "signer_id" });
    if (signer.status === "ACTIVE") throw new InkanError("STATE_CONFLICT", "the signer is already active; reset its factors to re-bind it", { field: "signer_id" });
    const { approval } = input;
    if (approval) requireSecondApprover(input.actor, approval);
    else await this.assertOneOperatorMayBind(signer.id); // T-2.2.2.1: never a whole code to one operator for a signer with a key
    const policy = await this.o.policies.current();
    const maxAttempts = policy.activationCodeMaxAttempts;
    const expiresAt = new Date(input.now.getTime() + policy.activationCodeLifetimeMs);
    if (maxAttempts < 1 || !(expiresAt > input.now)) throw new InkanError("INTEGRITY_VIOLATION", "the security policy allows no activation code");
    const id = await newRecordId("act", this.o.random, input.now);
    const code = await newActivationCode(this.o.random); // R-3.2.2.2: the module's RNG (the whole code, or the approver's half)
    // T-2.2.2.3 split knowledge: with an approval only the pair of halves matches the stored hash.
    const codeHash = approval ? activationCodePairHash(approval.requesterHalfHash, activationCodeHalfHash(code)) : activationCodeHash(code);
    const pending: PendingActivationCode = { id, issuedAt: input.now.toISOString(), expiresAt: expiresAt.toISOString(), maxAttempts, ...(approval ? { split: true as const } : {}) };
    // The signer record names the one live code (compare-and-set: of two concurrent issues one wins),
    // then earlier codes are voided and the new one stored, as a hash only (T-2.1.1.3).
    await this.replace(signer, signer.status, { ...bodyOf(signer), activationCode: pending, updatedAt: input.now.toISOString() });
    await this.o.oneTime.revokeActivationCodes({ signerId: signer.id, now: input.now });
    await this.o.oneTime.issueActivationCode({ id, signerId: signer.id, codeHash, attemptsLeft: maxAttempts, createdAt: input.now, expiresAt });
    try {
      await this.o.audit.record(activationCodeIssued({ actor: input.actor, signerId: signer.id, expiresAt, ...(approval ? { approver: approval.approver } : {}), ...req(input) }));
    } catch (err) {
      // Fail closed: a code whose issue is not on record must not work.
      await this.o.oneTime.revokeActivationCodes({ signerId: signer.id, now: input.now }).catch(() => undefined);
      throw err;
    }
    return { code, expiresAt, maxAttempts, part: approval ? "APPROVER_HALF" : "WHOLE" };
  }

  /**
   * Whether a ResetFactors or IssueActivationCode for this signer is to be held for a second
   * privileged user (T-2.2.2.1): the signer holds a credential and the policy's signerRebinding
   * switch is on. False when the request is refused anyway (no such signer, disabled, or an
   * IssueActivationCode for an ACTIVE signer), so nobody is asked to approve it. A policy that
   * fails its integrity check holds the request (a tampered switch never lets one operator act).
   */
  async rebindingHeld(signerId: string, operation: "reset" | "issue"): Promise<boolean> {
    const signer = await this.o.records.get("signer", signerId);
    if (!signer || signer.status === "DISABLED" || signer.status === "SUSPENDED" || (operation === "issue" && signer.status === "ACTIVE")) return false;
    return this.rebindingNeedsApproval(signer.id);
  }

  /** APPROVAL_REQUIRED unless one registration operator may bind new factors to the signer (see {@link rebindingHeld}). */
  async assertOneOperatorMayBind(signerId: string): Promise<void> {
    if (await this.rebindingNeedsApproval(signerId)) {
      throw new InkanError("APPROVAL_REQUIRED", "a second registration operator or a security officer must approve this request");
    }
  }

  private async rebindingNeedsApproval(signerId: string): Promise<boolean> {
    try {
      if (!(await this.o.policies.current()).requiresDualControl("signerRebinding")) return false;
    } catch (err) {
      if (!(err instanceof IntegrityViolationError)) throw err;
    }
    return this.holdsCredential(signerId);
  }

  /** Whether the signer has a credential that is not destroyed (its key could still sign). */
  private async holdsCredential(signerId: string): Promise<boolean> {
    let after: string | undefined;
    do {
      const page = await this.o.records.list({ kind: "credential", where: { signerId }, after, limit: 100 });
      if (page.items.some((c) => c.status !== "DESTROYED")) return true;
      after = page.next;
    } while (after);
    return false;
  }

  /** The signer record, or SIGNER_NOT_FOUND. */
  async record(signerId: string): Promise<SignerRecord> {
    const signer = await this.o.records.get("signer", signerId);
    if (!signer) throw new InkanError("SIGNER_NOT_FOUND", "no such signer", { field: "signer_id" });
    return signer;
  }

  /** Stores the next version of `signer` (compare-and-set); VERSION_CONFLICT when it moved. */
  async replace(signer: SignerRecord, status: SignerStatus, body: SignerBody): Promise<SignerRecord> {
    const updated = await this.o.records.update<SignerRecord>({ kind: "signer", id: signer.id, version: signer.version + 1, status, body: canonicalize(body)! }, signer.version);
    if (!updated) throw conflict();
    return updated;
  }

  private async view(signer: SignerRecord, now: Date): Promise<SignerView> {
    const body = bodyOf(signer);
    const factors = await this.factorsOf(signer.id);
    const live = (t: FactorRecord["type"]) => factors.some((f) => f.type === t && f.status === "ACTIVE");
    const code = body.activationCode;
    return {
      signer,
      body,
      factors: {
        pinSet: live("PIN"),
        totpEnrolled: live("TOTP"),
        // T-2.2.2.3: public parts only; a PIN or TOTP factor contributes a flag, never its body.
        devices: factors.filter((f) => f.type === "DEVICE_KEY").map((f) => {
          const d = JSON.parse(f.body) as DeviceKeyFactorBody;
          return {
            deviceKeyId: f.id,
            publicKeyJwk: d.jwk ?? "",
            algorithm: d.algorithm ?? "",
            ...(d.registeredAt ? { registeredAt: d.registeredAt } : {}),
            ...(d.revokedAt ? { revokedAt: d.revokedAt } : f.status === "REVOKED" ? { revokedAt: body.updatedAt } : {}),
          };
        }),
        failedAttempts: body.failedAttempts ?? 0,
        ...(body.lockedAt ? { lockedAt: body.lockedAt } : {}),
        ...(code && new Date(code.expiresAt) > now && signer.status === "PENDING_ACTIVATION" ? { activationCode: code } : {}),
      },
    };
  }

  private async factorsOf(signerId: string): Promise<FactorRecord[]> {
    const out: FactorRecord[] = [];
    let after: string | undefined;
    do {
      const page = await this.o.records.list({ kind: "factor", where: { signerId }, after, limit: 100 });
      out.push(...page.items);
      after = page.next;
    } while (after);
    return out;
  }

  /**
   * ALREADY_EXISTS when another signer has this external id. The store has no unique index on it,
   * so this is a scan: it refuses every duplicate made one after the other, not two concurrent ones.
   */
  private async assertExternalIdFree(externalId: string, self: string | undefined): Promise<void> {
    if (!externalId) return;
    let after: string | undefined;
    do {
      const page = await this.o.records.list({ kind: "signer", where: {}, after, limit: scanPage });
      if (page.items.some((s) => s.id !== self && bodyOf(s).identity.externalId === externalId)) {
        throw new InkanError("ALREADY_EXISTS", "another signer has this external_id", { field: "identity.external_id" });
      }
      after = page.next;
    } while (after);
  }
}

const conflict = () => new InkanError("VERSION_CONFLICT", "the signer changed meanwhile; read it again", { field: "expected_version" });
const req = (a: Acting) => (a.requestId ? { requestId: a.requestId } : {});

const kinds: readonly string[] = ["NATURAL_PERSON", "LEGAL_PERSON"];
const methods: readonly string[] = ["IN_PERSON", "REMOTE", "ELECTRONIC_ID", "CERTIFICATE", "OTHER"];

/** The domain's own check of what the transport validated: a signer always has a name and a proofing record. */
function checkIdentity(identity: SignerIdentity, proofing: IdentityProofing, now: Date): void {
  if (!kinds.includes(identity.kind)) throw new InkanError("INVALID_REQUEST", "identity.kind is required", { field: "identity.kind" });
  if (!identity.legalName) throw new InkanError("INVALID_REQUEST", "identity.legal_name is required", { field: "identity.legal_name" });
  if (!identity.displayName) throw new InkanError("INVALID_REQUEST", "identity.display_name is required", { field: "identity.display_name" });
  if (!methods.includes(proofing.method)) throw new InkanError("INVALID_REQUEST", "proofing.method is required", { field: "proofing.method" });
  if (proofing.method === "OTHER" && !proofing.evidenceReference) {
    throw new InkanError("INVALID_REQUEST", "evidence_reference must describe the method", { field: "proofing.evidence_reference" });
  }
  const proofedAt = new Date(proofing.proofedAt);
  if (Number.isNaN(proofedAt.getTime()) || proofedAt > now) throw new InkanError("INVALID_REQUEST", "proofing.proofed_at must be in the past", { field: "proofing.proofed_at" });
}
