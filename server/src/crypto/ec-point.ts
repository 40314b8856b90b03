/**
 * Validation of a peer's P-256 public point before it goes into ECDH with a module-resident key.
 * Without it, a point on another (weak) curve makes the key agreement leak the private key bit by
 * bit: the invalid-curve attack that hit several JOSE libraries in 2017.
 */
import { InkanError } from "../errors.js";

const P256 = {
  p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
  b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
  size: 32,
} as const;

/**
 * Throws INVALID_REQUEST unless `point` is an uncompressed SEC1 encoding (0x04 || X || Y, 65
 * bytes) of a point on P-256. The point at infinity (a lone 0x00), compressed points, points of
 * other curves (other lengths) and coordinates >= p are all refused. P-256 has cofactor 1, so
 * every point on the curve other than infinity lies in the prime-order group.
 */
export function assertP256Point(point: Uint8Array): void {
  if (!isP256Point(point)) {
    throw new InkanError("INVALID_REQUEST", "peer public key is not a valid P-256 point", { field: "peerPublicKey" });
  }
}

export function isP256Point(point: Uint8Array): boolean {
  if (point.length !== 1 + 2 * P256.size || point[0] !== 0x04) return false;
  const x = toBigInt(point.subarray(1, 1 + P256.size));
  const y = toBigInt(point.subarray(1 + P256.size));
  const { p, b } = P256;
  if (x >= p || y >= p) return false;
  // y^2 = x^3 - 3x + b (mod p)
  const lhs = (y * y) % p;
  const rhs = (((x * x) % p) * x - 3n * x + b) % p;
  return lhs === (rhs + p) % p;
}

function toBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString("hex")}`);
}
