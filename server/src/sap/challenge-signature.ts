/**
 * The SAM's signature over every SadChallenge (sam.proto SadChallenge.sam_signature; issue 13,
 * finding 6). The SCA relays the challenge to the signer's device; without a signature it could
 * show the signer a description, count or encryption key of its own choosing. The device checks
 * this JWS against the key it pinned (GetInfoResponse.challenge_signing_key) and that every signed
 * value equals what it shows and builds the R.SAD from (T-2.2.1.7, R-3.2.1.1).
 *
 * The key is the crypto module's "challenge-signing" system key (EC P-256, created by `inkan
 * init`, used for nothing else); the signature is made inside the module and checked against the
 * public key before it leaves, so a module fault never hands out a challenge that fails on the device.
 */
import { createHash, createPublicKey, verify, type KeyObject } from "node:crypto";
import type { AuditSigning } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import { thumbprint } from "../keys/sam-encryption-keys.js";
import { descriptionDigest } from "./seen-claims.js";

/** The JWS "typ" of SadChallenge.sam_signature. */
export const sadChallengeTyp = "inkan-sad-challenge+jwt";

/** The SadChallenge fields the signature covers, as the wire carries them (enums as their numbers). */
export interface SignedChallengeFields {
  transactionId: string;
  signerId: string;
  credentialId: string;
  audience: string;
  challenge: Uint8Array;
  dtbsrDigest: Uint8Array;
  /** HashAlgorithm enum number. */
  hashAlgorithm: number;
  numSignatures: number;
  description: string;
  expiresAt: Date;
  /** The SAM encryption key the device encrypts the R.SAD (and its PIN) to; JweAlgorithm enum number. */
  encryptionKey: { kid: string; alg: number; jwk: { x: string; y: string } };
  /** AssuranceLevel enum number. */
  assuranceLevel: number;
  /** AuthenticationMethod enum numbers, in field order. */
  authenticationMethods: readonly number[];
}

/** GetInfoResponse.challenge_signing_key: the public half, its RFC 7638 thumbprint as kid. */
export interface ChallengeSigningKey {
  kid: string;
  jwk: { kty: "EC"; crv: "P-256"; x: string; y: string; kid: string; alg: "ES256"; use: "sig" };
}

/** The JWS payload of sam.proto SadChallenge.sam_signature: exactly these members. */
export function challengePayload(f: SignedChallengeFields): Record<string, unknown> {
  return {
    txn: f.transactionId,
    sub: f.signerId,
    cred: f.credentialId,
    aud: f.audience,
    chal: b64(f.challenge),
    dtbsr: b64(f.dtbsrDigest),
    halg: f.hashAlgorithm,
    n: f.numSignatures,
    desc: descriptionDigest(f.description),
    exp_ms: f.expiresAt.getTime(),
    ekid: f.encryptionKey.kid,
    ealg: f.encryptionKey.alg,
    // T-2.2.1.5: the key the PIN is encrypted to; a relay that swaps it breaks the signature.
    ejkt: thumbprint(f.encryptionKey.jwk.x, f.encryptionKey.jwk.y),
    lvl: f.assuranceLevel,
    amr: [...f.authenticationMethods],
  };
}

/**
 * Signs SadChallenges with the module's "challenge-signing" key.
 *
 * @example
 * const signer = new ChallengeSigner(crypto);
 * const samSignature = await signer.sign(fields); // SadChallenge.sam_signature
 */
export class ChallengeSigner {
  #key: Promise<ChallengeSigningKey & { keyObject: KeyObject }> | undefined;

  constructor(private readonly crypto: Pick<AuditSigning, "signWithSystemKey" | "systemPublicKey">) {}

  /** The public key, read once from the module (read again after a failure). */
  async publicKey(): Promise<ChallengeSigningKey> {
    const { kid, jwk } = await this.#publicKey();
    return { kid, jwk };
  }

  /** SadChallenge.sam_signature over `fields`: a compact ES256 JWS. Fails closed (nothing unsigned leaves). */
  async sign(fields: SignedChallengeFields): Promise<string> {
    const key = await this.#publicKey();
    const header = { alg: "ES256", typ: sadChallengeTyp, kid: key.kid };
    const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(challengePayload(fields)))}`;
    // T-2.2.1.7: signed inside the crypto module; ES256 wants raw r || s.
    const signature = await this.crypto.signWithSystemKey("challenge-signing", { hash: createHash("sha256").update(input).digest(), format: "raw" });
    if (!verify("sha256", Buffer.from(input), { key: key.keyObject, dsaEncoding: "ieee-p1363" }, signature)) {
      throw new InkanError("CRYPTO_MODULE_FAILURE", "the challenge signature does not verify");
    }
    return `${input}.${b64(signature)}`;
  }

  #publicKey(): Promise<ChallengeSigningKey & { keyObject: KeyObject }> {
    if (this.#key) return this.#key;
    const loading = (async () => {
      const keyObject = createPublicKey({ key: Buffer.from(await this.crypto.systemPublicKey("challenge-signing")), format: "der", type: "spki" });
      const { kty, crv, x, y } = keyObject.export({ format: "jwk" });
      if (kty !== "EC" || crv !== "P-256" || !x || !y) throw new InkanError("CRYPTO_MODULE_FAILURE", "the challenge-signing key is not P-256");
      const kid = thumbprint(x, y);
      return { kid, jwk: { kty, crv, x, y, kid, alg: "ES256", use: "sig" }, keyObject } as const;
    })();
    loading.catch(() => {
      if (this.#key === loading) this.#key = undefined;
    });
    this.#key = loading;
    return loading;
  }
}

const b64 = (data: Uint8Array | string): string => Buffer.from(data).toString("base64url");
