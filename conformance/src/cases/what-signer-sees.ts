/**
 * What the signer sees (R-3.2.1.1, T-2.2.1.7, T-2.2.1.6; issue 13, finding 6): the SCA relays the
 * SadChallenge to the signer's device, so it could show the signer one description (or count, or
 * hash algorithm) and have the SAM record another. Two protections, each checked from outside:
 * the R.SAD binds the description digest ("desc") and hash algorithm ("halg") the device showed,
 * and the SAM refuses an R.SAD whose values differ or are missing; and the SAM signs every
 * SadChallenge with the key GetInfo publishes, so that the SDK's device part refuses a challenge
 * that is unsigned, signed by another key, or altered on its way.
 */
import { randomBytes } from "node:crypto";
import { clone } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { buildRSadFor, dtbsrDigest, Reason, SadChallengeRefused, sadChallengeTyp, verifySadChallenge } from "@inkan/sdk";
import { SadChallengeSchema, type SadChallenge, type SamSigningKey } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { calculateJwkThumbprint, CompactSign, decodeJwt, exportJWK, generateKeyPair } from "jose";
import type { AttackCase, Observation } from "../case.js";
import { conformancePin, type Session, type TestSigner } from "../session.js";
import { against, claimsFor, descDigest, forgedRSad, maxHashesPerChunk } from "./helpers.js";

const invalid = { code: Code.PermissionDenied, reason: Reason.SAD_INVALID };

/** A genuine R.SAD (device key, PIN) for `ch` with the claims the attacker chose. */
async function authorizeWith(s: Session, signer: TestSigner, ch: SadChallenge, over: Record<string, unknown>): Promise<Observation> {
  return against(s, ch.transactionId, s.sca.authorize({ transactionId: ch.transactionId, rSad: await forgedRSad(signer, ch, claimsFor(ch, over)) }));
}

/** The key GetInfo publishes for SadChallenge signatures; a problem when it is missing. */
async function publishedKey(s: Session, problems: string[]): Promise<SamSigningKey | undefined> {
  const key = (await s.info()).challengeSigningKey;
  if (!key) problems.push("GetInfo publishes no challenge_signing_key");
  return key;
}

/**
 * Runs the signer's device (the SDK's buildRSadFor) on `ch` and expects it to refuse with `code`;
 * any other result is a problem. Then ends the transaction: nothing may have been signed.
 */
async function deviceRefuses(s: Session, ch: SadChallenge, key: SamSigningKey, signer: TestSigner, code: SadChallengeRefused["code"], what: string): Promise<Observation> {
  const problems: string[] = [];
  try {
    await buildRSadFor(ch, { deviceKey: signer.deviceKey, pin: conformancePin, challengeSigningKey: key });
    problems.push(`the SDK's device part built an R.SAD from ${what}`);
  } catch (err) {
    if (!(err instanceof SadChallengeRefused)) problems.push(`the SDK failed with ${String(err)} instead of SadChallengeRefused`);
    else if (err.code !== code) problems.push(`the SDK refused with ${err.code}, expected ${code}`);
  }
  return { outcome: "succeeded", signed: await s.signaturesCreated(ch.transactionId), problems };
}

/** `ch` re-signed by a key the SAM never had, as sam.proto's signature form, with the payload from the genuine one. */
async function foreignSigned(ch: SadChallenge, kid: "own" | "sam's", sam: SamSigningKey): Promise<SadChallenge> {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const payload = decodeJwt(ch.samSignature);
  const out = clone(SadChallengeSchema, ch);
  out.samSignature = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: "ES256", typ: sadChallengeTyp, kid: kid === "own" ? await calculateJwkThumbprint({ kty: kty!, crv: crv!, x: x!, y: y! }, "sha256") : sam.kid })
    .sign(privateKey);
  return out;
}

export const whatSignerSeesCases: AttackCase[] = [
  {
    kind: "attack",
    id: "what-signer-sees-description",
    covers: ["R-3.2.1.1", "T-2.2.1.7"],
    description: 'The SCA showed the signer another description than the one it gave the SAM ("Birthday card" for a loan contract): the device-key-signed R.SAD carries the digest of what the signer saw in "desc", every other claim genuine. The SAM checks "desc" against the transaction\'s description, refuses the R.SAD, and nothing is signed.',
    expected: invalid,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer);
      return authorizeWith(s, signer, tx.ch, { desc: descDigest("Birthday card") });
    },
  },
  {
    kind: "attack",
    id: "what-signer-sees-hash-algorithm",
    covers: ["R-3.2.1.1", "T-2.2.1.7", "T-2.2.1.6"],
    description: 'The R.SAD\'s "halg" names another hash algorithm (SHA-512) than the transaction\'s (SHA-256), as a device shown an altered challenge would sign it. The SAM refuses the R.SAD and nothing is signed.',
    expected: invalid,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer);
      return authorizeWith(s, signer, tx.ch, { halg: HashAlgorithm.SHA512 });
    },
  },
  {
    kind: "attack",
    id: "what-signer-sees-claims-missing",
    covers: ["R-3.2.1.1", "T-2.2.1.7"],
    description: 'An R.SAD without "desc" and "halg" (a device that does not bind what it showed the signer), otherwise genuine and signed by the device key. sam.proto requires exactly its claims, so the SAM refuses it and nothing is signed.',
    expected: invalid,
    async run(s) {
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer);
      return authorizeWith(s, signer, tx.ch, { desc: undefined, halg: undefined });
    },
  },
  {
    kind: "attack",
    id: "challenge-signed-by-sam",
    covers: ["T-2.2.1.7", "R-3.2.1.1"],
    description: "Every SadChallenge the SAM hands out (BeginTransaction with an inline list, SealTransaction after a chunked upload) carries sam_signature, which the SDK's device part verifies against the challenge_signing_key GetInfo publishes, over exactly the challenge's fields; CreateChallenge repeats the same key. Without it a device cannot tell the SAM's challenge from one an SCA made up.",
    expected: "success",
    async run(s) {
      const problems: string[] = [];
      const key = await publishedKey(s, problems);
      const signer = await s.sharedSigner();
      const inline = await s.begin(signer, 2);
      // Chunked: a full first chunk of max_hashes_per_chunk hashes, then the last one.
      const max = await maxHashesPerChunk(s);
      const { hashes } = s.documents(max + 1);
      const begun = await s.sca.beginTransaction({ credentialId: signer.credentialId, signerId: signer.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes: hashes.slice(0, max), description: "Inkan conformance suite, chunked" });
      await s.sca.appendHashes({ transactionId: begun.transactionId, chunkIndex: 1, hashes: hashes.slice(max) });
      const sealed = (await s.sca.sealTransaction({ transactionId: begun.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, hashes) })).sadChallenge!;
      if (key) {
        for (const [what, ch] of [["BeginTransaction", inline.ch], ["SealTransaction", sealed]] as const) {
          await verifySadChallenge(ch, key).catch((err: unknown) => problems.push(`${what}'s challenge: ${String(err)}`));
        }
        const viaSigner = (await s.device.createChallenge({ signerId: signer.signerId, purpose: ChallengePurpose.PIN_CHANGE })).challengeSigningKey;
        if (viaSigner?.kid !== key.kid || viaSigner.jwk !== key.jwk) problems.push("CreateChallenge publishes another challenge-signing key than GetInfo");
      }
      const signed = (await s.signaturesCreated(inline.ch.transactionId)) + (await s.signaturesCreated(sealed.transactionId));
      return { outcome: "succeeded", signed, problems };
    },
  },
  {
    kind: "attack",
    id: "device-refuses-unsigned-challenge",
    covers: ["T-2.2.1.7", "R-3.2.1.1"],
    description: "A relay strips the SAM's signature from a genuine SadChallenge (as it would to pass off one it made up). The SDK's device part (buildRSadFor, with the key pinned from GetInfo) refuses it as UNSIGNED and builds no R.SAD; the transaction stays unsigned.",
    expected: "success",
    async run(s) {
      const problems: string[] = [];
      const key = await publishedKey(s, problems);
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer);
      if (!key) return { outcome: "succeeded", signed: await s.signaturesCreated(tx.ch.transactionId), problems };
      const unsigned = clone(SadChallengeSchema, tx.ch);
      unsigned.samSignature = "";
      return deviceRefuses(s, unsigned, key, signer, "UNSIGNED", "an unsigned challenge");
    },
  },
  {
    kind: "attack",
    id: "device-refuses-foreign-signed-challenge",
    covers: ["T-2.2.1.7", "R-3.2.1.1"],
    description: "A relay re-signs a SadChallenge with a key of its own, once under its own kid and once under the SAM's kid. The SDK's device part refuses both as NOT_SIGNED_BY_SAM; and a genuine signature with the description changed after signing is refused as FIELD_MISMATCH. No R.SAD is built and nothing is signed.",
    expected: "success",
    async run(s) {
      const problems: string[] = [];
      const key = await publishedKey(s, problems);
      const signer = await s.sharedSigner();
      const tx = await s.begin(signer);
      if (!key) return { outcome: "succeeded", signed: await s.signaturesCreated(tx.ch.transactionId), problems };
      const altered = clone(SadChallengeSchema, tx.ch);
      altered.description = `Birthday card ${randomBytes(4).toString("hex")}`;
      const observations = [
        await deviceRefuses(s, await foreignSigned(tx.ch, "own", key), key, signer, "NOT_SIGNED_BY_SAM", "a challenge signed by a foreign key"),
        await deviceRefuses(s, await foreignSigned(tx.ch, "sam's", key), key, signer, "NOT_SIGNED_BY_SAM", "a challenge signed by a foreign key under the SAM's kid"),
        await deviceRefuses(s, altered, key, signer, "FIELD_MISMATCH", "a challenge whose description was changed after the SAM signed it"),
      ];
      return { outcome: "succeeded", signed: observations.at(-1)!.signed, problems: [...problems, ...observations.flatMap((o) => o.problems ?? [])] };
    },
  },
];
