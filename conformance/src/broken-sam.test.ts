/**
 * The suite must catch a broken SAM. Each SAM here is the real server with exactly one faulty part
 * (injected through the test-only ServeHooks, or around the TLS socket in this test process), and
 * the cases that attack that part must fail: otherwise the suite could not tell a broken SAM from
 * a sound one.
 */
import { X509Certificate } from "node:crypto";
import { TLSSocket } from "node:tls";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import type { ChallengeRecord, Store } from "../../server/src/store/port.js";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { targetFromInit } from "./cli-options.js";
import { runCases as runCasesOn, type CaseResult } from "./runner.js";
import { prepareIdentities } from "./target.js";

/**
 * The faulty verifier: when switched on, it takes the DTBS/R digest from the R.SAD's own "dtbsr"
 * claim instead of the transaction (so it never notices a digest that differs). Mocked here, in
 * this test's module graph only: the product has no switch that could do this.
 */
const faultyVerifier = vi.hoisted(() => ({ ignoreDigest: false }));
vi.mock("../../server/src/sap/r-sad.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../server/src/sap/r-sad.js")>();
  return {
    ...actual,
    verifyRSad: async (input: Parameters<typeof actual.verifyRSad>[0], deps: Parameters<typeof actual.verifyRSad>[1]) => {
      if (!faultyVerifier.ignoreDigest) return actual.verifyRSad(input, deps);
      const envelope = JSON.parse(new TextDecoder().decode(await deps.samKeys.decryptCompactJwe(input.rSad, { maxBytes: 16_384, now: input.now }))) as { sad?: string };
      const claims = JSON.parse(Buffer.from(envelope.sad?.split(".")[1] ?? "", "base64url").toString("utf8")) as { dtbsr?: string };
      const claimed = new Uint8Array(Buffer.from(claims.dtbsr ?? "", "base64url"));
      return actual.verifyRSad({ ...input, transaction: { ...input.transaction, digest: claimed } }, deps);
    },
  };
});

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** Runs the named cases over gRPC against `server`; their results by id. */
async function runCases(server: TestServer, ids: string[], prepare?: (identities: Awaited<ReturnType<typeof prepareIdentities>>) => void, knownFailures = new Map<string, string>()): Promise<Map<string, CaseResult>> {
  const target = targetFromInit(server.server.url, server.pki.paths);
  const identities = await prepareIdentities(target);
  prepare?.(identities);
  return runCasesOn(target, ids, { label: "broken SAM", identities, knownFailures });
}

/** A proxy of `store` with some methods replaced. */
function withMethods(store: Store, replaced: Partial<Store>): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop in replaced) return (replaced as Record<string | symbol, unknown>)[prop];
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

describe("a SAM whose store lets one-time values be used again", () => {
  it("T-2.2.1.3 / R-3.3.2: the replay cases fail against it", async () => {
    // The faulty part: every consume succeeds, and a consumed token looks fresh.
    const wrapStore = (store: Store): Store => {
      const challenges = new Map<string, ChallengeRecord>();
      return withMethods(store, {
        useJti: async () => true,
        findSadToken: async (hash) => {
          const token = await store.findSadToken(hash);
          return token && { ...token, consumedAt: undefined, revokedAt: undefined };
        },
        consumeSadToken: async (req) => {
          const token = (await store.consumeSadToken(req)) ?? (await store.findSadToken(req.hash));
          return token && { ...token, consumedAt: undefined, revokedAt: undefined };
        },
        consumeChallenge: async (req) => {
          const challenge = (await store.consumeChallenge(req)) ?? challenges.get(req.hash);
          if (challenge) challenges.set(req.hash, challenge);
          return challenge;
        },
      });
    };
    t = await startTestServer({}, { wrapStore });
    const mustFail = ["replay-jti", "replay-sad-token", "replay-sad-token-concurrent", "replay-stream-token", "replay-resume-token", "replay-suspension-request"];
    // A target's known failure is reported as such, with its reason, and does not fail the run.
    const known = new Map([["replay-jti", "this broken SAM forgets every jti"]]);
    const results = await runCases(t, [...mustFail, "signatures-verify"], undefined, known);
    for (const id of mustFail.filter((id) => id !== "replay-jti")) expect(results.get(id)?.status, id).toBe("failed");
    expect(results.get("replay-jti")).toMatchObject({ status: "known-failure", detail: expect.stringContaining("this broken SAM forgets every jti") });
    expect(results.get("signatures-verify")?.status).toBe("passed"); // the SAM still works: only the faulty part shows
  }, 120_000);
});

describe("a SAM whose transport ignores which SCA is calling", () => {
  const original = TLSSocket.prototype.getPeerCertificate;
  afterAll(() => {
    TLSSocket.prototype.getPeerCertificate = original;
  });

  it("R-3.2.1.2 / T-2.2.1.2: the cross-SCA cases fail against it", async () => {
    t = await startTestServer();
    const owner = new X509Certificate(t.pki.sca.cert).raw;
    const mustFail = ["bypass-other-sca-authorize", "bypass-other-sca-token", "bypass-other-sca-stream", "bypass-other-sca-cancel"];
    const results = await runCases(t, [...mustFail, "signatures-verify"], (identities) => {
      // The faulty part: the second SCA's certificate is taken for the first SCA's (one identity for every SCA).
      const intruder = new X509Certificate(identities.secondSca!.cert).raw;
      TLSSocket.prototype.getPeerCertificate = function (this: TLSSocket, detailed?: boolean) {
        const peer = original.call(this, detailed as true);
        return peer?.raw && Buffer.compare(peer.raw, intruder) === 0 ? { ...peer, raw: owner } : peer;
      } as typeof original;
    });
    for (const id of mustFail) expect(results.get(id)?.status, id).toBe("failed");
    expect(results.get("signatures-verify")?.status).toBe("passed");
  }, 120_000);
});

describe("a SAM whose R.SAD verifier ignores the DTBS/R digest", () => {
  afterAll(() => {
    faultyVerifier.ignoreDigest = false;
  });

  it("T-2.2.1.6 / R-3.2.1.4: the digest forgery cases fail against it", async () => {
    t = await startTestServer();
    faultyVerifier.ignoreDigest = true;
    const mustFail = ["forge-claim-dtbsr", "dtbsr-reordered"];
    const results = await runCases(t, [...mustFail, "forge-claim-txn", "signatures-verify"]);
    for (const id of mustFail) expect(results.get(id)?.status, id).toBe("failed");
    // The rest of the verifier still works: only the faulty part shows.
    expect(results.get("forge-claim-txn")?.status).toBe("passed");
    expect(results.get("signatures-verify")?.status).toBe("passed");
  }, 120_000);
});

describe("a SAM that lets a TOTP code be used again", () => {
  it("T-2.2.1.3: the replayed-OTP case fails against it", async () => {
    // The faulty part: every TOTP step looks unused (the R.SAD's jti is still remembered).
    t = await startTestServer({}, { wrapStore: (store) => withMethods(store, { useJti: async (req) => req.key.startsWith("totp ") || (await store.useJti(req)) }) });
    const results = await runCases(t, ["pin-totp-replayed-otp", "pin-totp-authorizes", "pin-totp-wrong-otp"]);
    expect(results.get("pin-totp-replayed-otp")?.status).toBe("failed");
    // The rest of the method still works: only the faulty part shows.
    expect(results.get("pin-totp-authorizes")?.status).toBe("passed");
    expect(results.get("pin-totp-wrong-otp")?.status).toBe("passed");
  }, 120_000);
});
