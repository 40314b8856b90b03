/**
 * SignStream (sam.proto SignatureActivationService.SignStream): signs an authorized transaction's
 * DTBS/R list in order from start_index and yields the signatures as the crypto module produces
 * them. The caller (the Connect handler) awaits each message's write, so HTTP/2 flow control paces
 * the signing: at most a few batches (one being sent, the next ones in the module) are in memory,
 * whatever the list's size.
 *
 * Tokens. The request's token gets SignHash's read-only checks (SigningCore.checkToken) and is
 * consumed atomically before anything is signed (T-2.2.1.2, T-2.2.1.3; reuse revokes the
 * transaction). The stream then draws one secret of its own (a SAD token of generation + 1): every
 * resume token it sends is `<secret>.<resume index>`, so the first use of any of them consumes all
 * of them, and using one again is a replay.
 *
 * No DTBS/R ever has more than one signature released (T-2.2.1.6, issue 17): each range of entries
 * is claimed in the store (markRangeSigned, atomic, under a fresh claim with a lease) before the
 * module signs it; its signatures are verified (R-3.2.1.5), audited (R-3.2.2.4) and recorded under
 * that claim, and only what was recorded is sent. The start of a stream consumes its token and
 * claims its first range in one store operation (issue 17 item 2: a concurrent presentation of the
 * same token is a replay and cannot undo that claim). Entries found recorded are resent from the
 * record (from_record). Entries claimed and never recorded (a crash, a kill -9) are claimed again
 * once their lease expired, or at once by the restarted node; entries under another live claim
 * (an older stream still finishing its batches) are waited for, at most one lease. Before each
 * claim the stream checks that its own secret is unconsumed: a stream resumed elsewhere stops the
 * older one before its next claim. The credential is re-checked before each claim, so a
 * suspension during the stream ends it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { InkanError } from "../errors.js";
import { handled } from "../handled.js";
import type { ClaimHolder, MarkSignedResult } from "../store/port.js";
import { issueSadToken, sadTokenHash } from "./authorize.js";
import type { AuthorizationFacts, EntryKey } from "./authorization-seal.js";
import { presentedToken, resumeToken, SigningCore, type SignRequest, type SigningCoreOptions } from "./signing-core.js";
import type { SapTransaction, ScaCaller } from "./transactions.js";

export interface StreamedSignature {
  index: number;
  signature: Uint8Array;
  fromRecord: boolean;
}

export interface SignStreamMessage {
  signatures: StreamedSignature[];
  /** Empty unless this message is a checkpoint (the first, every checkpoint interval, the last while signatures remain). */
  resumeToken: string;
  resumeIndex: number;
  resumeTokenExpiresAt: Date | undefined;
  signaturesRemaining: number;
}

/** sam.proto Limits (published by GetInfo): the most signatures in one message, and how often a resume token comes. */
export const maxSignaturesPerStreamMessage = 1_000;
export const streamCheckpointInterval = 1_000;
/** Signatures per message and per claim: at most maxSignaturesPerStreamMessage. */
export const streamBatchSize = 500;
/** How many batches one stream keeps under way (claimed, in the module, being audited) while one is sent. */
export const pipelineDepth = 3;
/** sam.proto: a resume token at least every stream_checkpoint_interval signatures and every 10 seconds. */
const checkpointEvery = { signatures: streamCheckpointInterval, ms: 10_000 };
/** How often a stream looks again at entries another request holds (until recorded, or their lease expired). */
const heldPollMs = 50;

/**
 * What one stream holds that its client has not taken yet (issue 20: bounded buffering). Signing
 * runs at most pipelineDepth batches ahead of the message the transport last took, and the
 * transport takes the next message only when HTTP/2 flow control lets it write (a client that
 * stops reading stops the stream). Readable through {@link signStreamsInProgress} (tests, metrics).
 */
export interface SignStreamProgress {
  readonly transactionId: string;
  /** Signatures in finished batches (recorded, or read from the record) not yet taken by the transport. */
  signaturesAhead: number;
  /** Batches claimed and not finished (in the module, being audited or recorded). */
  batchesUnderWay: number;
  /** True while the stream waits at a message for the transport to take it: only the client's reading moves it on. */
  waitingForClient: boolean;
  /** Messages the transport has taken. */
  messagesTaken: number;
}

const inProgress = new Set<SignStreamProgress>();

/** The streams of this process under way, with what each holds ahead of its client. */
export function signStreamsInProgress(): readonly Readonly<SignStreamProgress>[] {
  return [...inProgress];
}

/** What every batch of one stream shares. */
interface StreamRun {
  caller: ScaCaller;
  tx: SapTransaction;
  /** Hash of this stream's own secret: consumed means a newer stream took over. */
  streamHash: string;
  request: SignRequest;
  /** Issue 14: what Authorize verified (sealed), and the transaction's entry key (MACs of entries). */
  authorization: AuthorizationFacts;
  entryKey: EntryKey;
  /** The stream's claims, one after another, and the counter after the last one (issue 14: it only grows by what this stream claims). */
  claims: Promise<unknown>;
  counted: number;
}

/** One batch's signatures in index order; signaturesCreated after its last claim, if it claimed. */
interface Batch {
  signatures: StreamedSignature[];
  signaturesCreated: number | undefined;
  end: number;
}

export interface SignStreamInput {
  caller: ScaCaller;
  sadToken: string;
  startIndex: number;
  /** Aborted when the client goes away: the stream stops before its next claim. */
  signal?: AbortSignal | undefined;
}

export class SapSignStream {
  private readonly core: SigningCore;

  constructor(private readonly o: SigningCoreOptions) {
    this.core = new SigningCore(o);
  }

  async *signStream(input: SignStreamInput): AsyncGenerator<SignStreamMessage> {
    const { caller } = input;
    const now = this.core.clock();
    const presented = presentedToken(input.sadToken);
    // A resume token works on a COMPLETED transaction too: every entry was claimed, but the client
    // may not have received the last signatures, which come from the record.
    const { token, tx, credential, authorization, entryKey } = await this.core.checkToken(caller, presented, now, { completedToo: true });
    const { record } = tx;
    // The resume index written in the token is the client's text: never below its stream's own start (stored).
    if (input.startIndex < Math.max(presented.resumeIndex, token.minIndex ?? 0) || input.startIndex >= record.hashCount) {
      throw new InkanError("INVALID_REQUEST", "start_index is before the token's resume index or past the list", { field: "start_index" });
    }
    // Issue 17 item 2, T-2.2.1.3: the token is consumed and the first range claimed in ONE store
    // operation, before the module is touched: a concurrent presentation of this token is a replay.
    const firstClaim = this.core.newClaim();
    const firstEnd = Math.min(input.startIndex + streamBatchSize, record.hashCount);
    const firstRecordedHead = this.core.recordedHead(record.id);
    const first = await this.o.store.markRangeSigned({ transactionId: record.id, fromIndex: input.startIndex, count: firstEnd - input.startIndex, now, claim: firstClaim, consumeToken: presented.hash });
    if (!first.ok) {
      if (first.reason === "SAD_TOKEN") await this.core.tokenRefused(caller, presented, now); // a replay, expired or unknown: throws
      else await this.core.claimRefused(record, caller, first.reason, first.index); // throws
      return;
    }
    await this.core.checkClaim(entryKey, first, record.signaturesCreated, firstRecordedHead); // T-2.2.2.2
    const secret = await issueSadToken(this.o, { entryKey, transactionExpiresAt: record.expiresAt, generation: token.generation + 1, previousHash: presented.hash, now, lifetimeMs: (await this.o.policies.current()).sadTokenLifetimeMs, minIndex: input.startIndex });
    const streamHash = sadTokenHash(secret.token);
    const counted = first.signaturesCreated;
    // What remains before this stream's first range (claimed, not yet signed): each batch lowers it as it is sent.
    let remaining = authorization.numSignatures - record.signaturesCreated;
    const checkpoint = (index: number) => ({ resumeToken: resumeToken(secret.token, index), resumeIndex: index, resumeTokenExpiresAt: secret.expiresAt });
    const run: StreamRun = { caller, tx, streamHash, request: this.core.requestFor(authorization, credential), authorization, entryKey, claims: Promise.resolve(), counted };
    let sinceCheckpoint = 0;
    let checkpointAt = Date.now();
    // A pipeline of fixed ranges of streamBatchSize entries: up to pipelineDepth of them are
    // claimed, signed, audited and recorded at once while the oldest is sent, so the module does
    // not wait for the store or the client. Messages still go out in index order, and flow
    // control still paces the signing (at most pipelineDepth batches ahead of the client).
    const inFlight: Promise<Batch>[] = [];
    let nextFrom = input.startIndex;
    let preclaimed: { claim: ClaimHolder; result: Claimed } | undefined = { claim: firstClaim, result: first };
    const progress: SignStreamProgress = { transactionId: record.id, signaturesAhead: 0, batchesUnderWay: 0, waitingForClient: false, messagesTaken: 0 };
    inProgress.add(progress);
    const fill = () => {
      while (inFlight.length < pipelineDepth && nextFrom < record.hashCount) {
        progress.batchesUnderWay += 1;
        inFlight.push(handled(this.batch(run, nextFrom, input.signal, preclaimed).then(
          (b) => {
            progress.batchesUnderWay -= 1;
            progress.signaturesAhead += b.signatures.length;
            return b;
          },
          (err: unknown) => {
            progress.batchesUnderWay -= 1;
            throw err;
          },
        )));
        preclaimed = undefined;
        nextFrom = Math.min(nextFrom + streamBatchSize, record.hashCount);
      }
    };
    /** Hands `message` to the transport; returns once it was taken (HTTP/2 flow control decides when). */
    const send = function* (message: SignStreamMessage): Generator<SignStreamMessage, void> {
      progress.waitingForClient = true;
      try {
        yield message;
      } finally {
        progress.waitingForClient = false;
      }
      progress.messagesTaken += 1;
      progress.signaturesAhead -= message.signatures.length;
    };
    try {
      // The first range (claimed with the token) is signed while the first message goes out: a
      // client gone after it finds its signatures recorded when it resumes (nothing waits a lease).
      fill();
      // Issue 18 item 12: the first message carries a resume token and no signature, so a client
      // that received any message can resume.
      yield* send({ signatures: [], ...checkpoint(input.startIndex), signaturesRemaining: remaining });
      for (let batch = inFlight.shift(); batch; batch = inFlight.shift()) {
        const { signatures, signaturesCreated, end } = await batch;
        // Issue 20: the next range is claimed only once the transport took the previous message, so
        // a client that stops reading holds the stream at pipelineDepth batches ahead of it.
        fill();
        if (signaturesCreated !== undefined) remaining = Math.min(remaining, record.numSignatures - signaturesCreated); // batches finish out of order
        sinceCheckpoint += signatures.length;
        const due = sinceCheckpoint >= checkpointEvery.signatures || Date.now() - checkpointAt >= checkpointEvery.ms || (end >= record.hashCount && remaining > 0);
        if (due) {
          sinceCheckpoint = 0;
          checkpointAt = Date.now();
        }
        yield* send({ signatures, ...(due ? checkpoint(end) : { resumeToken: "", resumeIndex: 0, resumeTokenExpiresAt: undefined }), signaturesRemaining: remaining });
      }
    } finally {
      // Interrupted (the client went away, or an error): the batches under way finish (each
      // records its signatures itself), so that a resume resends them instead of losing them.
      await Promise.allSettled(inFlight);
      inProgress.delete(progress);
    }
  }

  /**
   * The batch of entries [from, from + streamBatchSize), in index order: claims what is claimable
   * (T-2.2.1.6; unsigned entries, and entries whose claim expired or belongs to a crashed boot of
   * this node), signs, audits and records it, sends what was recorded; entries recorded earlier are
   * resent from the record; entries under another live claim are waited for (recorded by their
   * holder, or taken over once its lease expired), at most one lease and a little more.
   */
  private async batch(run: StreamRun, from: number, signal: AbortSignal | undefined, preclaimed?: { claim: ClaimHolder; result: Claimed }): Promise<Batch> {
    const { record } = run.tx;
    const end = Math.min(from + streamBatchSize, record.hashCount);
    const got = new Map<number, StreamedSignature>();
    let signaturesCreated: number | undefined;
    const deadline = Date.now() + this.core.leaseMs + 5_000;
    for (let pending = preclaimed; ; pending = undefined) {
      const { claim, result } = pending ?? (await this.claimRange(run, from, end, signal));
      if (result.indices.length > 0) {
        // Signed and verified in the module (R-3.2.1.5), audited before anything leaves (R-3.2.2.4),
        // then recorded under the claim (issue 17): only what was recorded is sent.
        const signed = await this.core.signVerified(record, run.caller, run.request, result.hashes);
        await this.core.usableCredential(record, { authorization: run.authorization }); // suspended (or a factor revoked) while signing: withheld
        await this.core.auditCreated(run.tx, run.caller, result.hashes);
        const recorded = await this.core.recordClaimed(record.id, claim.claimId, result.indices.map((index, k) => ({ index, signature: signed[k]! })));
        result.indices.forEach((index, k) => {
          if (recorded.has(index)) got.set(index, { index, signature: signed[k]!, fromRecord: false });
        });
        signaturesCreated = result.signaturesCreated;
      }
      if (got.size === end - from) break;
      // The rest: recorded by an earlier request (resent from the record), or held by another live claim.
      for (const e of await this.o.store.readDtbsr({ transactionId: record.id, fromIndex: from, limit: end - from })) {
        if (!got.has(e.index) && e.signature !== undefined) got.set(e.index, { index: e.index, signature: e.signature, fromRecord: true });
      }
      if (got.size === end - from) break;
      if (Date.now() >= deadline) {
        throw new InkanError("TRANSACTION_STATE", "DTBS/R entries of this range are held by another request that neither recorded nor released them; resume later");
      }
      await sleep(heldPollMs, undefined, signal ? { signal } : undefined);
    }
    return { signatures: [...got.values()].sort((x, y) => x.index - y.index), signaturesCreated, end };
  }

  /** One claim of the range, after the stream and credential checks, in this stream's claim order. */
  private async claimRange(run: StreamRun, from: number, end: number, signal: AbortSignal | undefined): Promise<{ claim: ClaimHolder; result: Claimed }> {
    signal?.throwIfAborted();
    await this.checkStillCurrent(run.streamHash); // for a clear error; the claim below enforces it atomically
    const { record } = run.tx;
    await this.core.usableCredential(record, { authorization: run.authorization }); // a suspension (or a revoked factor) during the stream ends it, before the next claim
    const claim = this.core.newClaim();
    // A stream resumed with one of this stream's tokens stops this one before its next claim (atomic).
    const claiming = run.claims.then(async () => {
      const recordedHead = this.core.recordedHead(record.id);
      const result = await this.o.store.markRangeSigned({ transactionId: record.id, fromIndex: from, count: end - from, now: this.core.clock(), claim, whileTokenUnused: run.streamHash });
      if (result.ok) {
        await this.core.checkClaim(run.entryKey, result, run.counted, recordedHead); // T-2.2.2.2
        run.counted = result.signaturesCreated;
      }
      return result;
    });
    run.claims = claiming.catch(() => undefined);
    const result = await claiming;
    if (!result.ok) {
      if (result.reason === "SAD_TOKEN") throw new InkanError("TRANSACTION_STATE", "the stream's claim was refused");
      return this.core.claimRefused(record, run.caller, result.reason, result.index);
    }
    return { claim, result };
  }

  /** The stream's own secret must be unconsumed: a stream resumed with one of its tokens takes over. */
  private async checkStillCurrent(streamHash: string): Promise<void> {
    const mine = await this.o.store.findSadToken(streamHash);
    if (!mine || mine.consumedAt || mine.revokedAt) {
      throw new InkanError("TRANSACTION_STATE", "this stream was resumed by a newer stream, or its transaction ended");
    }
  }
}

type Claimed = Extract<MarkSignedResult, { ok: true }>;
