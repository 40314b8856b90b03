import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { conditions: ["@inkan/source"] },
  ssr: { resolve: { conditions: ["@inkan/source"] } },
  test: {
    include: ["{sdk,server,conformance}/src/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
