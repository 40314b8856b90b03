/**
 * A signer's device-signed request over a one-time SAM challenge (RequestSuspension, the key-import
 * consent): the checks both share, in this order.
 *  1. The challenge ("chal") works once, and only for `binding` (its purpose and subject: this
 *     signer, this credential...): a replayed or redirected request fails (T-2.3.1.2, T-2.2.1.3).
 *  2. The JWS is by a registered, unrevoked device key of this very signer, found by "kid" among the
 *     signer's factors only, never a key the JWS names or carries (T-2.3.1.1, T-2.1.4.2).
 *  3. Its header and claims are exactly as expected (any altered claim or byte fails), within the
 *     policy's clock skew and lifetime.
 *  4. Its jti is accepted once by any node of this SAM (shared with the other device JWSs).
 * Failures are the caller's `refused` (with the cause, for the log) or `replayed` errors.
 */
import { InkanError } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { ChallengePurpose, OneTimeObjects } from "../store/port.js";
import { challengeHash } from "./activation.js";
import { DeviceProofRefused, peekDeviceJws, registeredDeviceKey, verifyDeviceJws } from "./device-jws.js";

export interface SignerRequestCheck {
  jws: unknown;
  signerId: string;
  /** What the challenge must have been issued for (activation.ts challengeBinding). */
  binding: { purpose: ChallengePurpose; subject: string };
  typ: string;
  /** The claims, exactly; "chal" is expected to be the consumed challenge. */
  claims: readonly string[];
  expect: Readonly<Record<string, unknown>>;
  now: Date;
  skewMs: number;
  maxLifetimeMs: number;
  /** Runs once the challenge is used up, before the replay verdict: e.g. a request naming another signer burns its challenge. */
  afterConsume?: (claims: Record<string, unknown>) => void;
  refused: (cause?: unknown) => Error;
  replayed: () => Error;
}

/** The request's claims, once every check passed. */
export async function verifySignerRequest(
  deps: { records: Pick<VerifiedRecords, "get">; oneTime: Pick<OneTimeObjects, "consumeChallenge" | "useJti"> },
  o: SignerRequestCheck,
): Promise<Record<string, unknown>> {
  let peeked: ReturnType<typeof peekDeviceJws>;
  try {
    peeked = peekDeviceJws(o.jws);
  } catch (err) {
    throw o.refused(err);
  }
  const chal = peeked.claims.chal;
  if (typeof chal !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(chal)) throw o.refused(new DeviceProofRefused("chal is not 32 bytes base64url"));
  const consumed = await deps.oneTime.consumeChallenge({ hash: challengeHash(Buffer.from(chal, "base64url")), purpose: o.binding.purpose, now: o.now });
  o.afterConsume?.(peeked.claims);
  if (!consumed || consumed.subject !== o.binding.subject) throw o.replayed();

  const key = await registeredDeviceKey(deps.records, o.signerId, peeked.header.kid).catch((err: unknown) => {
    if (err instanceof InkanError) throw err; // a failed integrity check (a rolled-back device key) or store failure is no bad proof
    throw o.refused(err);
  });
  let claims: Record<string, unknown>;
  try {
    claims = await verifyDeviceJws(o.jws, { key, typ: o.typ, claims: o.claims, expect: { ...o.expect, chal }, now: o.now, skewMs: o.skewMs, maxLifetimeMs: o.maxLifetimeMs });
  } catch (err) {
    throw o.refused(err);
  }
  const jtiExpiresAt = new Date((claims.exp as number) * 1000 + o.skewMs);
  if (!(await deps.oneTime.useJti({ key: `device-jws ${String(claims.jti)}`, expiresAt: jtiExpiresAt, now: o.now }))) throw o.replayed();
  return claims;
}
