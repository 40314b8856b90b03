/**
 * The suite against the in-repo SAM (the real server: SoftHSM2, SQLite, mTLS) over gRPC, Connect
 * and gRPC-Web: every case must pass, be skipped with a printed reason, or be covered elsewhere.
 * INKAN_WRITE_MATRIX=1 also writes conformance/traceability.md (the matrix the README links).
 */
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { toMarkdown } from "./report.js";
import { runSuite, type SuiteReport } from "./runner.js";
import { targetFromInit } from "./cli-options.js";
import { allProtocols } from "./target.js";
import { requirementIds, type RequirementId } from "./requirement-ids.js";

let t: TestServer;
let report: SuiteReport;

beforeAll(async () => {
  t = await startTestServer();
  report = await runSuite({ target: targetFromInit(t.server.url, t.pki.paths), protocols: allProtocols });
  if (process.env.INKAN_WRITE_MATRIX === "1") writeFileSync(new URL("../traceability.md", import.meta.url), toMarkdown(report));
}, 240_000);
afterAll(async () => {
  await t?.close();
});

describe("the conformance suite against the in-repo SAM", () => {
  for (const protocol of allProtocols) {
    it(`has no failed case over ${protocol}`, () => {
      const run = report.runs.find((r) => r.protocol === protocol)!;
      const failed = run.results.filter((r) => r.status === "failed").map((r) => `${r.id}: ${r.detail}`);
      for (const r of run.results.filter((x) => x.status === "skipped")) console.log(`skipped over ${protocol}: ${r.id}: ${r.detail}`);
      expect(failed).toEqual([]);
      expect(run.results.filter((r) => r.status === "passed").length).toBeGreaterThan(50);
    });
  }

  it("accounts for every threat and requirement ID, with at least one attack that ran for the black-box ones", () => {
    const results = report.runs.flatMap((r) => r.results);
    for (const id of requirementIds) expect(results.some((r) => r.covers.includes(id)), id).toBe(true);
    // The SAP threats are attacked, not only covered elsewhere.
    const attacked: RequirementId[] = ["T-2.2.1.1", "T-2.2.1.2", "T-2.2.1.3", "T-2.2.1.4", "T-2.2.1.5", "T-2.2.1.6", "T-2.2.1.7", "T-2.2.1.8", "T-2.3.1.1", "T-2.3.1.2", "R-3.2.1.2", "R-3.3.1", "R-3.3.2"];
    for (const id of attacked) {
      expect(results.some((r) => r.covers.includes(id) && r.status === "passed"), id).toBe(true);
    }
  });
});
