import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { Reason } from "./gen/inkan/sam/v1/error_pb.js";
import { reasonAdvice } from "./reason-advice.js";

// The SDK's documentation stays complete: every Reason is listed in the README with what to do
// (the table is generated from error.proto's comments and reason-advice.ts), and every exported
// function or class carries JSDoc with an example.
const readmePath = fileURLToPath(new URL("../README.md", import.meta.url));
const protoPath = fileURLToPath(new URL("../../proto/inkan/sam/v1/error.proto", import.meta.url));
const begin = /<!-- reasons:begin[^>]*-->\n/;
const end = "<!-- reasons:end -->";

/** The enum values of error.proto with the comment above each: "CODE: meaning". */
function reasonsFromProto(): { name: string; number: number; code: string; meaning: string }[] {
  const out: { name: string; number: number; code: string; meaning: string }[] = [];
  let comment: string[] = [];
  for (const line of readFileSync(protoPath, "utf8").split("\n")) {
    const c = line.match(/^\s*\/\/ ?(.*)$/);
    const v = line.match(/^\s*REASON_([A-Z_]+) = (\d+);/);
    if (c) comment.push(c[1]!);
    else if (v) {
      const text = comment.join(" ").trim();
      const m = text.match(/^([A-Z_]+): (.*)$/);
      out.push({ name: v[1]!, number: Number(v[2]), code: m ? m[1]! : "", meaning: m ? m[2]! : text });
      comment = [];
    } else comment = [];
  }
  return out;
}

function reasonsTable(): string {
  const cell = (s: string) => s.replaceAll("|", "\\|");
  const rows = reasonsFromProto().map((r) => `| \`${r.name}\` (${r.number}) | ${r.code || "-"} | ${cell(r.meaning)} | ${cell(reasonAdvice(r.number as Reason))} |`);
  return ["| reason | gRPC code | meaning | what to do |", "| --- | --- | --- | --- |", ...rows, ""].join("\n");
}

describe("SDK README", () => {
  it("lists every Reason with its code, meaning and what to do (generated; INKAN_UPDATE_README=1 rewrites it)", () => {
    const readme = readFileSync(readmePath, "utf8");
    const start = readme.search(begin);
    expect(start, "README has the reasons markers").toBeGreaterThan(0);
    const head = readme.slice(0, start) + readme.slice(start).match(begin)![0];
    const tail = readme.slice(readme.indexOf(end));
    const expected = head + reasonsTable() + tail;
    if (process.env.INKAN_UPDATE_README === "1") writeFileSync(readmePath, expected);
    expect(readme).toBe(expected);
    const names = Object.keys(Reason).filter((k) => Number.isNaN(Number(k)));
    for (const name of names) {
      if (name === "UNSPECIFIED") continue;
      expect(readme, name).toContain(`| \`${name}\` (${Reason[name as keyof typeof Reason]})`);
    }
  });

  it("has advice for every Reason, distinct from the fallback", () => {
    for (const value of Object.values(Reason).filter((v): v is Reason => typeof v === "number")) {
      const advice = reasonAdvice(value);
      expect(advice.length, Reason[value]).toBeGreaterThan(20);
      if (value !== Reason.UNSPECIFIED) expect(advice, Reason[value]).not.toBe(reasonAdvice(Reason.UNSPECIFIED));
    }
  });

  it("every function and class exported by @inkan/sdk and @inkan/sdk/device has JSDoc with an @example", () => {
    const entries = ["./index.ts", "./device/index.ts"].map((p) => fileURLToPath(new URL(p, import.meta.url)));
    const program = ts.createProgram(entries, { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, noEmit: true });
    const checker = program.getTypeChecker();
    const missing: string[] = [];
    let checked = 0;
    for (const entry of entries) {
      const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
      for (const exported of checker.getExportsOfModule(moduleSymbol)) {
        const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
        for (const decl of symbol.declarations ?? []) {
          if (decl.getSourceFile().fileName.includes("/gen/")) continue; // generated: documented by the proto comments
          if (!ts.isFunctionDeclaration(decl) && !ts.isClassDeclaration(decl)) continue;
          checked++;
          const hasExample = (node: ts.Node) => ts.getJSDocTags(node).some((t) => t.tagName.text === "example");
          if (!hasExample(decl)) missing.push(exported.name);
          if (ts.isClassDeclaration(decl)) {
            for (const member of decl.members) {
              const isPublicMethod = ts.isMethodDeclaration(member) && !(ts.getCombinedModifierFlags(member) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected));
              if (isPublicMethod && !hasExample(member)) missing.push(`${exported.name}#${member.name.getText()}`);
            }
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(20);
    expect(missing).toEqual([]);
  });
});
