import { describe, expect, it } from "vitest";
import { cscCases } from "./csc-cases.js";
import { cscCatalogueCases, cscMappedGroups, cscNotApplicable } from "./csc-catalogue.js";
import { allCscCases, notApplicableOverCsc } from "./run-csc.js";

describe("the catalogue over CSC (issue 16)", () => {
  it("accounts for every replay, forgery, bypass, revocation and lockout case: mapped to a CSC request or not applicable with a reason, never both", () => {
    const mapped = new Set(cscCatalogueCases.map((c) => c.id));
    const na = new Set(Object.keys(cscNotApplicable));
    for (const c of cscMappedGroups) expect(Number(mapped.has(c.id)) + Number(na.has(c.id)), c.id).toBe(1);
    const ids = new Set(cscMappedGroups.map((c) => c.id));
    expect([...mapped, ...na].filter((id) => !ids.has(id))).toEqual([]);
    for (const [id, why] of Object.entries(cscNotApplicable)) expect(why.length, id).toBeGreaterThan(10);
  });

  it("runs the CSC-specific cases and every mapped catalogue case, and reports the rest as not applicable", () => {
    expect(allCscCases.map((c) => c.id)).toEqual([...cscCases.map((c) => c.id), ...cscMappedGroups.map((c) => c.id).filter((id) => cscNotApplicable[id] === undefined)]);
    const na = notApplicableOverCsc();
    expect(na.map((r) => r.status)).toEqual(na.map(() => "not-applicable"));
    expect(na.every((r) => r.detail.startsWith("no CSC equivalent: "))).toBe(true);
    expect(allCscCases.length + na.length).toBe(cscCases.length + cscMappedGroups.length);
  });
});
