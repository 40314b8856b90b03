import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { getOption, type DescMethod } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import { contractFiles } from "@inkan/sdk";
import { common_errors, errors } from "@inkan/sdk/gen/inkan/sam/v1/error_options_pb.js";
import { ErrorDetailSchema, Reason } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";

/** "/inkan.sam.v1.SignatureActivationService/GetInfo": the RPC path, as the audit and logs name it. */
export function rpcPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** Reason names without the REASON_ prefix, as ReasonCode spells them. */
function names(decls: readonly { reason: Reason }[]): string[] {
  return decls.map((d) => Reason[d.reason]);
}

/**
 * Every reason an RPC may return, from the proto declarations (inkan/sam/v1/error_options.proto):
 * the method's own errors and its service's common_errors. ApprovePendingRequest performs the
 * guarded RPC it approves and returns that RPC's error when it fails, so it may also return every
 * reason of every RPC that declares REASON_APPROVAL_REQUIRED.
 */
export function declaredReasons(method: DescMethod): Set<string> {
  const own = new Set([...names(getOption(method.parent, common_errors)), ...names(getOption(method, errors))]);
  if (rpcPath(method) === "/inkan.admin.v1.PrivilegedUserService/ApprovePendingRequest") {
    for (const guarded of allContractMethods()) {
      const reasons = names(getOption(guarded, errors));
      if (!reasons.includes("APPROVAL_REQUIRED")) continue;
      for (const r of [...reasons, ...names(getOption(guarded.parent, common_errors))]) own.add(r);
    }
  }
  return own;
}

/** Every RPC of the Inkan contract (inkan.sam.v1 and inkan.admin.v1). */
export function allContractMethods(): DescMethod[] {
  return contractFiles.flatMap((f) => f.services).flatMap((s) => s.methods);
}

/** The reason an error carries in its ErrorDetail, by name, or undefined when it has none. */
export function reasonOf(err: ConnectError): string | undefined {
  const detail = err.findDetails(ErrorDetailSchema)[0];
  return detail ? Reason[detail.reason] : undefined;
}

export interface ErrorContractEntry {
  rpc: string;
  reason: string;
  declared: boolean;
  test?: string;
  /** From a server broken on purpose (a conformance "broken SAM"): never a violation. */
  exempt?: boolean;
}

/**
 * Undeclared (rpc, reason) pairs this process returned since the last take. Kept on globalThis so
 * that testing/error-contract.setup.ts reads them without importing product modules (it runs
 * before each test file, and a module it imported would escape that file's vi.mock calls).
 */
const violations: ErrorContractEntry[] = ((globalThis as { inkanErrorContractViolations?: ErrorContractEntry[] }).inkanErrorContractViolations ??= []);

/**
 * A recorder that checks each error an Inkan RPC returns against the reasons declared for it:
 * an undeclared one is pushed to `violations`, and with `logDir` every (rpc, reason) is appended
 * to <logDir>/<pid>.jsonl. It only records: the error the client sees is the same.
 */
export function createErrorContractRecorder(options: { logDir?: string; violations: ErrorContractEntry[] }) {
  const cache = new Map<DescMethod, Set<string>>();
  return (method: DescMethod, err: ConnectError): void => {
    if (!method.parent.typeName.startsWith("inkan.")) return;
    const reason = reasonOf(err);
    if (!reason) return;
    let declared = cache.get(method);
    if (!declared) cache.set(method, (declared = declaredReasons(method)));
    const test = (globalThis as { inkanCurrentTest?: string }).inkanCurrentTest;
    const exempt = (globalThis as { inkanErrorContractExempt?: boolean }).inkanErrorContractExempt === true;
    const entry: ErrorContractEntry = { rpc: rpcPath(method), reason, declared: declared.has(reason), ...(test ? { test } : {}), ...(exempt ? { exempt } : {}) };
    if (!entry.declared && !exempt) options.violations.push(entry);
    if (options.logDir) appendFileSync(join(options.logDir, `${process.pid}.jsonl`), `${JSON.stringify(entry)}\n`);
  };
}

/**
 * The test suite's check that the server returns only declared reasons (issue 18). It is on only
 * when INKAN_ERROR_CONTRACT_LOG names a directory, which vitest.config.ts sets (never a
 * deployment); testing/error-contract.setup.ts fails a test file whose tests made the server
 * return an undeclared reason, and testing/error-contract.global.ts checks the whole run.
 */
export const errorContractRecorder = process.env.INKAN_ERROR_CONTRACT_LOG
  ? createErrorContractRecorder({ logDir: process.env.INKAN_ERROR_CONTRACT_LOG, violations })
  : undefined;

/** Returns and forgets the undeclared reasons recorded in this process. */
export function takeErrorContractViolations(): ErrorContractEntry[] {
  return violations.splice(0);
}
