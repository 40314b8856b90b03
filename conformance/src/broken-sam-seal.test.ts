/**
 * The seal-concurrent case must catch a SAM whose SealTransaction returns its challenge without
 * checking that its own freeze of the list won (issue 20 writes the freeze and the challenge in one
 * batch, so a call that lost the freeze has issued a challenge too): the real server with the
 * store's freeze answering "frozen" whatever its compare-and-set did. Patched here, in this test's
 * process only (switched on by `fault.on`): the product has no switch that could do this. Against
 * it the case fails; against the sound SAM it passes.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { SqliteStore } from "../../server/src/store/sqlite/sqlite-store.js";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { targetFromInit } from "./cli-options.js";
import { runCases, type CaseResult } from "./runner.js";

const fault = { on: false };
const freeze = SqliteStore.prototype.completeDtbsrUpload;
vi.spyOn(SqliteStore.prototype, "completeDtbsrUpload").mockImplementation(async function (this: SqliteStore, ...args: Parameters<typeof freeze>) {
  const frozen = await freeze.apply(this, args);
  return fault.on || frozen;
});

let t: TestServer | undefined;
afterEach(async () => {
  fault.on = false;
  await t?.close();
  t = undefined;
});

async function run(ids: string[]): Promise<Map<string, CaseResult>> {
  t = await startTestServer();
  return runCases(targetFromInit(t.server.url, t.pki.paths), ids, { label: `${fault.on ? "broken" : "sound"} SAM` });
}

describe("a SAM that returns the challenge of a SealTransaction that lost the freeze (issue 20)", () => {
  it("T-2.2.1.3 / R-3.2.1.4: the seal-concurrent case passes against the sound SAM", async () => {
    const results = await run(["seal-concurrent"]);
    expect(results.get("seal-concurrent")?.status).toBe("passed");
  }, 120_000);

  it("T-2.2.1.3 / R-3.2.1.4: the seal-concurrent case fails against it, while one seal at a time still works", async () => {
    fault.on = true;
    const results = await run(["seal-concurrent", "dtbsr-chunk-substituted"]);
    expect(results.get("seal-concurrent")).toMatchObject({ status: "failed" });
    expect(results.get("dtbsr-chunk-substituted")?.status).toBe("passed");
  }, 120_000);
});
