import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import { rawEcdsaSignRate } from "../crypto/pkcs11/raw-sign-baseline.js";

/**
 * `npm run bench`: figures and ratios against the raw crypto module, measured in the same run
 * (never a timed test: these machines are shared and noisy). Today it measures the crypto-module
 * adapter, the path every signature will take; the SAP's end-to-end figures join with SignHash.
 */
const signatures = Number(process.env["INKAN_BENCH_SIGNATURES"] ?? 4000);
const sessions = 4;

const dir = mkdtempSync(join(tmpdir(), "inkan-bench-"));
try {
  const token = await initEmbeddedToken(dir);
  const crypto = await openEmbeddedCryptoModule(dir, { poolSize: sessions });
  try {
    const key = await crypto.generateKeyPair("EC_P256");
    const hash = new Uint8Array(32).fill(7);
    const req = { keyId: key.keyId, scheme: "ECDSA" as const, hashAlgorithm: "SHA256" as const, data: hash };
    await Promise.all(Array.from({ length: 200 }, () => crypto.sign(req))); // warm-up (handle cache, JIT)

    const rate = async (op: () => Promise<unknown>) => {
      const started = performance.now();
      let next = 0;
      await Promise.all(Array.from({ length: sessions * 4 }, async () => {
        while (next++ < signatures) await op();
      }));
      return signatures / ((performance.now() - started) / 1000);
    };
    const raw = await rawEcdsaSignRate({ library: token.library, tokenLabel: token.tokenLabel, pinFile: token.userPinFile, keyId: key.keyId, sessions, signatures });
    const adapter = await rate(() => crypto.sign(req));
    const withVerify = await rate(async () => {
      const signature = await crypto.sign(req);
      if (!(await crypto.verify({ ...req, signature }))) throw new Error("verify-before-release failed");
    });
    const row = (name: string, perSecond: number) =>
      console.log(`${name.padEnd(44)} ${perSecond.toFixed(0).padStart(8)} /s   ${(perSecond / raw).toFixed(2)} x raw`);
    console.log(`ECDSA P-256 over SHA-256 hashes, ${signatures} signatures, ${sessions} sessions (SoftHSM2)`);
    row("raw pkcs11js C_SignAsync", raw);
    row("Inkan crypto module: sign", adapter);
    row("Inkan crypto module: sign + verify in module", withVerify);
    console.log(`rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
  } finally {
    await crypto.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
