import { readFileSync } from "node:fs";
import { acquireLibrary, pkcs11js, releaseLibrary, type Handle } from "./library.js";

/**
 * The raw crypto-module ceiling for the benchmark: ECDSA over 32-byte hashes with pkcs11js's
 * C_SignAsync straight on `sessions` sessions of the token, no Inkan code in between. Measured in
 * the same run as Inkan's own path so the ratio means something on a shared, noisy machine.
 */
export async function rawEcdsaSignRate(o: { library: string; tokenLabel: string; pinFile: string; keyId: string; sessions: number; signatures: number }): Promise<number> {
  const p11 = acquireLibrary(o.library);
  const opened: Handle[] = [];
  try {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === o.tokenLabel);
    if (!slot) throw new Error(`token ${o.tokenLabel} not found`);
    for (let i = 0; i < o.sessions; i++) opened.push(p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION));
    try {
      p11.C_Login(opened[0]!, pkcs11js.CKU_USER, readFileSync(o.pinFile, "utf8").trim());
    } catch (err) {
      if (!String(err).includes("CKR_USER_ALREADY_LOGGED_IN")) throw err; // the adapter's pool logged the token in
    }
    const s0 = opened[0]!;
    p11.C_FindObjectsInit(s0, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_ID, value: Buffer.from(o.keyId, "hex") },
    ]);
    const [key] = p11.C_FindObjects(s0, 1);
    p11.C_FindObjectsFinal(s0);
    if (!key) throw new Error("benchmark key not found");
    const hash = Buffer.alloc(32, 7);
    const perSession = Math.ceil(o.signatures / o.sessions);
    const started = performance.now();
    await Promise.all(
      opened.map(async (s) => {
        for (let i = 0; i < perSession; i++) {
          p11.C_SignInit(s, { mechanism: pkcs11js.CKM_ECDSA }, key);
          await p11.C_SignAsync(s, hash, Buffer.alloc(64));
        }
      }),
    );
    return (perSession * o.sessions) / ((performance.now() - started) / 1000);
  } finally {
    for (const s of opened) p11.C_CloseSession(s);
    releaseLibrary(o.library);
  }
}
