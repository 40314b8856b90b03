import { InkanError } from "../errors.js";
import type { CredentialStatus } from "../store/port.js";
import type { Credentials, CredentialView } from "./credentials.js";
import { pageToken, readPageToken } from "./ids.js";
import type { Signers } from "./signers.js";

export interface ScaCredentialsOptions {
  signers: Pick<Signers, "record">;
  credentials: Pick<Credentials, "get" | "list">;
}

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
 * Scope rule (the security policy has no per-SCA scope setting yet; this is the default for every
 * SCA whose certificate the policy trusts):
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
  async list(query: { signerId: string; statuses: readonly CredentialStatus[]; pageToken?: string; limit: number }): Promise<{ credentials: CredentialView[]; nextPageToken: string }> {
    const signerId = await this.activeSigner(query.signerId);
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

  /** One credential that is not DESTROYED and whose signer is ACTIVE; CREDENTIAL_NOT_FOUND otherwise. */
  async get(credentialId: string): Promise<CredentialView> {
    const view = await this.o.credentials.get(credentialId).catch((err: unknown) => {
      throw isCode(err, "CREDENTIAL_NOT_FOUND") ? credentialNotFound() : err;
    });
    if (view.credential.status === "DESTROYED") throw credentialNotFound();
    const signer = await this.o.signers.record(view.credential.signerId).catch((err: unknown) => {
      throw isCode(err, "SIGNER_NOT_FOUND") ? credentialNotFound() : err;
    });
    if (signer.status !== "ACTIVE") throw credentialNotFound();
    return view;
  }

  /** The signer's id when it exists and is ACTIVE; SIGNER_NOT_FOUND otherwise (integrity and store failures pass through). */
  private async activeSigner(signerId: string): Promise<string> {
    const signer = await this.o.signers.record(signerId).catch((err: unknown) => {
      throw isCode(err, "SIGNER_NOT_FOUND") ? signerNotFound() : err;
    });
    if (signer.status !== "ACTIVE") throw signerNotFound();
    return signer.id;
  }
}

const isCode = (err: unknown, code: InkanError["code"]) => err instanceof InkanError && err.code === code;
