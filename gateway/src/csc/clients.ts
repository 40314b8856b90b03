/**
 * The CSC clients registered with the gateway: a JSON file in the data directory,
 * `csc-clients.json`, written by the RSSP's operator (no CLI yet). Each client authenticates to
 * oauth2/token with `private_key_jwt` (RFC 7523, OpenID Connect Core 9) against the public keys
 * registered here, and may act only for the signers listed with it (issue 19): a signer or
 * credential outside that list is answered exactly as one that does not exist.
 *
 * {
 *   "clients": [{
 *     "clientId": "platform-a",                 // 1-128 printable ASCII, no spaces
 *     "name": "Platform A",                     // shown to the signer in the portal
 *     "jwks": { "keys": [ { "kty": "EC", ... } ] },   // public keys only, ES256/ES384/PS256/EdDSA
 *     "redirectUris": ["https://platform-a.example/csc/callback"],
 *     "signers": ["sgn_..."],                   // or "*" for every signer the gateway's SCA may see
 *     "explicit": false,                        // true: may use credentials/authorize (it sees PINs)
 *     "sca": { "cert": "pki/platform-a.crt", "key": "pki/platform-a.key" }   // optional, below
 *   }]
 * }
 *
 * `sca` (optional; paths relative to the data directory): the SCA client certificate the gateway
 * presents to the SAM for this client, instead of its own. The SAM's SCA scopes (issue 19: by
 * certificate key or issuing CA, for all signers, signer groups or the scope's own group) then
 * apply to this client as to any SCA, and `signers` narrows them further. Without it the client
 * acts through the gateway's SCA, within that SCA's scopes and its `signers` list.
 *
 * No file: no CSC client (every token request fails invalid_client). A malformed file stops the
 * gateway at start (fail closed), with the reason.
 */
import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";

export interface CscClient {
  clientId: string;
  name: string;
  keys: JWTVerifyGetKey;
  redirectUris: readonly string[];
  /** The signer ids this client may act for; "*" for all. */
  signers: readonly string[] | "*";
  /**
   * May use explicit mode (credentials/authorize with PIN + OTP), where this client sees the
   * signer's PIN. Off unless registered so: the SAM's default policy enables PIN + TOTP, so the
   * gateway keeps its own switch, per client.
   */
  explicit: boolean;
  /** The SCA identity (PEM) toward the SAM for this client; undefined: the gateway's own. */
  sca?: { cert: string; key: string };
}

export class CscClientsError extends Error {}

export const cscClientsFile = (dataDir: string) => join(dataDir, "csc-clients.json");

export class CscClients {
  readonly #byId = new Map<string, CscClient>();

  constructor(clients: CscClient[]) {
    for (const c of clients) {
      if (this.#byId.has(c.clientId)) throw new CscClientsError(`client "${c.clientId}" is registered twice`);
      this.#byId.set(c.clientId, c);
    }
  }

  get(clientId: string): CscClient | undefined {
    return this.#byId.get(clientId);
  }

  /** Issue 19: the gateway's per-client scope. */
  static mayActFor(client: CscClient, signerId: string): boolean {
    return client.signers === "*" || client.signers.includes(signerId);
  }
}

const idPattern = /^[!-~]{1,128}$/;

/** Parses the registration file's JSON text (throws CscClientsError naming what is wrong). */
export function parseCscClients(text: string, dataDir?: string): CscClients {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new CscClientsError("csc-clients.json is not JSON");
  }
  const list = typeof doc === "object" && doc !== null ? (doc as { clients?: unknown }).clients : undefined;
  if (!Array.isArray(list)) throw new CscClientsError('csc-clients.json needs a "clients" array');
  return new CscClients(list.map((raw: unknown, i) => {
    const where = `clients[${i}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new CscClientsError(`${where} must be an object`);
    const c = raw as Record<string, unknown>;
    if (typeof c.clientId !== "string" || !idPattern.test(c.clientId)) throw new CscClientsError(`${where}.clientId must be 1-128 printable ASCII characters`);
    const jwks = c.jwks as JSONWebKeySet | undefined;
    if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0) throw new CscClientsError(`${where}.jwks needs at least one key`);
    // Public keys only: a private member in the file is a mistake that must not go unnoticed.
    jwks.keys.forEach((k: unknown, j) => {
      if (typeof k !== "object" || k === null || Array.isArray(k)) throw new CscClientsError(`${where}.jwks.keys[${j}] is not a JWK`);
      if (["d", "p", "q", "k"].some((m) => m in k)) throw new CscClientsError(`${where}.jwks holds a private key`);
      // Imported now, so that a key no client could ever authenticate with stops the gateway at start.
      try {
        createPublicKey({ key: k as never, format: "jwk" });
      } catch {
        throw new CscClientsError(`${where}.jwks.keys[${j}] is not a usable public key`);
      }
    });
    const uris = c.redirectUris ?? [];
    if (!Array.isArray(uris) || uris.some((u) => typeof u !== "string" || !/^https:\/\/[^#]+$/.test(u))) throw new CscClientsError(`${where}.redirectUris must be https:// URLs without fragment`);
    const signers = c.signers;
    if (signers !== "*" && (!Array.isArray(signers) || signers.some((s) => typeof s !== "string" || !idPattern.test(s)))) {
      throw new CscClientsError(`${where}.signers must be "*" or a list of signer ids`);
    }
    if (c.name !== undefined && (typeof c.name !== "string" || c.name.length === 0)) throw new CscClientsError(`${where}.name must be a non-empty string (shown to the signer)`);
    if (c.explicit !== undefined && typeof c.explicit !== "boolean") throw new CscClientsError(`${where}.explicit must be true or false`);
    const sca = c.sca as { cert?: unknown; key?: unknown } | undefined;
    let scaPem: { cert: string; key: string } | undefined;
    if (sca !== undefined) {
      if (typeof sca !== "object" || sca === null || typeof sca.cert !== "string" || typeof sca.key !== "string") throw new CscClientsError(`${where}.sca needs "cert" and "key" file paths`);
      const read = (f: string) => {
        try {
          return readFileSync(dataDir === undefined ? f : resolve(dataDir, f), "utf8");
        } catch {
          throw new CscClientsError(`${where}.sca: cannot read ${f}`);
        }
      };
      scaPem = { cert: read(sca.cert), key: read(sca.key) };
    }
    return {
      clientId: c.clientId,
      explicit: c.explicit === true,
      name: typeof c.name === "string" && c.name.length > 0 ? c.name.slice(0, 100) : c.clientId,
      keys: createLocalJWKSet(jwks),
      redirectUris: uris as string[],
      signers: signers as string[] | "*",
      ...(scaPem ? { sca: scaPem } : {}),
    };
  }));
}

/** The data directory's registered clients; none when the file does not exist. */
export function loadCscClients(dataDir: string): CscClients {
  let text: string;
  try {
    text = readFileSync(cscClientsFile(dataDir), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return new CscClients([]);
    throw new CscClientsError(`${cscClientsFile(dataDir)} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  return parseCscClients(text, dataDir);
}
