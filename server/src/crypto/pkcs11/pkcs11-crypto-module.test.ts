/**
 * Signing keys on a real SoftHSM2 token in a temporary data directory: key generation, signing
 * with every algorithm (checked by node:crypto), verification in the module, input refusal before
 * the module is called, concurrency, destruction, lookup and error hygiene.
 */
import { createHash, createPublicKey, constants, randomBytes, verify, type KeyObject } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { InkanError } from "../../errors.js";
import type { GeneratedKey, HashAlgorithm, KeyAlgorithm, SignRequest } from "../port.js";
import { acquireLibrary, pkcs11js, releaseLibrary, type Handle, type Pkcs11 } from "./library.js";
import { Pkcs11CryptoModule, SYSTEM_KEY_LABELS } from "./pkcs11-crypto-module.js";
import { embeddedTokenPaths, initEmbeddedToken, openEmbeddedCryptoModule } from "./softhsm-token.js";

const p = pkcs11js;
const HASHES = { SHA256: "sha256", SHA384: "sha384", SHA512: "sha512" } as const;
const ALGORITHMS: KeyAlgorithm[] = ["EC_P256", "EC_P384", "EC_P521", "RSA_2048", "RSA_3072", "RSA_4096", "ED25519"];

let dataDir: string;
let hsm: Pkcs11CryptoModule;
let p11: Pkcs11;
let library: string;
const keys = new Map<KeyAlgorithm, GeneratedKey>();

/** A raw session of our own on the same token, to inspect objects as an attacker with the PIN could. */
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

function findById(s: Handle, cls: number, keyId: string): Handle[] {
  p11.C_FindObjectsInit(s, [
    { type: p.CKA_CLASS, value: cls },
    { type: p.CKA_ID, value: Buffer.from(keyId, "hex") },
  ]);
  try {
    return p11.C_FindObjects(s, 10);
  } finally {
    p11.C_FindObjectsFinal(s);
  }
}

function attr(s: Handle, h: Handle, type: number): Buffer {
  return p11.C_GetAttributeValue(s, h, [{ type }])[0]?.value as Buffer;
}

function ckrOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  return "no error";
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof InkanError)) throw new Error(`expected an InkanError, got ${String(err)}`);
  return err.code;
}

function spki(key: GeneratedKey): KeyObject {
  return createPublicKey({ key: Buffer.from(key.publicKeySpki), format: "der", type: "spki" });
}

function key(algorithm: KeyAlgorithm): GeneratedKey {
  const k = keys.get(algorithm);
  if (!k) throw new Error(`no ${algorithm} key`);
  return k;
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-crypto-signing-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
  library = embeddedTokenPaths(dataDir).library;
  p11 = acquireLibrary(library); // the process-wide instance the module uses, for inspection and spies
  // RSA 4096 key generation is slow: every key is generated once and shared by the tests.
  const timings: string[] = [];
  for (const algorithm of ALGORITHMS) {
    const started = performance.now();
    keys.set(algorithm, await hsm.generateKeyPair(algorithm));
    timings.push(`${algorithm} ${(performance.now() - started).toFixed(0)} ms`);
  }
  console.info(`key generation in SoftHSM2: ${timings.join(", ")}`);
}, 180_000);

afterAll(async () => {
  await hsm?.close();
  if (library) releaseLibrary(library);
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("key generation in the module (R-3.1.1.3)", () => {
  it.each(ALGORITHMS)("R-3.1.1.3 %s: a sensitive, never-extractable token key with a random 16-byte id and an SPKI", (algorithm) => {
    const k = key(algorithm);
    expect(k.keyId).toMatch(/^[0-9a-f]{32}$/);
    expect(k.algorithm).toBe(algorithm);
    expect(k.uri).toBe(`pkcs11:token=inkan;id=${k.keyId.replace(/../g, "%$&")};type=private`);
    const pub = spki(k);
    expect(pub.asymmetricKeyType).toBe(algorithm.startsWith("EC") ? "ec" : algorithm === "ED25519" ? "ed25519" : "rsa");
    if (algorithm.startsWith("RSA")) expect(pub.asymmetricKeyDetails?.modulusLength).toBe(Number(algorithm.slice(4)));
    withRawSession((s) => {
      const [priv] = findById(s, p.CKO_PRIVATE_KEY, k.keyId);
      expect(priv).toBeDefined();
      const h = priv as Handle;
      for (const [type, want] of [
        [p.CKA_TOKEN, 1],
        [p.CKA_PRIVATE, 1],
        [p.CKA_SENSITIVE, 1],
        [p.CKA_EXTRACTABLE, 0],
        [p.CKA_ALWAYS_SENSITIVE, 1],
        [p.CKA_NEVER_EXTRACTABLE, 1],
        [p.CKA_LOCAL, 1],
        [p.CKA_SIGN, 1],
        [p.CKA_DECRYPT, 0],
        [p.CKA_DERIVE, 0],
        [p.CKA_UNWRAP, 0],
        [p.CKA_MODIFIABLE, 0],
      ] as const) {
        expect(attr(s, h, type)[0], `attribute 0x${type.toString(16)}`).toBe(want);
      }
      // Reading the private value fails, whatever attribute holds it.
      const secretAttributes = algorithm.startsWith("RSA") ? [p.CKA_PRIVATE_EXPONENT, p.CKA_PRIME_1, p.CKA_PRIME_2, p.CKA_COEFFICIENT] : [p.CKA_VALUE];
      for (const type of secretAttributes) expect(ckrOf(() => attr(s, h, type))).toBe("CKR_ATTRIBUTE_SENSITIVE");
      // Neither can the key be made extractable or wrapped out of the module.
      expect(ckrOf(() => p11.C_SetAttributeValue(s, h, [{ type: p.CKA_EXTRACTABLE, value: true }]))).not.toBe("no error");
      expect(ckrOf(() => p11.C_SetAttributeValue(s, h, [{ type: p.CKA_SENSITIVE, value: false }]))).not.toBe("no error");
      const kek = p11.C_GenerateKey(s, { mechanism: p.CKM_AES_KEY_GEN }, [
        { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
        { type: p.CKA_VALUE_LEN, value: 32 },
        { type: p.CKA_TOKEN, value: false },
        { type: p.CKA_WRAP, value: true },
      ]);
      expect(ckrOf(() => p11.C_WrapKey(s, { mechanism: p.CKM_AES_KEY_WRAP_PAD }, kek, h, Buffer.alloc(8192)))).toBe("CKR_KEY_UNEXTRACTABLE");
      p11.C_DestroyObject(s, kek);
    });
  });

  it("R-3.1.1.3 key ids differ from key to key", async () => {
    const ids = new Set([...keys.values()].map((k) => k.keyId));
    expect(ids.size).toBe(keys.size);
  });

  it("refuses an unknown algorithm", async () => {
    expect(await codeOf(hsm.generateKeyPair("DSA_1024" as KeyAlgorithm))).toBe("ALGORITHM_NOT_ALLOWED");
  });
});

describe("signing over a precomputed hash, checked by node:crypto", () => {
  const message = Buffer.from("the document the signer approved");
  const hashOf = (h: keyof typeof HASHES) => createHash(HASHES[h]).update(message).digest();

  for (const algorithm of ["EC_P256", "EC_P384", "EC_P521"] as const) {
    for (const hashAlgorithm of ["SHA256", "SHA384", "SHA512"] as const) {
      it(`ECDSA ${algorithm} over ${hashAlgorithm}: DER by default and raw r||s on request`, async () => {
        const k = key(algorithm);
        const req: SignRequest = { keyId: k.keyId, scheme: "ECDSA", hashAlgorithm, data: hashOf(hashAlgorithm) };
        const der = await hsm.sign(req);
        expect(der[0]).toBe(0x30);
        expect(verify(HASHES[hashAlgorithm], message, spki(k), der)).toBe(true);
        const raw = await hsm.sign({ ...req, format: "raw" });
        expect(raw.length).toBe({ EC_P256: 64, EC_P384: 96, EC_P521: 132 }[algorithm]);
        expect(verify(HASHES[hashAlgorithm], message, { key: spki(k), dsaEncoding: "ieee-p1363" }, raw)).toBe(true);
      });
    }
  }

  for (const algorithm of ["RSA_2048", "RSA_3072", "RSA_4096"] as const) {
    for (const hashAlgorithm of ["SHA256", "SHA384", "SHA512"] as const) {
      it(`RSA PKCS#1 v1.5 and RSA-PSS ${algorithm} over ${hashAlgorithm}`, async () => {
        const k = key(algorithm);
        const data = hashOf(hashAlgorithm);
        const pkcs1 = await hsm.sign({ keyId: k.keyId, scheme: "RSA_PKCS1_V1_5", hashAlgorithm, data });
        expect(verify(HASHES[hashAlgorithm], message, spki(k), pkcs1)).toBe(true);
        const pss = await hsm.sign({ keyId: k.keyId, scheme: "RSA_PSS", hashAlgorithm, data });
        const saltLength = data.length; // salt = hash length, MGF1 with the same hash
        expect(verify(HASHES[hashAlgorithm], message, { key: spki(k), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength }, pss)).toBe(true);
        expect(verify(HASHES[hashAlgorithm], message, { key: spki(k), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: saltLength + 1 }, pss)).toBe(false);
      });
    }
  }

  it("Ed25519: pure EdDSA over the to-be-signed bytes (hash algorithm NONE)", async () => {
    const k = key("ED25519");
    const tbs = Buffer.concat([Buffer.from("3181", "hex"), randomBytes(200)]); // e.g. DER signed attributes
    const sig = await hsm.sign({ keyId: k.keyId, scheme: "ED25519", hashAlgorithm: "NONE", data: tbs });
    expect(sig.length).toBe(64);
    expect(verify(null, tbs, spki(k), sig)).toBe(true);
  });
});

describe("verification inside the module (R-3.2.1.5 verify-before-release)", () => {
  const hash = createHash("sha256").update("verify me").digest();

  it.each(["EC_P256", "EC_P521", "RSA_2048", "ED25519"] as const)("R-3.2.1.5 %s: accepts its own signature, refuses an altered one", async (algorithm) => {
    const k = key(algorithm);
    const scheme = algorithm.startsWith("EC") ? "ECDSA" : algorithm === "ED25519" ? "ED25519" : "RSA_PSS";
    const hashAlgorithm: HashAlgorithm = scheme === "ED25519" ? "NONE" : "SHA256";
    const req: SignRequest = { keyId: k.keyId, scheme, hashAlgorithm, data: hash };
    const sig = await hsm.sign(req);
    expect(await hsm.verify({ ...req, signature: sig })).toBe(true);
    const altered = Buffer.from(sig);
    altered[altered.length - 2] = (altered[altered.length - 2] ?? 0) ^ 0x01;
    expect(await hsm.verify({ ...req, signature: altered })).toBe(false);
    const otherHash = Buffer.from(hash);
    otherHash[0] = (otherHash[0] ?? 0) ^ 0x80;
    expect(await hsm.verify({ ...req, data: otherHash, signature: sig })).toBe(false);
    expect(await hsm.verify({ ...req, signature: sig.subarray(0, sig.length - 1) })).toBe(false);
    expect(await hsm.verify({ ...req, signature: new Uint8Array(0) })).toBe(false);
  });

  it("R-3.2.1.5 ECDSA raw signatures verify with format raw; malformed DER is simply invalid", async () => {
    const k = key("EC_P384");
    const req: SignRequest = { keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: hash, format: "raw" };
    const raw = await hsm.sign(req);
    expect(await hsm.verify({ ...req, signature: raw })).toBe(true);
    expect(await hsm.verify({ ...req, format: "der", signature: raw })).toBe(false);
    expect(await hsm.verify({ ...req, format: "der", signature: Buffer.from("3006020101020101ff", "hex") })).toBe(false);
  });
});

describe("input refused before the module is called", () => {
  it("T-2.2.1.6 a hash whose length does not match its algorithm: HASH_LENGTH_MISMATCH, no module call", async () => {
    const spies = ["C_SignInit", "C_SignAsync", "C_FindObjectsInit", "C_VerifyInit"].map((m) => vi.spyOn(p11, m as "C_SignInit"));
    try {
      const cases: [KeyAlgorithm, SignRequest["scheme"], HashAlgorithm, number][] = [
        ["EC_P256", "ECDSA", "SHA256", 31],
        ["EC_P256", "ECDSA", "SHA256", 48],
        ["EC_P384", "ECDSA", "SHA384", 32],
        ["RSA_2048", "RSA_PKCS1_V1_5", "SHA512", 32],
        ["RSA_2048", "RSA_PSS", "SHA256", 0],
        ["RSA_2048", "RSA_PSS", "SHA384", 64],
      ];
      for (const [algorithm, scheme, hashAlgorithm, length] of cases) {
        const req = { keyId: key(algorithm).keyId, scheme, hashAlgorithm, data: randomBytes(length) };
        expect(await codeOf(hsm.sign(req))).toBe("HASH_LENGTH_MISMATCH");
        expect(await codeOf(hsm.verify({ ...req, signature: randomBytes(64) }))).toBe("HASH_LENGTH_MISMATCH");
      }
      // Checked before the key is even looked up: an unknown key id gives the same answer.
      expect(await codeOf(hsm.sign({ keyId: "00".repeat(16), scheme: "ECDSA", hashAlgorithm: "SHA256", data: randomBytes(20) }))).toBe("HASH_LENGTH_MISMATCH");
      for (const spy of spies) expect(spy, spy.getMockName()).not.toHaveBeenCalled();
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  it("an algorithm that does not fit the scheme or the key: ALGORITHM_NOT_ALLOWED, no signing call", async () => {
    const signInit = vi.spyOn(p11, "C_SignInit");
    try {
      const h32 = randomBytes(32);
      const refused: SignRequest[] = [
        { keyId: key("RSA_2048").keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: h32 },
        { keyId: key("EC_P256").keyId, scheme: "RSA_PSS", hashAlgorithm: "SHA256", data: h32 },
        { keyId: key("EC_P256").keyId, scheme: "ED25519", hashAlgorithm: "NONE", data: h32 },
        { keyId: key("ED25519").keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: h32 },
        { keyId: key("ED25519").keyId, scheme: "ED25519", hashAlgorithm: "SHA256", data: h32 },
        { keyId: key("EC_P256").keyId, scheme: "ECDSA", hashAlgorithm: "NONE", data: h32 },
        { keyId: key("EC_P256").keyId, scheme: "ECDSA", hashAlgorithm: "MD5" as HashAlgorithm, data: randomBytes(16) },
        { keyId: key("EC_P256").keyId, scheme: "DSA" as SignRequest["scheme"], hashAlgorithm: "SHA256", data: h32 },
      ];
      for (const req of refused) expect(await codeOf(hsm.sign(req)), JSON.stringify({ ...req, data: undefined })).toBe("ALGORITHM_NOT_ALLOWED");
      expect(signInit).not.toHaveBeenCalled();
    } finally {
      signInit.mockRestore();
    }
  });

  it("an unknown or malformed key id: CREDENTIAL_NOT_FOUND", async () => {
    for (const keyId of ["00".repeat(16), "zz", "", "A".repeat(32)]) {
      expect(await codeOf(hsm.sign({ keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: randomBytes(32) }))).toBe("CREDENTIAL_NOT_FOUND");
      expect(await hsm.findKey(keyId)).toBeUndefined();
      expect(await hsm.findPublicKey(keyId)).toBeUndefined();
    }
  });

  it("a system key is not addressable by its key id", async () => {
    for (const systemKey of ["audit-signing", "challenge-signing"] as const) {
      const auditId = withRawSession((s) => {
        p11.C_FindObjectsInit(s, [
          { type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY },
          { type: p.CKA_LABEL, value: SYSTEM_KEY_LABELS[systemKey] },
        ]);
        const [h] = p11.C_FindObjects(s, 2);
        p11.C_FindObjectsFinal(s);
        return attr(s, h as Handle, p.CKA_ID).toString("hex");
      });
      expect(await codeOf(hsm.sign({ keyId: auditId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: randomBytes(32) })), systemKey).toBe("CREDENTIAL_NOT_FOUND");
      expect(await hsm.findKey(auditId), systemKey).toBeUndefined();
      expect(await codeOf(hsm.destroyKeyPair(auditId)), systemKey).toBe("CREDENTIAL_NOT_FOUND");
    }
  });
});

describe("concurrency over the session pool", () => {
  it("200 signatures in parallel over 4 sessions, over several keys, are all correct", async () => {
    const jobs = Array.from({ length: 200 }, (_, i) => {
      const algorithm = (["EC_P256", "EC_P384", "ED25519", "RSA_2048"] as const)[i % 4] as KeyAlgorithm;
      const message = randomBytes(64);
      return { algorithm, message, i };
    });
    const started = performance.now();
    const results = await Promise.all(
      jobs.map(({ algorithm, message }) => {
        const k = key(algorithm);
        if (algorithm === "ED25519") return hsm.sign({ keyId: k.keyId, scheme: "ED25519", hashAlgorithm: "NONE", data: message });
        const data = createHash("sha256").update(message).digest();
        return hsm.sign({ keyId: k.keyId, scheme: algorithm === "RSA_2048" ? "RSA_PKCS1_V1_5" : "ECDSA", hashAlgorithm: "SHA256", data });
      }),
    );
    const elapsed = performance.now() - started;
    jobs.forEach(({ algorithm, message }, i) => {
      const sig = results[i] as Uint8Array;
      expect(verify(algorithm === "ED25519" ? null : "sha256", message, spki(key(algorithm)), sig), `job ${i}`).toBe(true);
    });
    console.info(`200 mixed signatures in parallel: ${elapsed.toFixed(0)} ms`);
  });

  it("closing a second module on the same token leaves the first one logged in (no C_Logout of a shared login)", async () => {
    const k = key("EC_P256");
    const second = await openEmbeddedCryptoModule(dataDir);
    await second.close();
    const data = randomBytes(32);
    const signature = await hsm.sign({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data });
    expect(await hsm.verify({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data, signature })).toBe(true);
  });

  it("1000 P-256 signatures in parallel: all verify; throughput printed", async () => {
    const k = key("EC_P256");
    const hashes = Array.from({ length: 1000 }, () => randomBytes(32));
    const started = performance.now();
    const sigs = await Promise.all(hashes.map((data) => hsm.sign({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data, format: "raw" })));
    const elapsed = performance.now() - started;
    const verified = await Promise.all(hashes.map((data, i) => hsm.verify({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data, format: "raw", signature: sigs[i] as Uint8Array })));
    expect(verified.every(Boolean)).toBe(true);
    console.info(`1000 ECDSA P-256 signatures: ${elapsed.toFixed(0)} ms (${((1000 / elapsed) * 1000).toFixed(0)}/s)`);
  });

  it("the event loop keeps running while slow RSA-4096 signatures are in flight", async () => {
    const k = key("RSA_4096");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const started = performance.now();
    try {
      await Promise.all(
        Array.from({ length: 40 }, () => hsm.sign({ keyId: k.keyId, scheme: "RSA_PSS", hashAlgorithm: "SHA256", data: randomBytes(32) })),
      );
    } finally {
      clearInterval(timer);
    }
    const elapsed = performance.now() - started;
    // Synchronous signing would starve the timer; on the thread pool it ticks throughout.
    expect(ticks).toBeGreaterThanOrEqual(Math.min(3, Math.floor(elapsed / 5 / 4)));
    console.info(`40 RSA-4096 PSS signatures: ${elapsed.toFixed(0)} ms, timer ticked ${ticks} times`);
  });

  it("a module failure in one session becomes CRYPTO_MODULE_FAILURE (CKR only in the cause); the pool recovers", async () => {
    const k = key("EC_P256");
    const injected = new pkcs11js.Pkcs11Error("CKR_DEVICE_ERROR:48", 48, "C_Sign");
    // Issue 20: the operation runs on a worker thread; the fault is injected where its answer arrives.
    const spy = vi.spyOn(hsm.cryptoWorkers, "run").mockRejectedValueOnce(injected);
    try {
      const err = await hsm.sign({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: randomBytes(32) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InkanError);
      expect((err as InkanError).code).toBe("CRYPTO_MODULE_FAILURE");
      expect((err as Error).message).not.toMatch(/CKR_/);
      expect((err as Error).cause).toBe(injected);
    } finally {
      spy.mockRestore();
    }
    // The failed session was replaced; signing goes on.
    const sigs = await Promise.all(Array.from({ length: 20 }, () => hsm.sign({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: randomBytes(32) })));
    expect(sigs).toHaveLength(20);
  });
});

describe("destruction and lookup", () => {
  it("findKey reports algorithm, usage, URI, SPKI and that the key was generated in the module (R-3.1.1.3)", async () => {
    const k = key("EC_P256");
    const info = await hsm.findKey(k.keyId);
    expect(info).toMatchObject({ keyId: k.keyId, uri: k.uri, algorithm: "EC_P256", usage: "sign", generatedInModule: true });
    expect(Buffer.from(info?.publicKeySpki ?? [])).toEqual(Buffer.from(k.publicKeySpki));
    expect(Buffer.from((await hsm.findPublicKey(k.keyId)) ?? [])).toEqual(Buffer.from(k.publicKeySpki));
  });

  it("destroyKeyPair removes both halves: the key is unfindable and cannot sign", async () => {
    const k = await hsm.generateKeyPair("EC_P256");
    const data = randomBytes(32);
    await hsm.sign({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data });
    await hsm.destroyKeyPair(k.keyId);
    expect(await hsm.findKey(k.keyId)).toBeUndefined();
    expect(await hsm.findPublicKey(k.keyId)).toBeUndefined();
    expect(await codeOf(hsm.sign({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data }))).toBe("CREDENTIAL_NOT_FOUND");
    expect(await codeOf(hsm.destroyKeyPair(k.keyId))).toBe("CREDENTIAL_NOT_FOUND");
    withRawSession((s) => {
      expect(findById(s, p.CKO_PRIVATE_KEY, k.keyId)).toHaveLength(0);
      expect(findById(s, p.CKO_PUBLIC_KEY, k.keyId)).toHaveLength(0);
    });
  });

  it("a key destroyed through another module instance is not used from a stale cache", async () => {
    const other = await openEmbeddedCryptoModule(dataDir, { poolSize: 1 });
    try {
      const k = await hsm.generateKeyPair("EC_P256");
      const data = randomBytes(32);
      await hsm.sign({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data }); // cached in hsm
      await other.destroyKeyPair(k.keyId);
      expect(await codeOf(hsm.sign({ keyId: k.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data }))).toBe("CREDENTIAL_NOT_FOUND");
    } finally {
      await other.close();
    }
  });
});

describe("random bytes from the module (R-3.2.2.2)", () => {
  it("R-3.2.2.2 returns the requested length, different every time", async () => {
    const a = await hsm.randomBytes(32);
    const b = await hsm.randomBytes(32);
    expect(a).toHaveLength(32);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(await hsm.randomBytes(5)).toHaveLength(5);
    expect(await codeOf(hsm.randomBytes(-1))).toBe("INVALID_REQUEST");
  });
});

describe("PIN handling", () => {
  it("a wrong PIN fails as CRYPTO_MODULE_FAILURE and the PIN appears in no message", async () => {
    const paths = embeddedTokenPaths(dataDir);
    const pin = "wrong-pin-do-not-log-4711";
    process.env["INKAN_TEST_WRONG_PIN"] = pin;
    // The login is per process and token: while hsm's sessions are open, C_Login answers
    // CKR_USER_ALREADY_LOGGED_IN before looking at any PIN. A wrong PIN shows when nothing else is logged in.
    await hsm.close();
    try {
      const err = await Pkcs11CryptoModule.open({ library: paths.library, token: "pkcs11:token=inkan", pin: { env: "INKAN_TEST_WRONG_PIN" } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InkanError);
      expect((err as InkanError).code).toBe("CRYPTO_MODULE_FAILURE");
      const everything = `${String(err)} ${(err as Error).stack ?? ""} ${String((err as Error).cause)} ${JSON.stringify(err)}`;
      expect(everything).not.toContain(pin);
      expect(String((err as Error).cause)).toContain("CKR_PIN_INCORRECT");
    } finally {
      delete process.env["INKAN_TEST_WRONG_PIN"];
      hsm = await openEmbeddedCryptoModule(dataDir);
    }
  });

  it("the PIN comes from a file, an environment variable or the URI's pin-source, and a PIN in the URI is refused", async () => {
    const paths = embeddedTokenPaths(dataDir);
    const { readFile } = await import("node:fs/promises");
    const pin = (await readFile(paths.userPinFile, "utf8")).trim();
    process.env["INKAN_TEST_PIN"] = pin;
    try {
      for (const options of [
        { token: "pkcs11:token=inkan", pin: { env: "INKAN_TEST_PIN" } },
        { token: "pkcs11:token=inkan", pin: { file: paths.userPinFile } },
        { token: paths.tokenUri },
      ]) {
        const m = await Pkcs11CryptoModule.open({ library: paths.library, poolSize: 1, ...options });
        expect(m.tokenLabel).toBe("inkan");
        await m.close();
      }
    } finally {
      delete process.env["INKAN_TEST_PIN"];
    }
    const err = await Pkcs11CryptoModule.open({ library: paths.library, token: `pkcs11:token=inkan?pin-value=${pin}` }).catch((e: unknown) => e);
    expect((err as InkanError).code).toBe("INVALID_REQUEST");
    expect(String(err)).not.toContain(pin);
    expect(await codeOf(Pkcs11CryptoModule.open({ library: paths.library, token: "pkcs11:token=inkan" }))).toBe("INVALID_REQUEST");
    expect(await codeOf(Pkcs11CryptoModule.open({ library: paths.library, token: "pkcs11:token=nope", pin: { file: paths.userPinFile } }))).toBe("CRYPTO_MODULE_FAILURE");
  });
});
