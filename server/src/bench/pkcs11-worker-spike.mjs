// Spike (issue 20): pkcs11js in worker threads against one library initialized on the main thread.
// `npm run build && node server/src/bench/pkcs11-worker-spike.mjs`; findings in server/src/crypto/pkcs11/WORKER-THREADS.md.
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { createRequire } from "node:module";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, loadavg } from "node:os";
import { join } from "node:path";
const require = createRequire(import.meta.url);
const pkcs11js = require("pkcs11js");
const dist = new URL("../../dist", import.meta.url).pathname; // run from server/src/bench after the build

function session(p11, slot, label) {
  const s = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  return s;
}
function findKey(p11, s, cls, label) {
  p11.C_FindObjectsInit(s, [{ type: pkcs11js.CKA_CLASS, value: cls }, { type: pkcs11js.CKA_LABEL, value: label }]);
  const h = p11.C_FindObjects(s, 1)[0]; p11.C_FindObjectsFinal(s); return h;
}
function signLoop(p11, s, key, ms) {
  let n = 0; const t0 = performance.now(); const data = Buffer.alloc(32, 7);
  while (performance.now() - t0 < ms) { p11.C_SignInit(s, { mechanism: pkcs11js.CKM_ECDSA }, key); p11.C_Sign(s, data, Buffer.alloc(128)); n++; }
  return n / ((performance.now() - t0) / 1000);
}

if (isMainThread) {
  const { initEmbeddedToken, embeddedTokenPaths } = await import(join(dist, "crypto/pkcs11/softhsm-token.js"));
  const dir = mkdtempSync(join(tmpdir(), "inkan-spike-"));
  await initEmbeddedToken(dir);
  const t = embeddedTokenPaths(dir);
  process.env.SOFTHSM2_CONF = t.confPath;
  const p11 = new pkcs11js.PKCS11(); p11.load(t.library);
  p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  const slot = p11.C_GetSlotList(true).find((sl) => p11.C_GetTokenInfo(sl).label.trim() === t.tokenLabel);
  const s = session(p11, slot);
  p11.C_Login(s, pkcs11js.CKU_USER, readFileSync(t.userPinFile, "utf8").trim());
  const label = "spike-key";
  p11.C_GenerateKeyPair(s, { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
    [{ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from("06082a8648ce3d030107", "hex") }, { type: pkcs11js.CKA_LABEL, value: label }, { type: pkcs11js.CKA_TOKEN, value: false }, { type: pkcs11js.CKA_VERIFY, value: true }],
    [{ type: pkcs11js.CKA_LABEL, value: label }, { type: pkcs11js.CKA_TOKEN, value: false }, { type: pkcs11js.CKA_SIGN, value: true }, { type: pkcs11js.CKA_SENSITIVE, value: true }, { type: pkcs11js.CKA_PRIVATE, value: true }]);
  const key = findKey(p11, s, pkcs11js.CKO_PRIVATE_KEY, label);
  console.log("load", loadavg()[0].toFixed(2), "main: sync sign", Math.round(signLoop(p11, s, key, 1000)), "/s (event loop blocked throughout)");
  // Event-loop lag while two workers sign synchronously.
  let maxLag = 0; let last = performance.now();
  const lagTimer = setInterval(() => { const now = performance.now(); maxLag = Math.max(maxLag, now - last - 10); last = now; }, 10);
  const results = await Promise.all([0, 1].map((i) => new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { library: t.library, slot, label, tokenLabel: t.tokenLabel, mainSession: s, i }, env: process.env });
    w.once("message", resolve); w.once("error", reject);
  })));
  clearInterval(lagTimer);
  for (const r of results) console.log("worker", JSON.stringify(r));
  console.log("main event loop max lag while workers signed:", maxLag.toFixed(1), "ms");
  // After the workers exited (their PKCS11 objects gone: dlclose), the main thread's library still works:
  console.log("main after workers exited: sign", Math.round(signLoop(p11, s, key, 300)), "/s; session info", JSON.stringify(p11.C_GetSessionInfo(s).state));
  p11.C_Finalize(); p11.close();
  rmSync(dir, { recursive: true, force: true });
} else {
  const { library, slot, label, mainSession, i } = workerData;
  const out = { i };
  const p11 = new pkcs11js.PKCS11();
  p11.load(library);
  try { p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK }); out.initialize = "ok (unexpected)"; }
  catch (e) { out.initialize = `${e.message}`.slice(0, 80); }
  const s = session(p11, slot);
  out.sessionState = p11.C_GetSessionInfo(s).state; // 3 = CKS_RW_USER_FUNCTIONS: logged in via the main thread's login
  try { p11.C_Login(s, pkcs11js.CKU_USER, "wrong-or-right"); out.login = "ok"; } catch (e) { out.login = `${e.message}`.slice(0, 60); }
  const key = findKey(p11, s, pkcs11js.CKO_PRIVATE_KEY, label);
  out.keyFound = key !== undefined;
  out.syncSignPerS = Math.round(signLoop(p11, s, key, 1500));
  // The main thread's session handle, used from this thread (handles are process-wide in SoftHSM2).
  try { p11.C_SignInit(mainSession, { mechanism: pkcs11js.CKM_ECDSA }, key); p11.C_Sign(mainSession, Buffer.alloc(32, 1), Buffer.alloc(128)); out.mainSessionUsable = true; } catch (e) { out.mainSessionUsable = `${e.message}`.slice(0, 60); }
  p11.C_CloseSession(s);
  parentPort.postMessage(out); // no C_Finalize here: it would end every session of the process
}
