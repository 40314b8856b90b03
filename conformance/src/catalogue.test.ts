import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { catalogue } from "./catalogue.js";
import { allCases } from "./cases/index.js";
import { requirementIds } from "./requirement-ids.js";

const sharedRequirements = "/work/shared/requirements.md";
const repoRoot = new URL("../../", import.meta.url);

describe("the catalogue of threat and requirement IDs", () => {
  it("lists exactly the IDs of the package's copy of the requirements, each with a one-line title", () => {
    expect(Object.keys(catalogue).sort()).toEqual([...requirementIds].sort());
    for (const [id, title] of Object.entries(catalogue)) {
      expect(title.length, id).toBeGreaterThan(20);
      expect(title, id).not.toContain("\n");
    }
  });

  const shared = existsSync(sharedRequirements);
  if (!shared) console.log(`skipped: ${sharedRequirements} is not on this machine; the package's copy of the IDs is checked alone`);
  it.skipIf(!shared)("the package's copy equals the IDs of the shared requirements document", () => {
    const ids = [...readFileSync(sharedRequirements, "utf8").matchAll(/^\s*- ((?:T|R)-[0-9.]*[0-9])\s/gm)].map((m) => m[1]);
    expect([...requirementIds]).toEqual(ids);
  });

  it("every ID is covered by at least one case, and every case covers only known IDs", () => {
    const known = new Set<string>(requirementIds);
    for (const id of requirementIds) expect(allCases.some((c) => c.covers.includes(id)), id).toBe(true);
    for (const c of allCases) for (const id of c.covers) expect(known.has(id), `${c.id}: ${id}`).toBe(true);
  });
});

describe("the cases", () => {
  it("have unique kebab-case ids, a description paragraph and, for attacks, an expected outcome", () => {
    const ids = allCases.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const c of allCases) {
      expect(c.id, c.id).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(c.description.length, c.id).toBeGreaterThan(60);
      expect(c.covers.length, c.id).toBeGreaterThan(0);
      if (c.kind === "attack") expect(c.expected, c.id).toBeDefined();
    }
  });

  it("the server tests named by covered-elsewhere cases exist in this repository, by file and test name", () => {
    for (const c of allCases) {
      if (c.kind !== "covered-elsewhere") continue;
      expect(c.coveredBy.length, c.id).toBeGreaterThan(0);
      for (const ref of c.coveredBy) {
        const [file = "", name = ""] = ref.split(/: (.*)/s);
        expect(existsSync(new URL(file, repoRoot)), `${c.id}: ${file}`).toBe(true);
        expect(readFileSync(new URL(file, repoRoot), "utf8"), `${c.id}: ${ref}`).toContain(name);
      }
    }
  });
});
