/**
 * ECDSA signature encodings: PKCS#11 CKM_ECDSA produces raw r||s (IEEE P1363); X.509, CMS and
 * most verifiers want the DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
 * node:crypto converts only while signing with a key it holds, so the conversion is done here.
 */

/** Size in bytes of r and s (the order's byte length) per curve. */
export const ECDSA_SCALAR_SIZE = { "P-256": 32, "P-384": 48, "P-521": 66 } as const;

/** Raw r||s (two equal halves) to DER. Throws on an odd or empty input. */
export function ecdsaRawToDer(raw: Uint8Array): Uint8Array {
  if (raw.length === 0 || raw.length % 2 !== 0) throw new Error("raw ECDSA signature has an odd length");
  const half = raw.length / 2;
  const r = derInteger(raw.subarray(0, half));
  const s = derInteger(raw.subarray(half));
  return concat([Uint8Array.of(0x30), derLength(r.length + s.length), r, s]);
}

/**
 * Strict DER to raw r||s with each half `scalarSize` bytes. Returns undefined for anything that is
 * not a minimal DER SEQUENCE of two positive INTEGERs that fit, with no trailing bytes.
 */
export function ecdsaDerToRaw(der: Uint8Array, scalarSize: number): Uint8Array | undefined {
  const seq = readTlv(der, 0, 0x30);
  if (!seq || seq.end !== der.length) return undefined;
  const r = readTlv(der, seq.start, 0x02);
  if (!r) return undefined;
  const s = readTlv(der, r.end, 0x02);
  if (!s || s.end !== seq.end) return undefined;
  const out = new Uint8Array(2 * scalarSize);
  for (const [i, int] of [r, s].entries()) {
    const value = positiveIntegerBytes(der.subarray(int.start, int.end));
    if (!value || value.length > scalarSize) return undefined;
    out.set(value, (i + 1) * scalarSize - value.length);
  }
  return out;
}

function derInteger(unsigned: Uint8Array): Uint8Array {
  let i = 0;
  while (i < unsigned.length - 1 && unsigned[i] === 0) i++;
  let body = unsigned.subarray(i);
  if ((body[0] ?? 0) & 0x80) body = concat([Uint8Array.of(0), body]);
  return concat([Uint8Array.of(0x02), derLength(body.length), body]);
}

function derLength(length: number): Uint8Array {
  if (length < 0x80) return Uint8Array.of(length);
  if (length < 0x100) return Uint8Array.of(0x81, length);
  return Uint8Array.of(0x82, length >> 8, length & 0xff);
}

/** Reads one tag-length-value at `offset`; only minimal definite lengths are accepted. */
function readTlv(buf: Uint8Array, offset: number, tag: number): { start: number; end: number } | undefined {
  if (buf[offset] !== tag) return undefined;
  const first = buf[offset + 1];
  if (first === undefined) return undefined;
  let length: number;
  let start: number;
  if (first < 0x80) {
    length = first;
    start = offset + 2;
  } else if (first === 0x81) {
    const b = buf[offset + 2];
    if (b === undefined || b < 0x80) return undefined;
    length = b;
    start = offset + 3;
  } else if (first === 0x82) {
    const hi = buf[offset + 2];
    const lo = buf[offset + 3];
    if (hi === undefined || lo === undefined || hi === 0) return undefined;
    length = (hi << 8) | lo;
    start = offset + 4;
  } else {
    return undefined;
  }
  const end = start + length;
  return end <= buf.length ? { start, end } : undefined;
}

/** The magnitude of a minimal, positive DER INTEGER body, or undefined. */
function positiveIntegerBytes(body: Uint8Array): Uint8Array | undefined {
  const first = body[0];
  if (first === undefined || first & 0x80) return undefined;
  if (first === 0) {
    const second = body[1];
    if (second === undefined) return undefined; // zero is not a valid r or s
    if (!(second & 0x80)) return undefined; // non-minimal
    return body.subarray(1);
  }
  return body;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
