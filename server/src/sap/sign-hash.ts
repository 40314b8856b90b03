/**
 * SignHash (sam.proto SignatureActivationService.SignHash): guideline appendix 1 method 1 (many
 * hashes per call) combined with method 2 (each call consumes its SAD token and, while signatures
 * remain, returns a fresh one), and the one-call form (inline_authorization: Authorize, then sign).
 *
 * Order of checks (IDs say what each closes):
 *  1. Request shape: 1 to max_hashes_per_chunk hashes, none twice.
 *  2. Read-only pre-checks, so that a refused request leaves the token valid (sam.proto: "refused
 *     as a whole, nothing is signed and the token stays valid"): SigningCore.checkToken (token,
 *     owner SCA, replay, state, expiry, credential and signer usable), then each hash has its
 *     algorithm's length, fits in the signatures remaining, and is an unsigned entry of the
 *     authorized list (T-2.2.1.6): SIGNATURE_COUNT_EXCEEDED / HASH_NOT_AUTHORIZED.
 *     A consumed token is not refused here: step 3 tells a retry after a crash from a replay.
 *  3. T-2.2.1.3, T-2.2.1.2, T-2.2.1.6 (issue 17): the token is consumed and the entries claimed in
 *     ONE atomic store operation (markHashesSigned with consumeToken) BEFORE the crypto module is
 *     touched: of concurrent presentations of one token exactly one consumes and claims; any other
 *     is a replay (SAD_REPLAYED, audited; the transaction and its later tokens are revoked, the
 *     winner's claimed entries still sign and are released).
 *  4. Sign each hash in the crypto module and verify it there (R-3.2.1.5): a signature that does
 *     not verify is withheld, audited -> SIGNATURE_CHECK_FAILED.
 *  5. R-3.2.2.4: audit signature.created for each hash BEFORE any signature is returned (fail closed).
 *  6. Issue 17: record the signatures under the call's claim; only recorded signatures are released
 *     (no DTBS/R ever has more than one signature released).
 *  7. Method 2: while signatures remain, a fresh token (generation + 1, previousHash = the consumed
 *     one); none once the transaction is COMPLETED (or was revoked meanwhile).
 *
 * Retry after a crash (issue 17). A call that fails after step 3 (the node crashed or was killed,
 * the module failed) leaves its entries claimed and unrecorded under a lease (defaultClaimLeaseMs).
 * The client retries by presenting the SAME token with the SAME hashes: allowed only while that
 * token's claim is unrecorded and free (its lease expired, or the node that held it restarted),
 * the claim is then taken over (nothing counted twice) and the call completes with a next token.
 * If the first call completed and only its response was lost, the retry (under the same
 * condition: the claim expired or its node restarted) gets the same recorded signatures and the
 * same next token (derived from the presented token), while that next token is unused and the
 * presented one unexpired. Presented while the claim is still live (the first call may still be
 * running: a concurrent presentation), with other hashes, or once the next token was used, the
 * token is a replay (SAD_REPLAYED, the transaction is revoked). So no entry ever has more than one
 * signature released, and a concurrent presentation never gets anything.
 */
import { policyOncePerCall, type SecurityPolicies } from "../admin/security-policy.js";
import type { HashAlgorithm } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import { handled } from "../handled.js";
import type { SadTokenRecord, TransactionRecord } from "../store/port.js";
import type { EntryKey } from "./authorization-seal.js";
import { issueSadToken, sadTokenHash, stateError, type SapAuthorize } from "./authorize.js";
import { presentedToken, SigningCore, type PresentedToken, type SigningCoreOptions } from "./signing-core.js";
import { checkHashes, type SapTransactions, type ScaCaller } from "./transactions.js";

export interface SignHashOptions extends SigningCoreOptions {
  transactions: Pick<SapTransactions, "load" | "view">;
}

export interface SignHashResult {
  /** One per requested hash, in request order. */
  signatures: Uint8Array[];
  /** Empty when no signatures remain. */
  nextSadToken: string;
  nextSadTokenExpiresAt: Date | undefined;
  signaturesRemaining: number;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

export class SapSignHash {
  private readonly core: SigningCore;

  constructor(private readonly o: SignHashOptions) {
    this.core = new SigningCore(o);
  }

  async signHash(input: { caller: ScaCaller; sadToken: string; hashes: readonly Uint8Array[] }): Promise<SignHashResult> {
    const now = this.core.clock();
    const { hashes, caller } = input;
    const policies = policyOncePerCall(this.o.policies); // issue 20: the policy read once per call
    await this.checkShape(hashes, policies);
    // 2. Read-only pre-checks: a refusal here leaves the token valid. A consumed token is judged by
    //    its claim in step 3 (a retry after a crash), not refused here.
    const presented = presentedToken(input.sadToken);
    const { token, tx, credential, authorization, entryKey } = await this.core.checkToken(caller, presented, now, { consumedToo: true, policies });
    const retry = token.consumedAt !== undefined;
    if (!retry) await this.core.orReplayed(caller, presented, now, () => this.checkHashesFit(tx.record, hashes)); // item 2: claimed meanwhile by a concurrent presentation = a replay

    // 3. Issue 17: consume the token and claim the entries in ONE atomic store operation, before the
    //    crypto module is touched (T-2.2.1.3, T-2.2.1.2, T-2.2.1.6): of concurrent presentations
    //    exactly one consumes and claims; every other is a replay (audited, the transaction's later
    //    tokens revoked), never able to undo the winner's claim. A retry (the same consumed token and
    //    the same hashes) takes over its own claim only while that claim is expired and unrecorded.
    const { record } = tx;
    const claim = this.core.newClaim();
    const recordedHead = this.core.recordedHead(record.id);
    const marked = await this.o.store.markHashesSigned({ transactionId: record.id, hashes, now, claim, ...(retry ? { retryToken: presented.hash } : { consumeToken: presented.hash }) });
    if (!marked.ok) {
      if (marked.reason === "SAD_TOKEN") return this.core.tokenRefused(caller, presented, now);
      // Issue 17 item 2: refused because a concurrent presentation of this token consumed it and
      // claimed meanwhile (this call's own consume was undone with its refusal): a replay. With
      // group commit (issue 20) such a winner commits in the same group, just before this claim.
      const again = retry ? undefined : await this.o.store.findSadToken(presented.hash);
      if (again?.consumedAt) return this.core.replayed(again, caller, now);
      return this.core.claimRefused(record, caller, marked.reason, marked.index);
    }
    // T-2.2.2.2: each entry the SAM stored, the counters not rolled back, no recorded signature reopened.
    await this.core.checkClaimed(entryKey, marked, record.signaturesCreated, recordedHead);

    // A retry of a call that completed (its response lost): the same recorded signatures, released
    // again only while the call's next token is unused (else the retry is a replay).
    let signatures = marked.signatures;
    let journal: () => Promise<void> = async () => undefined;
    if (!signatures) {
      // 4. Sign and verify in the module (R-3.2.1.5); 5. audit before release (R-3.2.2.4); 6. record
      //    under the claim: only a recorded signature is released (issue 17).
      const signed = await this.core.signVerified(record, caller, this.core.requestFor(authorization, credential), marked.hashes);
      await this.core.usableCredential(record, { authorization, policies }); // suspended or a factor revoked while signing: withheld
      // Issue 20: the counter's head (issue 14) is journaled in the same audit append as the
      // signatures' records (one commit), both before anything is released.
      await Promise.all([this.core.advanceProgress(record.id, marked.signaturesCreated), this.core.auditCreated(tx, caller, marked.hashes)]);
      const recorded = await this.core.recordUnjournaled(record.id, claim.claimId, marked.indices.map((index, i) => ({ index, signature: signed[i]! })));
      if (recorded.recorded.size !== marked.indices.length) {
        await recorded.journal();
        // Taken over by a retry of this call after the lease expired (a take-over is whole): that one releases them.
        await this.core.audited(record, caller, { outcome: "FAILURE", reason: "TRANSACTION_STATE" });
        throw new InkanError("TRANSACTION_STATE", "this call's claim expired and was taken over by a retry; its signatures were not released");
      }
      journal = recorded.journal;
      signatures = signed;
    } else {
      await this.core.advanceProgress(record.id, marked.signaturesCreated);
    }

    // Issue 20: the recorded head's journal entry (issue 17 + 14) and the next token are written
    // together (one group commit); nothing is returned before both are durable.
    const journaled = handled(journal()); // awaited below; a refusal thrown first is the answer
    const next = await this.nextToken({ presented, token, caller, now, entryKey, record, remaining: authorization.numSignatures - marked.signaturesCreated, lifetimeMs: (await policies.current()).sadTokenLifetimeMs });
    await journaled;
    return { signatures, ...next };
  }

  /**
   * 7. Method 2: the next one-time token while signatures remain (none once the transaction ended).
   * Derived from the presented token (issue 17): a retry gets the same next token, while unused.
   */
  private async nextToken(o: { presented: PresentedToken; token: SadTokenRecord; caller: ScaCaller; now: Date; entryKey: EntryKey; record: TransactionRecord; remaining: number; lifetimeMs: number }): Promise<Omit<SignHashResult, "signatures">> {
    const { presented, token, caller, now, entryKey, record, remaining } = o;
    const secret = Buffer.from(entryKey.nextTokenSecret(presented.hash, 32)).toString("base64url");
    const existing = await this.o.store.findSadToken(sadTokenHash(secret));
    if (existing) {
      await entryKey.checkToken(existing); // T-2.2.2.2
      if (existing.consumedAt) return this.core.replayed(token, caller, now); // the call's outcome was used: a replay
    }
    if (remaining <= 0 || (await this.o.store.getTransaction(record.id))?.state !== "AUTHORIZED") {
      return { nextSadToken: "", nextSadTokenExpiresAt: undefined, signaturesRemaining: Math.max(remaining, 0) };
    }
    if (existing) return { nextSadToken: secret, nextSadTokenExpiresAt: existing.expiresAt, signaturesRemaining: remaining };
    const derived = { store: this.o.store, random: { randomBytes: async (n: number) => entryKey.nextTokenSecret(presented.hash, n) } };
    const next = await issueSadToken(derived, { entryKey, transactionExpiresAt: record.expiresAt, generation: token.generation + 1, previousHash: presented.hash, now, lifetimeMs: o.lifetimeMs });
    return { nextSadToken: next.token, nextSadTokenExpiresAt: next.expiresAt, signaturesRemaining: remaining };
  }

  /**
   * The one-call form (inline_authorization): the hashes are checked against the PENDING
   * transaction first, so that a refused request leaves it pending and the R.SAD unused
   * (sam.proto); then Authorize runs with its own checks and errors, and its token signs at once.
   */
  async signInline(input: { caller: ScaCaller; transactionId: string; rSad: string; hashes: readonly Uint8Array[] }, authorize: Pick<SapAuthorize, "authorize">): Promise<SignHashResult> {
    await this.checkShape(input.hashes, this.o.policies);
    const tx = await this.o.transactions.load(input.transactionId, input.caller, this.core.clock()); // R-3.2.1.2: TRANSACTION_NOT_FOUND for another SCA's
    if (tx.state !== "PENDING") throw stateError(tx, "pending");
    await this.checkHashesFit(tx.record, input.hashes);
    // Refused before Authorize spends the R.SAD: e.g. a KEY_GENERATED credential's CSR approval,
    // which only CreateCsr may redeem (R-3.1.3.2), or a suspended credential.
    await this.core.usableCredential(tx.record);
    const { sadToken } = await authorize.authorize({ caller: input.caller, transactionId: input.transactionId, rSad: input.rSad });
    return this.signHash({ caller: input.caller, sadToken, hashes: input.hashes });
  }

  /** 1. Request shape, by the call's policy. */
  private async checkShape(hashes: readonly Uint8Array[], policies: Pick<SecurityPolicies, "current">): Promise<void> {
    const policy = await policies.current();
    if (hashes.length === 0) throw new InkanError("INVALID_REQUEST", "hashes is empty", { field: "hashes" });
    if (hashes.length > policy.maxHashesPerChunk) throw new InkanError("LIMIT_EXCEEDED", "too many hashes in one message", { field: "hashes" });
    if (new Set(hashes.map(hex)).size !== hashes.length) throw new InkanError("INVALID_REQUEST", "a hash occurs twice", { field: "hashes" });
  }

  /** T-2.2.1.6 pre-check: right lengths, within the signatures remaining, each an unsigned entry of the list (duplicates were refused by checkShape). */
  private async checkHashesFit(record: TransactionRecord, hashes: readonly Uint8Array[]): Promise<void> {
    checkHashes(record.hashAlgorithm as HashAlgorithm, hashes, 0, "HASH_LENGTH_MISMATCH");
    if (hashes.length > record.numSignatures - record.signaturesCreated) {
      throw new InkanError("SIGNATURE_COUNT_EXCEEDED", "more hashes than signatures remain", { field: "hashes" });
    }
    // By index, not by scanning the list: the cost does not grow with the transaction's size.
    const unsigned = await this.o.store.hasUnsignedEntries({ transactionId: record.id, hashes });
    const missing = unsigned.indexOf(false);
    if (missing >= 0) throw new InkanError("HASH_NOT_AUTHORIZED", "a hash is not authorized or was already signed", { field: `hashes[${missing}]`, index: missing });
  }
}
