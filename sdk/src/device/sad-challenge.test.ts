import { clone, create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { base64url, calculateJwkThumbprint, CompactSign, compactDecrypt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { JweAlgorithm, JwsAlgorithm, SadChallengeSchema, SamSigningKeySchema, type SadChallenge } from "../gen/inkan/sam/v1/sam_pb.js";
import { AssuranceLevel, HashAlgorithm } from "../gen/inkan/sam/v1/types_pb.js";
import { AuthenticationMethod } from "../gen/inkan/sam/v1/sam_pb.js";
import { createDeviceKey } from "./device-key.js";
import { describeAuthorization } from "./describe-authorization.js";
import { buildClaimsRSadFor, buildRSadFor } from "./r-sad.js";
import { descriptionDigest, sadChallengeTyp, SadChallengeRefused, verifySadChallenge } from "./sad-challenge.js";

/** A P-256 signing key as the SAM's challenge-signing key, with its published forms. */
async function signingKey() {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const { kty, crv, x, y } = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint({ kty: kty!, crv: crv!, x: x!, y: y! }, "sha256");
  const jwk: JWK = { kty, crv, x, y, kid, alg: "ES256", use: "sig" };
  return { privateKey, kid, jwk, published: create(SamSigningKeySchema, { kid, alg: JwsAlgorithm.ES256, jwk: JSON.stringify(jwk) }) };
}

/** The SAM's encryption key (for the R.SAD), as a SadChallenge carries it. */
async function encryptionKey() {
  const { publicKey, privateKey } = await generateKeyPair("ECDH-ES+A256KW", { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, "sha256");
  return { privateKey, kid, jwk: { ...pub, kid, alg: "ECDH-ES+A256KW", use: "enc" } };
}

/** What sam.proto says the SAM signs (SadChallenge.sam_signature), written from the spec, not from the SDK. */
async function payloadOf(c: SadChallenge): Promise<Record<string, unknown>> {
  const ejwk = JSON.parse(c.encryptionKey!.jwk) as JWK;
  return {
    txn: c.transactionId, sub: c.signerId, cred: c.credentialId, aud: c.audience,
    chal: Buffer.from(c.challenge).toString("base64url"), dtbsr: Buffer.from(c.dtbsrDigest).toString("base64url"),
    halg: c.hashAlgorithm, n: c.numSignatures,
    desc: Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(c.description))).toString("base64url"),
    exp_ms: Number(c.expiresAt!.seconds) * 1000 + Math.floor(c.expiresAt!.nanos / 1e6),
    ekid: c.encryptionKey!.kid, ealg: c.encryptionKey!.alg,
    ejkt: await calculateJwkThumbprint({ kty: ejwk.kty!, crv: ejwk.crv!, x: ejwk.x!, y: ejwk.y! }, "sha256"),
    lvl: c.assuranceLevel, amr: [...c.authenticationMethods],
  };
}

const sign = (key: CryptoKey, header: Record<string, unknown>, payload: object) =>
  new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header as { alg: string }).sign(key);

const sam = await signingKey();
const ek = await encryptionKey();

/** A SadChallenge as the SAM hands it out: every field set, signed by `key` (default the SAM's). */
async function issued(over: { hashAlgorithm?: HashAlgorithm } = {}, key = sam): Promise<SadChallenge> {
  const c = create(SadChallengeSchema, {
    transactionId: "txn-7", signerId: "sgn-7", credentialId: "crd-7", audience: "urn:inkan:sam:test",
    challenge: Uint8Array.from({ length: 32 }, (_, i) => i), dtbsrDigest: Uint8Array.from({ length: 32 }, (_, i) => 200 - i),
    hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 3, description: "Invoices 2025-03",
    expiresAt: timestampFromDate(new Date("2030-01-01T00:00:00.123Z")),
    encryptionKey: { kid: ek.kid, alg: JweAlgorithm.ECDH_ES_A256KW, jwk: JSON.stringify(ek.jwk), current: true },
    assuranceLevel: AssuranceLevel.ASSURANCE_LEVEL_2,
    authenticationMethods: [AuthenticationMethod.DEVICE_KEY_AND_PIN, AuthenticationMethod.PIN_AND_TOTP],
    ...over,
  });
  c.samSignature = await sign(key.privateKey, { alg: "ES256", typ: sadChallengeTyp, kid: key.kid }, await payloadOf(c));
  return c;
}

async function refusalOf(p: Promise<unknown>): Promise<SadChallengeRefused> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof SadChallengeRefused)) throw new Error(`expected SadChallengeRefused, got ${String(err)}`);
  return err;
}

describe("verifySadChallenge (sam.proto SadChallenge.sam_signature; T-2.2.1.7, R-3.2.1.1)", () => {
  it("T-2.2.1.7: a challenge the SAM signed verifies against the pinned key, given as GetInfo's SamSigningKey, a JWK or its JSON", async () => {
    const c = await issued();
    for (const pinned of [sam.published, sam.jwk, JSON.stringify(sam.jwk)]) await expect(verifySadChallenge(c, pinned)).resolves.toBeUndefined();
  });

  it("T-2.2.1.7: an unsigned challenge is refused (UNSIGNED)", async () => {
    const c = await issued();
    c.samSignature = "";
    expect((await refusalOf(verifySadChallenge(c, sam.published))).code).toBe("UNSIGNED");
  });

  it("T-2.2.1.7: a foreign-signed challenge is refused (NOT_SIGNED_BY_SAM): another key under its own kid, or under the SAM's kid", async () => {
    const intruder = await signingKey();
    expect((await refusalOf(verifySadChallenge(await issued({}, intruder), sam.published))).code).toBe("NOT_SIGNED_BY_SAM");
    const c = await issued({}, { ...intruder, kid: sam.kid });
    const err = await refusalOf(verifySadChallenge(c, sam.published));
    expect(err.code).toBe("NOT_SIGNED_BY_SAM");
    expect(err.message).toMatch(/does not verify with the SAM's pinned challenge-signing key/);
  });

  it("T-2.2.1.7: a relay that changes any signed field after signing is caught (FIELD_MISMATCH)", async () => {
    const other = await encryptionKey();
    const changes: [string, (c: SadChallenge) => void][] = [
      ["transactionId", (c) => (c.transactionId = "txn-8")],
      ["signerId", (c) => (c.signerId = "sgn-8")],
      ["credentialId", (c) => (c.credentialId = "crd-8")],
      ["audience", (c) => (c.audience = "urn:inkan:sam:other")],
      ["challenge", (c) => (c.challenge = new Uint8Array(32))],
      ["dtbsrDigest", (c) => (c.dtbsrDigest = new Uint8Array(32))],
      ["hashAlgorithm", (c) => (c.hashAlgorithm = HashAlgorithm.SHA512)],
      ["numSignatures", (c) => (c.numSignatures = 1)],
      ["description", (c) => (c.description = "Birthday card")],
      ["description (Unicode-decomposed)", (c) => (c.description = "Invoices 2025-03\u0301")],
      ["expiresAt", (c) => (c.expiresAt = timestampFromDate(new Date("2030-01-01T00:00:01.123Z")))],
      ["encryptionKey (the relay's own key, T-2.2.1.5)", (c) => (c.encryptionKey = { ...c.encryptionKey!, kid: other.kid, jwk: JSON.stringify(other.jwk) })],
      ["encryptionKey.jwk only", (c) => (c.encryptionKey = { ...c.encryptionKey!, jwk: JSON.stringify({ ...other.jwk, kid: ek.kid }) })],
      ["encryptionKey.alg", (c) => (c.encryptionKey = { ...c.encryptionKey!, alg: JweAlgorithm.ECDH_ES })],
      ["assuranceLevel", (c) => (c.assuranceLevel = AssuranceLevel.ASSURANCE_LEVEL_1)],
      ["authenticationMethods", (c) => (c.authenticationMethods = [AuthenticationMethod.PIN])],
      ["authenticationMethods order", (c) => c.authenticationMethods.reverse()],
    ];
    const signed = await issued();
    for (const [field, change] of changes) {
      const c = clone(SadChallengeSchema, signed);
      change(c);
      expect((await refusalOf(verifySadChallenge(c, sam.published))).code, field).toBe("FIELD_MISMATCH");
    }
    // encryption_key.current and not_after are not covered (sam.proto says so).
    const c = clone(SadChallengeSchema, signed);
    c.encryptionKey!.current = false;
    await expect(verifySadChallenge(c, sam.published)).resolves.toBeUndefined();
  });

  it("refuses a signature that is not the JWS sam.proto defines (MALFORMED)", async () => {
    const c = await issued();
    const payload = await payloadOf(c);
    const header = { alg: "ES256", typ: sadChallengeTyp, kid: sam.kid };
    const cases: [string, string][] = [
      ["not a JWS", "abc"],
      ["another typ", await sign(sam.privateKey, { ...header, typ: "JWT" }, payload)],
      ["an extra header member", await sign(sam.privateKey, { ...header, jku: "https://x" }, payload)],
      ["an extra payload member", await sign(sam.privateKey, header, { ...payload, extra: 1 })],
      ["a payload member missing", await sign(sam.privateKey, header, { ...payload, desc: undefined })],
    ];
    for (const [label, jws] of cases) {
      c.samSignature = jws;
      expect((await refusalOf(verifySadChallenge(c, sam.published))).code, label).toBe("MALFORMED");
    }
  });

  it("refuses a pinned key that is not a public P-256 signing key named by its thumbprint", async () => {
    const c = await issued();
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    await expect(verifySadChallenge(c, await exportJWK(privateKey))).rejects.toThrow(/private member/);
    await expect(verifySadChallenge(c, { ...sam.jwk, kid: "other" })).rejects.toThrow(/thumbprint/);
    await expect(verifySadChallenge(c, create(SamSigningKeySchema, { kid: "other", jwk: JSON.stringify(sam.jwk) }))).rejects.toThrow(/thumbprint/);
    await expect(verifySadChallenge(c, { ...sam.jwk, use: "enc" })).rejects.toThrow(/signatures/);
    await expect(verifySadChallenge(c, "{")).rejects.toThrow(/JSON Web Key/);
  });
});

describe("the device builds and shows only a challenge the SAM signed (T-2.2.1.7)", () => {
  it("buildRSadFor, buildClaimsRSadFor and describeAuthorization refuse an unsigned and a foreign-signed challenge", async () => {
    const deviceKey = await createDeviceKey();
    const unsigned = await issued();
    unsigned.samSignature = "";
    const foreign = await issued({}, await signingKey());
    for (const [c, code] of [[unsigned, "UNSIGNED"], [foreign, "NOT_SIGNED_BY_SAM"]] as const) {
      expect((await refusalOf(buildRSadFor(c, { deviceKey, pin: "975310", challengeSigningKey: sam.published }))).code).toBe(code);
      expect((await refusalOf(buildClaimsRSadFor(c, { factors: { pin: "975310" }, challengeSigningKey: sam.published }))).code).toBe(code);
      expect((await refusalOf(describeAuthorization(c, { challengeSigningKey: sam.published }))).code).toBe(code);
    }
  });

  it("R-3.2.1.1: from a signed challenge, the R.SAD carries exactly the description digest, hash algorithm and count the device showed", async () => {
    const c = await issued({ hashAlgorithm: HashAlgorithm.SHA384 });
    const what = await describeAuthorization(c, { challengeSigningKey: sam.published });
    expect(what).toMatchObject({ count: 3, description: "Invoices 2025-03", hashAlgorithm: "SHA-384" });
    const rSad = await buildClaimsRSadFor(c, { factors: { pin: "975310" }, challengeSigningKey: sam.jwk });
    const { plaintext } = await compactDecrypt(rSad, ek.privateKey);
    const { claims } = JSON.parse(new TextDecoder().decode(plaintext)) as { claims: Record<string, unknown> };
    expect(claims).toMatchObject({ n: 3, halg: HashAlgorithm.SHA384, desc: await descriptionDigest("Invoices 2025-03"), txn: "txn-7" });
    expect(claims.desc).toBe("MRLkBrJPuE2wzCexd92Uhfp5fRyte6I5khQ-hhopx9s"); // sam.proto's example
    expect(base64url.decode(claims.chal as string)).toEqual(c.challenge);
    expect(await buildRSadFor(c, { deviceKey: await createDeviceKey(), pin: "975310", challengeSigningKey: sam.published })).toMatch(/^[\w-]+\.[\w-]*\.[\w-]+\.[\w-]+\.[\w-]+$/);
  });
});
