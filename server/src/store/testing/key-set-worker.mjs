// One node of multi-node-key-sets.test.ts: a separate process on the shared SoftHSM2 token that
// asks for the current key-import transport key when the parent says "go" (all nodes at once),
// with the cross-node lock on PostgreSQL when LOCK_URI is set (NO_LOCK=1: without it, as before
// issue 21, to see the test fail). Prints the transport key id it would publish.
import { createInterface } from "node:readline";
const [dist, dataDir] = process.argv.slice(2);
const { openEmbeddedCryptoModule } = await import(`${dist}/crypto/pkcs11/softhsm-token.js`);
const { KeyImportTransportKeys } = await import(`${dist}/keys/key-import-transport-key.js`);
const { createPostgresLock } = await import(`${dist}/store/postgres/postgres-lock.js`);
const crypto = await openEmbeddedCryptoModule(dataDir);
const shared = process.env.LOCK_URI && !process.env.NO_LOCK ? createPostgresLock(process.env.LOCK_URI) : undefined;
const keys = new KeyImportTransportKeys({ crypto, lock: shared?.lock });
console.log("ready");
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line !== "go") continue;
  try {
    const key = await keys.current(new Date());
    console.log(JSON.stringify({ kid: key.transportKeyId }));
  } catch (err) {
    console.log(JSON.stringify({ error: err?.cause?.message ?? err?.message ?? String(err) }));
  }
  break;
}
lines.close();
await shared?.close();
await crypto.close();
