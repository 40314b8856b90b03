/**
 * Issue 20: no second seal check of the same record within one call. A SignHash reads the policy,
 * the credential, the signer and the factors that authorized it before it signs and again after
 * suspended or revoked meanwhile), and each check was one HMAC in the crypto module.
 *
 * Within a call run under {@link withSealMemo}, a seal that verified is remembered by the exact
 * bytes it covers and the exact seal (SHA-256 over both, in Node), so the same copy read again is
 * not sent to the module a second time. Every read still goes to the store, is checked against its
 * freshness head (rollback) and, if anything of it changed (a new version, another status, another
 * seal), is verified in the module again. Only successes are remembered, and only for that call:
 * the memo dies with the call, so a module key replaced or a module lost is seen by the next call.
 * The server also remembers verdicts across calls (seal-cache.ts: the same content-addressed rule,
 * cleared when the module is lost or reconnects); a sealer without that cache relies on this memo alone.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createHash } from "node:crypto";

const calls = new AsyncLocalStorage<Set<string>>();

/** Runs `fn` as one call: seal checks inside it are remembered until it ends (nested calls share the outer memo). */
export function withSealMemo<T>(fn: () => Promise<T>): Promise<T> {
  return calls.getStore() ? fn() : calls.run(new Set(), fn);
}

/**
 * `check` (a seal check in the module that throws when the seal is wrong) unless the same bytes
 * with the same seal already passed in this call. Outside {@link withSealMemo}: always `check`.
 */
export async function sealChecked(covered: Uint8Array, seal: Uint8Array, check: () => Promise<void>): Promise<void> {
  const memo = calls.getStore();
  if (!memo) return check();
  const key = createHash("sha256").update(covered).update("\n").update(seal).digest("base64");
  if (memo.has(key)) return;
  await check();
  memo.add(key);
}
