import { Code } from "@connectrpc/connect";
import { Reason } from "@inkan/sdk";
import { describe, expect, it } from "vitest";
import type { AttackCase } from "./case.js";
import { toJson, toJunit, toMarkdown } from "./report.js";
import { conforms, judge, parseKnownFailures, type SuiteReport } from "./runner.js";

const attack: AttackCase = {
  kind: "attack",
  id: "example",
  covers: ["T-2.2.1.3"],
  description: "an example",
  expected: { code: Code.PermissionDenied, reason: Reason.SAD_REPLAYED },
  alsoAccepted: [{ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE }],
  run: () => Promise.reject(new Error("not run")),
};
const refusal = (code: Code, reason: Reason) => ({ code, reason, message: "" });

describe("judge", () => {
  it("passes the expected or an also-accepted refusal that signed nothing", () => {
    expect(judge(attack, { outcome: refusal(Code.PermissionDenied, Reason.SAD_REPLAYED), signed: 0 })).toBeUndefined();
    expect(judge(attack, { outcome: refusal(Code.FailedPrecondition, Reason.TRANSACTION_STATE), signed: 0 })).toBeUndefined();
  });

  it("fails a success, another refusal, a signature obtained, or a broken invariant", () => {
    expect(judge(attack, { outcome: "succeeded", signed: 0 })).toMatch(/the attack succeeded/);
    expect(judge(attack, { outcome: refusal(Code.PermissionDenied, Reason.SAD_INVALID), signed: 0 })).toMatch(/got PERMISSION_DENIED REASON_SAD_INVALID/);
    expect(judge(attack, { outcome: refusal(Code.PermissionDenied, Reason.SAD_REPLAYED), signed: 1 })).toMatch(/1 signature/);
    expect(judge(attack, { outcome: refusal(Code.PermissionDenied, Reason.SAD_REPLAYED), signed: 0, problems: ["2 of 32 succeeded"] })).toBe("2 of 32 succeeded");
    expect(judge({ ...attack, expected: "success" }, { outcome: refusal(Code.Internal, Reason.INTEGRITY_VIOLATION), signed: 0 })).toMatch(/expected the legitimate flow to succeed/);
  });
});

describe("known failures", () => {
  it("reads 'case-id: reason' lines and comments; refuses an entry without a reason", () => {
    expect(parseKnownFailures("# ours\nreplay-jti: jti store not shared between nodes\n\njwe-zip : decompresses  # upstream bug\n")).toEqual(
      new Map([["replay-jti", "jti store not shared between nodes"], ["jwe-zip", "decompresses"]]),
    );
    expect(() => parseKnownFailures("replay-jti\n")).toThrow(/line 1/);
  });
});

const report: SuiteReport = {
  suite: "@inkan/conformance",
  suiteVersion: "0.1.0",
  target: "https://sam.example:8443",
  startedAt: "2026-11-25T00:00:00.000Z",
  runs: (["grpc", "connect"] as const).map((protocol) => ({
    protocol,
    results: [
      { id: "replay-jti", covers: ["T-2.2.1.3"], status: protocol === "grpc" ? "passed" : "failed", detail: protocol === "grpc" ? "" : "expected <X> & more", seen: "OK", expected: "PERMISSION_DENIED REASON_SAD_REPLAYED", durationMs: 12 },
      { id: "needs-second-sca", covers: ["R-3.2.1.2"], status: "skipped", detail: "no second SCA", seen: "", expected: "NOT_FOUND REASON_TRANSACTION_NOT_FOUND", durationMs: 0 },
      { id: "audit-tampering", covers: ["R-3.2.2.4"], status: "covered-elsewhere", detail: "", seen: "", expected: "", durationMs: 0, coveredBy: ["server/src/audit/verify.test.ts: R-3.2.2.4"] },
    ],
  })),
};

describe("reports", () => {
  it("the JSON report carries target, suite version, protocol and per case id, covered IDs, status, reason seen and duration", () => {
    const json = JSON.parse(toJson(report)) as SuiteReport;
    expect(json).toMatchObject({ target: "https://sam.example:8443", suiteVersion: "0.1.0" });
    expect(json.runs[1]!.protocol).toBe("connect");
    expect(json.runs[1]!.results[0]).toMatchObject({ id: "replay-jti", covers: ["T-2.2.1.3"], status: "failed", seen: "OK", durationMs: 12 });
    expect(conforms(report)).toBe(false);
    expect(conforms({ ...report, runs: report.runs.slice(0, 1) })).toBe(true);
  });

  it("JUnit XML: one suite per protocol, failures with their detail escaped, skips and covered-elsewhere as skipped", () => {
    const xml = toJunit(report);
    expect(xml).toContain('<testsuite name="inkan-conformance connect" tests="3" failures="1" skipped="2"');
    expect(xml).toContain("expected &lt;X&gt; &amp; more");
    expect(xml).toContain('<skipped message="covered elsewhere: server/src/audit/verify.test.ts: R-3.2.2.4"/>');
    expect(xml).toContain('<skipped message="skipped: no second SCA"/>');
  });

  it("the Markdown matrix has a row per ID with its cases and a status per protocol; IDs nothing covers say so", () => {
    const md = toMarkdown(report);
    expect(md).toContain("| ID | Threat or requirement | Cases | grpc | connect |");
    expect(md).toMatch(/\| T-2\.2\.1\.3 \| [^|]+ \| \[replay-jti\]\(#replay-jti\) \| passed \| \*\*FAILED\*\* \|/);
    expect(md).toMatch(/\| R-3\.2\.2\.4 \| [^|]+ \| \[audit-tampering\]\(#audit-tampering\) \| covered elsewhere \| covered elsewhere \|/);
    expect(md).toMatch(/\| T-2\.1\.1\.1 \| [^|]+ \| none \| not covered \| not covered \|/);
    expect(md).toContain("- connect `replay-jti`: **FAILED** (seen OK): expected <X> & more");
  });
});
