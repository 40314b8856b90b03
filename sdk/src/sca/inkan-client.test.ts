import { createHash, generateKeyPairSync, sign } from "node:crypto";
import { Code, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Reason } from "../gen/inkan/sam/v1/error_pb.js";
import { SignatureActivationService } from "../gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "../gen/inkan/sam/v1/types_pb.js";
import { InkanError } from "../inkan-error.js";
import { InkanClient, type SignAllOptions } from "./inkan-client.js";
import type { VerifyPool } from "./verify-pool.js";

// Issue 20: signAll's check of every returned signature (T-2.2.1.8) gives the same outcome on
// worker threads (verifyThreads > 1) as on the calling thread (verifyThreads: 1): a signature is
// stored, counted and reported only after it verified, and the first forged one in list order
// ends the call with SIGNATURE_CHECK_FAILED and its index. A fake SAM (in-process router) signs.
const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const spki = new Uint8Array(publicKey.export({ format: "der", type: "spki" }));
const docs = Array.from({ length: 2_000 }, (_, i) => Buffer.from(`invoice ${i}`));
const genuine = docs.map((d) => new Uint8Array(sign("sha256", d, privateKey)));
const chunk = 500;

/** A SAM that returns `signatures` (by list index) in SignHash batches and SignStream messages of 500. */
function fakeSam(signatures: readonly Uint8Array[], skipAt = Infinity) {
  return createRouterTransport((router) =>
    router.service(SignatureActivationService, {
      getInfo: () => ({ limits: { maxHashesPerChunk: chunk } }),
      getCredential: (req) => ({ credential: { credentialId: req.credentialId, publicKeySpki: spki, hashAlgorithms: [HashAlgorithm.SHA256] } }),
      beginTransaction: (req) => ({ transactionId: "tx", nextChunkIndex: 1, ...(req.numSignatures <= chunk ? { sadChallenge: undefined } : {}) }),
      appendHashes: (req) => ({ nextChunkIndex: req.chunkIndex + 1 }),
      sealTransaction: (req) => ({ sadChallenge: { transactionId: "tx", dtbsrDigest: req.dtbsrDigest, numSignatures: docs.length, hashAlgorithm: HashAlgorithm.SHA256 } }),
      authorize: () => ({ sadToken: "sad" }),
      signHash: (req) => {
        const hashes = req.hashes.map((h) => Buffer.from(h).toString("hex"));
        return { signatures: hashes.map((h) => signatures[index(h)]!), nextSadToken: "next" };
      },
      async *signStream(req) {
        for (let at = req.startIndex; at < signatures.length; at += chunk) {
          yield { resumeToken: "resume", signatures: signatures.slice(at, at + chunk).map((signature, k) => ({ index: at + k < skipAt ? at + k : at + k + 1, signature })) };
        }
      },
    }),
  );
}
const byHash = new Map(docs.map((d, i) => [createHash("sha256").update(d).digest("hex"), i]));
const index = (hashHex: string) => byHash.get(hashHex)!;

interface Outcome {
  error: { reason: Reason; code: Code; index: number | undefined; detectedBySdk: boolean } | undefined;
  progress: number[];
  received: number;
  stored: number;
}

async function run(verifyThreads: number, signatures: readonly Uint8Array[], mode: SignAllOptions["mode"], o: { skipAt?: number; crash?: boolean } = {}): Promise<Outcome> {
  const inkan = new InkanClient(fakeSam(signatures, o.skipAt), { verifyThreads });
  try {
    const tx = await inkan.beginTransaction({ signerId: "s", credentialId: "c", documents: docs, description: "Invoices" });
    await tx.authorize("r-sad");
    if (o.crash) (inkan as unknown as { pool: VerifyPool }).pool.testHooks.onDispatch = (w) => void w.terminate();
    const progress: number[] = [];
    let error: Outcome["error"];
    try {
      await tx.signAll({ mode, onProgress: (p) => progress.push(p.signed) });
    } catch (err) {
      if (!(err instanceof InkanError)) throw err;
      error = { reason: err.reason, code: err.code, index: err.index, detectedBySdk: err.detectedBySdk };
    }
    const state = tx as unknown as { received: number; signatures: (Uint8Array | undefined)[] };
    return { error, progress, received: state.received, stored: state.signatures.filter(Boolean).length };
  } finally {
    inkan.close();
  }
}

describe("signAll's signature check on worker threads (issue 20, T-2.2.1.8)", () => {
  for (const mode of ["stream", "batches"] as const) {
    it(`a forged signature in the middle of a 2,000-signature ${mode === "stream" ? "stream" : "run of SignHash batches"} is caught with its index, and nothing after it is accepted, as in-thread`, async () => {
      const forged = [...genuine];
      forged[1_234] = genuine[1_235]!; // another document's genuine signature
      forged[1_700] = new Uint8Array(genuine[1_700]!).fill(7, 10, 12);
      const parallel = await run(2, forged, mode);
      expect(parallel).toEqual({ error: { reason: Reason.SIGNATURE_CHECK_FAILED, code: Code.DataLoss, index: 1_234, detectedBySdk: true }, progress: [500, 1_000], received: 1_234, stored: 1_234 });
      expect(await run(1, forged, mode)).toEqual(parallel);
    }, 60_000);

    it(`every genuine signature of a 2,000-signature ${mode} is accepted on worker threads, progress as in-thread`, async () => {
      const parallel = await run(2, genuine, mode);
      expect(parallel).toEqual({ error: undefined, progress: [500, 1_000, 1_500, 2_000], received: 2_000, stored: 2_000 });
      expect(await run(1, genuine, mode)).toEqual(parallel);
    }, 60_000);
  }

  it("a stream that skips an index keeps what came before the skip; a forged signature before the skip is reported first, as in-thread", async () => {
    for (const threads of [2, 1]) {
      expect(await run(threads, genuine, "stream", { skipAt: 1_300 })).toEqual({
        error: { reason: Reason.INTEGRITY_VIOLATION, code: Code.DataLoss, index: undefined, detectedBySdk: true }, progress: [500, 1_000], received: 1_300, stored: 1_300,
      });
      const forged = [...genuine];
      forged[1_250] = genuine[1_251]!;
      expect(await run(threads, forged, "stream", { skipAt: 1_300 })).toMatchObject({ error: { reason: Reason.SIGNATURE_CHECK_FAILED, index: 1_250 }, received: 1_250 });
    }
  }, 60_000);

  for (const mode of ["stream", "batches"] as const) {
    it(`fails closed (${mode}): a verifier worker that stops fails the call, and none of its signatures is accepted`, async () => {
      const outcome = await run(2, genuine, mode, { crash: true });
      expect(outcome).toEqual({ error: { reason: Reason.UNSPECIFIED, code: Code.Internal, index: undefined, detectedBySdk: true }, progress: [], received: 0, stored: 0 });
    }, 60_000);
  }
});
