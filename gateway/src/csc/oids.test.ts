import { generateKeyPairSync } from "node:crypto";
import { HashAlgorithm, SignatureAlgorithm } from "@inkan/sdk";
import { describe, expect, it } from "vitest";
import { oid, pssParamsDer, signAlgoOf } from "./oids.js";

/** The RSASSA-PSS-params OpenSSL writes into an RSA-PSS key's SPKI: an independent encoder to compare with. */
function opensslPssParams(hashAlgorithm: "sha256" | "sha384" | "sha512", saltLength: number): string {
  const { publicKey } = generateKeyPairSync("rsa-pss", { modulusLength: 1024, hashAlgorithm, mgf1HashAlgorithm: hashAlgorithm, saltLength: saltLength as unknown as string /* @types/node says string; Node takes the number */, publicKeyEncoding: { type: "spki", format: "der" }, privateKeyEncoding: { type: "pkcs8", format: "der" } });
  const spki = publicKey;
  // SEQUENCE { SEQUENCE { OID rsassaPss, params }, BIT STRING }: the params follow the 11-byte OID TLV.
  const algId = spki.subarray(spki[1]! & 0x80 ? 2 + (spki[1]! & 0x7f) : 2);
  const params = algId.subarray(2 + 11, 2 + algId[1]!);
  return params.toString("base64").replace(/=+$/, "");
}

describe("CSC signAlgo OIDs (issue 16)", () => {
  it("the RSASSA-PSS parameters accepted are exactly what OpenSSL encodes for MGF1(hash) and salt = hash length", () => {
    expect(pssParamsDer(HashAlgorithm.SHA256)).toContain(opensslPssParams("sha256", 32));
    expect(pssParamsDer(HashAlgorithm.SHA384)).toContain(opensslPssParams("sha384", 48));
    expect(pssParamsDer(HashAlgorithm.SHA512)).toContain(opensslPssParams("sha512", 64));
    expect(pssParamsDer(HashAlgorithm.SHA256)).not.toContain(opensslPssParams("sha256", 20));
  });

  it("maps combined OIDs, key OIDs with a hash, and PSS with its parameters; refuses mismatches", () => {
    expect(signAlgoOf("1.2.840.10045.4.3.2", undefined, undefined)).toEqual({ scheme: SignatureAlgorithm.ECDSA, hash: HashAlgorithm.SHA256 });
    expect(signAlgoOf("1.2.840.10045.4.3.2", HashAlgorithm.SHA384, undefined)).toBeUndefined();
    expect(signAlgoOf(oid.ecPublicKey, HashAlgorithm.SHA384, undefined)).toEqual({ scheme: SignatureAlgorithm.ECDSA, hash: HashAlgorithm.SHA384 });
    expect(signAlgoOf(oid.ecPublicKey, undefined, undefined)).toBeUndefined();
    expect(signAlgoOf(oid.rsaEncryption, HashAlgorithm.SHA512, undefined)).toEqual({ scheme: SignatureAlgorithm.RSA_PKCS1_V1_5, hash: HashAlgorithm.SHA512 });
    expect(signAlgoOf(oid.rsassaPss, HashAlgorithm.SHA256, undefined)).toBeUndefined();
    expect(signAlgoOf(oid.rsassaPss, HashAlgorithm.SHA256, opensslPssParams("sha256", 32))).toEqual({ scheme: SignatureAlgorithm.RSA_PSS, hash: HashAlgorithm.SHA256 });
    expect(signAlgoOf(oid.rsassaPss, HashAlgorithm.SHA384, opensslPssParams("sha256", 32))).toBeUndefined();
    expect(signAlgoOf("1.2.840.113549.1.1.5", HashAlgorithm.SHA256, undefined)).toBeUndefined(); // SHA-1 with RSA
  });
});
