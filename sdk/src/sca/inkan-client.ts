/**
 * The SCA's high-level API over the SAP (sam.proto SignatureActivationService): open a
 * transaction from hashes or documents (chunked past Limits.max_hashes_per_chunk), relay the
 * signer's R.SAD, and sign everything with SignHash batches or a resumable SignStream, checking
 * every signature against the credential's key before handing it back (T-2.2.1.8). Every call
 * throws {@link InkanError} and takes an AbortSignal and a deadline.
 */
import { createHash, createPublicKey, X509Certificate } from "node:crypto";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Client, type Transport } from "@connectrpc/connect";
import { Reason } from "../gen/inkan/sam/v1/error_pb.js";
import { SignatureActivationService, type CredentialInfo, type GetInfoResponse, type SadChallenge, type SignHashResponse } from "../gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm, SignatureAlgorithm, SignatureFormat } from "../gen/inkan/sam/v1/types_pb.js";
import { InkanError, mapErrors, toInkanError } from "../inkan-error.js";
import { dtbsrDigest } from "./dtbsr-digest.js";
import { createSignatureVerifier, type SignatureCheck, type SignatureVerifierOptions } from "./signature-verifier.js";
import { createBatchSignatureVerifier, defaultVerifyThreads, VerifyPool, verifyParallelMin, type BatchSignatureCheck } from "./verify-pool.js";

/** Cancellation and deadline of one SDK call. */
export interface CallOptions {
  /** Aborting it cancels the call (InkanError with code Canceled). */
  signal?: AbortSignal;
  /** The whole call's deadline in milliseconds (InkanError with code DeadlineExceeded). */
  timeoutMs?: number;
}

export interface BeginTransactionInput {
  signerId: string;
  credentialId: string;
  /** What is being signed, in words the signer understands; their device shows it. 1 to 500 characters. */
  description: string;
  /** The ordered DTBS/R list (hashes in `hashAlgorithm`). Exactly one of hashes and documents. */
  hashes?: readonly Uint8Array[];
  /** Documents to hash with `hashAlgorithm` (taken as they are for HASH_ALGORITHM_NONE, pure EdDSA). */
  documents?: readonly Uint8Array[];
  /** Default: the credential's first hash algorithm (CredentialInfo.hash_algorithms). */
  hashAlgorithm?: HashAlgorithm;
  /** Default: the credential's default scheme. */
  signatureAlgorithm?: SignatureAlgorithm;
  /** ECDSA encoding; default DER. */
  signatureFormat?: SignatureFormat;
  /** Transaction lifetime once sealed; default the SAM's default_transaction_lifetime. */
  lifetimeSeconds?: number;
}

/** Progress of {@link SigningTransaction.signAll}. */
export interface SignProgress {
  /** Signatures received and verified so far. */
  signed: number;
  total: number;
}

export interface SignAllOptions extends CallOptions {
  /** Called after every batch or stream message with the verified count. */
  onProgress?: (progress: SignProgress) => void;
  /** "auto" (default): SignHash batches up to max_hashes_per_chunk hashes, SignStream beyond. */
  mode?: "auto" | "batches" | "stream";
  /** Hashes per SignHash call (at most max_hashes_per_chunk, the default). */
  batchSize?: number;
  /** How many times an interrupted stream is resumed before giving up; default 5. */
  maxResumes?: number;
  /**
   * A stream is started only with at least this much of the deadline left, in ms (default
   * {@link streamDefaults}.minStartMs): starting one spends the SAD token, and a client whose
   * deadline ends before the first message (the resume token) arrives could not resume. With
   * less left, signAll fails with DeadlineExceeded and the token is kept for a later call.
   */
  minStreamStartMs?: number;
  /**
   * A stream that sends nothing for this long, in ms, is abandoned and resumed from the newest
   * resume token (default {@link streamDefaults}.idleMs; the SAM sends a message at least every 10
   * seconds while it signs).
   */
  streamIdleTimeoutMs?: number;
}

/**
 * The SDK's safe defaults for SignStream (sam.proto SignStream, issue 18 item 12): a stream is
 * not started with less than minStartMs of the deadline left, and one silent for idleMs is
 * resumed. Without any deadline a stream still ends: it is resumed after idleMs of silence.
 */
export const streamDefaults = { minStartMs: 10_000, idleMs: 60_000 } as const;

export interface InkanClientOptions {
  /** Deadline of every call that has no timeoutMs of its own; default none. */
  defaultTimeoutMs?: number;
  /**
   * Worker threads that check the returned signatures (T-2.2.1.8) of a batch or stream message
   * of at least 64 signatures, so the SDK keeps up with the SAM (issue 20); default
   * min(4, os.availableParallelism()). 1: every signature is checked on the calling thread.
   * Either way a signature is accepted only after it verified, in list order.
   */
  verifyThreads?: number;
}

const infoTtlMs = 5 * 60_000; // GetInfo may be cached for a few minutes (sam.proto)

/**
 * A SAM client for an SCA. Build it with `createInkanClient` (Connect/gRPC over mTLS) or
 * `createInkanGrpcJsClient`; `sam` is the generated client for everything else.
 *
 * @example
 * const inkan = createInkanClient({ baseUrl, tls: { ca, cert, key } });
 * const tx = await inkan.beginTransaction({ signerId, credentialId, documents, description: "Invoices 2026-11" });
 * await tx.authorize(await askSignerDevice(tx.challenge));
 * const signatures = await tx.signAll({ onProgress: ({ signed, total }) => bar.update(signed / total) });
 */
export class InkanClient {
  /** The generated SignatureActivationService client on the same transport. */
  readonly sam: Client<typeof SignatureActivationService>;
  private info: { value: GetInfoResponse; at: number } | undefined;
  private pool: VerifyPool | undefined;

  constructor(transport: Transport, private readonly options: InkanClientOptions = {}, private readonly closeTransport: () => void = () => {}) {
    this.sam = createClient(SignatureActivationService, transport);
  }

  /**
   * Releases the connection where the transport holds one open (the grpc-js channel); the
   * Connect transports close idle HTTP/2 sessions themselves.
   *
   * @example
   * inkan.close();
   */
  close(): void {
    this.closeTransport();
    void this.pool?.close(); // its workers are unref'd while idle: the process may exit without this
    this.pool = undefined;
  }

  /**
   * GetInfo, cached for five minutes: the SAM id, limits, algorithms and encryption keys.
   *
   * @example
   * const { limits } = await inkan.getInfo();
   */
  async getInfo(o: CallOptions = {}): Promise<GetInfoResponse> {
    if (this.info && Date.now() - this.info.at < infoTtlMs) return this.info.value;
    const value = await mapErrors(() => this.sam.getInfo({}, this.callOptions(o)));
    this.info = { value, at: Date.now() };
    return value;
  }

  /**
   * GetCredential: one credential with its public key, certificate chain and status.
   *
   * @example
   * const credential = await inkan.getCredential(credentialId);
   */
  async getCredential(credentialId: string, o: CallOptions = {}): Promise<CredentialInfo> {
    const res = await mapErrors(() => this.sam.getCredential({ credentialId }, this.callOptions(o)));
    return res.credential!;
  }

  /**
   * Opens a transaction over hashes or documents. A list longer than max_hashes_per_chunk goes up
   * in chunks (BeginTransaction, AppendHashes, SealTransaction with the SDK's own DTBS/R digest,
   * R-3.2.1.4). Relay `tx.challenge` to the signer's device; its R.SAD goes to `tx.authorize`.
   *
   * @example
   * const tx = await inkan.beginTransaction({ signerId, credentialId, hashes, description: "Contract 42" });
   */
  async beginTransaction(input: BeginTransactionInput, o: CallOptions = {}): Promise<SigningTransaction> {
    if ((input.hashes === undefined) === (input.documents === undefined)) throw invalid("pass exactly one of hashes and documents");
    const deadline = this.deadline(o);
    const [info, credential] = await Promise.all([this.getInfo(deadline.next()), this.getCredential(input.credentialId, deadline.next())]);
    const hashAlgorithm = input.hashAlgorithm ?? credential.hashAlgorithms[0] ?? HashAlgorithm.SHA256;
    const hashes = input.hashes ? [...input.hashes] : input.documents!.map((d) => hashDocument(hashAlgorithm, d));
    if (hashes.length === 0) throw invalid("nothing to sign");
    let check: SignatureCheck;
    let key: SignatureVerifierOptions;
    try {
      key = {
        spki: credentialKey(credential),
        hashAlgorithm,
        expectedSignatures: hashes.length,
        ...(input.signatureAlgorithm !== undefined ? { signatureAlgorithm: input.signatureAlgorithm } : {}),
        ...(input.signatureFormat !== undefined ? { signatureFormat: input.signatureFormat } : {}),
      };
      check = createSignatureVerifier(key);
    } catch (err) {
      if (err instanceof InkanError) throw err;
      throw sdkError(Reason.ALGORITHM_NOT_ALLOWED, Code.InvalidArgument, `the SDK cannot check these signatures: ${(err as Error).message}`);
    }
    const chunk = info.limits!.maxHashesPerChunk;
    const digest = await dtbsrDigest(hashAlgorithm, hashes);
    const begun = await mapErrors(() => this.sam.beginTransaction({
      credentialId: input.credentialId,
      signerId: input.signerId,
      hashAlgorithm,
      signatureAlgorithm: input.signatureAlgorithm ?? SignatureAlgorithm.UNSPECIFIED,
      signatureFormat: input.signatureFormat ?? SignatureFormat.UNSPECIFIED,
      numSignatures: hashes.length,
      hashes: hashes.slice(0, chunk),
      description: input.description,
      ...(input.lifetimeSeconds !== undefined ? { lifetime: durationFromMs(input.lifetimeSeconds * 1000) } : {}),
    }, deadline.next()));
    let challenge = begun.sadChallenge;
    if (!challenge) {
      let next = begun.nextChunkIndex;
      for (let at = chunk; at < hashes.length; at += chunk) {
        const chunkIndex = next;
        const res = await mapErrors(() => this.sam.appendHashes({ transactionId: begun.transactionId, chunkIndex, hashes: hashes.slice(at, at + chunk) }, deadline.next()));
        next = res.nextChunkIndex;
      }
      // R-3.2.1.4: the SAM seals only if its digest of what arrived equals ours.
      const sealed = await mapErrors(() => this.sam.sealTransaction({ transactionId: begun.transactionId, dtbsrDigest: digest }, deadline.next()));
      challenge = sealed.sadChallenge!;
    }
    // The challenge the signer will approve must describe exactly our list (R-3.2.1.4, T-2.2.1.6).
    if (!equalBytes(challenge.dtbsrDigest, digest) || challenge.numSignatures !== hashes.length || challenge.hashAlgorithm !== hashAlgorithm) {
      await this.sam.cancelTransaction({ transactionId: begun.transactionId }).catch(() => undefined); // best effort: never authorize it
      throw sdkError(Reason.INTEGRITY_VIOLATION, Code.DataLoss, "the SAM's challenge does not describe the DTBS/R list sent");
    }
    const threads = Math.floor(this.options.verifyThreads ?? defaultVerifyThreads());
    const parallel = threads > 1 && hashes.length >= verifyParallelMin ? createBatchSignatureVerifier({ ...key, pool: (this.pool ??= new VerifyPool(threads)) }) : undefined;
    return new SigningTransaction(this.sam, challenge, hashes, check, chunk, (x) => this.callOptions(x), parallel);
  }

  private callOptions(o: CallOptions): CallOptions {
    const timeoutMs = o.timeoutMs ?? this.options.defaultTimeoutMs;
    return { ...(o.signal ? { signal: o.signal } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
  }

  private deadline(o: CallOptions) {
    return deadlineOf(this.callOptions(o));
  }
}

/**
 * One open transaction of this SCA: its SadChallenge for the signer's device, then its SAD token
 * after {@link authorize}, then its signatures. Signatures come back in list order, each verified
 * against the credential's public key or certificate (T-2.2.1.8).
 *
 * @example
 * const tx = await inkan.beginTransaction({ signerId, credentialId, hashes, description: "Batch 7" });
 * await tx.authorize(rSad);
 * const signatures = await tx.signAll();
 */
export class SigningTransaction {
  /** The transaction id. */
  readonly id: string;
  /** The latest one-time SAD or resume token. A secret: never log it. */
  private token: string | undefined;
  private readonly signatures: (Uint8Array | undefined)[];
  private received = 0;

  constructor(
    private readonly sam: Client<typeof SignatureActivationService>,
    /** What the signer's device needs to build R.SAD; relay it unchanged. */
    readonly challenge: SadChallenge,
    /** The ordered DTBS/R list. */
    readonly hashes: readonly Uint8Array[],
    private readonly check: SignatureCheck,
    private readonly chunk: number,
    private readonly callOptions: (o: CallOptions) => CallOptions,
    /** Issue 20: batches of at least 64 signatures are checked on these worker threads (InkanClientOptions.verifyThreads). */
    private readonly parallel?: BatchSignatureCheck,
  ) {
    this.id = challenge.transactionId;
    this.signatures = Array.from({ length: hashes.length }, () => undefined); // dense: every index is visited
  }

  /**
   * Relays the signer's R.SAD (Authorize) and keeps the one-time SAD token it returns.
   *
   * @example
   * await tx.authorize(rSad); // rSad from buildRSad on the signer's device
   */
  async authorize(rSad: string, o: CallOptions = {}): Promise<void> {
    const res = await mapErrors(() => this.sam.authorize({ transactionId: this.id, rSad }, this.callOptions(o)));
    this.token = res.sadToken;
  }

  /**
   * The one-call form for a single document (or any list up to max_hashes_per_chunk): SignHash
   * with inline_authorization authorizes and signs at once. Returns the verified signatures.
   *
   * @example
   * const [signature] = await tx.authorizeAndSign(rSad);
   */
  async authorizeAndSign(rSad: string, o: CallOptions = {}): Promise<Uint8Array[]> {
    if (this.hashes.length > this.chunk) throw invalid(`the one-call form takes at most ${this.chunk} hashes; use authorize and signAll`);
    const res = await mapErrors(() => this.sam.signHash({
      authorization: { case: "inlineAuthorization", value: { transactionId: this.id, rSad } },
      hashes: [...this.hashes],
    }, this.callOptions(o)));
    await this.acceptBatch(this.hashes.map((_, i) => i), res);
    return this.result();
  }

  /**
   * Signs every DTBS/R: SignHash batches (method 1 + 2, a fresh token per call) for lists up to
   * max_hashes_per_chunk, SignStream beyond, resuming an interrupted stream from the newest resume
   * token at the lowest index not yet received. Every signature is verified before it is returned;
   * one that does not verify ends the call with InkanError reason SIGNATURE_CHECK_FAILED.
   *
   * @example
   * const signatures = await tx.signAll({ onProgress: ({ signed, total }) => console.log(`${signed}/${total}`) });
   */
  async signAll(o: SignAllOptions = {}): Promise<Uint8Array[]> {
    if (!this.token) throw sdkError(Reason.TRANSACTION_STATE, Code.FailedPrecondition, "authorize the transaction before signing");
    const deadline = deadlineOf(this.callOptions(o));
    const mode = o.mode === "batches" || (o.mode !== "stream" && this.hashes.length <= this.chunk) ? "batches" : "stream";
    if (mode === "batches") await this.signInBatches(Math.min(o.batchSize ?? this.chunk, this.chunk), deadline, o.onProgress);
    else await this.signInStream({ maxResumes: o.maxResumes ?? 5, minStartMs: o.minStreamStartMs ?? streamDefaults.minStartMs, idleMs: o.streamIdleTimeoutMs ?? streamDefaults.idleMs }, deadline, o.onProgress);
    return this.result();
  }

  /**
   * CancelTransaction: ends the transaction; its challenge and tokens stop working at once.
   *
   * @example
   * await tx.cancel();
   */
  async cancel(o: CallOptions = {}): Promise<void> {
    await mapErrors(() => this.sam.cancelTransaction({ transactionId: this.id }, this.callOptions(o)));
  }

  private async signInBatches(batchSize: number, deadline: Deadline, onProgress?: (p: SignProgress) => void): Promise<void> {
    const missing = this.signatures.flatMap((s, i) => (s ? [] : [i]));
    for (let at = 0; at < missing.length; at += batchSize) {
      const indices = missing.slice(at, at + batchSize);
      const sadToken = this.takeToken();
      const res = await mapErrors(() => this.sam.signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: indices.map((i) => this.hashes[i]!) }, deadline.next()));
      this.token = res.nextSadToken || undefined; // method 2: the next call needs the fresh token
      await this.acceptBatch(indices, res);
      onProgress?.({ signed: this.received, total: this.hashes.length });
    }
  }

  private async signInStream(limits: { maxResumes: number; minStartMs: number; idleMs: number }, deadline: Deadline, onProgress?: (p: SignProgress) => void): Promise<void> {
    for (let resumes = 0; ; resumes++) {
      const startIndex = this.signatures.findIndex((s) => !s);
      if (startIndex < 0) return;
      // Issue 18 item 12: never spend the token on a stream whose deadline ends before its first message (the resume token) can arrive.
      const left = deadline.remainingMs();
      if (left !== undefined && left < limits.minStartMs) {
        throw new InkanError({ message: `less than ${limits.minStartMs} ms of the deadline left: the stream was not started and the SAD token is kept`, reason: Reason.UNSPECIFIED, code: Code.DeadlineExceeded });
      }
      let started = false;
      const idle = new AbortController();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const quiet = () => {
        clearTimeout(timer);
        timer = setTimeout(() => idle.abort(), limits.idleMs);
      };
      try {
        const call = deadline.next();
        const signal = call.signal ? AbortSignal.any([call.signal, idle.signal]) : idle.signal;
        const sadToken = this.takeToken();
        let expected = startIndex;
        quiet();
        for await (const m of this.sam.signStream({ sadToken, startIndex }, { ...call, signal })) {
          quiet();
          started = true;
          if (m.resumeToken) this.token = m.resumeToken; // the newest resume token
          const first = expected;
          expected += await this.acceptAll(m.signatures.map((s) => [s.index, s.signature] as const), (index, k) => {
            if (index !== first + k) throw sdkError(Reason.INTEGRITY_VIOLATION, Code.DataLoss, "the SAM's stream skipped or repeated an index");
          });
          if (m.signatures.length) onProgress?.({ signed: this.received, total: this.hashes.length });
        }
        if (this.signatures.some((s) => !s)) throw sdkError(Reason.INTEGRITY_VIOLATION, Code.DataLoss, "the SAM ended the stream before every signature arrived");
        return;
      } catch (err) {
        const e = toInkanError(err);
        // Resume only what an interrupted stream allows: a resume token arrived, the failure was
        // transient (or the stream fell silent), and the caller did not cancel.
        const silent = idle.signal.aborted && !deadline.signal?.aborted;
        if (!started || !this.token || e.detectedBySdk || deadline.signal?.aborted || resumes >= limits.maxResumes || !(silent || resumable(e))) throw e;
        await new Promise((r) => setTimeout(r, 100 * 2 ** resumes));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  private takeToken(): string {
    const t = this.token;
    if (!t) throw sdkError(Reason.TRANSACTION_STATE, Code.FailedPrecondition, "no SAD token left: the transaction needs a new authorization");
    this.token = undefined; // one-time (T-2.2.1.3): never presented twice
    return t;
  }

  private async acceptBatch(indices: readonly number[], res: SignHashResponse): Promise<void> {
    if (res.signatures.length !== indices.length) throw sdkError(Reason.INTEGRITY_VIOLATION, Code.DataLoss, "the SAM returned the wrong number of signatures");
    await this.acceptAll(indices.map((index, k) => [index, res.signatures[k]!] as const));
  }

  /**
   * Accepts (index, signature) pairs in order, exactly as one accept() after the other would:
   * pair k is stored and counted only if it and every pair before it passed `precheck`, the
   * index checks and the signature check; the first failure in order is thrown. Large batches
   * are checked on worker threads (issue 20) before any pair is stored. Returns the count.
   */
  private async acceptAll(pairs: readonly (readonly [number, Uint8Array])[], precheck?: (index: number, k: number) => void): Promise<number> {
    if (!this.parallel || pairs.length < verifyParallelMin) {
      pairs.forEach(([index, signature], k) => {
        precheck?.(index, k);
        this.accept(index, signature);
      });
      return pairs.length;
    }
    // The index checks first, in order, up to the first that fails (its error waits its turn).
    let stop = pairs.length;
    let stopError: unknown;
    const seen = new Set<number>();
    for (let k = 0; k < pairs.length; k++) {
      const index = pairs[k]![0];
      try {
        precheck?.(index, k);
        if (!this.hashes[index] || this.signatures[index] || seen.has(index)) throw sdkError(Reason.INTEGRITY_VIOLATION, Code.DataLoss, `the SAM returned an unexpected index ${index}`);
      } catch (err) {
        stop = k;
        stopError = err;
        break;
      }
      seen.add(index);
    }
    const checked = pairs.slice(0, stop);
    let failed: number;
    try {
      failed = await this.parallel.check(checked.map(([index]) => this.hashes[index]!), checked.map(([, signature]) => signature));
    } catch (err) {
      // Fail closed: a batch whose check did not complete is never accepted.
      throw new InkanError({ message: `the SDK could not check the signatures: ${(err as Error).message}`, reason: Reason.UNSPECIFIED, code: Code.Internal, detectedBySdk: true, cause: err });
    }
    const accepted = failed >= 0 ? failed : stop;
    for (let k = 0; k < accepted; k++) this.store(pairs[k]![0], pairs[k]![1]);
    if (failed >= 0) throw signatureCheckFailed(pairs[failed]![0]);
    if (stop < pairs.length) throw stopError;
    return pairs.length;
  }

  private accept(index: number, signature: Uint8Array): void {
    const hash = this.hashes[index];
    if (!hash || this.signatures[index]) throw sdkError(Reason.INTEGRITY_VIOLATION, Code.DataLoss, `the SAM returned an unexpected index ${index}`);
    // T-2.2.1.8: a signature that does not verify against the credential's key never reaches the caller.
    if (!this.check(hash, signature)) throw signatureCheckFailed(index);
    this.store(index, signature);
  }

  private store(index: number, signature: Uint8Array): void {
    this.signatures[index] = signature;
    this.received++;
  }

  private result(): Uint8Array[] {
    return this.signatures.map((s, i) => s ?? fail(i));
    function fail(i: number): never {
      throw sdkError(Reason.INTEGRITY_VIOLATION, Code.DataLoss, `signature ${i} is missing`, i);
    }
  }
}

/** Errors after which a stream resumes: the connection or the SAM failed transiently. */
function resumable(e: InkanError): boolean {
  if (e.code === Code.DeadlineExceeded) return false;
  return e.code === Code.Unavailable || (e.reason === Reason.UNSPECIFIED && [Code.Unknown, Code.Internal, Code.Canceled, Code.Aborted].includes(e.code));
}

const signatureCheckFailed = (index: number) =>
  sdkError(Reason.SIGNATURE_CHECK_FAILED, Code.DataLoss, `signature ${index} does not verify against the credential's public key (altered in transit?)`, index);

const invalid = (message: string) => sdkError(Reason.INVALID_REQUEST, Code.InvalidArgument, message);

function sdkError(reason: Reason, code: Code, message: string, index?: number): InkanError {
  return new InkanError({ message, reason, code, index, detectedBySdk: true });
}

/** The key signatures are checked with: the certificate's (what relying parties use), which must be the credential's key. */
function credentialKey(c: CredentialInfo): Uint8Array {
  const spki = c.publicKeySpki;
  const leaf = c.certificate?.chain[0];
  if (!leaf) {
    if (!spki.length) throw sdkError(Reason.KEY_MISMATCH, Code.FailedPrecondition, "the credential has neither a public key nor a certificate");
    return spki;
  }
  let certKey: Uint8Array;
  try {
    certKey = new Uint8Array(new X509Certificate(leaf).publicKey.export({ format: "der", type: "spki" }));
  } catch {
    throw sdkError(Reason.CERTIFICATE_INVALID, Code.FailedPrecondition, "the credential's certificate cannot be parsed");
  }
  if (spki.length && !equalBytes(certKey, createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }).export({ format: "der", type: "spki" }))) {
    throw sdkError(Reason.KEY_MISMATCH, Code.FailedPrecondition, "the credential's certificate does not carry its public key");
  }
  return certKey;
}

const hashNames: Partial<Record<HashAlgorithm, string>> = {
  [HashAlgorithm.SHA256]: "sha256",
  [HashAlgorithm.SHA384]: "sha384",
  [HashAlgorithm.SHA512]: "sha512",
};

function hashDocument(hashAlgorithm: HashAlgorithm, document: Uint8Array): Uint8Array {
  if (hashAlgorithm === HashAlgorithm.NONE) return document; // pure EdDSA signs the data itself
  const name = hashNames[hashAlgorithm];
  if (!name) throw invalid(`unknown hash algorithm ${hashAlgorithm}`);
  return new Uint8Array(createHash(name).update(document).digest());
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

interface Deadline {
  signal: AbortSignal | undefined;
  /** What remains of the deadline, in ms; undefined without one. */
  remainingMs(): number | undefined;
  /** The options of the next RPC: the caller's signal and what remains of the deadline. */
  next(): CallOptions;
}

/** One deadline across the several RPCs of a helper call. */
function deadlineOf(o: CallOptions): Deadline {
  const end = o.timeoutMs !== undefined && o.timeoutMs > 0 ? Date.now() + o.timeoutMs : undefined;
  return {
    signal: o.signal,
    remainingMs: () => (end === undefined ? undefined : end - Date.now()),
    next() {
      const rest = end === undefined ? undefined : end - Date.now();
      if (rest !== undefined && rest <= 0) throw new InkanError({ message: "the deadline passed", reason: Reason.UNSPECIFIED, code: Code.DeadlineExceeded });
      return { ...(o.signal ? { signal: o.signal } : {}), ...(rest !== undefined ? { timeoutMs: rest } : {}) };
    },
  };
}
