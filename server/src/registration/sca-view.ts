import { inSignerScope, type ScaScopeKey, type SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { scaScopeRefused } from "../audit/events.js";
import { InkanError } from "../errors.js";
import type { CredentialStatus, SignerRecord } from "../store/port.js";
import type { Credentials, CredentialView } from "./credentials.js";
import { pageToken, readPageToken } from "./ids.js";
import { signerGroupOf, type Signers } from "./signers.js";

export interface ScaCredentialsOptions {
  signers: Pick<Signers, "record">;
  credentials: Pick<Credentials, "get" | "list">;
  /** Issue 19: the SCA scopes of the policy in force. */
  policies: Pick<SecurityPolicies, "current">;
  /** Issue 19: out-of-scope requests are audited ("sca_scope.refused") before the answer leaves. */
  audit: Pick<AuditLog, "record">;
}

/** The calling SCA (transport identity), for its scopes and the audit log. */
export interface ScopedScaCaller {
  /** SHA-256 of the client certificate (DER), lower-case hex. */
  certificateSha256: string;
  /** The certificate subject, for the audit log. */
  subject: string;
  requestId?: string | undefined;
  /** What SecurityPolicy.sca_scopes names an SCA by; absent: no scope names it (nothing is visible). */
  scope?: ScaScopeKey | undefined;
}

/** The SAP method on whose behalf a signer is looked up, as the audit log names it. */
export type ScopedMethod = "ListCredentials" | "GetCredential" | "BeginTransaction" | "SealTransaction";

/** Every credential state an SCA may see: all but DESTROYED. */
const visibleStatuses: readonly CredentialStatus[] = ["PENDING", "ACTIVE", "SUSPENDED", "LOCKED"];
const scanPage = 100;

// One error per kind, whatever the cause (missing, not ACTIVE, destroyed, another signer's), so
// that nothing about existence leaks through the code, the message or the field.
const signerNotFound = () => new InkanError("SIGNER_NOT_FOUND", "no such signer", { field: "signer_id" });
const credentialNotFound = () => new InkanError("CREDENTIAL_NOT_FOUND", "no such credential", { field: "credential_id" });

/**
 * The credentials a trusted SCA may see (SignatureActivationService ListCredentials and
 * GetCredential; R-3.1.1.3: a credential is bound to exactly one signer).
 *
 * Scope rule:
 *  - an SCA sees only signers within its scopes (SecurityPolicy.sca_scopes, issue 19: all signers,
 *    or signers of some groups); a signer outside them is answered exactly as one that does not
 *    exist, and the refusal is audited with the real cause ("sca_scope.refused");
 *  - an SCA sees the credentials of a signer it names, only while that signer is ACTIVE;
 *  - a DESTROYED credential is never shown (not listed, even when asked for by status, and not
 *    returned by get);
 *  - a signer that does not exist or is not ACTIVE is SIGNER_NOT_FOUND, and a credential that does
 *    not exist, is destroyed, or belongs to a signer that is not ACTIVE is CREDENTIAL_NOT_FOUND:
 *    never a "forbidden" answer, so that existence does not leak;
 *  - there is no enumeration of signers: a listing always names one signer and holds only that
 *    signer's credentials.
 * Views carry the credential record and its body (key id, SPKI, fingerprint, algorithm, level);
 * no secret is part of a credential (T-2.2.2.3).
 */
export class ScaCredentials {
  constructor(private readonly o: ScaCredentialsOptions) {}

  /**
   * One page of an ACTIVE signer's visible credentials in `statuses` (empty: every visible state),
   * ordered by credential id. The page token is bound to the signer and the statuses.
   */
  async list(query: { signerId: string; statuses: readonly CredentialStatus[]; pageToken?: string; limit: number }, caller: ScopedScaCaller): Promise<{ credentials: CredentialView[]; nextPageToken: string }> {
    const signerId = await this.activeSigner(query.signerId, caller);
    const wanted = visibleStatuses.filter((s) => query.statuses.length === 0 || query.statuses.includes(s));
    const filters = { view: "sca", signerId, statuses: wanted.join(",") || "-" };
    let after = readPageToken(query.pageToken, filters);
    const found: CredentialView[] = [];
    let next: string | undefined;
    while (wanted.length > 0) {
      // Credentials.list pages by the last id seen with a token bound to the signer alone.
      const page = await this.o.credentials.list({ signerId, pageToken: pageToken(after, { signerId }), limit: scanPage });
      for (const [i, c] of page.credentials.entries()) {
        if (c.credential.signerId !== signerId || !wanted.includes(c.credential.status)) continue;
        found.push(c);
        if (found.length === query.limit) {
          next = i < page.credentials.length - 1 || page.nextPageToken ? c.credential.id : undefined;
          break;
        }
      }
      const last = page.credentials.at(-1);
      if (found.length === query.limit || !page.nextPageToken || !last) break;
      after = last.credential.id;
    }
    return { credentials: found, nextPageToken: pageToken(next, filters) };
  }

  /**
   * One credential that is not DESTROYED and whose signer is ACTIVE and within the caller's scopes;
   * CREDENTIAL_NOT_FOUND otherwise. `method`: the SAP call it serves (GetCredential, or
   * BeginTransaction and SealTransaction, which use only what this returns).
   */
  async get(credentialId: string, caller: ScopedScaCaller, method: ScopedMethod = "GetCredential", policies: Pick<SecurityPolicies, "current"> = this.o.policies): Promise<CredentialView> {
    const view = await this.o.credentials.get(credentialId).catch((err: unknown) => {
      throw isCode(err, "CREDENTIAL_NOT_FOUND") ? credentialNotFound() : err;
    });
    if (view.credential.status === "DESTROYED") throw credentialNotFound();
    const signer = await this.o.signers.record(view.credential.signerId).catch((err: unknown) => {
      throw isCode(err, "SIGNER_NOT_FOUND") ? credentialNotFound() : err;
    });
    await this.requireScope(signer, caller, method, credentialNotFound, policies, view.credential.id);
    if (signer.status !== "ACTIVE") throw credentialNotFound();
    return view;
  }

  /** The signer's id when it exists, is within the caller's scopes and is ACTIVE; SIGNER_NOT_FOUND otherwise (integrity and store failures pass through). */
  private async activeSigner(signerId: string, caller: ScopedScaCaller): Promise<string> {
    const signer = await this.o.signers.record(signerId).catch((err: unknown) => {
      throw isCode(err, "SIGNER_NOT_FOUND") ? signerNotFound() : err;
    });
    await this.requireScope(signer, caller, "ListCredentials", signerNotFound, this.o.policies);
    if (signer.status !== "ACTIVE") throw signerNotFound();
    return signer.id;
  }

  /**
   * Issue 19 (T-2.2.1.4): a signer outside every scope that names the caller is refused with
   * exactly the error of a signer that does not exist (never "forbidden", so one tenant's SCA learns
   * nothing of another's signers and can open no transaction to guess their PINs). The refusal is
   * audited with the real cause first: if that record cannot be written, the call fails closed.
   */
  private async requireScope(signer: SignerRecord, caller: ScopedScaCaller, method: ScopedMethod, notFound: () => InkanError, policies: Pick<SecurityPolicies, "current">, credentialId?: string): Promise<void> {
    const scope = (await policies.current()).scaScope(caller.scope);
    const group = signerGroupOf(signer);
    if (inSignerScope(scope, group)) return;
    await this.o.audit.record(scaScopeRefused({
      sca: { kind: "sca", subject: caller.subject, certificateSha256: Buffer.from(caller.certificateSha256, "hex") },
      requestId: caller.requestId,
      method,
      signerId: signer.id,
      credentialId,
      signerGroup: group,
      scopes: scope.scopes,
    }));
    throw notFound();
  }
}

const isCode = (err: unknown, code: InkanError["code"]) => err instanceof InkanError && err.code === code;
