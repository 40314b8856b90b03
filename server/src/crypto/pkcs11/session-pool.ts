/**
 * A pool of logged-in read/write sessions on one token. One session serves one in-flight
 * operation: PKCS#11 sessions keep operation state (C_SignInit ... C_Sign) and pkcs11js runs the
 * *Async calls on libuv threads, so a session shared by two operations would mix their states.
 *
 * A session whose operation failed in an unexpected way may be left with an active operation
 * (CKR_ARGUMENTS_BAD, for one, does not end it), so it is replaced instead of reused. Login state
 * belongs to the token, not the session: it ends when the application's last session on the token
 * closes, so a replacement is opened (and logged in) before the old session is closed.
 *
 * A module that was lost (a restarted HSM, a removed token) leaves every session stale: the pool
 * is discarded as a whole and a new one is opened (see module-supervisor.ts).
 */
import { InkanError } from "../../errors.js";
import { hasCkr, toInkanError } from "./errors.js";
import { pkcs11js, type Handle, type Pkcs11 } from "./library.js";

export interface SessionPoolOptions {
  p11: Pkcs11;
  slot: Handle;
  /** Number of sessions, i.e. of operations in flight at once (default 4). */
  size: number;
  /** The user PIN; kept in memory to log in replacement sessions, never logged. */
  pin: string;
}

interface Waiter {
  resolve(session: Handle): void;
  reject(err: unknown): void;
}

export class SessionPool {
  readonly #p11: Pkcs11;
  readonly #slot: Handle;
  readonly #size: number;
  readonly #pin: string;
  readonly #idle: Handle[] = [];
  readonly #waiters: Waiter[] = [];
  #open = 0;
  #closing = false;
  #discarding: Promise<void> | undefined;
  readonly #onDrained: (() => void)[] = [];

  private constructor(options: SessionPoolOptions) {
    this.#p11 = options.p11;
    this.#slot = options.slot;
    this.#size = options.size;
    this.#pin = options.pin;
  }

  /** Opens all sessions and logs in; throws (and closes what it opened) if the PIN is refused. */
  static open(options: SessionPoolOptions): SessionPool {
    if (!Number.isSafeInteger(options.size) || options.size < 1) {
      throw new InkanError("INVALID_REQUEST", "session pool size must be a positive integer");
    }
    const pool = new SessionPool(options);
    try {
      for (let i = 0; i < options.size; i++) pool.#idle.push(pool.#openSession());
    } catch (err) {
      for (const s of pool.#idle) pool.#closeSession(s);
      throw err;
    }
    return pool;
  }

  /** Number of sessions currently open. */
  get size(): number {
    return this.#open;
  }

  /** Issue 23 (metrics): sessions open, busy with an operation, and callers waiting for one. */
  get stats(): { open: number; busy: number; waiting: number } {
    return { open: this.#open, busy: this.#open - this.#idle.length, waiting: this.#waiters.length };
  }

  /** Runs `fn` with a session of its own; a failing `fn` gets its session replaced. */
  async use<T>(fn: (session: Handle) => Promise<T> | T): Promise<T> {
    const session = await this.#acquire();
    let healthy = false;
    try {
      const result = await fn(session);
      healthy = true;
      return result;
    } finally {
      if (healthy) this.#release(session);
      else this.#replace(session);
    }
  }

  /**
   * Waits for every in-flight operation, then closes all sessions. No C_Logout: the login state is
   * shared by every session of the process on the token, so logging out here would log out another
   * pool (another crypto module on the same token, e.g. a CLI command or the bench inside a
   * server process). PKCS#11 logs the process out when its last session on the token closes.
   */
  async close(): Promise<void> {
    if (this.#discarding) return this.#discarding;
    if (this.#closing) return;
    this.#closing = true;
    if (this.#idle.length < this.#open || this.#waiters.length > 0) {
      await new Promise<void>((resolve) => this.#onDrained.push(resolve));
    }
    for (const s of this.#idle.splice(0)) this.#closeSession(s);
  }

  /**
   * Gives the pool up after its module was lost: waiting callers fail with CRYPTO_MODULE_FAILURE,
   * idle sessions are closed now and busy ones when their operation returns (C_CloseSession
   * errors are ignored: the session is gone already). Resolves once no session is open, so no
   * call of this pool is in flight any more (the library may then be initialized again).
   */
  discard(): Promise<void> {
    if (this.#discarding) return this.#discarding;
    this.#closing = true;
    const failure = new InkanError("CRYPTO_MODULE_FAILURE", "the crypto module is unavailable");
    for (const w of this.#waiters.splice(0)) w.reject(failure);
    for (const s of this.#idle.splice(0)) this.#closeSession(s);
    this.#discarding =
      this.#open === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.#onDrained.push(resolve));
    if (this.#open === 0) this.#drained(); // a close() that was waiting
    return this.#discarding;
  }

  #acquire(): Promise<Handle> {
    if (this.#closing) {
      return Promise.reject(new InkanError("CRYPTO_MODULE_FAILURE", "crypto module is closed"));
    }
    const idle = this.#idle.pop();
    if (idle) return Promise.resolve(idle);
    if (this.#open < this.#size) {
      try {
        return Promise.resolve(this.#openSession());
      } catch (err) {
        return Promise.reject(toInkanError(err, "opening a session"));
      }
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #release(session: Handle): void {
    if (this.#discarding) {
      this.#closeSession(session);
      if (this.#open === 0) this.#drained();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter.resolve(session);
      return;
    }
    this.#idle.push(session);
    if (this.#closing && this.#idle.length === this.#open) this.#drained();
  }

  #replace(session: Handle): void {
    let replacement: Handle | undefined;
    if (!this.#closing) {
      try {
        replacement = this.#openSession();
      } catch {
        replacement = undefined; // the next acquire tries again while the pool is below its size
      }
    }
    this.#closeSession(session);
    if (replacement) {
      this.#release(replacement);
      return;
    }
    if (this.#open === 0) {
      const failure = new InkanError("CRYPTO_MODULE_FAILURE", "crypto module has no usable session");
      for (const w of this.#waiters.splice(0)) w.reject(failure);
    }
    if (this.#discarding ? this.#open === 0 : this.#closing && this.#idle.length === this.#open && this.#waiters.length === 0) this.#drained();
  }

  #drained(): void {
    for (const resolve of this.#onDrained.splice(0)) resolve();
  }

  #openSession(): Handle {
    const session = this.#p11.C_OpenSession(this.#slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    try {
      this.#p11.C_Login(session, pkcs11js.CKU_USER, this.#pin);
    } catch (err) {
      if (!hasCkr(err, "CKR_USER_ALREADY_LOGGED_IN")) {
        try {
          this.#p11.C_CloseSession(session);
        } catch {
          // the login error is the one to report
        }
        throw err;
      }
    }
    this.#open++;
    return session;
  }

  #closeSession(session: Handle): void {
    this.#open--;
    try {
      this.#p11.C_CloseSession(session);
    } catch {
      // a session that cannot be closed is gone already
    }
  }
}
