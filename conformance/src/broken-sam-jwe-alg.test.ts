/**
 * The JWE algorithm case must catch a SAM that takes any algorithm its JWE parser knows (issue 18,
 * item 5): the real server whose parser reports a direct "ECDH-ES" JWE as the published
 * "ECDH-ES+A256KW" and then opens it as direct key agreement, so the key's algorithm check never
 * sees it. Mocked here, in this test's module graph only (switched on by `anyAlg.on`): the product
 * has no switch that could do this. Against it the case fails; against the sound SAM it passes.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { ParsedJwe } from "../../server/src/keys/jwe-ecdh-es.js";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { targetFromInit } from "./cli-options.js";
import { runCases, type CaseResult } from "./runner.js";

const anyAlg = vi.hoisted(() => ({ on: false, direct: new WeakSet<object>() }));
vi.mock("../../server/src/keys/jwe-ecdh-es.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../server/src/keys/jwe-ecdh-es.js")>();
  return {
    ...actual,
    parseCompactJwe: (...args: Parameters<typeof actual.parseCompactJwe>) => {
      const parsed = actual.parseCompactJwe(...args);
      if (!anyAlg.on || parsed.alg !== "ECDH-ES") return parsed;
      const disguised: ParsedJwe = { ...parsed, alg: "ECDH-ES+A256KW" };
      anyAlg.direct.add(disguised);
      return disguised;
    },
    openParsedJwe: (jwe: ParsedJwe, z: Uint8Array) => actual.openParsedJwe(anyAlg.direct.has(jwe) ? { ...jwe, alg: "ECDH-ES" } : jwe, z),
  };
});

let t: TestServer | undefined;
afterEach(async () => {
  anyAlg.on = false;
  await t?.close();
  t = undefined;
});

async function run(ids: string[]): Promise<Map<string, CaseResult>> {
  t = await startTestServer();
  return runCases(targetFromInit(t.server.url, t.pki.paths), ids, { label: `${anyAlg.on ? "broken" : "sound"} SAM` });
}

describe("a SAM that accepts any JWE algorithm its parser knows (issue 18)", () => {
  it("T-2.2.1.5 / R-3.2.1.3: the direct ECDH-ES case passes against the sound SAM", async () => {
    const results = await run(["jwe-alg-direct-ecdh-es", "signatures-verify"]);
    expect(results.get("jwe-alg-direct-ecdh-es")?.status).toBe("passed");
    expect(results.get("signatures-verify")?.status).toBe("passed");
  }, 120_000);

  it("T-2.2.1.5 / R-3.2.1.3: the direct ECDH-ES case fails against it", async () => {
    anyAlg.on = true;
    const results = await run(["jwe-alg-direct-ecdh-es", "jwe-alg-dir", "signatures-verify"]);
    expect(results.get("jwe-alg-direct-ecdh-es")?.status).toBe("failed");
    // The rest of the JWE checks still work: only the faulty part shows.
    expect(results.get("jwe-alg-dir")?.status).toBe("passed");
    expect(results.get("signatures-verify")?.status).toBe("passed");
  }, 120_000);
});
