// One "node" of the shared-token test (multi-node-token.test.ts): a separate process on the same
// SoftHSM2 token directory, using the built server (dist) as `inkan serve` does. Writes its audit
// node entry, its own data object and a label every node writes, ROUNDS times; prints a JSON summary.
const [dist, dataDir, node, rounds] = process.argv.slice(2);
const { openEmbeddedCryptoModule } = await import(`${dist}/crypto/pkcs11/softhsm-token.js`);
const { ensureAuditNodeIndexed } = await import(`${dist}/audit/checkpoint.js`);
// SoftHSM2's file store can answer CKR_GENERAL_ERROR to a process opening the token while another
// rewrites its files: the open fails closed, and a node is then restarted (as systemd's
// Restart=on-failure does). Writes are what this test judges, so an open is retried a few times.
let opens = 0;
const module = await (async function open() {
  for (;;) {
    try {
      opens++;
      return await openEmbeddedCryptoModule(dataDir);
    } catch (e) {
      if (e?.code !== "CRYPTO_MODULE_FAILURE" || opens >= 5) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
})();
const errors = { index: [], own: [], shared: [] };
const text = (s) => new TextEncoder().encode(s);
const reason = (e) => e?.cause?.message ?? e?.message ?? String(e);
for (let i = 0; i < Number(rounds); i++) {
  await ensureAuditNodeIndexed(module, `${node}-${i}`).catch((e) => errors.index.push(reason(e)));
  await module.writeDataObject(`own-${node}`, text(String(i))).catch((e) => errors.own.push(reason(e)));
  await module.writeDataObject("shared-probe", text(`${node}-${i}`)).catch((e) => errors.shared.push(reason(e)));
}
const own = new TextDecoder().decode(await module.readDataObject(`own-${node}`));
console.log(JSON.stringify({ node, errors, own, opens }));
await module.close();
