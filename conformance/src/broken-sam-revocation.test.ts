/**
 * The revocation and CSR-approval cases (issue 13 findings 2 and 4) must catch a SAM with the flaw.
 * The SAM here is the real server (SoftHSM2, SQLite, mTLS) with the flaw switched on in one part:
 *  - "revoked factors keep their authorizations" (R-3.3.1, T-2.1.2.2): the store's
 *    revokeSignerTransactions does nothing, and signing no longer asks whether the factors that
 *    authorized a transaction are still active; as the SAM was before the fix;
 *  - "a CSR approval is an ordinary authorization" (R-3.1.3.2, T-2.1.3.2): signing ignores that
 *    the authorization was recorded as CSR-only.
 * Each flaw must fail exactly its cases while the rest of the SAM still passes.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Store } from "../../server/src/store/port.js";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { allCases } from "./cases/index.js";
import { targetFromInit } from "./cli-options.js";
import { runSuite, type CaseResult } from "./runner.js";
import { prepareIdentities, type Identities, type TargetOptions } from "./target.js";

/** Which flaw is on. Mocked in this test's module graph only: the product has no such switch. */
const flaw = vi.hoisted(() => ({ revokedFactorsSign: false, csrApprovalSigns: false }));

vi.mock("../../server/src/sap/signing-core.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../server/src/sap/signing-core.js")>();
  type Check = InstanceType<typeof actual.SigningCore>["usableCredential"];
  class FaultySigningCore extends actual.SigningCore {
    // The faulty check: the sealed authorization reaches it with no factors, or not CSR-only.
    override usableCredential(...[record, options = {}]: Parameters<Check>): ReturnType<Check> {
      const auth = options.authorization;
      if (!auth) return super.usableCredential(record, options);
      const faulty = { ...auth, ...(flaw.revokedFactorsSign ? { factors: [] } : {}), ...(flaw.csrApprovalSigns ? { csrOnly: false } : {}) };
      return super.usableCredential(record, { ...options, authorization: faulty });
    }
  }
  return { ...actual, SigningCore: FaultySigningCore };
});

/** The store, with revokeSignerTransactions doing nothing while the flaw is on. */
const wrapStore = (store: Store): Store =>
  new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "revokeSignerTransactions") return async (req: Parameters<Store["revokeSignerTransactions"]>[0]) => (flaw.revokedFactorsSign ? [] : target.revokeSignerTransactions(req));
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });

const revocation = ["revoked-device-rotated-token", "reset-factors-old-token"];
const csr = ["csr-approval-sign-hash"];

let t: TestServer;
let target: TargetOptions;
let identities: Identities;

beforeAll(async () => {
  t = await startTestServer({}, { wrapStore });
  target = targetFromInit(t.server.url, t.pki.paths);
  identities = await prepareIdentities(target);
}, 60_000);
afterAll(async () => {
  flaw.revokedFactorsSign = false;
  flaw.csrApprovalSigns = false;
  await t?.close();
});

/** Runs the named cases over gRPC; their results by id. */
async function runCases(ids: string[]): Promise<Map<string, CaseResult>> {
  const report = await runSuite({ target, identities, protocols: ["grpc"], cases: allCases.filter((c) => ids.includes(c.id)) });
  const results = new Map(report.runs[0]!.results.map((r) => [r.id, r]));
  for (const r of results.values()) console.log(`broken SAM: ${r.id} ${r.status}${r.detail ? `: ${r.detail}` : ""}`);
  return results;
}

describe("a SAM whose RevokeDevice and ResetFactors leave what the revoked factors authorized usable", () => {
  it("R-3.3.1, T-2.1.2.2: the revocation cases fail against it; the CSR case and the legitimate flow pass", async () => {
    flaw.revokedFactorsSign = true;
    try {
      const results = await runCases([...revocation, ...csr, "signatures-verify"]);
      for (const id of revocation) expect(results.get(id), id).toMatchObject({ status: "failed", detail: expect.stringContaining("signature(s) out of the SAM") });
      for (const id of [...csr, "signatures-verify"]) expect(results.get(id)?.status, id).toBe("passed");
    } finally {
      flaw.revokedFactorsSign = false;
    }
  }, 60_000);
});

describe("a SAM whose CSR approvals sign like any authorization", () => {
  it("R-3.1.3.2, T-2.1.3.2: the CSR-approval case fails against it; the revocation cases pass", async () => {
    flaw.csrApprovalSigns = true;
    try {
      const results = await runCases([...csr, ...revocation]);
      for (const id of csr) expect(results.get(id), id).toMatchObject({ status: "failed", detail: expect.stringContaining("signature(s) out of the SAM") });
      for (const id of revocation) expect(results.get(id)?.status, id).toBe("passed");
    } finally {
      flaw.csrApprovalSigns = false;
    }
  }, 60_000);
});
