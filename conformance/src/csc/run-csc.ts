/**
 * `--protocol csc`: the CSC cases against a gateway, judged like the SAP cases (the expected CSC
 * error, nothing signed, no further problem) and reported as the protocol "csc". Signers are
 * enrolled through the SAM's admin API (over gRPC) with PIN + TOTP.
 */
import { conformancePin, Session, type TestSigner } from "../session.js";
import type { CaseResult, ProtocolRun } from "../runner.js";
import type { Identities, TargetOptions } from "../target.js";
import { totpNow } from "../totp.js";
import { CscClient, type CscTarget } from "./csc-client.js";
import { CscCaseSkipped, cscCases, type CscCase, type CscObservation } from "./csc-cases.js";
import { cscCatalogueCases, cscMappedGroups, cscNotApplicable } from "./csc-catalogue.js";

/**
 * What `--protocol csc` runs: the CSC-specific cases, then the catalogue's replay, forgery, bypass
 * and lockout cases in catalogue order, each through its CSC request (csc-catalogue.ts).
 */
export const allCscCases: readonly CscCase[] = [...cscCases, ...cscMappedGroups.flatMap((c) => cscCatalogueCases.filter((m) => m.id === c.id))];

/** The catalogue cases with no CSC equivalent, as results: reported with their reason, never silently left out. */
export function notApplicableOverCsc(): CaseResult[] {
  return cscMappedGroups.filter((c) => cscNotApplicable[c.id] !== undefined).map((c) => ({
    id: c.id, covers: c.covers, status: "not-applicable" as const, detail: `no CSC equivalent: ${cscNotApplicable[c.id]!}`, seen: "", expected: "", durationMs: 0,
  }));
}

export interface CscRunOptions {
  target: TargetOptions;
  identities: Identities;
  csc: CscTarget;
  otherCsc?: CscTarget;
  /** Default: allCscCases, plus the not-applicable results. */
  cases?: readonly CscCase[];
  onResult?: (result: CaseResult) => void;
}

export const describeCsc = (e: { status: number; error: string }) => (e.status === 200 ? "200" : `${e.status} ${e.error}`);

/** The verdict on one CSC observation; undefined when the case passed. */
export function judgeCsc(c: CscCase, o: CscObservation): string | undefined {
  const problems = [...(o.problems ?? [])];
  const seen = { status: o.answer.status, error: typeof o.answer.body.error === "string" ? o.answer.body.error : "" };
  if (seen.status !== c.expected.status || (c.expected.status !== 200 && seen.error !== c.expected.error)) problems.unshift(`expected ${describeCsc(c.expected)}, got ${describeCsc(seen)}`);
  if (o.signed !== 0) problems.push(`the attack got ${o.signed} signature(s)`);
  return problems.length > 0 ? problems.join("; ") : undefined;
}

export async function runCscCases(o: CscRunOptions): Promise<ProtocolRun> {
  const sam = new Session("grpc", o.target, o.identities);
  let other: Promise<TestSigner> | undefined;
  const session = {
    client: new CscClient(o.csc),
    otherClient: o.otherCsc ? new CscClient(o.otherCsc) : undefined,
    // A fresh signer per authorization: a TOTP code works once (the SAM refuses its replay).
    signer: () => sam.newSigner({ totp: true }),
    otherSigner: () => (other ??= sam.newSigner({ totp: true })),
    pin: conformancePin,
    otp: (s: TestSigner) => totpNow(s.totp!),
    sam,
  };
  const results: CaseResult[] = [];
  for (const c of o.cases ?? allCscCases) {
    const base = { id: c.id, covers: c.covers, expected: describeCsc(c.expected) };
    const started = performance.now();
    let r: CaseResult;
    try {
      const obs = await c.run(session);
      const failure = judgeCsc(c, obs);
      r = { ...base, status: failure ? "failed" : "passed", detail: failure ?? "", seen: describeCsc({ status: obs.answer.status, error: String(obs.answer.body.error ?? "") }), durationMs: Math.round(performance.now() - started) };
    } catch (err) {
      r = err instanceof CscCaseSkipped
        ? { ...base, status: "skipped", detail: err.message, seen: "", durationMs: 0 }
        : { ...base, status: "failed", detail: `the case could not run: ${(err as Error).message}`, seen: "", durationMs: Math.round(performance.now() - started) };
    }
    results.push(r);
    o.onResult?.(r);
  }
  if (!o.cases) for (const r of notApplicableOverCsc()) {
    results.push(r);
    o.onResult?.(r);
  }
  return { protocol: "csc", results };
}
