/**
 * The signer's device checks that a SadChallenge came from its SAM (sam.proto
 * SadChallenge.sam_signature; T-2.2.1.7, R-3.2.1.1): the SCA relays the challenge, and without
 * this check it could show the signer a description, count, hash algorithm or encryption key of
 * its own. The SAM signs every challenge with a key it publishes in GetInfo
 * (challenge_signing_key); the device pins that key and refuses any challenge that is unsigned,
 * signed by another key, or whose signed values differ from the fields it shows and uses.
 * Browser-safe: jose over WebCrypto.
 */
import { base64url, calculateJwkThumbprint, compactVerify, decodeProtectedHeader, importJWK, type JWK } from "jose";
import type { SadChallenge, SamSigningKey } from "../gen/inkan/sam/v1/sam_pb.js";

/** The JWS "typ" of SadChallenge.sam_signature. */
export const sadChallengeTyp = "inkan-sad-challenge+jwt";

/** The SAM's challenge-signing key the device trusts: GetInfoResponse.challenge_signing_key as received, or its public JWK (object or JSON text). */
export type ChallengeSigningKeyInput = SamSigningKey | JWK | string;

/** Why a SadChallenge was refused. */
export type SadChallengeRefusal =
  /** The challenge carries no sam_signature. */
  | "UNSIGNED"
  /** The signature is not by the pinned SAM key (another kid, or it does not verify with the pinned key). */
  | "NOT_SIGNED_BY_SAM"
  /** The signature is not a JWS of the form sam.proto defines (header, payload). */
  | "MALFORMED"
  /** The SAM signed other values than the challenge's fields carry (a relay changed them). */
  | "FIELD_MISMATCH";

/**
 * Thrown when a SadChallenge cannot be shown to the signer nor answered with an R.SAD.
 *
 * @example
 * try {
 *   await verifySadChallenge(challenge, pinnedKey);
 * } catch (err) {
 *   if (err instanceof SadChallengeRefused) showWarning(`not from your signing service (${err.code})`);
 *   throw err;
 * }
 */
export class SadChallengeRefused extends Error {
  override readonly name = "SadChallengeRefused";
  constructor(
    readonly code: SadChallengeRefusal,
    message: string,
  ) {
    super(`SadChallenge refused (${code}): ${message}`);
  }
}

const payloadMembers = ["txn", "sub", "cred", "aud", "chal", "dtbsr", "halg", "n", "desc", "exp_ms", "ekid", "ealg", "ejkt", "lvl", "amr"];
const privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/**
 * The "desc" claim of R.SAD and of the SAM's challenge signature: base64url (no padding) of
 * SHA-256 over the UTF-8 bytes of the description, exactly as received.
 *
 * @example
 * await descriptionDigest("Invoices 2025-03") // "MRLkBrJPuE2wzCexd92Uhfp5fRyte6I5khQ-hhopx9s"
 */
export async function descriptionDigest(description: string): Promise<string> {
  return base64url.encode(new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", new TextEncoder().encode(description))));
}

/**
 * Verifies SadChallenge.sam_signature against the SAM key the device pinned, and that every value
 * the SAM signed equals the challenge's field (T-2.2.1.7). Throws {@link SadChallengeRefused}
 * otherwise. Call it before showing the challenge or building an R.SAD from it;
 * describeAuthorization, buildRSadFor and buildClaimsRSadFor call it for you.
 *
 * @example
 * const pinned = (await sam.getInfo({})).challengeSigningKey!; // once, from a channel you trust
 * await verifySadChallenge(challenge, pinned);
 */
export async function verifySadChallenge(challenge: SadChallenge, trusted: ChallengeSigningKeyInput): Promise<void> {
  const key = await trustedKey(trusted);
  const jws = challenge.samSignature;
  if (!jws) throw new SadChallengeRefused("UNSIGNED", "the challenge carries no SAM signature");
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(jws) as Record<string, unknown>;
  } catch {
    throw new SadChallengeRefused("MALFORMED", "sam_signature is not a compact JWS");
  }
  if (Object.keys(header).sort().join(",") !== "alg,kid,typ" || header.alg !== "ES256" || header.typ !== sadChallengeTyp) {
    throw new SadChallengeRefused("MALFORMED", `the signature's header is not exactly {alg ES256, typ ${sadChallengeTyp}, kid}`);
  }
  if (header.kid !== key.kid) throw new SadChallengeRefused("NOT_SIGNED_BY_SAM", "the challenge is signed by another key than the SAM's pinned challenge-signing key");
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(jws, key.publicKey, { algorithms: ["ES256"] }));
  } catch {
    throw new SadChallengeRefused("NOT_SIGNED_BY_SAM", "the signature does not verify with the SAM's pinned challenge-signing key");
  }
  let signed: Record<string, unknown>;
  try {
    signed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload)) as Record<string, unknown>;
  } catch {
    throw new SadChallengeRefused("MALFORMED", "the signed payload is not UTF-8 JSON");
  }
  if (typeof signed !== "object" || signed === null || Array.isArray(signed) || Object.keys(signed).sort().join(",") !== [...payloadMembers].sort().join(",")) {
    throw new SadChallengeRefused("MALFORMED", "the signed payload does not have exactly the members sam.proto lists");
  }
  const shown = await signedFormOf(challenge);
  for (const name of payloadMembers) {
    if (JSON.stringify(signed[name]) !== JSON.stringify(shown[name])) {
      throw new SadChallengeRefused("FIELD_MISMATCH", `the SAM signed another value for "${name}" than the challenge carries`);
    }
  }
}

/** The challenge's fields in the form the SAM signs them (sam.proto SadChallenge.sam_signature). */
async function signedFormOf(c: SadChallenge): Promise<Record<string, unknown>> {
  const e = c.encryptionKey;
  let ejkt: string | undefined;
  if (e) {
    try {
      const jwk = JSON.parse(e.jwk) as JWK;
      ejkt = await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } as JWK, "sha256");
    } catch {
      ejkt = undefined; // compared below: refused as a mismatch
    }
  }
  return {
    txn: c.transactionId,
    sub: c.signerId,
    cred: c.credentialId,
    aud: c.audience,
    chal: base64url.encode(c.challenge),
    dtbsr: base64url.encode(c.dtbsrDigest),
    halg: c.hashAlgorithm,
    n: c.numSignatures,
    desc: await descriptionDigest(c.description),
    exp_ms: c.expiresAt ? Number(c.expiresAt.seconds) * 1000 + Math.floor(c.expiresAt.nanos / 1e6) : undefined,
    ekid: e?.kid,
    ealg: e?.alg,
    ejkt,
    lvl: c.assuranceLevel,
    amr: [...c.authenticationMethods],
  };
}

/** The pinned key, checked: a public EC P-256 JWK whose kid (if given) is its RFC 7638 thumbprint. */
async function trustedKey(input: ChallengeSigningKeyInput): Promise<{ kid: string; publicKey: Awaited<ReturnType<typeof importJWK>> }> {
  let jwk: JWK;
  let kid: string | undefined;
  try {
    if (typeof input === "string") jwk = JSON.parse(input) as JWK;
    else if ("$typeName" in input) {
      jwk = JSON.parse(input.jwk) as JWK;
      kid = input.kid;
    } else jwk = input;
  } catch {
    throw new TypeError("the SAM's challenge-signing key is not a JSON Web Key");
  }
  if (typeof jwk !== "object" || jwk === null) throw new TypeError("the SAM's challenge-signing key is not a JSON Web Key");
  if (privateMembers.some((m) => m in jwk)) throw new TypeError("the SAM's challenge-signing key carries a private member; refusing it");
  if (jwk.kty !== "EC" || jwk.crv !== "P-256" || typeof jwk.x !== "string" || typeof jwk.y !== "string") throw new TypeError("the SAM's challenge-signing key is not an EC P-256 key");
  if (jwk.use !== undefined && jwk.use !== "sig") throw new TypeError('the SAM\'s challenge-signing key is not for signatures (use must be "sig")');
  const thumbprint = await calculateJwkThumbprint({ kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y }, "sha256");
  for (const named of [kid, jwk.kid]) {
    if (named !== undefined && named !== thumbprint) throw new TypeError("the SAM's challenge-signing key names a kid that is not its thumbprint");
  }
  return { kid: thumbprint, publicKey: await importJWK({ kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y }, "ES256") };
}
