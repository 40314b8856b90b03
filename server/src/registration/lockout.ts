/**
 * The signer's lockout (T-2.1.2.2, T-2.2.1.3, R-3.1.2.2): every check of a factor the signer holds
 * a secret for (the PIN, and the TOTP code beside it) runs inside {@link withFactorAttempt}, which
 * keeps the number of checks between a success (or a lockout reset) and the lock at most the
 * policy's lockout_threshold, however many requests arrive at once on however many SAM nodes.
 *
 * Why it holds: an attempt is reserved in the store BEFORE the check (one atomic insert-and-count,
 * store/port.ts AttemptReservations) and the settled failure count is read from the sealed signer
 * record AFTER reserving; the check runs only while settled failures + reservations held stay
 * within the threshold. A failed check is persisted (compare-and-set, retried until it lands)
 * BEFORE its reservation is released, a success resets the count and then releases. So when the
 * k-th check since the last reset reserves, every earlier one is counted either as settled or as
 * still reserved: k <= threshold. A reservation left behind by a crash (its lease expired) keeps
 * counting until a success or ResetLockout clears it (fail closed).
 *
 * Refusals without a check (not counted, nothing tested): the signer is locked (CREDENTIAL_LOCKED),
 * or the budget is taken by checks still in flight (LIMIT_EXCEEDED: retry once they end). Every
 * refusal after a check reads the caller's AUTHENTICATION_FAILED: a lost compare-and-set is retried,
 * never answered, so no other answer tells a wrong guess apart.
 *
 * The same reservations keep a transaction's max_authorize_attempts (sap/authorize.ts) and the
 * refused key-import consents of an operator (key-import.ts) within their budgets.
 */
import { randomUUID } from "node:crypto";
import canonicalize from "canonicalize";
import type { SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { credentialLocked, factorCheckFailed, type Actor } from "../audit/events.js";
import { InkanError } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { AttemptReservations, CredentialRecord, FactorType } from "../store/port.js";
import type { CredentialBody } from "./credentials.js";
import type { Signers, SignerBody } from "./signers.js";

/**
 * The lease of a reservation: far longer than any check (a PIN check is one scrypt, well under a
 * second), so only a reservation whose node died mid-check outlives it.
 */
export const attemptLeaseMs = 60_000;

/** The reservation subject of a signer's factor checks. */
export const signerAttempts = (signerId: string) => `signer:${signerId}`;
/** The reservation subject of a transaction's Authorize attempts (sam.proto Limits.max_authorize_attempts). */
export const transactionAttempts = (transactionId: string) => `txn:${transactionId}`;

/** How often a lost compare-and-set of the signer record is retried before the store counts as failed. */
const maxWriteRetries = 100;

/** One attempt held in the store; released once its outcome is persisted. */
export interface HeldAttempt {
  /** Reservations the subject held when this one was taken, this one included. */
  held: number;
  /** Gives the attempt back (its outcome is persisted, or no check ran). */
  release(): Promise<void>;
}

/** Reserves one attempt of `subject` (store/port.ts AttemptReservations), leased for `leaseMs`. */
export async function reserveAttempt(attempts: AttemptReservations, subject: string, now: Date, leaseMs = attemptLeaseMs): Promise<HeldAttempt> {
  const id = randomUUID();
  const held = await attempts.reserveAttempt({ subject, id, now, expiresAt: new Date(now.getTime() + leaseMs) });
  return { held, release: async () => void (await attempts.releaseAttempt({ subject, id })) };
}

export interface LockoutDeps {
  records: VerifiedRecords;
  signers: Pick<Signers, "record" | "replace">;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
  attempts: AttemptReservations;
}

/** What a factor check found: ok, or which factor failed (PIN first when both did) and why, for the log. */
export type FactorCheck = { ok: true } | { ok: false; factor: FactorType; cause?: unknown };

export interface FactorAttempt {
  signerId: string;
  /** Who is being checked (the signer), for the audit record. */
  actor: Actor;
  credentialId?: string | undefined;
  transactionId?: string | undefined;
  requestId?: string | undefined;
  now: Date;
}

/** The answer to a request refused without a check because the signer is locked. */
export const signerLocked = () => new InkanError("CREDENTIAL_LOCKED", "too many failed attempts; a registration operator must reset the lockout");

/**
 * Runs `check` (one factor check of the signer) under the signer's attempt budget, in the order of
 * the module comment. Returns when the check passed (the failure count reset, the reservation
 * released). Throws CREDENTIAL_LOCKED or LIMIT_EXCEEDED without running `check`; `refused(cause)`
 * (the caller's AUTHENTICATION_FAILED) when it failed, after the failure was persisted and audited
 * (and the lock set at the threshold). Errors of the check itself (store, module) pass unchanged.
 *
 * @example
 * await withFactorAttempt(deps, { signerId, actor, now }, async () =>
 *   (await verifyPin(crypto, pin, body)) ? { ok: true } : { ok: false, factor: "PIN" }, refused);
 */
export async function withFactorAttempt(d: LockoutDeps, a: FactorAttempt, check: () => Promise<FactorCheck>, refused: (cause?: unknown) => Error): Promise<void> {
  const threshold = (await d.policies.current()).lockoutThreshold;
  // T-2.1.2.2: reserved before anything is read or checked; the settled count is read after it.
  const attempt = await reserveAttempt(d.attempts, signerAttempts(a.signerId), a.now);
  let outcome: FactorCheck;
  try {
    const body = JSON.parse((await d.signers.record(a.signerId)).body) as SignerBody;
    if (body.lockedAt !== undefined) throw signerLocked();
    const settled = body.failedAttempts ?? 0;
    if (settled + attempt.held > threshold) {
      if (settled >= threshold) throw signerLocked();
      throw new InkanError("LIMIT_EXCEEDED", "too many factor checks of this signer are in progress; retry once they end");
    }
    outcome = await check();
  } catch (err) {
    await attempt.release(); // no check ran (or it could not finish): nothing to count
    throw err;
  }
  if (!outcome.ok) {
    try {
      // A failure is persisted before its reservation goes; if that fails the reservation stays
      // and counts as a used attempt until the next success or reset (fail closed).
      await recordFailure(d, a, outcome.factor, threshold);
    } catch (err) {
      throw refused(err); // the same answer as any wrong factor; the cause is for the log only
    }
    await attempt.release().catch(() => undefined); // left behind, it only counts once more (fail closed)
    throw refused(outcome.cause);
  }
  await recordFactorSuccess(d, { signerId: a.signerId, now: a.now }, () => attempt.release());
}

/**
 * A success ends the run of failures: the count is removed from the sealed signer record (retried
 * until it lands) and reservations left behind by crashed checks are cleared. Also called for a
 * verified login assertion, which is not a factor check under the budget. `release`: the check's
 * own reservation, always given back: in the same store write batch as the expired ones (issue 20:
 * one commit, not two), both waited for and the first failure thrown; or at once if the signer
 * record could not be updated.
 */
export async function recordFactorSuccess(d: Pick<LockoutDeps, "signers" | "attempts">, input: { signerId: string; now: Date }, release?: () => Promise<void>): Promise<void> {
  try {
    await updateSigner(d, input.signerId, (body) => {
      if (body.lockedAt !== undefined) throw signerLocked(); // only when the policy's threshold was lowered mid-check
      if (body.failedAttempts === undefined) return undefined;
      const { failedAttempts: _f, ...rest } = body;
      return { ...rest, updatedAt: input.now.toISOString() };
    });
  } catch (err) {
    await release?.(); // the check's reservation goes whatever happened
    throw err;
  }
  const cleared = d.attempts.releaseExpiredAttempts({ subject: signerAttempts(input.signerId), now: input.now });
  const outcomes = await Promise.allSettled([cleared, release?.()]);
  const failed = outcomes.find((o) => o.status === "rejected");
  if (failed) throw failed.reason;
}

/**
 * Counts one failed check (T-2.1.2.2): failedAttempts + 1 on the sealed signer record, audited; at
 * the threshold the signer gets lockedAt and each of its ACTIVE or PENDING credentials becomes
 * LOCKED (remembering its status for ResetLockout), each lock audited.
 */
async function recordFailure(d: LockoutDeps, a: FactorAttempt, factor: FactorType, threshold: number): Promise<void> {
  const at = a.now.toISOString();
  let failedAttempts = 0;
  let newlyLocked = false;
  await updateSigner(d, a.signerId, (body) => {
    failedAttempts = (body.failedAttempts ?? 0) + 1;
    newlyLocked = body.lockedAt === undefined && threshold > 0 && failedAttempts >= threshold;
    return { ...body, failedAttempts, ...(newlyLocked ? { lockedAt: at } : {}), updatedAt: at };
  });
  const req = a.requestId ? { requestId: a.requestId } : {};
  const about = { ...(a.credentialId ? { credentialId: a.credentialId } : {}), ...(a.transactionId ? { transactionId: a.transactionId } : {}) };
  await d.audit.record(factorCheckFailed({ actor: a.actor, signerId: a.signerId, factor, failedAttempts, ...about, ...req }));
  if (!newlyLocked) return;
  for (const status of ["ACTIVE", "PENDING"] as const) {
    for (const c of await credentialsOf(d.records, a.signerId, status)) {
      if (await lockCredential(d.records, c, status, at)) {
        await d.audit.record(credentialLocked({ signerId: a.signerId, credentialId: c.id, failedAttempts, threshold, ...req }));
      }
    }
  }
}

/**
 * Read-modify-write of the sealed signer record, retried while another writer wins the
 * compare-and-set: the caller never sees VERSION_CONFLICT (it would tell a wrong guess apart).
 * `change` returns the new body, or undefined for no write.
 */
async function updateSigner(d: Pick<LockoutDeps, "signers">, signerId: string, change: (body: SignerBody) => SignerBody | undefined): Promise<void> {
  for (let i = 0; i < maxWriteRetries; i++) {
    const signer = await d.signers.record(signerId);
    const body = change(JSON.parse(signer.body) as SignerBody);
    if (body === undefined) return;
    try {
      await d.signers.replace(signer, signer.status, body);
      return;
    } catch (err) {
      if (!(err instanceof InkanError && err.code === "VERSION_CONFLICT")) throw err;
    }
  }
  throw new InkanError("STORE_FAILURE", "the signer record kept changing; the outcome was not recorded");
}

/** Moves one credential to LOCKED (compare-and-set, re-read while it loses); false when it left `status` meanwhile. */
async function lockCredential(records: VerifiedRecords, credential: CredentialRecord, status: "ACTIVE" | "PENDING", at: string): Promise<boolean> {
  let c: CredentialRecord | undefined = credential;
  for (let i = 0; i < maxWriteRetries && c?.status === status; i++) {
    const body: CredentialBody = { ...(JSON.parse(c.body) as CredentialBody), statusBeforeLock: status, updatedAt: at };
    if (await records.update<CredentialRecord>({ ...c, version: c.version + 1, status: "LOCKED", body: canonicalize(body)! }, c.version)) return true;
    c = await records.get("credential", c.id);
  }
  if (c?.status === status) throw new InkanError("STORE_FAILURE", "the credential kept changing; it was not locked");
  return false; // suspended, destroyed or locked meanwhile: the signer's lockedAt refuses it anyway
}

async function credentialsOf(records: VerifiedRecords, signerId: string, status: "ACTIVE" | "PENDING"): Promise<CredentialRecord[]> {
  const found: CredentialRecord[] = [];
  let after: string | undefined;
  do {
    const page = await records.list({ kind: "credential", where: { signerId, status }, after, limit: 100 });
    found.push(...page.items);
    after = page.next;
  } while (after);
  return found;
}
