import canonicalize from "canonicalize";
import { describe, expect, it } from "vitest";
import { defaultSecurityPolicy, PolicyVersion, type PolicyJson } from "../admin/security-policy.js";
import { assertNoDuplicateMembers } from "./sad-claims.js";
import { credentialMethods, enforcedLevel, enforcedMethods } from "./authentication-methods.js";

const all = ["AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN", "AUTHENTICATION_METHOD_PIN_AND_TOTP", "AUTHENTICATION_METHOD_PIN", "AUTHENTICATION_METHOD_LOGIN_ASSERTION"];
const policyWith = (over: Partial<PolicyJson>) =>
  new PolicyVersion({
    kind: "policy", id: "security-policy", version: 1, seal: new Uint8Array(),
    body: canonicalize({ policy: { ...(defaultSecurityPolicy({ trustedScaCaCertificates: [], trustedAdminCaCertificates: [] }) as PolicyJson), ...over }, updatedAt: "", updatedBy: "", approvedBy: "" })!,
  });

describe("authentication methods and assurance levels (R-3.1.4)", () => {
  it("R-3.1.4: the SAM enforces the methods the policy enables, the login assertion only with an OpenID provider", () => {
    const p = policyWith({ enabledAuthenticationMethods: [...all].reverse() });
    expect(enforcedMethods(p, { loginAssertion: true })).toEqual(all);
    expect(enforcedMethods(p, { loginAssertion: false })).toEqual(all.slice(0, 3));
    expect(enforcedMethods(policyWith({}), { loginAssertion: true })).toEqual(all.slice(0, 2)); // the default policy
  });

  it("R-3.1.4: a level-2 or level-3 credential never accepts a one-factor method; level 3 only on a certified SAM", () => {
    const p = policyWith({ enabledAuthenticationMethods: all });
    const yes = { loginAssertion: true };
    expect(credentialMethods(1, p, yes)).toEqual(all);
    expect(credentialMethods(2, p, yes)).toEqual(all.slice(0, 2));
    expect(credentialMethods(3, p, yes)).toEqual([]);
    expect(enforcedLevel(3, p)).toBeUndefined();
    const certified = policyWith({ enabledAuthenticationMethods: all, certified: true });
    expect(enforcedLevel(3, certified)).toBe(3);
    expect(credentialMethods(3, certified, yes)).toEqual(all.slice(0, 2));
    expect(credentialMethods(0, p, yes)).toEqual([]);
  });

  it("R-3.2.1.1: duplicate member names are found at any depth, not in arrays of strings or in values", () => {
    expect(() => assertNoDuplicateMembers('{"a":1,"b":{"c":1,"c":2}}')).toThrow(/duplicate member "c"/);
    expect(() => assertNoDuplicateMembers('{"a":1,"a":1}')).toThrow(/duplicate/);
    expect(() => assertNoDuplicateMembers('{"a":[{"x":1},{"x":2}],"b":["a","a"],"c":"a","d":{"a":"\\"a\\":"}}')).not.toThrow();
    expect(() => assertNoDuplicateMembers('{"a":[{"x":1,"x":2}]}')).toThrow(/duplicate/);
    expect(() => assertNoDuplicateMembers('{"\\u0061":1,"a":2}')).toThrow(/duplicate/);
  });
});
