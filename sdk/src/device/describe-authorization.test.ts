import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { calculateJwkThumbprint, CompactSign, exportJWK, generateKeyPair } from "jose";
import { describe, expect, it } from "vitest";
import { JweAlgorithm, SadChallengeSchema, SamEncryptionKeySchema } from "../gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "../gen/inkan/sam/v1/types_pb.js";
import { describeAuthorization } from "./describe-authorization.js";
import { descriptionDigest, sadChallengeTyp } from "./sad-challenge.js";

const hex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"));
// The example of sam.proto (SadChallenge.dtbsr_digest): SHA-256("") and SHA-256("abc").
const hashes = [hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")];
const challenge = create(SadChallengeSchema, {
  transactionId: "txn-1", signerId: "sig-1", credentialId: "cred-1", audience: "https://sam.example/",
  dtbsrDigest: hex("b66e39f17e49ce653aed80495c0645f35099576a32c25bf99a167b751bcede40"), hashAlgorithm: HashAlgorithm.SHA256,
  numSignatures: 2, description: "Invoices 2026-11", expiresAt: timestampFromDate(new Date("2026-11-25T12:00:00Z")),
});

// The SAM's signature over the challenge (sam.proto SadChallenge.sam_signature; sad-challenge.test.ts tests the check itself).
const sam = await generateKeyPair("ES256", { extractable: true });
const { kty, crv, x, y } = await exportJWK(sam.publicKey);
const challengeSigningKey = { kty, crv, x, y };
const enc = { kty: "EC", crv: "P-256", x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" };
challenge.encryptionKey = create(SamEncryptionKeySchema, { kid: "k1", alg: JweAlgorithm.ECDH_ES_A256KW, jwk: JSON.stringify(enc), current: true });
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64url");
challenge.samSignature = await new CompactSign(new TextEncoder().encode(JSON.stringify({
  txn: challenge.transactionId, sub: challenge.signerId, cred: challenge.credentialId, aud: challenge.audience, chal: b64(challenge.challenge),
  dtbsr: b64(challenge.dtbsrDigest), halg: 1, n: 2, desc: await descriptionDigest(challenge.description), exp_ms: Date.parse("2026-11-25T12:00:00Z"),
  ekid: "k1", ealg: 1, ejkt: await calculateJwkThumbprint(enc, "sha256"), lvl: 0, amr: [],
}))).setProtectedHeader({ alg: "ES256", typ: sadChallengeTyp, kid: await calculateJwkThumbprint(challengeSigningKey, "sha256") }).sign(sam.privateKey);

describe("describeAuthorization (R-3.2.1.4: the signer sees what the R.SAD binds)", () => {
  it("shows count, hash algorithm, description and the digest as the dtbsr claim carries it", async () => {
    const what = await describeAuthorization(challenge, { challengeSigningKey });
    expect(what).toMatchObject({
      count: 2, description: "Invoices 2026-11", hashAlgorithm: "SHA-256", digest: "tm458X5JzmU67YBJXAZF81CZV2oywlv5mhZ7dRvO3kA", signerId: "sig-1", credentialId: "cred-1",
      expiresAt: new Date("2026-11-25T12:00:00Z"), matchesHashes: undefined,
    });
    expect(what.digestFingerprint.startsWith("b66e 39f1 7e49")).toBe(true);
    expect(what.text).toBe('Sign 2 documents: "Invoices 2026-11" (SHA-256, DTBS/R b66e 39f1 7e49 ce65 …)');
  });

  it("R-3.2.1.4: checks the device's own list against the digest: equal, reordered, shortened", async () => {
    expect((await describeAuthorization(challenge, { challengeSigningKey, hashes })).matchesHashes).toBe(true);
    expect((await describeAuthorization(challenge, { challengeSigningKey, hashes: [...hashes].reverse() })).matchesHashes).toBe(false);
    expect((await describeAuthorization(challenge, { challengeSigningKey, hashes: hashes.slice(0, 1) })).matchesHashes).toBe(false);
  });

  it("T-2.2.1.7: a description the SAM did not sign is never shown", async () => {
    const altered = create(SadChallengeSchema, { ...challenge, description: "Invoices 2026-12" });
    await expect(describeAuthorization(altered, { challengeSigningKey })).rejects.toThrow(/FIELD_MISMATCH/);
  });
});
