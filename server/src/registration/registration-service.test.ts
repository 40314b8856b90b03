import { createHash, createPublicKey } from "node:crypto";
import { clone, toJsonString } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import { PolicyService, SecurityPolicySchema } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import {
  CredentialOrigin,
  IdentityProofingMethod,
  RegistrationService,
  SignerKind,
  SignerSchema,
  SignerStatus,
} from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ErrorDetailSchema } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import { AssuranceLevel, CredentialStatus, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import { sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activationCodeHash } from "./activation-code.js";

// RegistrationService on the real server (SoftHSM2 + SQLite, over gRPC with mTLS and signed admin
// requests): signers enrolled only by registration operators, one-time activation codes kept as
// hashes, keys generated in the crypto module and bound to exactly one signer by a sealed record.
let t: TestServer;
let db: Database.Database;
let so1: PrivilegedPerson;
let so2: PrivilegedPerson;
let operator: PrivilegedPerson;
let auditor: PrivilegedPerson;

const createUser = (by: PrivilegedPerson, name: string, role: PrivilegedRole) => t.createPrivilegedUser(role, name, by);
const registrationAs = (p: PrivilegedPerson) => createClient(RegistrationService, t.as(p));

async function errorOf(p: Promise<unknown>): Promise<{ code: Code; reason: Reason; field: string }> {
  try {
    await p;
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, reason: inkanErrorReason(err), field: e.findDetails(ErrorDetailSchema)[0]?.field ?? "" };
  }
  throw new Error("expected the call to fail");
}

let serial = 0;
function identity(overrides: Record<string, unknown> = {}) {
  serial += 1;
  return {
    kind: SignerKind.NATURAL_PERSON,
    legalName: `Sato Hanako ${serial}`,
    displayName: `Sato Hanako ${serial}`,
    email: `hanako.${serial}@example.jp`,
    country: "JP",
    externalId: `CUST-${serial}-${Date.now()}`,
    ...overrides,
  };
}
const proofing = () => ({
  method: IdentityProofingMethod.IN_PERSON,
  evidenceReference: "RA-2026-000123",
  proofedAt: timestampFromDate(new Date(Date.now() - 60_000)),
});

async function enrollSigner(overrides: Record<string, unknown> = {}) {
  const { signer } = await registrationAs(operator).enrollSigner({ identity: identity(overrides), proofing: proofing() });
  return signer!;
}
const count = (table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;

beforeAll(async () => {
  t = await startTestServer();
  db = new Database(sqliteStoreFile(t.dataDir)); // the insider's own connection
  so1 = t.firstSecurityOfficer;
  so2 = await createUser(so1, "security-officer-2", PrivilegedRole.SECURITY_OFFICER);
  operator = await createUser(so1, "operator-1", PrivilegedRole.REGISTRATION_OPERATOR);
  auditor = await createUser(so1, "auditor-1", PrivilegedRole.AUDITOR);
});
afterAll(async () => {
  db?.close();
  await t?.close();
});

describe("signers are enrolled and changed by registration operators only (R-3.1.1.1, T-2.1.1.4)", () => {
  it("R-3.1.1.1: an operator enrolls, reads, lists, updates (compare-and-set), disables and enables a signer", async () => {
    const ra = registrationAs(operator);
    const signer = await enrollSigner({ email: "Mixed.Case@Example.JP" });
    expect(signer.status).toBe(SignerStatus.PENDING_ACTIVATION);
    expect(signer.version).toBe(1n);
    expect(signer.createdBy).toBe(operator.userId);
    expect(signer.identity?.kind).toBe(SignerKind.NATURAL_PERSON);
    expect(signer.proofing?.method).toBe(IdentityProofingMethod.IN_PERSON);
    expect(signer.factors).toMatchObject({ pinSet: false, totpEnrolled: false, devices: [], failedAttempts: 0 });
    expect(signer.factors?.pendingActivationCode).toBeUndefined();

    expect((await ra.getSigner({ signerId: signer.signerId })).signer).toEqual(signer);
    const byExternalId = await ra.listSigners({ externalId: signer.identity!.externalId });
    expect(byExternalId.signers.map((s) => s.signerId)).toEqual([signer.signerId]);
    const byEmail = await ra.listSigners({ email: "mixed.case@example.jp" });
    expect(byEmail.signers.map((s) => s.signerId)).toEqual([signer.signerId]);

    // Oldest first, page by page; a page token is refused with other filters.
    const second = await enrollSigner();
    const first = await ra.listSigners({ page: { pageSize: 1 } });
    expect(first.signers).toHaveLength(1);
    expect(first.page?.nextPageToken).not.toBe("");
    const all: string[] = [];
    let token = "";
    do {
      const page = await ra.listSigners({ page: { pageSize: 1, pageToken: token } });
      all.push(...page.signers.map((s) => s.signerId));
      token = page.page!.nextPageToken;
    } while (token);
    expect(all.indexOf(signer.signerId)).toBeLessThan(all.indexOf(second.signerId));
    expect(await errorOf(ra.listSigners({ status: SignerStatus.ACTIVE, page: { pageSize: 1, pageToken: first.page!.nextPageToken } })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });

    // The external id is unique among signers.
    expect(await errorOf(ra.enrollSigner({ identity: identity({ externalId: signer.identity!.externalId }), proofing: proofing() })))
      .toMatchObject({ code: Code.AlreadyExists, reason: Reason.ALREADY_EXISTS, field: "identity.external_id" });

    const renamed = { ...identity(), externalId: signer.identity!.externalId, legalName: "Suzuki Hanako" };
    const { signer: updated } = await ra.updateSigner({ signerId: signer.signerId, expectedVersion: 1n, identity: renamed, proofing: proofing() });
    expect(updated?.version).toBe(2n);
    expect(updated?.identity?.legalName).toBe("Suzuki Hanako");
    const stale = await errorOf(ra.updateSigner({ signerId: signer.signerId, expectedVersion: 1n, identity: renamed, proofing: proofing() }));
    expect(stale).toMatchObject({ code: Code.Aborted, field: "expected_version" });

    const { signer: disabled } = await ra.disableSigner({ signerId: signer.signerId, reason: "identity document revoked" });
    expect(disabled).toMatchObject({ status: SignerStatus.DISABLED, statusReason: "identity document revoked", version: 3n });
    expect(await errorOf(ra.disableSigner({ signerId: signer.signerId, reason: "again" }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.SIGNER_INACTIVE });
    expect(await errorOf(ra.issueActivationCode({ signerId: signer.signerId }))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.SIGNER_INACTIVE });
    const { signer: enabled } = await ra.enableSigner({ signerId: signer.signerId, reason: "re-verified in person" });
    expect(enabled).toMatchObject({ status: SignerStatus.PENDING_ACTIVATION, statusReason: "re-verified in person" }); // no factors yet
    expect((await errorOf(ra.enableSigner({ signerId: signer.signerId, reason: "again" }))).code).toBe(Code.FailedPrecondition);

    expect(await errorOf(ra.getSigner({ signerId: "sgn-nobody" }))).toMatchObject({ code: Code.NotFound, reason: Reason.SIGNER_NOT_FOUND });
    expect(await errorOf(ra.disableSigner({ signerId: "sgn-nobody", reason: "x" }))).toMatchObject({ code: Code.NotFound, reason: Reason.SIGNER_NOT_FOUND });
  });

  it("T-2.1.1.4: a security officer, an auditor or an SCA certificate cannot enroll a signer, and nothing is created", async () => {
    const before = count("signers");
    const request = { identity: identity(), proofing: proofing() };
    for (const who of [so1, auditor]) {
      expect(await errorOf(registrationAs(who).enrollSigner(request))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
    }
    // An SCA (or a signer behind one) cannot reach the admin service at all: no self-enrollment.
    const sca = createClient(RegistrationService, t.transport("grpc", t.pki.sca));
    expect(await errorOf(sca.enrollSigner(request))).toMatchObject({ code: Code.PermissionDenied, reason: Reason.ROLE_NOT_PERMITTED });
    await errorOf(createClient(RegistrationService, t.transport("grpc")).enrollSigner(request)); // no client certificate: refused
    // A registration operator's certificate without the request signature does nothing either.
    const unsigned = createClient(RegistrationService, t.transport("grpc", operator.cert));
    expect(await errorOf(unsigned.enrollSigner(request))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.REQUEST_SIGNATURE_INVALID });
    expect(count("signers")).toBe(before);
  });
});

describe("activation codes (T-2.1.1.1, T-2.1.1.3)", () => {
  it("T-2.1.1.1, T-2.1.1.3: a code from the module's RNG is returned once, never readable again, and stored only as a hash", async () => {
    const ra = registrationAs(operator);
    const signer = await enrollSigner();
    const issuedAt = Date.now();
    const { activationCode } = await ra.issueActivationCode({ signerId: signer.signerId });
    const code = activationCode!.code;
    expect(code).toMatch(/^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){4}$/); // 125 bits of Crockford base32
    expect(activationCode!.maxAttempts).toBe(5); // the default policy
    const expiresAt = Number(activationCode!.expiresAt!.seconds) * 1000;
    expect(Math.abs(expiresAt - (issuedAt + 259_200_000))).toBeLessThan(60_000);

    // The signer shows that a code is outstanding, never the code.
    const { signer: read } = await ra.getSigner({ signerId: signer.signerId });
    expect(read?.factors?.pendingActivationCode).toMatchObject({ attemptsLeft: 5, expiresAt: activationCode!.expiresAt });
    const bare = code.replaceAll("-", "");
    const everything = [
      toJsonString(SignerSchema, read!),
      ...(await ra.listSigners({})).signers.map((s) => toJsonString(SignerSchema, s)),
    ].join("\n");
    expect(everything).not.toContain(code);
    expect(everything).not.toContain(bare);

    // The store holds its hash only: not in the code's row, the signer's row or the audit log.
    const rows = JSON.stringify([
      db.prepare("SELECT * FROM activation_codes WHERE signer_id = ?").all(signer.signerId),
      db.prepare("SELECT id, status, body FROM signers WHERE id = ?").all(signer.signerId),
      db.prepare("SELECT event, body FROM audit_records").all(),
    ]);
    expect(rows).not.toContain(code);
    expect(rows).not.toContain(bare);
    const stored = db.prepare("SELECT * FROM activation_codes WHERE signer_id = ?").all(signer.signerId) as Array<{ code_hash: string; revoked_at: number | null; attempts_left: number }>;
    expect(stored).toEqual([expect.objectContaining({ code_hash: activationCodeHash(code), revoked_at: null, attempts_left: 5 })]);
    expect(activationCodeHash(bare.toLowerCase())).toBe(activationCodeHash(code)); // as the signer may type it
    expect(db.prepare("SELECT count(*) AS n FROM audit_records WHERE event = 'activation_code.issued'").get()).toMatchObject({ n: expect.any(Number) });

    // A new code voids the earlier one; the two are different.
    const { activationCode: again } = await ra.issueActivationCode({ signerId: signer.signerId });
    expect(again!.code).not.toBe(code);
    const after = db.prepare("SELECT code_hash, revoked_at FROM activation_codes WHERE signer_id = ? ORDER BY created_at, rowid").all(signer.signerId) as Array<{ code_hash: string; revoked_at: number | null }>;
    expect(after).toHaveLength(2);
    expect(after.find((r) => r.code_hash === activationCodeHash(code))?.revoked_at).not.toBeNull();
    expect(after.find((r) => r.code_hash === activationCodeHash(again!.code))?.revoked_at).toBeNull();

    // Disabling voids the outstanding code.
    await ra.disableSigner({ signerId: signer.signerId, reason: "fraud suspected" });
    const voided = db.prepare("SELECT revoked_at FROM activation_codes WHERE signer_id = ?").all(signer.signerId) as Array<{ revoked_at: number | null }>;
    expect(voided.every((r) => r.revoked_at !== null)).toBe(true);
    expect((await ra.getSigner({ signerId: signer.signerId })).signer?.factors?.pendingActivationCode).toBeUndefined();
  });

  it("T-2.1.1.4: only the registration operator issues codes", async () => {
    const signer = await enrollSigner();
    expect(await errorOf(registrationAs(so1).issueActivationCode({ signerId: signer.signerId }))).toMatchObject({ reason: Reason.ROLE_NOT_PERMITTED });
    expect(await errorOf(createClient(RegistrationService, t.transport("grpc", t.pki.sca)).issueActivationCode({ signerId: signer.signerId })))
      .toMatchObject({ reason: Reason.ROLE_NOT_PERMITTED });
    expect(db.prepare("SELECT count(*) AS n FROM activation_codes WHERE signer_id = ?").get(signer.signerId)).toEqual({ n: 0 });
  });
});

const allAlgorithms = [
  KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384, KeyAlgorithm.EC_P521,
  KeyAlgorithm.RSA_2048, KeyAlgorithm.RSA_3072, KeyAlgorithm.RSA_4096, KeyAlgorithm.ED25519,
];

/** What node:crypto must see in each algorithm's SPKI. */
function expectKeyOf(algorithm: KeyAlgorithm, spki: Uint8Array): void {
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  const d = key.asymmetricKeyDetails ?? {};
  switch (algorithm) {
    case KeyAlgorithm.EC_P256: return void expect([key.asymmetricKeyType, d.namedCurve]).toEqual(["ec", "prime256v1"]);
    case KeyAlgorithm.EC_P384: return void expect([key.asymmetricKeyType, d.namedCurve]).toEqual(["ec", "secp384r1"]);
    case KeyAlgorithm.EC_P521: return void expect([key.asymmetricKeyType, d.namedCurve]).toEqual(["ec", "secp521r1"]);
    case KeyAlgorithm.RSA_2048: return void expect([key.asymmetricKeyType, d.modulusLength]).toEqual(["rsa", 2048]);
    case KeyAlgorithm.RSA_3072: return void expect([key.asymmetricKeyType, d.modulusLength]).toEqual(["rsa", 3072]);
    case KeyAlgorithm.RSA_4096: return void expect([key.asymmetricKeyType, d.modulusLength]).toEqual(["rsa", 4096]);
    case KeyAlgorithm.ED25519: return void expect(key.asymmetricKeyType).toBe("ed25519");
    default: throw new Error(`unexpected algorithm ${algorithm}`);
  }
}

describe("keys generated in the crypto module and bound to one signer (R-3.1.1.3)", () => {
  it("R-3.1.1.3: refuses a disallowed algorithm or level, an unknown or disabled signer, and creates nothing", async () => {
    const ra = registrationAs(operator);
    const signer = await enrollSigner();
    const before = count("credentials");
    // The default policy allows EC and RSA keys, not Ed25519, and assurance level 2 only.
    expect(await errorOf(ra.generateKey({ signerId: signer.signerId, keyAlgorithm: KeyAlgorithm.ED25519 })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.ALGORITHM_NOT_ALLOWED, field: "key_algorithm" });
    expect(await errorOf(ra.generateKey({ signerId: signer.signerId, keyAlgorithm: KeyAlgorithm.EC_P256, assuranceLevel: AssuranceLevel.ASSURANCE_LEVEL_1 })))
      .toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST, field: "assurance_level" });
    expect(await errorOf(ra.generateKey({ signerId: "sgn-nobody", keyAlgorithm: KeyAlgorithm.EC_P256 })))
      .toMatchObject({ code: Code.NotFound, reason: Reason.SIGNER_NOT_FOUND });
    const disabled = await enrollSigner();
    await ra.disableSigner({ signerId: disabled.signerId, reason: "left" });
    expect(await errorOf(ra.generateKey({ signerId: disabled.signerId, keyAlgorithm: KeyAlgorithm.EC_P256 })))
      .toMatchObject({ code: Code.FailedPrecondition, reason: Reason.SIGNER_INACTIVE });
    expect(await errorOf(registrationAs(so1).generateKey({ signerId: signer.signerId, keyAlgorithm: KeyAlgorithm.EC_P256 })))
      .toMatchObject({ reason: Reason.ROLE_NOT_PERMITTED });
    expect(count("credentials")).toBe(before);
    expect(await errorOf(ra.listCredentials({ signerId: "sgn-nobody" }))).toMatchObject({ code: Code.NotFound, reason: Reason.SIGNER_NOT_FOUND });
    expect(await errorOf(ra.getCredential({ credentialId: "crd-nobody" }))).toMatchObject({ code: Code.NotFound, reason: Reason.CREDENTIAL_NOT_FOUND });
  });

  it("R-3.1.1.3: generates every algorithm the policy allows inside the module, non-extractable, with its SPKI and fingerprint sealed into the credential", async () => {
    // Two security officers allow Ed25519 too (dual control), so every key type is exercised.
    const policies = createClient(PolicyService, t.transportAs(so1.cert, so1.userId, so1.privateJwk));
    const { record } = await policies.getSecurityPolicy({});
    const policy = clone(SecurityPolicySchema, record!.policy!);
    policy.allowedKeyAlgorithms = [...allAlgorithms];
    let held: ConnectError | undefined;
    await policies.updateSecurityPolicy({ expectedVersion: record!.version, policy }).catch((e: unknown) => (held = ConnectError.from(e)));
    const detail = held!.findDetails(ApprovalRequiredSchema)[0]!;
    await createClient(PrivilegedUserService, t.transportAs(so2.cert, so2.userId, so2.privateJwk))
      .approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });

    const ra = registrationAs(operator);
    const signer = await enrollSigner();
    const other = await enrollSigner();
    const hsm = await openEmbeddedCryptoModule(t.dataDir, { poolSize: 1 }); // the module's own view of the keys
    try {
      const ids: string[] = [];
      for (const keyAlgorithm of allAlgorithms) {
        const { credential } = await ra.generateKey({ signerId: signer.signerId, keyAlgorithm, label: `key ${keyAlgorithm}` });
        const c = credential!;
        expect(c).toMatchObject({
          signerId: signer.signerId,
          status: CredentialStatus.KEY_GENERATED,
          keyAlgorithm,
          assuranceLevel: AssuranceLevel.ASSURANCE_LEVEL_2, // the policy's default
          origin: CredentialOrigin.GENERATED,
          label: `key ${keyAlgorithm}`,
        });
        expectKeyOf(keyAlgorithm, c.publicKeySpki);
        expect(Buffer.from(c.publicKeyFingerprint)).toEqual(createHash("sha256").update(c.publicKeySpki).digest());
        // In the module: generated there, never extractable (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE), a signing key with this public key.
        const info = await hsm.findKey(c.keyId);
        expect(info).toMatchObject({ usage: "sign", generatedInModule: true, keyId: c.keyId });
        expect(Buffer.from(info!.publicKeySpki)).toEqual(Buffer.from(c.publicKeySpki));
        expect((await ra.getCredential({ credentialId: c.credentialId })).credential).toEqual(c);
        ids.push(c.credentialId);
      }
      // Scoped to one signer, oldest first; the other signer has none.
      const listed = await ra.listCredentials({ signerId: signer.signerId });
      expect(listed.credentials.map((c) => c.credentialId)).toEqual(ids);
      expect((await ra.listCredentials({ signerId: other.signerId })).credentials).toEqual([]);
      expect((await ra.listCredentials({ signerId: signer.signerId, status: CredentialStatus.ACTIVE })).credentials).toEqual([]);
      const paged = await ra.listCredentials({ signerId: signer.signerId, page: { pageSize: 3 } });
      expect(paged.credentials).toHaveLength(3);
      expect(await errorOf(ra.listCredentials({ signerId: other.signerId, page: { pageToken: paged.page!.nextPageToken } })))
        .toMatchObject({ code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST });
      // The SAM records its key: no private part anywhere in the record.
      const row = db.prepare("SELECT body FROM credentials WHERE id = ?").get(ids[0]) as { body: string };
      expect(Object.keys(JSON.parse(row.body)).sort()).toEqual(
        ["assuranceLevel", "createdAt", "createdBy", "keyAlgorithm", "keyId", "keyUri", "label", "origin", "publicKeySpki", "statusReason", "updatedAt"],
      );
    } finally {
      await hsm.close();
    }
  });

  it("R-3.1.1.1: a credential moved to another signer in the database fails its seal (INTERNAL, INTEGRITY_VIOLATION)", async () => {
    const ra = registrationAs(operator);
    const victim = await enrollSigner();
    const attacker = await enrollSigner();
    const { credential } = await ra.generateKey({ signerId: victim.signerId, keyAlgorithm: KeyAlgorithm.EC_P256 });
    db.prepare("UPDATE credentials SET signer_id = ? WHERE id = ?").run(attacker.signerId, credential!.credentialId);
    expect(await errorOf(ra.getCredential({ credentialId: credential!.credentialId }))).toMatchObject({ code: Code.Internal, reason: Reason.INTEGRITY_VIOLATION });
    expect(await errorOf(ra.listCredentials({ signerId: attacker.signerId }))).toMatchObject({ code: Code.Internal, reason: Reason.INTEGRITY_VIOLATION });
    db.prepare("UPDATE credentials SET signer_id = ? WHERE id = ?").run(victim.signerId, credential!.credentialId);
    expect((await ra.getCredential({ credentialId: credential!.credentialId })).credential?.signerId).toBe(victim.signerId);

    // A signer's identity edited in the database is refused the same way.
    const original = (db.prepare("SELECT body FROM signers WHERE id = ?").get(victim.signerId) as { body: string }).body;
    db.prepare("UPDATE signers SET body = json_set(body, '$.identity.legalName', 'Mallory') WHERE id = ?").run(victim.signerId);
    expect(await errorOf(ra.getSigner({ signerId: victim.signerId }))).toMatchObject({ code: Code.Internal, reason: Reason.INTEGRITY_VIOLATION });
    // Fail closed: while it is there, the external-id check of every enrollment reads it and stops too.
    expect(await errorOf(ra.enrollSigner({ identity: identity(), proofing: proofing() }))).toMatchObject({ code: Code.Internal, reason: Reason.INTEGRITY_VIOLATION });
    db.prepare("UPDATE signers SET body = ? WHERE id = ?").run(original, victim.signerId);
    expect((await ra.getSigner({ signerId: victim.signerId })).signer?.signerId).toBe(victim.signerId);
  });

  it("ResetLockout returns a signer's locked credentials to their earlier status and clears its failed attempts", async () => {
    const ra = registrationAs(operator);
    const signer = await enrollSigner();
    const { signer: reset } = await ra.resetLockout({ signerId: signer.signerId, reason: "verified by phone" });
    expect(reset?.factors).toMatchObject({ failedAttempts: 0 });
    expect(reset?.factors?.lockedAt).toBeUndefined();
    expect(await errorOf(ra.resetLockout({ signerId: "sgn-nobody", reason: "x" }))).toMatchObject({ code: Code.NotFound, reason: Reason.SIGNER_NOT_FOUND });
  });
});
