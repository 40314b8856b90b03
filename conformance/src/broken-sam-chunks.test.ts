/**
 * The short-first-chunk case must catch a SAM that takes a first DTBS/R chunk shorter than
 * max_hashes_per_chunk while more hashes follow (issue 18, item 6): the real server with the chunk
 * rule (server/src/sap/chunk-rule.ts) switched off, as Inkan was before that rule. Mocked here, in
 * this test's module graph only (switched on by `fault.lenient`): the product has no switch that
 * could do this. Against it the case fails; against the sound SAM it passes.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { targetFromInit } from "./cli-options.js";
import { runCases, type CaseResult } from "./runner.js";

const fault = vi.hoisted(() => ({ lenient: false }));
vi.mock("../../server/src/sap/chunk-rule.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../server/src/sap/chunk-rule.js")>();
  return {
    ...actual,
    checkChunkLength: (...args: Parameters<typeof actual.checkChunkLength>) => (fault.lenient ? undefined : actual.checkChunkLength(...args)),
  };
});

let t: TestServer | undefined;
afterEach(async () => {
  fault.lenient = false;
  await t?.close();
  t = undefined;
});

async function run(ids: string[]): Promise<Map<string, CaseResult>> {
  t = await startTestServer();
  return runCases(targetFromInit(t.server.url, t.pki.paths), ids, { label: `${fault.lenient ? "broken" : "sound"} SAM` });
}

describe("a SAM that takes a short first chunk (issue 18)", () => {
  it("T-2.2.1.6 / R-3.2.1.4: the short-first-chunk case passes against the sound SAM", async () => {
    const results = await run(["short-first-chunk", "dtbsr-chunk-substituted"]);
    expect(results.get("short-first-chunk")?.status).toBe("passed");
    expect(results.get("dtbsr-chunk-substituted")?.status).toBe("passed");
  }, 120_000);

  it("T-2.2.1.6 / R-3.2.1.4: the short-first-chunk case fails against it", async () => {
    fault.lenient = true;
    const results = await run(["short-first-chunk", "dtbsr-chunk-substituted", "signatures-verify"]);
    expect(results.get("short-first-chunk")).toMatchObject({ status: "failed", detail: expect.stringContaining("but the attack succeeded") });
    // The rest of the upload checks still work: only the faulty part shows.
    expect(results.get("dtbsr-chunk-substituted")?.status).toBe("passed");
    expect(results.get("signatures-verify")?.status).toBe("passed");
  }, 120_000);
});
