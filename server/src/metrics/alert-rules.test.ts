/**
 * Issue 23: the Prometheus alert rules in deploy/prometheus are valid (`promtool check rules`),
 * fire on the series they are meant for (`promtool test rules`), and name only metrics the server
 * registers: a renamed metric would leave an alert that can never fire.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SamMetrics, metricNames } from "./metrics.js";

const dir = fileURLToPath(new URL("../../../deploy/prometheus/", import.meta.url));
const rulesFile = `${dir}inkan-alerts.yml`;

function promtool(): string | undefined {
  try {
    return execFileSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
}
const tool = promtool();
if (!tool) console.warn("alert rules: promtool is missing (apt-get install -y prometheus; scripts/setup.sh does it as root): its checks are skipped; the metric-name check runs");

/** The series names of the SAM's registry (a histogram's _bucket, _count and _sum included). */
async function registeredSeries(): Promise<Set<string>> {
  const metrics = await new SamMetrics(() => undefined).registry.getMetricsAsJSON();
  const names = new Set<string>();
  for (const m of metrics) {
    names.add(m.name);
    if (String(m.type) === "histogram") for (const suffix of ["_bucket", "_count", "_sum"]) names.add(m.name + suffix);
  }
  return names;
}

/** Every inkan_* metric a rules file names (in its expressions and annotations) that `known` lacks. */
function unknownMetrics(rules: string, known: Set<string>): string[] {
  const named = new Set(rules.match(/\binkan_[a-z0-9_]+/g) ?? []);
  return [...named].filter((n) => !known.has(n)).sort();
}

describe("Issue 23: Prometheus alert rules (deploy/prometheus/inkan-alerts.yml)", () => {
  it("the exported list of metric names is exactly what the server registers", async () => {
    const metrics = await new SamMetrics(() => undefined).registry.getMetricsAsJSON();
    expect(metrics.map((m) => m.name).sort()).toEqual([...metricNames].sort());
  });

  it("every metric the rules name is registered by the server; a misspelt one is found", async () => {
    const known = await registeredSeries();
    const rules = readFileSync(rulesFile, "utf8");
    expect(unknownMetrics(rules, known)).toEqual([]);
    expect(rules.match(/\binkan_[a-z0-9_]+/g)?.length).toBeGreaterThan(10);
    // The check itself can fail: a rule on a metric the server does not have.
    expect(unknownMetrics(rules.replace("inkan_lockouts_total", "inkan_lockout_total"), known)).toEqual(["inkan_lockout_total"]);
  });

  it("cover lockout spikes, integrity violations, audit failures, module errors and policy tampering", () => {
    const rules = readFileSync(rulesFile, "utf8");
    for (const alert of ["InkanLockoutSpike", "InkanIntegrityViolation", "InkanAuditWriteFailure", "InkanCryptoModuleUnavailable", "InkanCryptoModuleErrors", "InkanPolicyTampered"]) {
      expect(rules).toContain(`alert: ${alert}\n`);
    }
  });

  it.skipIf(!tool)("pass `promtool check rules` and the alert unit tests of `promtool test rules`", () => {
    const check = execFileSync(tool!, ["check", "rules", rulesFile], { encoding: "utf8" });
    expect(check).toMatch(/SUCCESS: \d+ rules found/);
    const tested = execFileSync(tool!, ["test", "rules", "inkan-alerts.test.yml"], { cwd: dir, encoding: "utf8" });
    expect(tested).toContain("SUCCESS");
  });
});
