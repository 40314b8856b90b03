import { readdirSync, readFileSync } from "node:fs";
import { calculateJwkThumbprint, compactDecrypt, compactVerify, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { HashAlgorithm } from "../gen/inkan/sam/v1/types_pb.js";
import { createDeviceKey } from "./device-key.js";
import { buildClaimsRSad, buildRSad, rSadEnvelopeCty } from "./r-sad.js";

async function samKey() {
  const { publicKey, privateKey } = await generateKeyPair("ECDH-ES+A256KW", { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, "sha256");
  return { privateKey, key: { kid, alg: "ECDH-ES+A256KW", jwk: { ...pub, kid, alg: "ECDH-ES+A256KW", use: "enc" } as JWK } };
}

const challenge = Uint8Array.from({ length: 32 }, (_, i) => i);
const dtbsrDigest = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
const now = new Date("2026-11-25T12:00:00Z");
const tx = { signerId: "sgn-1", credentialId: "crd-1", samId: "urn:inkan:sam:x", transactionId: "txn-1", challenge, dtbsrDigest, count: 3, hashAlgorithm: HashAlgorithm.SHA384, description: "Invoices 2025-03", now };
/** sam.proto's example: base64url(SHA-256(UTF-8 "Invoices 2025-03")). */
const desc = "MRLkBrJPuE2wzCexd92Uhfp5fRyte6I5khQ-hhopx9s";

async function open(jwe: string, privateKey: CryptoKey) {
  const { plaintext } = await compactDecrypt(jwe, privateKey);
  return JSON.parse(new TextDecoder().decode(plaintext)) as Record<string, unknown>;
}

/** T-2.2.1.5: the compact JWE shows only the header's public members; no claim or factor value, in any encoding. */
function expectNothingOutside(jwe: string, secrets: string[]) {
  expect(Object.keys(decodeProtectedHeader(jwe)).sort()).toEqual(["alg", "cty", "enc", "epk", "kid"]);
  const visible = [jwe, ...jwe.split(".").map((p) => Buffer.from(p, "base64url").toString("latin1"))].join("\n");
  for (const s of secrets) {
    expect(visible).not.toContain(s);
    expect(visible).not.toContain(Buffer.from(s).toString("base64url"));
  }
}

describe("buildClaimsRSad (sam.proto AuthorizeRequest.r_sad, methods without a device key; R-3.1.4, R-3.2.1.2)", () => {
  it("R-3.2.1.2: PIN + TOTP: the envelope is exactly {claims, pin, otp}; the claims exactly sub, cred, aud, txn, chal, dtbsr, n, halg, desc, iat, exp, jti", async () => {
    const k = await samKey();
    const jwe = await buildClaimsRSad({ ...tx, samKey: k.key, factors: { pin: "246813", otp: "012345" } });
    expect(decodeProtectedHeader(jwe)).toMatchObject({ alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: k.key.kid, cty: rSadEnvelopeCty });
    const env = await open(jwe, k.privateKey);
    expect(Object.keys(env).sort()).toEqual(["claims", "otp", "pin"]);
    expect(env.pin).toBe("246813");
    expect(env.otp).toBe("012345");
    const claims = env.claims as Record<string, unknown>;
    const iat = now.getTime() / 1000;
    expect(claims).toEqual({
      sub: "sgn-1", cred: "crd-1", aud: "urn:inkan:sam:x", txn: "txn-1",
      chal: Buffer.from(challenge).toString("base64url"), dtbsr: Buffer.from(dtbsrDigest).toString("base64url"),
      n: 3, halg: 2, desc, iat, exp: iat + 120, jti: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/) as unknown,
    });
    expectNothingOutside(jwe, ["246813", "012345", "sgn-1", "crd-1", "txn-1", claims.chal as string, claims.dtbsr as string, claims.jti as string]);
  });

  it("R-3.1.4: PIN alone is {claims, pin}; the login assertion is {claims, login}; a fresh jti each call; lifetimeSeconds sets exp", async () => {
    const k = await samKey();
    const pinOnly = await open(await buildClaimsRSad({ ...tx, samKey: k.key, factors: { pin: "246813" } }), k.privateKey);
    expect(Object.keys(pinOnly).sort()).toEqual(["claims", "pin"]);
    const undefinedOtp = await open(await buildClaimsRSad({ ...tx, samKey: k.key, factors: { pin: "246813", otp: undefined } as { pin: string } }), k.privateKey);
    expect(Object.keys(undefinedOtp).sort()).toEqual(["claims", "pin"]);
    const idToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    const jwe = await buildClaimsRSad({ ...tx, samKey: k.key, lifetimeSeconds: 60, factors: { login: idToken } });
    const login = await open(jwe, k.privateKey);
    expect(Object.keys(login).sort()).toEqual(["claims", "login"]);
    expect(login.login).toBe(idToken);
    const c = login.claims as { iat: number; exp: number; jti: string };
    expect(c.exp - c.iat).toBe(60);
    expect(c.jti).not.toBe((pinOnly.claims as { jti: string }).jti);
    expectNothingOutside(jwe, [idToken, "eyJzdWIiOiJ4In0"]);
  });

  it("refuses factor sets that form no method, non-string factors, a malformed OTP and a bad count", async () => {
    const k = await samKey();
    const bad = (factors: unknown, count = 3) => buildClaimsRSad({ ...tx, count, samKey: k.key, factors: factors as { pin: string } });
    await expect(bad({ otp: "123456" })).rejects.toThrow(/factors/);
    await expect(bad({ pin: "1", login: "x" })).rejects.toThrow(/factors/);
    await expect(bad({})).rejects.toThrow(/factors/);
    await expect(bad({ pin: 246813 })).rejects.toThrow(/strings/);
    await expect(bad({ pin: "246813", otp: "12345" })).rejects.toThrow(/otp/);
    await expect(bad({ pin: "246813", otp: "12345a" })).rejects.toThrow(/otp/);
    await expect(bad({ pin: "246813" }, 0)).rejects.toThrow(/count/);
    await expect(buildClaimsRSad({ ...tx, hashAlgorithm: 0, samKey: k.key, factors: { pin: "246813" } })).rejects.toThrow(/hashAlgorithm/);
    await expect(buildClaimsRSad({ ...tx, description: undefined as unknown as string, samKey: k.key, factors: { pin: "246813" } })).rejects.toThrow(/description/);
  });
});

describe("buildRSad (device key + PIN)", () => {
  it("R-3.2.1.2, R-3.2.1.3: the envelope is exactly {sad, pin}; the PIN appears nowhere outside the JWE", async () => {
    const k = await samKey();
    const deviceKey = await createDeviceKey();
    const jwe = await buildRSad({ ...tx, deviceKey, pin: "975310", samKey: k.key });
    const env = await open(jwe, k.privateKey);
    expect(Object.keys(env).sort()).toEqual(["pin", "sad"]);
    expectNothingOutside(jwe, ["975310", "sgn-1", "txn-1", desc]);
  });

  it("R-3.2.1.1, T-2.2.1.7: the device key signs what the signer saw: the count, hash algorithm and description digest", async () => {
    const k = await samKey();
    const deviceKey = await createDeviceKey();
    const env = await open(await buildRSad({ ...tx, deviceKey, pin: "975310", samKey: k.key }), k.privateKey);
    const { payload } = await compactVerify(env.sad as string, await importJWK(deviceKey.publicJwk, deviceKey.alg));
    const claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    expect(Object.keys(claims).sort()).toEqual(["aud", "chal", "cred", "desc", "dtbsr", "exp", "halg", "iat", "jti", "n", "sub", "txn"]);
    expect(claims).toMatchObject({ n: 3, halg: 2, desc });
  });
});

describe("the device builders stay browser-safe", () => {
  it("no file of sdk/src/device imports a node: module", () => {
    const dir = new URL(".", import.meta.url);
    for (const name of readdirSync(dir).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))) {
      expect(readFileSync(new URL(name, dir), "utf8"), name).not.toMatch(/from\s+["']node:/);
    }
  });
});
