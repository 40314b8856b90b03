/**
 * T-2.1.2.2, issue 20: after a factor check that passed, the check's own reservation and the
 * reservations left behind by crashed checks are given back in one write batch (one commit). The
 * check's reservation must go whatever else fails (a reservation left behind counts as a used
 * attempt until its lease ends), and a failure must still reach the caller. Pure logic: fake store
 * ports, no SAM. The real budget is attacked over gRPC in lockout.test.ts.
 */
import { describe, expect, it } from "vitest";
import { InkanError } from "../errors.js";
import type { AttemptReservations } from "../store/port.js";
import { withFactorAttempt, type LockoutDeps } from "./lockout.js";

interface Calls {
  released: string[];
  expiredCleared: number;
  /** The order in which writes were issued, each with the turn of the event loop it was issued in. */
  issued: { write: string; turn: number }[];
}

/** A signer record whose body is `body`; `lockedOnSuccess` makes the success's update find it locked. */
function deps(options: { failExpired?: boolean; failRelease?: boolean; lockedOnSuccess?: boolean } = {}): { d: LockoutDeps; calls: Calls } {
  const calls: Calls = { released: [], expiredCleared: 0, issued: [] };
  // Each fake write settles on a later turn of the event loop, as a group commit does (it runs
  // after the turn's I/O and settles after its sync), so only writes issued together share a turn.
  let turn = 0;
  const later = <T>(settle: () => T): Promise<Awaited<T>> =>
    new Promise((resolve, reject) => setImmediate(() => {
      turn += 1;
      try {
        resolve(settle() as Awaited<T>);
      } catch (e) {
        reject(e);
      }
    }));
  let reads = 0;
  const attempts: AttemptReservations = {
    reserveAttempt: () => Promise.resolve(1),
    releaseAttempt: ({ id }: { id: string }) => {
      calls.issued.push({ write: "release", turn });
      return later(() => {
        if (options.failRelease) throw new InkanError("STORE_FAILURE", "release failed");
        calls.released.push(id);
      });
    },
    releaseExpiredAttempts: () => {
      calls.issued.push({ write: "expired", turn });
      return later(() => {
        if (options.failExpired) throw new InkanError("STORE_FAILURE", "clearing failed");
        calls.expiredCleared += 1;
      });
    },
  } as unknown as AttemptReservations;
  const d = {
    attempts,
    policies: { current: () => Promise.resolve({ lockoutThreshold: 5 }) },
    signers: {
      // The first read is the check's; the second is the success's update.
      record: () => {
        reads += 1;
        const locked = options.lockedOnSuccess === true && reads > 1;
        return Promise.resolve({ id: "sgn-1", version: 1, status: "ACTIVE", body: JSON.stringify(locked ? { lockedAt: "2026-12-08T00:00:00.000Z" } : {}) });
      },
      replace: () => Promise.reject(new Error("not expected: nothing to change")),
    },
    records: {},
    audit: { record: () => Promise.resolve() },
  } as unknown as LockoutDeps;
  return { d, calls };
}

const attempt = { signerId: "sgn-1", actor: { kind: "signer", signerId: "sgn-1" }, now: new Date("2026-12-08T00:00:00Z") } as never;
const passed = () => Promise.resolve({ ok: true as const });
const refused = () => new InkanError("AUTHENTICATION_FAILED", "refused");

describe("T-2.1.2.2: the reservations after a check that passed (issue 20: one write batch)", () => {
  it("the check's reservation and the expired ones are issued in the same turn, so they share one group commit", async () => {
    const { d, calls } = deps();
    await withFactorAttempt(d, attempt, passed, refused);
    expect(calls.released).toHaveLength(1);
    expect(calls.expiredCleared).toBe(1);
    expect(calls.issued.map((w) => w.write).sort()).toEqual(["expired", "release"]);
    expect(new Set(calls.issued.map((w) => w.turn)).size, "both writes in one turn of the event loop").toBe(1);
  });

  it("clearing the expired ones fails: the check's reservation is still given back, and the failure reaches the caller", async () => {
    const { d, calls } = deps({ failExpired: true });
    await expect(withFactorAttempt(d, attempt, passed, refused)).rejects.toMatchObject({ code: "STORE_FAILURE", message: "clearing failed" });
    expect(calls.released).toHaveLength(1);
  });

  it("giving the check's reservation back fails: the expired ones are still cleared, and the failure reaches the caller", async () => {
    const { d, calls } = deps({ failRelease: true });
    await expect(withFactorAttempt(d, attempt, passed, refused)).rejects.toMatchObject({ code: "STORE_FAILURE", message: "release failed" });
    expect(calls.expiredCleared).toBe(1);
  });

  it("the signer was locked while the check ran (the threshold lowered): CREDENTIAL_LOCKED, and the reservation is given back once", async () => {
    const { d, calls } = deps({ lockedOnSuccess: true });
    await expect(withFactorAttempt(d, attempt, passed, refused)).rejects.toMatchObject({ code: "CREDENTIAL_LOCKED" });
    expect(calls.released).toHaveLength(1);
    expect(calls.expiredCleared).toBe(0);
  });
});
