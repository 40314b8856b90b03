/**
 * Issue 22, module loss with the real fault of the report: the crypto module runs as an
 * unprivileged user (root reads any file, so as root the test runs it as `nobody`), and its
 * SoftHSM2 token files are made unreadable (chmod 000) and then readable again. SoftHSM2 then
 * answers CKR_GENERAL_ERROR, finds no key, and keeps doing so until the library is initialized
 * again. The module must refuse with CRYPTO_MODULE_FAILURE (not "key not found"), report itself
 * lost, and reconnect by itself once the files are back.
 *
 * The module runs in a child process from the build (dist/): `npm test` builds first; by hand,
 * run `npm run build` before this test.
 */
import { spawn, spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const dist = fileURLToPath(new URL("../../../dist", import.meta.url));
const built = existsSync(join(dist, "crypto/pkcs11/module-supervisor.js"));
const root = process.getuid?.() === 0;
const nobody = root ? spawnSync("id", ["-u", "nobody"], { encoding: "utf8" }) : undefined;
const nobodyUid = nobody?.status === 0 ? Number(nobody.stdout.trim()) : undefined;
const skipped = !built
  ? "the server is not built (dist/crypto/pkcs11/module-supervisor.js missing): run `npm run build`"
  : root && nobodyUid === undefined
    ? "running as root and there is no `nobody` user to run the module as"
    : undefined;
if (skipped) console.warn(`module-loss (unprivileged) test skipped: ${skipped}`);

/** Runs in the child, as the unprivileged user: argv = [dist, data directory]. Prints one JSON line. */
const script = `
import { chmodSync } from "node:fs";
import { createHash, createPublicKey, verify } from "node:crypto";
const [dist, dataDir] = process.argv.slice(1);
const { initEmbeddedToken } = await import(dist + "/crypto/pkcs11/softhsm-token.js");
const { createPkcs11CryptoModule } = await import(dist + "/crypto/pkcs11/pkcs11-crypto-module.js");
const token = await initEmbeddedToken(dataDir);
const m = await createPkcs11CryptoModule({
  library: token.library, token: "pkcs11:token=inkan", pin: { file: token.userPinFile },
  supervision: { initialDelayMs: 50, maxDelayMs: 400, probeIntervalMs: 200 },
});
const changes = [];
m.onStateChange?.((c) => changes.push(c));
/** Waits until condition() holds; false after 15 s (the caller reports it). */
const until = async (condition) => {
  for (const deadline = Date.now() + 15000; !(await condition()); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > deadline) return false;
  }
  return true;
};
// The start's self-check: the system keys are used (and so known by id), as the server does.
const probe = new TextEncoder().encode("probe");
await m.hmacSha256("record-seal", probe);
await m.decrypt("field-encryption", await m.encrypt("field-encryption", probe, probe), probe);
await m.systemPublicKey("audit-signing");
const key = await m.generateKeyPair("EC_P256");
const message = Buffer.from("signed before, during and after");
const hash = createHash("sha256").update(message).digest();
const sign = () => m.sign({ keyId: key.keyId, scheme: "ECDSA", hashAlgorithm: "SHA256", data: hash });
const verifies = (sig) => verify("sha256", message, createPublicKey({ key: Buffer.from(key.publicKeySpki), format: "der", type: "spki" }), sig);
const outcome = (p) => p.then((v) => (v === undefined ? "not found" : "answered"), (e) => e.code);
const before = verifies(await sign());
const tokens = token.dataDir + "/tokens";
chmodSync(tokens, 0o000);
const refusals = [];
let attemptsFailed;
try {
  for (const call of [sign, () => m.hmacSha256("record-seal", probe), () => m.findKey(key.keyId)]) refusals.push(await outcome(call()));
  attemptsFailed = await until(() => changes.filter((c) => c.state === "reconnect-failed").length >= 2);
  refusals.push(await outcome(sign()));
} finally {
  chmodSync(tokens, 0o700);
}
const signsAgain = await until(() => sign().then(() => true, () => false));
const after = signsAgain && verifies(await sign());
await m.close();
console.log(JSON.stringify({ before, refusals, attemptsFailed, after, changes: changes.map((c) => c.state + ":" + (c.reason ?? c.attempts)) }));
`;

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe.skipIf(skipped !== undefined)("Issue 22: token files unreadable for the unprivileged module, then readable again", () => {
  it("refused with CRYPTO_MODULE_FAILURE (never 'key not found'), reported lost, reconnected by itself (the library initialized again): signs again without a restart", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "inkan-unprivileged-"));
    dirs.push(dataDir);
    if (root) chownSync(dataDir, nobodyUid!, nobodyUid!);
    const command = root ? ["runuser", ["-u", "nobody", "--", process.execPath]] : [process.execPath, []];
    const child = spawn(command[0] as string, [...(command[1] as string[]), "--input-type=module", "-e", script, dist, dataDir], {
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", TMPDIR: tmpdir() },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    const result = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as { before: boolean; refusals: string[]; attemptsFailed: boolean; after: boolean; changes: string[] };
    expect(result.before).toBe(true);
    // Sign, HMAC, key lookup while unreadable, and a signature after failed reconnects: the module's failure, never "not found".
    expect(result.refusals).toEqual(["CRYPTO_MODULE_FAILURE", "CRYPTO_MODULE_FAILURE", "CRYPTO_MODULE_FAILURE", "CRYPTO_MODULE_FAILURE"]);
    expect(result.attemptsFailed).toBe(true);
    expect(result.after).toBe(true);
    expect(result.changes[0]).toMatch(/^lost:/);
    expect(result.changes.at(-1)).toMatch(/^recovered:/);
  }, 60_000);
});
