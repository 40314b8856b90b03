import { createHash } from "node:crypto";

/** The 14 ASCII bytes that open the digested string (sam.proto SadChallenge.dtbsr_digest). */
const domain = new TextEncoder().encode("inkan-dtbsr-v1");

const u32be = (x: number): Uint8Array => {
  if (!Number.isInteger(x) || x < 0 || x > 0xffff_ffff) throw new RangeError(`not a u32: ${x}`);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, x, false);
  return b;
};

/** An incremental DTBS/R digest: feed the hashes in list order, page by page, then call digest(). */
export interface DtbsrDigester {
  update(hashes: readonly Uint8Array[]): void;
  /** The 32-byte digest; throws if the number of hashes fed is not the count announced. */
  digest(): Uint8Array;
}

/**
 * The DTBS/R digest of sam.proto (SadChallenge.dtbsr_digest), computed incrementally so that a
 * list of 100,000 hashes is digested page by page in bounded memory (R-3.2.1.4, T-2.2.1.6):
 *
 *   SHA-256("inkan-dtbsr-v1" || u32be(hashAlgorithm) || u32be(n) || for each h: u32be(len(h)) || h)
 *
 * The length prefixes make the encoding unambiguous: no two lists share one byte string.
 * `hashAlgorithm` is the HashAlgorithm enum number (1 SHA-256, 2 SHA-384, 3 SHA-512, 4 NONE).
 */
export function createDtbsrDigester(hashAlgorithm: number, count: number): DtbsrDigester {
  const h = createHash("sha256").update(domain).update(u32be(hashAlgorithm)).update(u32be(count));
  let fed = 0;
  return {
    update(hashes) {
      for (const x of hashes) h.update(u32be(x.length)).update(x);
      fed += hashes.length;
    },
    digest() {
      if (fed !== count) throw new RangeError(`DTBS/R digest over ${fed} hashes, announced ${count}`);
      return new Uint8Array(h.digest());
    },
  };
}

/** The DTBS/R digest of a whole list held in memory (at most one chunk, or a test). */
export function dtbsrDigest(hashAlgorithm: number, hashes: readonly Uint8Array[]): Uint8Array {
  const d = createDtbsrDigester(hashAlgorithm, hashes.length);
  d.update(hashes);
  return d.digest();
}
