/**
 * `inkan init` on an HSM's PKCS#11 token (issues 21 and 23): with the settings `inkan serve` uses
 * (a config file naming pkcs11Library, pkcs11Token, pkcs11PinFile), init creates the SAM's system
 * keys on that token, never the embedded token; `serve` with the same file signs; a second init
 * changes nothing. The "HSM" is a SoftHSM2 token the test creates outside the data directory,
 * with its own SOFTHSM2_CONF, as an HSM's operators would (softhsm2-util, not Inkan).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findSoftHsmLibrary } from "./crypto/pkcs11/softhsm-token.js";
import { findPostgresBinaries, startTestCluster } from "./store/testing/postgres-cluster.js";
import type { InitPaths } from "./init.js";
import { activateDevice, inkanBuilt, runInkan, signOnce, startInkanServe } from "./testing/inkan-processes.js";

const postgres = findPostgresBinaries();
const noPostgres = "missing" in postgres ? `init-module.test.ts: the PostgreSQL case is skipped: ${postgres.missing}` : undefined;
if (noPostgres) console.warn(noPostgres);

let root: string;
let hsmEnv: NodeJS.ProcessEnv;
let pinFile: string;

/** A token on the stand-in HSM, initialized by its own tool (SO PIN and user PIN set there). */
function createHsmToken(label: string, pin: string): void {
  execFileSync("softhsm2-util", ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "so-" + pin], { env: { ...process.env, ...hsmEnv }, stdio: "ignore" });
}

function writeConfig(name: string, settings: Record<string, string>): string {
  const file = join(root, `${name}.json`);
  writeFileSync(file, JSON.stringify(settings));
  return file;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "inkan-hsm-init-"));
  mkdirSync(join(root, "hsm", "tokens"), { recursive: true, mode: 0o700 });
  writeFileSync(join(root, "hsm", "softhsm2.conf"), `directories.tokendir = ${join(root, "hsm", "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  hsmEnv = { SOFTHSM2_CONF: join(root, "hsm", "softhsm2.conf") };
  createHsmToken("inkan-sam", "hsm-user-pin-1");
  pinFile = join(root, "hsm-user-pin");
  writeFileSync(pinFile, "hsm-user-pin-1\n", { mode: 0o600 });
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe("inkan init with an HSM's PKCS#11 module (issues 21, 23)", () => {
  it("is built (npm test builds it first; run `npm run build` when testing by hand)", () => {
    expect(inkanBuilt).toBe(true);
  });

  it("R-3.1.1.1 creates the system keys on the configured token and no embedded token; serve with the same config signs; a second init changes nothing", async () => {
    const dataDir = join(root, "data");
    const library = findSoftHsmLibrary();
    const config = writeConfig("inkan", { dataDir, pkcs11Library: library, pkcs11Token: "pkcs11:token=inkan-sam", pkcs11PinFile: pinFile });

    const first = await runInkan(["init", "--config", config, "--json"], hsmEnv);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/system keys \(record-seal, field-encryption, audit-signing, challenge-signing\)/);
    expect(first.stderr).not.toMatch(/crypto-module token/);
    const paths = JSON.parse(first.stdout) as InitPaths;
    expect(paths).toMatchObject({ pkcs11Module: library, pkcs11Token: "pkcs11:token=inkan-sam", pkcs11PinFile: pinFile });
    expect(paths).not.toHaveProperty("pkcs11Conf");
    expect(paths).not.toHaveProperty("pkcs11SoPinFile");
    // No embedded token: no SoftHSM2 configuration, token directory or PIN files in the data directory.
    for (const embedded of ["softhsm2.conf", "tokens", "hsm"]) expect(existsSync(join(dataDir, embedded)), embedded).toBe(false);
    expect(existsSync(paths.store)).toBe(true);
    // The keys are on the HSM's token (SoftHSM2 keeps one file per object in the token's directory).
    const [tokenDir] = readdirSync(join(root, "hsm", "tokens"));
    const tokenObjects = () => readdirSync(join(root, "hsm", "tokens", tokenDir!)).filter((f) => f.endsWith(".object")).sort();
    expect(tokenObjects().length).toBeGreaterThanOrEqual(6); // 2 secret keys, 2 key pairs, the JWE key pair

    // serve with the same file: a signer enrolled through it signs once (the SDK checks the signature).
    let serve = await startInkanServe(["--config", config, "--listen", "127.0.0.1:0"], hsmEnv);
    let device;
    let demo: { signerId: string; credentialId: string; activationCode: string };
    try {
      const demoRun = await runInkan(["init", "--data-dir", dataDir, "--demo-signer", "--target", serve.url, "--json"], hsmEnv);
      expect(demoRun.code, demoRun.stderr).toBe(0);
      demo = JSON.parse(demoRun.stdout) as typeof demo;
      device = await activateDevice(serve.url, paths.signerFrontEnd, demo.signerId, demo.activationCode, "135792468");
      const sca = { ca: paths.caCert, cert: paths.scaCert, key: paths.scaKey };
      const signature = await signOnce(serve.url, sca, device, demo.signerId, demo.credentialId, createHash("sha256").update("first").digest());
      expect(signature.length).toBeGreaterThan(60);
    } finally {
      expect(await serve.stop()).toBe(0);
    }

    const objectsBeforeSecond = tokenObjects();
    // A second init (no node running) keeps every key, user and the policy, and says so.
    const second = await runInkan(["init", "--config", config, "--json"], hsmEnv);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/already initialized; nothing was changed/);
    expect(JSON.parse(second.stdout)).toEqual(paths);
    // Nothing was added to the token (each object is a file of its own in SoftHSM2's token directory).
    expect(tokenObjects()).toEqual(objectsBeforeSecond);

    // The same keys: the device's pinned challenge-signing key still verifies the SAM's challenge,
    // and the audit chain verifies against the module's audit key and checkpoint.
    serve = await startInkanServe(["--config", config, "--listen", "127.0.0.1:0"], hsmEnv);
    try {
      const sca = { ca: paths.caCert, cert: paths.scaCert, key: paths.scaKey };
      await signOnce(serve.url, sca, device, demo.signerId, demo.credentialId, createHash("sha256").update("second").digest());
    } finally {
      expect(await serve.stop()).toBe(0);
    }
    // --data-dir too: `audit verify` applies its default data directory before reading the config file.
    const verify = await runInkan(["audit", "verify", "--config", config, "--data-dir", dataDir, "--json"], hsmEnv);
    expect(verify.code, verify.stderr + verify.stdout).toBe(0);
  }, 120_000);

  it.skipIf(noPostgres !== undefined)("with INKAN_PKCS11_* and INKAN_STORE=postgres://…: the keys on the token, the first officer and policy in the database; serve with the same variables signs", async () => {
    createHsmToken("inkan-pg", "pg-user-pin-1");
    const pgPin = join(root, "pg-pin");
    writeFileSync(pgPin, "pg-user-pin-1\n", { mode: 0o600 });
    const cluster = await startTestCluster((postgres as { bindir: string }).bindir);
    try {
      const dataDir = join(root, "data-pg");
      const env = {
        ...hsmEnv, INKAN_DATA_DIR: dataDir, INKAN_STORE: await cluster.createDatabase(),
        INKAN_PKCS11_LIBRARY: findSoftHsmLibrary(), INKAN_PKCS11_TOKEN: "pkcs11:token=inkan-pg", INKAN_PKCS11_PIN_FILE: pgPin,
      };
      const init = await runInkan(["init", "--json"], env);
      expect(init.code, init.stderr).toBe(0);
      expect(init.stderr).toMatch(/system keys \(record-seal, field-encryption, audit-signing, challenge-signing\)/);
      const paths = JSON.parse(init.stdout) as InitPaths;
      expect(paths.store).toMatch(/^postgres:\/\/inkan@127\.0\.0\.1:\d+\//);
      for (const f of ["softhsm2.conf", "tokens", "hsm", "store.sqlite3"]) expect(existsSync(join(dataDir, f)), f).toBe(false);
      const serve = await startInkanServe(["--listen", "127.0.0.1:0"], env);
      try {
        const demoRun = await runInkan(["init", "--data-dir", dataDir, "--demo-signer", "--target", serve.url, "--json"], hsmEnv);
        expect(demoRun.code, demoRun.stderr).toBe(0);
        const demo = JSON.parse(demoRun.stdout) as { signerId: string; credentialId: string; activationCode: string };
        const device = await activateDevice(serve.url, paths.signerFrontEnd, demo.signerId, demo.activationCode, "135792468");
        await signOnce(serve.url, { ca: paths.caCert, cert: paths.scaCert, key: paths.scaKey }, device, demo.signerId, demo.credentialId, createHash("sha256").update("pg").digest());
      } finally {
        expect(await serve.stop()).toBe(0);
      }
      const again = await runInkan(["init", "--json"], env);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(/already initialized; nothing was changed/);
    } finally {
      await cluster.stop();
    }
  }, 120_000);

  it("R-3.2.2.4 R-3.1.1.1 a system key found on the token that was not generated inside it (an imported key pair under the audit-signing label) is refused and kept as it is", async () => {
    // Someone who can write to the token before init plants a key pair whose private half they know:
    // adopted, it would let them sign audit checkpoints outside the module.
    createHsmToken("inkan-planted", "planted-pin-1");
    const planted = join(root, "planted");
    mkdirSync(planted);
    execFileSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", join(planted, "key.pem")]);
    execFileSync("openssl", ["pkcs8", "-topk8", "-nocrypt", "-in", join(planted, "key.pem"), "-out", join(planted, "key8.pem")]);
    execFileSync("softhsm2-util", ["--import", join(planted, "key8.pem"), "--token", "inkan-planted", "--label", "inkan-audit-signing", "--id", "0a0b", "--pin", "planted-pin-1"], { env: { ...process.env, ...hsmEnv }, stdio: "ignore" });
    const plantedPin = join(root, "planted-pin");
    writeFileSync(plantedPin, "planted-pin-1\n", { mode: 0o600 });
    const dataDir = join(root, "data-planted");
    const config = writeConfig("planted", { dataDir, pkcs11Library: findSoftHsmLibrary(), pkcs11Token: "pkcs11:token=inkan-planted", pkcs11PinFile: plantedPin });
    const run = await runInkan(["init", "--config", config, "--json"], hsmEnv);
    expect(run.code, run.stderr).not.toBe(0);
    expect(run.stderr).toMatch(/system key inkan-audit-signing was not generated in the module/);
    expect(run.stdout).toBe("");
    expect(existsSync(join(dataDir, "store.sqlite3"))).toBe(false);
    // A second attempt refuses the same way: the planted key is neither used nor replaced.
    const again = await runInkan(["init", "--config", config, "--json"], hsmEnv);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/inkan-audit-signing was not generated in the module/);
  }, 60_000);

  it("refuses what serve would refuse, and a token it cannot log in to, before writing a store (fail closed)", async () => {
    createHsmToken("inkan-other", "other-pin-1");
    const library = findSoftHsmLibrary();
    const wrongPin = join(root, "wrong-pin");
    writeFileSync(wrongPin, "not-the-pin\n", { mode: 0o600 });
    const cases: [string, Record<string, string>, RegExp][] = [
      ["pin-value", { pkcs11Library: library, pkcs11Token: "pkcs11:token=inkan-other;pin-value=other-pin-1" }, /pkcs11Token: must not carry the PIN/],
      ["no-pin", { pkcs11Library: library, pkcs11Token: "pkcs11:token=inkan-other" }, /pkcs11PinFile: required/],
      ["no-library", { pkcs11Token: "pkcs11:token=inkan-other", pkcs11PinFile: wrongPin }, /pkcs11Library: required/],
      ["wrong-pin", { pkcs11Library: library, pkcs11Token: "pkcs11:token=inkan-other", pkcs11PinFile: wrongPin }, /cannot open a logged-in session on the token \(CKR_PIN_INCORRECT\).*pkcs11:token=inkan-other/],
      ["no-such-token", { pkcs11Library: library, pkcs11Token: "pkcs11:token=no-such-token", pkcs11PinFile: wrongPin }, /no-such-token|token/],
    ];
    for (const [name, settings, message] of cases) {
      const dataDir = join(root, `refused-${name}`);
      const run = await runInkan(["init", "--config", writeConfig(name, { dataDir, ...settings }), "--json"], hsmEnv);
      expect(run.code, `${name}: ${run.stderr}`).not.toBe(0);
      expect(run.stderr, name).toMatch(message);
      expect(run.stdout, name).toBe("");
      expect(run.stderr, name).not.toMatch(/other-pin-1|not-the-pin/);
      for (const f of ["store.sqlite3", "softhsm2.conf", "tokens"]) expect(existsSync(join(dataDir, f)), `${name}: ${f}`).toBe(false);
    }
  }, 60_000);
});
