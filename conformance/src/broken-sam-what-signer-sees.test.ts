/**
 * The what-signer-sees cases (cases/what-signer-sees.ts; issue 13, finding 6) must catch a SAM
 * with the flaw. Each SAM here is the real server with exactly one faulty part, mocked in this
 * test's module graph only (the product has no switch that could do this), as in
 * broken-sam.test.ts: the cases that attack that part must fail, the rest must still pass.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { targetFromInit } from "./cli-options.js";
import { runCases as runCasesOn, type CaseResult } from "./runner.js";

/** Which part is broken; all off: the real SAM. */
const fault = vi.hoisted(() => ({
  /** The verifier never compares "desc" and "halg" with the transaction. */
  ignoreSeen: false,
  /** The verifier takes an R.SAD without "desc" and "halg" (as the SAM before this contract did). */
  seenOptional: false,
  /** BeginTransaction and SealTransaction hand out SadChallenges without the SAM's signature. */
  unsigned: false,
  /** Not the SAM: the SDK's device part takes any SadChallenge without checking the SAM's signature. */
  trustingDevice: false,
}));

const seen = ["desc", "halg"];

vi.mock("../../server/src/sap/seen-claims.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../server/src/sap/seen-claims.js")>();
  return {
    ...actual,
    checkSeenClaims: (claims: Record<string, unknown>, tx: Parameters<typeof actual.checkSeenClaims>[1]) => {
      if (fault.ignoreSeen) return;
      if (fault.seenOptional && seen.every((c) => !(c in claims))) return;
      actual.checkSeenClaims(claims, tx);
    },
  };
});

vi.mock("../../server/src/registration/device-jws.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../server/src/registration/device-jws.js")>();
  /** With seenOptional: the claim set need not hold "desc" and "halg" when it has neither. */
  const lenient = <O extends { claims: readonly string[] }>(o: O, claims: unknown): O => {
    if (!fault.seenOptional || typeof claims !== "object" || claims === null || seen.some((c) => c in claims)) return o;
    return { ...o, claims: o.claims.filter((c) => !seen.includes(c)) };
  };
  const payloadOf = (jws: unknown): unknown => {
    try {
      return JSON.parse(Buffer.from(String(jws).split(".")[1] ?? "", "base64url").toString("utf8"));
    } catch {
      return undefined;
    }
  };
  return {
    ...actual,
    checkClaimSet: (value: unknown, o: Parameters<typeof actual.checkClaimSet>[1]) => actual.checkClaimSet(value, lenient(o, value)),
    verifyDeviceJws: (jws: unknown, o: Parameters<typeof actual.verifyDeviceJws>[1]) => actual.verifyDeviceJws(jws, lenient(o, payloadOf(jws))),
  };
});

vi.mock("../../server/src/sap/challenge-signature.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../server/src/sap/challenge-signature.js")>();
  class FaultyChallengeSigner extends actual.ChallengeSigner {
    override async sign(fields: Parameters<typeof actual.ChallengeSigner.prototype.sign>[0]): Promise<string> {
      return fault.unsigned ? "" : super.sign(fields);
    }
  }
  return { ...actual, ChallengeSigner: FaultyChallengeSigner };
});

vi.mock("../../sdk/src/device/sad-challenge.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../sdk/src/device/sad-challenge.js")>();
  return {
    ...actual,
    verifySadChallenge: async (...args: Parameters<typeof actual.verifySadChallenge>) => (fault.trustingDevice ? undefined : actual.verifySadChallenge(...args)),
  };
});

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
  Object.assign(fault, { ignoreSeen: false, seenOptional: false, unsigned: false, trustingDevice: false });
});

/** Runs the named cases over gRPC against `server`; their results by id. */
const runCases = (server: TestServer, ids: string[]): Promise<Map<string, CaseResult>> => runCasesOn(targetFromInit(server.server.url, server.pki.paths), ids, { label: "broken SAM" });

const all = ["what-signer-sees-description", "what-signer-sees-hash-algorithm", "what-signer-sees-claims-missing", "challenge-signed-by-sam", "device-refuses-unsigned-challenge", "device-refuses-foreign-signed-challenge"];

describe("the what-signer-sees cases", () => {
  it("R-3.2.1.1 / T-2.2.1.7: all pass against the real SAM (so a failure below is the fault's)", async () => {
    t = await startTestServer();
    const results = await runCases(t, [...all, "signatures-verify"]);
    for (const id of [...all, "signatures-verify"]) expect(results.get(id)?.status, id).toBe("passed");
  }, 120_000);
});

describe("a SAM whose R.SAD verifier ignores the description and hash algorithm the signer saw", () => {
  it("R-3.2.1.1 / T-2.2.1.7: the description and hash-algorithm cases fail against it", async () => {
    t = await startTestServer();
    fault.ignoreSeen = true;
    const mustFail = ["what-signer-sees-description", "what-signer-sees-hash-algorithm"];
    const results = await runCases(t, [...mustFail, "what-signer-sees-claims-missing", "forge-claim-dtbsr", "signatures-verify"]);
    for (const id of mustFail) expect(results.get(id)?.status, id).toBe("failed");
    // The rest of the verifier still works: only the faulty part shows.
    for (const id of ["what-signer-sees-claims-missing", "forge-claim-dtbsr", "signatures-verify"]) expect(results.get(id)?.status, id).toBe("passed");
  }, 120_000);
});

describe("a SAM that accepts an R.SAD without the claims of what the signer saw", () => {
  it("R-3.2.1.1 / T-2.2.1.7: the missing-claims case fails against it", async () => {
    t = await startTestServer();
    fault.seenOptional = true;
    const results = await runCases(t, ["what-signer-sees-claims-missing", "what-signer-sees-description", "forge-claim-extra", "signatures-verify"]);
    expect(results.get("what-signer-sees-claims-missing")?.status).toBe("failed");
    for (const id of ["what-signer-sees-description", "forge-claim-extra", "signatures-verify"]) expect(results.get(id)?.status, id).toBe("passed");
  }, 120_000);
});

describe("a SAM that hands out SadChallenges unsigned", () => {
  it("T-2.2.1.7: the challenge-signature case fails against it", async () => {
    t = await startTestServer();
    fault.unsigned = true;
    const results = await runCases(t, ["challenge-signed-by-sam", "what-signer-sees-description", "signatures-verify"]);
    expect(results.get("challenge-signed-by-sam")?.status).toBe("failed");
    expect(results.get("challenge-signed-by-sam")?.detail).toMatch(/UNSIGNED/);
    for (const id of ["what-signer-sees-description", "signatures-verify"]) expect(results.get(id)?.status, id).toBe("passed");
  }, 120_000);
});

describe("an SDK whose device part does not check the SAM's signature on a SadChallenge", () => {
  it("T-2.2.1.7: the device cases fail against it (they test the SDK, with a sound SAM)", async () => {
    t = await startTestServer();
    fault.trustingDevice = true;
    const mustFail = ["device-refuses-unsigned-challenge", "device-refuses-foreign-signed-challenge"];
    const results = await runCases(t, [...mustFail, "what-signer-sees-description", "signatures-verify"]);
    for (const id of mustFail) expect(results.get(id)?.status, id).toBe("failed");
    for (const id of ["what-signer-sees-description", "signatures-verify"]) expect(results.get(id)?.status, id).toBe("passed");
  }, 120_000);
});
