/**
 * The embedded SoftHSM2 token: `initEmbeddedToken` on a clean data directory, a second call that
 * keeps everything (idempotent), completion of half-done states, and the states it refuses.
 */
import { createHash, createPublicKey, randomBytes, verify } from "node:crypto";
import { mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { InkanError } from "../../errors.js";
import { acquireLibrary, pkcs11js, releaseLibrary } from "./library.js";
import type { Pkcs11CryptoModule } from "./pkcs11-crypto-module.js";
import { embeddedTokenPaths, initEmbeddedToken, openEmbeddedCryptoModule, type InitEmbeddedTokenResult } from "./softhsm-token.js";

const p = pkcs11js;
const temporaryDirs: string[] = [];
const openModules: Pkcs11CryptoModule[] = [];

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "inkan-softhsm-"));
  temporaryDirs.push(dir);
  return dir;
}

async function open(dataDir: string): Promise<Pkcs11CryptoModule> {
  const m = await openEmbeddedCryptoModule(dataDir);
  openModules.push(m);
  return m;
}

async function closeAll(): Promise<void> {
  for (const m of openModules.splice(0)) await m.close();
}

async function failure(promise: Promise<unknown>): Promise<InkanError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof InkanError)) throw new Error(`expected an InkanError, got ${String(err)}`);
  return err;
}

const mode = async (path: string) => (await stat(path)).mode & 0o777;

afterEach(closeAll);
afterAll(async () => {
  await closeAll();
  for (const dir of temporaryDirs) await rm(dir, { recursive: true, force: true });
});

describe("initEmbeddedToken on a clean data directory", () => {
  let dataDir: string;
  let first: InitEmbeddedTokenResult;
  beforeAll(async () => {
    dataDir = await freshDir();
    first = await initEmbeddedToken(dataDir);
  });

  it("creates the token, its PIN files (0600, directory 0700) and the four system keys", async () => {
    expect(first.tokenCreated).toBe(true);
    expect([...first.systemKeysCreated].sort()).toEqual(["audit-signing", "challenge-signing", "field-encryption", "record-seal"]);
    expect(first.tokenLabel).toBe("inkan");
    expect(first.userPinFile).toBe(join(dataDir, "hsm", "user-pin"));
    expect(await mode(join(dataDir, "hsm"))).toBe(0o700);
    expect(await mode(join(dataDir, "tokens"))).toBe(0o700);
    expect(await mode(first.userPinFile)).toBe(0o600);
    expect(await mode(first.soPinFile)).toBe(0o600);
    const userPin = (await readFile(first.userPinFile, "utf8")).trim();
    const soPin = (await readFile(first.soPinFile, "utf8")).trim();
    expect(userPin).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(soPin).not.toBe(userPin);
    expect(await readFile(join(dataDir, "hsm", "README"), "utf8")).toMatch(/DEVELOPMENT ONLY/);
  });

  it("writes softhsm2.conf (token directory in the data directory, file backend, ERROR logging) and points SOFTHSM2_CONF at it", async () => {
    const conf = await readFile(first.confPath, "utf8");
    expect(conf).toContain(`directories.tokendir = ${join(dataDir, "tokens")}`);
    expect(conf).toMatch(/^objectstore\.backend = file$/m);
    expect(conf).toMatch(/^log\.level = ERROR$/m);
    expect(process.env["SOFTHSM2_CONF"]).toBe(first.confPath);
  });

  it("names the token by an RFC 7512 URI that carries the PIN file, never the PIN", async () => {
    const userPin = (await readFile(first.userPinFile, "utf8")).trim();
    expect(first.tokenUri).toBe(`pkcs11:token=inkan?module-path=${first.library}&pin-source=${first.userPinFile}`);
    expect(first.tokenUri).not.toContain(userPin);
  });

  it("R-3.1.1.3 a second call is idempotent: same token, same PINs, keys kept, nothing created", async () => {
    const before = await open(dataDir);
    const credential = await before.generateKeyPair("EC_P256");
    const auditKey = await before.systemPublicKey("audit-signing");
    const sealed = await before.encrypt("field-encryption", Buffer.from("totp-secret"), Buffer.from("signer-1"));
    const seal = await before.hmacSha256("record-seal", Buffer.from("record"));
    await before.writeDataObject("audit-hwm", Buffer.from("42"));
    const pins = [await readFile(first.userPinFile, "utf8"), await readFile(first.soPinFile, "utf8")];
    await closeAll();

    const second = await initEmbeddedToken(dataDir);
    expect(second.tokenCreated).toBe(false);
    expect(second.systemKeysCreated).toEqual([]);
    expect([await readFile(first.userPinFile, "utf8"), await readFile(first.soPinFile, "utf8")]).toEqual(pins);

    const after = await open(dataDir);
    expect(Buffer.from((await after.findPublicKey(credential.keyId)) ?? [])).toEqual(Buffer.from(credential.publicKeySpki));
    const message = randomBytes(50);
    const sig = await after.sign({ keyId: credential.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: createHash("sha256").update(message).digest() });
    expect(verify("sha256", message, createPublicKey({ key: Buffer.from(credential.publicKeySpki), format: "der", type: "spki" }), sig)).toBe(true);
    expect(Buffer.from(await after.systemPublicKey("audit-signing"))).toEqual(Buffer.from(auditKey));
    expect(Buffer.from(await after.decrypt("field-encryption", sealed, Buffer.from("signer-1"))).toString()).toBe("totp-secret");
    expect(Buffer.from(await after.hmacSha256("record-seal", Buffer.from("record")))).toEqual(Buffer.from(seal));
    expect(Buffer.from((await after.readDataObject("audit-hwm")) ?? []).toString()).toBe("42");
  });

  it("recreates only a system key that went missing, and keeps the others", async () => {
    const m = await open(dataDir);
    const auditKey = await m.systemPublicKey("audit-signing");
    const seal = await m.hmacSha256("record-seal", Buffer.from("record"));
    await closeAll();
    // Remove the field-encryption key behind the SAM's back.
    const p11 = acquireLibrary(embeddedTokenPaths(dataDir).library);
    try {
      const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trimEnd() === "inkan");
      const s = p11.C_OpenSession(slot as Buffer, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
      p11.C_Login(s, p.CKU_USER, (await readFile(first.userPinFile, "utf8")).trim());
      p11.C_FindObjectsInit(s, [{ type: p.CKA_LABEL, value: "inkan-field-encryption" }]);
      const [h] = p11.C_FindObjects(s, 2);
      p11.C_FindObjectsFinal(s);
      p11.C_DestroyObject(s, h as Buffer);
      p11.C_Logout(s);
      p11.C_CloseSession(s);
    } finally {
      releaseLibrary(embeddedTokenPaths(dataDir).library);
    }
    const again = await initEmbeddedToken(dataDir);
    expect(again.systemKeysCreated).toEqual(["field-encryption"]);
    const reopened = await open(dataDir);
    expect(Buffer.from(await reopened.systemPublicKey("audit-signing"))).toEqual(Buffer.from(auditKey));
    expect(Buffer.from(await reopened.hmacSha256("record-seal", Buffer.from("record")))).toEqual(Buffer.from(seal));
    const sealed = await reopened.encrypt("field-encryption", Buffer.from("x"), new Uint8Array(0));
    expect(Buffer.from(await reopened.decrypt("field-encryption", sealed, new Uint8Array(0))).toString()).toBe("x");
  });

  it("refuses, and changes nothing, when the token exists but its PIN files are gone", async () => {
    const aside = join(dataDir, "pins-aside");
    await rename(join(dataDir, "hsm"), aside);
    try {
      const err = await failure(initEmbeddedToken(dataDir));
      expect(err.code).toBe("CRYPTO_MODULE_FAILURE");
      expect(err.message).toMatch(/PIN files are missing; refusing/);
    } finally {
      await rm(join(dataDir, "hsm"), { recursive: true, force: true });
      await rename(aside, join(dataDir, "hsm"));
    }
    expect((await initEmbeddedToken(dataDir)).tokenCreated).toBe(false);
  });

  it("refuses when only one PIN file exists", async () => {
    const aside = `${first.soPinFile}.aside`;
    await rename(first.soPinFile, aside);
    try {
      expect((await failure(initEmbeddedToken(dataDir))).message).toMatch(/only one of/);
    } finally {
      await rename(aside, first.soPinFile);
    }
  });

  it("refuses a softhsm2.conf that points to another token directory", async () => {
    const original = await readFile(first.confPath, "utf8");
    await writeFile(first.confPath, original.replace(/^directories\.tokendir = .*$/m, "directories.tokendir = /somewhere/else"));
    try {
      expect((await failure(initEmbeddedToken(dataDir))).message).toMatch(/points to another token directory/);
    } finally {
      await writeFile(first.confPath, original);
    }
  });

  it("refuses a second data directory while this one's token is open in the process", async () => {
    await open(dataDir);
    const other = await freshDir();
    expect((await failure(initEmbeddedToken(other))).message).toMatch(/one process serves one data directory/);
  });

  it("a wrong PIN in the PIN file fails without the PIN in any message", async () => {
    const good = await readFile(first.userPinFile, "utf8");
    const wrong = "not-the-pin-0123456789abcdefghij";
    await writeFile(first.userPinFile, `${wrong}\n`);
    try {
      const err = await failure(openEmbeddedCryptoModule(dataDir));
      expect(err.code).toBe("CRYPTO_MODULE_FAILURE");
      expect(`${err.message} ${String(err.cause)} ${err.stack ?? ""}`).not.toContain(wrong);
    } finally {
      await writeFile(first.userPinFile, good);
    }
  });
});

describe("half-done and missing states", () => {
  it("completes a token whose PIN files were written before the token was initialized", async () => {
    const dataDir = await freshDir();
    const paths = embeddedTokenPaths(dataDir);
    const { mkdir } = await import("node:fs/promises");
    await mkdir(join(dataDir, "hsm"), { recursive: true, mode: 0o700 });
    await writeFile(paths.soPinFile, "so-pin-from-an-earlier-run-12345\n", { mode: 0o600 });
    await writeFile(paths.userPinFile, "user-pin-from-an-earlier-run-123\n", { mode: 0o600 });
    const result = await initEmbeddedToken(dataDir);
    expect(result.tokenCreated).toBe(true);
    expect((await readFile(paths.userPinFile, "utf8")).trim()).toBe("user-pin-from-an-earlier-run-123");
    const m = await open(dataDir);
    expect(await m.randomBytes(16)).toHaveLength(16);
  });

  it("completes a token that was initialized before its user PIN was set", async () => {
    const dataDir = await freshDir();
    const paths = embeddedTokenPaths(dataDir);
    const { mkdir } = await import("node:fs/promises");
    await mkdir(join(dataDir, "hsm"), { recursive: true, mode: 0o700 });
    await mkdir(join(dataDir, "tokens"), { recursive: true, mode: 0o700 });
    await writeFile(paths.confPath, `directories.tokendir = ${join(dataDir, "tokens")}\nobjectstore.backend = file\n`, { mode: 0o600 });
    await writeFile(paths.soPinFile, "so-pin-of-an-interrupted-run-123\n", { mode: 0o600 });
    await writeFile(paths.userPinFile, "user-pin-of-an-interrupted-run-1\n", { mode: 0o600 });
    process.env["SOFTHSM2_CONF"] = paths.confPath;
    const p11 = acquireLibrary(paths.library);
    try {
      const free = p11.C_GetSlotList(true).find((s) => (p11.C_GetTokenInfo(s).flags & 0x400) === 0);
      p11.C_InitToken(free as Buffer, "so-pin-of-an-interrupted-run-123", "inkan".padEnd(32, " "));
    } finally {
      releaseLibrary(paths.library);
    }
    await expect(openEmbeddedCryptoModule(dataDir)).rejects.toThrow(/user PIN is not initialized/);
    const result = await initEmbeddedToken(dataDir);
    expect(result.tokenCreated).toBe(false);
    expect(result.systemKeysCreated).toHaveLength(4);
    expect(await (await open(dataDir)).randomBytes(8)).toHaveLength(8);
  });

  it("openEmbeddedCryptoModule on a data directory without a token says to run inkan init", async () => {
    const err = await failure(openEmbeddedCryptoModule(await freshDir()));
    expect(err.message).toMatch(/run `inkan init` first/);
  });
});
