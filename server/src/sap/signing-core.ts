/**
 * What SignHash and SignStream share (sam.proto): the SAD token's checks and its one-time
 * consumption with reuse detection, the credential's usability, signing with verify-before-release
 * in the crypto module, and the audit records of each signature. Each rule names the ID it closes.
 */
import type { SecurityPolicies } from "../admin/security-policy.js";
import type { BatchAuditLog } from "../audit/audit-log.js";
import { signatureCreated, signatureFailed } from "../audit/events.js";
import type { HashAlgorithm, RandomSource, SigningKeys } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import { credentialRefusal } from "../registration/credential-usability.js";
import type { CredentialBody } from "../registration/credentials.js";
import { randomUUID } from "node:crypto";
import type { ClaimHolder, DtbsrRefusal, FactorRecord, MarkSignedResult, OneTimeObjects, SadTokenRecord, TransactionRecord, Transactions } from "../store/port.js";
import type { Freshness } from "../integrity/freshness.js";
import { closedProgress, progressKey, recordedKey, type AuthorizationFacts, type AuthorizationSeals, type EntryKey } from "./authorization-seal.js";
import { sadTokenHash, stateError } from "./authorize.js";
import { scaActor, type SapTransaction, type SapTransactions, type ScaCaller } from "./transactions.js";

export interface SigningCoreOptions {
  transactions: Pick<SapTransactions, "view">;
  store: Pick<Transactions, "getTransaction" | "readDtbsr" | "hasUnsignedEntries" | "markHashesSigned" | "markRangeSigned" | "recordSignatures" | "transitionTransaction"> &
    Pick<OneTimeObjects, "findSadToken" | "consumeSadToken" | "revokeSadTokens" | "issueSadToken">;
  records: Pick<VerifiedRecords, "get" | "list">;
  /** Issue 14 (T-2.2.2.2): the sealed authorization, and the MACs of entries and tokens. */
  seals: Pick<AuthorizationSeals, "open" | "entryKey" | "rolledBack">;
  /** Issue 14: an authorization's progress (token generations), so a row rolled back signs nothing. */
  freshness: Pick<Freshness, "head" | "advance">;
  keys: Pick<SigningKeys, "sign" | "verify">;
  random: RandomSource;
  policies: Pick<SecurityPolicies, "current">;
  audit: BatchAuditLog;
  clock?: () => Date;
  /**
   * Issue 17: who claims DTBS/R entries. nodeId defaults to the audit log's node, bootId to one id
   * per process start (so a restarted node takes over its crashed boot's claims at once), leaseMs
   * to {@link defaultClaimLeaseMs}.
   */
  claims?: { nodeId?: string; bootId?: string; leaseMs?: number };
}

/**
 * How long a claim is held before another request may take it over (issue 17): longer than the
 * slowest claimed batch takes to sign, verify, audit and record (a maxPageSize batch on a busy
 * module: a few seconds), short enough that a SignHash retried on another node after a crash waits
 * little. Taken over earlier, the first request's signatures are simply not released.
 */
export const defaultClaimLeaseMs = 30_000;

/** This process's boot: claims of the node's earlier boots are free at once (issue 17). */
const processBootId = randomUUID();

/**
 * A presented SAD token: the secret whose hash the store keeps and, for a SignStream resume token
 * (`<secret>.<resume index>`), the lowest start index it may be used with. Every resume token of
 * one stream shares the stream's secret, so the first use of any of them consumes all of them.
 */
export interface PresentedToken {
  hash: string;
  resumeIndex: number;
}

export function presentedToken(token: string): PresentedToken {
  const dot = token.lastIndexOf(".");
  if (dot < 0) return { hash: sadTokenHash(token), resumeIndex: 0 };
  const index = token.slice(dot + 1);
  if (!/^(0|[1-9][0-9]{0,8})$/.test(index)) throw invalidToken();
  return { hash: sadTokenHash(token.slice(0, dot)), resumeIndex: Number(index) };
}

/** The resume token of a stream whose secret is `secret`, valid from `index` on. */
export const resumeToken = (secret: string, index: number): string => `${secret}.${index}`;

export const invalidToken = () => new InkanError("SAD_INVALID", "the SAD token is not valid");

/** A token that passed the read-only checks, with its AUTHORIZED transaction and usable credential. */
export interface CheckedToken {
  token: SadTokenRecord;
  tx: SapTransaction;
  credential: CredentialBody;
  /** What Authorize verified (seal checked, the row agrees): signing takes its parameters from here. */
  authorization: AuthorizationFacts;
  entryKey: EntryKey;
}

/** The module request of one DTBS/R of `tx`. */
export type SignRequest = (hash: Uint8Array) => { keyId: string; scheme: AuthorizationFacts["signatureScheme"]; hashAlgorithm: HashAlgorithm; data: Uint8Array; format: "raw" | "der" };

/** The signer's ACTIVE factors read in one page (device keys, PIN, TOTP: a handful); any beyond it are read alone. */
const activeFactorsPage = 100;

/** How many module calls one request keeps in flight: enough to fill the session pool, bounded memory. */
const maxInFlight = 64;

export class SigningCore {
  readonly clock: () => Date;

  readonly leaseMs: number;
  private readonly nodeId: string;
  private readonly bootId: string;

  constructor(readonly o: SigningCoreOptions) {
    this.clock = o.clock ?? (() => new Date());
    this.nodeId = o.claims?.nodeId ?? (o.audit as { nodeId?: string }).nodeId ?? "inkan";
    this.bootId = o.claims?.bootId ?? processBootId;
    this.leaseMs = o.claims?.leaseMs ?? defaultClaimLeaseMs;
  }

  /** A fresh claim of this node and boot (issue 17): one per SignHash call or SignStream range. */
  newClaim(): ClaimHolder {
    return { claimId: randomUUID(), nodeId: this.nodeId, bootId: this.bootId, leaseMs: this.leaseMs };
  }

  /**
   * A claim refused with SAD_TOKEN (issue 17 item 2: the consume and the claim are one store
   * operation): the token was consumed by another caller (a replay: T-2.2.1.3, the transaction's
   * later tokens are revoked, never the winner's claimed work), expired, or unknown.
   */
  async tokenRefused(caller: ScaCaller, presented: PresentedToken, now: Date): Promise<never> {
    const again = await this.o.store.findSadToken(presented.hash);
    if (again?.consumedAt) return this.replayed(again, caller, now);
    if (again && again.expiresAt <= now) throw new InkanError("EXPIRED", "the SAD token expired");
    if (again?.revokedAt) throw new InkanError("TRANSACTION_STATE", "the transaction is not authorized");
    throw invalidToken();
  }

  /**
   * Issue 17: records signatures under their claim and returns the indices recorded; only those
   * may be released (of two requests that signed one entry, only the current claim's holder
   * records). The recorded count's head moves on (issue 14: a signature removed by hand is found).
   */
  async recordClaimed(transactionId: string, claimId: string, signatures: readonly { index: number; signature: Uint8Array }[]): Promise<Set<number>> {
    const { recorded, journal } = await this.recordUnjournaled(transactionId, claimId, signatures);
    await journal();
    return recorded;
  }

  /**
   * {@link recordClaimed} with the recorded head raised but its journal entry left to the caller
   * (issue 20: SignHash writes it in the same commit as the next token). Release nothing before
   * `journal()` resolved.
   */
  async recordUnjournaled(transactionId: string, claimId: string, signatures: readonly { index: number; signature: Uint8Array }[]): Promise<{ recorded: Set<number>; journal: () => Promise<void> }> {
    const { recorded, signaturesRecorded } = await this.o.store.recordSignatures({ transactionId, claimId, signatures });
    return { recorded: new Set(recorded), journal: () => this.o.freshness.advance(recordedKey(transactionId), signaturesRecorded) };
  }

  /**
   * Read-only checks, so that a refused request leaves the token valid (sam.proto):
   * the token is known (else SAD_INVALID, T-2.2.1.2); its transaction was opened by this SCA (else
   * SAD_INVALID: another SCA can neither use nor burn it, R-3.2.1.2); not consumed (else replay,
   * T-2.2.1.3); not revoked; the transaction is AUTHORIZED and unexpired (T-2.2.1.2: no signature
   * before Authorize); the token is unexpired; the credential and signer can sign.
   */
  async checkToken(caller: ScaCaller, presented: PresentedToken, now: Date, options: { completedToo?: boolean; consumedToo?: boolean; policies?: Pick<SecurityPolicies, "current"> } = {}): Promise<CheckedToken> {
    const token = await this.o.store.findSadToken(presented.hash);
    if (!token) throw invalidToken(); // T-2.2.1.2: a made-up token
    const owned = await this.o.store.getTransaction(token.transactionId);
    if (!owned || owned.sca !== caller.certificateSha256) throw invalidToken(); // R-3.2.1.2: issued to another SCA
    const entryKey = await this.o.seals.entryKey(owned.id);
    await entryKey.checkToken(token); // T-2.2.2.2: a token row written in the database by hand is refused
    if (token.consumedAt && !options.consumedToo) return this.replayed(token, caller, now); // T-2.2.1.3 (a SignHash retry is judged by its claim)
    const rest = () => this.checkRest(now, options, token, owned, entryKey);
    return token.consumedAt ? rest() : this.orReplayed(caller, presented, now, rest);
  }

  /**
   * Issue 17 item 2: a read-only check that fails while a concurrent presentation of the same
   * token consumes it (the transaction completed, its hashes claimed meanwhile) is a replay:
   * SAD_REPLAYED and reuse detection, whatever the check saw.
   */
  async orReplayed<T>(caller: ScaCaller, presented: PresentedToken, now: Date, check: () => Promise<T>): Promise<T> {
    try {
      return await check();
    } catch (err) {
      if (!(err instanceof InkanError) || err.code === "INTEGRITY_VIOLATION") throw err;
      const again = await this.o.store.findSadToken(presented.hash);
      if (again?.consumedAt) return this.replayed(again, caller, now);
      throw err;
    }
  }

  /** checkToken's checks after the token's own: state, expiry, seal, progress, credential. */
  private async checkRest(now: Date, options: { completedToo?: boolean; consumedToo?: boolean; policies?: Pick<SecurityPolicies, "current"> | undefined }, token: SadTokenRecord, owned: TransactionRecord, entryKey: EntryKey): Promise<CheckedToken> {
    const tx = this.o.transactions.view(owned, now);
    if (token.revokedAt) throw stateError(tx, "authorized");
    // A COMPLETED transaction signs nothing more; SignStream may still resend its recorded signatures,
    // and a SignHash retried after a crash (a consumed token) may take over its own unrecorded claim.
    const completedToo = options.completedToo === true || (options.consumedToo === true && token.consumedAt !== undefined);
    if (tx.state !== "AUTHORIZED" && !(completedToo && tx.state === "COMPLETED")) throw stateError(tx, "authorized");
    if (token.expiresAt <= now) throw new InkanError("EXPIRED", "the SAD token expired");
    // T-2.2.2.2, R-3.2.1.1: what Authorize verified, sealed; a row inserted, cloned or edited has no valid seal.
    const authorization = await this.o.seals.open(owned);
    await this.checkProgress(owned);
    const credential = await this.usableCredential(tx.record, { authorization, policies: options.policies });
    return { token, tx, credential, authorization, entryKey };
  }

  /**
   * T-2.2.1.3 / T-2.2.1.2: consumes the token atomically, before the crypto module is touched. Of
   * concurrent callers exactly one gets it; a consumed token presented again is a replay.
   */
  async consume(caller: ScaCaller, presented: PresentedToken, now: Date, entryKey: EntryKey): Promise<SadTokenRecord> {
    const consumed = await this.o.store.consumeSadToken({ hash: presented.hash, now });
    if (consumed) {
      await entryKey.checkToken(consumed); // T-2.2.2.2
      return consumed;
    }
    const again = await this.o.store.findSadToken(presented.hash);
    if (again?.consumedAt) return this.replayed(again, caller, now);
    if (again && again.expiresAt <= now) throw new InkanError("EXPIRED", "the SAD token expired");
    throw invalidToken();
  }

  /** T-2.2.1.3: a consumed token presented again revokes the rest of its transaction (refresh-token reuse detection). */
  async replayed(token: SadTokenRecord, caller: ScaCaller, now: Date): Promise<never> {
    await this.o.store.revokeSadTokens({ transactionId: token.transactionId, now });
    await this.o.store.transitionTransaction({ id: token.transactionId, from: ["PENDING", "AUTHORIZED"], to: "REVOKED", now });
    await this.o.freshness.advance(progressKey(token.transactionId), closedProgress); // issue 14: ended for good
    const record = await this.o.store.getTransaction(token.transactionId);
    if (record) await this.audited(record, caller, { outcome: "DENIED", reason: "SAD_REPLAYED" });
    throw new InkanError("SAD_REPLAYED", "the SAD token was already used; the transaction is revoked");
  }

  /**
   * The credential's body, if the credential and its signer can still sign this transaction
   * also for tokens issued before a suspension, and never for a transaction created
   * before the credential's last suspension or resumption). KEY_GENERATED credentials (no
   * certificate yet) never sign, unless `csrApproval` (CreateCsr only; R-3.1.3.2): so SignHash and
   * SignStream cannot spend a CSR approval's token. Nor does a credential whose certificate is
   * outside its validity period at this moment (R-3.1.1.4; the policy is read for its grace, through
   * the caller's `policies` when given: policyOncePerCall, issue 20, one policy read per call).
   */
  async usableCredential(record: TransactionRecord, options: { csrApproval?: boolean; authorization?: AuthorizationFacts; policies?: Pick<SecurityPolicies, "current"> | undefined } = {}): Promise<CredentialBody> {
    const [credential, signer, policy, factors] = await Promise.all([
      this.o.records.get("credential", record.credentialId),
      this.o.records.get("signer", record.signerId),
      (options.policies ?? this.o.policies).current(),
      options.authorization ? this.activeFactors(options.authorization) : undefined,
    ]);
    // R-3.1.1.4, T-2.1.3.2: the certificate valid now, at each check (before every claim of a stream).
    const refusal = credentialRefusal({ credential, signer, transaction: record, csrApproval: options.csrApproval === true, now: this.clock(), certificateExpiryGraceMs: policy.certificateExpiryGraceMs });
    if (refusal) throw refusal;
    const auth = options.authorization;
    if (auth) {
      // R-3.1.3.2 (issue 13.4): a CSR approval signs its CSR and nothing else, also once the certificate is imported.
      if (auth.csrOnly && options.csrApproval !== true) throw new InkanError("TRANSACTION_STATE", "the transaction approves a CSR; only CreateCsr redeems it");
      // T-2.1.2.2 (issue 13.2): a factor revoked or reset since Authorize (a stolen phone) ends the authorization, on every node.
      for (const f of auth.factors) {
        const factor = factors?.get(f.id) ?? (await this.o.records.get("factor", f.id)); // not among the ACTIVE ones: read alone, as before
        if (!factor || factor.status !== "ACTIVE" || factor.signerId !== auth.signerId || factor.type !== f.type) {
          throw new InkanError("TRANSACTION_STATE", "a factor that authorized the transaction was revoked; the signer must authorize again");
        }
      }
    }
    return JSON.parse(credential!.body) as CredentialBody;
  }

  /**
   * Issue 20: the signer's ACTIVE factors in one store read (seals verified, fresh: VerifiedRecords.list),
   * by id, when the authorization names more than one; each factor it names but this misses (revoked,
   * deleted, moved, edited, or past the page) is then read alone, as before, so the verdict and its
   * reason (INTEGRITY_VIOLATION for a deleted or rolled-back factor) are unchanged.
   */
  private async activeFactors(auth: AuthorizationFacts): Promise<Map<string, FactorRecord> | undefined> {
    if (auth.factors.length < 2) return undefined;
    const page = await this.o.records.list({ kind: "factor", where: { signerId: auth.signerId, status: "ACTIVE" }, limit: activeFactorsPage });
    return new Map(page.items.map((f) => [f.id, f]));
  }

  /**
   * Issue 14: the transaction's counter must not be below its head (a counter and entries put back
   * lower would reopen spent signatures; an ended authorization put back as AUTHORIZED has the
   * closed head). A lower counter is a race, not a rollback, only if the row has moved on since it
   * was read (a concurrent reuse detection, cancellation or revocation ended it).
   */
  async checkProgress(record: TransactionRecord): Promise<void> {
    const key = progressKey(record.id);
    if (record.signaturesCreated >= this.o.freshness.head(key)) return;
    // Moved on meanwhile (a concurrent claim, or an end by reuse detection, cancellation or revocation):
    // the atomic consume and claim that follow refuse it with the right reason (e.g. SAD_REPLAYED).
    const again = await this.o.store.getTransaction(record.id);
    if (again && ((again.state !== "AUTHORIZED" && again.state !== "PENDING") || again.signaturesCreated >= this.o.freshness.head(key))) return;
    await this.o.seals.rolledBack(record.id); // reported (audited), INTEGRITY_VIOLATION
  }

  /**
   * Issue 14 (T-2.2.2.2), after a claim and before the module signs: each claimed entry must carry
   * the SAM's MAC over (index, hash), so an entry edited after upload signs nothing; the counter
   * before the claim must be the one this request saw (a transaction has one token, so one claimer,
   * at a time: a lower one was put back). Then the counter's head moves on.
   */
  async checkClaim(entryKey: EntryKey, claimed: Extract<MarkSignedResult, { ok: true }>, before: number, recordedHeadBefore: number): Promise<void> {
    await this.checkClaimed(entryKey, claimed, before, recordedHeadBefore);
    await this.advanceProgress(entryKey.transactionId, claimed.signaturesCreated);
  }

  /** Issue 14: the counter's head moves on to `signaturesCreated` (journaled: one audit record). */
  advanceProgress(transactionId: string, signaturesCreated: number): Promise<void> {
    return this.o.freshness.advance(progressKey(transactionId), signaturesCreated);
  }

  /**
   * {@link checkClaim} without moving the head: the caller calls {@link advanceProgress} before
   * anything is released (issue 20: SignHash journals it in the same append as the signatures'
   * audit records, one commit). Until then a crash loses the head with the unreleased signatures:
   * an entry claimed but never released may be signed again, never released twice (issue 17).
   */
  async checkClaimed(entryKey: EntryKey, claimed: Extract<MarkSignedResult, { ok: true }>, before: number, recordedHeadBefore: number): Promise<void> {
    await entryKey.checkEntries(claimed.indices, claimed.hashes, claimed.macs); // one pass (issue 20)
    // A claim taken over is not counted again (T-2.2.1.6); a retry given recorded signatures claimed nothing.
    const counted = claimed.signatures ? 0 : claimed.indices.length - claimed.reclaimed;
    if (claimed.signaturesCreated - counted < before) await this.o.seals.rolledBack(entryKey.transactionId);
    // Issue 17 + 14: the recorded count never goes back, and an entry taken over must be one that was
    // never recorded: more unrecorded claims than (counted - recorded) means a signature was removed by hand.
    // Compared with the head read BEFORE the claim: a SignStream records one range while it claims the
    // next, so a head advanced by that recording after the claim's read is a race, not a rollback.
    if (claimed.signaturesRecorded < recordedHeadBefore) await this.o.seals.rolledBack(entryKey.transactionId);
    if (claimed.reclaimed > 0 && claimed.unrecordedBefore > claimed.signaturesCreated - counted - claimed.signaturesRecorded) await this.o.seals.rolledBack(entryKey.transactionId);
  }

  /** The recorded-signatures head of a transaction, read before a claim and given to {@link checkClaim}. */
  recordedHead(transactionId: string): number {
    return this.o.freshness.head(recordedKey(transactionId));
  }

  /** A refused claim (markHashesSigned / markRangeSigned) as the contract's error, audited. */
  async claimRefused(record: TransactionRecord, caller: ScaCaller, reason: Exclude<DtbsrRefusal, "SAD_TOKEN">, index: number | undefined): Promise<never> {
    await this.audited(record, caller, { outcome: "DENIED", reason: reason === "TRANSACTION_NOT_FOUND" ? "TRANSACTION_STATE" : reason });
    if (reason === "HASH_NOT_AUTHORIZED") throw new InkanError("HASH_NOT_AUTHORIZED", "a hash is not authorized or was already signed", { field: "hashes", ...(index !== undefined ? { index } : {}) });
    if (reason === "SIGNATURE_COUNT_EXCEEDED") throw new InkanError("SIGNATURE_COUNT_EXCEEDED", "more hashes than signatures remain", { field: "hashes" });
    if (reason === "EXPIRED") throw new InkanError("EXPIRED", "the transaction expired");
    // Revoked by a concurrent reuse detection, cancelled meanwhile, ...
    throw new InkanError("TRANSACTION_STATE", "the transaction is not authorized");
  }

  /** The module request for each DTBS/R, from the sealed authorization (never the row's body) with `credential`'s key. */
  requestFor(authorization: AuthorizationFacts, credential: CredentialBody): SignRequest {
    const format = authorization.signatureFormat === 2 ? "raw" : "der";
    const hashAlgorithm = authorization.hashAlgorithm as HashAlgorithm;
    return (data) => ({ keyId: credential.keyId, scheme: authorization.signatureScheme, hashAlgorithm, data, format });
  }

  /**
   * Signs each claimed DTBS/R in the module and verifies each signature there before anything
   * leaves (R-3.2.1.5): a signature that does not verify is withheld with the whole batch, audited
   * (signature.failed) -> SIGNATURE_CHECK_FAILED. At most {@link maxInFlight} module calls at once.
   */
  async signVerified(record: TransactionRecord, caller: ScaCaller, request: SignRequest, hashes: readonly Uint8Array[]): Promise<Uint8Array[]> {
    let signatures: Uint8Array[];
    try {
      signatures = await mapBounded(hashes, async (h) => {
        const req = request(h); // issue 20: one request object per hash, for the sign and the verify
        const signature = await this.o.keys.sign(req);
        return (await this.o.keys.verify({ ...req, signature })) ? signature : undefined;
      }).then((all) => {
        const bad = all.findIndex((s) => s === undefined);
        if (bad >= 0) throw new WithheldSignature(bad);
        return all as Uint8Array[];
      });
    } catch (err) {
      if (err instanceof WithheldSignature) {
        // R-3.2.1.5: withheld, every one of them (the request fails as a whole), and audited.
        await this.audited(record, caller, { outcome: "FAILURE", reason: "SIGNATURE_CHECK_FAILED" }, hashes[err.index]);
        throw new InkanError("SIGNATURE_CHECK_FAILED", "a signature did not verify against the credential's public key and was withheld", { index: err.index });
      }
      await this.audited(record, caller, { outcome: "FAILURE", reason: "CRYPTO_MODULE_FAILURE" }).catch(() => undefined);
      throw err instanceof InkanError ? err : new InkanError("CRYPTO_MODULE_FAILURE", "the crypto module could not sign", { cause: err });
    }
    return signatures;
  }

  /**
   * R-3.2.2.4: each signature is in the audit log before it leaves: one record per signature,
   * written in one atomic append (fail closed: a failed write throws AUDIT_FAILURE).
   */
  async auditCreated(tx: SapTransaction, caller: ScaCaller, hashes: readonly Uint8Array[]): Promise<void> {
    const sca = scaActor(caller);
    await this.o.audit.recordAll(hashes.map((hash) => signatureCreated({
      sca,
      requestId: caller.requestId,
      signerId: tx.record.signerId,
      credentialId: tx.record.credentialId,
      transactionId: tx.record.id,
      hash,
      hashAlgorithm: tx.record.hashAlgorithm as HashAlgorithm,
      signatureAlgorithm: tx.body.signatureScheme,
    })));
  }

  audited(record: TransactionRecord, caller: ScaCaller, refusal: { outcome: "DENIED" | "FAILURE"; reason: NonNullable<Parameters<typeof signatureFailed>[0]["refusal"]["reason"]> }, hash?: Uint8Array): Promise<void> {
    return this.o.audit.record(signatureFailed({
      sca: scaActor(caller),
      requestId: caller.requestId,
      signerId: record.signerId,
      credentialId: record.credentialId,
      transactionId: record.id,
      ...(hash ? { hash } : {}),
      refusal,
    })).then(() => undefined);
  }
}

class WithheldSignature extends Error {
  constructor(readonly index: number) {
    super("a signature did not verify");
  }
}

/** `fn` over `items` with at most {@link maxInFlight} calls pending, results in input order. */
async function mapBounded<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (err) {
        failed = true; // the others stop taking new items
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(maxInFlight, items.length) }, worker));
  return out;
}
