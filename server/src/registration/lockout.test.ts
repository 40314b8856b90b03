/**
 * Issue 13, finding 1 (T-2.1.2.2, T-2.2.1.3, R-3.1.2.2) and the ImportKey part of finding 5, on the
 * real server (SoftHSM2 + SQLite, gRPC with mTLS): guesses fired at once behind a start barrier,
 * as an attacker holding a stolen device key would, against the signer's lockout (Authorize with
 * device key + PIN and with PIN + TOTP, ChangePin, the ImportKey consent) and against a
 * transaction's max_authorize_attempts.
 *
 * What counts as "a check happened" is measured outside the code under test: the crypto module is
 * wrapped (the test-only ServeHooks) to record every PIN derivation, which starts with the pepper
 * HMAC over "inkan-pin-pepper-v1\n" + PIN (registration/pin-hash.ts). The PINs stay in memory.
 */
import { randomBytes, generateKeyPairSync, type KeyObject } from "node:crypto";
import { ConnectError, createClient } from "@connectrpc/connect";
import { Reason, buildActivationRequest, buildClaimsRSad, buildKeyImportConsent, buildPinChangeRequest, buildRSad, createDeviceKey, inkanErrorReason, openTotpEnrollment, type DeviceKey } from "@inkan/sdk";
import { KeyWrapScheme, RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { HashAlgorithm, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FullCryptoModule } from "../crypto/port.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import { hotp, totpStep } from "../sap/totp-check.js";
import type { Store } from "../store/port.js";
import { sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { wrapForImport } from "../testing/key-wrap.js";
import { issueSignerCertificate, signerIssuingCa } from "../testing/signer-certificates.js";
import { activeSigner, activeSignerWithCredential, enrolledSigner, testPin } from "../testing/signers.js";
import { totpSecretOf } from "../testing/totp.js";
import { signerAttempts } from "./lockout.js";

/** The default policy's lockout_threshold and max_authorize_attempts (checked against the server in beforeAll). */
const threshold = 5;
const maxAuthorizeAttempts = 3;

/** Every PIN the server derived (a check), in the order the derivations started. Test memory only, never printed. */
const pinChecks: string[] = [];
const pepper = Buffer.from("inkan-pin-pepper-v1\n", "utf8");

/** The real crypto module, recording each PIN derivation's PIN. */
function countingPinChecks(crypto: FullCryptoModule): FullCryptoModule {
  return new Proxy(crypto, {
    get(target, prop, receiver) {
      if (prop === "hmacSha256") {
        return async (key: "record-seal", data: Uint8Array) => {
          const bytes = Buffer.from(data);
          if (bytes.subarray(0, pepper.length).equals(pepper)) pinChecks.push(bytes.subarray(pepper.length).toString("utf8"));
          return target.hmacSha256(key, data);
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

let t: TestServer;
let store: Store;
let records: VerifiedRecords;
let operator: PrivilegedPerson;
let db: Database.Database;

// One connection per client kind, as an SCA and a device keep theirs: hundreds of calls share it
// (a transport per call would open a connection per call, past the server's connection limit).
let scaTransport: ReturnType<TestServer["transport"]> | undefined;
const shared = () => (scaTransport ??= t.transport("grpc", t.pki.sca));
const sca = () => createClient(SignatureActivationService, shared());
let frontEndTransport: ReturnType<TestServer["transport"]> | undefined;
const device = () => createClient(SignerService, (frontEndTransport ??= t.transport("grpc", t.pki.frontEnd)));
const ra = (who = operator) => createClient(RegistrationService, t.as(who));

/** Fires every call at once behind a start barrier, then waits for all; the Inkan reason of each refusal. */
async function burst<T>(calls: (() => Promise<T>)[]): Promise<{ ok: T[]; ordered: (T | string)[]; reasons: string[] }> {
  let open!: () => void;
  const barrier = new Promise<void>((resolve) => (open = resolve));
  const started = calls.map(async (call) => {
    await barrier;
    return call();
  });
  open();
  const settled = await Promise.allSettled(started);
  const ordered = settled.map((r) => (r.status === "fulfilled" ? r.value : Reason[inkanErrorReason(ConnectError.from(r.reason))] ?? "UNKNOWN"));
  return {
    ok: settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : [])),
    ordered,
    reasons: ordered.filter((r): r is string => typeof r === "string"),
  };
}

const tally = (reasons: string[]) => reasons.reduce<Record<string, number>>((m, r) => ({ ...m, [r]: (m[r] ?? 0) + 1 }), {});
const reasonOf = async (p: Promise<unknown>) => p.then(() => "OK", (e: unknown) => Reason[inkanErrorReason(ConnectError.from(e))]);
/** Distinct wrong PINs (9 digits; the test signers' PIN is testPin). */
const wrongPin = (i: number) => String(100_000_000 + i);

/** `n` pending transactions of the signer's credential, one hash each. */
async function transactions(s: { signerId: string; credential: { credentialId: string } }, n: number): Promise<SadChallenge[]> {
  const out: SadChallenge[] = [];
  for (let i = 0; i < n; i += 25) {
    const batch = await Promise.all(Array.from({ length: Math.min(25, n - i) }, () =>
      sca().beginTransaction({ credentialId: s.credential.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [randomBytes(32)], description: "lockout test" })));
    out.push(...batch.map((b) => b.sadChallenge!));
  }
  return out;
}

/** The signer's device: the R.SAD (device key + PIN) for `ch`. */
const rSad = (deviceKey: DeviceKey, ch: SadChallenge, pin: string) =>
  buildRSad({ deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin, samKey: ch.encryptionKey! });

const authorize = (ch: SadChallenge, r: string) => () => sca().authorize({ transactionId: ch.transactionId, rSad: r });

/** One more wrong PIN on a new transaction of the signer's credential, sent alone: its reason. */
async function wrongAuthorize(s: { signerId: string; credential: { credentialId: string }; deviceKey: DeviceKey }): Promise<string> {
  const [ch] = await transactions(s, 1);
  return reasonOf(authorize(ch!, await rSad(s.deviceKey, ch!, wrongPin(999)))());
}

/** The R.SAD of a PIN + TOTP signer (no device key) for `ch`. */
const totpRSad = (ch: SadChallenge, pin: string, otp: string) => buildClaimsRSad({
  signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId, challenge: ch.challenge,
  dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, samKey: ch.encryptionKey!, factors: { pin, otp },
});

/** The factor.check_failed audit records of failed checks about a signer (factor and actor), in order. */
function failedChecks(signerId: string): { factor: string; actor: string }[] {
  return (db.prepare("SELECT body FROM audit_records WHERE event = 'factor.check_failed' ORDER BY time, sequence").all() as { body: string }[])
    .map((r) => JSON.parse(r.body) as { signerId?: string; reason?: string; actor?: { id?: string }; details?: { factor?: string } })
    .filter((b) => b.signerId === signerId && b.reason === "REASON_AUTHENTICATION_FAILED")
    .map((b) => ({ factor: b.details?.factor ?? "", actor: b.actor?.id ?? "" }));
}

const signerOf = async (signerId: string) => (await ra().getSigner({ signerId })).signer!;

/**
 * The invariants every burst against the signer's lockout must keep (a); returns the counted checks.
 * A burst may end below the threshold without a lost check: between a failure's persisting and its
 * reservation's release that attempt counts twice (settled and held), so requests arriving then are
 * refused LIMIT_EXCEEDED unchecked (fail closed, lockout.ts). So once the burst has settled, `another`
 * wrong guess is sent one at a time until the signer is locked, and the budget is judged over both.
 */
async function expectWithinLockout(signerId: string, reasons: string[], allowed: string[], another: () => Promise<string>): Promise<number> {
  const counts = tally(reasons);
  expect(counts.VERSION_CONFLICT ?? 0, "VERSION_CONFLICT answers (a lost write telling a wrong guess apart)").toBe(0);
  expect(Object.keys(counts).filter((r) => !allowed.includes(r)), JSON.stringify(counts)).toEqual([]);
  expect(counts.AUTHENTICATION_FAILED ?? 0, `AUTHENTICATION_FAILED answers of ${reasons.length}: ${JSON.stringify(counts)}`).toBeLessThanOrEqual(threshold);
  expect(pinChecks.length, "PIN checks made in the burst").toBeLessThanOrEqual(threshold);
  expect(pinChecks.length, "every check made in the burst was answered AUTHENTICATION_FAILED").toBe(counts.AUTHENTICATION_FAILED ?? 0);
  const sequential: string[] = [];
  while ((await signerOf(signerId)).factors?.lockedAt === undefined && sequential.length <= threshold) sequential.push(await another());
  if (sequential.length > 0) console.log(`lockout burst ended below the threshold (${JSON.stringify(counts)}); ${sequential.length} more guesses one at a time: ${sequential.join(", ")}`);
  expect(sequential.every((r) => r === "AUTHENTICATION_FAILED"), sequential.join(", ")).toBe(true);
  const failed = (counts.AUTHENTICATION_FAILED ?? 0) + sequential.length;
  expect(pinChecks.length, "PIN checks made in all").toBe(failed);
  const after = await signerOf(signerId);
  expect(after.factors?.failedAttempts, "failures recorded").toBe(threshold); // none lost, none beyond the budget
  expect(after.factors?.lockedAt, "the signer ends locked").toBeDefined();
  expect(failed, "checks in all").toBe(threshold);
  return failed;
}

beforeAll(async () => {
  t = await startTestServer({}, {
    wrapCrypto: countingPinChecks,
    wrapStore: (s) => (store = s),
    onRecords: (r) => (records = r),
  });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "RA operator");
  db = new Database(sqliteStoreFile(t.dataDir), { readonly: true });
  expect((await sca().getInfo({})).limits?.maxAuthorizeAttempts).toBe(maxAuthorizeAttempts);
}, 120_000);

afterAll(async () => {
  db?.close();
  await t?.close();
});

describe("T-2.1.2.2, T-2.2.1.3, R-3.1.2.2: concurrent guesses get at most lockout_threshold factor checks (issue 13, finding 1)", () => {
  it("(a) T-2.1.2.2: 200 concurrent wrong PINs over a stolen device key (Authorize, each on its own transaction): at most lockout_threshold checked and answered AUTHENTICATION_FAILED, none VERSION_CONFLICT, each failure audited, the signer ends locked; the right PIN afterwards gets no token", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const chs = await transactions(s, 201);
    const rSads = await Promise.all(chs.slice(0, 200).map((ch, i) => rSad(s.deviceKey, ch, wrongPin(i))));
    pinChecks.length = 0;
    const { ok, reasons } = await burst(rSads.map((r, i) => authorize(chs[i]!, r)));
    expect(ok).toHaveLength(0);
    const failed = await expectWithinLockout(s.signerId, reasons, ["AUTHENTICATION_FAILED", "CREDENTIAL_LOCKED", "LIMIT_EXCEEDED"], () => wrongAuthorize(s));
    expect(failedChecks(s.signerId)).toEqual(Array.from({ length: failed }, () => ({ factor: "PIN", actor: s.signerId }))); // every failed check audited
    expect((await records.get("credential", s.credential.credentialId))?.status).toBe("LOCKED");
    pinChecks.length = 0;
    expect(await reasonOf(authorize(chs[200]!, await rSad(s.deviceKey, chs[200]!, testPin))())).toBe("CREDENTIAL_LOCKED");
    expect(pinChecks).toHaveLength(0); // refused without a check
  }, 60_000);

  it("(b) T-2.1.2.2: the right PIN inside a burst of 60 wrong ones: it gets a token only if it was checked, with at most lockout_threshold - 1 wrong checks before it; at most lockout_threshold checks before a success and after it", async () => {
    for (const position of [0, 30]) {
      const s = await activeSignerWithCredential(t, operator);
      const chs = await transactions(s, 61);
      const pins = chs.map((_, i) => (i === position ? testPin : wrongPin(i)));
      const rSads = await Promise.all(chs.map((ch, i) => rSad(s.deviceKey, ch, pins[i]!)));
      pinChecks.length = 0;
      const { ordered, reasons } = await burst(rSads.map((r, i) => authorize(chs[i]!, r)));
      expect(tally(reasons).VERSION_CONFLICT ?? 0).toBe(0);
      const gotToken = typeof ordered[position] !== "string";
      const checkedAt = pinChecks.indexOf(testPin);
      console.log(`(b) right PIN at position ${position}: ${gotToken ? `checked as check ${checkedAt + 1} and authorized` : "refused unchecked"}; ${pinChecks.length} PIN checks in all`);
      expect(gotToken, `position ${position}: the right PIN got a token exactly when it was checked`).toBe(checkedAt >= 0);
      expect(ordered.filter((o, i) => i !== position && typeof o !== "string")).toHaveLength(0);
      if (gotToken) {
        expect(checkedAt, "wrong checks started before the right one").toBeLessThanOrEqual(threshold - 1);
        expect(pinChecks.length, "checks in both windows (before the success, after it)").toBeLessThanOrEqual(2 * threshold);
      } else {
        await expectWithinLockout(s.signerId, reasons, ["AUTHENTICATION_FAILED", "CREDENTIAL_LOCKED", "LIMIT_EXCEEDED"], () => wrongAuthorize(s));
      }
    }
  }, 60_000);

  it("(c) T-2.2.1.3: 40 concurrent wrong PINs on one transaction: at most max_authorize_attempts checked, the transaction ends FAILED, the right PIN afterwards gets no token; the signer counted each failure once", async () => {
    const s = await activeSignerWithCredential(t, operator);
    const [ch] = await transactions(s, 1);
    const rSads = await Promise.all(Array.from({ length: 40 }, (_, i) => rSad(s.deviceKey, ch!, wrongPin(i))));
    pinChecks.length = 0;
    const { ok, reasons } = await burst(rSads.map((r) => authorize(ch!, r)));
    const counts = tally(reasons);
    expect(ok).toHaveLength(0);
    expect(counts.VERSION_CONFLICT ?? 0).toBe(0);
    expect(Object.keys(counts).filter((r) => !["AUTHENTICATION_FAILED", "LIMIT_EXCEEDED", "TRANSACTION_STATE"].includes(r)), JSON.stringify(counts)).toEqual([]);
    expect(counts.AUTHENTICATION_FAILED, JSON.stringify(counts)).toBe(maxAuthorizeAttempts); // the first three reservations always get their check
    expect(pinChecks).toHaveLength(maxAuthorizeAttempts);
    expect(await store.getTransaction(ch!.transactionId)).toMatchObject({ state: "FAILED", authorizeFailures: maxAuthorizeAttempts });
    expect(await reasonOf(authorize(ch!, await rSad(s.deviceKey, ch!, testPin))())).toBe("TRANSACTION_STATE");
    expect((await signerOf(s.signerId)).factors?.failedAttempts).toBe(maxAuthorizeAttempts);
  }, 60_000);

  it("(c) T-2.2.1.3: the right PIN inside a burst of 40 wrong ones on one transaction: at most max_authorize_attempts checks in total, and it gets the token only if it was checked", async () => {
    for (const position of [0, 20]) {
      const s = await activeSignerWithCredential(t, operator);
      const [ch] = await transactions(s, 1);
      const rSads = await Promise.all(Array.from({ length: 40 }, (_, i) => rSad(s.deviceKey, ch!, i === position ? testPin : wrongPin(i))));
      pinChecks.length = 0;
      const { ok, ordered, reasons } = await burst(rSads.map((r) => authorize(ch!, r)));
      expect(tally(reasons).VERSION_CONFLICT ?? 0).toBe(0);
      expect(pinChecks.length, "checks on one transaction").toBeLessThanOrEqual(maxAuthorizeAttempts);
      expect(ok.length).toBeLessThanOrEqual(1);
      console.log(`(c) right PIN at position ${position} on one transaction: ${typeof ordered[position] !== "string" ? "checked and authorized" : "refused unchecked"}; ${pinChecks.length} PIN checks in all`);
      expect(typeof ordered[position] !== "string", `position ${position}`).toBe(pinChecks.includes(testPin));
    }
  }, 60_000);

  it("T-2.1.2.2: PIN + TOTP is kept to the same budget: 30 concurrent R.SADs with the current code and wrong PINs, at most lockout_threshold checked, the signer ends locked", async () => {
    const s = await totpSigner();
    const chs = await transactions(s, 30);
    const otp = hotp(s.totpSecret, totpStep(new Date(), 30), 6);
    const rSads = await Promise.all(chs.map((ch, i) => totpRSad(ch, wrongPin(i), otp)));
    pinChecks.length = 0;
    const { ok, reasons } = await burst(rSads.map((r, i) => authorize(chs[i]!, r)));
    expect(ok).toHaveLength(0);
    await expectWithinLockout(s.signerId, reasons, ["AUTHENTICATION_FAILED", "CREDENTIAL_LOCKED", "LIMIT_EXCEEDED"], async () => {
      const [ch] = await transactions(s, 1);
      return reasonOf(authorize(ch!, await totpRSad(ch!, wrongPin(200), otp))());
    });
  }, 60_000);

  it("R-3.1.2.2, T-2.1.2.2: ChangePin is kept to the same budget: 30 concurrent wrong old PINs, at most lockout_threshold checked, none VERSION_CONFLICT, the signer ends locked; the right old PIN afterwards is CREDENTIAL_LOCKED", async () => {
    const s = await activeSigner(t, operator);
    const pinChange = async (oldPin: string) => {
      const ch = await device().createChallenge({ signerId: s.signerId, purpose: ChallengePurpose.PIN_CHANGE });
      return buildPinChangeRequest({ signerId: s.signerId, oldPin, newPin: "864209753", deviceKey: s.deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
    };
    const requests = await Promise.all(Array.from({ length: 30 }, (_, i) => pinChange(wrongPin(i))));
    pinChecks.length = 0;
    const { ok, reasons } = await burst(requests.map((r) => () => device().changePin(r)));
    expect(ok).toHaveLength(0);
    const failed = await expectWithinLockout(s.signerId, reasons, ["AUTHENTICATION_FAILED", "CREDENTIAL_LOCKED", "LIMIT_EXCEEDED"], async () => reasonOf(device().changePin(await pinChange(wrongPin(200)))));
    expect(failedChecks(s.signerId).filter((c) => c.factor === "PIN")).toHaveLength(failed);
    expect(await reasonOf(device().changePin(await pinChange(testPin)))).toBe("CREDENTIAL_LOCKED");
  }, 60_000);

  it("T-2.1.4.1, T-2.1.2.2: the ImportKey consent is kept to the same budget: 30 concurrent consents with wrong PINs, at most lockout_threshold checked, the signer ends locked; the operator is not held back afterwards", async () => {
    const s = await activeSigner(t, operator);
    const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const request = await importRequest(s, pair);
    const consents = await Promise.all(Array.from({ length: 30 }, (_, i) => consent(s, pair.publicKey, wrongPin(i))));
    pinChecks.length = 0;
    const { ok, reasons } = await burst(consents.map((signerConsent) => () => ra().importKey({ ...request, signerConsent })));
    expect(ok).toHaveLength(0);
    await expectWithinLockout(s.signerId, reasons, ["AUTHENTICATION_FAILED", "CREDENTIAL_LOCKED", "LIMIT_EXCEEDED"],
      async () => reasonOf(ra().importKey({ ...request, signerConsent: await consent(s, pair.publicKey, wrongPin(200)) })));
    // Wrong PINs behind valid device signatures were the signer's failures, not the operator's.
    const other = await activeSigner(t, operator);
    const otherPair = generateKeyPairSync("ec", { namedCurve: "P-256" });
    expect((await ra().importKey(await importRequest(other, otherPair))).credential?.credentialId).toBeTruthy();
  }, 60_000);
});

describe("finding 5: undecryptable ImportKey consents count against the calling operator, not the signer", () => {
  it("T-2.1.4.1: five garbage consents leave the signer's count at 0 and the signer usable; the operator's sixth ImportKey is LIMIT_EXCEEDED; another operator still imports for that signer", async () => {
    const lone = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator sending garbage");
    const s = await activeSigner(t, operator);
    const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const base = await importRequest(s, pair, lone);
    for (let i = 0; i < threshold; i++) {
      expect(await reasonOf(ra(lone).importKey({ ...base, signerConsent: "e30.e30.e30.e30.e30" }))).toBe("AUTHENTICATION_FAILED");
    }
    const signer = await signerOf(s.signerId);
    expect(signer.factors?.failedAttempts).toBe(0);
    expect(signer.factors?.lockedAt).toBeUndefined();
    expect(failedChecks(s.signerId)).toEqual(Array.from({ length: threshold }, () => ({ factor: "DEVICE_KEY", actor: lone.userId }))); // audited as the operator's
    expect(await reasonOf(ra(lone).importKey({ ...base, signerConsent: "e30.e30.e30.e30.e30" }))).toBe("LIMIT_EXCEEDED");
    expect(await reasonOf(ra(lone).importKey(await importRequest(s, pair, lone)))).toBe("LIMIT_EXCEEDED"); // held back for the window, even with a valid consent
    expect((await ra().importKey(await importRequest(s, pair))).credential?.signerId).toBe(s.signerId);
  }, 60_000);
});

describe("T-2.1.2.2: a check that crashed mid-way (its reservation expired, never released) still counts", () => {
  it("a crashed check leaves lockout_threshold - 1 checks; ResetLockout clears it", async () => {
    const s = await activeSignerWithCredential(t, operator);
    await crashedCheck(s.signerId);
    const chs = await transactions(s, threshold + 1);
    pinChecks.length = 0;
    for (let i = 0; i < threshold - 1; i++) expect(await reasonOf(authorize(chs[i]!, await rSad(s.deviceKey, chs[i]!, wrongPin(i)))())).toBe("AUTHENTICATION_FAILED");
    expect(await reasonOf(authorize(chs[threshold - 1]!, await rSad(s.deviceKey, chs[threshold - 1]!, testPin))())).toBe("LIMIT_EXCEEDED"); // refused unchecked
    expect(pinChecks).toHaveLength(threshold - 1);
    await ra().resetLockout({ signerId: s.signerId, reason: "attempts were the signer's own" });
    expect(await store.releaseAttempt({ subject: signerAttempts(s.signerId), id: "crashed-node" })).toBe(false); // cleared by the reset
    expect(await reasonOf(authorize(chs[threshold]!, await rSad(s.deviceKey, chs[threshold]!, testPin))())).toBe("OK");
  }, 60_000);

  it("a success clears it: with a crashed check and 3 failures the right PIN passes, then lockout_threshold wrong PINs are checked before the lock", async () => {
    const s = await activeSignerWithCredential(t, operator);
    await crashedCheck(s.signerId);
    const chs = await transactions(s, threshold + 4);
    for (let i = 0; i < 3; i++) expect(await reasonOf(authorize(chs[i]!, await rSad(s.deviceKey, chs[i]!, wrongPin(i)))())).toBe("AUTHENTICATION_FAILED");
    expect(await reasonOf(authorize(chs[3]!, await rSad(s.deviceKey, chs[3]!, testPin))())).toBe("OK"); // 3 failures + the crashed check + this one: within 5
    expect(await store.releaseAttempt({ subject: signerAttempts(s.signerId), id: "crashed-node" })).toBe(false); // cleared by the success
    pinChecks.length = 0;
    for (let i = 4; i < threshold + 4; i++) expect(await reasonOf(authorize(chs[i]!, await rSad(s.deviceKey, chs[i]!, wrongPin(i)))())).toBe("AUTHENTICATION_FAILED");
    expect(pinChecks).toHaveLength(threshold);
    expect((await signerOf(s.signerId)).factors?.lockedAt).toBeDefined();
  }, 60_000);
});

/** What a SAM node that died during a check leaves behind: a reservation of the signer's attempts, its lease long over. */
async function crashedCheck(signerId: string): Promise<void> {
  const then = Date.now() - 10 * 60_000;
  await store.reserveAttempt({ subject: signerAttempts(signerId), id: "crashed-node", now: new Date(then), expiresAt: new Date(then + 60_000) });
}

/** An ACTIVE signer with device key, PIN and TOTP, and one ACTIVE credential. */
async function totpSigner() {
  const { signerId, code } = await enrolledSigner(t, operator);
  const ch = await device().createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
  const deviceKey = await createDeviceKey();
  const { request, responseKey } = await buildActivationRequest({ signerId, activationCode: code, pin: testPin, deviceKey, enrollTotp: true, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
  const { totpEnrollment } = await device().activate(request);
  const totpSecret = totpSecretOf(await openTotpEnrollment(totpEnrollment, responseKey!));
  const { credential: generated } = await ra().generateKey({ signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "" });
  const certificate = await issueSignerCertificate(await signerIssuingCa(t), generated!.publicKeySpki);
  const { credential } = await ra().importCertificate({ credentialId: generated!.credentialId, certificateChain: [certificate] });
  return { signerId, deviceKey, totpSecret, credential: credential! };
}

const der = (key: KeyObject) => new Uint8Array(key.export({ type: "spki", format: "der" }));

/** The signer's device: a key-import consent over a fresh challenge. */
async function consent(s: { signerId: string; deviceKey: DeviceKey }, publicKey: KeyObject, pin: string): Promise<string> {
  const ch = await device().createChallenge({ signerId: s.signerId, purpose: ChallengePurpose.KEY_IMPORT });
  return buildKeyImportConsent({ signerId: s.signerId, pin, deviceKey: s.deviceKey, publicKeySpki: der(publicKey), keyAlgorithm: "KEY_ALGORITHM_EC_P256", challenge: ch.challenge, audience: ch.audience, samKey: ch.encryptionKey! });
}

/** An ImportKey request for `pair` with the signer's consent (right PIN). */
async function importRequest(s: { signerId: string; deviceKey: DeviceKey }, pair: { privateKey: KeyObject; publicKey: KeyObject }, who = operator) {
  const transport = await ra(who).getKeyImportTransportKey({});
  return {
    signerId: s.signerId, transportKeyId: transport.transportKeyId, wrapScheme: KeyWrapScheme.RSA_OAEP_AES_KWP, ...wrapForImport(pair.privateKey, transport.publicKeyJwk),
    keyAlgorithm: KeyAlgorithm.EC_P256, publicKeySpki: der(pair.publicKey), assuranceLevel: 0, label: "imported", certificateChain: [],
    signerConsent: await consent(s, pair.publicKey, testPin),
  };
}
