// Per-file timings of a vitest JSON report, slowest first, and the test groups over their budget
// (scripts/test-budgets.json: seconds per group of files; CI must stay well under 30 minutes).
// Budgets are printed, never enforced: a busy machine is slower, and timed tests are not tests.
import { readFileSync } from "node:fs";
import { relative } from "node:path";

const report = JSON.parse(readFileSync(process.argv[2] ?? ".data/vitest-report.json", "utf8"));
const budgets = JSON.parse(readFileSync(new URL("./test-budgets.json", import.meta.url), "utf8"));
const files = report.testResults
  .map((f) => ({ file: relative(process.cwd(), f.name), seconds: Math.max(0, (f.endTime - f.startTime) / 1000) }))
  .sort((a, b) => b.seconds - a.seconds);

console.log("== per-file timings (s)");
for (const f of files) console.log(`${f.seconds.toFixed(1).padStart(7)}  ${f.file}`);
const total = files.reduce((s, f) => s + f.seconds, 0);
console.log(`${total.toFixed(1).padStart(7)}  all ${files.length} files (summed; files run in parallel)`);

const matches = (pattern, file) => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*/g, ".*").replace(/(?<!\.)\*/g, "[^/]*")}$`).test(file);
for (const [group, { files: patterns, seconds }] of Object.entries(budgets)) {
  const spent = files.filter((f) => patterns.some((p) => matches(p, f.file))).reduce((s, f) => s + f.seconds, 0);
  const mark = spent > seconds ? "OVER BUDGET" : "ok";
  console.log(`budget ${group}: ${spent.toFixed(1)} s of ${seconds} s ${mark}`);
}
