import { createHash, createPublicKey, randomBytes, verify } from "node:crypto";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { buildRSad, dtbsrDigest } from "@inkan/sdk";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { benchPin, type BenchSigner } from "./bench-sam.js";

/**
 * Documents to sign: message i is `<random prefix>-i` and its DTBS/R is its SHA-256, so any
 * signature can be checked afterwards with node:crypto against the credential's public key.
 */
export class Documents {
  readonly prefix = randomBytes(9).toString("base64url");
  readonly hashes: Uint8Array[];

  constructor(readonly count: number) {
    this.hashes = Array.from({ length: count }, (_, i) => new Uint8Array(createHash("sha256").update(this.message(i)).digest()));
  }

  message(i: number): string {
    return `${this.prefix}-${i}`;
  }
}

/** True when `signature` (DER ECDSA, the default format) is the signer's over message `message`. */
export function signatureVerifies(signer: BenchSigner, message: string, signature: Uint8Array): boolean {
  return verify("sha256", Buffer.from(message), createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: "der", type: "spki" }), signature);
}

/**
 * One SCA client of the benchmark (one HTTP/2 connection) acting for the bench signer, whose
 * device builds each R.SAD with the SDK's `buildRSad` in this process.
 */
export class BenchSca {
  readonly sam: Client<typeof SignatureActivationService>;

  /** `chunk`: the SAM's max_hashes_per_chunk (GetInfo limits), for lists uploaded in chunks. */
  constructor(transport: Transport, readonly signer: BenchSigner, readonly chunk: number) {
    this.sam = createClient(SignatureActivationService, transport);
  }

  /**
   * A sealed transaction over `hashes`: inline in BeginTransaction when they fit in one chunk,
   * otherwise BeginTransaction + AppendHashes + SealTransaction with the SDK's DTBS/R digest.
   */
  async begin(hashes: Uint8Array[]): Promise<SadChallenge> {
    const first = hashes.slice(0, this.chunk);
    const begun = await this.sam.beginTransaction({
      credentialId: this.signer.credentialId, signerId: this.signer.signerId, hashAlgorithm: HashAlgorithm.SHA256,
      numSignatures: hashes.length, hashes: first, description: `Benchmark, ${hashes.length} hashes`,
    });
    if (begun.sadChallenge) return begun.sadChallenge;
    for (let k = 1, from = this.chunk; from < hashes.length; k++, from += this.chunk) {
      await this.sam.appendHashes({ transactionId: begun.transactionId, chunkIndex: k, hashes: hashes.slice(from, from + this.chunk) });
    }
    const sealed = await this.sam.sealTransaction({ transactionId: begun.transactionId, dtbsrDigest: await dtbsrDigest(HashAlgorithm.SHA256, hashes) });
    return sealed.sadChallenge!;
  }

  /** The signer's device: R.SAD over the challenge (device-key JWS + PIN in a JWE to the SAM). */
  rSad(ch: SadChallenge): Promise<string> {
    return buildRSad({
      deviceKey: this.signer.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
      challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: benchPin, samKey: ch.encryptionKey!,
    });
  }

  /** Begin (+ upload) + R.SAD + Authorize: the first SAD token. */
  async authorized(hashes: Uint8Array[]): Promise<string> {
    const ch = await this.begin(hashes);
    return (await this.sam.authorize({ transactionId: ch.transactionId, rSad: await this.rSad(ch) })).sadToken;
  }
}
