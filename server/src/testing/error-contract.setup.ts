import { afterAll, beforeEach, expect } from "vitest";
// Imports no product module: it runs before each test file, and a module imported here would
// escape that file's vi.mock calls. The recorder (transport/error-contract.ts) shares its list
// through globalThis.

// Issue 18: every reason an RPC returns must be declared for it (proto option inkan.sam.v1.errors).
// The server records the undeclared ones it returned in this test file (transport/error-contract.ts,
// on because vitest.config.ts sets INKAN_ERROR_CONTRACT_LOG); the file fails here if there are any.
// The conformance suite's broken SAMs (conformance/src/broken-sam*.test.ts) are the real server
// with one part broken on purpose, so they may return anything: what they return is never a violation.
const exempt = /(^|\/)broken-sam[^/]*\.test\.ts$/;
(globalThis as { inkanErrorContractExempt?: boolean }).inkanErrorContractExempt = exempt.test(expect.getState().testPath ?? "");

beforeEach((ctx) => {
  (globalThis as { inkanCurrentTest?: string }).inkanCurrentTest = `${ctx.task.file.name} > ${ctx.task.name}`;
});

afterAll(() => {
  const undeclared = (globalThis as { inkanErrorContractViolations?: { rpc: string; reason: string; test?: string }[] }).inkanErrorContractViolations?.splice(0) ?? [];
  if (undeclared.length === 0) return;
  const lines = [...new Set(undeclared.map((v) => `${v.rpc} returned ${v.reason} (in "${v.test ?? "?"}")`))];
  throw new Error(
    `an RPC returned a reason not declared for it: declare it in the proto (option (inkan.sam.v1.errors) and the comment's Errors list) or fix the server:\n  ${lines.join("\n  ")}`,
  );
});
