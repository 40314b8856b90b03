import { describe, expect, it } from "vitest";
import { CscClients, CscClientsError, parseCscClients } from "./clients.js";

const key = { kty: "EC", crv: "P-256", x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" };
const client = (over: Record<string, unknown> = {}) => JSON.stringify({ clients: [{ clientId: "a", jwks: { keys: [key] }, redirectUris: ["https://a.example/cb"], signers: ["sgn_1"], ...over }] });

describe("csc-clients.json (issue 16)", () => {
  it("reads a client with its keys, redirect URIs, signer scope and explicit switch (off by default)", () => {
    const c = parseCscClients(client()).get("a")!;
    expect(c).toMatchObject({ clientId: "a", name: "a", redirectUris: ["https://a.example/cb"], signers: ["sgn_1"], explicit: false });
    expect(CscClients.mayActFor(c, "sgn_1")).toBe(true);
    expect(CscClients.mayActFor(c, "sgn_2")).toBe(false);
    expect(CscClients.mayActFor(parseCscClients(client({ signers: "*" })).get("a")!, "sgn_2")).toBe(true);
  });

  it("fails closed, naming the problem, on a malformed registration", () => {
    for (const text of [
      "{", JSON.stringify({}), client({ clientId: "has space" }), client({ jwks: { keys: [] } }), client({ jwks: { keys: [{ ...key, d: "secret" }] } }),
      client({ redirectUris: ["http://a.example/cb"] }), client({ signers: "all" }), client({ signers: [1] }), client({ explicit: "yes" }),
      client({ sca: { cert: "/nonexistent/sca.crt", key: "/nonexistent/sca.key" } }), client({ sca: "pki/sca.crt" }),
      JSON.stringify({ clients: [JSON.parse(client()).clients[0], JSON.parse(client()).clients[0]] }),
      // Not objects where objects belong, and keys jose cannot import: still the registration's error, not a crash.
      "null", JSON.stringify({ clients: [null] }), JSON.stringify({ clients: [1] }), client({ jwks: { keys: [null] } }), client({ jwks: { keys: [{ kty: "EC" }] } }),
      client({ jwks: { keys: [{ kty: "nope" }] } }), client({ name: 7 }),
    ]) expect(() => parseCscClients(text), text).toThrow(CscClientsError);
  });
});
