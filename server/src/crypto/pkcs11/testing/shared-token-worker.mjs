// One "node" of the shared-token test (multi-node-token.test.ts): a separate process on the same
// SoftHSM2 token directory, using the built server (dist) as `inkan serve` does. Writes its audit
// node entry, its own data object and a label every node writes, ROUNDS times; prints a JSON summary.
const [dist, dataDir, node, rounds] = process.argv.slice(2);
const { openEmbeddedCryptoModule } = await import(`${dist}/crypto/pkcs11/softhsm-token.js`);
const { ensureAuditNodeIndexed } = await import(`${dist}/audit/checkpoint.js`);
const module = await openEmbeddedCryptoModule(dataDir);
const errors = { index: [], own: [], shared: [] };
const text = (s) => new TextEncoder().encode(s);
const reason = (e) => e?.cause?.message ?? e?.message ?? String(e);
for (let i = 0; i < Number(rounds); i++) {
  await ensureAuditNodeIndexed(module, `${node}-${i}`).catch((e) => errors.index.push(reason(e)));
  await module.writeDataObject(`own-${node}`, text(String(i))).catch((e) => errors.own.push(reason(e)));
  await module.writeDataObject("shared-probe", text(`${node}-${i}`)).catch((e) => errors.shared.push(reason(e)));
}
const own = new TextDecoder().decode(await module.readDataObject(`own-${node}`));
console.log(JSON.stringify({ node, errors, own }));
await module.close();
