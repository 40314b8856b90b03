/**
 * The CSC SAD (issue 16, decision taken): the gateway's own opaque, one-transaction credential,
 * bound to one client, one credential and the authorized hashes, expiring with the SAM transaction.
 * Behind it the gateway keeps the SAM's one-time SAD token chain in memory only (never at rest: a
 * gateway restart means the client must authorize again). signHash may be called several times with
 * hashes of the list: a hash already signed returns its recorded signature (a safe retry after a
 * lost response, and no second signature is made), a hash outside the list is refused before the
 * SAM is asked; extendTransaction replaces the SAD and the old one stops working.
 */
import { createHash, randomBytes } from "node:crypto";
import { createSignatureVerifier, type HashAlgorithm, type InkanClient, type SignatureAlgorithm } from "@inkan/sdk";
import { CscError, fromSam, invalidParameter, invalidSad } from "./errors.js";

export interface SessionInput {
  clientId: string;
  credentialId: string;
  signerId: string;
  transactionId: string;
  hashAlgorithm: HashAlgorithm;
  signatureAlgorithm: SignatureAlgorithm;
  hashes: readonly Uint8Array[];
  /** The credential's key (SPKI DER): every signature is checked against it before it is returned (T-2.2.1.8). */
  spki: Uint8Array;
  /** The SAM's first one-time SAD token (Authorize). A secret: never logged. */
  samToken: string;
  expiresAt: Date;
}

class Session {
  readonly signatures = new Map<string, Uint8Array>();
  readonly listed: Set<string>;
  #queue: Promise<unknown> = Promise.resolve();
  #broken = false;

  constructor(readonly input: SessionInput, private samToken: string | undefined) {
    this.listed = new Set(input.hashes.map(hex));
  }

  get expired(): boolean {
    return this.#broken || Date.now() >= this.input.expiresAt.getTime();
  }

  /** One signHash at a time per SAD: the SAM token chain is sequential. */
  sign(sam: InkanClient, hashes: readonly Uint8Array[]): Promise<Uint8Array[]> {
    const run = this.#queue.then(() => this.#sign(sam, hashes));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #sign(sam: InkanClient, hashes: readonly Uint8Array[]): Promise<Uint8Array[]> {
    if (this.expired) throw invalidSad();
    const keys = hashes.map(hex);
    // T-2.2.1.6: hash substitution is refused here, before the SAM is asked (and the SAM would refuse it too).
    if (keys.some((k) => !this.listed.has(k))) throw new CscError("invalid_request", "a hash is not among the hashes the SAD authorizes");
    if (new Set(keys).size !== keys.length) throw invalidParameter("hashes");
    const missing = hashes.filter((_, i) => !this.signatures.has(keys[i]!));
    if (missing.length > 0) {
      const token = this.samToken;
      if (!token) throw invalidSad();
      this.samToken = undefined; // one-time (T-2.2.1.3): never presented twice, even after a failure
      let res;
      try {
        res = await sam.sam.signHash({ authorization: { case: "sadToken", value: token }, hashes: [...missing] });
      } catch (err) {
        this.#broken = true; // the SAM consumed or refused the token: the client must authorize again
        throw fromSam(err);
      }
      this.samToken = res.nextSadToken || undefined;
      const check = createSignatureVerifier({ spki: this.input.spki, hashAlgorithm: this.input.hashAlgorithm, signatureAlgorithm: this.input.signatureAlgorithm, expectedSignatures: missing.length });
      if (res.signatures.length !== missing.length || missing.some((h, i) => !check(h, res.signatures[i]!))) {
        this.#broken = true;
        throw new CscError("server_error", "a signature did not verify against the credential's key and was withheld");
      }
      missing.forEach((h, i) => this.signatures.set(hex(h), res.signatures[i]!));
    }
    return keys.map((k) => this.signatures.get(k)!);
  }

  /** Resolves once no signHash of this session is in flight. */
  idle(): Promise<unknown> {
    return this.#queue;
  }

  /** Ends this session's usefulness without a SAM call (a replaced SAD, a reused code). */
  break(): void {
    this.#broken = true;
  }

  handOver(): Session {
    const next = new Session(this.input, this.samToken);
    this.signatures.forEach((v, k) => next.signatures.set(k, v));
    this.samToken = undefined;
    this.#broken = true;
    return next;
  }
}

export type SigningSession = Session;

/** The live CSC SADs, by the SHA-256 of their value (the value itself is only in the client's hands). */
export class SigningSessions {
  readonly #byDigest = new Map<string, Session>();

  create(input: SessionInput): { sad: string; session: Session } {
    this.#sweep();
    const sad = randomBytes(32).toString("base64url");
    const session = new Session(input, input.samToken);
    this.#byDigest.set(digest(sad), session);
    return { sad, session };
  }

  /** The session of `sad` when it belongs to `clientId` and `credentialId` and still works; otherwise one answer for all. */
  get(sad: string, clientId: string, credentialId?: string): Session {
    const s = this.#byDigest.get(digest(sad));
    if (!s || s.expired || s.input.clientId !== clientId || (credentialId !== undefined && s.input.credentialId !== credentialId)) throw invalidSad();
    return s;
  }

  /** The live session of a credential access token (oauth2code), whoever's it is; undefined otherwise. */
  peek(sad: string): Session | undefined {
    const s = this.#byDigest.get(digest(sad));
    return s && !s.expired ? s : undefined;
  }

  /** extendTransaction: a new SAD for the same transaction; the old one stops working at once. */
  async extend(sad: string, clientId: string, credentialId: string): Promise<{ sad: string; session: Session }> {
    const old = this.get(sad, clientId, credentialId);
    this.#byDigest.delete(digest(sad)); // the old SAD stops working now, before any wait
    await old.idle(); // a signHash in flight finishes its SAM call before the token chain moves on
    if (old.expired) throw invalidSad();
    const session = old.handOver();
    const next = randomBytes(32).toString("base64url");
    this.#byDigest.set(digest(next), session);
    return { sad: next, session };
  }

  #sweep(): void {
    for (const [k, s] of this.#byDigest) if (s.expired) this.#byDigest.delete(k);
  }
}

export const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const digest = (v: string) => createHash("sha256").update(v).digest("hex");
