/**
 * Runs the cases against a target, protocol by protocol, and judges each: a case passes when the
 * SAM refused the attack with the expected gRPC code and Inkan reason (or one also accepted), the
 * attack got nothing signed, and no further invariant broke.
 */
import { readFileSync } from "node:fs";
import { Code } from "@connectrpc/connect";
import { Reason } from "@inkan/sdk";
import { CaseSkipped, type ConformanceCase, type ExpectedRefusal, type Observation } from "./case.js";
import { allCases } from "./cases/index.js";
import type { RequirementId } from "./requirement-ids.js";
import { Session, type Outcome } from "./session.js";
import { prepareIdentities, type Identities, type Protocol, type TargetOptions } from "./target.js";

/** This package's version: the suite version every report carries. */
export const suiteVersion = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;

/** not-applicable: the case's attack has no equivalent on this surface (--protocol csc), with the reason in detail. */
export type CaseStatus = "passed" | "failed" | "skipped" | "covered-elsewhere" | "known-failure" | "not-applicable";

export interface CaseResult {
  id: string;
  covers: RequirementId[];
  status: CaseStatus;
  /** Why it failed, was skipped or is a known failure; empty when passed. */
  detail: string;
  /** What the SAM answered, e.g. "PERMISSION_DENIED REASON_SAD_INVALID" or "OK". Empty when the case did not run. */
  seen: string;
  expected: string;
  durationMs: number;
  /** For covered-elsewhere: the server integration tests that cover it. */
  coveredBy?: string[];
}

export interface ProtocolRun {
  /** A SAM protocol, or "csc": the CSC cases through the gateway (csc/run-csc.ts). */
  protocol: Protocol | "csc";
  results: CaseResult[];
}

export interface SuiteReport {
  suite: "@inkan/conformance";
  suiteVersion: string;
  target: string;
  startedAt: string;
  runs: ProtocolRun[];
}

export interface RunOptions {
  target: TargetOptions;
  protocols: readonly Protocol[];
  /** Case id -> why it is known to fail on this target. */
  knownFailures?: ReadonlyMap<string, string>;
  /** Default: every case. */
  cases?: readonly ConformanceCase[];
  /** Called after each case (progress output). */
  onResult?: (protocol: Protocol, result: CaseResult) => void;
  /** Identities prepared earlier (tests reuse them across runs); prepared from `target` when absent. */
  identities?: Identities;
}

/** "PERMISSION_DENIED REASON_SAD_INVALID" */
export function describeRefusal(r: ExpectedRefusal): string {
  const code = (Code[r.code] ?? String(r.code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  return `${code} REASON_${Reason[r.reason] ?? String(r.reason)}`;
}

function describeOutcome(o: Outcome): string {
  return o === "succeeded" ? "OK" : describeRefusal(o);
}

/** The verdict on one observation; undefined when the case passed. */
export function judge(c: Extract<ConformanceCase, { kind: "attack" }>, o: Observation): string | undefined {
  const problems = [...(o.problems ?? [])];
  if (o.signed !== 0) problems.push(`the attack got ${o.signed} signature(s) out of the SAM`);
  if (c.expected === "success") {
    if (o.outcome !== "succeeded") problems.unshift(`expected the legitimate flow to succeed, got ${describeOutcome(o.outcome)}`);
  } else {
    const accepted = [c.expected, ...(c.alsoAccepted ?? [])];
    const outcome = o.outcome;
    if (outcome === "succeeded") problems.unshift(`expected ${describeRefusal(c.expected)}, but the attack succeeded`);
    else if (!accepted.some((a) => a.code === outcome.code && a.reason === outcome.reason)) problems.unshift(`expected ${accepted.map(describeRefusal).join(" or ")}, got ${describeOutcome(outcome)}`);
  }
  return problems.length > 0 ? problems.join("; ") : undefined;
}

async function runCase(c: ConformanceCase, session: Session, protocol: Protocol, first: Protocol, known: ReadonlyMap<string, string>): Promise<CaseResult> {
  const base = { id: c.id, covers: c.covers };
  if (c.kind === "covered-elsewhere") {
    return { ...base, status: "covered-elsewhere", detail: c.description, seen: "", expected: "", durationMs: 0, coveredBy: c.coveredBy };
  }
  const expected = c.expected === "success" ? "OK" : describeRefusal(c.expected);
  const skip = (detail: string): CaseResult => ({ ...base, status: "skipped", detail, seen: "", expected, durationMs: 0 });
  if (c.oneProtocol && protocol !== first) return skip(`a heavy concurrency case: run on ${first} only`);
  for (const need of c.needs ?? []) {
    const why = session.identities.missing[need];
    if (why) return skip(why);
  }
  const started = performance.now();
  let failure: string | undefined;
  let seen = "";
  try {
    const o = await c.run(session);
    seen = describeOutcome(o.outcome);
    failure = judge(c, o);
  } catch (err) {
    if (err instanceof CaseSkipped) return skip(err.message);
    failure = `the case could not run: ${(err as Error).message}`;
  }
  const durationMs = Math.round(performance.now() - started);
  const knownWhy = known.get(c.id);
  if (knownWhy !== undefined) {
    return failure
      ? { ...base, status: "known-failure", detail: `${knownWhy} (${failure})`, seen, expected, durationMs }
      : { ...base, status: "failed", detail: `listed as a known failure (${knownWhy}) but passed: remove it from the list`, seen, expected, durationMs };
  }
  return { ...base, status: failure ? "failed" : "passed", detail: failure ?? "", seen, expected, durationMs };
}

/** Runs the suite over each protocol in turn. */
export async function runSuite(o: RunOptions): Promise<SuiteReport> {
  const startedAt = new Date().toISOString();
  const identities = o.identities ?? (await prepareIdentities(o.target));
  const cases = o.cases ?? allCases;
  const known = o.knownFailures ?? new Map<string, string>();
  const first = o.protocols[0]!;
  const runs: ProtocolRun[] = [];
  for (const protocol of o.protocols) {
    const session = new Session(protocol, o.target, identities);
    const results: CaseResult[] = [];
    for (const c of cases) {
      const r = await runCase(c, session, protocol, first, known);
      results.push(r);
      o.onResult?.(protocol, r);
    }
    runs.push({ protocol, results });
  }
  return { suite: "@inkan/conformance", suiteVersion, target: o.target.url, startedAt, runs };
}

/** True when no case failed (known failures and skips do not count). */
export function conforms(report: SuiteReport): boolean {
  return report.runs.every((r) => r.results.every((c) => c.status !== "failed"));
}

/**
 * A known-failures file: one case per line, "case-id: why it fails on this target"; "#" starts a
 * comment. Every entry needs a reason.
 */
export function parseKnownFailures(text: string): Map<string, string> {
  const out = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const m = /^([a-z0-9-]+)\s*:\s*(\S.*)$/.exec(line);
    if (!m) throw new Error(`known failures, line ${i + 1}: expected "case-id: reason"`);
    out.set(m[1]!, m[2]!);
  });
  return out;
}

/**
 * The cases named by `ids`, over gRPC, their results by id, each printed after `label` ("sound
 * SAM", "broken SAM"): how a test shows that a case passes against one SAM and fails against a
 * SAM broken on purpose.
 */
export async function runCases(target: TargetOptions, ids: readonly string[], o: { label: string; identities?: Identities; knownFailures?: ReadonlyMap<string, string> }): Promise<Map<string, CaseResult>> {
  const report = await runSuite({
    target,
    protocols: ["grpc"],
    cases: allCases.filter((c) => ids.includes(c.id)),
    ...(o.identities ? { identities: o.identities } : {}),
    ...(o.knownFailures ? { knownFailures: o.knownFailures } : {}),
  });
  const results = new Map(report.runs[0]!.results.map((r) => [r.id, r]));
  for (const r of results.values()) console.log(`${o.label}: ${r.id} ${r.status}${r.detail ? `: ${r.detail}` : ""}`);
  return results;
}
