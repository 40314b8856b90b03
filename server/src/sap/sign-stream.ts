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
 * Nothing is signed twice (T-2.2.1.6): each run of entries is claimed in the store (markRangeSigned,
 * atomic) before the module signs it, and its signatures are recorded on the entries after
 * verification (R-3.2.1.5) and audit (R-3.2.2.4). Entries found claimed are resent from the record
 * (from_record), waiting briefly for a signature still in flight in an older stream. Before each
 * claim the stream checks that its own secret is unconsumed: a stream resumed elsewhere stops the
 * older one before its next claim. The credential is re-checked before each claim, so a
 * suspension during the stream ends it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { InkanError } from "../errors.js";
import type { DtbsrEntry } from "../store/port.js";
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
const pipelineDepth = 3;
/** sam.proto: a resume token at least every stream_checkpoint_interval signatures and every 10 seconds. */
const checkpointEvery = { signatures: streamCheckpointInterval, ms: 10_000 };
/** How long a resumed stream waits for a signature an older stream claimed but has not recorded yet. */
const inFlightWaitMs = 5_000;

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

/** Marks `p` as handled (a pipelined promise may reject before it is awaited); awaiting it still throws. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
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
    const consumed = await this.core.consume(caller, presented, now, entryKey); // T-2.2.1.3, before the module is touched
    const secret = await issueSadToken(this.o, { entryKey, transactionExpiresAt: record.expiresAt, generation: consumed.generation + 1, previousHash: presented.hash, now, lifetimeMs: (await this.o.policies.current()).sadTokenLifetimeMs, minIndex: input.startIndex });
    const streamHash = sadTokenHash(secret.token);
    const counted = (await this.o.store.getTransaction(record.id))?.signaturesCreated ?? record.signaturesCreated;
    let remaining = authorization.numSignatures - counted;
    const checkpoint = (index: number) => ({ resumeToken: resumeToken(secret.token, index), resumeIndex: index, resumeTokenExpiresAt: secret.expiresAt });
    yield { signatures: [], ...checkpoint(input.startIndex), signaturesRemaining: remaining };

    const run: StreamRun = { caller, tx, streamHash, request: this.core.requestFor(authorization, credential), authorization, entryKey, claims: Promise.resolve(), counted };
    let sinceCheckpoint = 0;
    let checkpointAt = Date.now();
    // A pipeline of fixed ranges of streamBatchSize entries: up to pipelineDepth of them are
    // claimed, signed, audited and recorded at once while the oldest is sent, so the module does
    // not wait for the store or the client. Messages still go out in index order, and flow
    // control still paces the signing (at most pipelineDepth batches ahead of the client).
    const inFlight: Promise<Batch>[] = [];
    let nextFrom = input.startIndex;
    const fill = () => {
      while (inFlight.length < pipelineDepth && nextFrom < record.hashCount) {
        inFlight.push(handled(this.batch(run, nextFrom, input.signal)));
        nextFrom = Math.min(nextFrom + streamBatchSize, record.hashCount);
      }
    };
    try {
      fill();
      for (let batch = inFlight.shift(); batch; batch = inFlight.shift()) {
        const { signatures, signaturesCreated, end } = await batch;
        fill();
        if (signaturesCreated !== undefined) remaining = Math.min(remaining, record.numSignatures - signaturesCreated); // batches finish out of order
        sinceCheckpoint += signatures.length;
        const due = sinceCheckpoint >= checkpointEvery.signatures || Date.now() - checkpointAt >= checkpointEvery.ms || (end >= record.hashCount && remaining > 0);
        if (due) {
          sinceCheckpoint = 0;
          checkpointAt = Date.now();
        }
        yield { signatures, ...(due ? checkpoint(end) : { resumeToken: "", resumeIndex: 0, resumeTokenExpiresAt: undefined }), signaturesRemaining: remaining };
      }
    } finally {
      // Interrupted (the client went away, or an error): the batches under way finish (each
      // records its signatures itself), so that a resume resends them instead of losing them.
      await Promise.allSettled(inFlight);
    }
  }

  /**
   * The batch of entries [from, from + streamBatchSize): checks the stream is still current and
   * the credential usable, then, run by run, resends entries signed earlier (from the record) and
   * claims unsigned ones (T-2.2.1.6) and signs them. Signatures in index order.
   */
  private async batch(run: StreamRun, from: number, signal: AbortSignal | undefined): Promise<Batch> {
    signal?.throwIfAborted();
    await this.checkStillCurrent(run.streamHash); // for a clear error; the claim below enforces it atomically
    const { record } = run.tx;
    const end = Math.min(from + streamBatchSize, record.hashCount);
    const signatures: StreamedSignature[] = [];
    let signaturesCreated: number | undefined;
    for (let i = from; i < end; ) {
      const entries = leadingRun(await this.o.store.readDtbsr({ transactionId: record.id, fromIndex: i, limit: end - i }));
      if (entries.length === 0) throw new InkanError("STORE_FAILURE", `DTBS/R entry ${i} is missing`);
      if (entries[0]!.signed) {
        signatures.push(...(await this.fromRecord(record.id, entries)));
        i += entries.length;
        continue;
      }
      // T-2.2.2.2: only entries the SAM stored are signed (an entry edited in the database is refused before its claim).
      for (const e of entries) await run.entryKey.checkEntry(e.index, e.hash, e.mac);
      const options = { authorization: run.authorization };
      await this.core.usableCredential(record, options); // a suspension (or a revoked factor) during the stream ends it, before the next claim
      // A stream resumed with one of this stream's tokens stops this one before its next claim (atomic).
      const claiming = run.claims.then(async () => {
        const claim = await this.o.store.markRangeSigned({ transactionId: record.id, fromIndex: i, count: entries.length, now: this.core.clock(), whileTokenUnused: run.streamHash });
        if (claim.ok) {
          await this.core.checkClaim(run.entryKey, { indices: claim.indices, macs: claim.macs, hashes: entries.map((e) => e.hash) }, { before: run.counted, after: claim.signaturesCreated });
          run.counted = claim.signaturesCreated;
        }
        return claim;
      });
      run.claims = claiming.catch(() => undefined);
      const claim = await claiming;
      if (!claim.ok) {
        if (claim.reason === "HASH_NOT_AUTHORIZED") continue; // claimed meanwhile by SignHash or another stream: read again
        return this.core.claimRefused(record, run.caller, claim.reason, claim.index);
      }
      // Signed and verified in the module (R-3.2.1.5), audited before anything leaves (R-3.2.2.4),
      // then recorded on the entries at once: a stream whose client stops reading leaves no
      // claimed entry without its signature, so a resume (or a newer stream) resends it.
      const hashes = entries.map((e) => e.hash);
      const signed = await this.core.signVerified(record, run.caller, run.request, hashes);
      await this.core.usableCredential(record, options); // suspended (or a factor revoked) while signing: withheld
      await this.core.auditCreated(run.tx, run.caller, hashes);
      await this.o.store.recordSignatures({ transactionId: record.id, signatures: entries.map((e, k) => ({ index: e.index, signature: signed[k]! })) });
      signatures.push(...entries.map((e, k) => ({ index: e.index, signature: signed[k]!, fromRecord: false })));
      signaturesCreated = claim.signaturesCreated;
      i += entries.length;
    }
    return { signatures, signaturesCreated, end };
  }

  /** The stream's own secret must be unconsumed: a stream resumed with one of its tokens takes over. */
  private async checkStillCurrent(streamHash: string): Promise<void> {
    const mine = await this.o.store.findSadToken(streamHash);
    if (!mine || mine.consumedAt || mine.revokedAt) {
      throw new InkanError("TRANSACTION_STATE", "this stream was resumed by a newer stream, or its transaction ended");
    }
  }

  /** Signatures of entries claimed earlier, from the record; one still in flight is waited for briefly. */
  private async fromRecord(transactionId: string, run: DtbsrEntry[]): Promise<StreamedSignature[]> {
    const deadline = Date.now() + inFlightWaitMs;
    let entries = run;
    for (;;) {
      const missing = entries.findIndex((e) => e.signature === undefined);
      if (missing < 0) return entries.map((e) => ({ index: e.index, signature: e.signature!, fromRecord: true }));
      if (Date.now() >= deadline) {
        // Claimed by a request that failed or stopped before recording it: counted as signed, never signed again.
        throw new InkanError("CRYPTO_MODULE_FAILURE", `the signature of DTBS/R ${entries[missing]!.index} was lost by an interrupted request and is not signed again; the remaining hashes need a new transaction`);
      }
      await sleep(20);
      const again = await this.o.store.readDtbsr({ transactionId, fromIndex: entries[0]!.index, limit: entries.length });
      entries = again.slice(0, entries.length);
    }
  }
}

/** The leading entries that share the first entry's `signed` flag (a run to claim, or to resend). */
function leadingRun(page: DtbsrEntry[]): DtbsrEntry[] {
  const first = page[0];
  if (!first) return [];
  const end = page.findIndex((e) => e.signed !== first.signed);
  return end < 0 ? page : page.slice(0, end);
}
