/**
 * The SAM's key-import transport keys (GetKeyImportTransportKey, T-2.1.4.1): RSA "unwrap" key pairs
 * generated in the crypto module, under which an importer wraps a signing key (RSA-OAEP + AES-KWP,
 * the CKM_RSA_AES_KEY_WRAP layout). Their private halves never leave the module.
 *
 * Where the key list lives: like the SAM encryption keys (sam-encryption-keys.ts), a small JSON
 * document in a data object of the module (label "key-import-transport-keys"), sealed with the
 * record-seal HMAC key under its own domain-separation prefix, so it survives a restart, is shared
 * by every node using the module, and cannot be rewritten by someone who can write only the
 * database. Only key ids and dates are kept; public keys are read from the module (findKey).
 *
 * Rotation: a key is valid for {@link transportKeyLifetimeMs}; when the current one is within a day
 * of its expiry, the next request generates a new one (registration.proto). Expired keys are refused
 * by ImportKey (EXPIRED) and destroyed in the module at the next rotation.
 */
import { createHash, createPublicKey, timingSafeEqual } from "node:crypto";
import canonicalize from "canonicalize";
import type { DataObjects, KeyImport, KeyLookup, SigningKeys, SystemKeys } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { CrossNodeLock } from "../store/cross-node-lock.js";

export const transportKeySetLabel = "key-import-transport-keys";
/** How long a transport key is offered and accepted. */
export const transportKeyLifetimeMs = 30 * 24 * 60 * 60 * 1000;
/** A new key is generated when the current one expires within this (registration.proto: a day). */
export const transportKeyRenewMs = 24 * 60 * 60 * 1000;
/** registration.proto: an RSA key of at least 3072 bits. */
const transportKeyAlgorithm = "RSA_3072";
/** SoftHSM2 2.6.1 unwraps RSA-OAEP only with SHA-1 (platform notes), which the JWK "alg" states. */
const transportJwkAlg = "RSA-OAEP";
const sealContext = "inkan-key-import-transport-keys-v1\n";
const encoder = new TextEncoder();

export type TransportKeyCrypto = Pick<KeyImport, "generateImportKeyPair"> & KeyLookup & DataObjects & Pick<SystemKeys, "hmacSha256"> & Pick<SigningKeys, "destroyKeyPair">;

interface Entry {
  keyId: string;
  /** RFC 7638 thumbprint of the public JWK: the transport_key_id. */
  kid: string;
  createdAt: string;
  expiresAt: string;
}

interface SetBody {
  v: 1;
  /** Newest first. */
  keys: Entry[];
}

/** What GetKeyImportTransportKey returns. */
export interface PublishedTransportKey {
  transportKeyId: string;
  /** The public JWK: kty, n, e, kid, alg "RSA-OAEP", use "enc". */
  jwk: { kty: "RSA"; n: string; e: string; kid: string; alg: typeof transportJwkAlg; use: "enc" };
  publicKeySpki: Uint8Array;
  expiresAt: Date;
}

export interface KeyImportTransportKeysOptions {
  crypto: TransportKeyCrypto;
  /** Several nodes on one module: the lock that makes their updates of the key set one at a time (issue 21). */
  lock?: CrossNodeLock | undefined;
  /** Told of each key created (the composition root logs it). */
  onKeyCreated?: (kid: string) => void;
}

/**
 * @example
 * const transport = new KeyImportTransportKeys({ crypto });
 * const key = await transport.current(new Date());          // GetKeyImportTransportKey
 * const keyId = await transport.unwrapKeyId(req.transportKeyId, new Date()); // ImportKey
 */
export class KeyImportTransportKeys {
  private writing: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: KeyImportTransportKeysOptions) {}

  /** The current transport key, generated in the module first when there is none or it expires within a day. */
  current(now: Date): Promise<PublishedTransportKey> {
    return this.serialized(async () => {
      let body = (await this.load()) ?? { v: 1, keys: [] };
      const head = body.keys[0];
      if (!head || Date.parse(head.expiresAt) - now.getTime() <= transportKeyRenewMs) {
        const generated = await this.o.crypto.generateImportKeyPair(transportKeyAlgorithm);
        const entry: Entry = {
          keyId: generated.keyId,
          kid: thumbprint(generated.publicKeySpki),
          createdAt: now.toISOString(),
          expiresAt: new Date(now.getTime() + transportKeyLifetimeMs).toISOString(),
        };
        const expired = body.keys.filter((k) => Date.parse(k.expiresAt) <= now.getTime());
        body = { v: 1, keys: [entry, ...body.keys.filter((k) => !expired.includes(k))] };
        await this.store(body);
        this.o.onKeyCreated?.(entry.kid);
        for (const k of expired) await this.o.crypto.destroyKeyPair(k.keyId).catch(() => undefined); // unusable already: its expiry is past
      }
      return this.publish(body.keys[0]!);
    });
  }

  /**
   * The module key id of the transport key `transportKeyId` for an unwrap at `now`:
   * INVALID_REQUEST when it is unknown, EXPIRED when it is past its expiry (registration.proto).
   */
  async unwrapKeyId(transportKeyId: string, now: Date): Promise<string> {
    const body = await this.load();
    const entry = body?.keys.find((k) => k.kid === transportKeyId);
    if (!entry) throw new InkanError("INVALID_REQUEST", "no such key-import transport key", { field: "transport_key_id" });
    if (Date.parse(entry.expiresAt) <= now.getTime()) throw new InkanError("EXPIRED", "the key-import transport key has expired; fetch the current one", { field: "transport_key_id" });
    return entry.keyId;
  }

  private async publish(entry: Entry): Promise<PublishedTransportKey> {
    const info = await this.o.crypto.findKey(entry.keyId);
    // The list names only "unwrap" keys whose public key has the listed thumbprint; anything else is tampering.
    if (!info || info.usage !== "unwrap" || thumbprint(info.publicKeySpki) !== entry.kid) {
      throw new InkanError("INTEGRITY_VIOLATION", "the key-import transport key is not in the crypto module as listed");
    }
    const { n, e } = createPublicKey({ key: Buffer.from(info.publicKeySpki), format: "der", type: "spki" }).export({ format: "jwk" });
    return {
      transportKeyId: entry.kid,
      jwk: { kty: "RSA", n: n!, e: e!, kid: entry.kid, alg: transportJwkAlg, use: "enc" },
      publicKeySpki: info.publicKeySpki,
      expiresAt: new Date(entry.expiresAt),
    };
  }

  private async load(): Promise<SetBody | undefined> {
    const raw = await this.o.crypto.readDataObject(transportKeySetLabel);
    if (!raw) return undefined;
    let doc: { body: SetBody; seal: string };
    try {
      doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw)) as { body: SetBody; seal: string };
      if (typeof doc.seal !== "string" || doc.body?.v !== 1 || !Array.isArray(doc.body.keys)) throw new Error("malformed");
    } catch (err) {
      throw new InkanError("INTEGRITY_VIOLATION", "the key-import transport key list failed its integrity check", { cause: err });
    }
    const expected = await this.seal(doc.body);
    const seal = Buffer.from(doc.seal, "base64url");
    // R-3.2.1.7: a list changed outside the SAM (another key made current, an expiry pushed back) is never used.
    if (seal.length !== expected.length || !timingSafeEqual(seal, expected)) {
      throw new InkanError("INTEGRITY_VIOLATION", "the key-import transport key list failed its integrity check");
    }
    return doc.body;
  }

  private async store(body: SetBody): Promise<void> {
    const raw = encoder.encode(JSON.stringify({ body, seal: Buffer.from(await this.seal(body)).toString("base64url") }));
    await this.o.crypto.writeDataObject(transportKeySetLabel, raw);
  }

  private seal(body: SetBody): Promise<Uint8Array> {
    // Its own prefix: this HMAC is never valid as a record seal or another document's seal.
    return this.o.crypto.hmacSha256("record-seal", encoder.encode(sealContext + canonicalize(body)));
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    // Issue 21: nodes sharing the module update the set one at a time (each reads it again under the lock).
    const locked = this.o.lock ? () => this.o.lock!("key-import-transport-key-set", fn) : fn;
    const run = this.writing.catch(() => undefined).then(locked);
    this.writing = run;
    return run;
  }
}

/** RFC 7638 SHA-256 thumbprint of an RSA public key, base64url. */
function thumbprint(spki: Uint8Array): string {
  const { n, e } = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }).export({ format: "jwk" });
  return createHash("sha256").update(JSON.stringify({ e, kty: "RSA", n })).digest("base64url");
}
