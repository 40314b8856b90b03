/**
 * The signer-device builder of R.SAD (sam.proto, AuthorizeRequest.r_sad; R-3.2.1.2, R-3.2.1.3):
 * the device key (possession) signs the transaction's challenge, DTBS/R digest and count for this
 * SAM, and the JWS travels with the PIN (knowledge) in a JWE to the SAM's key, so the SCA relays it
 * without reading the PIN or changing anything unnoticed. For the methods without a device key
 * (PIN + TOTP, PIN alone, login assertion) {@link buildClaimsRSad} puts the same claims, unsigned,
 * in the envelope beside the factors. Browser-safe: jose over WebCrypto.
 */
import { base64url } from "jose";
import type { SadChallenge, SamEncryptionKey } from "../gen/inkan/sam/v1/sam_pb.js";
import { newJti, signDeviceJws, type DeviceKey } from "./device-key.js";
import { encryptToSam, type SamPublicKey } from "./encrypt-to-sam.js";

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
  /** SadChallenge.num_signatures: "n". */
  count: number;
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
 * {sub, cred, aud, txn, chal, dtbsr, n, iat, exp, jti} (a fresh jti each call), in the envelope
 * {sad, pin} encrypted to the SAM key. Returns AuthorizeRequest.r_sad.
 *
 * @example
 * const rSad = await buildRSad({ deviceKey, signerId, credentialId, samId: ch.audience,
 *   transactionId: ch.transactionId, challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest,
 *   count: ch.numSignatures, pin, samKey: ch.encryptionKey! });
 * const { sadToken } = await sam.authorize({ transactionId: ch.transactionId, rSad });
 */
export async function buildRSad(input: RSadInput): Promise<string> {
  if (!Number.isSafeInteger(input.count) || input.count < 1) throw new TypeError("count must be a positive integer");
  // "n" is an integer on the wire (sam.proto).
  const claims = { cred: input.credentialId, txn: input.transactionId, dtbsr: base64url.encode(input.dtbsrDigest), n: input.count };
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
export type RSadTransactionInput = Pick<RSadInput, "signerId" | "credentialId" | "samId" | "transactionId" | "challenge" | "dtbsrDigest" | "count" | "samKey" | "lifetimeSeconds" | "now">;

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
 * {claims, login}, where claims is exactly {sub, cred, aud, txn, chal, dtbsr, n, iat, exp, jti}
 * (a fresh jti each call), encrypted to the SAM key. Every claim and factor travels only inside
 * the JWE. Returns AuthorizeRequest.r_sad; the SAM refuses a method below the credential's
 * assurance level (SadChallenge.authentication_methods lists the accepted ones).
 *
 * @example
 * const rSad = await buildClaimsRSad({ signerId: ch.signerId, credentialId: ch.credentialId,
 *   samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge,
 *   dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, samKey: ch.encryptionKey!,
 *   factors: { pin, otp } });
 */
export async function buildClaimsRSad(input: ClaimsRSadInput): Promise<string> {
  if (!Number.isSafeInteger(input.count) || input.count < 1) throw new TypeError("count must be a positive integer");
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
    n: input.count, // an integer on the wire (sam.proto)
    iat,
    exp: iat + (input.lifetimeSeconds ?? 120),
    jti: newJti(),
  };
  return encryptToSam(input.samKey, { claims, ...f }, { cty: rSadEnvelopeCty });
}

/**
 * {@link buildRSad} for a SadChallenge as the SCA relayed it: every claim taken from the
 * challenge, the factors from the device. Show the signer describeAuthorization(challenge) first.
 *
 * @example
 * const rSad = await buildRSadFor(challenge, { deviceKey, pin });
 */
export function buildRSadFor(challenge: SadChallenge, device: { deviceKey: DeviceKey; pin: string; lifetimeSeconds?: number }): Promise<string> {
  if (!challenge.encryptionKey) throw new TypeError("the challenge carries no SAM encryption key");
  return buildRSad({
    deviceKey: device.deviceKey,
    pin: device.pin,
    signerId: challenge.signerId,
    credentialId: challenge.credentialId,
    samId: challenge.audience,
    transactionId: challenge.transactionId,
    challenge: challenge.challenge,
    dtbsrDigest: challenge.dtbsrDigest,
    count: challenge.numSignatures,
    samKey: challenge.encryptionKey,
    ...(device.lifetimeSeconds !== undefined ? { lifetimeSeconds: device.lifetimeSeconds } : {}),
  });
}
