import canonicalize from "canonicalize";
import type { SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { credentialLocked, factorCheckFailed, type Actor } from "../audit/events.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { CredentialRecord, FactorType } from "../store/port.js";
import type { CredentialBody } from "./credentials.js";
import type { Signers, SignerBody } from "./signers.js";

export interface LockoutDeps {
  records: VerifiedRecords;
  signers: Pick<Signers, "record" | "replace">;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
}

/**
 * Counts one failed factor check of a signer (T-2.1.2.2): failedAttempts + 1 on the sealed signer
 * record, audited; at the policy's lockoutThreshold the signer gets lockedAt and each of its
 * ACTIVE or PENDING credentials becomes LOCKED (remembering its status for ResetLockout), each
 * lock audited. Returns the new count and whether the signer is now locked.
 */
export async function recordFactorFailure(d: LockoutDeps, input: { signerId: string; actor: Actor; factor: FactorType; requestId?: string | undefined; now: Date }): Promise<{ failedAttempts: number; locked: boolean }> {
  const threshold = (await d.policies.current()).lockoutThreshold;
  const signer = await d.signers.record(input.signerId);
  const body = JSON.parse(signer.body) as SignerBody;
  const failedAttempts = (body.failedAttempts ?? 0) + 1;
  const locked = body.lockedAt !== undefined || (threshold > 0 && failedAttempts >= threshold);
  const at = input.now.toISOString();
  await d.signers.replace(signer, signer.status, { ...body, failedAttempts, ...(locked ? { lockedAt: body.lockedAt ?? at } : {}), updatedAt: at });
  const req = input.requestId ? { requestId: input.requestId } : {};
  await d.audit.record(factorCheckFailed({ actor: input.actor, signerId: signer.id, factor: input.factor, failedAttempts, ...req }));
  if (locked && body.lockedAt === undefined) {
    for (const status of ["ACTIVE", "PENDING"] as const) {
      const found: CredentialRecord[] = [];
      let after: string | undefined;
      do {
        const page = await d.records.list({ kind: "credential", where: { signerId: signer.id, status }, after, limit: 100 });
        found.push(...page.items);
        after = page.next;
      } while (after);
      for (const c of found) {
        const cBody: CredentialBody = { ...(JSON.parse(c.body) as CredentialBody), statusBeforeLock: status, updatedAt: at };
        await d.records.update<CredentialRecord>({ ...c, version: c.version + 1, status: "LOCKED", body: canonicalize(cBody)! }, c.version);
        await d.audit.record(credentialLocked({ signerId: signer.id, credentialId: c.id, failedAttempts, threshold, ...req }));
      }
    }
  }
  return { failedAttempts, locked };
}
