/**
 * Signing requests relayed between an SCA and the signer's device (issue 15). The gateway keeps
 * what the signer is asked (the SAM-signed SadChallenge, public) and the request's state; the
 * R.SAD the device builds is held in memory only, until the SCA that posted the request takes it
 * (a restart loses it: the request goes back to pending and the signer approves again).
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { GatewayStore } from "../store/gateway-store.js";

export type RequestState = "pending" | "submitted" | "authorized" | "declined" | "failed" | "cancelled";
const finalStates: readonly RequestState[] = ["authorized", "declined", "failed", "cancelled"];

export interface SigningRequest {
  id: string;
  signerId: string;
  credentialId: string;
  sca: string;
  scaFingerprint: string;
  transactionId: string;
  challengeJson: string;
  expiresAt: number;
  createdAt: number;
  state: RequestState;
  version: number;
  refusal: string | null;
  refusals: number;
  signed: number;
  /** Where the portal sends the signer's browser after the decision (a CSC request's gateway path); null otherwise. */
  returnTo: string | null;
}

interface Row {
  id: string; signer_id: string; credential_id: string; sca: string; sca_fingerprint: string; transaction_id: string;
  challenge_json: string; expires_at: number; created_at: number; state: RequestState; version: number; refusal: string | null; refusals: number; signed: number; return_to: string | null;
}

const fromRow = (r: Row): SigningRequest => ({
  id: r.id, signerId: r.signer_id, credentialId: r.credential_id, sca: r.sca, scaFingerprint: r.sca_fingerprint, transactionId: r.transaction_id,
  challengeJson: r.challenge_json, expiresAt: r.expires_at, createdAt: r.created_at, state: r.state, version: r.version, refusal: r.refusal, refusals: r.refusals, signed: r.signed, returnTo: r.return_to,
});

/** What the SCA's long poll returns. */
export type ScaUpdate =
  | { state: "pending" }
  | { state: "approved"; rSad: string }
  | { state: "declined" | "cancelled" | "expired" | "failed" | "authorized" };

export class SigningRequests {
  readonly #db: GatewayStore;
  /** R.SADs on their way to the SCA, by request id: memory only, never at rest. */
  readonly #rSads = new Map<string, string>();
  readonly #changes = new EventEmitter();

  private constructor(db: GatewayStore, private readonly clock: () => number) {
    this.#db = db;
    this.#changes.setMaxListeners(0);
  }

  static async open(db: GatewayStore, clock: () => number = Date.now): Promise<SigningRequests> {
    const requests = new SigningRequests(db, clock);
    // An R.SAD in flight did not survive the restart: the signer approves again. Not on a shared
    // store: there a submitted request's R.SAD may be in the memory of another, running node.
    if (!db.shared) await db.run("UPDATE requests SET state = 'pending', version = version + 1, updated_at = ? WHERE state = 'submitted'", [clock()]);
    return requests;
  }

  async create(input: Omit<SigningRequest, "id" | "createdAt" | "state" | "version" | "refusal" | "refusals" | "signed" | "returnTo"> & { returnTo?: string }): Promise<SigningRequest> {
    const id = randomBytes(32).toString("base64url");
    const now = this.clock();
    await this.#db.run(`INSERT INTO requests (id, signer_id, credential_id, sca, sca_fingerprint, transaction_id, challenge_json, expires_at, created_at, state, version, updated_at, return_to)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 1, ?, ?)`, [id, input.signerId, input.credentialId, input.sca, input.scaFingerprint, input.transactionId, input.challengeJson, input.expiresAt, now, now, input.returnTo ?? null]);
    return (await this.get(id))!;
  }

  async get(id: string): Promise<SigningRequest | undefined> {
    const row = await this.#db.get<Row>("SELECT * FROM requests WHERE id = ?", [id]);
    return row ? fromRow(row) : undefined;
  }

  /** The signer's requests still waiting for them (not expired), newest first. */
  async openFor(signerId: string): Promise<SigningRequest[]> {
    const rows = await this.#db.all<Row>("SELECT * FROM requests WHERE signer_id = ? AND state IN ('pending', 'submitted') AND expires_at > ? ORDER BY created_at DESC LIMIT 50", [signerId, this.clock()]);
    return rows.map(fromRow);
  }

  isExpired(r: SigningRequest): boolean {
    return r.expiresAt <= this.clock();
  }

  /** The device's R.SAD for a pending request; false when it is not pending (any more). */
  async submit(id: string, rSad: string): Promise<boolean> {
    if (!(await this.#transition(id, ["pending"], "submitted", { refusal: null }))) return false;
    this.#rSads.set(id, rSad);
    this.#changed(id);
    return true;
  }

  decline(id: string): Promise<boolean> {
    return this.#transitionAndNotify(id, ["pending"], "declined");
  }

  cancel(id: string): Promise<boolean> {
    return this.#transitionAndNotify(id, ["pending", "submitted"], "cancelled");
  }

  /**
   * The SCA reports the SAM's verdict on the R.SAD it relayed. A refused R.SAD that the signer may
   * answer again (a wrong PIN) puts the request back to pending with the reason; any other refusal
   * ends it.
   */
  async report(id: string, outcome: { authorized: true } | { authorized: false; reason: string; retry: boolean; maxRefusals?: number }): Promise<boolean> {
    this.#rSads.delete(id);
    if (outcome.authorized) return this.#transitionAndNotify(id, ["submitted"], "authorized");
    const r = await this.get(id);
    // The SAM fails a transaction after max_authorize_attempts refusals: then the signer cannot try again.
    const spent = outcome.maxRefusals !== undefined && (r?.refusals ?? 0) + 1 >= outcome.maxRefusals;
    return this.#transitionAndNotify(id, ["submitted"], outcome.retry && !spent ? "pending" : "failed", { refusal: outcome.reason, countRefusal: true });
  }

  /**
   * The SCA's signing progress. The first report on a submitted request also says the SAM accepted
   * the R.SAD (an SCA that signs has been authorized), so an SCA may skip the outcome call.
   */
  async progress(id: string, signed: number): Promise<boolean> {
    const done = (await this.#db.run(
      "UPDATE requests SET state = 'authorized', refusal = NULL, signed = ?, version = version + 1, updated_at = ? WHERE id = ? AND state IN ('submitted', 'authorized') AND signed < ?",
      [signed, this.clock(), id, signed],
    )) === 1;
    if (done) {
      this.#rSads.delete(id);
      this.#changed(id);
    }
    return done;
  }

  /** Waits until the request's version passes `after` or `timeoutMs` elapses; the request as it is then. */
  async waitForChange(id: string, after: number, timeoutMs: number, signal?: AbortSignal): Promise<SigningRequest | undefined> {
    const now = await this.get(id);
    if (!now || now.version > after || finalStates.includes(now.state)) return now;
    await new Promise<void>((done) => {
      // On a shared store another gateway node may change the request (the signer's portal calls
      // reach any node): look at the row every second besides this node's own notifications.
      const poll = this.#db.shared
        ? setInterval(() => void this.get(id).then((r) => { if (!r || r.version > after) finish(); }, () => undefined), 1000)
        : undefined;
      const finish = () => {
        clearTimeout(timer);
        clearInterval(poll);
        this.#changes.off(id, finish);
        signal?.removeEventListener("abort", finish);
        done();
      };
      const timer = setTimeout(finish, Math.max(0, Math.min(timeoutMs, now.expiresAt - this.clock())));
      this.#changes.on(id, finish);
      signal?.addEventListener("abort", finish);
    });
    // The caller is gone (its connection closed, or the gateway is stopping): touch nothing more.
    if (signal?.aborted) return undefined;
    return this.get(id);
  }

  /** The SCA's view: the R.SAD once (then it is forgotten), or the final state. */
  scaUpdate(r: SigningRequest): ScaUpdate {
    if (r.state === "submitted") {
      const rSad = this.#rSads.get(r.id);
      if (rSad !== undefined) return { state: "approved", rSad };
      return { state: "pending" };
    }
    if (r.state === "pending") return this.isExpired(r) ? { state: "expired" } : { state: "pending" };
    return { state: r.state };
  }

  /**
   * The R.SAD of a submitted request, handed over once: it is forgotten here as it is taken (the CSC
   * API's outcome; the SCA relay's long poll uses scaUpdate and report instead).
   */
  takeRSad(id: string): string | undefined {
    const rSad = this.#rSads.get(id);
    this.#rSads.delete(id);
    return rSad;
  }

  /**
   * Cancels every open request whose SCA fingerprint starts with `prefix` (the CSC API's, whose
   * authorizations lived in the memory of a gateway that restarted: approving them would lead nowhere).
   */
  cancelOpenOf(prefix: string): Promise<number> {
    return this.#db.run("UPDATE requests SET state = 'cancelled', version = version + 1, updated_at = ? WHERE state IN ('pending', 'submitted') AND substr(sca_fingerprint, 1, ?) = ?", [
      this.clock(),
      prefix.length,
      prefix,
    ]);
  }

  /** Drops requests whose transaction expired more than a day ago. */
  purge(): Promise<number> {
    return this.#db.run("DELETE FROM requests WHERE expires_at < ?", [this.clock() - 86_400_000]);
  }

  async #transitionAndNotify(id: string, from: readonly RequestState[], to: RequestState, set: { refusal?: string | null; countRefusal?: boolean } = {}): Promise<boolean> {
    const ok = await this.#transition(id, from, to, set);
    if (ok) this.#changed(id);
    return ok;
  }

  async #transition(id: string, from: readonly RequestState[], to: RequestState, set: { refusal?: string | null; countRefusal?: boolean }): Promise<boolean> {
    const refusal = "refusal" in set ? set.refusal ?? null : undefined;
    const sql = `UPDATE requests SET state = ?, version = version + 1, updated_at = ?${refusal !== undefined ? ", refusal = ?" : ""}${set.countRefusal ? ", refusals = refusals + 1" : ""}
      WHERE id = ? AND state IN (${from.map(() => "?").join(", ")}) AND expires_at > ?`;
    const args: unknown[] = [to, this.clock(), ...(refusal !== undefined ? [refusal] : []), id, ...from, this.clock()];
    return (await this.#db.run(sql, args)) === 1;
  }

  #changed(id: string): void {
    this.#changes.emit(id);
  }
}
