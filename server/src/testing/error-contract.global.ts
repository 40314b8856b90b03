import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { getOption } from "@bufbuild/protobuf";
import { common_errors, errors } from "@inkan/sdk/gen/inkan/sam/v1/error_options_pb.js";
import { Reason } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import type { TestProject } from "vitest/node";
import { allContractMethods, rpcPath, type ErrorContractEntry } from "../transport/error-contract.js";
import { untestedReasons } from "./error-contract-allowlist.js";

/**
 * Issue 18, the suite-wide half of the error contract check. Every server the tests start (in the
 * test workers or in child processes) appends the (rpc, reason) pairs it returns to
 * INKAN_ERROR_CONTRACT_LOG (vitest.config.ts). At the end of the run:
 * - a returned reason not declared for its RPC fails the run (the per-file check in
 *   error-contract.setup.ts catches the in-process ones at their test; this catches the rest);
 * - when the whole suite ran, every declared reason must have been produced by some test or be in
 *   error-contract-allowlist.ts with a reason; a reason declared on a service (common_errors)
 *   counts as produced when any RPC of the service returned it.
 * A conformance "broken SAM" (exempt, see error-contract.setup.ts) may return any reason; the
 * declared reasons it returns still count as produced (its control cases run the real SAM).
 * The findings go to .data/error-contract-report.json; a failure sets the exit code.
 */
export default function setup(project: TestProject) {
  const dir = process.env.INKAN_ERROR_CONTRACT_LOG;
  if (!dir) return;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return async () => {
    const entries: ErrorContractEntry[] = readdirSync(dir)
      .filter((f) => f.endsWith(".jsonl"))
      .flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as ErrorContractEntry));
    rmSync(dir, { recursive: true, force: true });
    const problems: string[] = [];
    const undeclared = [...new Set(entries.filter((e) => !e.declared && !e.exempt).map((e) => `${e.rpc} ${e.reason}`))];
    for (const u of undeclared) problems.push(`returned but not declared: ${u}`);

    const seen = new Set(entries.map((e) => `${e.rpc} ${e.reason}`));
    const seenInService = new Set(entries.map((e) => `${e.rpc.slice(0, e.rpc.lastIndexOf("/"))} ${e.reason}`));
    const allowed = (rpc: string, reason: string) =>
      untestedReasons.some((a) => a.reasons.includes(reason) && (a.rpc === "*" || a.rpc === rpc || (a.rpc.endsWith("/*") && rpc.startsWith(a.rpc.slice(0, -1)))));
    const uncovered: string[] = [];
    const allowedButSeen: string[] = [];
    const services = new Set(allContractMethods().map((m) => m.parent));
    for (const service of services) {
      for (const d of getOption(service, common_errors)) {
        const reason = Reason[d.reason]!;
        const covered = seenInService.has(`/${service.typeName} ${reason}`);
        if (!covered && !allowed(`/${service.typeName}/*`, reason)) uncovered.push(`/${service.typeName}/* ${reason}`);
      }
    }
    for (const method of allContractMethods()) {
      for (const d of getOption(method, errors)) {
        const reason = Reason[d.reason]!;
        const key = `${rpcPath(method)} ${reason}`;
        const isAllowed = allowed(rpcPath(method), reason);
        if (!seen.has(key) && !isAllowed) uncovered.push(key);
        if (seen.has(key) && untestedReasons.some((a) => a.rpc === rpcPath(method) && a.reasons.includes(reason))) allowedButSeen.push(key);
      }
    }
    const { testFiles } = await project.globTestFiles();
    const fullRun = project.vitest.state.getFiles().length >= testFiles.length;
    if (fullRun) {
      for (const u of uncovered) problems.push(`declared but produced by no test (add a test, or list it in error-contract-allowlist.ts with why): ${u}`);
    }
    mkdirSync(".data", { recursive: true });
    writeFileSync(".data/error-contract-report.json", `${JSON.stringify({ fullRun, undeclared, uncovered, allowedButSeen, seen: [...seen].sort() }, null, 2)}\n`);
    // A note, not a failure: whether a test produces it can depend on the environment (skipped
    // suites) or on an interleaving, and a shorter list is never wrong.
    if (fullRun && allowedButSeen.length) console.log(`error contract (issue 18): produced by a test now, remove from error-contract-allowlist.ts:\n  ${allowedButSeen.join("\n  ")}`);
    if (problems.length) {
      console.error(`\nerror contract (issue 18): ${problems.length} problem(s), see .data/error-contract-report.json\n  ${problems.join("\n  ")}\n`);
      process.exitCode = 1;
    } else {
      console.log(`error contract (issue 18): ${seen.size} (rpc, reason) pairs returned, all declared${fullRun ? "; every declared reason produced or listed as untested" : ""}`);
    }
  };
}
