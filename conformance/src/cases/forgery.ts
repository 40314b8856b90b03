/**
 * Forgery (T-2.2.1.7, T-2.2.1.4, T-2.2.1.6, R-3.2.1.1, R-3.2.1.4): an R.SAD genuinely signed by the
 * signer's device key, but over one claim the attacker chose; and DTBS/R lists altered on their
 * way to the SAM. Each is refused and signs nothing.
 */
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { dtbsrDigest, Reason } from "@inkan/sdk";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { AttackCase } from "../case.js";
import type { RequirementId } from "../requirement-ids.js";
import { outcomeOf, type Session } from "../session.js";
import { b64 } from "./jose.js";
import { against, claimsFor, forgedRSad, maxHashesPerChunk } from "./helpers.js";

const invalid = { code: Code.PermissionDenied, reason: Reason.SAD_INVALID };
const now = () => Math.floor(Date.now() / 1000);

/** One claim of the SAD replaced by the attacker; the device key signs what the attacker wrote. */
function claimForgery(claim: string, covers: RequirementId[], what: string, value: (s: Session, c: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>, expected = invalid): AttackCase {
  return {
    kind: "attack",
    id: `forge-claim-${claim}`,
    covers,
    description: `The R.SAD's "${claim}" claim is ${what}; every other claim is genuine and the JWS signature verifies. The claims must equal the transaction's (and this SAM's), so the SAM refuses the R.SAD and the transaction stays unsigned.`,
    expected,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer);
      const claims = await value(s, claimsFor(tx.ch));
      return against(s, tx.ch.transactionId, s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await forgedRSad(signer, tx.ch, claims) }));
    },
  };
}

export const forgeryCases: AttackCase[] = [
  claimForgery("sub", ["T-2.2.1.4", "T-2.2.1.7", "R-3.2.1.1"], "another signer's id (a second enrolled signer)", async (s, c) => ({ ...c, sub: (await s.newSigner()).signerId })),
  claimForgery("cred", ["T-2.2.1.7", "R-3.2.1.1"], "another credential id", (_s, c) => ({ ...c, cred: `${String(c.cred)}-other` })),
  claimForgery("aud", ["T-2.2.1.4", "T-2.2.1.7", "R-3.2.1.1"], "another SAM's id", (_s, c) => ({ ...c, aud: "urn:inkan:sam:somebody-else" })),
  claimForgery("aud-array", ["T-2.2.1.7", "R-3.2.1.1"], "an array holding this SAM's id (an audience list where a single string is required)", (_s, c) => ({ ...c, aud: [c.aud] })),
  claimForgery("txn", ["T-2.2.1.7", "R-3.2.1.1"], "another transaction's id", async (s, c) => {
    const other = await s.begin(await s.sharedSigner());
    await s.signaturesCreated(other.ch.transactionId);
    return { ...c, txn: other.ch.transactionId };
  }),
  claimForgery("chal", ["T-2.2.1.3", "T-2.2.1.7", "R-3.2.1.1"], "a random 32-byte value", (_s, c) => ({ ...c, chal: b64(randomBytes(32)) })),
  claimForgery("dtbsr", ["T-2.2.1.6", "T-2.2.1.7", "R-3.2.1.1", "R-3.2.1.4"], "the digest of other documents", (_s, c) => ({ ...c, dtbsr: b64(randomBytes(32)) })),
  claimForgery("n", ["T-2.2.1.6", "T-2.2.1.7", "R-3.2.1.1"], "one more than the transaction's count", (_s, c) => ({ ...c, n: (c.n as number) + 1 })),
  claimForgery("n-string", ["T-2.2.1.7", "R-3.2.1.1"], "the right count written as a string", (_s, c) => ({ ...c, n: String(c.n) })),
  claimForgery("iat", ["T-2.2.1.7", "R-3.2.1.1"], "ten minutes in the future", (_s, c) => ({ ...c, iat: now() + 600, exp: now() + 700 })),
  claimForgery("exp", ["T-2.2.1.3", "T-2.2.1.7"], "in the past (an R.SAD kept and relayed later)", (_s, c) => ({ ...c, iat: now() - 900, exp: now() - 600 }), { code: Code.FailedPrecondition, reason: Reason.EXPIRED }),
  claimForgery("exp-lifetime", ["T-2.2.1.3", "T-2.2.1.7"], "a day after iat (far beyond the SAM's maximum R.SAD lifetime)", (_s, c) => ({ ...c, exp: now() + 86_400 })),
  claimForgery("jti", ["T-2.2.1.3", "T-2.2.1.7"], "a short guessable value (\"1\")", (_s, c) => ({ ...c, jti: "1" })),
  claimForgery("jti-missing", ["T-2.2.1.3", "T-2.2.1.7"], "left out", (_s, c) => ({ ...c, jti: undefined })),
  claimForgery("extra", ["T-2.2.1.7", "R-3.2.1.1"], "genuine, but an extra claim (\"scope\": \"all\") is added", (_s, c) => ({ ...c, scope: "all" })),
  {
    kind: "attack",
    id: "forge-pin",
    covers: ["T-2.2.1.4", "R-3.2.1.1"],
    description: "An R.SAD with a genuine device-key signature but the wrong PIN (an attacker holding the device but not the knowledge factor). The SAM refuses it without saying which factor failed.",
    expected: { code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED },
    async run(s) {
      const signer = await s.newSigner(); // counts toward its lockout: not the shared signer
      const tx = await s.begin(signer);
      return against(s, tx.ch.transactionId, s.sca.authorize({ transactionId: tx.ch.transactionId, rSad: await s.rSad(signer, tx.ch, { pin: "000000000" }) }));
    },
  },
  {
    kind: "attack",
    id: "dtbsr-substituted",
    covers: ["T-2.2.1.6", "R-3.2.1.4"],
    description: "With a valid SAD token, SignHash asks for a signature over a hash that is not in the authorized DTBS/R list (a document substituted in transit). The SAM refuses the whole request, signs nothing, and the token stays valid for the real hashes.",
    expected: { code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED },
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 2);
      const outcome = await outcomeOf(s.signHash(tx.token, [s.documents(1).hashes[0]!]));
      const after = await outcomeOf(s.signHash(tx.token, tx.hashes));
      return { outcome, signed: (await s.signaturesCreated(tx.ch.transactionId)) - (after === "succeeded" ? 2 : 0), problems: after === "succeeded" ? [] : ["the token no longer worked for the authorized hashes after the refused request"] };
    },
  },
  {
    kind: "attack",
    id: "dtbsr-added",
    covers: ["T-2.2.1.6", "R-3.2.1.4"],
    description: "SignHash sends the authorized hashes plus one more that the signer never saw. The request as a whole is refused; none of its hashes is signed.",
    expected: { code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED },
    alsoAccepted: [{ code: Code.PermissionDenied, reason: Reason.SIGNATURE_COUNT_EXCEEDED }],
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 2);
      return against(s, tx.ch.transactionId, s.signHash(tx.token, [...tx.hashes, s.documents(1).hashes[0]!]));
    },
  },
  {
    kind: "attack",
    id: "dtbsr-repeated",
    covers: ["T-2.2.1.6", "R-3.2.1.4"],
    description: "A hash that was already signed is sent again with the rotated token, to obtain a second signature over the same document. Each authorized hash is signed once.",
    expected: { code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED },
    alsoAccepted: [{ code: Code.PermissionDenied, reason: Reason.SIGNATURE_COUNT_EXCEEDED }],
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 2);
      const first = await s.signHash(tx.token, [tx.hashes[0]!]);
      return against(s, tx.ch.transactionId, s.signHash(first.nextSadToken, [tx.hashes[0]!]), 1);
    },
  },
  {
    kind: "attack",
    id: "count-exceeded",
    covers: ["T-2.2.1.6", "R-3.2.1.4"],
    description: "Once every authorized signature was made, the last token of the transaction is presented again with its hash, asking for one signature more than authorized. Nothing beyond the authorized count is signed.",
    expected: replayed(),
    alsoAccepted: [{ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE }, { code: Code.PermissionDenied, reason: Reason.SIGNATURE_COUNT_EXCEEDED }, { code: Code.PermissionDenied, reason: Reason.HASH_NOT_AUTHORIZED }],
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.authorized(signer, 1);
      await s.signHash(tx.token, tx.hashes);
      return against(s, tx.ch.transactionId, s.signHash(tx.token, tx.hashes), 1);
    },
  },
  {
    kind: "attack",
    id: "dtbsr-reordered",
    covers: ["T-2.2.1.6", "R-3.2.1.4"],
    description: "The device signs the digest of the DTBS/R list in another order than the SCA uploaded (two hashes swapped). The digest covers the order, so the R.SAD does not match the transaction and is refused.",
    expected: invalid,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer, 3);
      const swapped = [tx.hashes[1]!, tx.hashes[0]!, tx.hashes[2]!];
      const rSad = await s.rSad(signer, tx.ch, { dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, swapped) });
      return against(s, tx.ch.transactionId, s.sca.authorize({ transactionId: tx.ch.transactionId, rSad }));
    },
  },
  ...(["reordered", "substituted"] as const).map((change): AttackCase => ({
    kind: "attack",
    id: `dtbsr-chunk-${change}`,
    covers: ["T-2.2.1.6", "R-3.2.1.4"],
    description: `A DTBS/R list uploaded in chunks (a full first chunk of max_hashes_per_chunk hashes, then a last chunk of two) arrives ${change === "reordered" ? "with the two hashes of its last chunk swapped" : "with one hash of its last chunk replaced"} compared with what the SCA meant to send (it seals with the digest of its own list). The SAM compares digests and refuses to seal, so no challenge is ever issued for the altered list.`,
    expected: { code: Code.FailedPrecondition, reason: Reason.UPLOAD_INCOMPLETE },
    async run(s) {
      const signer = await s.sharedSigner();
      const max = await maxHashesPerChunk(s);
      const { hashes } = s.documents(max + 2);
      const begun = await s.sca.beginTransaction({ credentialId: signer.credentialId, signerId: signer.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes: hashes.slice(0, max), description: "Inkan conformance suite" });
      const [a, b] = hashes.slice(max) as [Uint8Array, Uint8Array];
      const sent = change === "reordered" ? [b, a] : [a, s.documents(1).hashes[0]!];
      await s.sca.appendHashes({ transactionId: begun.transactionId, chunkIndex: 1, hashes: sent });
      return against(s, begun.transactionId, s.sca.sealTransaction({ transactionId: begun.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, hashes) }));
    },
  })),
  {
    kind: "attack",
    id: "short-first-chunk",
    covers: ["T-2.2.1.6", "R-3.2.1.4"],
    description: "BeginTransaction announces one hash more than max_hashes_per_chunk but carries a first chunk of a single hash (none when the limit is 1). Every chunk but the last must hold exactly max_hashes_per_chunk hashes (sam.proto, AppendHashes), so chunk k starts at k * max_hashes_per_chunk; a SAM that took the short chunk would hold an upload that a client following the rule can never complete. The SAM refuses it at once, with the field named, and creates nothing.",
    expected: { code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST },
    async run(s) {
      const signer = await s.sharedSigner();
      const max = await maxHashesPerChunk(s);
      const { hashes } = s.documents(max + 1);
      let accepted: string | undefined;
      const outcome = await outcomeOf(s.sca.beginTransaction({
        credentialId: signer.credentialId, signerId: signer.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes: hashes.slice(0, max > 1 ? 1 : 0), description: "Inkan conformance suite",
      }).then((res) => {
        accepted = res.transactionId;
      }));
      return { outcome, signed: accepted ? await s.signaturesCreated(accepted) : 0 };
    },
  },
];

function replayed() {
  return { code: Code.PermissionDenied, reason: Reason.SAD_REPLAYED };
}
