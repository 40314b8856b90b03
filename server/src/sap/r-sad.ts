/**
 * Verification of R.SAD (sam.proto, AuthorizeRequest.r_sad; R-3.2.1.1, R-3.2.1.2): the SAM key's
 * JWE, the envelope inside it, the device-key JWS inside that, and the PIN. Every link is checked
 * against the transaction being authorized; only the caller (Authorize) moves the transaction.
 *
 * Choices where sam.proto leaves room (each also said where it is enforced):
 * - Order of checks: size, decryption, envelope, device key (by "kid", only among the signer's
 *   registered keys), signature, claims, then the jti is used up, then signer and credential
 *   status, and only then the PIN. The jti is consumed BEFORE the PIN is tried, as activation does:
 *   a captured R.SAD (even one with a wrong PIN) counts at most once toward the signer's lockout,
 *   and of N concurrent copies exactly one reaches the (slow) PIN check.
 * - The jti once-only key is "device-jws <jti>", the namespace activation and PIN change use, so a
 *   jti is accepted once across every kind of device-key JWS; kept until exp + the clock skew.
 * - Which factors the envelope carries decides the method: {sad, pin} is
 *   AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN (level 2, built here). The "claims" methods (PIN
 *   alone, PIN + TOTP, login assertion) are refused with NOT_IMPLEMENTED; any other combination,
 *   or a method the policy does not enable, is ASSURANCE_LEVEL_NOT_MET.
 * - A signer without an active PIN factor fails like a wrong PIN (and counts).
 * - Every refusal is audited as "sad.verified" with its reason; a wrong PIN also as
 *   "factor.check_failed" (by the lockout). The specific cause is only in the error's `cause`.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { durationMs, type PolicyVersion, type SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { factorVerified, sadVerified, type Actor, type ScaActor } from "../audit/events.js";
import type { SystemKeys } from "../crypto/port.js";
import { InkanError, type ReasonCode } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import { maxRSadBytes, sadInvalidMessage, type SamEncryptionKeys } from "../keys/sam-encryption-keys.js";
import { DeviceProofExpired, DeviceProofRefused, parseDevicePublicJwk, parseStrictJsonObject, peekDeviceJws, policyNameOf, verifyDeviceJws } from "../registration/device-jws.js";
import { recordFactorFailure } from "../registration/lockout.js";
import { verifyPin, type PinFactorBody } from "../registration/pin-hash.js";
import type { DeviceKeyFactorBody, SignerBody, Signers } from "../registration/signers.js";
import type { FactorRecord, FactorType, OneTimeObjects } from "../store/port.js";

/** The JWE "cty" and JWS "typ" of R.SAD (sam.proto). */
export const rSadEnvelopeCty = "inkan-sad-envelope+json";
export const rSadTyp = "inkan-sad+jwt";
/** The claims of the inner JWS, exactly (sam.proto). */
export const rSadClaims = ["sub", "cred", "aud", "txn", "chal", "dtbsr", "n", "iat", "exp", "jti"] as const;
/** The largest envelope plaintext (sam.proto: at most 8,192 bytes). */
const maxEnvelopeBytes = 8_192;
const envelopeMembers = new Set(["sad", "claims", "pin", "otp", "login"]);
const b64u = /^[A-Za-z0-9_-]+$/;
const thumbprintPattern = /^[A-Za-z0-9_-]{43}$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The transaction an R.SAD must match, as the caller (Authorize) read it from the store. */
export interface RSadTransaction {
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
  /** The module's HMAC: the PIN pepper (pin-hash.ts). */
  crypto: Pick<SystemKeys, "hmacSha256">;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
}

export interface VerifiedRSad {
  signerId: string;
  credentialId: string;
  /** The device key that signed (its RFC 7638 thumbprint). */
  deviceKeyId: string;
  /** The factors verified, in the order checked. */
  factors: FactorType[];
}

const invalid = (cause: unknown) => new InkanError("SAD_INVALID", sadInvalidMessage, { cause });
const replayed = () => new InkanError("SAD_REPLAYED", "the R.SAD was already used");
const expired = (cause: unknown) => new InkanError("EXPIRED", "the R.SAD expired", { cause });
const authenticationFailed = () => new InkanError("AUTHENTICATION_FAILED", "the signer could not be authenticated");
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
    out = await verifyChecked(input, deps);
  } catch (err) {
    const code: ReasonCode | undefined = err instanceof InkanError ? err.code : undefined;
    const outcome = code === "CRYPTO_MODULE_FAILURE" || code === "STORE_FAILURE" || code === "INTEGRITY_VIOLATION" || code === undefined ? "FAILURE" : "DENIED";
    if (code !== "AUDIT_FAILURE") await deps.audit.record(sadVerified({ ...about, verdict: { outcome, reason: code } }));
    throw err;
  }
  await deps.audit.record(sadVerified({ ...about, verdict: { outcome: "SUCCESS" } }));
  return out;
}

async function verifyChecked(input: VerifyRSadInput, d: RSadVerifierDeps): Promise<VerifiedRSad> {
  const { transaction: tx, now } = input;
  const policy = await d.policies.current();
  if (input.rSad.length > maxRSadBytes) throw new InkanError("LIMIT_EXCEEDED", `the R.SAD is larger than ${maxRSadBytes} characters`);

  // R-3.2.1.2, T-2.2.1.5: only the SAM reads the envelope (the JWE's checks are in decryptCompactJwe).
  const plaintext = await d.samKeys.decryptCompactJwe(input.rSad, { maxBytes: maxRSadBytes, now, cty: rSadEnvelopeCty });
  let envelope: Record<string, unknown>;
  try {
    if (plaintext.length > maxEnvelopeBytes) throw new InkanError("LIMIT_EXCEEDED", `the R.SAD envelope is larger than ${maxEnvelopeBytes} bytes`);
    try {
      envelope = parseStrictJsonObject(utf8.decode(plaintext)); // no duplicate members
    } catch (err) {
      throw invalid(new DeviceProofRefused("the envelope is not a JSON object", { cause: err }));
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

  // the factors present must form a method; level 2 device key + PIN is the one built here.
  const shape = members.slice().sort().join(",");
  if (shape !== "pin,sad") {
    if (["claims,pin", "claims,otp,pin", "claims,login"].includes(shape)) {
      throw new InkanError("NOT_IMPLEMENTED", "this SAM does not accept this authentication method yet", { cause: new DeviceProofRefused(`envelope ${shape}`) });
    }
    throw levelNotMet(new DeviceProofRefused(`the envelope's factors (${shape}) form no authentication method`));
  }
  if (!names(policy, "enabledAuthenticationMethods").includes("AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN")) {
    throw levelNotMet(new DeviceProofRefused("the security policy does not enable device key + PIN"));
  }

  // T-2.2.1.1, T-2.2.1.4, T-2.2.1.7: the key is looked up by "kid" only among THIS signer's
  // registered, unrevoked device keys (never taken from the token); the signature must verify with it.
  const sad = envelope.sad;
  let kid: unknown;
  try {
    kid = peekDeviceJws(sad).header.kid;
  } catch (err) {
    throw invalid(err);
  }
  if (typeof kid !== "string" || !thumbprintPattern.test(kid)) throw invalid(new DeviceProofRefused("kid is not a device key id"));
  const device = await d.records.get("factor", kid);
  if (!device || device.signerId !== tx.signerId || device.type !== "DEVICE_KEY" || device.status !== "ACTIVE") {
    throw invalid(new DeviceProofRefused("kid names no active device key of the transaction's signer"));
  }
  const key = await parseDevicePublicJwk((JSON.parse(device.body) as DeviceKeyFactorBody).jwk ?? "").catch((err: unknown) => {
    throw invalid(err);
  });
  if (key.thumbprint !== kid) throw invalid(new DeviceProofRefused("the registered key does not match its id"));
  if (!names(policy, "allowedDeviceKeyAlgorithms").includes(policyNameOf(key.algorithm))) {
    throw invalid(new DeviceProofRefused("the security policy no longer allows this device key's algorithm"));
  }
  const skewMs = msOf(policy, "maxClockSkew", 60_000);
  let claims: Record<string, unknown>;
  try {
    // Header exactly alg (the key's: never none or HS*), typ, kid; claims exactly rSadClaims;
    // T-2.2.1.4, T-2.2.1.7: bound to this signer, credential, SAM and transaction; T-2.2.1.6: to this DTBS/R digest.
    claims = await verifyDeviceJws(sad, {
      key,
      typ: rSadTyp,
      claims: rSadClaims,
      expect: { sub: tx.signerId, cred: tx.credentialId, aud: input.samId, txn: tx.id, dtbsr: Buffer.from(tx.digest).toString("base64url") },
      now,
      skewMs,
      maxLifetimeMs: msOf(policy, "maxSadLifetime", 300_000),
    });
  } catch (err) {
    if (err instanceof DeviceProofExpired) throw expired(err);
    throw invalid(err);
  }
  if (claims.n !== tx.count) throw invalid(new DeviceProofRefused("claim n does not match")); // T-2.2.1.6
  if (!challengeMatches(claims.chal, tx.challengeHash)) throw invalid(new DeviceProofRefused("claim chal does not match")); // T-2.2.1.3
  const exp = claims.exp as number;
  if (exp * 1000 > tx.expiresAt.getTime()) throw invalid(new DeviceProofRefused("exp is after the transaction's expiry"));

  // T-2.2.1.3: the jti is accepted once by any node (an atomic insert): a replay, also a concurrent one, fails here.
  if (!(await d.oneTime.useJti({ key: `device-jws ${String(claims.jti)}`, expiresAt: new Date(exp * 1000 + skewMs), now }))) throw replayed();

  const signer = await d.signers.record(tx.signerId);
  const signerBody = JSON.parse(signer.body) as SignerBody;
  if (signer.status !== "ACTIVE") throw new InkanError("SIGNER_INACTIVE", "the signer is not active");
  if (signerBody.lockedAt !== undefined) throw new InkanError("CREDENTIAL_LOCKED", "too many failed attempts; a registration operator must reset the lockout");
  const credential = await d.records.get("credential", tx.credentialId);
  if (!credential || credential.signerId !== signer.id) throw invalid(new DeviceProofRefused("the signer does not own the credential"));
  if (credential.status === "LOCKED") throw new InkanError("CREDENTIAL_LOCKED", "too many failed attempts; a registration operator must reset the lockout");
  if (credential.status === "SUSPENDED") throw new InkanError("CREDENTIAL_SUSPENDED", "the credential is suspended");
  if (credential.status === "DESTROYED") throw new InkanError("CREDENTIAL_DESTROYED", "the credential was destroyed");
  if (credential.status !== "ACTIVE") throw new InkanError("CREDENTIAL_SUSPENDED", "the credential is not active yet");

  // Knowledge factor: a wrong PIN counts toward the lockout (T-2.1.2.2) and is audited there.
  const actor: Actor = { kind: "signer", signerId: signer.id };
  const pin = (await activeFactors(d.records, signer.id, "PIN"))[0];
  if (!pin || !(await verifyPin(d.crypto, envelope.pin as string, JSON.parse(pin.body) as PinFactorBody))) {
    await recordFactorFailure(d, { signerId: signer.id, actor, factor: "PIN", now, ...req(input) });
    throw authenticationFailed();
  }
  if (signerBody.failedAttempts) {
    const { failedAttempts: _f, ...rest } = signerBody; // a success ends the run of failures
    await d.signers.replace(signer, signer.status, { ...rest, updatedAt: now.toISOString() });
  }
  const about = { actor, signerId: signer.id, credentialId: tx.credentialId, transactionId: tx.id, ...req(input) };
  await d.audit.record(factorVerified({ ...about, factor: "DEVICE_KEY" }));
  await d.audit.record(factorVerified({ ...about, factor: "PIN" }));
  return { signerId: signer.id, credentialId: tx.credentialId, deviceKeyId: kid, factors: ["DEVICE_KEY", "PIN"] };
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
