/**
 * The SAM's JWE recipient keys on a real SoftHSM2 token (R-3.2.1.2 / T-2.2.1.5, confidentiality of
 * R.SAD): JWEs made by the SDK and by plain jose decrypt in the module path; every refusal is the
 * same SAD_INVALID error; rotation and expiry; the sealed key set.
 */
import { createCipheriv, createECDH, generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encryptToSam } from "@inkan/sdk";
import { CompactEncrypt, calculateJwkThumbprint, importJWK } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Pkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import { InkanError } from "../errors.js";
import { concatKdf } from "./jwe-ecdh-es.js";
import { SamEncryptionKeys, keySetReuseMs, maxRSadBytes, maxSamKeys, sadInvalidMessage, samKeySetLabel, type PublishedSamKey } from "./sam-encryption-keys.js";

let dataDir: string;
let hsm: Pkcs11CryptoModule;
let keys: SamEncryptionKeys;
let current: PublishedSamKey;
const t0 = new Date("2026-03-01T10:00:00Z");
const day = 24 * 60 * 60 * 1000;
const opts = { maxBytes: maxRSadBytes, now: t0 };
const payload = new TextEncoder().encode(JSON.stringify({ sad: "eyJ.inner.jws", pin: "123456" }));

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-sam-keys-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
  keys = new SamEncryptionKeys({ crypto: hsm, retirementMs: 7 * day });
  await keys.ensureCurrentKey(t0);
  current = await keys.currentKey(t0);
}, 120_000);

afterAll(async () => {
  await hsm?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function refusal(p: Promise<unknown>): Promise<InkanError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof InkanError)) throw new Error(`expected an InkanError, got ${String(err)}`);
  return err;
}

/** R-3.2.1.2: every refusal looks the same from outside: code, message; the reason only in cause. */
async function expectUniformRefusal(p: Promise<unknown>, label: string): Promise<void> {
  const err = await refusal(p);
  expect(err.code, label).toBe("SAD_INVALID");
  expect(err.message, label).toBe(sadInvalidMessage);
  expect(err.cause, label).toBeDefined();
}

const b64 = (b: Uint8Array | Buffer) => Buffer.from(b).toString("base64url");

interface CraftOptions {
  header?: Record<string, unknown>;
  /** Replaces the epk coordinates (an uncompressed point) without changing the real agreement. */
  epkPoint?: Uint8Array;
  drop?: string[];
}

/**
 * A well-formed ECDH-ES+A256KW / A256GCM JWE to `key` whose protected header can be changed: the
 * header is what the AAD covers, so a JWE refused here is refused by its header, not by a bad tag.
 */
function craft(key: PublishedSamKey, plaintext: Uint8Array, o: CraftOptions = {}): string {
  const eph = createECDH("prime256v1");
  const ephPoint = eph.generateKeys();
  const recipient = Buffer.concat([Buffer.of(4), Buffer.from(key.jwk.x, "base64url"), Buffer.from(key.jwk.y, "base64url")]);
  const z = eph.computeSecret(recipient);
  const point = o.epkPoint ?? ephPoint;
  const header: Record<string, unknown> = {
    alg: "ECDH-ES+A256KW",
    enc: "A256GCM",
    kid: key.kid,
    epk: { kty: "EC", crv: "P-256", x: b64(point.subarray(1, 33)), y: b64(point.subarray(33)) },
    ...o.header,
  };
  for (const m of o.drop ?? []) delete header[m];
  const alg = typeof header.alg === "string" ? header.alg : "ECDH-ES+A256KW";
  const cek = randomBytes(32);
  const kek = concatKdf(z, alg === "ECDH-ES" ? "A256GCM" : alg, new Uint8Array(), new Uint8Array());
  const wrap = createCipheriv("id-aes256-wrap", kek, Buffer.from("a6a6a6a6a6a6a6a6", "hex"));
  const encryptedKey = Buffer.concat([wrap.update(cek), wrap.final()]);
  const protectedB64 = b64(Buffer.from(JSON.stringify(header)));
  const iv = randomBytes(12);
  const gcm = createCipheriv("aes-256-gcm", cek, iv);
  gcm.setAAD(Buffer.from(protectedB64, "ascii"));
  const ciphertext = Buffer.concat([gcm.update(plaintext), gcm.final()]);
  return [protectedB64, b64(encryptedKey), b64(iv), b64(ciphertext), b64(gcm.getAuthTag())].join(".");
}

describe("the SAM encryption key (R-3.2.1.2 / T-2.2.1.5 confidentiality of R.SAD)", () => {
  it("R-3.2.1.2: is a P-256 derive key in the module, published with its RFC 7638 kid and no private member", async () => {
    expect(await keys.ensureCurrentKey(t0)).toBe(current.kid); // idempotent
    const published = await keys.publishedKeys(t0);
    expect(published).toHaveLength(1);
    expect(current).toMatchObject({ alg: "ECDH-ES+A256KW", current: true, notAfter: undefined });
    expect(Object.keys(current.jwk).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
    expect(current.jwk.use).toBe("enc");
    expect(current.kid).toBe(await calculateJwkThumbprint(current.jwk, "sha256"));
    await importJWK(current.jwk, "ECDH-ES+A256KW");
    expect(await keys.samId()).toMatch(/^urn:inkan:sam:[A-Za-z0-9_-]{22}$/);
  });

  it("R-3.2.1.2 / T-2.2.1.5: a JWE from the SDK's encryptToSam decrypts in the module path to the same bytes", async () => {
    const jwe = await encryptToSam(current, payload);
    const header = JSON.parse(Buffer.from(jwe.split(".")[0]!, "base64url").toString()) as Record<string, unknown>;
    expect(header).toMatchObject({ alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: current.kid });
    expect(Buffer.from(await keys.decryptCompactJwe(jwe, opts))).toEqual(Buffer.from(payload));
    const objectJwe = await encryptToSam({ kid: current.kid, alg: current.alg, jwk: JSON.stringify(current.jwk) }, { pin: "9876" }, { cty: "inkan-sad-envelope+json" });
    const out = await keys.decryptCompactJwe(objectJwe, { ...opts, cty: "inkan-sad-envelope+json" });
    expect(JSON.parse(new TextDecoder().decode(out))).toEqual({ pin: "9876" });
  });

  it("R-3.2.1.2 / T-2.2.1.5: JWEs from plain jose decrypt too (ECDH-ES+A256KW, with apu/apv)", async () => {
    const pub = await importJWK(current.jwk, "ECDH-ES");
    for (const alg of ["ECDH-ES+A256KW"] as const) {
      const plain = await new CompactEncrypt(payload).setProtectedHeader({ alg, enc: "A256GCM", kid: current.kid }).encrypt(pub);
      expect(Buffer.from(await keys.decryptCompactJwe(plain, opts)), alg).toEqual(Buffer.from(payload));
      const withInfo = await new CompactEncrypt(payload)
        .setProtectedHeader({ alg, enc: "A256GCM", kid: current.kid })
        .setKeyManagementParameters({ apu: new TextEncoder().encode("device-1"), apv: new TextEncoder().encode("sam") })
        .encrypt(pub);
      expect(Buffer.from(await keys.decryptCompactJwe(withInfo, opts)), `${alg} apu/apv`).toEqual(Buffer.from(payload));
    }
  });

  it("R-3.2.1.2 / T-2.2.1.5: refuses a JWE whose alg is not its key's published one (direct ECDH-ES to an ECDH-ES+A256KW key, issue 18)", async () => {
    const pub = await importJWK(current.jwk, "ECDH-ES");
    const direct = await new CompactEncrypt(payload).setProtectedHeader({ alg: "ECDH-ES", enc: "A256GCM", kid: current.kid }).encrypt(pub);
    const err = await keys.decryptCompactJwe(direct, opts).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: "SAD_INVALID" });
  });

  it("R-3.2.1.2: the crafted-JWE helper is honest (its unchanged output decrypts)", async () => {
    expect(Buffer.from(await keys.decryptCompactJwe(craft(current, payload), opts))).toEqual(Buffer.from(payload));
  });

  it("R-3.2.1.2 / T-2.2.1.5: wrong kid, refused alg, refused enc and every refused header member give the same error", async () => {
    const cases: [string, CraftOptions][] = [
      ["unknown kid", { header: { kid: "not-a-sam-key" } }],
      ["no kid", { drop: ["kid"] }],
      ["alg none", { header: { alg: "none" } }],
      ["alg dir", { header: { alg: "dir" } }],
      ["alg RSA1_5", { header: { alg: "RSA1_5" } }],
      ["alg RSA-OAEP", { header: { alg: "RSA-OAEP" } }],
      ["alg A128KW", { header: { alg: "A128KW" } }],
      ["alg ECDH-ES+A128KW", { header: { alg: "ECDH-ES+A128KW" } }],
      ["enc A128GCM", { header: { enc: "A128GCM" } }],
      ["enc A256CBC-HS512", { header: { enc: "A256CBC-HS512" } }],
      ["zip DEF", { header: { zip: "DEF" } }],
      ["jku", { header: { jku: "https://attacker.example/jwks" } }],
      ["jwk", { header: { jwk: current.jwk } }],
      ["x5u", { header: { x5u: "https://attacker.example/cert" } }],
      ["x5c", { header: { x5c: ["MIIB"] } }],
      ["x5t", { header: { x5t: "abc" } }],
      ["x5t#S256", { header: { "x5t#S256": "abc" } }],
      ["crit", { header: { crit: ["exp"], exp: 1 } }],
      ["unknown member", { header: { typ: "JWT" } }],
      ["apu too long", { header: { apu: b64(randomBytes(200)) } }],
      ["no epk", { drop: ["epk"] }],
      ["epk with a private member", { header: { epk: { kty: "EC", crv: "P-256", x: current.jwk.x, y: current.jwk.y, d: "AAAA" } } }],
      ["epk of kty OKP", { header: { epk: { kty: "OKP", crv: "X25519", x: current.jwk.x } } }],
      ["epk short coordinate", { header: { epk: { kty: "EC", crv: "P-256", x: current.jwk.x.slice(2), y: current.jwk.y } } }],
    ];
    for (const [label, o] of cases) await expectUniformRefusal(keys.decryptCompactJwe(craft(current, payload, o), opts), label);
    await expectUniformRefusal(keys.decryptCompactJwe(craft(current, payload), { ...opts, cty: "inkan-sad-envelope+json" }), "cty missing");
  });

  it("R-3.2.1.2 / T-2.2.1.5: an epk on another curve (P-384) is refused", async () => {
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ format: "jwk" });
    await expectUniformRefusal(keys.decryptCompactJwe(craft(current, payload, { header: { epk: { kty: "EC", crv: "P-384", x: p384.x, y: p384.y } } }), opts), "crv P-384");
    await expectUniformRefusal(keys.decryptCompactJwe(craft(current, payload, { header: { epk: { kty: "EC", crv: "P-256", x: p384.x, y: p384.y } } }), opts), "P-384 point labelled P-256");
  });

  it("R-3.2.1.2 / T-2.2.1.5: an epk off the curve (every Wycheproof invalid-curve point) is refused before the module derives", async () => {
    const file = JSON.parse(readFileSync(new URL("./testdata/wycheproof-ecdh-secp256r1-invalid-curve.json", import.meta.url), "utf8")) as {
      testGroups: { tests: { tcId: number; public: string; result: string }[] }[];
    };
    const points = file.testGroups.flatMap((g) => g.tests);
    expect(points.length).toBeGreaterThanOrEqual(16);
    const derive = vi.spyOn(hsm, "deriveSharedSecret");
    try {
      for (const v of points) {
        expect(v.result).toBe("invalid");
        await expectUniformRefusal(keys.decryptCompactJwe(craft(current, payload, { epkPoint: Buffer.from(v.public, "hex") }), opts), `tcId ${v.tcId}`);
      }
      const tampered = Buffer.concat([Buffer.of(4), Buffer.from(current.jwk.x, "base64url"), Buffer.from(current.jwk.y, "base64url")]);
      tampered[64]! ^= 1;
      await expectUniformRefusal(keys.decryptCompactJwe(craft(current, payload, { epkPoint: tampered }), opts), "y flipped");
      expect(derive).not.toHaveBeenCalled();
    } finally {
      derive.mockRestore();
    }
  });

  it("R-3.2.1.2 / T-2.2.1.5: a tampered ciphertext, tag, iv, protected header or encrypted key is refused", async () => {
    const jwe = await encryptToSam(current, payload);
    const parts = jwe.split(".");
    const flip = (s: string) => {
      const b = Buffer.from(s, "base64url");
      b[b.length - 1]! ^= 0x01;
      return b.toString("base64url");
    };
    for (const [i, name] of [[0, "protected header (AAD)"], [1, "encrypted key"], [2, "iv"], [3, "ciphertext"], [4, "tag"]] as const) {
      const bad = parts.map((p, j) => (j === i ? flip(p) : p)).join(".");
      await expectUniformRefusal(keys.decryptCompactJwe(bad, opts), name);
    }
    await expectUniformRefusal(keys.decryptCompactJwe(parts.map((p, j) => (j === 4 ? b64(Buffer.from(p, "base64url").subarray(0, 12)) : p)).join("."), opts), "truncated tag");
    await expectUniformRefusal(keys.decryptCompactJwe(parts.slice(0, 4).join("."), opts), "missing tag");
    const other = await encryptToSam(current, payload);
    await expectUniformRefusal(keys.decryptCompactJwe([...parts.slice(0, 3), other.split(".")[3], parts[4]].join("."), opts), "spliced ciphertext");
    const direct = craft(current, payload).split(".");
    await expectUniformRefusal(keys.decryptCompactJwe([direct[0], "", ...direct.slice(2)].join("."), opts), "empty encrypted key for +A256KW");
  });

  it("issue 20: the SAM id is read from the module once; decryptions within keySetReuseMs share one read of the key set, later ones read it again", async () => {
    let clock = 0;
    const node = new SamEncryptionKeys({ crypto: hsm, retirementMs: 7 * day, monotonicMs: () => clock });
    const id = await node.samId(); // its first read
    const jwe = await encryptToSam(current, payload);
    const read = vi.spyOn(hsm, "readDataObject");
    try {
      expect(await node.samId()).toBe(id);
      expect(read).not.toHaveBeenCalled();
      clock = keySetReuseMs - 1;
      await node.decryptCompactJwe(jwe, opts);
      expect(read).not.toHaveBeenCalled();
      clock = keySetReuseMs;
      await Promise.all(Array.from({ length: 10 }, () => node.decryptCompactJwe(jwe, opts)));
      expect(read).toHaveBeenCalledTimes(1); // ten at once after the window: one read between them
      expect((await node.publishedKeys(t0)).map((k) => k.kid)).toEqual([current.kid]); // publication reads the module each time
      expect(read).toHaveBeenCalledTimes(2);
    } finally {
      read.mockRestore();
    }
  });

  it("R-3.2.1.2: an oversized JWE is refused before it is parsed or the module is asked", async () => {
    const jwe = await encryptToSam(current, payload);
    const read = vi.spyOn(hsm, "readDataObject");
    const derive = vi.spyOn(hsm, "deriveSharedSecret");
    const parse = vi.spyOn(JSON, "parse");
    try {
      await expectUniformRefusal(keys.decryptCompactJwe(jwe, { ...opts, maxBytes: jwe.length - 1 }), "one over");
      await expectUniformRefusal(keys.decryptCompactJwe(`${jwe.split(".")[0]}.${"A".repeat(10 * 1024 * 1024)}.x.y.z`, opts), "10 MiB");
      expect(parse).not.toHaveBeenCalled();
      expect(read).not.toHaveBeenCalled();
      expect(derive).not.toHaveBeenCalled();
    } finally {
      parse.mockRestore();
      read.mockRestore();
      derive.mockRestore();
    }
    expect(Buffer.from(await keys.decryptCompactJwe(jwe, { ...opts, maxBytes: jwe.length }))).toEqual(Buffer.from(payload));
  });
});

describe("rotation and expiry of SAM encryption keys (R-3.2.1.2 / T-2.2.1.5)", () => {
  it("R-3.2.1.2: after a rotation a JWE to the old key still decrypts until its not_after, then is refused and the key destroyed", async () => {
    const local = new SamEncryptionKeys({ crypto: hsm, retirementMs: 7 * day });
    const old = await local.currentKey(t0);
    const oldJwe = await encryptToSam(old, payload);
    const rotatedAt = new Date(t0.getTime() + day);
    const newKid = await local.rotate(rotatedAt);
    expect(newKid).not.toBe(old.kid);

    const published = await local.publishedKeys(rotatedAt);
    expect(published.map((k) => [k.kid, k.current])).toEqual([[newKid, true], [old.kid, false]]);
    expect(published[1]!.notAfter).toEqual(new Date(rotatedAt.getTime() + 7 * day));
    expect(published.filter((k) => k.current)).toHaveLength(1);

    const beforeEnd = new Date(rotatedAt.getTime() + 7 * day - 1);
    expect(Buffer.from(await local.decryptCompactJwe(oldJwe, { maxBytes: maxRSadBytes, now: beforeEnd }))).toEqual(Buffer.from(payload));
    const newJwe = await encryptToSam(published[0]!, payload);
    expect(Buffer.from(await local.decryptCompactJwe(newJwe, { maxBytes: maxRSadBytes, now: beforeEnd }))).toEqual(Buffer.from(payload));

    const atEnd = new Date(rotatedAt.getTime() + 7 * day);
    await expectUniformRefusal(local.decryptCompactJwe(oldJwe, { maxBytes: maxRSadBytes, now: atEnd }), "expired key");
    expect((await local.publishedKeys(atEnd)).map((k) => k.kid)).toEqual([newKid]);

    const oldKeyId = (JSON.parse(new TextDecoder().decode(await hsm.readDataObject(samKeySetLabel))) as { body: { keys: { kid: string; keyId: string }[] } })
      .body.keys.find((k) => k.kid === old.kid)!.keyId;
    expect(await hsm.findKey(oldKeyId)).toBeDefined();
    const destroyed: string[] = [];
    await new SamEncryptionKeys({ crypto: hsm, onKeyDestroyed: (kid) => destroyed.push(kid) }).ensureCurrentKey(atEnd);
    expect(destroyed).toEqual([old.kid]);
    expect(await hsm.findKey(oldKeyId)).toBeUndefined();
    expect(await keys.samId()).toBe(await local.samId()); // the SAM id survives rotations
    current = await keys.currentKey(atEnd);
    expect(current.kid).toBe(newKid);
  });

  it("R-3.2.1.2: refuses to hold more than the maximum number of valid keys", async () => {
    const local = new SamEncryptionKeys({ crypto: hsm, retirementMs: 30 * day });
    const at = new Date(t0.getTime() + 20 * day);
    let err: unknown;
    for (let i = 0; i < maxSamKeys + 1 && !err; i++) await local.rotate(at).catch((e: unknown) => (err = e));
    expect(err).toBeInstanceOf(InkanError);
    expect((err as InkanError).code).toBe("LIMIT_EXCEEDED");
    expect((await local.publishedKeys(at)).length).toBe(maxSamKeys);
    // Back to one key for the tests after this one: every retiring key ends, the current one stays.
    await local.ensureCurrentKey(new Date(at.getTime() + 31 * day));
    expect((await local.publishedKeys(new Date(at.getTime() + 31 * day))).length).toBe(1);
  });

  it("R-3.2.1.7: a key set changed outside the SAM fails closed with INTEGRITY_VIOLATION", async () => {
    const raw = await hsm.readDataObject(samKeySetLabel);
    const doc = JSON.parse(new TextDecoder().decode(raw)) as { body: { keys: { notAfter?: string }[] }; seal: string };
    const forged = { ...doc, body: { ...doc.body, keys: doc.body.keys.map((k): { notAfter?: string } => ({ ...k, notAfter: undefined })) } };
    forged.body.keys[0]!.notAfter = "2999-01-01T00:00:00.000Z";
    try {
      await hsm.writeDataObject(samKeySetLabel, new TextEncoder().encode(JSON.stringify(forged)));
      const fresh = new SamEncryptionKeys({ crypto: hsm });
      expect((await refusal(fresh.publishedKeys(t0))).code).toBe("INTEGRITY_VIOLATION");
      const jwe = await encryptToSam(current, payload);
      expect((await refusal(fresh.decryptCompactJwe(jwe, opts))).code).toBe("INTEGRITY_VIOLATION");
      expect((await refusal(fresh.ensureCurrentKey(t0))).code).toBe("INTEGRITY_VIOLATION");
    } finally {
      await hsm.writeDataObject(samKeySetLabel, raw!);
    }
    expect((await new SamEncryptionKeys({ crypto: hsm }).publishedKeys(t0)).length).toBeGreaterThan(0);
  });
});

describe("issue 20: the key set reused for keySetReuseMs on another node (R-3.2.1.2, R-3.2.1.7, issue 21)", () => {
  const later = new Date(t0.getTime() + 100 * day); // after every rotation of the tests above

  it("a key another node rotated in decrypts at once; the replaced one still decrypts; a challenge names the new key after the window", async () => {
    let clock = 0;
    const reader = new SamEncryptionKeys({ crypto: hsm, retirementMs: 7 * day, monotonicMs: () => clock });
    const rotator = new SamEncryptionKeys({ crypto: hsm, retirementMs: 7 * day });
    await rotator.ensureCurrentKey(later);
    const old = (await reader.audienceAndCurrentKey(later)).encryptionKey; // the reader's read
    const newKid = await rotator.rotate(later);
    const fresh = await rotator.currentKey(later);
    expect(fresh.kid).toBe(newKid);
    const read = vi.spyOn(hsm, "readDataObject");
    try {
      expect((await reader.audienceAndCurrentKey(later)).encryptionKey.kid).toBe(old.kid); // within the window: the key it read, which still decrypts
      expect(read).not.toHaveBeenCalled();
      expect(Buffer.from(await reader.decryptCompactJwe(await encryptToSam(old, payload), { ...opts, now: later }))).toEqual(Buffer.from(payload));
      expect(read).not.toHaveBeenCalled();
      expect(Buffer.from(await reader.decryptCompactJwe(await encryptToSam(fresh, payload), { ...opts, now: later }))).toEqual(Buffer.from(payload));
      expect(read).toHaveBeenCalledTimes(1); // an unknown kid: the module's newest set
      clock = keySetReuseMs;
      expect((await reader.audienceAndCurrentKey(later)).encryptionKey.kid).toBe(newKid);
      // The replaced key past its not_after: refused from a set read before the rotation as from a new one.
      const end = new Date(later.getTime() + 7 * day);
      await expectUniformRefusal(reader.decryptCompactJwe(await encryptToSam(old, payload), { ...opts, now: end }), "replaced key past not_after");
    } finally {
      read.mockRestore();
    }
    current = fresh;
  });

  it("R-3.2.1.7: a key set changed outside the SAM is never used: within the window the set read before serves, after it the change fails closed", async () => {
    let clock = 0;
    const node = new SamEncryptionKeys({ crypto: hsm, retirementMs: 7 * day, monotonicMs: () => clock });
    const jwe = await encryptToSam(current, payload);
    expect(Buffer.from(await node.decryptCompactJwe(jwe, { ...opts, now: later }))).toEqual(Buffer.from(payload));
    const raw = await hsm.readDataObject(samKeySetLabel);
    const doc = JSON.parse(new TextDecoder().decode(raw)) as { body: { keys: { notAfter?: string }[] }; seal: string };
    const forged = { ...doc, body: { ...doc.body, keys: doc.body.keys.map((k) => ({ ...k, notAfter: "2999-01-01T00:00:00.000Z" })) } };
    try {
      await hsm.writeDataObject(samKeySetLabel, new TextEncoder().encode(JSON.stringify(forged)));
      expect(Buffer.from(await node.decryptCompactJwe(jwe, { ...opts, now: later }))).toEqual(Buffer.from(payload));
      clock = keySetReuseMs;
      expect((await refusal(node.decryptCompactJwe(jwe, { ...opts, now: later }))).code).toBe("INTEGRITY_VIOLATION");
      expect((await refusal(node.audienceAndCurrentKey(later))).code).toBe("INTEGRITY_VIOLATION");
    } finally {
      await hsm.writeDataObject(samKeySetLabel, raw!);
    }
  });

  it("with a retirement period not longer than the window, nothing is reused", async () => {
    const node = new SamEncryptionKeys({ crypto: hsm, retirementMs: keySetReuseMs, monotonicMs: () => 0 });
    const jwe = await encryptToSam(current, payload);
    const read = vi.spyOn(hsm, "readDataObject");
    try {
      await node.decryptCompactJwe(jwe, { ...opts, now: later });
      await node.decryptCompactJwe(jwe, { ...opts, now: later });
      expect(read).toHaveBeenCalledTimes(2);
    } finally {
      read.mockRestore();
    }
  });
});
