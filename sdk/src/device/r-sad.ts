/**
 * The signer-device builder of R.SAD (sam.proto, AuthorizeRequest.r_sad; R-3.2.1.2, R-3.2.1.3):
 * the device key (possession) signs the transaction's challenge, DTBS/R digest, count, hash
 * algorithm and description digest for this SAM, and the JWS travels with the PIN (knowledge) in a
 * JWE to the SAM's key, so the SCA relays it without reading the PIN or changing anything
 * unnoticed. For the methods without a device key (PIN + TOTP, PIN alone, login assertion)
 * {@link buildClaimsRSad} puts the same claims, unsigned, in the envelope beside the factors.
 * {@link buildRSadFor} and {@link buildClaimsRSadFor} first check that the SadChallenge came from
 * the SAM (R-3.2.1.1, T-2.2.1.7). Browser-safe: jose over WebCrypto.
 */
import { base64url } from "jose";
import type { SadChallenge, SamEncryptionKey } from "../gen/inkan/sam/v1/sam_pb.js";
import type { HashAlgorithm } from "../gen/inkan/sam/v1/types_pb.js";
import { newJti, signDeviceJws, type DeviceKey } from "./device-key.js";
import { encryptToSam, type SamPublicKey } from "./encrypt-to-sam.js";
import { descriptionDigest, verifySadChallenge, type ChallengeSigningKeyInput } from "./sad-challenge.js";

/** The JWE "cty" and JWS "typ" of R.SAD. */
export const rSadEnvelopeCty = "inkan-sad-envelope+json";
export const rSadTyp = "inkan-sad+jwt";

export interface RSadInput {
  /** A device key registered to the signer at activation. */
  deviceKey: DeviceKey;
  /** SadChallenge.signer_id: "sub". */
  signerId: string;
  /** SadChallenge.credential_id: "cred". */
  credentialId: string;
  /** SadChallenge.audience (the SAM id): "aud". */
  samId: string;
  /** SadChallenge.transaction_id: "txn". */
  transactionId: string;
  /** SadChallenge.challenge: "chal". */
  challenge: Uint8Array;
  /** SadChallenge.dtbsr_digest: "dtbsr". Check it against the documents shown to the signer. */
  dtbsrDigest: Uint8Array;
  /** SadChallenge.num_signatures: "n". The count shown to the signer. */
  count: number;
  /** SadChallenge.hash_algorithm: "halg" (its enum number). The hash algorithm shown to the signer. */
  hashAlgorithm: HashAlgorithm;
  /** SadChallenge.description: "desc" is its digest. The description shown to the signer. */
  description: string;
  /** The signer's PIN; only the SAM can read it. */
  pin: string;
  /** SadChallenge.encryption_key (or a current key from GetInfo). */
  samKey: SamEncryptionKey | SamPublicKey;
  /** Seconds the R.SAD stays valid; default 120, at most the SAM's max_sad_lifetime (300 s by default). */
  lifetimeSeconds?: number;
  /** The signing instant; default now. */
  now?: Date;
}

/**
 * Builds R.SAD for AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN: the "inkan-sad+jwt" JWS over exactly
 * {sub, cred, aud, txn, chal, dtbsr, n, halg, desc, iat, exp, jti} (a fresh jti each call), in the
 * envelope {sad, pin} encrypted to the SAM key. Returns AuthorizeRequest.r_sad. It takes the values
 * as given: for a SadChallenge relayed by an SCA use {@link buildRSadFor}, which checks the SAM's
 * signature first.
 *
 * @example
 * const rSad = await buildRSad({ deviceKey, signerId, credentialId, samId: ch.audience,
 *   transactionId: ch.transactionId, challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest,
 *   count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin,
 *   samKey: ch.encryptionKey! });
 * const { sadToken } = await sam.authorize({ transactionId: ch.transactionId, rSad });
 */
export async function buildRSad(input: RSadInput): Promise<string> {
  // "n" and "halg" are integers on the wire (sam.proto).
  const claims = { cred: input.credentialId, txn: input.transactionId, dtbsr: base64url.encode(input.dtbsrDigest), ...(await seenClaims(input)) };
  const sad = await signDeviceJws({
    deviceKey: input.deviceKey,
    typ: rSadTyp,
    signerId: input.signerId,
    audience: input.samId,
    challenge: input.challenge,
    claims,
    ...(input.lifetimeSeconds !== undefined ? { lifetimeSeconds: input.lifetimeSeconds } : {}),
    ...(input.now ? { now: input.now } : {}),
  });
  return encryptToSam(input.samKey, { sad, pin: input.pin }, { cty: rSadEnvelopeCty });
}

/** The transaction an R.SAD answers, as SadChallenge carries it. */
export type RSadTransactionInput = Pick<RSadInput, "signerId" | "credentialId" | "samId" | "transactionId" | "challenge" | "dtbsrDigest" | "count" | "hashAlgorithm" | "description" | "samKey" | "lifetimeSeconds" | "now">;

/**
 * The factors of a method without a device key (sam.proto AuthenticationMethod):
 * AUTHENTICATION_METHOD_PIN_AND_TOTP {pin, otp}, AUTHENTICATION_METHOD_PIN {pin},
 * AUTHENTICATION_METHOD_LOGIN_ASSERTION {login}: an ID token from the RSSP's OpenID provider whose
 * "nonce" is base64url(SadChallenge.challenge).
 */
export type ClaimsRSadFactors = { pin: string; otp?: string } | { login: string };

export interface ClaimsRSadInput extends RSadTransactionInput {
  factors: ClaimsRSadFactors;
}

const otpPattern = /^[0-9]{6,8}$/;

/**
 * Builds R.SAD for the methods without a device key: the envelope {claims, pin[, otp]} or
 * {claims, login}, where claims is exactly {sub, cred, aud, txn, chal, dtbsr, n, halg, desc, iat,
 * exp, jti} (a fresh jti each call), encrypted to the SAM key. Every claim and factor travels only
 * inside the JWE. Returns AuthorizeRequest.r_sad; the SAM refuses a method below the credential's
 * assurance level (SadChallenge.authentication_methods lists the accepted ones). For a SadChallenge
 * relayed by an SCA use {@link buildClaimsRSadFor}, which checks the SAM's signature first.
 *
 * @example
 * const rSad = await buildClaimsRSad({ signerId: ch.signerId, credentialId: ch.credentialId,
 *   samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge,
 *   dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm,
 *   description: ch.description, samKey: ch.encryptionKey!, factors: { pin, otp } });
 */
export async function buildClaimsRSad(input: ClaimsRSadInput): Promise<string> {
  const seen = await seenClaims(input);
  // An optional member left undefined is absent (never sent as null).
  const f = Object.fromEntries(Object.entries(input.factors).filter(([, v]) => v !== undefined)) as { pin?: unknown; otp?: unknown; login?: unknown };
  const keys = Object.keys(f).sort().join(",");
  if (!["pin", "otp,pin", "login"].includes(keys)) throw new TypeError("factors must be {pin}, {pin, otp} or {login}");
  if (Object.values(f).some((v) => typeof v !== "string")) throw new TypeError("factors are strings");
  if (f.otp !== undefined && !otpPattern.test(f.otp as string)) throw new TypeError("otp must be 6 to 8 digits");
  const iat = Math.floor((input.now ?? new Date()).getTime() / 1000);
  const claims = {
    sub: input.signerId,
    cred: input.credentialId,
    aud: input.samId,
    txn: input.transactionId,
    chal: base64url.encode(input.challenge),
    dtbsr: base64url.encode(input.dtbsrDigest),
    ...seen,
    iat,
    exp: iat + (input.lifetimeSeconds ?? 120),
    jti: newJti(),
  };
  return encryptToSam(input.samKey, { claims, ...f }, { cty: rSadEnvelopeCty });
}

/**
 * R-3.2.1.1, T-2.2.1.7: "n", "halg" and "desc", what the device showed the signer (count, hash
 * algorithm, description); integers on the wire.
 */
async function seenClaims(input: Pick<RSadInput, "count" | "hashAlgorithm" | "description">): Promise<{ n: number; halg: number; desc: string }> {
  if (!Number.isSafeInteger(input.count) || input.count < 1) throw new TypeError("count must be a positive integer");
  if (!Number.isSafeInteger(input.hashAlgorithm) || input.hashAlgorithm < 1) throw new TypeError("hashAlgorithm must be a HashAlgorithm value");
  if (typeof input.description !== "string") throw new TypeError("description must be the string shown to the signer");
  return { n: input.count, halg: input.hashAlgorithm, desc: await descriptionDigest(input.description) };
}

/** Where the SadChallenge's values come from: the SAM key the device pinned (GetInfoResponse.challenge_signing_key). */
export interface FromChallengeOptions {
  /** The SAM's challenge-signing key, pinned by the device (not taken from the SCA with the challenge). */
  challengeSigningKey: ChallengeSigningKeyInput;
  /** Seconds the R.SAD stays valid; default 120. */
  lifetimeSeconds?: number;
}

/** Every claim and the SAM key of a SadChallenge, after the SAM's signature on it was verified. */
async function verifiedTransaction(challenge: SadChallenge, o: FromChallengeOptions): Promise<RSadTransactionInput> {
  // R-3.2.1.1, T-2.2.1.7: only a challenge this SAM signed, with exactly the values it signed.
  await verifySadChallenge(challenge, o.challengeSigningKey);
  if (!challenge.encryptionKey) throw new TypeError("the challenge carries no SAM encryption key");
  return {
    signerId: challenge.signerId,
    credentialId: challenge.credentialId,
    samId: challenge.audience,
    transactionId: challenge.transactionId,
    challenge: challenge.challenge,
    dtbsrDigest: challenge.dtbsrDigest,
    count: challenge.numSignatures,
    hashAlgorithm: challenge.hashAlgorithm,
    description: challenge.description,
    samKey: challenge.encryptionKey,
    ...(o.lifetimeSeconds !== undefined ? { lifetimeSeconds: o.lifetimeSeconds } : {}),
  };
}

/**
 * {@link buildRSad} for a SadChallenge as the SCA relayed it: first verifies the SAM's signature
 * on it against the pinned key (throws SadChallengeRefused for an unsigned, foreign-signed or
 * altered challenge), then takes every claim from the challenge and the factors from the device.
 * Show the signer describeAuthorization(challenge, ...) first.
 *
 * @example
 * const rSad = await buildRSadFor(challenge, { deviceKey, pin, challengeSigningKey: pinnedKey });
 */
export async function buildRSadFor(challenge: SadChallenge, device: FromChallengeOptions & { deviceKey: DeviceKey; pin: string }): Promise<string> {
  return buildRSad({ ...(await verifiedTransaction(challenge, device)), deviceKey: device.deviceKey, pin: device.pin });
}

/**
 * {@link buildClaimsRSad} for a SadChallenge as the SCA relayed it, after the same check as
 * {@link buildRSadFor}.
 *
 * @example
 * const rSad = await buildClaimsRSadFor(challenge, { factors: { pin, otp }, challengeSigningKey: pinnedKey });
 */
export async function buildClaimsRSadFor(challenge: SadChallenge, o: FromChallengeOptions & { factors: ClaimsRSadFactors }): Promise<string> {
  return buildClaimsRSad({ ...(await verifiedTransaction(challenge, o)), factors: o.factors });
}
