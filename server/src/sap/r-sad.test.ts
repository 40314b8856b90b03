/**
 * R.SAD verification (sam.proto AuthorizeRequest.r_sad; R-3.2.1.1) on a real SoftHSM2 token and a
 * real SQLite store: signers are enrolled and activated through the registration domain (their
 * device-key and PIN factors are what activation writes), R.SADs are built with the SDK's
 * buildRSad, and every attack is refused with the reason sam.proto lists for Authorize.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildActivationRequest, buildClaimsRSad, buildRSad, createDeviceKey, encryptToSam, newJti, openTotpEnrollment, type ClaimsRSadFactors, type DeviceKey, type SamPublicKey } from "@inkan/sdk";
import canonicalize from "canonicalize";
import { CompactSign, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultSecurityPolicy, PolicyVersion, type PolicyJson } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { AuditEvent, PrivilegedUserActor, ScaActor } from "../audit/events.js";
import type { FullCryptoModule } from "../crypto/port.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import { InkanError } from "../errors.js";
import { MemoryFreshness } from "../integrity/freshness.js";
import { FieldCipher, RecordSealer } from "../integrity/record-sealer.js";
import { VerifiedRecords } from "../integrity/sealed-records.js";
import { SamEncryptionKeys, sadInvalidMessage } from "../keys/sam-encryption-keys.js";
import { Activation, challengeHash } from "../registration/activation.js";
import { Credentials } from "../registration/credentials.js";
import { Signers, type SignerBody } from "../registration/signers.js";
import type { CredentialRecord, Store } from "../store/port.js";
import { createSqliteStore, sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import type { CredentialBody } from "../registration/credentials.js";
import { createLoginAssertionVerifier } from "./login-assertion.js";
import { rSadEnvelopeCty, rSadTyp, verifyRSad, type RSadTransaction, type RSadVerifierDeps } from "./r-sad.js";
import { descriptionDigest } from "./seen-claims.js";
import { hotp, totpStep } from "./totp-check.js";
import { totpSecretOf } from "../testing/totp.js";

const operator: PrivilegedUserActor = { kind: "privileged-user", userId: "pu-operator", role: "REGISTRATION_OPERATOR" };
const sca: ScaActor = { kind: "sca", subject: "CN=sca-one" };
const pin = "246813";

let dataDir: string;
let hsm: FullCryptoModule;
let store: Store;
let records: VerifiedRecords;
let samKeys: SamEncryptionKeys;
let samKey: SamPublicKey;
let samId: string;
let signers: Signers;
let credentials: Credentials;
let activation: Activation;
let deps: RSadVerifierDeps;
const events: AuditEvent[] = [];
const audit: AuditLog = { record: async (e) => void events.push(e) };
/** The default policy with `over` applied (a sealed PolicyVersion as the store would give it). */
function policyWith(over: Partial<PolicyJson> = {}): PolicyVersion {
  return new PolicyVersion({
    kind: "policy",
    id: "security-policy",
    version: 1,
    body: canonicalize({ policy: { ...(defaultSecurityPolicy({ trustedScaCaCertificates: [], trustedAdminCaCertificates: [] }) as PolicyJson), ...over }, updatedAt: new Date().toISOString(), updatedBy: "", approvedBy: "" })!,
    seal: new Uint8Array(),
  });
}
const policy = policyWith();
/** Every method enabled, levels 1 and 2 allowed: what the level-1 tests run under. */
const allMethods = policyWith({
  allowedAssuranceLevels: ["ASSURANCE_LEVEL_1", "ASSURANCE_LEVEL_2"],
  enabledAuthenticationMethods: ["AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN", "AUTHENTICATION_METHOD_PIN_AND_TOTP", "AUTHENTICATION_METHOD_PIN", "AUTHENTICATION_METHOD_LOGIN_ASSERTION"],
});
let currentPolicy = policy;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "inkan-r-sad-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
  store = await createSqliteStore({ file: sqliteStoreFile(dataDir) });
  records = new VerifiedRecords(store, new RecordSealer({ keys: hsm }));
  samKeys = new SamEncryptionKeys({ crypto: hsm });
  await samKeys.ensureCurrentKey(new Date());
  const current = await samKeys.currentKey(new Date());
  samKey = { kid: current.kid, alg: current.alg, jwk: current.jwk };
  samId = await samKeys.samId();
  const policies = { current: async () => currentPolicy };
  signers = new Signers({ records, oneTime: store, random: hsm, policies, audit });
  credentials = new Credentials({ records, keys: hsm, random: hsm, policies, audit, signers, attempts: store });
  activation = new Activation({ records, oneTime: store, attempts: store, crypto: hsm, fields: new FieldCipher(hsm), samKeys, policies, audit, signers, openTransactions: store, freshness: new MemoryFreshness() });
  deps = { samKeys, records, signers, oneTime: store, attempts: store, crypto: hsm, fields: new FieldCipher(hsm), policies, audit };
}, 120_000);

afterAll(async () => {
  await store?.close();
  await hsm?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

interface ActiveSigner {
  signerId: string;
  credentialId: string;
  deviceKey: DeviceKey;
  /** The TOTP secret, when enrolled. */
  totpSecret?: Uint8Array;
  externalId: string;
}

let serial = 0;
/** Enrolls and activates a signer (device key + PIN) and gives it an ACTIVE credential. */
async function activeSigner(o: { totp?: boolean; level?: 1 | 2 | 3 } = {}): Promise<ActiveSigner> {
  const now = new Date();
  serial += 1;
  const externalId = `cust-${serial}-${randomBytes(4).toString("hex")}`;
  const { signer } = await signers.enroll({
    actor: operator,
    now,
    identity: { kind: "NATURAL_PERSON", legalName: `Sato Hanako ${serial}`, displayName: "Hanako", email: "", phoneNumber: "", organization: "", country: "JP", externalId },
    proofing: { method: "IN_PERSON", evidenceReference: "RA-1", proofedAt: new Date(now.getTime() - 60_000).toISOString() },
  });
  const { code } = await signers.issueActivationCode({ actor: operator, now, signerId: signer.id });
  const ch = await activation.createChallenge({ signerId: signer.id, purpose: "ACTIVATION", now });
  const deviceKey = await createDeviceKey();
  const { request, responseKey } = await buildActivationRequest({ signerId: signer.id, activationCode: code, pin, deviceKey, challenge: ch.challenge, samKey, audience: ch.audience, enrollTotp: o.totp === true });
  const out = await activation.activate({ signerId: signer.id, now, devicePublicKeyJwk: request.devicePublicKeyJwk, activationEnvelope: request.activationEnvelope, enrollTotp: request.enrollTotp, responseEncryptionJwk: request.responseEncryptionJwk });
  const credentialId = await activeCredential(signer.id, o.level ?? 2);
  const totpSecret = responseKey ? totpSecretOf(await openTotpEnrollment(out.totpEnrollment, responseKey)) : undefined;
  return { signerId: signer.id, credentialId, deviceKey, externalId, ...(totpSecret ? { totpSecret } : {}) };
}

/** A new ACTIVE credential of `signerId` at assurance `level` (the level written into its sealed body, as ImportKey could). */
async function activeCredential(signerId: string, level: 1 | 2 | 3): Promise<string> {
  const { credential } = await credentials.generate({ actor: operator, now: new Date(), signerId, algorithm: "EC_P256", label: "r-sad test" });
  const body = { ...(JSON.parse(credential.body) as CredentialBody), assuranceLevel: level };
  // The certificate import (not in the registration domain yet) is what makes a credential ACTIVE.
  await records.update<CredentialRecord>({ ...credential, version: credential.version + 1, status: "ACTIVE", body: canonicalize(body)! }, credential.version);
  return credential.id;
}

interface Tx {
  tx: RSadTransaction;
  challenge: Uint8Array;
}

function transaction(s: ActiveSigner, count = 3): Tx {
  const challenge = randomBytes(32);
  return {
    challenge,
    tx: {
      id: `txn-${randomBytes(8).toString("hex")}`,
      signerId: s.signerId,
      createdAt: new Date(),
      credentialId: s.credentialId,
      sca,
      digest: randomBytes(32),
      count,
      description: `Contrat signé ${serial}, 日本語`,
      hashAlgorithm: 1,
      challengeHash: challengeHash(challenge),
      expiresAt: new Date(Date.now() + 10 * 60_000),
    },
  };
}

/** The R.SAD the signer's device builds for `t`, with any input replaced. */
function rSadFor(s: ActiveSigner, t: Tx, o: Partial<Parameters<typeof buildRSad>[0]> = {}): Promise<string> {
  return buildRSad({
    deviceKey: s.deviceKey,
    signerId: s.signerId,
    credentialId: s.credentialId,
    samId,
    transactionId: t.tx.id,
    challenge: t.challenge,
    dtbsrDigest: t.tx.digest,
    count: t.tx.count,
    hashAlgorithm: t.tx.hashAlgorithm,
    description: t.tx.description,
    pin,
    samKey,
    ...o,
  });
}

const verify = (rSad: string, t: Tx, now = new Date()) => verifyRSad({ rSad, transaction: t.tx, samId, now }, deps);

async function refusal(p: Promise<unknown>): Promise<InkanError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof InkanError)) throw new Error(`expected an InkanError, got ${String(err)}`);
  return err;
}

/** SAD_INVALID looks the same whatever failed: one code, one message; the reason only in cause. */
async function expectInvalid(p: Promise<unknown>, label = "", cause?: RegExp): Promise<void> {
  const err = await refusal(p);
  expect(err.code, label).toBe("SAD_INVALID");
  expect(err.message, label).toBe(sadInvalidMessage);
  expect(err.cause, label).toBeDefined();
  if (cause) expect(String((err.cause as Error).message), label).toMatch(cause); // refused for the intended reason
}

const b64 = (b: Uint8Array | string) => Buffer.from(b).toString("base64url");

/** The claims buildRSad signs, for hand-made JWSs. */
function claimsFor(s: ActiveSigner, t: Tx, o: Record<string, unknown> = {}) {
  const iat = Math.floor(Date.now() / 1000);
  return { sub: s.signerId, cred: s.credentialId, aud: samId, txn: t.tx.id, chal: b64(t.challenge), dtbsr: b64(t.tx.digest), n: t.tx.count, halg: t.tx.hashAlgorithm, desc: descriptionDigest(t.tx.description), iat, exp: iat + 120, jti: newJti(), ...o };
}

/** A compact JWS with any protected header, signed ES256 with `key` over WebCrypto (jose would refuse some headers). */
async function rawJws(key: DeviceKey["privateKey"], header: Record<string, unknown>, claims: object): Promise<string> {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, new TextEncoder().encode(input));
  return `${input}.${b64(new Uint8Array(sig))}`;
}

const envelope = (body: object | Uint8Array) => encryptToSam(samKey, body, { cty: rSadEnvelopeCty });

/** Flips one bit in the middle of segment `i` of a compact serialization (decoded, then re-encoded). */
function flip(compact: string, i: number): string {
  const parts = compact.split(".");
  const bytes = Buffer.from(parts[i]!, "base64url");
  bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
  parts[i] = bytes.toString("base64url");
  return parts.join(".");
}

const sadEvents = (transactionId: string) => events.filter((e) => e.eventType === "sad.verified" && e.transactionId === transactionId);
const signerBody = async (signerId: string) => JSON.parse((await signers.record(signerId)).body) as SignerBody;

let alice: ActiveSigner;
let bob: ActiveSigner;
beforeAll(async () => {
  alice = await activeSigner();
  bob = await activeSigner();
}, 60_000);

describe("R.SAD verification: level 2, device key + PIN (R-3.2.1.1)", () => {
  it("R-3.2.1.1: an R.SAD built with the SDK verifies; both factors and the SAD are audited", async () => {
    const t = transaction(alice);
    const out = await verify(await rSadFor(alice, t), t);
    expect(out).toEqual({ signerId: alice.signerId, credentialId: alice.credentialId, method: "AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN", deviceKeyId: alice.deviceKey.kid, factors: ["DEVICE_KEY", "PIN"] });
    const mine = events.filter((e) => e.transactionId === t.tx.id);
    expect(mine.map((e) => [e.eventType, e.details?.factor ?? e.outcome])).toEqual([
      ["factor.verified", "DEVICE_KEY"],
      ["factor.verified", "PIN"],
      ["sad.verified", "AUDIT_OUTCOME_SUCCESS"],
    ]);
    expect(JSON.stringify(mine)).not.toContain(pin);
  });

  it("T-2.2.1.3: a replayed R.SAD (same jti) is SAD_REPLAYED, and audited", async () => {
    const t = transaction(alice);
    const rSad = await rSadFor(alice, t);
    await verify(rSad, t);
    expect((await refusal(verify(rSad, t))).code).toBe("SAD_REPLAYED");
    expect(sadEvents(t.tx.id).map((e) => e.reason)).toEqual([undefined, "REASON_SAD_REPLAYED"]);
  });

  it("T-2.2.1.3: 16 concurrent verifications of one R.SAD: exactly one succeeds, the rest are SAD_REPLAYED", async () => {
    const t = transaction(alice);
    const rSad = await rSadFor(alice, t);
    const results = await Promise.allSettled(Array.from({ length: 16 }, () => verify(rSad, t)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const codes = results.flatMap((r) => (r.status === "rejected" ? [(r.reason as InkanError).code] : []));
    expect(codes).toEqual(Array(15).fill("SAD_REPLAYED"));
  });

  it("T-2.2.1.7, T-2.2.1.4: an R.SAD for another transaction, credential, signer or SAM (audience) is SAD_INVALID", async () => {
    const t = transaction(alice);
    const other = transaction(alice);
    await expectInvalid(verify(await rSadFor(alice, other), t), "another transaction", /claim txn/);
    const { credential } = await credentials.generate({ actor: operator, now: new Date(), signerId: alice.signerId, algorithm: "EC_P256", label: "second" });
    await expectInvalid(verify(await rSadFor(alice, t, { credentialId: credential.id }), t), "another credential", /claim cred/);
    const bobs = transaction(bob);
    await expectInvalid(verify(await rSadFor(bob, bobs), t), "bob's R.SAD for bob's transaction, presented for alice's", /no active device key/);
    await expectInvalid(verify(await rSadFor(bob, t, { signerId: alice.signerId }), t), "bob's device key claiming to be alice", /no active device key/);
    await expectInvalid(verify(await rSadFor(alice, t, { samId: "urn:inkan:sam:another" }), t), "T-2.2.1.4: another SAM", /claim aud/);
    // The R.SAD itself is still good for its own transaction: none of the refusals used it up.
    expect((await verify(await rSadFor(alice, other), other)).factors).toEqual(["DEVICE_KEY", "PIN"]);
  });

  it("T-2.2.1.7, T-2.2.1.6, R-3.2.1.1: a wrong challenge, a substituted DTBS/R digest, a wrong count, description or hash algorithm is SAD_INVALID", async () => {
    const t = transaction(alice);
    await expectInvalid(verify(await rSadFor(alice, t, { challenge: randomBytes(32) }), t), "challenge", /chal/);
    await expectInvalid(verify(await rSadFor(alice, t, { dtbsrDigest: randomBytes(32) }), t), "digest", /claim dtbsr/);
    await expectInvalid(verify(await rSadFor(alice, t, { count: t.tx.count + 1 }), t), "count", /claim n /);
    // R-3.2.1.1, T-2.2.1.7: what the signer saw: another description or hash algorithm than the transaction's.
    await expectInvalid(verify(await rSadFor(alice, t, { description: `${t.tx.description} (amended)` }), t), "description", /claim desc/);
    await expectInvalid(verify(await rSadFor(alice, t, { description: t.tx.description.normalize("NFD") }), t), "the same description, Unicode-decomposed", /claim desc/);
    await expectInvalid(verify(await rSadFor(alice, t, { hashAlgorithm: 2 }), t), "hash algorithm", /claim halg/);
    // chal with the same bytes in a non-canonical base64url spelling is refused too.
    const jws = await rawJws(alice.deviceKey.privateKey, { alg: "ES256", typ: rSadTyp, kid: alice.deviceKey.kid }, claimsFor(alice, t, { chal: `${b64(t.challenge).slice(0, -1)}B` }));
    await expectInvalid(verify(await envelope({ sad: jws, pin }), t), "chal spelled differently");
  });

  it("R-3.2.1.1, T-2.2.1.7: an R.SAD without desc or halg (a device that did not bind what it showed) is SAD_INVALID, and not used up", async () => {
    const t = transaction(alice);
    const kid = alice.deviceKey.kid;
    const header = { alg: "ES256", typ: rSadTyp, kid };
    for (const missing of [{ desc: undefined }, { halg: undefined }, { desc: undefined, halg: undefined }]) {
      const label = `without ${Object.keys(missing).join(" and ")}`;
      await expectInvalid(verify(await envelope({ sad: await rawJws(alice.deviceKey.privateKey, header, claimsFor(alice, t, missing)), pin }), t), label, /claim set/);
    }
    await expectInvalid(verify(await envelope({ sad: await rawJws(alice.deviceKey.privateKey, header, claimsFor(alice, t, { halg: "1" })), pin }), t), "halg as a string", /claim halg/);
    await expectInvalid(verify(await envelope({ sad: await rawJws(alice.deviceKey.privateKey, header, claimsFor(alice, t, { desc: t.tx.description })), pin }), t), "desc as the plain description", /claim desc/);
    expect(sadEvents(t.tx.id).every((e) => e.reason === "REASON_SAD_INVALID")).toBe(true); // audited as today
    expect((await verify(await rSadFor(alice, t), t)).signerId).toBe(alice.signerId); // the genuine one still works
  });

  it("T-2.2.1.3: an expired R.SAD is EXPIRED; one living longer than 300 s, issued in the future or outliving the transaction is SAD_INVALID", async () => {
    const t = transaction(alice);
    const tenMinutesAgo = new Date(Date.now() - 10 * 60_000);
    expect((await refusal(verify(await rSadFor(alice, t, { now: tenMinutesAgo }), t))).code).toBe("EXPIRED");
    await expectInvalid(verify(await rSadFor(alice, t, { lifetimeSeconds: 301 }), t), "exp - iat > 300", /lifetime/);
    await expectInvalid(verify(await rSadFor(alice, t, { now: new Date(Date.now() + 120_000) }), t), "iat in the future", /future/);
    const short = { ...t, tx: { ...t.tx, expiresAt: new Date(Date.now() + 60_000) } };
    await expectInvalid(verify(await rSadFor(alice, short, { lifetimeSeconds: 120 }), short), "exp after the transaction's expiry", /transaction's expiry/);
    // Within the 60 s skew both ways it is accepted.
    expect((await verify(await rSadFor(alice, t, { now: new Date(Date.now() + 30_000) }), t)).signerId).toBe(alice.signerId);
  });

  it("T-2.2.1.7: a bit flipped in the JWS header, payload or signature is SAD_INVALID", async () => {
    const t = transaction(alice);
    const jws = await rawJws(alice.deviceKey.privateKey, { alg: "ES256", typ: rSadTyp, kid: alice.deviceKey.kid }, claimsFor(alice, t));
    for (const i of [0, 1, 2]) await expectInvalid(verify(await envelope({ sad: flip(jws, i), pin }), t), `JWS segment ${i}`);
    expect((await verify(await envelope({ sad: jws, pin }), t)).signerId).toBe(alice.signerId); // the untampered one is good
  });

  it("T-2.2.1.7: a bit flipped in any of the five JWE segments is SAD_INVALID", async () => {
    const t = transaction(alice);
    const rSad = await rSadFor(alice, t);
    for (const i of [0, 1, 2, 3, 4]) await expectInvalid(verify(flip(rSad, i), t), `JWE segment ${i}`);
    expect((await verify(rSad, t)).signerId).toBe(alice.signerId);
  });

  it("T-2.2.1.1: alg none, HS256 keyed with the device public key, an embedded jwk and an unknown crit are SAD_INVALID", async () => {
    const t = transaction(alice);
    const kid = alice.deviceKey.kid;
    const claims = claimsFor(alice, t);
    const noneInput = `${b64(JSON.stringify({ alg: "none", typ: rSadTyp, kid }))}.${b64(JSON.stringify(claims))}`;
    await expectInvalid(verify(await envelope({ sad: `${noneInput}.`, pin }), t), "alg none, empty signature, with PIN");
    await expectInvalid(verify(await envelope({ sad: `${noneInput}.${b64("x")}`, pin }), t), "alg none, some signature");
    for (const secret of [JSON.stringify(alice.deviceKey.publicJwk), canonicalize(alice.deviceKey.publicJwk)!, Buffer.concat([Buffer.of(4), Buffer.from(alice.deviceKey.publicJwk.x!, "base64url"), Buffer.from(alice.deviceKey.publicJwk.y!, "base64url")])]) {
      const hs = await new CompactSign(new TextEncoder().encode(JSON.stringify(claimsFor(alice, t))))
        .setProtectedHeader({ alg: "HS256", typ: rSadTyp, kid })
        .sign(typeof secret === "string" ? new TextEncoder().encode(secret) : secret);
      await expectInvalid(verify(await envelope({ sad: hs, pin }), t), "HS256 with the public key", /alg does not match/);
    }
    const attacker = await createDeviceKey();
    await expectInvalid(verify(await envelope({ sad: await rawJws(attacker.privateKey, { alg: "ES256", typ: rSadTyp, kid, jwk: attacker.publicJwk }, claimsFor(alice, t)), pin }), t), "embedded jwk of the signing key", /header members/);
    await expectInvalid(verify(await envelope({ sad: await rawJws(alice.deviceKey.privateKey, { alg: "ES256", typ: rSadTyp, kid, jwk: alice.deviceKey.publicJwk }, claimsFor(alice, t)), pin }), t), "embedded jwk, even the right one", /header members/);
    await expectInvalid(verify(await envelope({ sad: await rawJws(alice.deviceKey.privateKey, { alg: "ES256", typ: rSadTyp, kid, crit: ["urn:x"], "urn:x": true }, claimsFor(alice, t)), pin }), t), "unknown crit", /header members/);
    await expectInvalid(verify(await envelope({ sad: await rawJws(alice.deviceKey.privateKey, { alg: "ES256", typ: "JWT", kid }, claimsFor(alice, t)), pin }), t), "wrong typ");
    await expectInvalid(verify(await envelope({ sad: await rawJws(alice.deviceKey.privateKey, { alg: "ES256", typ: rSadTyp, kid }, { ...claimsFor(alice, t), extra: 1 }), pin }), t), "an extra claim");
    await expectInvalid(verify(await envelope({ sad: await rawJws(alice.deviceKey.privateKey, { alg: "ES256", typ: rSadTyp, kid }, { ...claimsFor(alice, t), aud: [samId] }), pin }), t), "aud as an array");
  });

  it("T-2.2.1.1: a JWS signed by an unregistered key with the registered key's kid is SAD_INVALID", async () => {
    const t = transaction(alice);
    const attacker = await createDeviceKey();
    await expectInvalid(verify(await rSadFor(alice, t, { deviceKey: { ...attacker, kid: alice.deviceKey.kid } }), t), "attacker key, alice's kid", /signature does not verify/);
    await expectInvalid(verify(await rSadFor(alice, t, { deviceKey: attacker }), t), "attacker key, its own kid", /no active device key/);
  });

  it("T-2.2.1.1: a revoked device key no longer authorizes", async () => {
    const carol = await activeSigner();
    const t = transaction(carol);
    const rSad = await rSadFor(carol, t);
    await activation.revokeDevice({ actor: operator, now: new Date(), signerId: carol.signerId, deviceKeyId: carol.deviceKey.kid, reason: "phone lost" });
    await expectInvalid(verify(rSad, t), "revoked device key", /no active device key/);
  });

  it("R-3.2.1.1: envelopes with an unknown or duplicate member, or not JSON, are SAD_INVALID; the other methods are not accepted", async () => {
    const t = transaction(alice);
    const jws = async () => rawJws(alice.deviceKey.privateKey, { alg: "ES256", typ: rSadTyp, kid: alice.deviceKey.kid }, claimsFor(alice, t));
    await expectInvalid(verify(await envelope({ sad: await jws(), pin, extra: "x" }), t), "unknown member");
    await expectInvalid(verify(await envelope(new TextEncoder().encode(`{"sad":${JSON.stringify(await jws())},"pin":"000000","pin":${JSON.stringify(pin)}}`)), t), "duplicate pin");
    await expectInvalid(verify(await envelope(new TextEncoder().encode("not json")), t), "not JSON");
    await expectInvalid(verify(await envelope({ sad: await jws(), claims: {}, pin }), t), "both sad and claims");
    await expectInvalid(verify(await envelope({ sad: await jws(), pin: 246813 }), t), "PIN as a number");
    // PIN alone is not enabled by the default policy; device key + PIN + OTP forms no method.
    expect((await refusal(verify(await envelope({ claims: claimsFor(alice, t), pin }), t))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
    expect((await refusal(verify(await envelope({ sad: await jws(), pin, otp: "123456" }), t))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
  });

  it("R-3.2.1.1: a missing PIN is ASSURANCE_LEVEL_NOT_MET and does not count toward the lockout", async () => {
    const t = transaction(alice);
    const jws = await rawJws(alice.deviceKey.privateKey, { alg: "ES256", typ: rSadTyp, kid: alice.deviceKey.kid }, claimsFor(alice, t));
    const before = (await signerBody(alice.signerId)).failedAttempts ?? 0;
    expect((await refusal(verify(await envelope({ sad: jws }), t))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
    expect((await signerBody(alice.signerId)).failedAttempts ?? 0).toBe(before);
    expect(sadEvents(t.tx.id).map((e) => e.reason)).toEqual(["REASON_ASSURANCE_LEVEL_NOT_MET"]);
  });
});

describe("wrong PIN and lockout (R-3.2.1.1, T-2.1.2.2)", () => {
  it("a wrong PIN is AUTHENTICATION_FAILED, counts and is audited; a success resets the count", async () => {
    const dave = await activeSigner();
    const t = transaction(dave);
    const err = await refusal(verify(await rSadFor(dave, t, { pin: "999999" }), t));
    expect(err.code).toBe("AUTHENTICATION_FAILED");
    expect(err.message).not.toMatch(/pin/i); // never says which factor failed
    expect((await signerBody(dave.signerId)).failedAttempts).toBe(1);
    const failed = events.filter((e) => e.eventType === "factor.check_failed" && e.signerId === dave.signerId);
    expect(failed.map((e) => [e.details?.factor, String(e.details?.failed_attempts)])).toEqual([["PIN", "1"]]);
    expect(sadEvents(t.tx.id).map((e) => e.reason)).toEqual(["REASON_AUTHENTICATION_FAILED"]);
    await verify(await rSadFor(dave, t), t);
    expect((await signerBody(dave.signerId)).failedAttempts).toBeUndefined();
  });

  it("reaching the policy threshold (5) locks the signer and its credential; then even the right PIN is CREDENTIAL_LOCKED", async () => {
    const erin = await activeSigner();
    const t = transaction(erin);
    for (let i = 1; i <= policy.lockoutThreshold; i++) {
      expect((await refusal(verify(await rSadFor(erin, t, { pin: `00000${i}` }), t))).code).toBe("AUTHENTICATION_FAILED");
    }
    const body = await signerBody(erin.signerId);
    expect(body.failedAttempts).toBe(5);
    expect(body.lockedAt).toBeDefined();
    expect((await records.get("credential", erin.credentialId))?.status).toBe("LOCKED");
    expect(events.filter((e) => e.eventType === "credential.locked" && e.credentialId === erin.credentialId)).toHaveLength(1);
    expect((await refusal(verify(await rSadFor(erin, t), t))).code).toBe("CREDENTIAL_LOCKED");
    // A replay of a wrong-PIN R.SAD cannot add to the count: its jti is spent before the PIN is tried.
    const frank = await activeSigner();
    const ft = transaction(frank);
    const wrong = await rSadFor(frank, ft, { pin: "111111" });
    expect((await refusal(verify(wrong, ft))).code).toBe("AUTHENTICATION_FAILED");
    for (let i = 0; i < 5; i++) expect((await refusal(verify(wrong, ft))).code).toBe("SAD_REPLAYED");
    expect((await signerBody(frank.signerId)).failedAttempts).toBe(1);
  });
});

/** The R.SAD of a method without a device key (the SDK's buildClaimsRSad) for `t`, with any input replaced. */
function claimsRSadFor(s: ActiveSigner, t: Tx, factors: ClaimsRSadFactors, o: Partial<Parameters<typeof buildClaimsRSad>[0]> = {}): Promise<string> {
  return buildClaimsRSad({
    signerId: s.signerId, credentialId: s.credentialId, samId, transactionId: t.tx.id, challenge: t.challenge, dtbsrDigest: t.tx.digest, count: t.tx.count,
    hashAlgorithm: t.tx.hashAlgorithm, description: t.tx.description, samKey, factors, ...o,
  });
}

/** The signer's authenticator: the TOTP code of `now` shifted by `steps` periods. */
const otpOf = (s: ActiveSigner, steps = 0, now = new Date()) => hotp(s.totpSecret!, totpStep(now, 30) + steps, 6);

/** Runs `fn` under `p` as the policy in force. */
async function underPolicy<T>(p: PolicyVersion, fn: () => Promise<T>): Promise<T> {
  currentPolicy = p;
  try {
    return await fn();
  } finally {
    currentPolicy = policy;
  }
}

describe("PIN + TOTP, level 2 (R-3.1.4, R-3.2.1.1)", () => {
  let tina: ActiveSigner;
  beforeAll(async () => {
    tina = await activeSigner({ totp: true });
  }, 60_000);

  it("R-3.1.4: {claims, pin, otp} with the current code verifies; PIN and TOTP are audited, no secret in the audit", async () => {
    const t = transaction(tina);
    const otp = otpOf(tina);
    const out = await verify(await claimsRSadFor(tina, t, { pin, otp }), t);
    expect(out).toEqual({ signerId: tina.signerId, credentialId: tina.credentialId, method: "AUTHENTICATION_METHOD_PIN_AND_TOTP", factors: ["PIN", "TOTP"] });
    const mine = events.filter((e) => e.transactionId === t.tx.id);
    expect(mine.map((e) => [e.eventType, e.details?.factor ?? e.outcome])).toEqual([
      ["factor.verified", "PIN"],
      ["factor.verified", "TOTP"],
      ["sad.verified", "AUDIT_OUTCOME_SUCCESS"],
    ]);
    expect(JSON.stringify(mine)).not.toContain(pin);
    expect(JSON.stringify(mine)).not.toContain(otp);
  });

  it("R-3.1.4: a code one step early or late is accepted (clock drift); two steps away is AUTHENTICATION_FAILED", async () => {
    const yuki = await activeSigner({ totp: true }); // her own codes: no other test uses them up
    const now = new Date();
    for (const steps of [-1, 1]) {
      const t = transaction(yuki);
      expect((await verify(await claimsRSadFor(yuki, t, { pin, otp: otpOf(yuki, steps, now) }, { now }), t, now)).factors).toEqual(["PIN", "TOTP"]);
    }
    const t = transaction(yuki);
    const far = [2, -2, 3].map((k) => otpOf(yuki, k, now)).find((c) => ![-1, 0, 1].some((k) => otpOf(yuki, k, now) === c))!;
    expect((await refusal(verify(await claimsRSadFor(yuki, t, { pin, otp: far }, { now }), t, now))).code).toBe("AUTHENTICATION_FAILED");
  });

  it("T-2.2.1.3 replayed TOTP code: the same code in the same step, in a new R.SAD, is refused (AUTHENTICATION_FAILED); of 8 concurrent R.SADs with one code exactly one passes", async () => {
    const ursula = await activeSigner({ totp: true });
    const otp = otpOf(ursula);
    const t1 = transaction(ursula);
    await verify(await claimsRSadFor(ursula, t1, { pin, otp }), t1);
    const t2 = transaction(ursula);
    expect((await refusal(verify(await claimsRSadFor(ursula, t2, { pin, otp }), t2))).code).toBe("AUTHENTICATION_FAILED");
    // The next step's code is a new code and works.
    expect((await verify(await claimsRSadFor(ursula, t2, { pin, otp: otpOf(ursula, 1) }), t2)).factors).toEqual(["PIN", "TOTP"]);
    const victor = await activeSigner({ totp: true });
    const code = otpOf(victor);
    const txs = Array.from({ length: 8 }, () => transaction(victor));
    const rSads = await Promise.all(txs.map((t) => claimsRSadFor(victor, t, { pin, otp: code })));
    const results = await Promise.allSettled(rSads.map((r, i) => verify(r, txs[i]!)));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
  });

  it("T-2.1.2.2 wrong OTP + lockout: a wrong OTP (right PIN) and a wrong PIN (right OTP) look alike, each counts once; the threshold locks the signer", async () => {
    const wendy = await activeSigner({ totp: true });
    const t = transaction(wendy);
    const wrongOtp = otpOf(wendy) === "000000" ? "111111" : "000000";
    const a = await refusal(verify(await claimsRSadFor(wendy, t, { pin, otp: wrongOtp }), t));
    const b = await refusal(verify(await claimsRSadFor(wendy, t, { pin: "999999", otp: otpOf(wendy, -1) }), t));
    const c = await refusal(verify(await claimsRSadFor(wendy, t, { pin: "999999", otp: wrongOtp }), t));
    for (const e of [a, b, c]) {
      expect(e.code).toBe("AUTHENTICATION_FAILED");
      expect(e.message).toBe("the signer could not be authenticated"); // never which factor
    }
    expect((await signerBody(wendy.signerId)).failedAttempts).toBe(3);
    const failed = events.filter((e) => e.eventType === "factor.check_failed" && e.signerId === wendy.signerId);
    expect(failed.map((e) => e.details?.factor)).toEqual(["TOTP", "PIN", "PIN"]);
    for (let i = 4; i <= policy.lockoutThreshold; i++) {
      expect((await refusal(verify(await claimsRSadFor(wendy, t, { pin, otp: wrongOtp }), t))).code).toBe("AUTHENTICATION_FAILED");
    }
    expect((await signerBody(wendy.signerId)).lockedAt).toBeDefined();
    expect((await records.get("credential", wendy.credentialId))?.status).toBe("LOCKED");
    expect((await refusal(verify(await claimsRSadFor(wendy, t, { pin, otp: otpOf(wendy) }), t))).code).toBe("CREDENTIAL_LOCKED");
  });

  it("R-3.1.4: a signer without a TOTP factor fails like a wrong code (and counts); a malformed otp is SAD_INVALID and does not count", async () => {
    const xena = await activeSigner();
    const t = transaction(xena);
    expect((await refusal(verify(await claimsRSadFor(xena, t, { pin, otp: "123456" }), t))).code).toBe("AUTHENTICATION_FAILED");
    expect((await signerBody(xena.signerId)).failedAttempts).toBe(1);
    await expectInvalid(verify(await envelope({ claims: claimsFor(xena, t), pin, otp: "12345" }), t), "5 digits", /otp/);
    await expectInvalid(verify(await envelope({ claims: claimsFor(xena, t), pin, otp: "12345a" }), t), "a letter", /otp/);
    await expectInvalid(verify(await envelope({ claims: claimsFor(xena, t), pin, otp: 123456 }), t), "a number", /otp/);
    expect((await signerBody(xena.signerId)).failedAttempts).toBe(1);
  });

  it("T-2.2.1.7, T-2.2.1.4, T-2.2.1.6, R-3.2.1.1: claims for another transaction, credential, signer, audience, challenge, digest, count, description or hash algorithm are SAD_INVALID; nothing counts", async () => {
    const t = transaction(tina);
    const other = transaction(tina);
    const factors = () => ({ pin, otp: otpOf(tina) });
    await expectInvalid(verify(await claimsRSadFor(tina, other, factors()), t), "another transaction", /claim txn/);
    const secondCredential = await activeCredential(tina.signerId, 2);
    await expectInvalid(verify(await claimsRSadFor(tina, t, factors(), { credentialId: secondCredential }), t), "another credential", /claim cred/);
    await expectInvalid(verify(await claimsRSadFor(tina, t, factors(), { signerId: bob.signerId }), t), "another signer", /claim sub/);
    await expectInvalid(verify(await claimsRSadFor(tina, t, factors(), { samId: "urn:inkan:sam:another" }), t), "another audience", /claim aud/);
    await expectInvalid(verify(await claimsRSadFor(tina, t, factors(), { challenge: randomBytes(32) }), t), "another challenge", /chal/);
    await expectInvalid(verify(await claimsRSadFor(tina, t, factors(), { dtbsrDigest: randomBytes(32) }), t), "another digest", /claim dtbsr/);
    await expectInvalid(verify(await claimsRSadFor(tina, t, factors(), { count: t.tx.count + 1 }), t), "another count", /claim n /);
    // R-3.2.1.1, T-2.2.1.7: what the signer saw binds the claims methods too.
    await expectInvalid(verify(await claimsRSadFor(tina, t, factors(), { description: "Something else" }), t), "another description", /claim desc/);
    await expectInvalid(verify(await claimsRSadFor(tina, t, factors(), { hashAlgorithm: 3 }), t), "another hash algorithm", /claim halg/);
    await expectInvalid(verify(await envelope({ claims: claimsFor(tina, t, { desc: undefined, halg: undefined }), ...factors() }), t), "without desc and halg", /claim set/);
    await expectInvalid(verify(await envelope({ claims: { ...claimsFor(tina, t), extra: 1 }, ...factors() }), t), "an extra claim", /claim set/);
    await expectInvalid(verify(await envelope({ claims: [claimsFor(tina, t)], ...factors() }), t), "claims as an array", /not a JSON object/);
    const dup = `{"claims":${JSON.stringify(claimsFor(tina, t)).replace(/}$/, `,"txn":"${other.tx.id}"}`)},"pin":${JSON.stringify(pin)},"otp":"${otpOf(tina)}"}`;
    await expectInvalid(verify(await envelope(new TextEncoder().encode(dup)), t), "a duplicate claim inside claims", /duplicate/);
    expect((await refusal(verify(await claimsRSadFor(tina, t, factors(), { now: new Date(Date.now() - 10 * 60_000) }), t))).code).toBe("EXPIRED");
    expect((await signerBody(tina.signerId)).failedAttempts).toBeUndefined();
  });

  it("T-2.2.1.3 replayed jti: a claims R.SAD works once; a jti spent by a device-key R.SAD is spent for claims too", async () => {
    const zoe = await activeSigner({ totp: true });
    const t = transaction(zoe);
    const rSad = await claimsRSadFor(zoe, t, { pin, otp: otpOf(zoe) });
    await verify(rSad, t);
    expect((await refusal(verify(rSad, t))).code).toBe("SAD_REPLAYED");
    const t2 = transaction(zoe);
    const jti = newJti();
    await verify(await envelope({ sad: await rawJws(zoe.deviceKey.privateKey, { alg: "ES256", typ: rSadTyp, kid: zoe.deviceKey.kid }, claimsFor(zoe, t2, { jti })), pin }), t2);
    expect((await refusal(verify(await envelope({ claims: claimsFor(zoe, t2, { jti }), pin, otp: otpOf(zoe, 1) }), t2))).code).toBe("SAD_REPLAYED");
  });

  it("R-3.1.4: a method the policy does not enable is ASSURANCE_LEVEL_NOT_MET, before any factor is tried", async () => {
    const t = transaction(tina);
    const noTotp = policyWith({ enabledAuthenticationMethods: ["AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN"] });
    const err = await underPolicy(noTotp, async () => refusal(verify(await claimsRSadFor(tina, t, { pin: "999999", otp: "000000" }), t)));
    expect(err.code).toBe("ASSURANCE_LEVEL_NOT_MET");
    const noDevice = policyWith({ enabledAuthenticationMethods: ["AUTHENTICATION_METHOD_PIN_AND_TOTP"] });
    expect((await underPolicy(noDevice, async () => refusal(verify(await rSadFor(tina, t), t)))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
    expect((await signerBody(tina.signerId)).failedAttempts).toBeUndefined();
  });
});

describe("level 1: PIN alone (R-3.1.4)", () => {
  it("R-3.1.4: {claims, pin} authorizes a level-1 credential; a wrong PIN counts like any other", async () => {
    const leo = await activeSigner({ level: 1 });
    await underPolicy(allMethods, async () => {
      const t = transaction(leo);
      expect(await verify(await claimsRSadFor(leo, t, { pin }), t)).toEqual({ signerId: leo.signerId, credentialId: leo.credentialId, method: "AUTHENTICATION_METHOD_PIN", factors: ["PIN"] });
      const t2 = transaction(leo);
      expect((await refusal(verify(await claimsRSadFor(leo, t2, { pin: "999999" }), t2))).code).toBe("AUTHENTICATION_FAILED");
      expect((await signerBody(leo.signerId)).failedAttempts).toBe(1);
      // Device key + PIN (level 2) also meets level 1.
      expect((await verify(await rSadFor(leo, t2), t2)).method).toBe("AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN");
    });
  });

  it("R-3.1.4 level-2 credential with a level-1 method: PIN alone is ASSURANCE_LEVEL_NOT_MET, even with a wrong PIN nothing is counted", async () => {
    await underPolicy(allMethods, async () => {
      const t = transaction(alice);
      const before = (await signerBody(alice.signerId)).failedAttempts;
      expect((await refusal(verify(await claimsRSadFor(alice, t, { pin }), t))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
      expect((await refusal(verify(await claimsRSadFor(alice, t, { pin: "999999" }), t))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
      expect((await signerBody(alice.signerId)).failedAttempts).toBe(before);
    });
  });

  it("R-3.1.4: a level-3 credential is authorized at level 2 only where the policy declares a certified SAM", async () => {
    const lena = await activeSigner({ level: 3 });
    const t = transaction(lena);
    expect((await refusal(verify(await rSadFor(lena, t), t))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
    const certified = policyWith({ certified: true, allowedAssuranceLevels: ["ASSURANCE_LEVEL_2", "ASSURANCE_LEVEL_3"] });
    const t2 = transaction(lena);
    expect((await underPolicy(certified, async () => verify(await rSadFor(lena, t2), t2))).method).toBe("AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN");
  });
});

describe("level 1: the login assertion (R-3.1.4)", () => {
  const issuer = "https://op.rssp.example";
  const clientId = "inkan-sam";
  let opKey: CryptoKey;
  let opJwk: JWK;
  let loginDeps: RSadVerifierDeps;
  let lily: ActiveSigner;
  beforeAll(async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    opKey = pair.privateKey;
    opJwk = { ...(await exportJWK(pair.publicKey)), kid: "op-key-1", alg: "ES256", use: "sig" };
    loginDeps = { ...deps, loginAssertions: await createLoginAssertionVerifier({ issuer, clientId, jwks: { keys: [opJwk] } }) };
    lily = await activeSigner({ level: 1 });
  }, 60_000);

  /** An ID token as the provider issues it for `s` logging in for `t`, with any claim or header replaced. */
  async function idToken(s: ActiveSigner, t: Tx, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}, key: CryptoKey | Uint8Array = opKey): Promise<string> {
    const iat = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: issuer, aud: clientId, sub: s.externalId, nonce: b64(t.challenge), iat, exp: iat + 300, ...claims })
      .setProtectedHeader({ alg: "ES256", kid: "op-key-1", ...header })
      .sign(key);
  }
  const verifyLogin = (rSad: string, t: Tx, d = loginDeps) => verifyRSad({ rSad, transaction: t.tx, samId, now: new Date() }, d);

  it("R-3.1.4: {claims, login} with the provider's ID token (sub = the signer's external id, nonce = chal) authorizes a level-1 credential", async () => {
    await underPolicy(allMethods, async () => {
      const t = transaction(lily);
      const out = await verifyLogin(await claimsRSadFor(lily, t, { login: await idToken(lily, t) }), t);
      expect(out).toEqual({ signerId: lily.signerId, credentialId: lily.credentialId, method: "AUTHENTICATION_METHOD_LOGIN_ASSERTION", factors: [] });
      // An audience array holding the client id, with azp, is accepted too.
      const t2 = transaction(lily);
      expect((await verifyLogin(await claimsRSadFor(lily, t2, { login: await idToken(lily, t2, { aud: ["other", clientId], azp: clientId }) }), t2)).signerId).toBe(lily.signerId);
    });
  });

  it("R-3.1.4 attacks on the login token: wrong nonce, wrong aud, wrong iss, another signer's sub, expired, too old, alg none, HS256, unknown signing key, jku/jwk headers: AUTHENTICATION_FAILED, never counted", async () => {
    await underPolicy(allMethods, async () => {
      const t = transaction(lily);
      const other = transaction(lily);
      const now = Math.floor(Date.now() / 1000);
      const attacker = await generateKeyPair("ES256", { extractable: true });
      const hsSecret = new TextEncoder().encode(JSON.stringify(opJwk));
      const unsigned = `${b64(JSON.stringify({ alg: "none", kid: "op-key-1" }))}.${b64(JSON.stringify({ iss: issuer, aud: clientId, sub: lily.externalId, nonce: b64(t.challenge), iat: now, exp: now + 300 }))}.`;
      const cases: [string, string, RegExp][] = [
        ["wrong nonce (another transaction's challenge)", await idToken(lily, other), /nonce/],
        ["wrong aud", await idToken(lily, t, { aud: "another-client" }), /"aud"/],
        ["aud array without azp", await idToken(lily, t, { aud: ["another-client", clientId] }), /azp/],
        ["wrong iss", await idToken(lily, t, { iss: "https://evil.example" }), /"iss"/],
        ["another signer's sub", await idToken(lily, t, { sub: bob.externalId }), /sub/],
        ["the signer id as sub", await idToken(lily, t, { sub: lily.signerId }), /sub/],
        ["expired", await idToken(lily, t, { iat: now - 900, exp: now - 600 }), /"exp"/],
        ["iat older than max_sad_lifetime", await idToken(lily, t, { iat: now - 400, exp: now + 300 }), /too far in the past/],
        ["iat in the future", await idToken(lily, t, { iat: now + 600, exp: now + 900 }), /should be in the past/],
        ["no nonce", await idToken(lily, t, { nonce: undefined }), /"nonce"/],
        ["alg none", unsigned, /"alg"/],
        ["HS256 keyed with the provider's public key", await idToken(lily, t, {}, { alg: "HS256" }, hsSecret), /"alg"/],
        ["unknown signing key, the provider's kid", await idToken(lily, t, {}, {}, attacker.privateKey), /signature verification failed/],
        ["unknown signing key, unknown kid", await idToken(lily, t, {}, { kid: "attacker" }, attacker.privateKey), /no applicable key/],
        ["jku header", await idToken(lily, t, {}, { jku: "https://evil.example/jwks" }), /jku/],
        ["embedded jwk header", await idToken(lily, t, {}, { jwk: await exportJWK(attacker.publicKey) }, attacker.privateKey), /jwk/],
        ["not a JWS", "not-a-token", /not a JWS/],
      ];
      for (const [label, login, why] of cases) {
        const err = await refusal(verifyLogin(await claimsRSadFor(lily, t, { login }), t));
        expect(err.code, label).toBe("AUTHENTICATION_FAILED");
        expect(err.message, label).toBe("the signer could not be authenticated");
        const cause = err.cause as Error;
        expect(`${cause.message} ${String((cause.cause as Error | undefined)?.message ?? "")}`, label).toMatch(why); // refused for the intended reason
      }
      expect((await signerBody(lily.signerId)).failedAttempts).toBeUndefined();
      // The transaction is still good for a real login.
      expect((await verifyLogin(await claimsRSadFor(lily, t, { login: await idToken(lily, t) }), t)).signerId).toBe(lily.signerId);
    });
  });

  it("R-3.1.4 level-2 credential with a level-1 method: the login assertion is ASSURANCE_LEVEL_NOT_MET", async () => {
    await underPolicy(allMethods, async () => {
      const t = transaction(alice);
      expect((await refusal(verifyLogin(await claimsRSadFor(alice, t, { login: await idToken(alice, t) }), t))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
    });
  });

  it("R-3.1.4: without a configured OpenID provider, or without the policy enabling it, the login assertion is ASSURANCE_LEVEL_NOT_MET", async () => {
    const t = transaction(lily);
    const login = await idToken(lily, t);
    expect((await underPolicy(allMethods, async () => refusal(verifyLogin(await claimsRSadFor(lily, t, { login }), t, deps)))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
    const level1NoLogin = policyWith({ allowedAssuranceLevels: ["ASSURANCE_LEVEL_1", "ASSURANCE_LEVEL_2"], enabledAuthenticationMethods: ["AUTHENTICATION_METHOD_PIN"] });
    expect((await underPolicy(level1NoLogin, async () => refusal(verifyLogin(await claimsRSadFor(lily, t, { login }), t)))).code).toBe("ASSURANCE_LEVEL_NOT_MET");
  });
});
