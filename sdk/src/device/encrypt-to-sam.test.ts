import { create } from "@bufbuild/protobuf";
import { calculateJwkThumbprint, compactDecrypt, decodeProtectedHeader, exportJWK, generateKeyPair, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { JweAlgorithm, SamEncryptionKeySchema } from "../gen/inkan/sam/v1/sam_pb.js";
import { encryptToSam } from "./encrypt-to-sam.js";

async function samKey() {
  const { publicKey, privateKey } = await generateKeyPair("ECDH-ES+A256KW", { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, "sha256");
  return { privateKey, kid, jwk: { ...pub, kid, alg: "ECDH-ES+A256KW", use: "enc" } as JWK & { kid: string } };
}

describe("encryptToSam (R-3.2.1.2 / T-2.2.1.5 confidentiality of R.SAD)", () => {
  it("R-3.2.1.2 / T-2.2.1.5: encrypts bytes or JSON to a GetInfo key: ECDH-ES+A256KW, A256GCM, kid in the protected header", async () => {
    const k = await samKey();
    const fromGetInfo = create(SamEncryptionKeySchema, { kid: k.kid, alg: JweAlgorithm.ECDH_ES_A256KW, jwk: JSON.stringify(k.jwk), current: true });
    const jwe = await encryptToSam(fromGetInfo, { pin: "123456" }, { cty: "inkan-sad-envelope+json" });
    expect(decodeProtectedHeader(jwe)).toMatchObject({ alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: k.kid, cty: "inkan-sad-envelope+json" });
    expect(Object.keys(decodeProtectedHeader(jwe)).sort()).toEqual(["alg", "cty", "enc", "epk", "kid"]);
    const { plaintext } = await compactDecrypt(jwe, k.privateKey);
    expect(JSON.parse(new TextDecoder().decode(plaintext))).toEqual({ pin: "123456" });
    const bytes = Uint8Array.of(1, 2, 3);
    const jwe2 = await encryptToSam({ kid: k.kid, alg: "ECDH-ES+A256KW", jwk: k.jwk }, bytes);
    expect((await compactDecrypt(jwe2, k.privateKey)).plaintext).toEqual(bytes);
    expect(jwe2.split(".")[1]).not.toBe(jwe.split(".")[1]); // a fresh ephemeral key and content key per call
  });

  it("R-3.2.1.2: refuses a key with a private member, of another type or algorithm, or a mismatched kid", async () => {
    const k = await samKey();
    const base = { kid: k.kid, alg: "ECDH-ES+A256KW", jwk: k.jwk };
    await expect(encryptToSam({ ...base, jwk: { ...k.jwk, d: "AAAA" } }, {})).rejects.toThrow(/private member/);
    await expect(encryptToSam({ ...base, alg: "RSA-OAEP" }, {})).rejects.toThrow(/algorithm/);
    await expect(encryptToSam({ ...base, jwk: { ...k.jwk, crv: "P-384" } }, {})).rejects.toThrow(/P-256/);
    await expect(encryptToSam({ ...base, jwk: { ...k.jwk, use: "sig" } }, {})).rejects.toThrow(/use/);
    await expect(encryptToSam(base, {}, { kid: "other" })).rejects.toThrow(/kid/);
    await expect(encryptToSam({ ...base, kid: "other" }, {})).rejects.toThrow(/kid/);
  });
});
