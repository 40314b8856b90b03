import { createHash, generateKeyPairSync } from "node:crypto";
import { calculateJwkThumbprint, compactDecrypt, compactVerify, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { createDeviceKey } from "./device-key.js";
import { buildKeyImportConsent, keyImportConsentEnvelopeCty, keyImportConsentTyp } from "./key-import-consent.js";

async function samKey() {
  const { publicKey, privateKey } = await generateKeyPair("ECDH-ES+A256KW", { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, "sha256");
  return { privateKey, kid, jwk: { ...pub, kid, alg: "ECDH-ES+A256KW", use: "enc" } as JWK & { kid: string } };
}

describe("buildKeyImportConsent (registration.proto ImportKeyRequest.signer_consent)", () => {
  it("T-2.1.4.1 T-2.1.4.2: a JWE to the SAM holding exactly the PIN and a device-key JWS naming the signer, the SPKI hash, the algorithm and the challenge", async () => {
    const sam = await samKey();
    const deviceKey = await createDeviceKey();
    const spki = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "der" });
    const challenge = new Uint8Array(32).fill(7);
    const jwe = await buildKeyImportConsent({
      signerId: "sgn-1", pin: "246813579", deviceKey, publicKeySpki: spki, keyAlgorithm: "KEY_ALGORITHM_EC_P256",
      challenge, audience: "urn:inkan:sam:x", samKey: { kid: sam.kid, alg: "ECDH-ES+A256KW", jwk: sam.jwk },
    });
    expect(decodeProtectedHeader(jwe)).toMatchObject({ alg: "ECDH-ES+A256KW", cty: keyImportConsentEnvelopeCty, kid: sam.kid });
    const envelope = JSON.parse(new TextDecoder().decode((await compactDecrypt(jwe, sam.privateKey)).plaintext)) as { pin: string; proof: string };
    expect(Object.keys(envelope).sort()).toEqual(["pin", "proof"]);
    expect(envelope.pin).toBe("246813579");
    expect(decodeProtectedHeader(envelope.proof)).toEqual({ alg: deviceKey.alg, typ: keyImportConsentTyp, kid: deviceKey.kid });
    await compactVerify(envelope.proof, await importJWK(deviceKey.publicJwk, deviceKey.alg));
    const claims = decodeJwt(envelope.proof);
    expect(Object.keys(claims).sort()).toEqual(["action", "aud", "chal", "exp", "iat", "jti", "kalg", "spki", "sub"]);
    expect(claims).toMatchObject({
      sub: "sgn-1", aud: "urn:inkan:sam:x", action: "import_key", kalg: "KEY_ALGORITHM_EC_P256",
      spki: createHash("sha256").update(spki).digest("base64url"), chal: Buffer.from(challenge).toString("base64url"),
    });
  });

  it("refuses a key algorithm that is not a KeyAlgorithm value name", async () => {
    const sam = await samKey();
    const input = {
      signerId: "sgn-1", pin: "246813579", deviceKey: await createDeviceKey(), publicKeySpki: new Uint8Array(40), keyAlgorithm: "EC_P256",
      challenge: new Uint8Array(32), audience: "a", samKey: { kid: sam.kid, alg: "ECDH-ES+A256KW", jwk: sam.jwk },
    };
    await expect(buildKeyImportConsent(input)).rejects.toThrow(/KeyAlgorithm value name/);
  });
});
