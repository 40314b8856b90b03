/**
 * SCA scopes (issue 19; R-3.2.1.2, T-2.2.1.4): an SCA acts only for the signers its scope covers.
 * The suite enrolls its signers without a signer group, so an SCA whose scope is a signer group
 * (`inkan init`'s second SCA, scope "demo-b") covers none of them: to it they must not exist.
 */
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { Reason } from "@inkan/sdk";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { AttackCase } from "../case.js";
import { outcomeOf, type Outcome } from "../session.js";

const ghostSigner = "sgn-0000000000000000000000000000"; // well formed, never enrolled
const ghostCredential = "crd-0000000000000000000000000000";

/** How an outcome reads for comparison: a refusal's code, reason and message, or success. */
const shown = (o: Outcome) => (o === "succeeded" ? "succeeded" : `${Code[o.code]} ${Reason[o.reason]} "${o.message}"`);

export const scopeCases: AttackCase[] = [
  {
    kind: "attack",
    id: "scope-other-tenant-begin-transaction",
    covers: ["R-3.2.1.2", "T-2.2.1.4"],
    description:
      "An SCA whose scope does not cover a signer (another tenant's SCA) opens a transaction on that signer's credential, and lists and reads its credentials. The SAM answers exactly as for a signer and credential that do not exist (NOT_FOUND, same reason and message), opens nothing and signs nothing.",
    expected: { code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND },
    alsoAccepted: [{ code: Code.NotFound, reason: Reason.SIGNER_NOT_FOUND }],
    needs: ["otherScopeSca"],
    async run(s) {
      const other = s.otherScopeSca!;
      const signer = await s.sharedSigner();
      const problems: string[] = [];
      const begin = (signerId: string, credentialId: string) =>
        other.beginTransaction({ credentialId, signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [randomBytes(32)], description: "Inkan conformance suite: out of scope" });
      const outcome = await outcomeOf(begin(signer.signerId, signer.credentialId));
      const ghost = await outcomeOf(begin(ghostSigner, ghostCredential));
      if (outcome !== "succeeded" && shown(outcome) !== shown(ghost)) problems.push(`BeginTransaction answered ${shown(outcome)}, for a nonexistent credential ${shown(ghost)}`);
      // ListCredentials: what a nonexistent signer gets (a refusal or an empty list), never a credential.
      const listing = async (signerId: string) => {
        let count = 0;
        const o = await outcomeOf(other.listCredentials({ signerId }).then((r) => void (count = r.credentials.length)));
        return o === "succeeded" ? `${count} credential(s)` : shown(o);
      };
      const [listed, listedGhost] = [await listing(signer.signerId), await listing(ghostSigner)];
      if (listed !== listedGhost) problems.push(`ListCredentials answered ${listed} for the out-of-scope signer, ${listedGhost} for a nonexistent one`);
      const got = await outcomeOf(other.getCredential({ credentialId: signer.credentialId }));
      if (got === "succeeded") problems.push("GetCredential returned the out-of-scope signer's credential");
      else if (shown(got) !== shown(await outcomeOf(other.getCredential({ credentialId: ghostCredential })))) problems.push(`GetCredential answered ${shown(got)}, differently from a nonexistent credential`);
      // The signer's own SCA (in scope) still works: the refusal is the scope, not a broken signer.
      if ((await outcomeOf(s.begin(signer, 1))) !== "succeeded") problems.push("the in-scope SCA could not open a transaction for the same signer");
      return { outcome, signed: 0, problems };
    },
  },
];
