/** Replay (T-2.2.1.3, R-3.2.1.2, T-2.3.1.2, R-3.3.2): every one-time value works exactly once. */
import { Code } from "@connectrpc/connect";
import { buildSuspensionRequest, dtbsrDigest, newJti, Reason } from "@inkan/sdk";
import { ChallengePurpose } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { AttackCase } from "../case.js";
import { firstOf, outcomeOf } from "../session.js";
import { against, claimsFor, forgedRSad, maxHashesPerChunk, race } from "./helpers.js";

const replayed = { code: Code.PermissionDenied, reason: Reason.SAD_REPLAYED };

export const replayCases: AttackCase[] = [
  {
    kind: "attack",
    id: "replay-r-sad",
    covers: ["T-2.2.1.3", "R-3.2.1.2"],
    description: "The SCA (or anyone who saw it) relays the same R.SAD a second time after it authorized the transaction, hoping for a second SAD token. The transaction is no longer pending, so the SAM refuses and hands out nothing.",
    expected: { code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE },
    alsoAccepted: [replayed],
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer);
      const rSad = await s.rSad(signer, tx.ch);
      await s.sca.authorize({ transactionId: tx.ch.transactionId, rSad });
      return against(s, tx.ch.transactionId, s.sca.authorize({ transactionId: tx.ch.transactionId, rSad }));
    },
  },
  {
    kind: "attack",
    id: "replay-jti",
    covers: ["T-2.2.1.3", "R-3.2.1.2"],
    description: "An R.SAD for a new transaction reuses the jti of an R.SAD the SAM already accepted (everything else genuine and signed by the device key). A SAM that remembers every jti refuses it as a replay.",
    expected: replayed,
    async run(s) {
      const signer = await s.sharedSigner();
      const first = await s.begin(signer);
      const jti = newJti();
      const firstOk = await outcomeOf(s.sca.authorize({ transactionId: first.ch.transactionId, rSad: await forgedRSad(signer, first.ch, claimsFor(first.ch, { jti })) }));
      await s.signaturesCreated(first.ch.transactionId);
      const second = await s.begin(signer);
      const obs = await against(s, second.ch.transactionId, s.sca.authorize({ transactionId: second.ch.transactionId, rSad: await forgedRSad(signer, second.ch, claimsFor(second.ch, { jti })) }));
      return firstOk === "succeeded" ? obs : { ...obs, problems: ["the first R.SAD with the chosen jti was refused, so the replay proves nothing"] };
    },
  },
  {
    kind: "attack",
    id: "replay-challenge",
    covers: ["T-2.2.1.3", "T-2.2.1.7"],
    description: "The device's signed answer to one transaction's challenge is reused for another transaction: a genuine R.SAD whose chal is the first transaction's challenge. The challenge is bound to its transaction, so the SAM refuses the R.SAD as invalid.",
    expected: { code: Code.PermissionDenied, reason: Reason.SAD_INVALID },
    async run(s) {
      const signer = await s.sharedSigner();
      const first = await s.begin(signer);
      const second = await s.begin(signer);
      await s.signaturesCreated(first.ch.transactionId);
      const rSad = await forgedRSad(signer, second.ch, claimsFor(second.ch, { chal: Buffer.from(first.ch.challenge).toString("base64url") }));
      return against(s, second.ch.transactionId, s.sca.authorize({ transactionId: second.ch.transactionId, rSad }));
    },
  },
  {
    kind: "attack",
    id: "replay-sad-token",
    covers: ["T-2.2.1.3", "R-3.2.1.2"],
    description: "A SAD token that already bought a signature is presented again. The SAM refuses it as a replay and, as refresh-token reuse detection does, revokes the rest of the transaction: the rotated token stops working too.",
    expected: replayed,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 2);
      const first = await s.signHash(tx.token, [tx.hashes[0]!]);
      const outcome = await outcomeOf(s.signHash(tx.token, [tx.hashes[1]!]));
      const rotated = await outcomeOf(s.signHash(first.nextSadToken, [tx.hashes[1]!]));
      const problems = rotated === "succeeded" ? ["the rotated token still signed after the replay (the transaction was not revoked)"] : [];
      return { outcome, signed: (await s.signaturesCreated(tx.ch.transactionId)) - 1, problems };
    },
  },
  {
    kind: "attack",
    id: "replay-sad-token-concurrent",
    covers: ["T-2.2.1.3", "R-3.2.1.2"],
    description: "32 copies of one SAD token, each asking for a different one of the transaction's 32 authorized hashes, are sent at the same instant (released together behind a barrier), as a replaying attacker racing the SCA would. The token is consumed atomically: exactly one call may sign, every other is refused as a replay.",
    expected: replayed,
    alsoAccepted: [{ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE }],
    oneProtocol: true,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 32);
      let i = 0;
      const { succeeded, refused } = await race(32, () => s.signHash(tx.token, [tx.hashes[i++]!]));
      const problems = succeeded.length === 1 ? [] : [`${succeeded.length} of 32 concurrent calls with one token succeeded`];
      const outcome = refused.length > 0 ? await outcomeOf(Promise.reject(refused[0])) : "succeeded";
      return { outcome, signed: (await s.signaturesCreated(tx.ch.transactionId)) - Math.min(succeeded.length, 1), problems };
    },
  },
  {
    kind: "attack",
    id: "replay-r-sad-concurrent",
    covers: ["T-2.2.1.3", "R-3.2.1.2"],
    description: "8 copies of one R.SAD are relayed with Authorize at the same instant. Exactly one may obtain a SAD token (the SAM's compare-and-set), the others are refused.",
    expected: replayed,
    alsoAccepted: [{ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE }],
    oneProtocol: true,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer, 1);
      const rSad = await s.rSad(signer, tx.ch);
      const { succeeded, refused } = await race(8, () => s.sca.authorize({ transactionId: tx.ch.transactionId, rSad }));
      const problems = succeeded.length === 1 ? [] : [`${succeeded.length} of 8 concurrent Authorize calls got a token`];
      // Copies beyond max_authorize_attempts that arrive while the first checks are in flight are
      // refused unchecked (LIMIT_EXCEEDED, sap/authorize.ts): the refusal judged is a checked copy's.
      const outcomes = await Promise.all(refused.map((e) => outcomeOf(Promise.reject(e))));
      const outcome = outcomes.find((o) => o !== "succeeded" && o.reason !== Reason.LIMIT_EXCEEDED) ?? outcomes[0] ?? "succeeded";
      return { outcome, signed: await s.signaturesCreated(tx.ch.transactionId), problems };
    },
  },
  {
    kind: "attack",
    id: "seal-concurrent",
    covers: ["T-2.2.1.3", "R-3.2.1.4"],
    description: "A DTBS/R list uploaded in chunks (a full first chunk, then two hashes) is sealed by 8 SealTransaction calls at the same instant, as an SCA racing itself, or a relay, would to get more than one challenge for one transaction. Freezing the list is a compare-and-set: exactly one call returns a challenge, the others are refused, and the challenge returned is the one the signer's R.SAD answers (Authorize accepts it).",
    expected: { code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE },
    oneProtocol: true,
    async run(s) {
      const signer = await s.sharedSigner();
      const max = await maxHashesPerChunk(s);
      const { hashes } = s.documents(max + 2);
      const begun = await s.sca.beginTransaction({ credentialId: signer.credentialId, signerId: signer.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes: hashes.slice(0, max), description: "Inkan conformance suite" });
      await s.sca.appendHashes({ transactionId: begun.transactionId, chunkIndex: 1, hashes: hashes.slice(max) });
      const digest = await dtbsrDigest(HashAlgorithm.SHA256, hashes);
      const { succeeded, refused } = await race(8, () => s.sca.sealTransaction({ transactionId: begun.transactionId, dtbsrDigest: digest }));
      const problems = succeeded.length === 1 ? [] : [`${succeeded.length} of 8 concurrent SealTransaction calls returned a challenge`];
      const challenge = succeeded[0]?.sadChallenge;
      if (challenge && (await outcomeOf(s.sca.authorize({ transactionId: begun.transactionId, rSad: await s.rSad(signer, challenge) }))) !== "succeeded") {
        problems.push("the challenge SealTransaction returned does not authorize its transaction");
      }
      const outcome = refused.length > 0 ? await outcomeOf(Promise.reject(refused[0])) : "succeeded";
      return { outcome, signed: await s.signaturesCreated(begun.transactionId), problems };
    },
  },
  {
    kind: "attack",
    id: "replay-stream-token",
    covers: ["T-2.2.1.3", "R-3.2.1.2"],
    description: "The SAD token a SignStream consumed is used to start a second stream. The SAM refuses it as a replay; nothing is signed twice.",
    expected: replayed,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 3);
      let received = 0;
      for await (const m of s.signStream(tx.token)) received += m.signatures.length;
      const outcome = await outcomeOf(firstOf(s.signStream(tx.token)));
      return { outcome, signed: (await s.signaturesCreated(tx.ch.transactionId)) - received };
    },
  },
  {
    kind: "attack",
    id: "replay-resume-token",
    covers: ["T-2.2.1.3", "T-2.2.1.6"],
    description: "A SignStream over 600 hashes is interrupted after its first message and resumed with that message's resume token; the resumed stream is interrupted too, and the first resume token is presented once more. Each resume token works once, so the second resumption is refused as a replay.",
    expected: replayed,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 600);
      const abort = new AbortController();
      const head = await firstOf(s.signStream(tx.token, 0, s.sca, abort.signal));
      abort.abort();
      const again = new AbortController();
      await firstOf(s.signStream(head.resumeToken, head.resumeIndex, s.sca, again.signal));
      again.abort();
      const outcome = await outcomeOf(firstOf(s.signStream(head.resumeToken, head.resumeIndex)));
      await s.signaturesCreated(tx.ch.transactionId);
      return { outcome, signed: 0 };
    },
  },
  {
    kind: "attack",
    id: "replay-suspension-request",
    covers: ["T-2.3.1.2", "R-3.3.2"],
    description: "A signer's device-signed suspension request is captured and presented again after the credential was resumed. Its challenge was spent by the first presentation, so the SAM refuses it and the credential stays active.",
    expected: { code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED },
    async run(s) {
      const signer = await s.newSigner();
      const ch = await s.device.createChallenge({ signerId: signer.signerId, purpose: ChallengePurpose.SUSPENSION, credentialId: signer.credentialId });
      const request = await buildSuspensionRequest({ signerId: signer.signerId, credentialId: signer.credentialId, deviceKey: signer.deviceKey, challenge: ch.challenge, audience: ch.audience });
      await s.device.requestSuspension(request);
      await s.ra.resumeCredential({ credentialId: signer.credentialId, reason: "conformance: resumed before the replay" });
      const outcome = await outcomeOf(s.device.requestSuspension(request));
      // Still usable: the replay suspended nothing.
      const usable = await outcomeOf(s.authorized(signer, 1));
      return { outcome, signed: 0, problems: usable === "succeeded" ? [] : ["the credential could not be authorized after the replay (the replay suspended it)"] };
    },
  },
];
