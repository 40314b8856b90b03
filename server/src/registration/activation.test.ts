import { readFileSync } from "node:fs";
import { toJsonString } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildActivationRequest, buildPinChangeRequest, createDeviceKey, openTotpEnrollment, type DeviceKey } from "@inkan/sdk";
import { IdentityProofingMethod, ListSignersResponseSchema, RegistrationService, SignerKind, SignerSchema, SignerStatus } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import Database from "better-sqlite3";
import { exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { base32Decode } from "../testing/totp.js";

// SignerService on the real server (SoftHSM2 + SQLite, gRPC with mTLS): the signer activates from
// their device with the SDK's builders, changes the PIN with both current factors; a registration
// operator resets factors and revokes devices. Every attack fails with its reason, changes nothing
// and is audited.
let t: TestServer;
let db: Database.Database;
let operator: PrivilegedPerson;

const ra = () => createClient(RegistrationService, t.as(operator));
const device = () => createClient(SignerService, t.transport("grpc", t.pki.frontEnd)); // through the RSSP's signer front end

const errorOf = refusalOf;

let serial = 0;
async function enrolled(): Promise<{ signerId: string; code: string }> {
  serial += 1;
  const { signer } = await ra().enrollSigner({
    identity: { kind: SignerKind.NATURAL_PERSON, legalName: `Tanaka Ichiro ${serial}`, displayName: `Tanaka ${serial}`, email: `ichiro.${serial}@example.jp`, country: "JP" },
    proofing: { method: IdentityProofingMethod.IN_PERSON, evidenceReference: "RA-1", proofedAt: timestampFromDate(new Date(Date.now() - 60_000)) },
  });
  const { activationCode } = await ra().issueActivationCode({ signerId: signer!.signerId });
  return { signerId: signer!.signerId, code: activationCode!.code };
}

async function challenge(signerId: string, purpose = ChallengePurpose.ACTIVATION) {
  const ch = await device().createChallenge({ signerId, purpose });
  return { challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience };
}

async function activationRequest(signerId: string, activationCode: string, deviceKey: DeviceKey, pin = "246813", enrollTotp = false) {
  return buildActivationRequest({ signerId, activationCode, pin, deviceKey, enrollTotp, ...(await challenge(signerId)) });
}

async function activate(signerId: string, code: string, pin = "246813") {
  const deviceKey = await createDeviceKey();
  const { request } = await activationRequest(signerId, code, deviceKey, pin);
  const out = await device().activate(request);
  return { deviceKey, out };
}

const signerOf = async (signerId: string) => (await ra().getSigner({ signerId })).signer!;
const attemptsLeft = (signerId: string) =>
  (db.prepare("SELECT attempts_left AS n FROM activation_codes WHERE signer_id = ? AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1").get(signerId) as { n: number }).n;
const factorRows = (signerId: string) => db.prepare("SELECT id, type, status, version FROM factors WHERE signer_id = ? ORDER BY id").all(signerId);
/** The audit records about a signer: event type and reason, in order. */
function auditOf(signerId: string): Array<{ event: string; reason?: string; details?: Record<string, string> }> {
  const rows = db.prepare("SELECT event, body FROM audit_records ORDER BY time, sequence").all() as Array<{ event: string; body: string }>;
  return rows
    .map((r) => ({ event: r.event, ...(JSON.parse(r.body) as { signerId?: string; reason?: string; details?: Record<string, string> }) }))
    .filter((r) => r.signerId === signerId)
    .map(({ event, reason, details }) => ({ event, ...(reason ? { reason } : {}), ...(details ? { details } : {}) }));
}
const failures = (signerId: string) => auditOf(signerId).filter((r) => r.event === "factor.check_failed");

beforeAll(async () => {
  t = await startTestServer();
  db = new Database(sqliteStoreFile(t.dataDir), { readonly: true });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-activation");
});
afterAll(async () => {
  db?.close();
  await t?.close();
});

describe("activation from the signer's device (R-3.1.1.2, T-2.1.1.1, T-2.1.1.3, T-2.1.1.4)", () => {
  it("R-3.1.1.2: activation registers the device key and the PIN; the signer is ACTIVE and GetSigner lists the factors without any secret", async () => {
    const { signerId, code } = await enrolled();
    const deviceKey = await createDeviceKey();
    const { request, responseKey } = await activationRequest(signerId, code, deviceKey, "135792468", true);
    const out = await device().activate(request);
    expect(out.deviceKeyId).toBe(deviceKey.kid);
    expect(out.activatedAt).toBeDefined();
    const uri = await openTotpEnrollment(out.totpEnrollment, responseKey!);
    expect(uri).toMatch(/^otpauth:\/\/totp\/Inkan%3A.+\?secret=[A-Z2-7]{32}&issuer=Inkan/);

    const signer = await signerOf(signerId);
    expect(signer.status).toBe(SignerStatus.ACTIVE);
    expect(signer.factors).toMatchObject({ pinSet: true, totpEnrolled: true, failedAttempts: 0 });
    expect(signer.factors?.pendingActivationCode).toBeUndefined();
    expect(signer.factors?.devices).toHaveLength(1);
    expect(signer.factors?.devices[0]?.deviceKeyId).toBe(deviceKey.kid);
    expect(JSON.parse(signer.factors!.devices[0]!.publicKeyJwk)).toEqual(deviceKey.publicJwk);

    const secret = /secret=([A-Z2-7]+)/.exec(uri)![1]!;
    const listed = toJsonString(ListSignersResponseSchema, await ra().listSigners({ page: { pageSize: 1000 } }));
    const got = toJsonString(SignerSchema, signer);
    for (const text of [listed, got]) {
      for (const needle of ["135792468", secret, code, "scrypt", "salt", "encryptedSecret", '\\"d\\"']) expect(text).not.toContain(needle);
    }
    expect(auditOf(signerId).map((r) => r.event)).toEqual(expect.arrayContaining(["factor.enrolled", "signer.activated"]));
  });

  for (const alg of ["ES256", "ES384", "ES512", "EdDSA"] as const) {
    it(`R-3.1.1.2: activation works with every device-key algorithm the default policy allows: ${alg}`, async () => {
      const { signerId, code } = await enrolled();
      const deviceKey = await createDeviceKey(alg);
      const { request } = await activationRequest(signerId, code, deviceKey);
      const out = await device().activate(request);
      expect(out.deviceKeyId).toBe(deviceKey.kid);
      expect((await signerOf(signerId)).status).toBe(SignerStatus.ACTIVE);
    });
  }

  it("R-3.1.1.2: the PIN and the TOTP secret are not stored in clear (SQLite file bytes)", async () => {
    const pin = "Zq7-unique-PIN-8841";
    const { signerId, code } = await enrolled();
    const deviceKey = await createDeviceKey();
    const { request, responseKey } = await activationRequest(signerId, code, deviceKey, pin, true);
    const out = await device().activate(request);
    const secret = /secret=([A-Z2-7]+)/.exec(await openTotpEnrollment(out.totpEnrollment, responseKey!))![1]!;
    // The database file and its write-ahead log, wherever the rows are right now.
    const files = [sqliteStoreFile(t.dataDir), `${sqliteStoreFile(t.dataDir)}-wal`].flatMap((f) => {
      try {
        return [readFileSync(f)];
      } catch {
        return [];
      }
    });
    expect(files.length).toBeGreaterThan(0);
    const secretBytes = Buffer.from(base32Decode(secret));
    for (const bytes of files) {
      expect(bytes.includes(Buffer.from(pin, "utf8"))).toBe(false);
      expect(bytes.includes(Buffer.from(code, "utf8"))).toBe(false);
      expect(bytes.includes(secretBytes)).toBe(false);
      expect(bytes.includes(Buffer.from(secret))).toBe(false);
    }
  });

  it("T-2.1.1.1: a second activation with the same code fails with ACTIVATION_CODE_INVALID and is audited", async () => {
    const { signerId, code } = await enrolled();
    await activate(signerId, code);
    const before = factorRows(signerId);
    const err = await errorOf(activate(signerId, code));
    expect(err).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ACTIVATION_CODE_INVALID });
    expect(factorRows(signerId)).toEqual(before);
    expect(failures(signerId).at(-1)).toMatchObject({ reason: "REASON_ACTIVATION_CODE_INVALID" });
  });

  it("T-2.1.1.1: a guessed code fails and uses up an attempt; once the attempts are gone the right code fails too", async () => {
    const { signerId, code } = await enrolled();
    const max = attemptsLeft(signerId);
    const guess = "00000-00000-00000-00000-00000";
    const first = await errorOf(activate(signerId, guess));
    expect(first).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ACTIVATION_CODE_INVALID });
    expect(attemptsLeft(signerId)).toBe(max - 1);
    for (let i = 1; i < max; i++) await errorOf(activate(signerId, guess));
    expect(attemptsLeft(signerId)).toBe(0);
    const last = await errorOf(activate(signerId, code));
    expect(last.reason).toBe(Reason.ACTIVATION_CODE_INVALID);
    expect(first.message).toBe(last.message); // one uniform message: exhausted looks like wrong
    expect((await signerOf(signerId)).status).toBe(SignerStatus.PENDING_ACTIVATION);
    expect(factorRows(signerId)).toEqual([]);
    expect(failures(signerId)).toHaveLength(max + 1);
  });

  it("T-2.1.1.1: an expired code fails", async () => {
    const { signerId, code } = await enrolled();
    // Time passes: the insider's connection moves the code's expiry into the past (codes are not sealed; expiry is what is tested).
    const rw = new Database(sqliteStoreFile(t.dataDir));
    rw.prepare("UPDATE activation_codes SET expires_at = ? WHERE signer_id = ?").run(Date.now() - 1000, signerId);
    rw.close();
    const err = await errorOf(activate(signerId, code));
    expect(err).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ACTIVATION_CODE_INVALID });
    expect(factorRows(signerId)).toEqual([]);
    expect(failures(signerId).at(-1)).toMatchObject({ reason: "REASON_ACTIVATION_CODE_INVALID" });
  });

  it("T-2.1.1.4: another signer's code fails for this signer; it still works for its own signer", async () => {
    const a = await enrolled();
    const b = await enrolled();
    const err = await errorOf(activate(b.signerId, a.code));
    expect(err.reason).toBe(Reason.ACTIVATION_CODE_INVALID);
    expect((await signerOf(b.signerId)).status).toBe(SignerStatus.PENDING_ACTIVATION);
    expect(failures(b.signerId).at(-1)).toMatchObject({ reason: "REASON_ACTIVATION_CODE_INVALID" });
    await activate(a.signerId, a.code);
    expect((await signerOf(a.signerId)).status).toBe(SignerStatus.ACTIVE);
  });

  it("T-2.1.1.1: a replayed challenge fails with NONCE_REPLAYED, and so does a challenge of another signer", async () => {
    const { signerId, code } = await enrolled();
    const other = await enrolled();
    const deviceKey = await createDeviceKey();
    const ch = await challenge(signerId);
    const first = await buildActivationRequest({ signerId, activationCode: "00000-00000-00000-00000-00000", pin: "246813", deviceKey, ...ch });
    expect((await errorOf(device().activate(first.request))).reason).toBe(Reason.ACTIVATION_CODE_INVALID); // consumes the challenge
    const again = await buildActivationRequest({ signerId, activationCode: code, pin: "246813", deviceKey, ...ch });
    expect(await errorOf(device().activate(again.request))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
    const foreign = await buildActivationRequest({ signerId, activationCode: code, pin: "246813", deviceKey, ...(await challenge(other.signerId)) });
    expect((await errorOf(device().activate(foreign.request))).reason).toBe(Reason.NONCE_REPLAYED);
    expect(failures(signerId).at(-1)).toMatchObject({ reason: "REASON_NONCE_REPLAYED" });
    expect(factorRows(signerId)).toEqual([]);
    await activate(signerId, code); // the code was not touched by the refused requests
  });

  it("T-2.1.1.1: a proof signed by a key other than the submitted device key fails with AUTHENTICATION_FAILED and costs no attempt", async () => {
    const { signerId, code } = await enrolled();
    const signing = await createDeviceKey();
    const submitted = await createDeviceKey();
    const { request } = await activationRequest(signerId, code, signing);
    const max = attemptsLeft(signerId);
    const err = await errorOf(device().activate({ ...request, devicePublicKeyJwk: JSON.stringify(submitted.publicJwk) }));
    expect(err).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
    expect(attemptsLeft(signerId)).toBe(max);
    expect(failures(signerId).at(-1)).toMatchObject({ reason: "REASON_AUTHENTICATION_FAILED" });
    expect((await errorOf(device().activate({ ...request, activationEnvelope: request.activationEnvelope.replace(/\.[^.]+$/, ".AAAAAAAAAAAAAAAAAAAAAA") }))).reason).toBe(Reason.AUTHENTICATION_FAILED);
  });

  it("refuses a device JWK with a private member and a PIN that breaks the policy, with INVALID_REQUEST", async () => {
    const { signerId, code } = await enrolled();
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const withD = await exportJWK(privateKey);
    const deviceKey = await createDeviceKey();
    const { request } = await activationRequest(signerId, code, deviceKey);
    expect((await errorOf(device().activate({ ...request, devicePublicKeyJwk: JSON.stringify(withD) }))).reason).toBe(Reason.INVALID_REQUEST);
    const short = await activationRequest(signerId, code, deviceKey, "123");
    expect((await errorOf(device().activate(short.request))).reason).toBe(Reason.INVALID_REQUEST);
    await activate(signerId, code);
  });

  it("creates a challenge for an unknown signer too (existence does not leak), which never works", async () => {
    const ch = await device().createChallenge({ signerId: "sgn-does-not-exist", purpose: ChallengePurpose.ACTIVATION });
    expect(ch.challenge).toHaveLength(32);
    expect(ch.audience).toMatch(/^urn:inkan:sam:/);
    const deviceKey = await createDeviceKey();
    const { request } = await buildActivationRequest({ signerId: "sgn-does-not-exist", activationCode: "00000-00000-00000-00000-00000", pin: "246813", deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
    expect((await errorOf(device().activate(request))).reason).toBe(Reason.ACTIVATION_CODE_INVALID);
  });
});

describe("PIN change and re-binding only with the signer's current factors (R-3.1.2.2, T-2.1.2.2)", () => {
  async function pinChange(signerId: string, deviceKey: DeviceKey, oldPin: string, newPin: string, ch?: Awaited<ReturnType<typeof challenge>>) {
    return buildPinChangeRequest({ signerId, oldPin, newPin, deviceKey, ...(ch ?? (await challenge(signerId, ChallengePurpose.PIN_CHANGE))) });
  }

  it("R-3.1.2.2: the PIN changes with the device key's proof and the old PIN (PIN hash verification works); the old PIN stops working", async () => {
    const { signerId, code } = await enrolled();
    const { deviceKey } = await activate(signerId, code, "111222333");
    const out = await device().changePin(await pinChange(signerId, deviceKey, "111222333", "444555666"));
    expect(out.changedAt).toBeDefined();
    expect(await errorOf(device().changePin(await pinChange(signerId, deviceKey, "111222333", "777888999")))).toMatchObject({ reason: Reason.AUTHENTICATION_FAILED });
    await device().changePin(await pinChange(signerId, deviceKey, "444555666", "777888999"));
    const events = auditOf(signerId).map((r) => r.event);
    expect(events).toEqual(expect.arrayContaining(["factor.verified", "factor.revoked", "factor.enrolled"]));
    expect((await signerOf(signerId)).factors?.failedAttempts).toBe(0); // a success ends the run of failures
  });

  it("T-2.1.2.2: without a registered device key's proof, with a wrong old PIN or with a replayed challenge the change fails and changes nothing", async () => {
    const { signerId, code } = await enrolled();
    const { deviceKey } = await activate(signerId, code, "121212121");
    const before = factorRows(signerId);

    const stranger = await createDeviceKey();
    expect(await errorOf(device().changePin(await pinChange(signerId, stranger, "121212121", "343434343")))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.AUTHENTICATION_FAILED });
    expect(factorRows(signerId)).toEqual(before);

    expect((await errorOf(device().changePin(await pinChange(signerId, deviceKey, "999999999", "343434343")))).reason).toBe(Reason.AUTHENTICATION_FAILED);
    expect(factorRows(signerId)).toEqual(before);
    expect((await signerOf(signerId)).factors?.failedAttempts).toBe(1); // counts toward the lockout

    const ch = await challenge(signerId, ChallengePurpose.PIN_CHANGE);
    await device().changePin(await pinChange(signerId, deviceKey, "121212121", "343434343", ch));
    const after = factorRows(signerId);
    expect(await errorOf(device().changePin(await pinChange(signerId, deviceKey, "343434343", "565656565", ch)))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.NONCE_REPLAYED });
    // An activation challenge does not work for a PIN change either.
    expect((await errorOf(device().changePin(await pinChange(signerId, deviceKey, "343434343", "565656565", await challenge(signerId))))).reason).toBe(Reason.NONCE_REPLAYED);
    expect(factorRows(signerId)).toEqual(after);
    expect(failures(signerId).map((r) => r.reason)).toEqual(["REASON_AUTHENTICATION_FAILED", "REASON_AUTHENTICATION_FAILED", "REASON_NONCE_REPLAYED", "REASON_NONCE_REPLAYED"]);
  });

  it("T-2.1.2.2: wrong old PINs up to the policy's threshold lock the signer; then the right PIN is refused with CREDENTIAL_LOCKED", async () => {
    const { signerId, code } = await enrolled();
    const { deviceKey } = await activate(signerId, code, "909090909");
    for (let i = 0; i < 5; i++) await errorOf(device().changePin(await pinChange(signerId, deviceKey, "000000001", "818181818")));
    const signer = await signerOf(signerId);
    expect(signer.factors?.failedAttempts).toBe(5);
    expect(signer.factors?.lockedAt).toBeDefined();
    expect(await errorOf(device().changePin(await pinChange(signerId, deviceKey, "909090909", "818181818")))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.CREDENTIAL_LOCKED });
  });

  it("R-3.1.2.2: ResetFactors revokes every factor, is audited with the operator, and issues a new code that works (a new device re-binds)", async () => {
    const { signerId, code } = await enrolled();
    const { deviceKey: oldDevice } = await activate(signerId, code, "123123123");
    const { signer, activationCode } = await ra().resetFactors({ signerId, reason: "device lost, identity re-verified in person" });
    expect(signer?.status).toBe(SignerStatus.PENDING_ACTIVATION);
    expect(signer?.factors).toMatchObject({ pinSet: false, totpEnrolled: false });
    expect(signer?.factors?.devices[0]?.revokedAt).toBeDefined();
    expect(signer?.statusReason).toBe("device lost, identity re-verified in person");
    const revoked = auditOf(signerId).filter((r) => r.event === "factor.revoked");
    expect(revoked.length).toBe(2);
    const operatorRecords = (db.prepare("SELECT body FROM audit_records WHERE event = 'factor.revoked'").all() as Array<{ body: string }>)
      .map((r) => JSON.parse(r.body) as { signerId: string; actor: { id?: string } })
      .filter((r) => r.signerId === signerId);
    expect(operatorRecords.every((r) => r.actor.id === operator.userId)).toBe(true);

    // The old device and the old code no longer work; the new code does.
    expect((await errorOf(device().changePin(await pinChange(signerId, oldDevice, "123123123", "456456456")))).reason).toBe(Reason.AUTHENTICATION_FAILED);
    expect((await errorOf(activate(signerId, code))).reason).toBe(Reason.ACTIVATION_CODE_INVALID);
    const { deviceKey: newDevice } = await activate(signerId, activationCode!.code, "789789789");
    const after = await signerOf(signerId);
    expect(after.status).toBe(SignerStatus.ACTIVE);
    expect(after.factors?.devices.map((d) => [d.deviceKeyId, d.revokedAt !== undefined])).toEqual(
      expect.arrayContaining([[oldDevice.kid, true], [newDevice.kid, false]]),
    );
  });

  it("RevokeDevice revokes one device key: its proofs are refused; revoking it again is NOT_FOUND", async () => {
    const { signerId, code } = await enrolled();
    const { deviceKey } = await activate(signerId, code, "321321321");
    const { signer } = await ra().revokeDevice({ signerId, deviceKeyId: deviceKey.kid, reason: "phone lost" });
    expect(signer?.factors?.devices[0]?.revokedAt).toBeDefined();
    expect(signer?.factors?.pinSet).toBe(true);
    expect((await errorOf(device().changePin(await pinChange(signerId, deviceKey, "321321321", "654654654")))).reason).toBe(Reason.AUTHENTICATION_FAILED);
    expect(await errorOf(ra().revokeDevice({ signerId, deviceKeyId: deviceKey.kid, reason: "again" }))).toMatchObject({ code: Code.NotFound, reason: Reason.INVALID_REQUEST });
  });

  it("an SCA certificate cannot reset factors (T-2.1.1.4: nobody re-binds a signer but a registration operator)", async () => {
    const { signerId } = await enrolled();
    const viaSca = createClient(RegistrationService, t.transport("grpc", t.pki.sca));
    expect((await errorOf(viaSca.resetFactors({ signerId, reason: "self-service" }))).code).toBe(Code.PermissionDenied);
  });
});
