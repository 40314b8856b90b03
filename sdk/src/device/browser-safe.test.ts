import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// @inkan/sdk/device is what a signer's app embeds, in browsers too: nothing it loads, directly or
// through relative imports, may need Node (node: modules, the Node transports, grpc-js).
const nodeOnly = /^(node:|@connectrpc\/connect-node|@grpc\/grpc-js|@noble\/)/;

function importsOf(file: string): string[] {
  const source = readFileSync(file, "utf8");
  return [...source.matchAll(/(?:^|\n)\s*(?:import|export)\s*(?:[^;"']*?from\s*)?["']([^"']+)["']/g)].map((m) => m[1]!);
}

describe("@inkan/sdk/device is browser-safe", () => {
  it("no module reachable from device/index.ts imports a Node-only module", () => {
    const start = fileURLToPath(new URL("./index.ts", import.meta.url));
    const seen = new Set<string>();
    const offending: string[] = [];
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const spec of importsOf(file)) {
        if (spec.startsWith(".")) visit(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
        else if (nodeOnly.test(spec)) offending.push(`${file}: ${spec}`);
      }
    };
    visit(start);
    expect(seen.size).toBeGreaterThan(8); // the walk really followed the imports
    expect([...seen].some((f) => f.endsWith(join("sca", "dtbsr-digest.ts")))).toBe(true);
    expect(offending).toEqual([]);
  });
});
