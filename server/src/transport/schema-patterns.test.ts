// Issue 20: the schema's pattern rules matched with V8's RegExp give exactly RE2's answers, and any
// other pattern still goes through RE2 (protovalidate's linear-time contract).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { RE2JS } from "@bufbuild/re2";
import { AuthorizeRequestSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { describe, expect, it } from "vitest";
import { createSchemaValidator, engineFor, linearPatterns, schemaPatternMatcher } from "./schema-patterns.js";

const protoRoot = new URL("../../../proto/inkan/", import.meta.url).pathname;

/** Every `pattern:` of the protos, as the validator receives it (the proto string literal unescaped). */
function protoPatterns(): Set<string> {
  const found = new Set<string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".proto")) {
        for (const m of readFileSync(path, "utf8").matchAll(/pattern:\s*("(?:[^"\\]|\\.)*")/g)) found.add(JSON.parse(m[1]!) as string);
      }
    }
  };
  walk(protoRoot);
  return found;
}

/** A small deterministic generator (xorshift32), so a failure names an input that fails again. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** Inputs around every pattern's edges: each ASCII character, non-ASCII ones, and short strings over the characters the patterns care about. */
function corpus(): string[] {
  const inputs = ["", " ", "\n", "a\n", "\na", "abc", "a.b", "a..b", ".a", "a.", "A.b", "a.b.c.d.e", "a..c.d.e", "a.b.c.d", "é", "中文", "😀", "\u2028", "\uFFFD", "a😀b"];
  for (let c = 0; c < 128; c++) inputs.push(String.fromCharCode(c), `a${String.fromCharCode(c)}b`);
  const alphabet = ["a", "z", "A", "0", "9", ".", "_", "-", " ", "\n", "\t", "\x7f", "!", "~", "é", "😀"];
  const next = random(20);
  for (let i = 0; i < 3000; i++) {
    const length = Math.floor(next() * 12);
    inputs.push(Array.from({ length }, () => alphabet[Math.floor(next() * alphabet.length)]!).join(""));
  }
  const seg = "Ab0_-".repeat(400);
  inputs.push(`${seg}.${seg}.${seg}`, `${seg}..${seg}.${seg}.${seg}`, `${seg}.${seg}.${seg}.${seg}.${seg}`, `${seg}.${seg}.${seg} `, `${seg}${seg}`.toLowerCase());
  return inputs;
}

describe("schema patterns (issue 20)", () => {
  it("lists every pattern of the protos (a new one is reviewed for linear matching, or it stays on RE2), and nothing else", () => {
    const inProtos = protoPatterns();
    expect(inProtos.size).toBeGreaterThan(5);
    expect([...inProtos].filter((p) => !linearPatterns.has(p))).toEqual([]);
    expect([...linearPatterns].filter((p) => !inProtos.has(p))).toEqual([]);
  });

  it("matches every listed pattern with V8's RegExp and gives RE2's answer on every input", () => {
    const inputs = corpus();
    for (const pattern of linearPatterns) {
      const native = engineFor(pattern);
      expect(native.engine).toBe("native");
      const re2 = RE2JS.compile(pattern);
      const disagree = inputs.filter((input) => native(input) !== re2.test(input));
      expect({ pattern, disagree }).toEqual({ pattern, disagree: [] });
      expect(inputs.some((input) => native(input))).toBe(true); // the corpus exercises both answers
      expect(inputs.some((input) => !native(input))).toBe(true);
    }
  });

  it("matches any other pattern with RE2: its syntax, and linear time where a backtracking engine would not return", () => {
    const match = schemaPatternMatcher();
    expect(engineFor("(?i)^abc$").engine).toBe("re2");
    expect(match("(?i)^abc$", "ABC")).toBe(true); // RE2's inline flag: V8's RegExp would not compile it
    expect(engineFor("^(a+)+$").engine).toBe("re2");
    expect(match("^(a+)+$", `${"a".repeat(5000)}b`)).toBe(false); // exponential on a backtracking engine
  });

  it("validates requests as protovalidate's default does (an R.SAD that is not a compact JWE is refused)", () => {
    const seg = (n: number) => "x".repeat(n);
    const valid = create(AuthorizeRequestSchema, { transactionId: "tx-1", rSad: [seg(60), "", seg(12), seg(1400), seg(16)].join(".") });
    const invalid = [
      create(AuthorizeRequestSchema, { transactionId: "tx-1", rSad: `${valid.rSad}\n` }),
      create(AuthorizeRequestSchema, { transactionId: "tx-1", rSad: valid.rSad.replace(".", "") }),
      create(AuthorizeRequestSchema, { transactionId: "tx 1", rSad: valid.rSad }),
    ];
    const ours = createSchemaValidator();
    const theirs = createValidator();
    expect(ours.validate(AuthorizeRequestSchema, valid).kind).toBe("valid");
    for (const message of invalid) {
      const result = ours.validate(AuthorizeRequestSchema, message);
      expect(result.kind).toBe("invalid");
      const fields = (r: typeof result) => (r.kind === "invalid" ? r.error.violations.map((v) => v.toString()) : []);
      expect(fields(result)).toEqual(fields(theirs.validate(AuthorizeRequestSchema, message)));
    }
  });
});
