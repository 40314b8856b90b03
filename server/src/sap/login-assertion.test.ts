import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { createLoginAssertionVerifier } from "./login-assertion.js";

const issuer = "https://op.rssp.example";
const clientId = "inkan-sam";

async function opKey(alg: "ES256" | "PS256" | "RS256" | "EdDSA") {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid: `op-${alg}`, alg } as JWK, privateJwk: await exportJWK(privateKey) };
}

describe("login assertion verifier: the configured key set (R-3.1.4)", () => {
  it("R-3.1.4: accepts public RSA, EC and OKP signing keys and verifies ID tokens of each allowed algorithm", async () => {
    const keys = await Promise.all((["ES256", "PS256", "RS256", "EdDSA"] as const).map(opKey));
    const login = await createLoginAssertionVerifier({ issuer, clientId, jwks: { keys: keys.map((k) => k.publicJwk) } });
    const now = new Date();
    const iat = Math.floor(now.getTime() / 1000);
    for (const k of keys) {
      const token = await new SignJWT({ iss: issuer, aud: clientId, sub: "customer-1", nonce: "chal", iat, exp: iat + 60 })
        .setProtectedHeader({ alg: k.publicJwk.alg!, kid: k.publicJwk.kid! })
        .sign(k.privateKey);
      await expect(login.verify(token, { externalId: "customer-1", nonce: "chal", now, maxAgeMs: 300_000, skewMs: 60_000 }), k.publicJwk.alg).resolves.toBeUndefined();
      await expect(login.verify(token, { externalId: "", nonce: "chal", now, maxAgeMs: 300_000, skewMs: 60_000 }), "a signer without an external id").rejects.toThrow(/sub/);
    }
  });

  it("R-3.1.4: refuses, at start, a key set with a private key, a symmetric key, an encryption key, an HS* or none algorithm, or no keys", async () => {
    const k = await opKey("ES256");
    const refused = async (keys: unknown[], why: RegExp) => expect(createLoginAssertionVerifier({ issuer, clientId, jwks: { keys: keys as JWK[] } })).rejects.toThrow(why);
    await refused([], /no keys/);
    await refused([{ ...k.privateJwk, kid: "p" }], /private/);
    await refused([{ kty: "oct", k: "c2VjcmV0", kid: "s" }], /private or symmetric/);
    await refused([{ ...k.publicJwk, use: "enc" }], /signing key/);
    await refused([{ ...k.publicJwk, alg: "HS256" }], /algorithm/);
    await refused([{ ...k.publicJwk, alg: "none" }], /algorithm/);
    await refused([{ ...k.publicJwk, x: "AAAA" }], /does not import/);
  });
});
