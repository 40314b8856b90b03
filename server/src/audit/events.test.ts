/**
 * The audit events (R-3.2.2.4) and T-2.2.2.3 (the audit log never contains activation data or
 * other secrets): every event function writes a record through the real AuditLog into a real
 * SQLite file, and the stored records are scanned for secret-looking field names. The sample
 * table is typed so that a new event function does not compile until it has a sample here.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import type { Store } from "../store/port.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";
import { createAuditLog, type ChainedAuditLog } from "./audit-log.js";
import { readHighWaterMarks } from "./checkpoint.js";
import * as events from "./events.js";
import type { AuditEvent } from "./events.js";
import { recordJsonOf } from "./record-form.js";
import { verifyAuditLog } from "./verify.js";

const sca = { kind: "sca", subject: "CN=Example SCA,O=Example", certificateSha256: new Uint8Array(32).fill(1) } as const;
const officer = { kind: "privileged-user", userId: "so-1", role: "SECURITY_OFFICER", certificateSha256: new Uint8Array(32).fill(2) } as const;
const approver = { kind: "privileged-user", userId: "so-2", role: "SECURITY_OFFICER" } as const;
const operator = { kind: "privileged-user", userId: "ro-1", role: "REGISTRATION_OPERATOR" } as const;
const auditor = { kind: "privileged-user", userId: "au-1", role: "AUDITOR" } as const;
const signer = { kind: "signer", signerId: "signer-1" } as const;
const hash = new Uint8Array(32).fill(0xab);
const ids = { signerId: "signer-1", credentialId: "cred-1", transactionId: "tx-1", requestId: "req-1" };
const keyFacts = { signerId: "signer-1", credentialId: "cred-1", keyId: "0a10", keyAlgorithm: "EC_P256", publicKeySha256: hash } as const;

type EventFunctionName = {
  [K in keyof typeof events]: (typeof events)[K] extends (input: never) => AuditEvent ? K : never;
}[keyof typeof events];

/** One sample call per event function; the type makes the table complete. */
const samples: { [K in EventFunctionName]: () => AuditEvent } = {
  transactionCreated: () => events.transactionCreated({ sca, ...ids, hashCount: 3, hashAlgorithm: "SHA256" }),
  transactionCancelled: () => events.transactionCancelled({ actor: sca, ...ids }),
  sadVerified: () => events.sadVerified({ sca, ...ids, verdict: { outcome: "DENIED", reason: "SAD_REPLAYED" } }),
  signatureCreated: () => events.signatureCreated({ sca, ...ids, hash, hashAlgorithm: "SHA256", signatureAlgorithm: "ES256" }),
  signatureFailed: () => events.signatureFailed({ sca, ...ids, hash, refusal: { outcome: "DENIED", reason: "HASH_NOT_AUTHORIZED" } }),
  factorVerified: () => events.factorVerified({ actor: signer, ...ids, factor: "DEVICE_KEY" }),
  factorCheckFailed: () => events.factorCheckFailed({ actor: sca, ...ids, factor: "PIN", failedAttempts: 2 }),
  credentialLocked: () => events.credentialLocked({ signerId: "signer-1", credentialId: "cred-1", failedAttempts: 5, threshold: 5 }),
  credentialUnlocked: () => events.credentialUnlocked({ operator, signerId: "signer-1", credentialId: "cred-1", requestId: "req-1" }),
  signerEnrolled: () => events.signerEnrolled({ actor: operator, signerId: "signer-1", requestId: "req-1" }),
  activationCodeIssued: () => events.activationCodeIssued({ actor: operator, signerId: "signer-1", expiresAt: new Date("2030-01-01T00:00:00Z") }),
  signerActivated: () => events.signerActivated({ signerId: "signer-1", factors: ["PIN", "DEVICE_KEY"] }),
  signerSuspended: () => events.signerSuspended({ actor: operator, signerId: "signer-1" }),
  signerResumed: () => events.signerResumed({ actor: operator, signerId: "signer-1" }),
  signerDisabled: () => events.signerDisabled({ actor: officer, approver, pendingRequestId: "pr-1", signerId: "signer-1" }),
  factorEnrolled: () => events.factorEnrolled({ actor: signer, signerId: "signer-1", factor: "TOTP", factorId: "f-1" }),
  factorRevoked: () => events.factorRevoked({ actor: operator, signerId: "signer-1", factor: "TOTP", factorId: "f-1" }),
  keyGenerated: () => events.keyGenerated({ actor: operator, ...keyFacts }),
  keyImported: () => events.keyImported({ actor: operator, ...keyFacts }),
  certificateInstalled: () => events.certificateInstalled({ actor: operator, signerId: "signer-1", credentialId: "cred-1", certificateSha256: hash }),
  credentialSuspended: () => events.credentialSuspended({ actor: operator, signerId: "signer-1", credentialId: "cred-1" }),
  credentialResumed: () => events.credentialResumed({ actor: operator, signerId: "signer-1", credentialId: "cred-1" }),
  credentialDestroyed: () => events.credentialDestroyed({ requester: officer, approver, pendingRequestId: "pr-2", signerId: "signer-1", credentialId: "cred-1", keyId: "0a10" }),
  privilegedOperationRequested: () =>
    events.privilegedOperationRequested({ method: "/inkan.admin.v1.PrivilegedUserService/AddUserKey", requester: officer, requestId: "req-1" }),
  privilegedOperationPerformed: () =>
    events.privilegedOperationPerformed({ method: "inkan.admin.v1.RegistrationService/DestroyKey", requester: officer, approver, pendingRequestId: "pr-2", credentialId: "cred-1" }),
  approvalRequested: () => events.approvalRequested({ requester: officer, method: "inkan.admin.v1.PolicyService/UpdatePolicy", pendingRequestId: "pr-3" }),
  approvalGranted: () => events.approvalGranted({ approver, requester: officer, method: "inkan.admin.v1.PolicyService/UpdatePolicy", pendingRequestId: "pr-3" }),
  approvalRejected: () => events.approvalRejected({ actor: events.systemActor, method: "inkan.admin.v1.PolicyService/UpdatePolicy", pendingRequestId: "pr-4" }),
  privilegedUserCreated: () => events.privilegedUserCreated({ actor: officer, approver, subjectUserId: "so-3", role: "SECURITY_OFFICER" }),
  privilegedUserRemoved: () => events.privilegedUserRemoved({ actor: officer, subjectUserId: "ro-9" }),
  privilegedUserKeyRegistered: () => events.privilegedUserKeyRegistered({ actor: events.systemActor, subjectUserId: "so-1", keyThumbprint: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" }),
  privilegedUserKeyRevoked: () => events.privilegedUserKeyRevoked({ actor: officer, subjectUserId: "so-1", keyThumbprint: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" }),
  scaScopeRefused: () => events.scaScopeRefused({ sca, ...ids, method: "GetCredential", signerGroup: "tenant-b", scopes: ["tenant-a"] }),
  adminRequestRefused: () =>
    events.adminRequestRefused({ caller: { kind: "unauthenticated", certificateSha256: hash }, method: "inkan.admin.v1.PolicyService/UpdatePolicy", reason: "NONCE_REPLAYED" }),
  requestRefused: () =>
    events.requestRefused({ caller: { kind: "sca", subject: "CN=sca-1", certificateSha256: hash }, method: "/inkan.sam.v1.SignerService/CreateChallenge", reason: "ROLE_NOT_PERMITTED" }),
  policyChanged: () =>
    events.policyChanged({
      requester: officer,
      approver,
      oldVersion: 3,
      newVersion: 4,
      oldPolicy: { sadLifetimeSeconds: 300, pinMinLength: 6, algorithms: ["ES256"], lockout: { threshold: 5 } },
      newPolicy: { sadLifetimeSeconds: 120, pinMinLength: 6, algorithms: ["ES256", "ES384"], lockout: { threshold: 3 } },
    }),
  integrityViolationDetected: () => events.integrityViolationDetected({ kind: "credential", id: "cred-1" }),
  recordVersioned: () => events.recordVersioned({ key: "signer:sgn_1", version: 3 }),
  samStarted: () => events.samStarted({ version: "0.1.0", headSequence: 0, moduleCheckpointSequence: 0 }),
  samStopped: () => events.samStopped({ cause: "signal" }),
  cryptoModuleDisconnected: () => events.cryptoModuleDisconnected({ cause: "CKR_DEVICE_REMOVED" }),
  cryptoModuleReconnected: () => events.cryptoModuleReconnected({ attempts: 3, downMs: 2150 }),
  storeBackupTaken: () => events.storeBackupTaken({ snapshotId: "ab".repeat(32), highWaterMarks: { "node-1": 42 }, store: "sqlite" }),
  storeRestored: () => events.storeRestored({ restoreId: "rst_1", snapshotId: "ab".repeat(32), oldHighWaterMarks: { "node-1": 50 }, newHighWaterMarks: { "node-1": 42 } }),
  storeRestoreAcknowledged: () =>
    events.storeRestoreAcknowledged({
      requester: { kind: "privileged-user", userId: "pu_1", role: "SECURITY_OFFICER" },
      approver: { kind: "privileged-user", userId: "pu_2", role: "SECURITY_OFFICER" },
      restoreId: "rst_1",
      snapshotId: "ab".repeat(32),
      oldHighWaterMarks: { "node-1": 50 },
      newHighWaterMarks: { "node-1": 42 },
      voidedOneTimeObjects: 3,
      voidedTransactions: 1,
      rebasedRecords: 2,
      raisedLockouts: 1,
      rejectedApprovals: 1,
    }),
  auditListed: () => events.auditListed({ auditor, records: 12 }),
  auditVerified: () => events.auditVerified({ auditor, ok: false, brokenNodes: ["node-1"] }),
  auditExported: () => events.auditExported({ auditor, nodeId: "node-1", fromSequence: 1 }),
};

/** Compile-time checks (never run; tsc fails if any line below stops being an error). */
function typeChecks(log: ChainedAuditLog): void {
  // @ts-expect-error T-2.2.2.3: there is no PIN field
  events.factorCheckFailed({ actor: sca, signerId: "s", factor: "PIN", failedAttempts: 1, pin: "123456" });
  // @ts-expect-error T-2.2.2.3: there is no SAD field
  events.sadVerified({ sca, verdict: { outcome: "SUCCESS" }, sad: "eyJ..." });
  // @ts-expect-error T-2.2.2.3: there is no free-form details field
  events.signatureCreated({ sca, ...ids, hash, hashAlgorithm: "SHA256", signatureAlgorithm: "ES256", details: { token: "x" } });
  // @ts-expect-error an AuditEvent is only made by events.ts
  void log.record({ eventType: "pin.leaked", actor: { kind: "ACTOR_KIND_SYSTEM" }, outcome: "AUDIT_OUTCOME_SUCCESS" });
}
void typeChecks;

let dataDir: string;
let hsm: Pkcs11CryptoModule;
let store: Store;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-audit-events-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
  store = await createSqliteStore({ file: join(dataDir, "store.sqlite3") });
});

afterAll(async () => {
  await store?.close();
  await hsm?.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** Every name in a JSON value: object keys, recursively (details keys included). */
function namesIn(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) namesIn(v, out);
  else if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      namesIn(v, out);
    }
  }
  return out;
}

const recordFields = new Set([
  "nodeId", "sequence", "occurredAt", "eventType", "actor", "approver", "outcome", "reason", "signerId", "credentialId",
  "transactionId", "subjectUserId", "pendingRequestId", "requestId", "details", "prevHash", "hash",
]);

describe("T-2.2.2.3 the audit log never contains secrets", () => {
  it("T-2.2.2.3 R-3.2.2.4: every event function has a sample, and the records they write hold no secret-looking field", async () => {
    const functions = Object.entries(events).filter(([, v]) => typeof v === "function" && v !== events.looksSecret).map(([k]) => k);
    expect(Object.keys(samples).sort()).toEqual(functions.sort());

    const log = await createAuditLog({ store, nodeId: "events", cryptoModule: hsm, checkpointEveryRecords: 10, checkpointTimer: false });
    for (const sample of Object.values(samples)) await log.record(sample());
    await log.close();

    const rows = await store.readAuditRecords({ nodeId: "events", fromSequence: 1, limit: 1000 });
    expect(rows).toHaveLength(Object.keys(samples).length);
    for (const row of rows) {
      const json = recordJsonOf(row);
      expect(json, row.event).toBeDefined();
      for (const key of Object.keys(json!)) expect(recordFields.has(key), `${row.event}: ${key}`).toBe(true);
      const names = namesIn(json);
      for (const name of names) expect(events.looksSecret(name), `${row.event}: field "${name}" looks secret`).toBe(false);
      for (const detail of Object.keys(json?.details ?? {})) expect(detail).toMatch(/^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$/);
      // Past-tense, dotted, lower case event types (R-3.2.2.4, style).
      expect(row.event).toMatch(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/);
      expect(row.event).toMatch(/ed$/);
    }
    expect((await verifyAuditLog(store, await hsm.systemPublicKey("audit-signing"), await readHighWaterMarks(hsm, ["events"]), { nodeId: "events" })).ok).toBe(true);
  });

  it("T-2.2.2.3: looksSecret flags secret names and spares ids, hashes and policy settings", () => {
    for (const name of ["pin", "PIN", "sad", "sadToken", "sad_token", "rsad", "token", "privateKey", "private_key", "activation_code", "activationCode", "nonce", "request_signature", "pin_hash", "totp", "otp", "password", "secret", "old.admin_pin", "key"]) {
      expect(events.looksSecret(name), name).toBe(true);
    }
    for (const name of ["signerId", "credential_id", "key_id", "key_algorithm", "public_key_sha256", "hash", "old.sad_lifetime_seconds", "pin_min_length", "failed_attempts", "method", "factor", "key_thumbprint", "certificateSha256"]) {
      expect(events.looksSecret(name), name).toBe(false);
    }
  });

  it("T-2.2.2.3: a detail that looks like a secret is refused before anything is recorded", () => {
    expect(() =>
      events.policyChanged({ requester: officer, oldVersion: 1, newVersion: 2, oldPolicy: { adminPin: "0000" }, newPolicy: { adminPin: "1111" } }),
    ).toThrow(/looks like a secret/);
  });
});

describe("R-3.2.2.4 event content", () => {
  it("R-3.2.2.4: a signature record carries credential, transaction, SCA and the signed hash; a dual-control record both people", () => {
    const sig = samples.signatureCreated();
    expect(sig).toMatchObject({
      eventType: "signature.created",
      actor: { kind: "ACTOR_KIND_SCA", id: "CN=Example SCA,O=Example", certificateSha256: Buffer.alloc(32, 1).toString("base64") },
      outcome: "AUDIT_OUTCOME_SUCCESS",
      signerId: "signer-1",
      credentialId: "cred-1",
      transactionId: "tx-1",
      details: { hash: "ab".repeat(32), hash_algorithm: "SHA256", signature_algorithm: "ES256" },
    });
    expect(samples.credentialDestroyed()).toMatchObject({
      actor: { kind: "ACTOR_KIND_PRIVILEGED_USER", id: "so-1", role: "PRIVILEGED_ROLE_SECURITY_OFFICER" },
      approver: { kind: "ACTOR_KIND_PRIVILEGED_USER", id: "so-2", role: "PRIVILEGED_ROLE_SECURITY_OFFICER" },
      pendingRequestId: "pr-2",
    });
    expect(samples.sadVerified()).toMatchObject({ outcome: "AUDIT_OUTCOME_DENIED", reason: "REASON_SAD_REPLAYED" });
  });

  it("R-3.2.2.4: a lone surrogate in a caller-supplied string (a BMPString subject) is replaced, so the record can be hashed", () => {
    const e = events.sadVerified({ sca: { kind: "sca", subject: "CN=\uD800x" }, verdict: { outcome: "SUCCESS" } });
    expect(e.actor.id).toBe("CN=\uFFFDx");
  });

  it("R-3.2.2.4: a policy change records the changed settings with old and new values", () => {
    expect(samples.policyChanged().details).toEqual({
      old_version: "3",
      new_version: "4",
      "old.sad_lifetime_seconds": "300",
      "new.sad_lifetime_seconds": "120",
      "old.algorithms": "ES256",
      "new.algorithms": "ES256,ES384",
      "old.lockout.threshold": "5",
      "new.lockout.threshold": "3",
    });
  });
});
