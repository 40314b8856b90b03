/** `inkan admin`: the command table (one module per noun) handed to runAdmin. */
import { runAdmin, type Noun, type Verb } from "./admin-command.js";
import { loginVerb } from "./admin-login.js";
import { approvalNoun } from "./admin-approval.js";
import { certificateNoun, credentialNoun, csrNoun } from "./admin-credential.js";
import { auditNoun } from "./admin-audit.js";
import { policyNoun } from "./admin-policy.js";
import { restoreNoun } from "./admin-restore.js";
import { signerNoun } from "./admin-signer.js";
import { userNoun } from "./admin-user.js";

export const adminNouns: Record<string, Noun> = {
  signer: signerNoun,
  approval: approvalNoun,
  credential: credentialNoun,
  csr: csrNoun,
  certificate: certificateNoun,
  policy: policyNoun,
  restore: restoreNoun,
  audit: auditNoun,
  user: userNoun,
};

/** Commands without a noun. */
export const adminVerbs: Record<string, Verb> = { login: loginVerb };

/** Runs `inkan admin ...` (argv after "admin"); resolves to the exit code. */
export function adminCommand(argv: string[]): Promise<number> {
  return runAdmin(argv, adminNouns, process.env, adminVerbs);
}
