/**
 * Every Wycheproof JWE (json_web_encryption_test.json, made by nobody here) through the SAM's JWE
 * building blocks, in the order decryptCompactJwe (sam-encryption-keys.ts) runs them: the strict
 * parser with its allow-list (ECDH-ES or ECDH-ES+A256KW, A256GCM, a P-256 epk on the curve), Z from
 * the recipient key (here Wycheproof's private key in node:crypto, where the SAM uses the module),
 * then openParsedJwe. Wycheproof's headers carry no "kid", which the parser requires before it
 * checks the epk and the lengths: so a vector whose header is a JSON object is parsed once more with
 * a "kid" added, and opened with its original protected header as the associated data. Every
 * invalid vector must be refused; every vector outside the allow-list must be refused by the
 * allow-list itself; every valid vector inside it must open to its plaintext.
 */
import { createECDH } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { JweRefused, openParsedJwe, parseCompactJwe } from "./jwe-ecdh-es.js";

interface JweVector { tcId: number; comment: string; jwe: unknown; pt?: string; result: "valid" | "invalid" | "acceptable" }
interface JweGroup { comment: string; private?: { kty?: string; crv?: string; d?: string }; tests: JweVector[] }
const load = (name: string) => JSON.parse(readFileSync(new URL(`./testdata/${name}`, import.meta.url), "utf8")) as { testGroups: JweGroup[] };
// json_web_crypto_test.json also holds JWSs (registration/device-jws.wycheproof.test.ts): only its JWEs here.
const vectors = {
  testGroups: ["json_web_encryption_test.json", "json_web_crypto_test.json"]
    .flatMap((file) => load(file).testGroups.map((g) => ({ ...g, file, tests: g.tests.filter((t) => "jwe" in t) })))
    .filter((g) => g.tests.length > 0),
};

const maxBytes = 16_384;
const allowedAlg = new Set(["ECDH-ES", "ECDH-ES+A256KW"]);

function headerOf(jwe: unknown): Record<string, unknown> | undefined {
  if (typeof jwe !== "string") return undefined;
  try {
    const h: unknown = JSON.parse(Buffer.from(jwe.split(".")[0] ?? "", "base64url").toString("utf8"));
    return typeof h === "object" && h !== null && !Array.isArray(h) ? (h as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The SAM's path with Wycheproof's key standing in for the module's: the plaintext, or why it was refused. */
function samOpen(jwe: unknown, key: JweGroup["private"]): { plaintext: string } | { refused: string } {
  try {
    let parsed;
    try {
      parsed = parseCompactJwe(jwe, { maxBytes });
    } catch (err) {
      const header = headerOf(jwe);
      // Only a missing kid is worked around; any other refusal stands.
      if (!(err instanceof JweRefused) || !/kid/.test(err.message) || !header || "kid" in header) throw err;
      const [, ...rest] = (jwe as string).split(".");
      const withKid = [Buffer.from(JSON.stringify({ ...header, kid: "wycheproof" })).toString("base64url"), ...rest].join(".");
      parsed = { ...parseCompactJwe(withKid, { maxBytes }), protectedB64: (jwe as string).split(".")[0]! };
    }
    if (key?.kty !== "EC" || key.crv !== "P-256" || !key.d) throw new JweRefused("no P-256 recipient key: the SAM holds none other");
    const ecdh = createECDH("prime256v1");
    ecdh.setPrivateKey(Buffer.from(key.d, "base64url"));
    return { plaintext: Buffer.from(openParsedJwe(parsed, ecdh.computeSecret(Buffer.from(parsed.epk)))).toString("hex") };
  } catch (err) {
    if (err instanceof JweRefused) return { refused: err.message };
    throw err; // a crash is not a refusal
  }
}

describe("Wycheproof JWE vectors through the SAM's JWE decryption (T-2.2.1.5, R-3.2.1.2)", () => {
  for (const g of vectors.testGroups) {
    for (const v of g.tests) {
      const header = headerOf(v.jwe);
      const inAllowList = header !== undefined && allowedAlg.has(header.alg as string) && header.enc === "A256GCM";
      const id = `${g.file} tcId ${v.tcId} (${g.comment}: ${v.comment}, ${String(header?.alg)}/${String(header?.enc)}, ${v.result})`;
      if (v.result === "valid" && inAllowList) {
        it(`T-2.2.1.5: Wycheproof ${id} opens to its plaintext`, () => {
          expect(samOpen(v.jwe, g.private), id).toEqual({ plaintext: v.pt });
        });
      } else if (v.result === "valid") {
        it(`R-3.2.1.2: Wycheproof ${id} is refused by the allow-list`, () => {
          const out = samOpen(v.jwe, g.private);
          expect(out, id).toHaveProperty("refused");
          expect((out as { refused: string }).refused, id).toMatch(/^((alg|enc) .* is not allowed|header member ".*" is not allowed)$/);
        });
      } else {
        it(`T-2.2.1.5 / R-3.2.1.2: Wycheproof ${id} is refused`, () => {
          expect(samOpen(v.jwe, g.private), id).toHaveProperty("refused");
        });
      }
    }
  }

  it("the run covers both allowed algorithms with valid vectors and refuses RSA-OAEP, RSA1_5, AES key wrap and dir", () => {
    const algs = (ok: boolean) => new Set(vectors.testGroups.flatMap((g) => g.tests.filter((v) => (v.result === "valid") === ok).map((v) => headerOf(v.jwe)?.alg)));
    expect([...algs(true)]).toEqual(expect.arrayContaining(["ECDH-ES", "ECDH-ES+A256KW", "RSA-OAEP", "RSA1_5", "A256KW", "dir"]));
    const opened = vectors.testGroups.flatMap((g) => g.tests.filter((v) => v.result === "valid" && "plaintext" in samOpen(v.jwe, g.private)));
    expect(new Set(opened.map((v) => headerOf(v.jwe)?.alg))).toEqual(allowedAlg);
  });
});
