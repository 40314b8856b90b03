/**
 * The SCA scope case (issue 19) must catch a SAM that ignores scopes: the real server with the
 * scope check answering "in scope" for every signer (mocked here, in this test's module graph only,
 * switched on by `ignoreScopes.on`: the product has no such switch). Against it the case must fail
 * while the rest of the SAM still works; against the sound SAM it passes. The second SCA comes from
 * `inkan init` (its scope is the signer group "demo-b"), through targetFromInit, as `--from-init` gives it.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { allCases } from "./cases/index.js";
import { targetFromInit } from "./cli-options.js";
import { runSuite, type CaseResult } from "./runner.js";
import { prepareIdentities } from "./target.js";

const ignoreScopes = vi.hoisted(() => ({ on: false }));
vi.mock("../../server/src/admin/security-policy.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../server/src/admin/security-policy.js")>();
  return { ...actual, inSignerScope: (...args: Parameters<typeof actual.inSignerScope>) => ignoreScopes.on || actual.inSignerScope(...args) };
});

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
}, 60_000);
afterAll(async () => {
  ignoreScopes.on = false;
  await t?.close();
});

const scopeCase = "scope-other-tenant-begin-transaction";

/** Runs the named cases over gRPC and Connect; their results by protocol and id. */
async function runCases(ids: string[]): Promise<Map<string, CaseResult>> {
  const target = targetFromInit(t.server.url, t.pki.paths);
  const identities = await prepareIdentities(target);
  const report = await runSuite({ target, identities, protocols: ["grpc", "connect"], cases: allCases.filter((c) => ids.includes(c.id)) });
  const results = new Map<string, CaseResult>();
  for (const run of report.runs) for (const r of run.results) results.set(`${run.protocol}:${r.id}`, r);
  for (const [k, r] of results) console.log(`broken SAM (scopes): ${k} ${r.status}${r.detail ? `: ${r.detail}` : ""}`);
  return results;
}

describe("the SCA scope case (issue 19)", () => {
  it("R-3.2.1.2 / T-2.2.1.4: passes against the sound SAM (the second SCA of inkan init sees none of the suite's signers)", async () => {
    const results = await runCases([scopeCase, "bypass-sign-hash-without-authorize"]);
    for (const p of ["grpc", "connect"]) {
      expect(results.get(`${p}:${scopeCase}`)?.status, p).toBe("passed");
      expect(results.get(`${p}:bypass-sign-hash-without-authorize`)?.status, p).toBe("passed");
    }
  }, 120_000);

  it("R-3.2.1.2 / T-2.2.1.4: fails against a SAM that ignores scopes, while the rest of that SAM passes", async () => {
    ignoreScopes.on = true;
    try {
      const results = await runCases([scopeCase, "bypass-sign-hash-without-authorize"]);
      for (const p of ["grpc", "connect"]) {
        expect(results.get(`${p}:${scopeCase}`)?.status, p).toBe("failed");
        expect(results.get(`${p}:bypass-sign-hash-without-authorize`)?.status, p).toBe("passed");
      }
    } finally {
      ignoreScopes.on = false;
    }
  }, 120_000);
});
