import { createHmac, generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import canonicalize from "canonicalize";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defaultSecurityPolicy, PolicyVersion, type PolicyJson } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { AuditEvent, PrivilegedUserActor } from "../audit/events.js";
import type { GeneratedKey, KeyAlgorithm, RandomSource } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import { IntegrityViolationError, RecordSealer } from "../integrity/record-sealer.js";
import { VerifiedRecords } from "../integrity/sealed-records.js";
import type { CredentialRecord, Store } from "../store/port.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";
import {
  activationCodeHalfHash,
  activationCodeHash,
  activationCodePairHash,
  enteredActivationCodeHash,
  newActivationCode,
  newActivationCodeHalf,
  normalizeActivationCode,
} from "./activation-code.js";
import { Credentials, type CredentialBody } from "./credentials.js";
import { Signers, type IdentityProofing, type SignerIdentity } from "./signers.js";

// The registration domain with its ports faked where the test needs control: a fixed clock, an
// in-process HMAC instead of the module's seal key, a key generator that counts its calls, an
// audit log that can be made to fail. The store is the real SQLite adapter in a temp directory.
const now = new Date("2026-03-01T09:00:00.000Z");
const operator: PrivilegedUserActor = { kind: "privileged-user", userId: "pu-operator", role: "REGISTRATION_OPERATOR" };
const officer: PrivilegedUserActor = { kind: "privileged-user", userId: "pu-officer", role: "SECURITY_OFFICER" };
const random: RandomSource = { randomBytes: async (n) => randomBytes(n) };
const sealKey = randomBytes(32);

let dir: string;
let store: Store;
let records: VerifiedRecords;
let events: AuditEvent[];
let auditFails: boolean;
let generated: KeyAlgorithm[];
let signers: Signers;
let credentials: Credentials;

function policyWith(changes: Partial<Record<string, unknown>>) {
  const policy = { ...defaultSecurityPolicy({ trustedScaCaCertificates: [], trustedAdminCaCertificates: [] }), ...changes } as PolicyJson;
  const body = canonicalize({ policy, updatedAt: now.toISOString(), updatedBy: "", approvedBy: "" })!;
  return new PolicyVersion({ kind: "policy", id: "security-policy", version: 1, body, seal: new Uint8Array() });
}
let policy = policyWith({});
let policyTampered = false;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "inkan-registration-"));
  store = await createSqliteStore({ file: join(dir, "store.sqlite3") });
  const sealer = new RecordSealer({ keys: { hmacSha256: async (_k, data) => createHmac("sha256", sealKey).update(data).digest(), encrypt: async () => new Uint8Array(), decrypt: async () => new Uint8Array() } });
  records = new VerifiedRecords(store, sealer);
  events = [];
  auditFails = false;
  generated = [];
  policy = policyWith({});
  policyTampered = false;
  const audit: AuditLog = {
    record: async (e) => {
      if (auditFails) throw new InkanError("AUDIT_FAILURE", "audit log unavailable");
      events.push(e);
    },
  };
  const policies = {
    current: async () => {
      if (policyTampered) throw new IntegrityViolationError("policy", "security-policy");
      return policy;
    },
  };
  signers = new Signers({ records, oneTime: store, random, policies, audit });
  credentials = new Credentials({
    records,
    attempts: store,
    random,
    policies,
    audit,
    signers,
    keys: {
      async generateKeyPair(algorithm): Promise<GeneratedKey> {
        generated.push(algorithm);
        const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
        const keyId = randomBytes(16).toString("hex");
        return { keyId, uri: `pkcs11:token=inkan;id=${keyId}`, algorithm, publicKeySpki: publicKey.export({ format: "der", type: "spki" }) };
      },
      async destroyKeyPair() {},
    },
  });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const identity = (externalId = ""): SignerIdentity => ({
  kind: "NATURAL_PERSON", legalName: "Sato Hanako", displayName: "Hanako", email: "", phoneNumber: "", organization: "", country: "JP", externalId,
});
const proofing: IdentityProofing = { method: "IN_PERSON", evidenceReference: "RA-1", proofedAt: "2026-02-28T10:00:00.000Z" };
const codeOf = async (p: Promise<unknown>) => p.then(() => "ok", (e: unknown) => (e instanceof InkanError ? e.code : String(e)));

describe("activation codes (T-2.1.1.1)", () => {
  it("T-2.1.1.1: 25 Crockford base32 characters in five groups; typing variants normalize to the same hash", async () => {
    const codes = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const code = await newActivationCode(random);
      expect(code).toMatch(/^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){4}$/);
      codes.add(code);
    }
    expect(codes.size).toBe(50);
    expect(normalizeActivationCode("7k3qf-2m9xd-abcde-fghjk-mnpqr")).toBe("7K3QF2M9XDABCDEFGHJKMNPQR");
    expect(normalizeActivationCode("OIL00-00000-00000-00000-00000")).toBe("0110000000000000000000000");
    expect(normalizeActivationCode("too-short")).toBeUndefined();
    expect(normalizeActivationCode("UUUUU-00000-00000-00000-00000")).toBeUndefined(); // U is not in the alphabet
    expect(activationCodeHash("7k3qf 2m9xd abcde fghjk mnpqr")).toBe(activationCodeHash("7K3QF-2M9XD-ABCDE-FGHJK-MNPQR"));
  });

  it("T-2.1.1.3: a code whose issue cannot be audited is voided before the error (fail closed)", async () => {
    const { signer } = await signers.enroll({ actor: operator, now, identity: identity(), proofing });
    auditFails = true;
    expect(await codeOf(signers.issueActivationCode({ actor: operator, now, signerId: signer.id }))).toBe("AUDIT_FAILURE");
    const id = (await signers.get(signer.id, now)).body.activationCode!.id;
    expect(await store.attemptActivationCode({ id, codeHash: "anything", now })).toEqual({ outcome: "unavailable" });
  });

  it("T-2.1.1.1: the code lives as long as the policy says and is attempt-limited by it", async () => {
    policy = policyWith({ activationCodeLifetime: "600s", activationCodeMaxAttempts: 3 });
    const { signer } = await signers.enroll({ actor: operator, now, identity: identity(), proofing });
    const issued = await signers.issueActivationCode({ actor: operator, now, signerId: signer.id });
    expect(issued.expiresAt).toEqual(new Date(now.getTime() + 600_000));
    expect(issued.maxAttempts).toBe(3);
    const id = (await signers.get(signer.id, now)).body.activationCode!.id;
    expect(await store.attemptActivationCode({ id, codeHash: "wrong", now })).toEqual({ outcome: "rejected", attemptsLeft: 2 });
    const later = new Date(now.getTime() + 600_000);
    expect(await store.attemptActivationCode({ id, codeHash: activationCodeHash(issued.code), now: later })).toEqual({ outcome: "unavailable" });
    expect((await signers.get(signer.id, later)).factors.activationCode).toBeUndefined(); // expired: no longer shown
  });
});

describe("enrollment and keys in the domain (R-3.1.1.1, R-3.1.1.3, T-2.1.1.4)", () => {
  it("T-2.1.1.4: only a registration operator enrolls; the record is sealed and the event audited", async () => {
    expect(await codeOf(signers.enroll({ actor: officer, now, identity: identity(), proofing }))).toBe("ROLE_NOT_PERMITTED");
    const { signer } = await signers.enroll({ actor: operator, now, identity: identity("C-1"), proofing, requestId: "req-1" });
    expect(signer).toMatchObject({ kind: "signer", version: 1, status: "PENDING_ACTIVATION" });
    expect(events.map((e) => [e.eventType, e.signerId, e.requestId])).toEqual([["signer.enrolled", signer.id, "req-1"]]);
    expect(await codeOf(signers.enroll({ actor: operator, now, identity: identity("C-1"), proofing }))).toBe("ALREADY_EXISTS");
    const future = { ...proofing, proofedAt: "2026-03-02T00:00:00.000Z" };
    expect(await codeOf(signers.enroll({ actor: operator, now, identity: identity(), proofing: future }))).toBe("INVALID_REQUEST");
  });

  it("R-3.1.1.3: a disallowed algorithm, a disallowed level or an unknown signer never reaches the crypto module", async () => {
    policy = policyWith({ allowedKeyAlgorithms: ["KEY_ALGORITHM_EC_P256"] });
    const { signer } = await signers.enroll({ actor: operator, now, identity: identity(), proofing });
    expect(await codeOf(credentials.generate({ actor: operator, now, signerId: signer.id, algorithm: "RSA_2048", label: "" }))).toBe("ALGORITHM_NOT_ALLOWED");
    expect(await codeOf(credentials.generate({ actor: operator, now, signerId: signer.id, algorithm: "EC_P256", assuranceLevel: 3, label: "" }))).toBe("INVALID_REQUEST");
    expect(await codeOf(credentials.generate({ actor: operator, now, signerId: "sgn-unknown", algorithm: "EC_P256", label: "" }))).toBe("SIGNER_NOT_FOUND");
    expect(await codeOf(credentials.generate({ actor: officer, now, signerId: signer.id, algorithm: "EC_P256", label: "" }))).toBe("ROLE_NOT_PERMITTED");
    expect(generated).toEqual([]);
    const { credential, body } = await credentials.generate({ actor: operator, now, signerId: signer.id, algorithm: "EC_P256", label: "" });
    expect(generated).toEqual(["EC_P256"]);
    expect(credential).toMatchObject({ signerId: signer.id, status: "PENDING", version: 1 });
    expect(body).toMatchObject({ keyAlgorithm: "EC_P256", assuranceLevel: 2, origin: "GENERATED" });
    expect(events.at(-1)).toMatchObject({ eventType: "key.generated", signerId: signer.id, credentialId: credential.id });
  });

  it("ResetLockout returns LOCKED credentials to their earlier status and clears the signer's failed attempts", async () => {
    const { signer } = await signers.enroll({ actor: operator, now, identity: identity(), proofing });
    const { credential, body } = await credentials.generate({ actor: operator, now, signerId: signer.id, algorithm: "EC_P256", label: "" });
    // Lock it as factor verification will: status LOCKED, the earlier status kept in the body.
    const lockedBody: CredentialBody = { ...body, statusBeforeLock: "ACTIVE" };
    await records.update<CredentialRecord>({ ...credential, version: 2, status: "LOCKED", body: canonicalize(lockedBody)! }, 1);
    const fresh = await signers.record(signer.id);
    await signers.replace(fresh, fresh.status, { ...JSON.parse(fresh.body), failedAttempts: 5, lockedAt: now.toISOString() });
    expect((await signers.get(signer.id, now)).factors).toMatchObject({ failedAttempts: 5, lockedAt: now.toISOString() });

    const view = await credentials.resetLockout({ actor: operator, now, signerId: signer.id, reason: "verified" });
    expect(view.factors.failedAttempts).toBe(0);
    expect(view.factors.lockedAt).toBeUndefined();
    const unlocked = await credentials.get(credential.id);
    expect(unlocked.credential.status).toBe("ACTIVE");
    expect(unlocked.body.statusBeforeLock).toBeUndefined();
    expect(events.at(-1)).toMatchObject({ eventType: "credential.unlocked", credentialId: credential.id });
  });
});

describe("split knowledge of a signer's re-binding code (T-2.2.2.1, T-2.2.2.3)", () => {
  const second: PrivilegedUserActor = { kind: "privileged-user", userId: "pu-operator-2", role: "REGISTRATION_OPERATOR" };
  const auditorActor: PrivilegedUserActor = { kind: "privileged-user", userId: "pu-auditor", role: "AUDITOR" };

  /** A signer in PENDING_ACTIVATION that holds a credential (as after an approved reset). */
  async function signerWithKey() {
    const { signer } = await signers.enroll({ actor: operator, now, identity: identity(), proofing });
    const { credential } = await credentials.generate({ actor: operator, now, signerId: signer.id, algorithm: "EC_P256", label: "" });
    return { signerId: signer.id, credential };
  }

  it("T-2.2.2.3: halves combine in either order, separators and case ignored; a half twice or a typo is no pair", async () => {
    const a = await newActivationCode(random);
    const b = await newActivationCode(random);
    const pair = activationCodePairHash(activationCodeHalfHash(a), activationCodeHalfHash(b));
    expect(enteredActivationCodeHash(`${a}-${b}`)).toBe(pair);
    expect(enteredActivationCodeHash(`${b.toLowerCase()} ${a}`)).toBe(pair);
    expect(enteredActivationCodeHash(`${a}${a}`)).not.toBe(pair);
    expect(enteredActivationCodeHash(a)).toBe(activationCodeHash(a)); // a whole code still hashes as before
    expect(enteredActivationCodeHash(`${a}-${b}-X`)).toBeUndefined();
    expect(enteredActivationCodeHash(`${a}-UUUUU-00000-00000-00000-00000`)).toBeUndefined();
  });

  it("T-2.2.2.1: the domain itself refuses a lone operator a code for a signer with a key (even if the transport let the call through); nothing is issued", async () => {
    const { signerId } = await signerWithKey();
    expect(await codeOf(signers.issueActivationCode({ actor: operator, now, signerId }))).toBe("APPROVAL_REQUIRED");
    expect((await signers.get(signerId, now)).body.activationCode).toBeUndefined();
    expect(events.some((e) => e.eventType === "activation_code.issued")).toBe(false);
    expect(await signers.rebindingHeld(signerId, "issue")).toBe(true);
    // The requester as their own approver, or an auditor: refused.
    const { halfHash } = await newActivationCodeHalf(random);
    expect(await codeOf(signers.issueActivationCode({ actor: operator, now, signerId, approval: { approver: operator, requesterHalfHash: halfHash } }))).toBe("APPROVAL_REJECTED");
    expect(await codeOf(signers.issueActivationCode({ actor: operator, now, signerId, approval: { approver: auditorActor, requesterHalfHash: halfHash } }))).toBe("ROLE_NOT_PERMITTED");
  });

  it("T-2.2.2.3: approved, the approver gets the other half; the store holds the pair's hash, so neither half alone nor a whole code matches", async () => {
    const { signerId } = await signerWithKey();
    const requester = await newActivationCodeHalf(random);
    const issued = await signers.issueActivationCode({ actor: operator, now, signerId, approval: { approver: second, requesterHalfHash: requester.halfHash } });
    expect(issued.part).toBe("APPROVER_HALF");
    const pending = (await signers.get(signerId, now)).body.activationCode!;
    expect(pending.split).toBe(true);
    const attempt = (codeHash: string) => store.attemptActivationCode({ id: pending.id, codeHash, now });
    expect(await attempt(activationCodeHash(issued.code))).toMatchObject({ outcome: "rejected" });
    expect(await attempt(activationCodeHash(requester.half))).toMatchObject({ outcome: "rejected" });
    expect(await attempt(enteredActivationCodeHash(`${issued.code}-${requester.half}`)!)).toMatchObject({ outcome: "accepted" });
    expect(events.at(-1)).toMatchObject({ eventType: "activation_code.issued", signerId });
    expect(JSON.stringify(events)).not.toContain(issued.code);
  });

  it("T-2.2.2.1: one operator suffices without a live key, with the switch off, and never when the policy fails its check", async () => {
    const { signerId, credential } = await signerWithKey();
    policy = policyWith({ dualControl: { signerRebinding: "APPROVAL_REQUIREMENT_SINGLE_CONTROL" } });
    expect((await signers.issueActivationCode({ actor: operator, now, signerId })).part).toBe("WHOLE");
    policyTampered = true;
    expect(await signers.rebindingHeld(signerId, "issue")).toBe(true);
    policyTampered = false;
    policy = policyWith({});
    expect(await signers.rebindingHeld(signerId, "issue")).toBe(true);
    await records.update<CredentialRecord>({ ...credential, version: 2, status: "DESTROYED" }, 1);
    expect(await signers.rebindingHeld(signerId, "issue")).toBe(false);
    expect((await signers.issueActivationCode({ actor: operator, now, signerId })).part).toBe("WHOLE");
    expect(await signers.rebindingHeld("sgn-unknown", "reset")).toBe(false); // refused by the handler anyway
  });
});
