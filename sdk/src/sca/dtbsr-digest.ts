/**
 * The DTBS/R digest of sam.proto (SadChallenge.dtbsr_digest), which an SCA sends with
 * SealTransaction and which the signer's device checks against the SadChallenge (R-3.2.1.4,
 * T-2.2.1.6). Browser-safe: WebCrypto only. WebCrypto has no incremental hash, so the list is
 * encoded into one buffer (100,000 SHA-512 hashes: about 6.8 MB).
 *
 *   SHA-256("inkan-dtbsr-v1" || u32be(hashAlgorithm) || u32be(n) || for each h: u32be(len(h)) || h)
 *
 * @param hashAlgorithm the HashAlgorithm enum number (HashAlgorithm.SHA256 = 1, ... NONE = 4)
 * @param hashes the whole ordered DTBS/R list (inline hashes, then every AppendHashes chunk)
 * @example
 * const digest = await dtbsrDigest(HashAlgorithm.SHA256, hashes);
 * await sca.sealTransaction({ transactionId, dtbsrDigest: digest });
 */
export async function dtbsrDigest(hashAlgorithm: number, hashes: readonly Uint8Array[]): Promise<Uint8Array> {
  const prefix = new TextEncoder().encode("inkan-dtbsr-v1");
  let size = prefix.length + 8;
  for (const h of hashes) size += 4 + h.length;
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  buf.set(prefix, 0);
  let at = prefix.length;
  view.setUint32(at, u32(hashAlgorithm), false);
  view.setUint32(at + 4, u32(hashes.length), false);
  at += 8;
  for (const h of hashes) {
    view.setUint32(at, h.length, false);
    buf.set(h, at + 4);
    at += 4 + h.length;
  }
  return new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", buf));
}

function u32(x: number): number {
  if (!Number.isInteger(x) || x < 0 || x > 0xffff_ffff) throw new RangeError(`not a u32: ${x}`);
  return x;
}
