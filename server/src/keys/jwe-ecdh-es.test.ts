/**
 * The JWE building blocks without the crypto module: Wycheproof's ECDH-ES(+A256KW) JWEs (made by
 * nobody here) open through the Concat KDF, key unwrap and AES-GCM path when Z is computed with
 * Wycheproof's private key; the parser's allow-list and bounds; and the domain's import rule.
 */
import { createECDH } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { JweRefused, concatKdf, openParsedJwe, parseCompactJwe, type ParsedJwe } from "./jwe-ecdh-es.js";

interface JweVector { tcId: number; comment: string; jwe: string; pt?: string; result: string }
interface JweGroup { private: { d: string; x: string; y: string }; tests: JweVector[] }
const vectors = JSON.parse(readFileSync(new URL("./testdata/wycheproof-jwe-ecdh-es-subset.json", import.meta.url), "utf8")) as { testGroups: JweGroup[] };
const all = vectors.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, key: g.private })));

/** Splits a Wycheproof JWE without the header policy (its headers carry no kid). */
function looseParse(jwe: string): ParsedJwe {
  const [h = "", k = "", iv = "", c = "", tag = ""] = jwe.split(".");
  const header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as { alg: ParsedJwe["alg"]; epk: { x: string; y: string } };
  const b = (s: string) => new Uint8Array(Buffer.from(s, "base64url"));
  const epk = new Uint8Array(Buffer.concat([Buffer.of(4), Buffer.from(header.epk.x, "base64url"), Buffer.from(header.epk.y, "base64url")]));
  return { protectedB64: h, alg: header.alg, kid: "", cty: undefined, epk, apu: new Uint8Array(), apv: new Uint8Array(), encryptedKey: b(k), iv: b(iv), ciphertext: b(c), tag: b(tag) };
}

function zFor(parsed: ParsedJwe, d: string): Uint8Array {
  const ecdh = createECDH("prime256v1");
  ecdh.setPrivateKey(Buffer.from(d, "base64url"));
  return ecdh.computeSecret(Buffer.from(parsed.epk));
}

describe("ECDH-ES JWE decryption against Wycheproof (R-3.2.1.2 / T-2.2.1.5 confidentiality of R.SAD)", () => {
  for (const v of all.filter((t) => t.result === "valid")) {
    it(`R-3.2.1.2 / T-2.2.1.5: Wycheproof tcId ${v.tcId} (${v.comment}) opens to its plaintext`, () => {
      const parsed = looseParse(v.jwe);
      expect(Buffer.from(openParsedJwe(parsed, zFor(parsed, v.key.d))).toString("hex")).toBe(v.pt);
    });

    it(`R-3.2.1.2 / T-2.2.1.5: Wycheproof tcId ${v.tcId} with a flipped bit in any part does not open`, () => {
      const parsed = looseParse(v.jwe);
      const z = zFor(parsed, v.key.d);
      for (const part of ["encryptedKey", "iv", "ciphertext", "tag"] as const) {
        if (parsed[part].length === 0) continue;
        const bad = { ...parsed, [part]: Uint8Array.from(parsed[part], (b, i) => (i === 0 ? b ^ 1 : b)) };
        expect(() => openParsedJwe(bad, z), part).toThrow(JweRefused);
      }
      const flippedZ = Uint8Array.from(z, (b, i) => (i === 31 ? b ^ 1 : b));
      expect(() => openParsedJwe(parsed, flippedZ)).toThrow(JweRefused);
      const otherAad = { ...parsed, protectedB64: parsed.protectedB64.slice(0, -1) + (parsed.protectedB64.endsWith("A") ? "B" : "A") };
      expect(() => openParsedJwe(otherAad, z)).toThrow(JweRefused);
    });

    it(`R-3.2.1.2: Wycheproof tcId ${v.tcId} is refused by the strict parser (no kid)`, () => {
      expect(() => parseCompactJwe(v.jwe, { maxBytes: 16_384 })).toThrow(/kid/);
    });
  }

  for (const v of all.filter((t) => t.result === "invalid")) {
    it(`R-3.2.1.2: Wycheproof tcId ${v.tcId} (${v.comment}) is refused`, () => {
      expect(() => parseCompactJwe(v.jwe, { maxBytes: 16_384 })).toThrow(JweRefused);
    });
  }

  it("the Concat KDF depends on every input (AlgorithmID, apu, apv, Z)", () => {
    const z = new Uint8Array(32).fill(7);
    const base = Buffer.from(concatKdf(z, "ECDH-ES+A256KW", new Uint8Array(), new Uint8Array())).toString("hex");
    expect(base).toHaveLength(64);
    const others = [
      concatKdf(z, "A256GCM", new Uint8Array(), new Uint8Array()),
      concatKdf(z, "ECDH-ES+A256KW", Uint8Array.of(1), new Uint8Array()),
      concatKdf(z, "ECDH-ES+A256KW", new Uint8Array(), Uint8Array.of(1)),
      concatKdf(new Uint8Array(32).fill(8), "ECDH-ES+A256KW", new Uint8Array(), new Uint8Array()),
    ].map((k) => Buffer.from(k).toString("hex"));
    expect(new Set([base, ...others]).size).toBe(5);
  });
});

describe("the strict compact-JWE parser", () => {
  it("R-3.2.1.2: refuses an oversized input by its length alone, before decoding anything", () => {
    expect(() => parseCompactJwe("!".repeat(16_385), { maxBytes: 16_384 })).toThrow(/longer than 16384/);
    expect(() => parseCompactJwe(1234, { maxBytes: 16_384 })).toThrow(JweRefused);
    expect(() => parseCompactJwe("a.b.c.d", { maxBytes: 16_384 })).toThrow(/compact/);
  });

  it("R-3.2.1.2: refuses non-canonical base64url", () => {
    // "eyJ9" decodes; "eyJ-" has trailing bits that canonical base64url would never produce.
    const header = Buffer.from(JSON.stringify({ alg: "ECDH-ES", enc: "A256GCM", kid: "k" })).toString("base64url");
    expect(() => parseCompactJwe(`${header}x..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA`, { maxBytes: 16_384 })).toThrow(JweRefused);
  });
});

describe("architecture of keys/", () => {
  it("keeps the domain free of transport, drivers, the PKCS#11 binding and generated code", () => {
    const dir = new URL("./", import.meta.url);
    const forbidden = /from\s+["'](@connectrpc\/[^"']*|pkcs11js|better-sqlite3|mongodb|@inkan\/sdk[^"']*|[^"']*_pb\.js|\.\.\/(transport|store\/(sqlite|mongodb)|crypto\/pkcs11)\/[^"']*)["']/;
    const files = readdirSync(dir).filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"));
    expect(files.length).toBeGreaterThan(0);
    const offenders = files.flatMap((f) => readFileSync(new URL(f, dir), "utf8").split("\n").filter((l) => forbidden.test(l)).map((l) => `${f}: ${l}`));
    expect(offenders).toEqual([]);
  });
});
