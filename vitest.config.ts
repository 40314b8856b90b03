import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Issue 18: while the tests run, the server records every (rpc, reason) it returns here, and the
// run fails on a reason not declared for its RPC (server/src/testing/error-contract.*.ts). One
// directory per run, so two runs in one checkout do not mix.
process.env.INKAN_ERROR_CONTRACT_LOG ??= fileURLToPath(new URL(`./.data/error-contract/${process.pid}`, import.meta.url));

export default defineConfig({
  resolve: { conditions: ["@inkan/source"] },
  ssr: { resolve: { conditions: ["@inkan/source"] } },
  test: {
    include: ["{sdk,server,conformance,gateway}/src/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    setupFiles: ["server/src/testing/error-contract.setup.ts"],
    globalSetup: ["server/src/testing/error-contract.global.ts"],
  },
});
