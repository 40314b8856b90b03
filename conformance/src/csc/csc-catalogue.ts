/**
 * The catalogue's replay, bypass, forgery, revocation and lockout cases over the CSC API (issue 16: "the
 * conformance suite gains `--protocol csc`, so its replay/bypass/forgery cases also run through this
 * surface"). Each catalogue case is either mapped to the CSC request a CSC client would make for the
 * same attack (reported under the catalogue case's id, so the traceability matrix lines the
 * protocols up), or not applicable with the reason: the CSC surface has nothing the attack could
 * hold or call. A test checks that every case of those groups is in exactly one of the two lists.
 *
 * CSC references followed: CSC API v2.0.0.2 sections 11.6 (credentials/authorize: authData PIN and
 * OTP), 11.7 (extendTransaction), 11.9 (signatures/signHash); error codes as errors.ts of the
 * gateway documents them in its OpenAPI document (invalid_request 400 for any SAD that does not
 * work, access_denied 403 for factors that do not verify).
 */
import { randomBytes } from "node:crypto";
import { buildSuspensionRequest } from "@inkan/sdk";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ChallengePurpose } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { ConnectError } from "@connectrpc/connect";
import type { AttackCase } from "../case.js";
import { bypassCases } from "../cases/bypass.js";
import { forgeryCases } from "../cases/forgery.js";
import { lockoutCases, lockoutThreshold } from "../cases/lockout.js";
import { replayCases } from "../cases/replay.js";
import { resetFactors, revocationCases } from "../cases/revocation.js";
import type { TestSigner } from "../session.js";
import type { CscAnswer } from "./csc-client.js";
import { authorize, CscCaseSkipped, hashes, signHash, signHashAgain, type CscCase, type CscObservation, type CscSession } from "./csc-cases.js";

const sha256 = "2.16.840.1.101.3.4.2.1";
const invalidRequest = { status: 400, error: "invalid_request" };
const accessDenied = { status: 403, error: "access_denied" };
const ok = { status: 200, error: "" };

/** The catalogue groups whose cases have to be accounted for over CSC. */
export const cscMappedGroups: readonly AttackCase[] = [...replayCases, ...forgeryCases, ...bypassCases, ...revocationCases, ...lockoutCases].filter((c): c is AttackCase => c.kind === "attack");

const coversOf = (id: string) => {
  const c = cscMappedGroups.find((x) => x.id === id);
  if (!c) throw new Error(`no catalogue case ${id}`);
  return c.covers;
};

const signaturesOf = (a: CscAnswer): unknown[] => (Array.isArray(a.body.signatures) ? a.body.signatures : []);
const observe = (answer: CscAnswer, problems: string[] = []): CscObservation => ({ answer, signed: signaturesOf(answer).length, ...(problems.length ? { problems } : {}) });

/** credentials/authorize with explicit factors (a wrong PIN or OTP), answered as is. */
function authorizeWith(s: CscSession, signer: TestSigner, list: string[], pin: string, otp: string): Promise<CscAnswer> {
  return s.client.call("credentials/authorize", {
    credentialID: signer.credentialId, numSignatures: list.length, hashes: list, hashAlgorithmOID: sha256, description: "Conformance (CSC)",
    authData: [{ id: "PIN", value: pin }, { id: "OTP", value: otp }],
  });
}

/** A six-digit code that is not `otp`. */
const wrongOtp = (otp: string) => String((Number(otp) + 500_001) % 1_000_000).padStart(otp.length, "0");

/** The owner's SAD still signs its hashes after a refused attack (the attack neither used it up nor revoked it). */
async function ownerStillSigns(s: CscSession, signer: TestSigner, sad: string, list: string[]): Promise<string[]> {
  const res = await signHash(s.client, signer.credentialId, sad, list);
  return res.status === 200 && signaturesOf(res).length === list.length ? [] : [`the owner's SAD no longer signed after the refused attack (${res.status} ${String(res.body.error ?? "")})`];
}

/** The catalogue case `id` over CSC. */
function mapped(id: string, c: Omit<CscCase, "id" | "covers">): CscCase {
  return { id, covers: coversOf(id), ...c };
}

export const cscCatalogueCases: CscCase[] = [
  // --- replay
  mapped("replay-r-sad", {
    description: "Explicit mode: the PIN and OTP a client sent to credentials/authorize (its authorization data, the R.SAD's counterpart over CSC) are sent again for a new authorization. The OTP was spent by the first one, so no second SAD is issued.",
    expected: accessDenied,
    async run(s) {
      const signer = await s.signer();
      const otp = s.otp(signer);
      const first = await authorizeWith(s, signer, hashes(1), s.pin, otp);
      const again = await authorizeWith(s, signer, hashes(1), s.pin, otp);
      return { answer: again, signed: typeof again.body.SAD === "string" ? 1 : 0, ...(first.status === 200 ? {} : { problems: [`the first authorization was refused (${first.status}), so the replay proves nothing`] }) };
    },
  }),
  mapped("replay-r-sad-concurrent", {
    description: "Explicit mode: 8 copies of one credentials/authorize (same PIN and OTP) are sent at once. At most one may obtain a SAD; the others are refused.",
    expected: accessDenied,
    async run(s) {
      const signer = await s.signer();
      const otp = s.otp(signer);
      const answers = await Promise.all(Array.from({ length: 8 }, () => authorizeWith(s, signer, hashes(1), s.pin, otp)));
      const sads = answers.filter((a) => typeof a.body.SAD === "string").length;
      // Copies beyond the attempt budget that arrive while the first checks are in flight are refused
      // unchecked (the SAM's LIMIT_EXCEEDED, 400 here): the refusal judged is a checked copy's.
      const refused = answers.find((a) => a.status === 403) ?? answers.find((a) => a.status !== 200) ?? answers[0]!;
      return { answer: refused, signed: Math.max(0, sads - 1), ...(sads === 0 ? { problems: ["no copy obtained a SAD, so the race proves nothing"] } : {}) };
    },
  }),
  mapped("replay-sad-token", {
    description: "The SAD that bought a signature is presented again for the same hash. Over CSC the SAD is the gateway's one-transaction credential: a conforming gateway answers with the recorded signature and makes no new one (a second signature would be the replay).",
    expected: ok,
    run: signHashAgain,
  }),
  mapped("replay-sad-token-concurrent", {
    description: "16 copies of one signHash (same SAD, same authorized hash) are sent at once, as a replaying attacker racing the client would. The gateway makes one signature: every answer that carries one carries the same bytes.",
    expected: ok,
    async run(s) {
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      const answers = await Promise.all(Array.from({ length: 16 }, () => signHash(s.client, signer.credentialId, sad, list)));
      const distinct = new Set(answers.flatMap((a) => signaturesOf(a).map(String)));
      const answered = answers.find((a) => a.status === 200) ?? answers[0]!;
      return { answer: answered, signed: Math.max(0, distinct.size - 1) };
    },
  }),
  // --- forgery
  mapped("forge-pin", {
    description: "Explicit mode: credentials/authorize with a wrong PIN (and the right OTP). The gateway refuses without saying which factor failed and issues no SAD.",
    expected: accessDenied,
    async run(s) {
      const signer = await s.signer();
      const a = await authorizeWith(s, signer, hashes(1), "000000000", s.otp(signer));
      return { answer: a, signed: typeof a.body.SAD === "string" ? 1 : 0 };
    },
  }),
  mapped("dtbsr-substituted", {
    description: "With a genuine SAD for two hashes, signHash asks for one authorized hash and one substituted for the other (a document changed in transit). Refused as a whole; nothing signed, and the SAD still signs the authorized hashes.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const list = hashes(2);
      const sad = await authorize(s, signer, list);
      const o = observe(await signHash(s.client, signer.credentialId, sad, [list[0]!, hashes(1)[0]!]));
      return o.answer.status === 200 ? o : { ...o, problems: await ownerStillSigns(s, signer, sad, list) };
    },
  }),
  mapped("dtbsr-added", {
    description: "signHash sends the authorized hash plus one the signer never saw. The request as a whole is refused; none of its hashes is signed.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      return observe(await signHash(s.client, signer.credentialId, sad, [...list, ...hashes(1)]));
    },
  }),
  mapped("dtbsr-repeated", {
    description: "signHash names one authorized hash twice in one call, to obtain two signatures over the same document. Refused; each authorized hash is signed once.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      return observe(await signHash(s.client, signer.credentialId, sad, [list[0]!, list[0]!]));
    },
  }),
  mapped("count-exceeded", {
    description: "Signing more than authorized: the SAD authorized one signature, which was made; the client asks the same SAD for one more (a new hash). Nothing beyond the authorized count is signed.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      const first = await signHash(s.client, signer.credentialId, sad, list);
      const o = observe(await signHash(s.client, signer.credentialId, sad, hashes(1)));
      return first.status === 200 ? o : { ...o, problems: [`the authorized signature failed (${first.status})`] };
    },
  }),
  // --- bypass
  mapped("bypass-sign-hash-without-authorize", {
    description: "signHash with a made-up SAD of the right shape, skipping credentials/authorize (no factor was ever verified). The SAD is the gateway's own opaque credential, so a guess matches nothing.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      return observe(await signHash(s.client, signer.credentialId, randomBytes(32).toString("base64url"), hashes(1)));
    },
  }),
  mapped("bypass-inline-without-sad", {
    description: "signHash with the service token and no SAD at all (the one-call form's counterpart: signing with no authorization in the request). Refused; nothing signed.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      return observe(await s.client.call("signatures/signHash", { credentialID: signer.credentialId, hashes: hashes(1), hashAlgorithmOID: sha256, signAlgo: "1.2.840.10045.4.3.2" }));
    },
  }),
  mapped("bypass-other-sca-token", {
    description: "A second registered CSC client presents the first client's SAD (stolen from its memory or logs) with signHash. The SAD is bound to the client that obtained it: refused, and the owner's SAD still signs.",
    expected: invalidRequest,
    async run(s) {
      if (!s.otherClient) throw new CscCaseSkipped("no second CSC client given (--csc-second-client-*)");
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      const o = observe(await s.otherClient.call("signatures/signHash", { credentialID: signer.credentialId, SAD: sad, hashes: list, hashAlgorithmOID: sha256, signAlgo: "1.2.840.10045.4.3.2" }));
      return o.answer.status === 200 ? o : { ...o, problems: await ownerStillSigns(s, signer, sad, list) };
    },
  }),
  mapped("bypass-other-sca-cancel", {
    description: "A second registered CSC client calls credentials/extendTransaction with the first client's SAD (the one CSC call that changes a transaction: it would replace the owner's SAD). Refused as unknown, and the owner's SAD still signs.",
    expected: invalidRequest,
    async run(s) {
      if (!s.otherClient) throw new CscCaseSkipped("no second CSC client given (--csc-second-client-*)");
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      const o = observe(await s.otherClient.call("credentials/extendTransaction", { credentialID: signer.credentialId, SAD: sad }));
      return { ...o, signed: typeof o.answer.body.SAD === "string" ? 1 : 0, problems: await ownerStillSigns(s, signer, sad, list) };
    },
  }),
  mapped("bypass-suspended-credential", {
    description: "A SAD is obtained, then the signer suspends the credential from their device; the client still calls signHash with the SAD issued before. A suspended credential signs nothing through CSC either.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      const ch = await s.sam.device.createChallenge({ signerId: signer.signerId, purpose: ChallengePurpose.SUSPENSION, credentialId: signer.credentialId });
      await s.sam.device.requestSuspension(await buildSuspensionRequest({ signerId: signer.signerId, credentialId: signer.credentialId, deviceKey: signer.deviceKey, challenge: ch.challenge, audience: ch.audience }));
      return observe(await signHash(s.client, signer.credentialId, sad, list));
    },
  }),
  mapped("bypass-destroyed-credential", {
    description: "A SAD is obtained, then two security officers destroy the credential; the client still calls signHash with the SAD. A destroyed credential's key is gone and nothing signs.",
    expected: invalidRequest,
    async run(s) {
      const why = s.sam.identities.missing.secondOfficer;
      if (why) throw new CscCaseSkipped(why);
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      const request = { credentialId: signer.credentialId, publicKeyFingerprint: signer.fingerprint, reason: "conformance: destroyed credential case (CSC)" };
      let pending;
      try {
        await s.sam.adminClient(RegistrationService, s.sam.target.admin).destroyCredential(request);
      } catch (err) {
        pending = ConnectError.from(err).findDetails(ApprovalRequiredSchema)[0];
      }
      if (pending) await s.sam.adminClient(PrivilegedUserService, s.sam.identities.secondOfficer!).approvePendingRequest({ pendingRequestId: pending.pendingRequestId, requestDigest: pending.requestDigest });
      return observe(await signHash(s.client, signer.credentialId, sad, list));
    },
  }),
  // --- revocation
  mapped("reset-factors-old-token", {
    description: "A SAD for two hashes is obtained and one is signed; the signer loses their factors and a registration operator resets them (approved by the security officer where the SAM holds it). The client then asks the SAD for the other hash. ResetFactors cancels what the old factors authorized, so the gateway signs nothing more.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const list = hashes(2);
      const sad = await authorize(s, signer, list);
      const first = await signHash(s.client, signer.credentialId, sad, [list[0]!]);
      await resetFactors(s.sam, signer.signerId);
      const o = observe(await signHash(s.client, signer.credentialId, sad, [list[1]!]));
      return first.status === 200 ? o : { ...o, problems: [`the first signHash failed (${first.status}), so the case proves nothing`] };
    },
  }),
  // --- lockout
  mapped("lockout-concurrent-guesses", {
    description: "Explicit mode: lockout_threshold + 4 credentials/authorize calls with wrong PINs and wrong OTPs, all at once. None obtains a SAD, the signer ends locked, and the right PIN and OTP afterwards are refused as a credential that cannot sign.",
    expected: invalidRequest,
    async run(s) {
      const threshold = await lockoutThreshold(s.sam).catch((err: unknown) => { throw new CscCaseSkipped((err as Error).message); });
      const signer = await s.signer();
      const otp = s.otp(signer);
      const guesses = threshold + 4;
      const answers = await Promise.all(Array.from({ length: guesses }, (_, i) => authorizeWith(s, signer, hashes(1), String(500_000_000 + i), wrongOtp(otp))));
      const problems: string[] = [];
      const granted = answers.filter((a) => a.status === 200).length;
      const other = [...new Set(answers.filter((a) => a.status !== 200 && !(a.status === 403 && a.body.error === "access_denied") && !(a.status === 400 && a.body.error === "invalid_request")).map((a) => `${a.status} ${String(a.body.error)}`))];
      if (other.length > 0) problems.push(`unexpected answers to the wrong guesses: ${other.join(", ")}`);
      const lockedAt = async () => (await s.sam.ra.getSigner({ signerId: signer.signerId })).signer?.factors?.lockedAt;
      // Guesses refused unchecked while earlier ones are still being counted leave the burst below the
      // threshold with nothing lost: then one wrong guess at a time until the lock (at most threshold).
      for (let i = 0; i < threshold && !(await lockedAt()); i++) {
        const one = await authorizeWith(s, signer, hashes(1), String(600_000_000 + i), wrongOtp(otp));
        if (one.status === 200) problems.push("a wrong guess sent alone after the burst obtained a SAD");
      }
      if (!(await lockedAt())) problems.push(`the signer is not locked after ${guesses} wrong guesses and up to ${threshold} more, one at a time`);
      const last = await authorizeWith(s, signer, hashes(1), s.pin, otp);
      return { answer: last, signed: granted + (typeof last.body.SAD === "string" ? 1 : 0), problems };
    },
  }),
];

/** Catalogue case id -> why the CSC surface has no equivalent (reported as not applicable with this reason). */
export const cscNotApplicable: Record<string, string> = {
  "replay-jti": "the R.SAD and its jti are built by the gateway (explicit mode) or the signer's device (oauth2code); a CSC client never holds one. Its own jti, the client assertion's, is attacked by csc-replay-client-assertion",
  "replay-challenge": "the SAD challenge passes between the gateway or device and the SAM; no CSC request carries it",
  "replay-stream-token": "the CSC API has no streaming signing method (signatures/signHash only)",
  "replay-resume-token": "the CSC API has no streaming signing method, so no resume token",
  "replay-suspension-request": "the CSC API has no suspension method",
  "forge-claim-sub": "the R.SAD's claims are built by the gateway or the device, never by the CSC client; the SAM's check of them is exercised over gRPC/Connect",
  "forge-claim-cred": "as forge-claim-sub (the CSC counterpart, a SAD presented with another credential's id, is csc-another-credential)",
  "forge-claim-aud": "as forge-claim-sub",
  "forge-claim-aud-array": "as forge-claim-sub",
  "forge-claim-txn": "as forge-claim-sub (a CSC request names no transaction)",
  "forge-claim-chal": "as forge-claim-sub",
  "forge-claim-dtbsr": "as forge-claim-sub (the CSC counterpart, a hash outside the authorized list, is dtbsr-substituted over csc)",
  "forge-claim-n": "as forge-claim-sub (numSignatures must equal the hashes' count; a mismatch is refused before the SAM is asked)",
  "forge-claim-n-string": "as forge-claim-sub",
  "forge-claim-iat": "as forge-claim-sub",
  "forge-claim-exp": "as forge-claim-sub; a SAD past its transaction's expiry would need the suite to wait out the lifetime (no timing-based cases); a SAD that stopped working is covered by csc-replay-sad-after-extend",
  "forge-claim-exp-lifetime": "as forge-claim-sub",
  "forge-claim-jti": "as forge-claim-sub",
  "forge-claim-jti-missing": "as forge-claim-sub",
  "forge-claim-extra": "as forge-claim-sub",
  "dtbsr-reordered": "the CSC client sends a set of hashes; the DTBS/R digest the device or gateway signs is built by the gateway, not the client, so the client cannot reorder it",
  "dtbsr-chunk-reordered": "the CSC API has no chunked hash upload",
  "dtbsr-chunk-substituted": "the CSC API has no chunked hash upload",
  "short-first-chunk": "the CSC API has no chunked hash upload",
  "seal-concurrent": "the CSC API has no chunked hash upload, so nothing to seal twice",
  "bypass-sign-stream-without-authorize": "the CSC API has no streaming signing method",
  "bypass-other-sca-authorize": "a CSC request names no transaction: authorization and transaction are one call (credentials/authorize), so another client cannot authorize someone else's transaction",
  "bypass-other-sca-stream": "the CSC API has no streaming signing method",
  "suspension-by-another-signer": "the CSC API has no suspension method",
  "suspension-by-sca": "the CSC API has no suspension or other administration method (info lists the methods)",
  "import-key-by-sca": "the CSC API has no key import method",
  "admin-call-unsigned": "the CSC API has no administration method",
  "audit-read-by-sca": "the CSC API has no audit method",
  "revoked-device-rotated-token": "the suite authorizes over CSC in the explicit mode (PIN + OTP), which does not use the device key, so RevokeDevice leaves that authorization alone by design; a device-approved (oauth2code) SAD needs a person in the portal",
  "csr-approval-sign-hash": "a CSR approval is made through the SAP for a credential without a certificate; the CSC API offers no CSR method and no CSC client holds such a token",
  "lockout-concurrent-change-pin": "the CSC API has no PIN change method",
  "authorize-attempts-concurrent": "a CSC request names no transaction: each credentials/authorize opens its own, so guesses cannot be aimed at one transaction (the signer's lockout over CSC is lockout-concurrent-guesses)",
};
