/**
 * Verification of R.SAD (sam.proto, AuthorizeRequest.r_sad; R-3.2.1.1, R-3.2.1.2): the SAM key's
 * JWE, the envelope inside it, the device-key JWS (or the plain claims) inside that, and the
 * factors (PIN, OTP, login assertion). Every link is checked against the transaction being
 * authorized; only the caller (Authorize) moves the transaction.
 *
 * Choices where sam.proto leaves room (each also said where it is enforced):
 * - Order of checks: size, decryption, envelope, method, device key (by "kid", only among the
 *   signer's registered keys), signature, claims, then the jti is used up, then signer and
 *   credential status, the credential's level, and only then the PIN (and OTP or login assertion). The jti is consumed BEFORE the PIN is tried, as activation does:
 *   a captured R.SAD (even one with a wrong PIN) counts at most once toward the signer's lockout,
 *   and of N concurrent copies exactly one reaches the (slow) PIN check.
 * - The jti once-only key is "device-jws <jti>", the namespace activation and PIN change use, so a
 *   jti is accepted once across every kind of device-key JWS and R.SAD; kept until exp + the skew.
 * - Which factors the envelope carries decides the method (authentication-methods.ts): {sad, pin}
 *   device key + PIN and {claims, pin, otp} PIN + TOTP (level 2); {claims, pin} PIN alone and
 *   {claims, login} the login assertion (level 1). Any other combination, a method the policy does
 *   not enable (or the login assertion without a configured OpenID provider), or a method below the
 *   credential's level is ASSURANCE_LEVEL_NOT_MET; the level is checked after the
 *   signer and credential status and before any factor.
 * - "claims" (the methods without a device key) are the JWS payload's claim set with the same
 *   checks (checkClaimSet) and the same jti namespace.
 * - PIN + TOTP: both factors are always checked; one failed attempt counts once, whichever failed.
 *   The TOTP code matches within one step either way and is used up ("totp <factor> <step>"),
 *   also when the PIN beside it is wrong: a code is accepted at most once, whatever came with it.
 * - A refused login assertion is AUTHENTICATION_FAILED and does not count toward the lockout (it
 *   is a signature check, not a guess at a secret the signer holds).
 * - A signer without an active PIN factor fails like a wrong PIN (and counts).
 * - Every refusal is audited as "sad.verified" with its reason; a wrong PIN or OTP also as
 *   "factor.check_failed" (by the lockout). The specific cause is only in the error's `cause`.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { durationMs, type PinHashCost, type PolicyVersion, type SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { factorVerified, sadVerified, type Actor, type AuditEvent, type ScaActor } from "../audit/events.js";
import type { RandomSource, SystemKeys } from "../crypto/port.js";
import { InkanError, type ReasonCode } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import { maxRSadBytes, sadInvalidMessage, type SamEncryptionKeys } from "../keys/sam-encryption-keys.js";
import { checkClaimSet, DeviceProofExpired, DeviceProofRefused, parseStrictJsonObject, peekDeviceJws, policyNameOf, registeredDeviceKey, verifyDeviceJws } from "../registration/device-jws.js";
import { credentialRefusal, isCsrApproval } from "../registration/credential-usability.js";
import type { CredentialBody } from "../registration/credentials.js";
import { recordFactorSuccess, withFactorAttempt, type FactorCheck } from "../registration/lockout.js";
import { checkPinFactor } from "../registration/pin-hash.js";
import type { SignerBody, Signers } from "../registration/signers.js";
import type { TotpFactorBody } from "../registration/totp.js";
import type { FieldCipher } from "../integrity/record-sealer.js";
import type { AttemptReservations, FactorRecord, FactorType, OneTimeObjects } from "../store/port.js";
import { credentialMethods, enforcedMethods, methodOfEnvelope, type AuthenticationMethodName } from "./authentication-methods.js";
import type { LoginAssertionVerifier } from "./login-assertion.js";
import { assertNoDuplicateMembers } from "./sad-claims.js";
import { checkSeenClaims, seenClaims, type SeenByTheSigner } from "./seen-claims.js";
import { matchTotpStep } from "./totp-check.js";

/** The JWE "cty" and JWS "typ" of R.SAD (sam.proto). */
export const rSadEnvelopeCty = "inkan-sad-envelope+json";
export const rSadTyp = "inkan-sad+jwt";
/** The claims of the inner JWS, exactly (sam.proto). */
export const rSadClaims = ["sub", "cred", "aud", "txn", "chal", "dtbsr", "n", ...seenClaims, "iat", "exp", "jti"] as const;
/** The largest envelope plaintext (sam.proto: at most 8,192 bytes). */
const maxEnvelopeBytes = 8_192;
const envelopeMembers = new Set(["sad", "claims", "pin", "otp", "login"]);
const b64u = /^[A-Za-z0-9_-]+$/;
/** sam.proto: "otp" is 6 to 8 digits as a string. */
const otpPattern = /^[0-9]{6,8}$/;
/** TOTP steps accepted either side of the current one (clock drift of the signer's generator). */
const totpWindowSteps = 1;
const thumbprintPattern = /^[A-Za-z0-9_-]{43}$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The transaction an R.SAD must match, as the caller (Authorize) read it from the store. */
export interface RSadTransaction extends SeenByTheSigner {
  id: string;
  signerId: string;
  credentialId: string;
  /** The SCA that opened the transaction (for the audit record). */
  sca: ScaActor;
  /** The DTBS/R digest the SAM computed when the list was sealed. */
  digest: Uint8Array;
  /** num_signatures. */
  count: number;
  /** base64url(SHA-256(challenge bytes)), as stored: the challenge itself is never kept. */
  challengeHash: string;
  expiresAt: Date;
  /** When the transaction was created: one from before the credential's last suspension is refused. */
  createdAt: Date;
}

export interface VerifyRSadInput {
  /** AuthorizeRequest.r_sad: a compact JWE to a SAM encryption key. */
  rSad: string;
  transaction: RSadTransaction;
  /** This SAM's id (GetInfoResponse.sam_id): the only accepted "aud". */
  samId: string;
  now: Date;
  requestId?: string | undefined;
}

export interface RSadVerifierDeps {
  samKeys: Pick<SamEncryptionKeys, "decryptCompactJwe">;
  /** Signer, credential and factor records (sealed, verified on read); the lockout writes through it. */
  records: VerifiedRecords;
  signers: Pick<Signers, "record" | "replace">;
  oneTime: Pick<OneTimeObjects, "useJti">;
  /** The signer's attempt budget (registration/lockout.ts): a factor check is reserved before it runs. */
  attempts: AttemptReservations;
  /** The module's HMAC: the PIN pepper (pin-hash.ts); its RNG: the salt of a PIN re-hashed with the policy's cost. */
  crypto: Pick<SystemKeys, "hmacSha256"> & RandomSource;
  /** The module's AES key: decrypts the TOTP secret (encrypted at rest, R-3.1.1.1). */
  fields: Pick<FieldCipher, "decrypt">;
  /** The RSSP's OpenID provider; undefined when none is configured (no login assertion then). */
  loginAssertions?: LoginAssertionVerifier | undefined;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
}

export interface VerifiedRSad {
  signerId: string;
  credentialId: string;
  /** The authentication method the envelope used. */
  method: AuthenticationMethodName;
  /** The device key that signed (its RFC 7638 thumbprint), for device key + PIN. */
  deviceKeyId?: string;
  /** The factors verified, in the order checked (none for the login assertion). */
  factors: FactorType[];
}

const invalid = (cause: unknown) => new InkanError("SAD_INVALID", sadInvalidMessage, { cause });
const replayed = () => new InkanError("SAD_REPLAYED", "the R.SAD was already used");
const expired = (cause: unknown) => new InkanError("EXPIRED", "the R.SAD expired", { cause });
const authenticationFailed = (cause?: unknown) => new InkanError("AUTHENTICATION_FAILED", "the signer could not be authenticated", { cause });
const levelNotMet = (cause: unknown) => new InkanError("ASSURANCE_LEVEL_NOT_MET", "the R.SAD does not carry the factors the credential requires", { cause });

/**
 * Verifies an R.SAD for `transaction` (R-3.2.1.1): every link, in the order of the module comment.
 * Returns the verified signer, credential and factors; throws one InkanError otherwise (reasons as
 * sam.proto's Authorize lists them), audited. Does not change the transaction.
 *
 * @example
 * const { factors } = await verifyRSad({ rSad, transaction, samId, now }, deps);
 */
export async function verifyRSad(input: VerifyRSadInput, deps: RSadVerifierDeps): Promise<VerifiedRSad> {
  const tx = input.transaction;
  const about = { sca: tx.sca, signerId: tx.signerId, credentialId: tx.credentialId, transactionId: tx.id, ...req(input) };
  let out: VerifiedRSad;
  try {
    out = await verifyChecked(input, deps, sadVerified({ ...about, verdict: { outcome: "SUCCESS" } }));
  } catch (err) {
    const code: ReasonCode | undefined = err instanceof InkanError ? err.code : undefined;
    const outcome = code === "CRYPTO_MODULE_FAILURE" || code === "STORE_FAILURE" || code === "INTEGRITY_VIOLATION" || code === undefined ? "FAILURE" : "DENIED";
    if (code !== "AUDIT_FAILURE") await deps.audit.record(sadVerified({ ...about, verdict: { outcome, reason: code } }));
    throw err;
  }
  return out;
}

/** `verified`: the verdict's audit event, recorded after the factors' once every check passed. */
async function verifyChecked(input: VerifyRSadInput, d: RSadVerifierDeps, verified: AuditEvent): Promise<VerifiedRSad> {
  const { transaction: tx, now } = input;
  const policy = await d.policies.current();
  if (input.rSad.length > maxRSadBytes) throw new InkanError("LIMIT_EXCEEDED", `the R.SAD is larger than ${maxRSadBytes} characters`);

  // R-3.2.1.2, T-2.2.1.5: only the SAM reads the envelope (the JWE's checks are in decryptCompactJwe).
  const plaintext = await d.samKeys.decryptCompactJwe(input.rSad, { maxBytes: maxRSadBytes, now, cty: rSadEnvelopeCty });
  let envelope: Record<string, unknown>;
  try {
    if (plaintext.length > maxEnvelopeBytes) throw new InkanError("LIMIT_EXCEEDED", `the R.SAD envelope is larger than ${maxEnvelopeBytes} bytes`);
    try {
      const text = utf8.decode(plaintext);
      envelope = parseStrictJsonObject(text);
      assertNoDuplicateMembers(text); // inside "claims" too
    } catch (err) {
      throw invalid(new DeviceProofRefused("the envelope is not a JSON object without duplicate members", { cause: err }));
    }
  } finally {
    plaintext.fill(0);
  }
  const members = Object.keys(envelope);
  const unknown = members.find((m) => !envelopeMembers.has(m));
  if (unknown !== undefined) throw invalid(new DeviceProofRefused(`unknown envelope member ${unknown}`));
  if (("sad" in envelope) === ("claims" in envelope)) throw invalid(new DeviceProofRefused("the envelope needs exactly one of sad and claims"));
  for (const m of ["pin", "otp", "login"]) {
    if (m in envelope && typeof envelope[m] !== "string") throw invalid(new DeviceProofRefused(`envelope member ${m} is not a string`));
  }
  if (typeof envelope.otp === "string" && !otpPattern.test(envelope.otp)) throw invalid(new DeviceProofRefused("otp is not 6 to 8 digits"));

  // the factors present must form a method the policy enables and this SAM can verify.
  const shape = members.slice().sort().join(",");
  const method = methodOfEnvelope[shape];
  if (method === undefined) throw levelNotMet(new DeviceProofRefused(`the envelope's factors (${shape}) form no authentication method`));
  if (!enforcedMethods(policy, { loginAssertion: d.loginAssertions !== undefined }).includes(method)) {
    throw levelNotMet(new DeviceProofRefused(`${method} is not enabled by the security policy or not configured`));
  }

  const skewMs = msOf(policy, "maxClockSkew", 60_000);
  const maxLifetimeMs = msOf(policy, "maxSadLifetime", 300_000);
  // T-2.2.1.4, T-2.2.1.7: bound to this signer, credential, SAM and transaction; T-2.2.1.6: to this DTBS/R digest.
  const expect = { sub: tx.signerId, cred: tx.credentialId, aud: input.samId, txn: tx.id, dtbsr: Buffer.from(tx.digest).toString("base64url") };
  let claims: Record<string, unknown>;
  let deviceKeyId: string | undefined;
  if (method === "AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN") {
    ({ claims, deviceKeyId } = await verifySadJws(envelope.sad, { tx, policy, expect, now, skewMs, maxLifetimeMs }, d));
  } else {
    try {
      // The same claim set and checks as the JWS payload (sam.proto "claims"), without a device signature.
      claims = checkClaimSet(envelope.claims, { claims: rSadClaims, expect, now, skewMs, maxLifetimeMs });
    } catch (err) {
      if (err instanceof DeviceProofExpired) throw expired(err);
      throw invalid(err);
    }
  }
  if (claims.n !== tx.count) throw invalid(new DeviceProofRefused("claim n does not match")); // T-2.2.1.6
  // R-3.2.1.1, T-2.2.1.7: the description and hash algorithm the signer saw are the transaction's.
  try {
    checkSeenClaims(claims, tx);
  } catch (err) {
    throw invalid(err);
  }
  if (!challengeMatches(claims.chal, tx.challengeHash)) throw invalid(new DeviceProofRefused("claim chal does not match")); // T-2.2.1.3
  const exp = claims.exp as number;
  if (exp * 1000 > tx.expiresAt.getTime()) throw invalid(new DeviceProofRefused("exp is after the transaction's expiry"));

  // T-2.2.1.3: the jti is accepted once by any node (an atomic insert): a replay, also a concurrent one, fails here.
  // One namespace for every R.SAD method (and the other device-key JWSs): a jti never serves twice.
  if (!(await d.oneTime.useJti({ key: `device-jws ${String(claims.jti)}`, expiresAt: new Date(exp * 1000 + skewMs), now }))) throw replayed();

  const signer = await d.signers.record(tx.signerId);
  const signerBody = JSON.parse(signer.body) as SignerBody;
  const credential = await d.records.get("credential", tx.credentialId);
  if (signer.status === "ACTIVE" && (!credential || credential.signerId !== signer.id)) throw invalid(new DeviceProofRefused("the signer does not own the credential"));
  // signer active, credential ACTIVE (not suspended, locked or destroyed), and the transaction newer than its last suspension.
  // R-3.1.3.2, T-2.1.3.2: or KEY_GENERATED for a CSR approval (one DTBS/R, the only kind BeginTransaction opens on it).
  // R-3.1.1.4, T-2.1.3.2: and its certificate valid now (within the policy's grace).
  const refusal = credentialRefusal({ credential, signer, transaction: tx, csrApproval: isCsrApproval(tx.count), now, certificateExpiryGraceMs: policy.certificateExpiryGraceMs });
  if (refusal) throw refusal;

  // the credential's level cannot be met with fewer factors (a level-2 credential refuses
  // PIN alone and the login assertion); checked before any factor, so no factor is tried in vain.
  const level = (JSON.parse(credential!.body) as CredentialBody).assuranceLevel;
  if (!credentialMethods(level, policy, { loginAssertion: d.loginAssertions !== undefined }).includes(method)) {
    throw levelNotMet(new DeviceProofRefused(`${method} does not meet the credential's assurance level ${level}`));
  }

  const actor: Actor = { kind: "signer", signerId: signer.id };
  const about = { actor, signerId: signer.id, credentialId: tx.credentialId, transactionId: tx.id, ...req(input) };
  const checked: FactorType[] = [];
  if (method === "AUTHENTICATION_METHOD_LOGIN_ASSERTION") {
    // level 1: the provider's signed statement that this signer logged in for this challenge.
    // A refused assertion is not a guess at a secret: it does not count toward the lockout.
    try {
      await d.loginAssertions!.verify(envelope.login as string, { externalId: signerBody.identity.externalId, nonce: claims.chal as string, now, maxAgeMs: maxLifetimeMs, skewMs });
    } catch (err) {
      throw authenticationFailed(err);
    }
  } else {
    if (deviceKeyId !== undefined) checked.push("DEVICE_KEY");
    // Knowledge factor, and the TOTP generator for PIN + TOTP: both are always checked, so
    // the answer and its timing do not say which failed. T-2.1.2.2, T-2.2.1.3: the check runs only
    // on an attempt reserved within the signer's lockout budget; one failed attempt counts once,
    // audited there with the factor that failed; a success ends the run of failures.
    const totp = method === "AUTHENTICATION_METHOD_PIN_AND_TOTP";
    await withFactorAttempt(d, { signerId: signer.id, actor, credentialId: tx.credentialId, transactionId: tx.id, now, ...req(input) }, async (): Promise<FactorCheck> => {
      const pinOk = await checkPin(d, signer.id, envelope.pin as string, policy.pinHashCost);
      const otpOk = totp ? await checkTotp(d, signer.id, envelope.otp as string, now, skewMs) : true;
      return pinOk && otpOk ? { ok: true } : { ok: false, factor: pinOk ? "TOTP" : "PIN", cause: new DeviceProofRefused(`${pinOk ? "" : "PIN "}${otpOk ? "" : "OTP "}refused`) };
    }, authenticationFailed);
    checked.push("PIN", ...(totp ? (["TOTP"] as const) : []));
  }
  if (method === "AUTHENTICATION_METHOD_LOGIN_ASSERTION" && signerBody.failedAttempts) await recordFactorSuccess(d, { signerId: signer.id, now }); // a success ends the run of failures
  // R-3.2.2.4: the factors verified, then the verdict, in this order; recorded together they go
  // into one audit append (issue 20: one commit, not three). Any of them not written: AUDIT_FAILURE.
  await Promise.all([...checked.map((factor) => d.audit.record(factorVerified({ ...about, factor }))), d.audit.record(verified)]);
  return { signerId: signer.id, credentialId: tx.credentialId, method, ...(deviceKeyId !== undefined ? { deviceKeyId } : {}), factors: checked };
}

/**
 * The device-key JWS of AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN. T-2.2.1.1, T-2.2.1.4, T-2.2.1.7:
 * the key is looked up by "kid" only among THIS signer's registered, unrevoked device keys (never
 * taken from the token); the signature must verify with it. Returns the claims and the key id.
 */
async function verifySadJws(
  sad: unknown,
  o: { tx: RSadTransaction; policy: PolicyVersion; expect: Record<string, string>; now: Date; skewMs: number; maxLifetimeMs: number },
  d: RSadVerifierDeps,
): Promise<{ claims: Record<string, unknown>; deviceKeyId: string }> {
  let kid: unknown;
  try {
    kid = peekDeviceJws(sad).header.kid;
  } catch (err) {
    throw invalid(err);
  }
  if (typeof kid !== "string" || !thumbprintPattern.test(kid)) throw invalid(new DeviceProofRefused("kid is not a device key id"));
  const key = await registeredDeviceKey(d.records, o.tx.signerId, kid).catch((err: unknown) => {
    // A record that failed its integrity check (a rolled-back device key), or a store failure, is no bad proof.
    if (err instanceof InkanError) throw err;
    throw invalid(err);
  });
  if (!names(o.policy, "allowedDeviceKeyAlgorithms").includes(policyNameOf(key.algorithm))) {
    throw invalid(new DeviceProofRefused("the security policy no longer allows this device key's algorithm"));
  }
  try {
    // Header exactly alg (the key's: never none or HS*), typ, kid; claims exactly rSadClaims.
    const claims = await verifyDeviceJws(sad, { key, typ: rSadTyp, claims: rSadClaims, expect: o.expect, now: o.now, skewMs: o.skewMs, maxLifetimeMs: o.maxLifetimeMs });
    return { claims, deviceKeyId: kid };
  } catch (err) {
    if (err instanceof DeviceProofExpired) throw expired(err);
    throw invalid(err);
  }
}

/** The PIN against the signer's active PIN factor; a signer without one fails like a wrong PIN. */
async function checkPin(d: RSadVerifierDeps, signerId: string, pin: string, cost: PinHashCost): Promise<boolean> {
  const factor = (await activeFactors(d.records, signerId, "PIN"))[0];
  return factor !== undefined && (await checkPinFactor(d, factor, pin, cost)); // issue 20: re-hashed with the policy's cost on success
}

/**
 * The OTP against the signer's enrolled TOTP secret (decrypted in the module, wiped after use),
 * one step of drift either way; the matched step is then used up (an atomic insert), so a code is
 * accepted at most once, also by concurrent calls and on other nodes (T-2.2.1.3). A signer without
 * a TOTP factor fails like a wrong code.
 */
async function checkTotp(d: RSadVerifierDeps, signerId: string, otp: string, now: Date, skewMs: number): Promise<boolean> {
  for (const factor of await activeFactors(d.records, signerId, "TOTP")) {
    const body = JSON.parse(factor.body) as TotpFactorBody;
    const secret = await d.fields.decrypt("factor", factor.id, body.encryptedSecret);
    let step: number | undefined;
    try {
      step = matchTotpStep(secret, otp, { now, periodSeconds: body.periodSeconds, digits: body.digits, window: totpWindowSteps });
    } finally {
      secret.fill(0);
    }
    if (step === undefined) continue;
    // T-2.2.1.3: kept until the step can no longer match (its window closed), plus the skew.
    const expiresAt = new Date((step + totpWindowSteps + 1) * body.periodSeconds * 1000 + skewMs);
    return d.oneTime.useJti({ key: `totp ${factor.id} ${step}`, expiresAt, now });
  }
  return false;
}

/** "chal" is the canonical base64url of the challenge whose SHA-256 the transaction keeps. */
function challengeMatches(chal: unknown, expectedHash: string): boolean {
  if (typeof chal !== "string" || !b64u.test(chal)) return false;
  const bytes = Buffer.from(chal, "base64url");
  if (bytes.toString("base64url") !== chal) return false; // one encoding per challenge
  const got = createHash("sha256").update(bytes).digest();
  const want = Buffer.from(expectedHash, "base64url");
  return got.length === want.length && timingSafeEqual(got, want);
}

async function activeFactors(records: VerifiedRecords, signerId: string, type: FactorType): Promise<FactorRecord[]> {
  const out: FactorRecord[] = [];
  let after: string | undefined;
  do {
    const page = await records.list({ kind: "factor", where: { signerId, status: "ACTIVE", type }, after, limit: 100 });
    out.push(...page.items);
    after = page.next;
  } while (after);
  return out;
}

const req = (a: { requestId?: string | undefined }) => (a.requestId ? { requestId: a.requestId } : {});

/** An enum list of the policy (proto3 JSON names). */
function names(policy: PolicyVersion, field: string): string[] {
  const v = policy.policy[field];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}

function msOf(policy: PolicyVersion, field: string, fallback: number): number {
  const v = policy.policy[field];
  return v === undefined ? fallback : durationMs(v, field);
}
