/**
 * The module's other services on a real SoftHSM2 token in a temporary data directory: ECDH and
 * RSA-OAEP with the SAM's encryption keys, wrapped-key import, the system keys (HMAC-SHA-256,
 * AES-256-GCM, audit signing) and data objects.
 */
import {
  createCipheriv,
  createECDH,
  createHash,
  createPublicKey,
  constants,
  generateKeyPairSync,
  publicEncrypt,
  randomBytes,
  verify,
  type KeyObject,
} from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { InkanError } from "../../errors.js";
import type { GeneratedKey, KeyAlgorithm } from "../port.js";
import { acquireLibrary, pkcs11js, releaseLibrary, type Handle, type Pkcs11 } from "./library.js";
import type { Pkcs11CryptoModule } from "./pkcs11-crypto-module.js";
import { embeddedTokenPaths, initEmbeddedToken, openEmbeddedCryptoModule } from "./softhsm-token.js";

const p = pkcs11js;

let dataDir: string;
let hsm: Pkcs11CryptoModule;
let p11: Pkcs11;
let library: string;

function withRawSession<T>(fn: (s: Handle) => T): T {
  const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trimEnd() === "inkan");
  if (!slot) throw new Error("token not found");
  const s = p11.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
  try {
    return fn(s);
  } finally {
    p11.C_CloseSession(s);
  }
}

function find(s: Handle, template: { type: number; value: number | string | Buffer | boolean }[]): Handle[] {
  p11.C_FindObjectsInit(s, template);
  try {
    return p11.C_FindObjects(s, 100);
  } finally {
    p11.C_FindObjectsFinal(s);
  }
}

async function failure(promise: Promise<unknown>): Promise<InkanError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof InkanError)) throw new Error(`expected an InkanError, got ${String(err)}`);
  return err;
}

function spki(key: GeneratedKey | Uint8Array): KeyObject {
  const der = key instanceof Uint8Array ? key : key.publicKeySpki;
  return createPublicKey({ key: Buffer.from(der), format: "der", type: "spki" });
}

function uncompressedPoint(key: GeneratedKey): Buffer {
  const jwk = spki(key).export({ format: "jwk" });
  return Buffer.concat([Buffer.of(4), Buffer.from(jwk.x ?? "", "base64url"), Buffer.from(jwk.y ?? "", "base64url")]);
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-crypto-services-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
  library = embeddedTokenPaths(dataDir).library;
  p11 = acquireLibrary(library);
}, 120_000);

afterAll(async () => {
  await hsm?.close();
  if (library) releaseLibrary(library);
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("ECDH with a module-resident P-256 key (JWE ECDH-ES)", () => {
  let ecKey: GeneratedKey;
  beforeAll(async () => {
    ecKey = await hsm.generateEncryptionKeyPair("EC_P256");
  });

  it("R-3.2.1.2 Z equals node:crypto's ECDH with the same peer", async () => {
    for (let i = 0; i < 10; i++) {
      const peer = createECDH("prime256v1");
      const peerPoint = peer.generateKeys();
      const z = await hsm.deriveSharedSecret({ keyId: ecKey.keyId, peerPublicKey: peerPoint });
      expect(Buffer.from(z)).toEqual(peer.computeSecret(uncompressedPoint(ecKey)));
    }
  });

  it("the key is a sensitive, non-extractable derive-only key; the derived secret leaves no object behind", async () => {
    const info = await hsm.findKey(ecKey.keyId);
    expect(info).toMatchObject({ usage: "derive", algorithm: "EC_P256", generatedInModule: true });
    const before = withRawSession((s) => find(s, [{ type: p.CKA_CLASS, value: p.CKO_SECRET_KEY }]).length);
    const peer = createECDH("prime256v1");
    await hsm.deriveSharedSecret({ keyId: ecKey.keyId, peerPublicKey: peer.generateKeys() });
    expect(withRawSession((s) => find(s, [{ type: p.CKA_CLASS, value: p.CKO_SECRET_KEY }]).length)).toBe(before);
  });

  const vectors = (
    JSON.parse(readFileSync(new URL("../testdata/wycheproof-ecdh-secp256r1-ecpoint-subset.json", import.meta.url), "utf8")) as {
      testGroups: { tests: { tcId: number; public: string; result: string; flags: string[] }[] }[];
    }
  ).testGroups.flatMap((g) => g.tests);

  it("R-3.2.1.2 off-curve, compressed, empty and twist points (Wycheproof) are refused before the module is called", async () => {
    const derive = vi.spyOn(p11, "C_DeriveKeyAsync");
    try {
      for (const v of vectors.filter((t) => t.result !== "valid")) {
        const err = await failure(hsm.deriveSharedSecret({ keyId: ecKey.keyId, peerPublicKey: Buffer.from(v.public, "hex") }));
        expect(err.code, `tcId ${v.tcId}`).toBe("INVALID_REQUEST");
      }
      expect(derive).not.toHaveBeenCalled();
    } finally {
      derive.mockRestore();
    }
  });

  it("valid Wycheproof edge-case points are accepted and derive a 32-byte Z", async () => {
    for (const v of vectors.filter((t) => t.result === "valid")) {
      const z = await hsm.deriveSharedSecret({ keyId: ecKey.keyId, peerPublicKey: Buffer.from(v.public, "hex") });
      expect(z, `tcId ${v.tcId}`).toHaveLength(32);
    }
  });

  it("R-3.2.1.2 a foreign-curve peer (secp256k1, same length; P-384) and the point at infinity are refused", async () => {
    const derive = vi.spyOn(p11, "C_DeriveKeyAsync");
    try {
      for (const point of [createECDH("secp256k1").generateKeys(), createECDH("secp384r1").generateKeys(), Buffer.of(0), Buffer.alloc(65)]) {
        expect((await failure(hsm.deriveSharedSecret({ keyId: ecKey.keyId, peerPublicKey: point }))).code).toBe("INVALID_REQUEST");
      }
      const tampered = createECDH("prime256v1").generateKeys();
      tampered[40] = (tampered[40] ?? 0) ^ 0x04;
      expect((await failure(hsm.deriveSharedSecret({ keyId: ecKey.keyId, peerPublicKey: tampered }))).code).toBe("INVALID_REQUEST");
      expect(derive).not.toHaveBeenCalled();
    } finally {
      derive.mockRestore();
    }
  });

  it("a signing key cannot be used for key agreement", async () => {
    const signing = await hsm.generateKeyPair("EC_P256");
    const peer = createECDH("prime256v1").generateKeys();
    expect((await failure(hsm.deriveSharedSecret({ keyId: signing.keyId, peerPublicKey: peer }))).code).toBe("ALGORITHM_NOT_ALLOWED");
    expect((await failure(hsm.sign({ keyId: ecKey.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: randomBytes(32) }))).code).toBe("ALGORITHM_NOT_ALLOWED");
  });
});

describe("RSA-OAEP (SHA-1) decryption with a module-resident key (JWE RSA-OAEP)", () => {
  let rsaKey: GeneratedKey;
  beforeAll(async () => {
    rsaKey = await hsm.generateEncryptionKeyPair("RSA_2048");
  });

  it("R-3.2.1.2 decrypts what node:crypto encrypted with oaepHash sha1", async () => {
    for (const length of [1, 16, 32, 214]) {
      const cek = randomBytes(length);
      const ciphertext = publicEncrypt({ key: spki(rsaKey), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, cek);
      expect(Buffer.from(await hsm.decryptOaep({ keyId: rsaKey.keyId, ciphertext }))).toEqual(cek);
    }
  });

  it("R-3.2.1.2 a tampered, short or SHA-256 ciphertext fails with one uniform error (no padding oracle)", async () => {
    const cek = randomBytes(32);
    const ciphertext = publicEncrypt({ key: spki(rsaKey), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, cek);
    const tampered = Buffer.from(ciphertext);
    tampered[100] = (tampered[100] ?? 0) ^ 1;
    const sha256 = publicEncrypt({ key: spki(rsaKey), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek);
    const pkcs1 = publicEncrypt({ key: spki(rsaKey), padding: constants.RSA_PKCS1_PADDING }, cek);
    const errors = await Promise.all(
      [tampered, ciphertext.subarray(1), sha256, pkcs1, Buffer.alloc(256)].map((c) => failure(hsm.decryptOaep({ keyId: rsaKey.keyId, ciphertext: c }))),
    );
    for (const err of errors) {
      expect(err.code).toBe("INVALID_REQUEST");
      expect(err.message).toBe("decryption failed");
    }
  });

  it("only a decrypt key decrypts; a decrypt key does not sign", async () => {
    const signing = await hsm.generateKeyPair("RSA_2048");
    const ciphertext = publicEncrypt({ key: spki(signing), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, randomBytes(16));
    expect((await failure(hsm.decryptOaep({ keyId: signing.keyId, ciphertext }))).code).toBe("ALGORITHM_NOT_ALLOWED");
    expect((await failure(hsm.sign({ keyId: rsaKey.keyId, scheme: "RSA_PSS", hashAlgorithm: "SHA256", data: randomBytes(32) }))).code).toBe("ALGORITHM_NOT_ALLOWED");
    expect((await hsm.findKey(rsaKey.keyId))?.usage).toBe("decrypt");
  });
});

describe("import of a wrapped key (RSA-OAEP + AES key wrap with pad, T-2.1.4.x)", () => {
  let importKey: GeneratedKey;
  beforeAll(async () => {
    importKey = await hsm.generateImportKeyPair("RSA_2048");
  });

  /** What an importer does: a fresh AES-256 key under the SAM's RSA key, the PKCS#8 key under AES-KWP. */
  function wrap(privateKey: KeyObject, rsaPublic = spki(importKey)): Buffer {
    const aes = randomBytes(32);
    const head = publicEncrypt({ key: rsaPublic, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha1" }, aes);
    const kwp = createCipheriv("id-aes256-wrap-pad", aes, Buffer.from("a65959a6", "hex"));
    const body = Buffer.concat([kwp.update(privateKey.export({ type: "pkcs8", format: "der" })), kwp.final()]);
    return Buffer.concat([head, body]);
  }

  function countSigningKeys(): number {
    return withRawSession((s) => find(s, [{ type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY }, { type: p.CKA_LABEL, value: "inkan-key-sign" }]).length);
  }

  const cases: [KeyAlgorithm, () => { privateKey: KeyObject; publicKey: KeyObject }][] = [
    ["EC_P256", () => generateKeyPairSync("ec", { namedCurve: "P-256" })],
    ["EC_P384", () => generateKeyPairSync("ec", { namedCurve: "P-384" })],
    ["RSA_2048", () => generateKeyPairSync("rsa", { modulusLength: 2048 })],
  ];
  for (const [algorithm, generate] of cases) {
    it(`T-2.1.4.3 ${algorithm}: unwrapped into a sensitive, non-extractable key that signs for the stated public key`, async () => {
      const pair = generate();
      const statedSpki = pair.publicKey.export({ type: "spki", format: "der" });
      const imported = await hsm.importWrappedKey({ importKeyId: importKey.keyId, wrappedKey: wrap(pair.privateKey), algorithm, publicKeySpki: statedSpki });
      expect(Buffer.from(imported.publicKeySpki)).toEqual(statedSpki);
      const message = randomBytes(100);
      const data = createHash("sha256").update(message).digest();
      const sig = await hsm.sign({ keyId: imported.keyId, scheme: algorithm === "RSA_2048" ? "RSA_PSS" : "ECDSA", hashAlgorithm: "SHA256", data });
      const options = algorithm === "RSA_2048" ? { key: pair.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : pair.publicKey;
      expect(verify("sha256", message, options, sig)).toBe(true);
      expect(await hsm.findKey(imported.keyId)).toMatchObject({ usage: "sign", algorithm, generatedInModule: false });
      withRawSession((s) => {
        const [h] = find(s, [{ type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY }, { type: p.CKA_ID, value: Buffer.from(imported.keyId, "hex") }]);
        const attrs = p11.C_GetAttributeValue(s, h as Handle, [{ type: p.CKA_SENSITIVE }, { type: p.CKA_EXTRACTABLE }, { type: p.CKA_TOKEN }]);
        expect(attrs.map((a) => (a.value as Buffer)[0])).toEqual([1, 0, 1]);
        const secret = algorithm === "RSA_2048" ? p.CKA_PRIVATE_EXPONENT : p.CKA_VALUE;
        expect(() => p11.C_GetAttributeValue(s, h as Handle, [{ type: secret }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      });
    });
  }

  it("T-2.1.4.3 a wrapped key that does not match the stated public key: KEY_MISMATCH, nothing left in the module", async () => {
    const wrapped = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const stated = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const before = countSigningKeys();
    const err = await failure(
      hsm.importWrappedKey({
        importKeyId: importKey.keyId,
        wrappedKey: wrap(wrapped.privateKey),
        algorithm: "EC_P256",
        publicKeySpki: stated.publicKey.export({ type: "spki", format: "der" }),
      }),
    );
    expect(err.code).toBe("KEY_MISMATCH");
    expect(countSigningKeys()).toBe(before);
  });

  it("T-2.1.4.3 a stated key or algorithm of another kind is refused before unwrapping", async () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const unwrap = vi.spyOn(p11, "C_UnwrapKeyAsync");
    try {
      const req = { importKeyId: importKey.keyId, wrappedKey: wrap(ec.privateKey), publicKeySpki: ec.publicKey.export({ type: "spki", format: "der" }) };
      expect((await failure(hsm.importWrappedKey({ ...req, algorithm: "EC_P384" }))).code).toBe("KEY_MISMATCH");
      expect((await failure(hsm.importWrappedKey({ ...req, algorithm: "RSA_2048" }))).code).toBe("KEY_MISMATCH");
      expect((await failure(hsm.importWrappedKey({ ...req, publicKeySpki: Buffer.from("not der"), algorithm: "EC_P256" }))).code).toBe("INVALID_REQUEST");
      expect(unwrap).not.toHaveBeenCalled();
    } finally {
      unwrap.mockRestore();
    }
  });

  it("a tampered or foreign-wrapped blob fails as a uniform decryption error, nothing left behind", async () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const publicKeySpki = ec.publicKey.export({ type: "spki", format: "der" });
    const before = countSigningKeys();
    const good = wrap(ec.privateKey);
    const tamperedBody = Buffer.from(good);
    tamperedBody[tamperedBody.length - 3] = (tamperedBody[tamperedBody.length - 3] ?? 0) ^ 1;
    const tamperedHead = Buffer.from(good);
    tamperedHead[5] = (tamperedHead[5] ?? 0) ^ 1;
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
    for (const wrappedKey of [tamperedBody, tamperedHead, wrap(ec.privateKey, other)]) {
      const err = await failure(hsm.importWrappedKey({ importKeyId: importKey.keyId, wrappedKey, algorithm: "EC_P256", publicKeySpki }));
      expect(err.code).toBe("INVALID_REQUEST");
    }
    expect((await failure(hsm.importWrappedKey({ importKeyId: importKey.keyId, wrappedKey: good.subarray(0, 260), algorithm: "EC_P256", publicKeySpki }))).code).toBe("INVALID_REQUEST");
    expect(countSigningKeys()).toBe(before);
  });

  it("only an unwrap key unwraps", async () => {
    const decryptKey = await hsm.generateEncryptionKeyPair("RSA_2048");
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const err = await failure(
      hsm.importWrappedKey({
        importKeyId: decryptKey.keyId,
        wrappedKey: wrap(ec.privateKey, spki(decryptKey)),
        algorithm: "EC_P256",
        publicKeySpki: ec.publicKey.export({ type: "spki", format: "der" }),
      }),
    );
    expect(err.code).toBe("ALGORITHM_NOT_ALLOWED");
  });

  it("SoftHSM2 2.6.1 cannot unwrap an Ed25519 PKCS#8 key: CRYPTO_MODULE_FAILURE, nothing left behind", async () => {
    const ed = generateKeyPairSync("ed25519");
    const before = countSigningKeys();
    const err = await failure(
      hsm.importWrappedKey({ importKeyId: importKey.keyId, wrappedKey: wrap(ed.privateKey), algorithm: "ED25519", publicKeySpki: ed.publicKey.export({ type: "spki", format: "der" }) }),
    );
    expect(err.code).toBe("CRYPTO_MODULE_FAILURE");
    expect(String(err.cause)).toMatch(/CKR_FUNCTION_FAILED/); // SoftHSM2 2.6.1: no Ed25519 PKCS#8 unwrap
    expect(countSigningKeys()).toBe(before);
  });
});

describe("system keys (R-3.1.1.1, R-3.2.1.7, R-3.2.2.4)", () => {
  it("R-3.1.1.1 system keys exist once, sensitive and never extractable; ensureSystemKeys creates nothing more", async () => {
    expect(await hsm.ensureSystemKeys()).toEqual([]);
    withRawSession((s) => {
      for (const label of ["inkan-record-seal", "inkan-field-encryption", "inkan-audit-signing", "inkan-challenge-signing"]) {
        const pair = label === "inkan-audit-signing" || label === "inkan-challenge-signing";
        const found = find(s, [{ type: p.CKA_LABEL, value: label }, { type: p.CKA_CLASS, value: pair ? p.CKO_PRIVATE_KEY : p.CKO_SECRET_KEY }]);
        expect(found, label).toHaveLength(1);
        const attrs = p11.C_GetAttributeValue(s, found[0] as Handle, [{ type: p.CKA_SENSITIVE }, { type: p.CKA_EXTRACTABLE }, { type: p.CKA_TOKEN }, { type: p.CKA_NEVER_EXTRACTABLE }]);
        expect(attrs.map((a) => (a.value as Buffer)[0]), label).toEqual([1, 0, 1, 1]);
        expect(() => p11.C_GetAttributeValue(s, found[0] as Handle, [{ type: p.CKA_VALUE }]), label).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      }
    });
  });

  it("R-3.1.1.1 HMAC-SHA-256 with the record-seal key: deterministic, 32 bytes, input-sensitive, empty input allowed", async () => {
    const a = await hsm.hmacSha256("record-seal", Buffer.from("signer:42:v7"));
    expect(a).toHaveLength(32);
    expect(Buffer.from(await hsm.hmacSha256("record-seal", Buffer.from("signer:42:v7")))).toEqual(Buffer.from(a));
    expect(Buffer.from(await hsm.hmacSha256("record-seal", Buffer.from("signer:42:v8")))).not.toEqual(Buffer.from(a));
    expect(await hsm.hmacSha256("record-seal", new Uint8Array(0))).toHaveLength(32);
    const many = await Promise.all(Array.from({ length: 50 }, (_, i) => hsm.hmacSha256("record-seal", Buffer.from(`r${i % 5}`))));
    expect(new Set(many.map((m) => Buffer.from(m).toString("hex"))).size).toBe(5);
  });

  it("R-3.1.1.1 AES-256-GCM round-trips with a fresh IV each time, also for empty plaintext and AAD", async () => {
    const aad = Buffer.from("signer-0001");
    for (const plaintext of [Buffer.from("JBSWY3DPEHPK3PXP"), randomBytes(1000), Buffer.alloc(0)]) {
      const sealed = await hsm.encrypt("field-encryption", plaintext, aad);
      expect(sealed.length).toBe(12 + plaintext.length + 16);
      expect(Buffer.from(await hsm.decrypt("field-encryption", sealed, aad))).toEqual(plaintext);
      const again = await hsm.encrypt("field-encryption", plaintext, aad);
      expect(Buffer.from(again.subarray(0, 12))).not.toEqual(Buffer.from(sealed.subarray(0, 12)));
    }
    const noAad = await hsm.encrypt("field-encryption", Buffer.from("x"), new Uint8Array(0));
    expect(Buffer.from(await hsm.decrypt("field-encryption", noAad, new Uint8Array(0))).toString()).toBe("x");
  });

  it("R-3.1.1.1 AES-256-GCM refuses a flipped bit anywhere, a wrong AAD and truncation (INTEGRITY_VIOLATION)", async () => {
    const aad = Buffer.from("signer-0001");
    const sealed = Buffer.from(await hsm.encrypt("field-encryption", Buffer.from("a confidential field"), aad));
    for (const index of [0, 11, 12, 20, sealed.length - 16, sealed.length - 1]) {
      const flipped = Buffer.from(sealed);
      flipped[index] = (flipped[index] ?? 0) ^ 0x01;
      expect((await failure(hsm.decrypt("field-encryption", flipped, aad))).code, `bit flipped at ${index}`).toBe("INTEGRITY_VIOLATION");
    }
    expect((await failure(hsm.decrypt("field-encryption", sealed, Buffer.from("signer-0002")))).code).toBe("INTEGRITY_VIOLATION");
    expect((await failure(hsm.decrypt("field-encryption", sealed, new Uint8Array(0)))).code).toBe("INTEGRITY_VIOLATION");
    expect((await failure(hsm.decrypt("field-encryption", sealed.subarray(0, 27), aad))).code).toBe("INTEGRITY_VIOLATION");
    expect((await failure(hsm.decrypt("field-encryption", sealed.subarray(0, sealed.length - 1), aad))).code).toBe("INTEGRITY_VIOLATION");
  });

  it("R-3.2.2.4 the audit-signing key signs a SHA-256 checkpoint hash that node:crypto verifies", async () => {
    const checkpoint = Buffer.from(JSON.stringify({ seq: 1000, head: randomBytes(32).toString("hex") }));
    const hash = createHash("sha256").update(checkpoint).digest();
    const publicKey = spki(await hsm.systemPublicKey("audit-signing"));
    expect(publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(verify("sha256", checkpoint, publicKey, await hsm.signWithSystemKey("audit-signing", { hash }))).toBe(true);
    const raw = await hsm.signWithSystemKey("audit-signing", { hash, format: "raw" });
    expect(verify("sha256", checkpoint, { key: publicKey, dsaEncoding: "ieee-p1363" }, raw)).toBe(true);
    expect((await failure(hsm.signWithSystemKey("audit-signing", { hash: hash.subarray(1) }))).code).toBe("HASH_LENGTH_MISMATCH");
  });

  it("T-2.2.1.7 the challenge-signing key is a P-256 key of its own (never the audit key) that node:crypto verifies", async () => {
    const input = Buffer.from("header.payload");
    const hash = createHash("sha256").update(input).digest();
    const challengeSpki = await hsm.systemPublicKey("challenge-signing");
    expect(Buffer.from(challengeSpki)).not.toEqual(Buffer.from(await hsm.systemPublicKey("audit-signing"))); // one key per purpose
    const publicKey = spki(challengeSpki);
    expect(publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    const raw = await hsm.signWithSystemKey("challenge-signing", { hash, format: "raw" });
    expect(verify("sha256", input, { key: publicKey, dsaEncoding: "ieee-p1363" }, raw)).toBe(true);
    expect(verify("sha256", input, { key: spki(await hsm.systemPublicKey("audit-signing")), dsaEncoding: "ieee-p1363" }, raw)).toBe(false);
  });
});

describe("data objects (the audit high-water mark, R-3.2.2.4)", () => {
  function objectsLabelled(label: string): number {
    return withRawSession((s) => find(s, [{ type: p.CKA_CLASS, value: p.CKO_DATA }, { type: p.CKA_LABEL, value: label }]).length);
  }

  it("R-3.2.2.4 reads undefined before a write, then the last value written", async () => {
    expect(await hsm.readDataObject("audit-hwm-node1")).toBeUndefined();
    await hsm.writeDataObject("audit-hwm-node1", Buffer.from("seq=1"));
    expect(Buffer.from((await hsm.readDataObject("audit-hwm-node1")) ?? []).toString()).toBe("seq=1");
    await hsm.writeDataObject("audit-hwm-node1", Buffer.from("seq=2"));
    expect(Buffer.from((await hsm.readDataObject("audit-hwm-node1")) ?? []).toString()).toBe("seq=2");
    await hsm.writeDataObject("audit-hwm-node1", new Uint8Array(0));
    expect(await hsm.readDataObject("audit-hwm-node1")).toEqual(new Uint8Array(0));
    expect(objectsLabelled("audit-hwm-node1")).toBe(1);
  });

  it("R-3.2.2.4 concurrent writes leave exactly one object holding one of the values; labels are independent", async () => {
    await Promise.all(Array.from({ length: 20 }, (_, i) => hsm.writeDataObject("audit-hwm-node2", Buffer.from(`seq=${i}`))));
    expect(Buffer.from((await hsm.readDataObject("audit-hwm-node2")) ?? []).toString()).toBe("seq=19"); // writes of one label run in call order
    expect(objectsLabelled("audit-hwm-node2")).toBe(1);
    expect(Buffer.from((await hsm.readDataObject("audit-hwm-node1")) ?? [1]).length).toBe(0);
  });

  it("R-3.2.2.4 survives closing and reopening the module", async () => {
    await hsm.writeDataObject("audit-hwm-node3", Buffer.from("persisted"));
    const other = await openEmbeddedCryptoModule(dataDir, { poolSize: 1 });
    try {
      expect(Buffer.from((await other.readDataObject("audit-hwm-node3")) ?? []).toString()).toBe("persisted");
    } finally {
      await other.close();
    }
  });

  it("refuses an oversized value and a bad label", async () => {
    expect((await failure(hsm.writeDataObject("big", new Uint8Array(4097)))).code).toBe("INVALID_REQUEST");
    for (const label of ["", "a b", "x".repeat(65), "ü"]) {
      expect((await failure(hsm.writeDataObject(label, Buffer.from("1")))).code).toBe("INVALID_REQUEST");
      expect((await failure(hsm.readDataObject(label))).code).toBe("INVALID_REQUEST");
    }
  });
});
