/**
 * The lockout cases must catch the SAM issue 13 (finding 1) found: the real server with its attempt
 * reservations replaced by the old counter, i.e. the factor is checked first and the failure is
 * then counted by reading the sealed signer record and writing + 1 as one compare-and-set (a lost
 * write answers VERSION_CONFLICT and the failure is lost), and no attempt of a transaction is
 * reserved before its R.SAD is verified. Mocked here, in this test's module graph only (switched on
 * by `oldCounter.on`): the product has no switch that could do this. Against it the lockout cases
 * must fail, while the rest of the SAM still works; against the sound SAM they pass.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { factorCheckFailed } from "../../server/src/audit/events.js";
import type { SignerBody } from "../../server/src/registration/signers.js";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { targetFromInit } from "./cli-options.js";
import { runCases as runCasesOn, type CaseResult } from "./runner.js";

const oldCounter = vi.hoisted(() => ({ on: false, transactionsOnly: false }));
vi.mock("../../server/src/registration/lockout.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../server/src/registration/lockout.js")>();
  return {
    ...actual,
    // No reservation: every request sees itself alone (the transaction's attempts, the operator's consents).
    reserveAttempt: async (...args: Parameters<typeof actual.reserveAttempt>) =>
      oldCounter.on || (oldCounter.transactionsOnly && args[1].startsWith("txn:")) ? { held: 1, release: async () => undefined } : actual.reserveAttempt(...args),
    // The old read-then-CAS counter, after the check: every request in flight has its factor checked.
    withFactorAttempt: async (...[d, a, check, refused]: Parameters<typeof actual.withFactorAttempt>) => {
      if (!oldCounter.on) return actual.withFactorAttempt(d, a, check, refused);
      const outcome = await check();
      const signer = await d.signers.record(a.signerId);
      const body = JSON.parse(signer.body) as SignerBody;
      if (outcome.ok) {
        const { failedAttempts: _f, ...rest } = body;
        if (_f) await d.signers.replace(signer, signer.status, { ...rest, updatedAt: a.now.toISOString() }); // VERSION_CONFLICT when it lost
        return;
      }
      const threshold = (await d.policies.current()).lockoutThreshold;
      const failedAttempts = (body.failedAttempts ?? 0) + 1;
      const locked = body.lockedAt !== undefined || failedAttempts >= threshold;
      await d.signers.replace(signer, signer.status, { ...body, failedAttempts, ...(locked ? { lockedAt: body.lockedAt ?? a.now.toISOString() } : {}), updatedAt: a.now.toISOString() }); // VERSION_CONFLICT when it lost
      await d.audit.record(factorCheckFailed({ actor: a.actor, signerId: a.signerId, factor: outcome.factor, failedAttempts }));
      throw refused(outcome.cause);
    },
  };
});

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** Runs the named cases over gRPC against `server`; their results by id. */
const runCases = (server: TestServer, ids: string[]): Promise<Map<string, CaseResult>> => runCasesOn(targetFromInit(server.server.url, server.pki.paths), ids, { label: "broken SAM" });

const mustFail = ["lockout-concurrent-guesses", "lockout-concurrent-change-pin", "authorize-attempts-concurrent"];

describe("the concurrent guessing cases against the sound SAM", () => {
  it("T-2.1.2.2 / T-2.2.1.3 / R-3.1.2.2: pass (attempts are reserved before each check)", async () => {
    t = await startTestServer();
    const results = await runCases(t, mustFail);
    for (const id of mustFail) expect(results.get(id)?.status, id).toBe("passed");
  }, 120_000);
});

describe("a SAM that checks the PIN before it counts the attempt (the read-then-CAS lockout of issue 13)", () => {
  afterEach(() => {
    oldCounter.on = false;
    oldCounter.transactionsOnly = false;
  });

  it("T-2.1.2.2 / T-2.2.1.3 / R-3.1.2.2: the concurrent guessing cases fail against it", async () => {
    t = await startTestServer();
    oldCounter.on = true;
    const results = await runCases(t, [...mustFail, "signatures-verify"]);
    for (const id of mustFail) expect(results.get(id)?.status, id).toBe("failed");
    expect(results.get("signatures-verify")?.status).toBe("passed"); // the SAM still works: only the faulty part shows
  }, 120_000);

  it("T-2.2.1.3: with the signer's lockout sound but no attempt of a transaction reserved, the max_authorize_attempts case fails", async () => {
    t = await startTestServer();
    oldCounter.transactionsOnly = true;
    const results = await runCases(t, ["authorize-attempts-concurrent", "lockout-concurrent-guesses"]);
    expect(results.get("authorize-attempts-concurrent")?.status).toBe("failed");
    expect(results.get("lockout-concurrent-guesses")?.status).toBe("passed"); // only the faulty part shows
  }, 120_000);
});
