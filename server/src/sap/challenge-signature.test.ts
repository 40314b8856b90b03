/**
 * The SAM's signature over a SadChallenge (challenge-signature.ts; T-2.2.1.7) with the crypto
 * module's challenge-signing key (a SoftHSM2 token): the JWS form sam.proto defines, and failing
 * closed when the module misbehaves. The SDK's check of real challenges runs in sign-hash.test.ts,
 * the SDK e2e tests and the conformance suite.
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compactVerify, decodeProtectedHeader, importJWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditSigning, FullCryptoModule } from "../crypto/port.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import { InkanError } from "../errors.js";
import { ChallengeSigner, challengePayload, sadChallengeTyp, type SignedChallengeFields } from "./challenge-signature.js";

const fields: SignedChallengeFields = {
  transactionId: "txn-1", signerId: "sgn-1", credentialId: "crd-1", audience: "urn:inkan:sam:x",
  challenge: new Uint8Array(32).fill(7), dtbsrDigest: new Uint8Array(32).fill(9), hashAlgorithm: 1, numSignatures: 3,
  description: "Invoices 2025-03", expiresAt: new Date("2030-01-01T00:00:00.123Z"),
  encryptionKey: { kid: "ek-1", alg: 1, jwk: { x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" } },
  assuranceLevel: 2, authenticationMethods: [1, 2],
};

let dataDir: string;
let hsm: FullCryptoModule;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-challenge-signature-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
}, 120_000);
afterAll(async () => {
  await hsm?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** The module's signing system keys, recording which key is used, with faults on demand. */
function moduleWith(o: { wrongSignature?: boolean; failPublicKey?: number } = {}) {
  let publicKeyFailures = o.failPublicKey ?? 0;
  const used: string[] = [];
  const module: Pick<AuditSigning, "signWithSystemKey" | "systemPublicKey"> = {
    async signWithSystemKey(key, req) {
      used.push(key);
      const signature = await hsm.signWithSystemKey(key, req);
      if (o.wrongSignature) signature[10]! ^= 0x01;
      return signature;
    },
    async systemPublicKey(key) {
      used.push(key);
      if (publicKeyFailures-- > 0) throw new InkanError("CRYPTO_MODULE_FAILURE", "token removed");
      return hsm.systemPublicKey(key);
    },
  };
  return { module, used };
}

describe("ChallengeSigner (sam.proto SadChallenge.sam_signature; T-2.2.1.7)", () => {
  it("T-2.2.1.7: an ES256 JWS by the challenge-signing key (never the audit key) over exactly the payload sam.proto lists", async () => {
    const { module, used } = moduleWith();
    const signer = new ChallengeSigner(module);
    const key = await signer.publicKey();
    expect(key.jwk).toMatchObject({ kty: "EC", crv: "P-256", kid: key.kid, alg: "ES256", use: "sig" });
    const jws = await signer.sign(fields);
    expect(decodeProtectedHeader(jws)).toEqual({ alg: "ES256", typ: sadChallengeTyp, kid: key.kid });
    const { payload } = await compactVerify(jws, await importJWK(key.jwk, "ES256"));
    expect(JSON.parse(new TextDecoder().decode(payload))).toEqual({
      txn: "txn-1", sub: "sgn-1", cred: "crd-1", aud: "urn:inkan:sam:x",
      chal: Buffer.alloc(32, 7).toString("base64url"), dtbsr: Buffer.alloc(32, 9).toString("base64url"),
      halg: 1, n: 3, desc: "MRLkBrJPuE2wzCexd92Uhfp5fRyte6I5khQ-hhopx9s", exp_ms: Date.parse("2030-01-01T00:00:00.123Z"),
      ekid: "ek-1", ealg: 1, ejkt: "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U", lvl: 2, amr: [1, 2],
    });
    expect(challengePayload(fields).ejkt).toBe(createHash("sha256").update(JSON.stringify({ crv: "P-256", kty: "EC", x: fields.encryptionKey.jwk.x, y: fields.encryptionKey.jwk.y })).digest("base64url"));
    expect(new Set(used)).toEqual(new Set(["challenge-signing"]));
  });

  it("fails closed: a signature from the module that does not verify never leaves (CRYPTO_MODULE_FAILURE)", async () => {
    const signer = new ChallengeSigner(moduleWith({ wrongSignature: true }).module);
    await expect(signer.sign(fields)).rejects.toMatchObject({ code: "CRYPTO_MODULE_FAILURE" });
  });

  it("a failed public-key read is not cached: the next call reads the module again", async () => {
    const signer = new ChallengeSigner(moduleWith({ failPublicKey: 1 }).module);
    await expect(signer.sign(fields)).rejects.toMatchObject({ code: "CRYPTO_MODULE_FAILURE" });
    await expect(signer.sign(fields)).resolves.toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect((await signer.publicKey()).kid).toBe((await new ChallengeSigner(hsm).publicKey()).kid);
  });
});
