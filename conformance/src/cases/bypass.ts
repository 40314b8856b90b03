/**
 * Bypass (T-2.2.1.2, R-3.2.1.2, R-3.3.1, T-2.3.1.1, T-2.2.2.1, R-3.1.2.1): signing without a
 * verified SAD, with another SCA's transaction or token, with a credential that may not sign, and
 * admin calls by the wrong caller.
 */
import { randomBytes } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { buildSuspensionRequest, Reason } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ChallengePurpose } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import type { AttackCase } from "../case.js";
import { firstOf, outcomeOf, type Session } from "../session.js";
import { transportFor } from "../target.js";
import { against } from "./helpers.js";

const invalid = { code: Code.PermissionDenied, reason: Reason.SAD_INVALID };
const madeUpToken = () => randomBytes(32).toString("base64url");

/** The owner's token still signs after the attack: the attack neither used it up nor revoked it. */
async function ownerStillSigns(s: Session, token: string, hashes: Uint8Array[]): Promise<string[]> {
  return (await outcomeOf(s.signHash(token, hashes))) === "succeeded" ? [] : ["the owner's token no longer signed after the refused attack"];
}

export const bypassCases: AttackCase[] = [
  {
    kind: "attack",
    id: "bypass-sign-hash-without-authorize",
    covers: ["T-2.2.1.2", "R-3.2.1.2"],
    description: "SignHash is called on a pending transaction with a made-up SAD token, skipping Authorize (no R.SAD was ever verified). The SAM refuses and the transaction stays unsigned.",
    expected: invalid,
    async run(s) {
      const tx = await s.begin(await s.sharedSigner());
      return against(s, tx.ch.transactionId, s.signHash(madeUpToken(), tx.hashes));
    },
  },
  {
    kind: "attack",
    id: "bypass-sign-stream-without-authorize",
    covers: ["T-2.2.1.2", "R-3.2.1.2"],
    description: "SignStream is started on a pending transaction with a made-up token, skipping Authorize. The SAM refuses before any signature is made.",
    expected: invalid,
    async run(s) {
      const tx = await s.begin(await s.sharedSigner());
      return against(s, tx.ch.transactionId, firstOf(s.signStream(madeUpToken())));
    },
  },
  {
    kind: "attack",
    id: "bypass-inline-without-sad",
    covers: ["T-2.2.1.2", "T-2.2.1.7"],
    description: "The one-call form (SignHash with inline_authorization) carries a well-formed but meaningless five-segment string instead of an R.SAD. The SAM must verify it like Authorize does, refuse it, and sign nothing.",
    expected: invalid,
    async run(s) {
      const tx = await s.begin(await s.sharedSigner(), 1);
      const junk = ["eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9", "AAAA", "AAAAAAAAAAAAAAAA", "AAAA", "AAAAAAAAAAAAAAAAAAAAAA"].join(".");
      return against(s, tx.ch.transactionId, s.sca.signHash({ authorization: { case: "inlineAuthorization", value: { transactionId: tx.ch.transactionId, rSad: junk } }, hashes: tx.hashes }));
    },
  },
  {
    kind: "attack",
    id: "bypass-other-sca-authorize",
    covers: ["T-2.2.1.2", "R-3.2.1.2"],
    description: "A second SCA relays a genuine R.SAD for a transaction that the first SCA opened. Transactions belong to the SCA whose certificate opened them; to anyone else they do not exist.",
    expected: { code: Code.NotFound, reason: Reason.TRANSACTION_NOT_FOUND },
    needs: ["secondSca"],
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer, 1);
      return against(s, tx.ch.transactionId, s.otherSca!.authorize({ transactionId: tx.ch.transactionId, rSad: await s.rSad(signer, tx.ch) }));
    },
  },
  {
    kind: "attack",
    id: "bypass-other-sca-token",
    covers: ["T-2.2.1.2", "R-3.2.1.2"],
    description: "A second SCA presents a SAD token issued to the first SCA (stolen from its memory or logs). The token is bound to the SCA it was issued to: refused, and the owner's token stays valid.",
    expected: invalid,
    needs: ["secondSca"],
    async run(s) {
      const tx = await s.authorized(await s.sharedSigner(), 1);
      const outcome = await outcomeOf(s.signHash(tx.token, tx.hashes, s.otherSca!));
      const problems = await ownerStillSigns(s, tx.token, tx.hashes);
      return { outcome, signed: (await s.signaturesCreated(tx.ch.transactionId)) - (problems.length === 0 ? 1 : 0), problems };
    },
  },
  {
    kind: "attack",
    id: "bypass-other-sca-stream",
    covers: ["T-2.2.1.2", "R-3.2.1.2"],
    description: "A second SCA starts a SignStream with a SAD token issued to the first SCA. Refused; the owner's token stays valid.",
    expected: invalid,
    needs: ["secondSca"],
    async run(s) {
      const tx = await s.authorized(await s.sharedSigner(), 1);
      const outcome = await outcomeOf(firstOf(s.signStream(tx.token, 0, s.otherSca!)));
      const problems = await ownerStillSigns(s, tx.token, tx.hashes);
      return { outcome, signed: (await s.signaturesCreated(tx.ch.transactionId)) - (problems.length === 0 ? 1 : 0), problems };
    },
  },
  {
    kind: "attack",
    id: "bypass-other-sca-cancel",
    covers: ["R-3.2.1.2"],
    description: "A second SCA tries to cancel (and so learn the state of) a transaction the first SCA opened. It is reported as not found, and the transaction goes on.",
    expected: { code: Code.NotFound, reason: Reason.TRANSACTION_NOT_FOUND },
    needs: ["secondSca"],
    async run(s) {
      const tx = await s.authorized(await s.sharedSigner(), 1);
      const outcome = await outcomeOf(s.otherSca!.cancelTransaction({ transactionId: tx.ch.transactionId }));
      const problems = await ownerStillSigns(s, tx.token, tx.hashes);
      return { outcome, signed: (await s.signaturesCreated(tx.ch.transactionId)) - (problems.length === 0 ? 1 : 0), problems };
    },
  },
  {
    kind: "attack",
    id: "bypass-suspended-credential",
    covers: ["R-3.3.1", "T-2.2.1.2"],
    description: "A SAD token is obtained, then the signer suspends the credential from their device; the SCA still tries to sign with the token issued before. A suspended credential signs nothing, including with what was issued before the suspension.",
    expected: { code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_SUSPENDED },
    async run(s) {
      const signer = await s.newSigner();
      const tx = await s.authorized(signer, 1);
      const ch = await s.device.createChallenge({ signerId: signer.signerId, purpose: ChallengePurpose.SUSPENSION, credentialId: signer.credentialId });
      await s.device.requestSuspension(await buildSuspensionRequest({ signerId: signer.signerId, credentialId: signer.credentialId, deviceKey: signer.deviceKey, challenge: ch.challenge, audience: ch.audience }));
      return against(s, tx.ch.transactionId, s.signHash(tx.token, tx.hashes));
    },
  },
  {
    kind: "attack",
    id: "bypass-destroyed-credential",
    covers: ["R-3.3.1", "T-2.2.1.2", "R-3.2.1.6"],
    description: "A SAD token is obtained, then two security officers destroy the credential (request and approval); the SCA still tries to sign with the token. A destroyed credential's key is gone and nothing signs.",
    expected: { code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_DESTROYED },
    needs: ["secondOfficer"],
    async run(s) {
      const signer = await s.newSigner();
      const tx = await s.authorized(signer, 1);
      const request = { credentialId: signer.credentialId, publicKeyFingerprint: signer.fingerprint, reason: "conformance: destroyed credential case" };
      let pending;
      try {
        await s.adminClient(RegistrationService, s.target.admin).destroyCredential(request);
      } catch (err) {
        pending = ConnectError.from(err).findDetails(ApprovalRequiredSchema)[0];
      }
      if (pending) {
        await s.adminClient(PrivilegedUserService, s.identities.secondOfficer!).approvePendingRequest({ pendingRequestId: pending.pendingRequestId, requestDigest: pending.requestDigest });
      }
      const outcome = await outcomeOf(s.signHash(tx.token, tx.hashes));
      return { outcome, signed: 0, problems: [] };
    },
  },
  {
    kind: "attack",
    id: "suspension-by-another-signer",
    covers: ["T-2.3.1.1", "R-3.3.1"],
    description: "A second signer's device signs a suspension request naming the first signer's credential, over a challenge issued for that credential. Only the credential's own signer (or a registration operator) may suspend it: refused, nothing changes.",
    expected: { code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED },
    async run(s) {
      const victim = await s.sharedSigner();
      const attacker = await s.newSigner();
      const ch = await s.device.createChallenge({ signerId: victim.signerId, purpose: ChallengePurpose.SUSPENSION, credentialId: victim.credentialId });
      const forged = await buildSuspensionRequest({ signerId: victim.signerId, credentialId: victim.credentialId, deviceKey: attacker.deviceKey, challenge: ch.challenge, audience: ch.audience });
      const outcome = await outcomeOf(s.device.requestSuspension(forged));
      const tx = await s.authorized(victim, 1);
      const problems = await ownerStillSigns(s, tx.token, tx.hashes);
      return { outcome, signed: 0, problems };
    },
  },
  {
    kind: "attack",
    id: "suspension-by-sca",
    covers: ["T-2.3.1.1", "R-3.1.2.1"],
    description: "An SCA's certificate calls the registration operators' SuspendCredential. Only privileged users of the right role may: the SAM refuses by role and nothing changes.",
    expected: { code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED },
    async run(s) {
      const victim = await s.sharedSigner();
      const asSca = createClient(RegistrationService, transportFor(s.protocol, s.target.url, { ca: s.target.ca, ...s.target.sca }));
      return { outcome: await outcomeOf(asSca.suspendCredential({ credentialId: victim.credentialId, reason: "conformance" })), signed: 0 };
    },
  },
  {
    kind: "attack",
    id: "import-key-by-sca",
    covers: ["T-2.1.4.1", "T-2.2.2.1"],
    description: "An SCA's certificate calls ImportKey to bring its own key in under a signer. Importing keys is a registration operator's act: the SAM refuses by role before looking at the key.",
    expected: { code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED },
    async run(s) {
      const victim = await s.sharedSigner();
      const asSca = createClient(RegistrationService, transportFor(s.protocol, s.target.url, { ca: s.target.ca, ...s.target.sca }));
      return { outcome: await outcomeOf(asSca.importKey({ signerId: victim.signerId })), signed: 0 };
    },
  },
  {
    kind: "attack",
    id: "admin-call-unsigned",
    covers: ["T-2.1.2.1", "T-2.2.2.1", "R-3.1.2.1", "R-3.2.2.1"],
    description: "The registration operator's certificate (stolen, say) is used without the operator's per-request signature to change a signer's credential. A privileged user is authenticated by certificate and request-signing key together: refused.",
    expected: { code: Code.Unauthenticated, reason: Reason.REQUEST_SIGNATURE_INVALID },
    async run(s) {
      const victim = await s.sharedSigner();
      const op = s.identities.operator;
      const certOnly = createClient(RegistrationService, transportFor(s.protocol, s.target.url, { ca: s.target.ca, cert: op.cert, key: op.key }));
      const outcome = await outcomeOf(certOnly.suspendCredential({ credentialId: victim.credentialId, reason: "conformance" }));
      const tx = await s.authorized(victim, 1);
      return { outcome, signed: 0, problems: await ownerStillSigns(s, tx.token, tx.hashes) };
    },
  },
  {
    kind: "attack",
    id: "audit-read-by-sca",
    covers: ["T-2.2.2.2", "R-3.1.2.1"],
    description: "An SCA's certificate asks for the audit records. Only auditors read the audit log: refused by role.",
    expected: { code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED },
    async run(s) {
      const asSca = createClient(AuditService, transportFor(s.protocol, s.target.url, { ca: s.target.ca, ...s.target.sca }));
      return { outcome: await outcomeOf(asSca.listAuditRecords({})), signed: 0 };
    },
  },
];
