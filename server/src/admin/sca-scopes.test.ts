import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { describe, expect, it } from "vitest";
import { defaultSecurityPolicy, inSignerScope, PolicyVersion, snapshotOf, type PolicyJson } from "./security-policy.js";

// SecurityPolicy.sca_scopes (issue 19) as the domain reads them: pure logic, no server.
const hex = (seed: string) => createHash("sha256").update(seed).digest("hex");
const b64 = (h: string) => Buffer.from(h, "hex").toString("base64");
const caA = hex("ca-a");
const caB = hex("ca-b");
const spkiA = hex("spki-a");
const spkiB = hex("spki-b");

const policyWith = (scaScopes: PolicyJson[] | undefined) =>
  new PolicyVersion({
    kind: "policy", id: "security-policy", version: 1, seal: new Uint8Array(),
    body: canonicalize({ policy: { ...defaultSecurityPolicy({ trustedScaCaCertificates: [], trustedAdminCaCertificates: [] }), ...(scaScopes ? { scaScopes } : {}) }, updatedAt: "", updatedBy: "", approvedBy: "" })!,
  });

describe("SCA scopes (issue 19, R-3.2.2.3)", () => {
  it("R-3.2.2.3: no scope, or no scope naming the SCA, means no signer at all (deny by default)", () => {
    for (const policy of [policyWith(undefined), policyWith([]), policyWith([{ name: "b", scaCaCertificateSha256: b64(caB), allSigners: true }])]) {
      const scope = policy.scaScope({ spkiSha256: spkiA, issuerSha256: caA });
      expect(scope).toEqual({ all: false, groups: new Set(), scopes: [] });
      expect(inSignerScope(scope, "")).toBe(false);
      expect(inSignerScope(scope, "b")).toBe(false);
    }
    expect(policyWith([{ name: "all", scaCaCertificateSha256: b64(caA), allSigners: true }]).scaScope(undefined).scopes).toEqual([]);
  });

  it("R-3.2.2.3: an SCA gets the union of every scope naming its key or its CA; a signer without a group is only in an all-signers scope", () => {
    const policy = policyWith([
      { name: "tenant-a", scaCaCertificateSha256: b64(caA), ownGroup: true },
      { name: "shared", scaSpkiSha256: b64(spkiA), signerGroups: { groups: ["pool-1", "pool-2"] } },
      { name: "tenant-b", scaSpkiSha256: b64(spkiB), signerGroups: { groups: ["tenant-b"] } },
    ]);
    const a = policy.scaScope({ spkiSha256: spkiA, issuerSha256: caA });
    expect(a.scopes).toEqual(["tenant-a", "shared"]);
    expect(["tenant-a", "pool-1", "pool-2", "tenant-b", ""].map((g) => inSignerScope(a, g))).toEqual([true, true, true, false, false]);
    // Another SCA of CA A (another key) gets the CA's scope only.
    const a2 = policy.scaScope({ spkiSha256: hex("spki-a2"), issuerSha256: caA });
    expect(["tenant-a", "pool-1", ""].map((g) => inSignerScope(a2, g))).toEqual([true, false, false]);
    // SCA-B's key under another CA still matches its key binding.
    expect(inSignerScope(policy.scaScope({ spkiSha256: spkiB, issuerSha256: hex("ca-c") }), "tenant-b")).toBe(true);

    const withAll = policyWith([{ name: "dev", scaCaCertificateSha256: b64(caA), allSigners: true }]).scaScope({ spkiSha256: spkiA, issuerSha256: caA });
    expect(inSignerScope(withAll, "")).toBe(true);
    expect(inSignerScope(withAll, "anything")).toBe(true);
  });

  it("R-3.2.2.3: inkan init's policy gives each given SCA CA an all-signers scope, and nothing when none is given", () => {
    const der = new Uint8Array([0x30, 1, 2, 3]);
    const policy = defaultSecurityPolicy({ trustedScaCaCertificates: [der], trustedAdminCaCertificates: [] });
    expect(policy["scaScopes"]).toEqual([{ name: "development", scaCaCertificateSha256: createHash("sha256").update(der).digest("base64"), allSigners: true }]);
    expect(defaultSecurityPolicy({ trustedScaCaCertificates: [], trustedAdminCaCertificates: [] })["scaScopes"]).toBeUndefined();
  });

  it("R-3.2.2.4: the audit snapshot of the policy shows each scope as readable text (who, for which signers)", () => {
    const snapshot = snapshotOf({ scaScopes: [
      { name: "tenant-a", scaCaCertificateSha256: b64(caA), ownGroup: true },
      { name: "tenant-b", scaSpkiSha256: b64(spkiB), signerGroups: { groups: ["x", "y"] } },
      { name: "dev", scaCaCertificateSha256: b64(caB), allSigners: true },
    ] });
    expect(snapshot["scaScopes"]).toEqual([`tenant-a sca-ca=${caA} signers=own-group`, `tenant-b spki=${spkiB} signers=groups=x|y`, `dev sca-ca=${caB} signers=all`]);
  });
});
