import { createHash } from "node:crypto";
import { encryptToSam, newJti, rSadEnvelopeCty, rSadTyp } from "@inkan/sdk";
import type { SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import type { Observation } from "../case.js";
import { conformancePin, outcomeOf, type Session, type TestSigner } from "../session.js";
import { b64, rawJws } from "./jose.js";

/** Runs `attack` against the transaction, then counts (as its owner) the signatures it produced. */
export async function against(s: Session, transactionId: string, attack: Promise<unknown>, legitimate = 0): Promise<Observation> {
  const outcome = await outcomeOf(attack);
  return { outcome, signed: (await s.signaturesCreated(transactionId)) - legitimate };
}

/** The exact claim set the SDK signs for `ch`, with any claim overridden (undefined removes it). */
export function claimsFor(ch: SadChallenge, over: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    sub: ch.signerId, cred: ch.credentialId, aud: ch.audience, txn: ch.transactionId, chal: b64(ch.challenge),
    dtbsr: b64(ch.dtbsrDigest), n: ch.numSignatures, halg: ch.hashAlgorithm, desc: descDigest(ch.description), iat, exp: iat + 120, jti: newJti(), ...over,
  };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  return claims;
}

/** The "desc" claim (sam.proto): base64url of SHA-256 over the description's UTF-8 bytes. */
export const descDigest = (description: string): string => createHash("sha256").update(description, "utf8").digest("base64url");

/** The R.SAD header a device key signs with. */
export const jwsHeader = (signer: TestSigner, over: Record<string, unknown> = {}) => ({ alg: "ES256", typ: rSadTyp, kid: signer.deviceKey.kid, ...over });

/** An R.SAD whose inner JWS the device key really signed, over claims and a header the attacker chose. */
export async function forgedRSad(signer: TestSigner, ch: SadChallenge, claims: Record<string, unknown>, header = jwsHeader(signer)): Promise<string> {
  return envelope(ch, { sad: await rawJws(signer.deviceKey.privateKey, header, claims), pin: conformancePin });
}

/** The envelope `body` encrypted to the SAM key of `ch`, as the SDK encrypts it. */
export const envelope = (ch: SadChallenge, body: object) => encryptToSam(ch.encryptionKey!, body, { cty: rSadEnvelopeCty });

/** Starts `n` copies of `call` at once behind a barrier; how many succeeded and the refusals of the rest. */
export async function race<T>(n: number, call: () => Promise<T>): Promise<{ succeeded: T[]; refused: unknown[] }> {
  let open!: () => void;
  const barrier = new Promise<void>((resolve) => (open = resolve));
  const calls = Array.from({ length: n }, async () => {
    await barrier;
    return call();
  });
  open();
  const results = await Promise.allSettled(calls);
  return {
    succeeded: results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : [])),
    refused: results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : [])),
  };
}

/** The target's Limits.max_hashes_per_chunk (GetInfo): the size of every chunk but the last. */
export async function maxHashesPerChunk(s: Session): Promise<number> {
  const max = (await s.info()).limits?.maxHashesPerChunk ?? 0;
  if (max < 1) throw new Error("GetInfo reports no max_hashes_per_chunk");
  return max;
}
