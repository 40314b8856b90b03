/** The three report forms: JSON (the whole record), JUnit XML (for CI systems), and the Markdown traceability matrix. */
import { catalogue } from "./catalogue.js";
import { requirementIds } from "./requirement-ids.js";
import type { CaseResult, SuiteReport } from "./runner.js";

export function toJson(report: SuiteReport): string {
  return JSON.stringify(report, null, 2) + "\n";
}

const xml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** One <testsuite> per protocol, one <testcase> per case; covered-elsewhere and skips are <skipped>. */
export function toJunit(report: SuiteReport): string {
  const suites = report.runs.map((run) => {
    const failures = run.results.filter((r) => r.status === "failed").length;
    const skipped = run.results.filter((r) => r.status !== "passed" && r.status !== "failed").length;
    const time = run.results.reduce((t, r) => t + r.durationMs, 0) / 1000;
    const cases = run.results.map((r) => {
      const head = `    <testcase classname="inkan-conformance.${run.protocol}" name="${xml(`${r.id} [${r.covers.join(", ")}]`)}" time="${(r.durationMs / 1000).toFixed(3)}"`;
      if (r.status === "passed") return `${head}/>`;
      if (r.status === "failed") return `${head}>\n      <failure message="${xml(r.detail)}">${xml(`expected ${r.expected}, seen ${r.seen || "nothing"}: ${r.detail}`)}</failure>\n    </testcase>`;
      const why = r.status === "covered-elsewhere" ? `covered elsewhere: ${(r.coveredBy ?? []).join("; ")}` : `${r.status}: ${r.detail}`;
      return `${head}>\n      <skipped message="${xml(why)}"/>\n    </testcase>`;
    });
    return `  <testsuite name="inkan-conformance ${run.protocol}" tests="${run.results.length}" failures="${failures}" skipped="${skipped}" time="${time.toFixed(3)}" timestamp="${report.startedAt}">\n${cases.join("\n")}\n  </testsuite>`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="@inkan/conformance ${report.suiteVersion} against ${xml(report.target)}">\n${suites.join("\n")}\n</testsuites>\n`;
}

const mark: Record<CaseResult["status"], string> = {
  passed: "passed",
  failed: "**FAILED**",
  skipped: "skipped",
  "covered-elsewhere": "covered elsewhere",
  "known-failure": "known failure",
  "not-applicable": "not applicable",
};

/** The worst status among results: failed > known failure > passed > skipped > covered elsewhere > not applicable. */
function worst(results: CaseResult[]): string {
  for (const s of ["failed", "known-failure", "passed", "skipped", "covered-elsewhere", "not-applicable"] as const) if (results.some((r) => r.status === s)) return mark[s];
  return "not covered";
}

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

/** ID -> cases -> status per protocol, then every case with its result and, for failures and skips, why. */
export function toMarkdown(report: SuiteReport): string {
  const protocols = report.runs.map((r) => r.protocol);
  const lines = [
    `# Inkan conformance report`,
    ``,
    `Suite @inkan/conformance ${report.suiteVersion} against \`${report.target}\`, started ${report.startedAt}, over ${protocols.join(", ")}.`,
    ``,
    `## Traceability matrix`,
    ``,
    `| ID | Threat or requirement | Cases | ${protocols.join(" | ")} |`,
    `| --- | --- | --- | ${protocols.map(() => "---").join(" | ")} |`,
  ];
  for (const id of requirementIds) {
    const caseIds = [...new Set(report.runs.flatMap((r) => r.results.filter((c) => c.covers.includes(id)).map((c) => c.id)))];
    const perProtocol = report.runs.map((r) => worst(r.results.filter((c) => c.covers.includes(id))));
    lines.push(`| ${id} | ${cell(catalogue[id])} | ${caseIds.map((c) => `[${c}](#${c})`).join(", ") || "none"} | ${perProtocol.join(" | ")} |`);
  }
  lines.push(``, `## Cases`, ``, `| Case | Covers | Expected | ${protocols.join(" | ")} |`, `| --- | --- | --- | ${protocols.map(() => "---").join(" | ")} |`);
  // Every case of any run, in first-seen order (the CSC-specific cases appear in the csc run only).
  const first: CaseResult[] = [];
  for (const c of report.runs.flatMap((r) => r.results)) if (!first.some((x) => x.id === c.id)) first.push(c);
  for (const c of first) {
    const statuses = report.runs.map((r) => {
      const x = r.results.find((y) => y.id === c.id);
      return x ? mark[x.status] : "";
    });
    lines.push(`| <a id="${c.id}"></a>${c.id} | ${c.covers.join(", ")} | ${c.status === "covered-elsewhere" ? cell((c.coveredBy ?? []).join("; ")) : c.expected} | ${statuses.join(" | ")} |`);
  }
  const notes = report.runs.flatMap((r) => r.results.filter((c) => c.status === "failed" || c.status === "known-failure" || c.status === "skipped" || c.status === "not-applicable").map((c) => `- ${r.protocol} \`${c.id}\`: ${mark[c.status]}${c.seen ? ` (seen ${c.seen})` : ""}: ${cell(c.detail)}`));
  if (notes.length > 0) lines.push(``, `## Failures and skips`, ``, ...notes);
  return lines.join("\n") + "\n";
}
