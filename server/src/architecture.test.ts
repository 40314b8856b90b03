import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// Imports flow transport -> domain -> ports. The domain never sees Connect, the PKCS#11 binding,
// a database driver or generated protobuf code: adapters and the composition root do.
const root = fileURLToPath(new URL(".", import.meta.url));
const domains = ["sap", "registration", "admin", "audit", "integrity"];
const forbidden = /from\s+["'](@connectrpc\/[^"']*|pkcs11js|better-sqlite3|mongodb|@inkan\/sdk[^"']*|[^"']*_pb\.js|\.\.\/(transport|store\/(sqlite|mongodb)|crypto\/pkcs11)\/[^"']*)["']/;

function sources(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .map((f) => join(dir, f));
}

describe("architecture", () => {
  it("keeps the domain free of transport, drivers, the PKCS#11 binding and generated code", () => {
    const files = domains.flatMap((d) => sources(join(root, d)));
    expect(files.length).toBeGreaterThan(0);
    const offenders = files.flatMap((f) =>
      readFileSync(f, "utf8").split("\n").filter((line) => forbidden.test(line)).map((line) => `${f}: ${line.trim()}`),
    );
    expect(offenders).toEqual([]);
  });

  it("keeps pkcs11js inside crypto/pkcs11 and each database driver inside its store adapter", () => {
    const all = sources(root);
    const importers = (pkg: string) =>
      all.filter((f) => new RegExp(`(from|require\\()\\s*["']${pkg}["']`).test(readFileSync(f, "utf8"))).map((f) => f.slice(root.length));
    expect(importers("pkcs11js")).not.toEqual([]);
    expect(importers("better-sqlite3")).not.toEqual([]);
    expect(importers("pkcs11js").every((f) => f.startsWith("crypto/pkcs11/"))).toBe(true);
    expect(importers("better-sqlite3").every((f) => f.startsWith("store/sqlite/"))).toBe(true);
    expect(importers("mongodb").every((f) => f.startsWith("store/mongodb/"))).toBe(true);
  });
});
