/**
 * Issue 20: how the validate interceptor matches the protos' `pattern` rules. protovalidate matches
 * them with an RE2 engine written in JavaScript (@bufbuild/re2: linear time for any pattern, about
 * 250 µs for an R.SAD of 2 KB, most of an Authorize request's validation). The patterns of our own
 * schema, listed in {@link linearPatterns}, are matched with V8's RegExp instead (about 14 µs),
 * because each of them runs in linear time on a backtracking engine too: it is anchored at both
 * ends and is a sequence of character classes, each matched once or repeated, where a repeated
 * class is followed only by the end or by a literal character that it does not match (a group is
 * repeated only after such a literal), so at each position at most one way goes on: a failed match
 * gives back one repeated class's characters, one at a time, and never tries a position twice.
 * Each entry is a pattern string exactly as the protos write it; a pattern that is not listed (one
 * added to the protos later, without this review) still goes through RE2, so no input can make
 * validation slow.
 */
import { createValidator, type Validator } from "@bufbuild/protovalidate";
import { RE2JS } from "@bufbuild/re2";

/** The schema's patterns that V8's RegExp matches in linear time (see the module comment). */
export const linearPatterns: ReadonlySet<string> = new Set([
  "^[!-~]+$",
  "^[!-~]*$",
  "^[\\x21-\\x7E]+$",
  "^[^\\x00-\\x1F\\x7F]+$",
  "^[A-Za-z0-9_-]+$",
  "^[a-z0-9][a-z0-9._-]*$",
  "^([a-z0-9][a-z0-9._-]*)?$",
  "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$",
  // A compact JWS and a compact JWE: the runs are separated by ".", which no run matches.
  "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
  "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
]);

type Match = (input: string) => boolean;

/**
 * The matcher for protovalidate's `regexMatch`: V8's RegExp for {@link linearPatterns}, RE2 for
 * any other pattern. Each pattern is compiled once.
 */
export function schemaPatternMatcher(): (pattern: string, input: string) => boolean {
  const compiled = new Map<string, Match>();
  return (pattern, input) => {
    let match = compiled.get(pattern);
    if (!match) {
      match = engineFor(pattern);
      compiled.set(pattern, match);
    }
    return match(input);
  };
}

/** Which engine matches `pattern` ("native" only for a listed one), as a function. */
export function engineFor(pattern: string): Match & { engine: "native" | "re2" } {
  if (linearPatterns.has(pattern)) {
    // "u": the input is matched by code points, as RE2 matches it.
    const re = new RegExp(pattern, "u");
    return Object.assign((input: string) => re.test(input), { engine: "native" as const });
  }
  const re = RE2JS.compile(pattern); // throws on a pattern that is not RE2 syntax, as protovalidate's default does
  return Object.assign((input: string) => re.test(input), { engine: "re2" as const });
}

/** The validator the validate interceptor uses: protovalidate with {@link schemaPatternMatcher}. */
export function createSchemaValidator(): Validator {
  return createValidator({ regexMatch: schemaPatternMatcher() });
}
