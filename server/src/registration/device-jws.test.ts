import { exportJWK, generateKeyPair } from "jose";
import { describe, expect, it } from "vitest";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { FactorRecord } from "../store/port.js";
import { DeviceProofRefused, parseDevicePublicJwk, registeredDeviceKey } from "./device-jws.js";

// Issue 18 item 10 (signer.proto, ActivateRequest.device_public_key_jwk): exactly the key type's
// public members, and optionally "alg", "use", "key_ops", "kid" and "ext"; any other is refused.
const ec = async () => ({ ...(await exportJWK((await generateKeyPair("ES256", { extractable: true })).publicKey)) }) as Record<string, unknown>;
const refused = (jwk: object) => parseDevicePublicJwk(JSON.stringify(jwk)).then(() => undefined, (e: unknown) => e);

describe("device public JWK members (issue 18, T-2.1.1.1)", () => {
  it("accepts the key's members with the optional alg, use, key_ops, kid and ext (as WebCrypto exports them)", async () => {
    const jwk = await ec();
    await expect(parseDevicePublicJwk(JSON.stringify(jwk))).resolves.toMatchObject({ algorithm: "ES256" });
    const full = { ...jwk, alg: "ES256", use: "sig", key_ops: ["verify"], kid: "device-1", ext: true };
    const parsed = await parseDevicePublicJwk(JSON.stringify(full));
    expect(Object.keys(parsed.jwk).sort()).toEqual(["crv", "kty", "x", "y"]); // what is stored
  });

  for (const [name, extra] of [
    ["x5c", { x5c: ["MIIB"] }],
    ["x5u", { x5u: "https://attacker.example/cert.pem" }],
    ["jku", { jku: "https://attacker.example/keys" }],
    ["x5t", { x5t: "AAAA" }],
    ["an unknown member", { trusted: true }],
    ["a member of another key type (n)", { n: "AQAB" }],
    ["kid that is not a string", { kid: 7 }],
    ["ext that is not a boolean", { ext: "true" }],
  ] as const) {
    it(`refuses ${name}`, async () => {
      expect(await refused({ ...(await ec()), ...extra })).toBeInstanceOf(DeviceProofRefused);
    });
  }
});

describe("registered device keys, parsed once (issue 20, T-2.2.1.1)", () => {
  const factor = (jwkText: string, over: Partial<FactorRecord> = {}): FactorRecord =>
    ({ kind: "factor", id: "kid", version: 1, signerId: "sgn_1", type: "DEVICE_KEY", status: "ACTIVE", body: JSON.stringify({ jwk: jwkText, algorithm: "ES256", registeredAt: "2026-01-01T00:00:00Z" }), seal: new Uint8Array(32), ...over }) as FactorRecord;
  const records = (f: FactorRecord | undefined) => ({ get: async () => f }) as unknown as Pick<VerifiedRecords, "get">;

  it("the factor read on each call decides the key: the same text is one key; another key under the same id, or a revoked factor, is refused", async () => {
    const a = JSON.stringify(await ec());
    const b = JSON.stringify(await ec());
    const kid = (await parseDevicePublicJwk(a)).thumbprint;
    const first = await registeredDeviceKey(records(factor(a, { id: kid })), "sgn_1", kid);
    expect(await registeredDeviceKey(records(factor(a, { id: kid })), "sgn_1", kid)).toBe(first); // parsed and imported once
    expect(Object.isFrozen(first)).toBe(true);
    await expect(registeredDeviceKey(records(factor(b, { id: kid })), "sgn_1", kid)).rejects.toThrow("the registered key does not match its id");
    await expect(registeredDeviceKey(records(factor(a, { id: kid, status: "REVOKED" })), "sgn_1", kid)).rejects.toBeInstanceOf(DeviceProofRefused);
    await expect(registeredDeviceKey(records(factor(a, { id: kid })), "sgn_2", kid)).rejects.toBeInstanceOf(DeviceProofRefused);
  });
});
