import { createHmac, randomBytes, X509Certificate } from "node:crypto";
import { fromJson, toJson, type JsonObject } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { SecurityPolicySchema } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { SystemKeys } from "../crypto/port.js";
import { RecordSealer } from "../integrity/record-sealer.js";
import { VerifiedRecords } from "../integrity/sealed-records.js";
import { createCertificateAuthority, issueCertificate } from "../pki/dev-pki.js";
import type { PolicyRecord, SealedRecords } from "../store/port.js";
import {
  defaultPinHashCost,
  defaultSecurityPolicy,
  pinHashCostOf,
  PolicyIntegrityGate,
  SecurityPolicies,
  snapshotOf,
  type DefaultPolicyInput,
  type PolicyJson,
} from "./security-policy.js";

// Unit tests of the security policy (R-3.2.2.3) with an in-memory store and node:crypto standing
// in for the module's seal key; policy-service.test.ts and policy-tampering.test.ts run the same
// code in the real server on SoftHSM2 and SQLite.
const hmacKey = randomBytes(32);
/** When set, the next HMAC waits for it: lets a test hold one read in the middle of its check. */
let holdNextHmac: Promise<void> | undefined;
const keys: SystemKeys = {
  async hmacSha256(_key, data) {
    const hold = holdNextHmac;
    holdNextHmac = undefined;
    await hold;
    return createHmac("sha256", hmacKey).update(data).digest();
  },
  encrypt: () => Promise.reject(new Error("unused")),
  decrypt: () => Promise.reject(new Error("unused")),
};

/** The policy part of the store port, in memory; `rows` is the insider's direct access. */
class MemoryPolicyStore {
  rows: PolicyRecord[] = [];
  async appendPolicyVersion(record: PolicyRecord): Promise<boolean> {
    const latest = Math.max(0, ...this.rows.filter((r) => r.id === record.id).map((r) => r.version));
    if (record.version !== latest + 1) return false;
    this.rows.push({ ...record });
    return true;
  }
  async getPolicyVersion(id: string, version: number) {
    return this.rows.find((r) => r.id === id && r.version === version);
  }
  async latestPolicyVersion(id: string) {
    return this.rows.filter((r) => r.id === id).sort((a, b) => b.version - a.version)[0];
  }
  async listPolicyVersions(id: string, after: number, limit: number) {
    return this.rows.filter((r) => r.id === id && r.version > after).sort((a, b) => a.version - b.version).slice(0, limit);
  }
  /** Edits the latest row's body as a database insider would (the seal stays). */
  tamperLatest(edit: (policy: Record<string, unknown>) => void) {
    const row = this.rows.reduce((a, b) => (b.version > a.version ? b : a));
    const body = JSON.parse(row.body) as { policy: Record<string, unknown> };
    edit(body.policy);
    const original = row.body;
    row.body = JSON.stringify(body);
    return () => void (row.body = original);
  }
}

let cas: DefaultPolicyInput;
let leafDer: Uint8Array;
beforeAll(async () => {
  const sca = await createCertificateAuthority("SCA CA");
  const admin = await createCertificateAuthority("Admin CA");
  leafDer = new X509Certificate((await issueCertificate(admin, { commonName: "not-a-ca", usage: "client" })).cert).raw;
  cas = { trustedScaCaCertificates: [new X509Certificate(sca.cert).raw], trustedAdminCaCertificates: [new X509Certificate(admin.cert).raw] };
});

let store: MemoryPolicyStore;
let records: VerifiedRecords;
let policies: SecurityPolicies;
const t0 = new Date("2026-01-01T00:00:00.000Z");
const at = (s: number) => new Date(t0.getTime() + s * 1000);
beforeEach(async () => {
  store = new MemoryPolicyStore();
  records = new VerifiedRecords(store as unknown as SealedRecords, new RecordSealer({ keys }));
  policies = new SecurityPolicies({ records });
  await policies.ensureDefault({ ...cas, now: t0 });
});

const withLockout = (n: number, base: PolicyJson = defaultSecurityPolicy(cas)): PolicyJson => ({ ...base, lockoutThreshold: n });

describe("the default security policy (R-3.2.2.3)", () => {
  it("satisfies every protovalidate rule of SecurityPolicy", () => {
    const result = createValidator().validate(SecurityPolicySchema, fromJson(SecurityPolicySchema, defaultSecurityPolicy(cas) as JsonObject));
    expect(result.error?.message).toBeUndefined();
    expect(result.kind).toBe("valid");
  });

  it("is already in the proto3 JSON form the transport produces, so its canonical body is stable", () => {
    const json = defaultSecurityPolicy(cas);
    expect(toJson(SecurityPolicySchema, fromJson(SecurityPolicySchema, json as JsonObject))).toEqual(json);
  });

  it("is secure by default: level 2, dual control everywhere, lockout 5, short lifetimes", async () => {
    const v = await policies.current();
    expect(v.version).toBe(1);
    expect(v.updatedBy).toBe("");
    expect(v.updatedAt).toEqual(t0);
    expect(v.lockoutThreshold).toBe(5);
    expect(v.sadTokenLifetimeMs).toBe(300_000);
    expect(v.defaultTransactionLifetimeMs).toBe(300_000);
    expect(v.maxTransactionLifetimeMs).toBe(3_600_000);
    expect(v.maxHashesPerTransaction).toBe(100_000);
    expect(v.maxHashesPerChunk).toBe(10_000);
    expect(v.activationCodeLifetimeMs).toBe(72 * 3_600_000);
    expect(v.activationCodeMaxAttempts).toBe(5);
    expect(v.pendingApprovalLifetimeMs).toBe(86_400_000);
    for (const s of ["credentialDestruction", "securityOfficerChanges", "securityPolicyChanges"] as const) expect(v.requiresDualControl(s)).toBe(true);
    expect(v.policy.defaultAssuranceLevel).toBe("ASSURANCE_LEVEL_2");
  });

  it("is written once: ensureDefault never overwrites a stored policy, even one that fails its check", async () => {
    expect(await policies.ensureDefault({ ...cas, now: at(5) })).toBeUndefined();
    store.tamperLatest((p) => (p.lockoutThreshold = 100));
    expect(await policies.ensureDefault({ ...cas, now: at(6) })).toBeUndefined();
    expect(store.rows).toHaveLength(1);
  });
});

describe("SecurityPolicies.update (R-3.2.2.3)", () => {
  it("appends version + 1 by compare-and-set and returns the old and new versions for the audit log", async () => {
    const { previous, current } = await policies.update({ policyJson: withLockout(3), expectedVersion: 1, by: "pu-a", approvedBy: "pu-b", now: at(10) });
    expect(previous?.version).toBe(1);
    expect(previous?.lockoutThreshold).toBe(5);
    expect(current).toMatchObject({ version: 2, updatedBy: "pu-a", approvedBy: "pu-b", lockoutThreshold: 3 });
    expect((await policies.current()).version).toBe(2);
    expect(store.rows.map((r) => r.version)).toEqual([1, 2]); // version 1 stays readable
  });

  it("refuses a stale expected_version (VERSION_CONFLICT) and changes nothing", async () => {
    await policies.update({ policyJson: withLockout(3), expectedVersion: 1, by: "pu-a", now: at(10) });
    await expect(policies.update({ policyJson: withLockout(4), expectedVersion: 1, by: "pu-a", now: at(11) })).rejects.toMatchObject({
      code: "VERSION_CONFLICT", field: "expected_version",
    });
    await expect(policies.update({ policyJson: withLockout(4), expectedVersion: 0, by: "pu-a", now: at(11) })).rejects.toMatchObject({ code: "VERSION_CONFLICT" });
    expect((await policies.current()).lockoutThreshold).toBe(3);
  });

  it("of two writers at the same version, exactly one wins", async () => {
    const results = await Promise.allSettled([3, 4].map((n) => policies.update({ policyJson: withLockout(n), expectedVersion: 1, by: "pu-a", now: at(10) })));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(store.rows).toHaveLength(2);
  });

  it("refuses a trusted CA entry that is not a DER CA certificate, naming it", async () => {
    const notCa = { ...defaultSecurityPolicy(cas), trustedScaCaCertificates: [...(defaultSecurityPolicy(cas).trustedScaCaCertificates as string[]), Buffer.from(leafDer).toString("base64")] };
    await expect(policies.update({ policyJson: notCa, expectedVersion: 1, by: "pu-a", now: at(10) })).rejects.toMatchObject({
      code: "INVALID_REQUEST", field: "policy.trusted_sca_ca_certificates[1]",
    });
    const pem = new X509Certificate(cas.trustedAdminCaCertificates[0]!).toString(); // the right CA, but PEM, not DER
    const garbage = { ...defaultSecurityPolicy(cas), trustedAdminCaCertificates: [Buffer.from(pem).toString("base64")] };
    await expect(policies.update({ policyJson: garbage, expectedVersion: 1, by: "pu-a", now: at(10) })).rejects.toMatchObject({
      code: "INVALID_REQUEST", field: "policy.trusted_admin_ca_certificates[0]",
    });
  });

  it("issue 20: refuses a PIN hash cost below the scrypt floor N = 2^10 (domain and protovalidate), and changes nothing", async () => {
    for (const [pinHashCost, field] of [
      [{ log2N: 9, r: 8, p: 1 }, "policy.pin_hash_cost.log2_n"],
      [{ r: 8, p: 1 }, "policy.pin_hash_cost.log2_n"],
      [{ log2N: 12, r: 0, p: 1 }, "policy.pin_hash_cost.r"],
      [{ log2N: 12, r: 8, p: 9 }, "policy.pin_hash_cost.p"],
    ] as [PolicyJson, string][]) {
      const weak: PolicyJson = { ...defaultSecurityPolicy(cas), pinHashCost };
      await expect(policies.update({ policyJson: weak, expectedVersion: 1, by: "pu-a", now: at(10) })).rejects.toMatchObject({ code: "INVALID_REQUEST", field });
      expect(createValidator().validate(SecurityPolicySchema, fromJson(SecurityPolicySchema, weak as JsonObject)).kind).toBe("invalid");
    }
    expect((await policies.current()).version).toBe(1);
    expect((await policies.current()).pinHashCost).toEqual({ N: 4096, r: 8, p: 1 });
    const { current } = await policies.update({ policyJson: { ...defaultSecurityPolicy(cas), pinHashCost: { log2N: 10, r: 8, p: 1 } }, expectedVersion: 1, by: "pu-a", now: at(10) });
    expect(current.pinHashCost).toEqual({ N: 1024, r: 8, p: 1 }); // the floor itself is allowed
    const { pinHashCost: _, ...unset } = defaultSecurityPolicy(cas);
    expect(pinHashCostOf(unset)).toEqual(defaultPinHashCost); // unset: the default
  });

  it("reads the dual-control switches fail-safe: only SINGLE_CONTROL turns one off", async () => {
    const policy = { ...defaultSecurityPolicy(cas), dualControl: { securityPolicyChanges: "APPROVAL_REQUIREMENT_SINGLE_CONTROL" } };
    const { current } = await policies.update({ policyJson: policy, expectedVersion: 1, by: "pu-a", now: at(10) });
    expect(current.requiresDualControl("securityPolicyChanges")).toBe(false);
    expect(current.requiresDualControl("securityOfficerChanges")).toBe(true); // left UNSPECIFIED
  });

  it("records trusted CAs in the audit snapshot by fingerprint only", async () => {
    const snapshot = snapshotOf(defaultSecurityPolicy(cas));
    expect(snapshot.trustedAdminCaCertificates).toEqual([expect.stringMatching(/^[0-9a-f]{64}$/)]);
    expect(snapshot.lockoutThreshold).toBe(5);
    expect(snapshot.dualControl).toMatchObject({ securityPolicyChanges: "APPROVAL_REQUIREMENT_DUAL_CONTROL" });
  });
});

describe("tampering with the stored policy (R-3.2.2.3)", () => {
  it("an edited row fails its check on every read", async () => {
    store.tamperLatest((p) => (p.lockoutThreshold = 100));
    await expect(policies.current()).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
  });

  it("a deleted policy is tampering, not a reason to fall back to defaults", async () => {
    store.rows = [];
    await expect(policies.current()).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
  });

  it("a rolled-back policy (latest version deleted) is refused by a node that saw the newer one", async () => {
    await policies.update({ policyJson: withLockout(3), expectedVersion: 1, by: "pu-a", now: at(10) });
    await policies.current();
    store.rows.pop();
    await expect(policies.current()).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
  });

  it("while the policy fails its check, only expected_version 0 restores it, as the next stored version", async () => {
    store.tamperLatest((p) => (p.lockoutThreshold = 100));
    await expect(policies.update({ policyJson: withLockout(4), expectedVersion: 1, by: "pu-a", now: at(10) })).rejects.toMatchObject({ code: "VERSION_CONFLICT" });
    const { previous, current } = await policies.update({ policyJson: withLockout(4), expectedVersion: 0, by: "pu-a", approvedBy: "pu-b", now: at(10) });
    expect(previous).toBeUndefined(); // the failed version is never used, not even as the "old value"
    expect(current.version).toBe(2);
    expect((await policies.current()).lockoutThreshold).toBe(4);
  });
});

describe("PolicyIntegrityGate (R-3.2.2.3)", () => {
  const events: string[] = [];
  const gateFor = (p: SecurityPolicies, intervalMs = 1000) =>
    new PolicyIntegrityGate({
      policies: p,
      intervalMs,
      clock: () => at(100),
      onClosed: (e) => events.push(`closed:${e.code}`),
      onOpened: (v) => events.push(`opened:${v.version}`),
    });
  beforeEach(() => void (events.length = 0));
  afterEach(() => vi.useRealTimers());

  it("is open on a valid policy and closes, saying why, when a check fails", async () => {
    const gate = gateFor(policies);
    expect(await gate.check()).toBe(true);
    expect(() => gate.assertOpen()).not.toThrow();
    store.tamperLatest((p) => (p.lockoutThreshold = 100));
    expect(await gate.check()).toBe(false);
    expect(gate.state).toMatchObject({ open: false, since: at(100) });
    expect(() => gate.assertOpen()).toThrow(expect.objectContaining({ code: "INTEGRITY_VIOLATION", message: "the security policy failed its integrity check; signing is stopped" }));
    expect(events).toEqual(["closed:INTEGRITY_VIOLATION"]);
  });

  it("closes on a failed read anywhere (GetSecurityPolicy, a dual-control guard), not only on its own checks", async () => {
    const gate = gateFor(policies);
    store.tamperLatest((p) => (p.lockoutThreshold = 100));
    await expect(policies.current()).rejects.toThrow();
    expect(gate.isOpen).toBe(false);
  });

  it("stays closed when the edit is undone or the bad row deleted; opens when a valid version is written", async () => {
    const gate = gateFor(policies);
    await gate.check();
    const undo = store.tamperLatest((p) => (p.lockoutThreshold = 100));
    expect(await gate.check()).toBe(false);
    undo();
    expect(await gate.check()).toBe(false);
    expect((await policies.current()).version).toBe(1); // readable again, but not trusted to serve
    await policies.update({ policyJson: withLockout(5), expectedVersion: 1, by: "pu-a", approvedBy: "pu-b", now: at(200) });
    expect(gate.isOpen).toBe(true);
    expect(events).toEqual(["closed:INTEGRITY_VIOLATION", "opened:2"]);

    store.rows.push({ ...store.rows[0]!, version: 3 }); // an inserted row with a copied seal
    expect(await gate.check()).toBe(false);
    store.rows.pop();
    expect(await gate.check()).toBe(false);
  });

  it("a check that read the tampered row before a restore does not close the gate behind the restore", async () => {
    const gate = gateFor(policies);
    store.tamperLatest((p) => (p.lockoutThreshold = 100));
    expect(await gate.check()).toBe(false);
    let release!: () => void;
    holdNextHmac = new Promise((r) => (release = r));
    const stale = gate.check(); // reads the tampered row, then waits in its seal check
    await policies.update({ policyJson: withLockout(5), expectedVersion: 0, by: "pu-a", approvedBy: "pu-b", now: at(200) });
    expect(gate.isOpen).toBe(true);
    release();
    await stale;
    expect(gate.isOpen).toBe(true);
    expect(await gate.check()).toBe(true);
  });

  it("on another node, opens when it sees the restoring version another node wrote", async () => {
    const nodeA = policies;
    const nodeB = new SecurityPolicies({ records });
    const gateB = gateFor(nodeB);
    await gateB.check();
    store.tamperLatest((p) => (p.lockoutThreshold = 100));
    expect(await gateB.check()).toBe(false);
    await nodeA.update({ policyJson: withLockout(5), expectedVersion: 0, by: "pu-a", approvedBy: "pu-b", now: at(200) });
    expect(await gateB.check()).toBe(true);
  });

  it("a gate that never saw a valid policy opens only on a version above the failed one", async () => {
    store.tamperLatest((p) => (p.lockoutThreshold = 100));
    const nodeB = new SecurityPolicies({ records });
    const gateB = gateFor(nodeB);
    expect(await gateB.check()).toBe(false);
    await policies.update({ policyJson: withLockout(5), expectedVersion: 0, by: "pu-a", now: at(200) });
    expect(await gateB.check()).toBe(true);
  });

  it("checks every intervalMs once started, until stopped; a failed store read leaves the state alone", async () => {
    vi.useFakeTimers();
    const failures: unknown[] = [];
    const gate = new PolicyIntegrityGate({ policies, intervalMs: 1000, onCheckFailed: (e) => failures.push(e) });
    gate.start();
    store.tamperLatest((p) => (p.lockoutThreshold = 100));
    expect(gate.isOpen).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);
    expect(gate.isOpen).toBe(false);
    gate.stop();
    expect(vi.getTimerCount()).toBe(0);

    const broken = new SecurityPolicies({ records: { latestPolicyVersion: () => Promise.reject(new Error("store down")) } as unknown as VerifiedRecords });
    const gate2 = new PolicyIntegrityGate({ policies: broken, intervalMs: 1000, onCheckFailed: (e) => failures.push(e) });
    expect(await gate2.check()).toBe(true);
    expect(failures).toHaveLength(1);
  });
});

