/**
 * Authorize (sam.proto SignatureActivationService.Authorize; R-3.2.1.1, R-3.2.1.2): the SAM verifies
 * the signer's R.SAD for a pending transaction of this SCA and, only then, moves the transaction to
 * AUTHORIZED with one compare-and-set and hands out a one-time SAD token.
 *
 * Order (each step names what it closes):
 *  1. load the transaction bound to the caller's certificate (T-2.2.1.4: another SCA's transaction
 *     is TRANSACTION_NOT_FOUND); it must be PENDING (sealed) and unexpired.
 *  2. verifyRSad (every link; the method meets the credential's level, R-3.1.4: device key + PIN or
 *     PIN + TOTP at level 2, PIN alone or the login assertion at level 1; jti once, T-2.2.1.3;
 *     audited there).
 *  3. consume the one-time challenge (purpose "transaction", subject = this transaction): a consumed
 *     challenge is a replay (T-2.2.1.3) -> SAD_REPLAYED.
 *  4. CAS PENDING -> AUTHORIZED: of concurrent Authorize calls exactly one wins (T-2.2.1.3).
 *  5. issue the SAD token: 32 bytes from the module RNG (R-3.2.2.2), base64url; only its SHA-256 is
 *     stored; valid for the policy's sadTokenLifetime, never past the transaction's expiry.
 *
 * A failed verification counts toward Limits.max_authorize_attempts (countingFailures); at the
 * limit the transaction is FAILED. The one-call form (SignHash with inline_authorization) calls
 * authorize() too.
 * Inline and chunked uploads are authorized alike: the challenge's hash is read from the store
 * record (TransactionRecord.challengeHash), which the seal wrote together with the digest.
 * Credentials must be ACTIVE, or KEY_GENERATED for a one-DTBS/R CSR approval that only CreateCsr
 * redeems (registration/credential-usability.ts).
 */
import { createHash } from "node:crypto";
import { policyOncePerCall, type SecurityPolicies } from "../admin/security-policy.js";
import type { RandomSource } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import { handled } from "../handled.js";
import type { SamEncryptionKeys } from "../keys/sam-encryption-keys.js";
import { reserveAttempt, transactionAttempts, type HeldAttempt } from "../registration/lockout.js";
import type { AttemptReservations, OneTimeObjects, Transactions } from "../store/port.js";
import { type AuthorizationFacts, type AuthorizationSeals, type EntryKey } from "./authorization-seal.js";
import { verifyRSad, type RSadVerifierDeps, type VerifiedRSad } from "./r-sad.js";
import { scaActor, type SapTransaction, type SapTransactions, type ScaCaller } from "./transactions.js";

/** The SAD token's size in bytes before base64url (256 bits from the module RNG). */
const sadTokenBytes = 32;

/** How a SAD token is stored and looked up: base64url(SHA-256(token ASCII)); the token itself never is. */
export function sadTokenHash(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("base64url");
}

export interface IssuedSadToken {
  token: string;
  expiresAt: Date;
}

/**
 * Draws and stores (as its hash only) a one-time SAD token of `tx`: `generation` 0 at Authorize,
 * then + 1 per rotation with `previousHash` the consumed one.
 */
export async function issueSadToken(
  deps: { random: RandomSource; store: Pick<OneTimeObjects, "issueSadToken"> },
  input: {
    /** The transaction's entry key: the token row carries its MAC (issue 14, T-2.2.2.2). */
    entryKey: EntryKey;
    transactionExpiresAt: Date;
    generation: number;
    previousHash: string | undefined;
    now: Date;
    /** The policy's sad_token_lifetime, from the policy the caller already read. */
    lifetimeMs: number;
    minIndex?: number;
  },
): Promise<IssuedSadToken> {
  const token = Buffer.from(await deps.random.randomBytes(sadTokenBytes)).toString("base64url");
  const expiresAt = new Date(Math.min(input.now.getTime() + input.lifetimeMs, input.transactionExpiresAt.getTime()));
  const fields = {
    hash: sadTokenHash(token),
    transactionId: input.entryKey.transactionId,
    generation: input.generation,
    previousHash: input.previousHash,
    ...(input.minIndex ? { minIndex: input.minIndex } : {}),
    issuedAt: input.now,
    expiresAt,
  };
  await deps.store.issueSadToken({ ...fields, mac: input.entryKey.tokenMac(fields) });
  return { token, expiresAt };
}

/** TRANSACTION_STATE or EXPIRED for a transaction that is not in `wanted`. */
export function stateError(tx: SapTransaction, wanted: string): InkanError {
  if (tx.state === "EXPIRED") return new InkanError("EXPIRED", "the transaction expired");
  return new InkanError("TRANSACTION_STATE", `the transaction is not ${wanted}`);
}

export interface AuthorizeOptions {
  transactions: Pick<SapTransactions, "load">;
  /** Issue 14: what Authorize verified is sealed with the move to AUTHORIZED. */
  seals: Pick<AuthorizationSeals, "seal" | "entryKey">;
  store: Pick<Transactions, "getTransaction" | "transitionTransaction" | "recordAuthorizeFailure"> & Pick<OneTimeObjects, "consumeChallenge" | "issueSadToken"> & AttemptReservations;
  random: RandomSource;
  policies: Pick<SecurityPolicies, "current">;
  samKeys: Pick<SamEncryptionKeys, "samId">;
  /** What verifyRSad needs (SAM keys, sealed records, signers, jti store, HMAC, policies, audit). */
  rSad: RSadVerifierDeps;
  clock?: () => Date;
}

export interface AuthorizeResult {
  sadToken: string;
  sadTokenExpiresAt: Date;
  signaturesRemaining: number;
}

export class SapAuthorize {
  private readonly clock: () => Date;

  constructor(private readonly o: AuthorizeOptions) {
    this.clock = o.clock ?? (() => new Date());
  }

  async authorize(input: { caller: ScaCaller; transactionId: string; rSad: string }): Promise<AuthorizeResult> {
    const now = this.clock();
    // Issue 20: one policy read per call (its seal and freshness checked, R-3.2.2.3), shared by every
    // step of this call (the attempt limit, the R.SAD's checks, the lockout, the token's lifetime).
    const policies = policyOncePerCall(this.o.policies);
    // 1. R-3.2.1.2, T-2.2.1.4: only this SCA's transaction; it must be sealed, pending and unexpired.
    const tx = await this.o.transactions.load(input.transactionId, input.caller, now);
    if (tx.state !== "PENDING") throw stateError(tx, "pending");
    const { record } = tx;
    const { challengeHash, dtbsrDigest } = record;
    // A sealed transaction always holds both (completeDtbsrUpload stores them in one update): fail closed otherwise.
    if (challengeHash === undefined || dtbsrDigest === undefined) throw new InkanError("TRANSACTION_STATE", "the transaction is not pending");
    // 2. R-3.2.1.1: every link of the R.SAD (audited by verifyRSad, whatever the verdict).
    const samId = await this.o.samKeys.samId();
    const { attempt, verified } = await this.countingFailures(record.id, now, policies, () => verifyRSad(
      {
        rSad: input.rSad,
        transaction: {
          id: record.id,
          signerId: record.signerId,
          credentialId: record.credentialId,
          createdAt: record.createdAt,
          sca: scaActor(input.caller),
          digest: dtbsrDigest,
          count: record.numSignatures,
          description: tx.body.description,
          hashAlgorithm: tx.hashAlgorithmNumber,
          challengeHash,
          expiresAt: record.expiresAt,
        },
        samId,
        now,
        requestId: input.caller.requestId,
      },
      { ...this.o.rSad, policies },
    ));
    // Issue 20: what step 4 seals is read and MACed while step 3's write commits. Nothing here
    // writes; if step 3 refuses, the seal is dropped.
    const sealing = handled(this.facts(tx, verified, now).then((facts) => this.o.seals.seal(facts)));
    // 3. T-2.2.1.3: the challenge works once, and only for this transaction.
    const challenge = await this.o.store.consumeChallenge({ hash: challengeHash, purpose: "transaction", now });
    if (!challenge || challenge.subject !== record.id) throw new InkanError("SAD_REPLAYED", "the transaction's challenge was already used");
    // 4. T-2.2.1.3: one atomic compare-and-set; a concurrent second Authorize loses here. Issue 14
    // (T-2.2.2.2): what was verified is sealed and stored in the same update; signing trusts only it.
    const authorization = await sealing;
    // Issue 20: step 5's inputs (the token's lifetime, the entry key, its secret) are drawn while the
    // compare-and-set commits; if it loses, they are dropped unused.
    const tokenInputs = handled(Promise.all([policies.current(), this.o.seals.entryKey(record.id), this.o.random.randomBytes(sadTokenBytes)]));
    const moved = await this.o.store.transitionTransaction({ id: record.id, from: ["PENDING"], to: "AUTHORIZED", now, authorization });
    if (!moved) throw stateError(await this.o.transactions.load(record.id, input.caller, now), "pending");
    // 5. The one-time SAD token (only its hash is stored).
    const [policy, entryKey, secret] = await tokenInputs;
    const lifetimeMs = policy.sadTokenLifetimeMs;
    // The attempt was held until the transaction left PENDING (left behind, it only counts against a
    // transaction no longer pending); released together with the token's write (issue 20: one commit).
    // The secret was drawn first, so both writes join one group.
    const [issued] = await Promise.all([
      issueSadToken({ store: this.o.store, random: { randomBytes: async () => secret } }, { entryKey, transactionExpiresAt: record.expiresAt, generation: 0, previousHash: undefined, now, lifetimeMs }),
      attempt.release().catch(() => undefined),
    ]);
    return { sadToken: issued.token, sadTokenExpiresAt: issued.expiresAt, signaturesRemaining: record.numSignatures - record.signaturesCreated };
  }

  /**
   * What the R.SAD verified, to be sealed (issue 14). The factor records are the ones that
   * authorized it (R-3.3.1: revoked or reset later, the authorization signs nothing more); a
   * transaction on a credential without a certificate approves its CSR and nothing else, for its
   * whole life, whatever the credential's status later (R-3.1.3.2).
   */
  private async facts(tx: SapTransaction, verified: VerifiedRSad, now: Date): Promise<AuthorizationFacts> {
    const { record, body } = tx;
    const factors: AuthorizationFacts["factors"] = [];
    for (const type of verified.factors) {
      if (type === "DEVICE_KEY") {
        factors.push({ id: verified.deviceKeyId!, type }); // a device key factor's id is its thumbprint
        continue;
      }
      const page = await this.o.rSad.records.list({ kind: "factor", where: { signerId: record.signerId, status: "ACTIVE", type }, limit: 100 });
      for (const f of page.items) factors.push({ id: f.id, type });
    }
    const credential = await this.o.rSad.records.get("credential", record.credentialId);
    return {
      v: 1,
      transactionId: record.id,
      signerId: record.signerId,
      credentialId: record.credentialId,
      sca: record.sca,
      hashAlgorithm: record.hashAlgorithm,
      signatureScheme: body.signatureScheme,
      signatureFormat: body.signatureFormat,
      numSignatures: record.numSignatures,
      dtbsrDigest: Buffer.from(record.dtbsrDigest!).toString("base64url"),
      expiresAt: record.expiresAt.toISOString(),
      authorizedAt: now.toISOString(),
      method: verified.method,
      factors,
      csrOnly: body.csrOnly === true || credential?.status === "PENDING",
    };
  }

  /**
   * sam.proto Limits.max_authorize_attempts: an R.SAD that fails verification (a wrong factor, a
   * forged R.SAD: AUTHENTICATION_FAILED, SAD_INVALID) counts against the transaction, which becomes
   * FAILED at the limit. A replayed R.SAD (its jti already used) does not: concurrent copies of one
   * valid R.SAD must not fail the transaction its first copy authorizes. Neither do an expired
   * R.SAD, a method below the credential's level (no factor was tried) or refusals of state or
   * infrastructure (a suspended credential, a store failure). The refusal is rethrown unchanged.
   *
   * T-2.2.1.3, T-2.1.2.2: each verification runs on an attempt of the transaction reserved first
   * (registration/lockout.ts), and only while the settled failures read after reserving plus the
   * attempts held stay within the limit, so concurrent R.SADs never get more than
   * max_authorize_attempts checks; the others are refused unchecked and uncounted: TRANSACTION_STATE
   * once it is no longer pending, LIMIT_EXCEEDED while the budget is taken by checks in flight. A
   * failure is counted before its attempt is released; a success keeps it until the transaction
   * has left PENDING (the caller releases it).
   */
  private async countingFailures<T>(transactionId: string, now: Date, policies: Pick<SecurityPolicies, "current">, verify: () => Promise<T>): Promise<{ attempt: HeldAttempt; verified: T }> {
    const max = (await policies.current()).maxAuthorizeAttempts;
    const attempt = await reserveAttempt(this.o.store, transactionAttempts(transactionId), now);
    let verified: T;
    try {
      const settled = await this.o.store.getTransaction(transactionId);
      if (settled?.state !== "PENDING") throw new InkanError("TRANSACTION_STATE", "the transaction is not pending");
      if (settled.authorizeFailures + attempt.held > max) throw new InkanError("LIMIT_EXCEEDED", "too many authorization attempts of this transaction are in progress; retry once they end");
      verified = await verify();
    } catch (err) {
      if (err instanceof InkanError && attemptFailures.has(err.code)) {
        // Counted before the attempt goes; if counting fails the attempt stays and counts (fail closed), the answer stays the refusal.
        const counted = await this.o.store.recordAuthorizeFailure({ id: transactionId, maxFailures: max, now }).then(() => true, () => false);
        if (counted) await attempt.release().catch(() => undefined);
      } else {
        await attempt.release().catch(() => undefined); // no check counted; left behind it would only count once more
      }
      throw err;
    }
    return { attempt, verified };
  }
}

/** The refusals that are failed Authorize attempts (see countingFailures). */
const attemptFailures: ReadonlySet<string> = new Set(["AUTHENTICATION_FAILED", "SAD_INVALID"]);
