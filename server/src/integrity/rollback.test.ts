/**
 * Rollback from the insider's position (issue 14; design in ROLLBACK.md): someone with write
 * access to the SQLite file, not to the crypto module, saves the rows of a signer, a credential, a
 * privileged user or the security policy before a security decision, and puts them back after it
 * (validly sealed, only older), while the server runs or while it is stopped. Each attempt gains
 * nothing (INTEGRITY_VIOLATION), is audited, and the SAM keeps serving other signers. The real
 * server: SoftHSM2, SQLite, mTLS, gRPC.
 */
import { createHash, randomBytes } from "node:crypto";
import { clone } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import { Reason, buildPinChangeRequest, buildRSad, inkanErrorReason, type DeviceKey } from "@inkan/sdk";
import { PolicyService, SecurityPolicySchema, UpdateSecurityPolicyResponseSchema, type SecurityPolicy } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PendingApprovalState, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { errorOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

let t: TestServer;
let operator: PrivilegedPerson;
let bob: Signer;

interface Signer {
  signerId: string;
  credentialId: string;
  deviceKey: DeviceKey;
}

const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const ra = (as: PrivilegedPerson = operator) => createClient(RegistrationService, t.as(as));

async function newSigner(): Promise<Signer> {
  const s = await activeSignerWithCredential(t, operator);
  return { signerId: s.signerId, credentialId: s.credential.credentialId, deviceKey: s.deviceKey };
}

type Outcome = { signed: number } | { reason: Reason; message: string };

/** An SCA asks for one signature and the signer's device authorizes it (with `pin` and `deviceKey`). */
async function signOne(s: Signer, pin = testPin, deviceKey = s.deviceKey): Promise<Outcome> {
  const hash = new Uint8Array(createHash("sha256").update(randomBytes(16)).digest());
  try {
    const begun = await sca().beginTransaction({
      credentialId: s.credentialId, signerId: s.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [hash], description: "rollback",
    });
    const ch = begun.sadChallenge!;
    const rSad = await buildRSad({
      deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
      challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin, samKey: ch.encryptionKey!,
    });
    const { sadToken } = await sca().authorize({ transactionId: ch.transactionId, rSad });
    const res = await sca().signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: [hash] });
    return { signed: res.signatures.length };
  } catch (err) {
    const e = ConnectError.from(err);
    return { reason: inkanErrorReason(e), message: e.rawMessage };
  }
}

const refusedAsRolledBack = { reason: Reason.INTEGRITY_VIOLATION };

// ---- the insider --------------------------------------------------------------------------------

type Row = Record<string, unknown>;
/** Rows saved from the file: table -> the column that selects them, its value, the rows. */
type Saved = { table: string; column: string; value: string; rows: Row[] }[];

/** The insider's own connection to the store file, triggers dropped first. */
function insider<T>(work: (db: Database.Database) => T): T {
  const db = new Database(sqliteStoreFile(t.dataDir));
  try {
    const triggers = db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").all() as { name: string }[];
    for (const { name } of triggers) db.exec(`DROP TRIGGER IF EXISTS "${name}"`);
    return work(db);
  } finally {
    db.close();
  }
}

/** Saves every row of `selection` ([table, column, value]). */
function save(...selection: [table: string, column: string, value: string][]): Saved {
  return insider((db) => selection.map(([table, column, value]) => ({ table, column, value, rows: db.prepare(`SELECT * FROM ${table} WHERE ${column} = ?`).all(value) as Row[] })));
}

/** Puts the saved rows back exactly: rows written since are deleted, the saved ones restored. */
function putBack(saved: Saved): void {
  insider((db) =>
    db.transaction(() => {
      for (const { table, column, value, rows } of saved) {
        db.prepare(`DELETE FROM ${table} WHERE ${column} = ?`).run(value);
        for (const row of rows) {
          const columns = Object.keys(row);
          db.prepare(`INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`).run(...columns.map((c) => row[c]));
        }
      }
    })(),
  );
}

/** Everything of a signer an insider would put back: the signer, its factors and its credentials. */
const signerRows = (signerId: string): [string, string, string][] => [
  ["signers", "id", signerId],
  ["factors", "signer_id", signerId],
  ["credentials", "signer_id", signerId],
];

/** The integrity.failed records with cause rolled-back about any of `ids`. */
function rollbackAudits(...ids: string[]): number {
  return insider((db) => {
    const rows = db.prepare("SELECT body FROM audit_records WHERE event = 'integrity.failed'").all() as { body: string }[];
    return rows
      .map((r) => JSON.parse(r.body) as { details?: Record<string, string> })
      .filter((b) => ids.includes(b.details?.["record_id"] ?? "") && b.details?.["cause"] === "rolled-back").length;
  });
}

/** Wrong PINs until the signer is locked (the policy's lockout_threshold, 5 by default). */
async function lockOut(s: Signer): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const outcome = await signOne(s, "000000001");
    if ("reason" in outcome && outcome.reason === Reason.CREDENTIAL_LOCKED) return;
    expect(outcome).toMatchObject({ reason: Reason.AUTHENTICATION_FAILED });
  }
  throw new Error("the signer was never locked");
}

beforeAll(async () => {
  t = await startTestServer();
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-rollback");
  bob = await newSigner();
}, 120_000);
afterAll(async () => {
  await t?.close();
});

describe("issue 14: an older sealed copy put back while the SAM runs (R-3.1.1.1, R-3.2.1.7, T-2.2.2.1)", () => {
  it("T-2.1.2.2 R-3.1.1.1: the lockout counter put back to zero: the next guess is refused, audited, and no guess is counted from zero", async () => {
    const alice = await newSigner();
    const fresh = save(...signerRows(alice.signerId));
    expect(await signOne(alice, "000000001")).toMatchObject({ reason: Reason.AUTHENTICATION_FAILED });
    expect(await signOne(alice, "000000002")).toMatchObject({ reason: Reason.AUTHENTICATION_FAILED });
    putBack(fresh); // failedAttempts 0 again
    expect(await signOne(alice, "000000003")).toMatchObject(refusedAsRolledBack);
    expect(await signOne(alice)).toMatchObject(refusedAsRolledBack); // not even the right PIN
    expect(rollbackAudits(alice.signerId)).toBeGreaterThan(0);
    expect(await signOne(bob)).toEqual({ signed: 1 });
  });

  it("T-2.1.2.2 R-3.1.1.1: a locked signer's rows put back from before the lock: the signer stays unusable (INTEGRITY_VIOLATION), audited", async () => {
    const alice = await newSigner();
    const unlocked = save(...signerRows(alice.signerId));
    await lockOut(alice);
    expect(await signOne(alice)).toMatchObject({ reason: Reason.CREDENTIAL_LOCKED });
    putBack(unlocked); // no failures, no lockedAt, the credential ACTIVE again
    expect(await signOne(alice)).toMatchObject(refusedAsRolledBack);
    expect(rollbackAudits(alice.signerId, alice.credentialId)).toBeGreaterThan(0);
    expect(await signOne(bob)).toEqual({ signed: 1 });
  });

  it("R-3.1.1.1 R-3.3.1: a revoked device key put back cannot authorize (INTEGRITY_VIOLATION), audited", async () => {
    const alice = await newSigner();
    const before = save(...signerRows(alice.signerId));
    await ra().revokeDevice({ signerId: alice.signerId, deviceKeyId: alice.deviceKey.kid, reason: "phone stolen" });
    expect(await signOne(alice)).not.toHaveProperty("signed");
    putBack(before); // the device key ACTIVE again
    expect(await signOne(alice)).toMatchObject(refusedAsRolledBack);
    expect(rollbackAudits(alice.signerId, alice.deviceKey.kid)).toBeGreaterThan(0);
    expect(await signOne(bob)).toEqual({ signed: 1 });
  });

  it("R-3.1.1.1 R-3.1.2.2: an old PIN put back (the new one deleted) cannot authorize (INTEGRITY_VIOLATION), audited", async () => {
    const alice = await newSigner();
    const before = save(...signerRows(alice.signerId));
    const ch = await createClient(SignerService, t.transport("grpc", t.pki.frontEnd)).createChallenge({ signerId: alice.signerId, purpose: ChallengePurpose.PIN_CHANGE });
    await createClient(SignerService, t.transport("grpc", t.pki.frontEnd)).changePin(
      await buildPinChangeRequest({ signerId: alice.signerId, oldPin: testPin, newPin: "135792468", deviceKey: alice.deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience }),
    );
    expect(await signOne(alice)).toMatchObject({ reason: Reason.AUTHENTICATION_FAILED }); // the old PIN no longer works
    putBack(before); // the old PIN factor ACTIVE, the new one gone
    expect(await signOne(alice)).toMatchObject(refusedAsRolledBack);
    expect(await signOne(alice, "135792468")).toMatchObject(refusedAsRolledBack);
    expect(rollbackAudits(alice.signerId, ...before[1]!.rows.map((r) => String(r["id"])))).toBeGreaterThan(0);
    expect(await signOne(bob)).toEqual({ signed: 1 });
  });

  it("R-3.1.1.1 R-3.3.1: a suspended credential put back ACTIVE does not sign (INTEGRITY_VIOLATION), audited", async () => {
    const alice = await newSigner();
    const active = save(["credentials", "id", alice.credentialId]);
    await ra().suspendCredential({ credentialId: alice.credentialId, reason: "reported lost" });
    expect(await signOne(alice)).toMatchObject({ reason: Reason.CREDENTIAL_SUSPENDED });
    putBack(active);
    expect(await signOne(alice)).toMatchObject(refusedAsRolledBack);
    expect(rollbackAudits(alice.credentialId)).toBeGreaterThan(0);
    expect(await signOne(bob)).toEqual({ signed: 1 });
  });

  it("R-3.2.1.7 T-2.2.2.1: a removed registration operator put back (user and keys) is refused (INTEGRITY_VIOLATION), audited", async () => {
    const gone = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-to-remove");
    const before = save(["privileged_users", "id", gone.userId], ["privileged_user_keys", "user_id", gone.userId]);
    await createClient(PrivilegedUserService, t.adminTransport()).removePrivilegedUser({ userId: gone.userId, reason: "left the company" });
    await errorOf(ra(gone).getSigner({ signerId: bob.signerId })); // removed: refused
    putBack(before);
    expect(inkanErrorReason(await errorOf(ra(gone).getSigner({ signerId: bob.signerId })))).toBe(Reason.INTEGRITY_VIOLATION);
    expect(rollbackAudits(gone.userId, ...before[1]!.rows.map((r) => String(r["id"])))).toBeGreaterThan(0);
    expect((await ra().getSigner({ signerId: bob.signerId })).signer?.signerId).toBe(bob.signerId); // other operators are served
    expect(await signOne(bob)).toEqual({ signed: 1 });
  });
});

describe("issue 14: no false alarm under concurrency", () => {
  it("40 concurrent wrong guesses on one signer (each read and most writing its record) and 40 reads of it: none is INTEGRITY_VIOLATION, nothing is audited as rolled back", async () => {
    const alice = await newSigner();
    const ra = createClient(RegistrationService, t.as(operator));
    const outcomes = await Promise.all([
      ...Array.from({ length: 40 }, (_, i) => signOne(alice, `00000${1000 + i}`)),
      ...Array.from({ length: 40 }, () => ra.getSigner({ signerId: alice.signerId }).then(() => ({ signed: 0 }) as Outcome, (e: unknown) => ({ reason: inkanErrorReason(ConnectError.from(e)), message: "" }))),
    ]);
    expect(outcomes.filter((o) => "reason" in o && o.reason === Reason.INTEGRITY_VIOLATION)).toEqual([]);
    expect(rollbackAudits(alice.signerId, alice.credentialId)).toBe(0);
  });
});

describe("issue 14: across a restart on the same data directory", () => {
  it("R-3.1.1.1 R-3.2.1.7: rows put back while the SAM is stopped are refused after it starts; other signers sign", async () => {
    const locked = await newSigner();
    const lockedBefore = save(...signerRows(locked.signerId));
    await lockOut(locked);
    const suspended = await newSigner();
    const suspendedBefore = save(["credentials", "id", suspended.credentialId]);
    await ra().suspendCredential({ credentialId: suspended.credentialId, reason: "reported lost" });
    const revoked = await newSigner();
    const revokedBefore = save(...signerRows(revoked.signerId));
    await ra().revokeDevice({ signerId: revoked.signerId, deviceKeyId: revoked.deviceKey.kid, reason: "phone stolen" });
    const gone = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-gone-restart");
    const goneBefore = save(["privileged_users", "id", gone.userId], ["privileged_user_keys", "user_id", gone.userId]);
    await createClient(PrivilegedUserService, t.adminTransport()).removePrivilegedUser({ userId: gone.userId, reason: "left" });

    await t.restart(() => {
      putBack(lockedBefore);
      putBack(suspendedBefore);
      putBack(revokedBefore);
      putBack(goneBefore);
    });

    expect(await signOne(locked)).toMatchObject(refusedAsRolledBack);
    expect(await signOne(suspended)).toMatchObject(refusedAsRolledBack);
    expect(await signOne(revoked)).toMatchObject(refusedAsRolledBack);
    expect(inkanErrorReason(await errorOf(ra(gone).getSigner({ signerId: bob.signerId })))).toBe(Reason.INTEGRITY_VIOLATION);
    expect(rollbackAudits(suspended.credentialId)).toBeGreaterThan(0);
    expect(await signOne(bob)).toEqual({ signed: 1 });
  });

  it("R-3.2.2.3: the newest policy version deleted while the SAM is stopped: signing stays stopped after the start, until two officers write a new version", async () => {
    const so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "security-officer-2");
    const policyAs = (p: PrivilegedPerson) => createClient(PolicyService, t.as(p));
    /** so1 asks, so2 approves (dual control for policy changes is on by default). */
    async function update(expectedVersion: bigint, policy: SecurityPolicy) {
      const held = await errorOf(policyAs(t.firstSecurityOfficer).updateSecurityPolicy({ expectedVersion, policy }));
      const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
      const { pendingApproval } = await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
      expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
      return anyUnpack(pendingApproval!.result!, UpdateSecurityPolicyResponseSchema)!.record!;
    }
    const current = (await policyAs(t.firstSecurityOfficer).getSecurityPolicy({})).record!;
    const stricter = clone(SecurityPolicySchema, current.policy!);
    stricter.lockoutThreshold = 3;
    stricter.auditCheckpointEveryRecords = 10; // issue 13 finding 5: the policy's cadence is applied (see the next test)
    const newest = await update(current.version, stricter);
    expect(newest.version).toBe(current.version + 1n);

    await t.restart(() => {
      insider((db) => db.prepare("DELETE FROM policy_versions WHERE id = 'security-policy' AND version = ?").run(Number(newest.version)));
    });

    const err = await errorOf(sca().getInfo({}));
    expect(inkanErrorReason(err)).toBe(Reason.INTEGRITY_VIOLATION);
    expect(await signOne(bob)).toMatchObject({ reason: Reason.INTEGRITY_VIOLATION });
    expect(rollbackAudits("security-policy")).toBeGreaterThan(0);
    // The restore path: two officers write a new sealed version (expected_version 0); signing resumes.
    const restored = await update(0n, stricter);
    expect(restored.version).toBe(newest.version);
    expect((await sca().getInfo({})).samId).not.toBe("");
    expect(await signOne(bob)).toEqual({ signed: 1 });
  });

  it("R-3.2.2.4 issue 13 finding 5: the security policy's audit_checkpoint_every_records bounds the records after the newest checkpoint", async () => {
    for (let i = 0; i < 3; i++) expect(await signOne(bob)).toEqual({ signed: 1 });
    const { head, checkpoint } = insider((db) => {
      const node = (db.prepare("SELECT node_id FROM audit_records ORDER BY time DESC LIMIT 1").get() as { node_id: string }).node_id;
      return {
        head: (db.prepare("SELECT MAX(sequence) AS s FROM audit_records WHERE node_id = ?").get(node) as { s: number }).s,
        checkpoint: (db.prepare("SELECT MAX(sequence) AS s FROM audit_checkpoints WHERE node_id = ?").get(node) as { s: number }).s,
      };
    });
    expect(head - checkpoint).toBeLessThan(10);
  });

  it("R-3.2.2.4: a versioned audit record deleted before the last checkpoint stops the start (INTEGRITY_VIOLATION), recorded in the chain", async () => {
    let deleted: { node_id: string; sequence: number } | undefined;
    const failure = await t
      .restart(() => {
        insider((db) => {
          deleted = db.prepare("SELECT node_id, sequence FROM audit_records WHERE event = 'record.versioned' ORDER BY sequence LIMIT 1 OFFSET 3").get() as typeof deleted;
          db.prepare("DELETE FROM audit_records WHERE node_id = ? AND sequence = ?").run(deleted!.node_id, deleted!.sequence);
        });
      })
      .then(() => undefined, (e: unknown) => e);
    expect(failure).toMatchObject({ code: "INTEGRITY_VIOLATION" });
    expect(String((failure as Error).message)).toMatch(/versioned events up to record \d+ do not match/);
    const last = insider((db) => db.prepare("SELECT event, body FROM audit_records WHERE node_id = ? ORDER BY sequence DESC LIMIT 1").get(deleted!.node_id)) as { event: string; body: string };
    expect(last.event).toBe("integrity.failed");
    expect(JSON.parse(last.body)).toMatchObject({ details: { record_kind: "audit-chain", record_id: deleted!.node_id } });
  });
});
