/**
 * Keeps two groups of PKCS#11 calls apart: calls that create token objects on another thread
 * (C_GenerateKeyPairAsync, C_GenerateKeyAsync, C_UnwrapKeyAsync on libuv's threads: "create") and
 * the main thread's calls that read or change the token's object list (C_FindObjects*,
 * C_GetAttributeValue, C_CreateObject, C_DestroyObject: "index"; also a data-object read on a crypto
 * worker, issue 20, which only searches and reads). Any number of calls of one group
 * run at once, never calls of both. A call that does both on another thread (issue 20: a data-object
 * write on a crypto worker searches the token's objects and creates one) is "alone": it runs with
 * no other call of any group.
 *
 * Why: SoftHSM2 2.6.1 with its file object store fails a key generation now and then
 * (CKR_GENERAL_ERROR, sometimes CKR_TEMPLATE_INCONSISTENT) when another session of the process
 * searches the token's objects meanwhile; measured: about 1 in 60 EC key generations with two
 * concurrent searchers, none in 500 with five concurrent generations and no searcher. This was the
 * conformance suite's rare "crypto module failure during key generation" (a case's signer enrolled
 * while other cases looked keys up). Other processes on the same token are not covered.
 *
 * Fair: waiters are served in arrival order, so neither group starves the other.
 */
export type ObjectIndexGroup = "create" | "index" | "alone";

interface Waiter {
  group: ObjectIndexGroup;
  start(): void;
}

export class ObjectIndexLock {
  #active: ObjectIndexGroup | undefined;
  #running = 0;
  readonly #waiting: Waiter[] = [];

  async run<T>(group: ObjectIndexGroup, fn: () => Promise<T>): Promise<T> {
    await this.#enter(group);
    try {
      return await fn();
    } finally {
      this.#leave();
    }
  }

  #enter(group: ObjectIndexGroup): Promise<void> {
    if (this.#running === 0 || (this.#active === group && group !== "alone" && this.#waiting.length === 0)) {
      this.#active = group;
      this.#running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push({ group, start: resolve }));
  }

  #leave(): void {
    this.#running--;
    if (this.#running > 0) return;
    this.#active = undefined;
    // The next group in line starts, with every waiter of that group up to the first of the other.
    while (this.#waiting.length > 0 && (this.#active === undefined || (this.#active !== "alone" && this.#waiting[0]?.group === this.#active))) {
      const next = this.#waiting.shift() as Waiter;
      this.#active = next.group;
      this.#running++;
      next.start();
    }
  }
}
