/**
 * The SAM's JWE recipient keys (R.SAD confidentiality, R-3.2.1.2, T-2.2.1.5): EC P-256 "derive"
 * key pairs generated in the crypto module, published through GetInfo, and the decryption of a
 * compact JWE sent to one of them. The private keys never leave the module; only the ECDH shared
 * secret Z does, and the rest of ECDH-ES(+A256KW) runs here (jwe-ecdh-es.ts).
 *
 * Where the key set lives. The store has no record kind for it and its schema stays as it is; the
 * module's KeyLookup finds a key only by an id one already knows, so it cannot say which keys exist
 * or which is current. The key set is therefore a small JSON document in a data object of the
 * crypto module (label "sam-encryption-keys"), sealed with the module's record-seal HMAC key under
 * its own domain-separation prefix. This keeps it next to the keys it names (a shared network HSM
 * gives every SAM node the same set), out of reach of anyone who can write only the database, and
 * verified on every read. At start the module is asked for every listed key (findKey) and its public
 * key must be the one the set publishes. Known limit: an attacker who can log in to the module
 * could put back an older sealed version (rollback); nothing outside the module anchors it yet.
 */
import { createHash, createPublicKey, timingSafeEqual } from "node:crypto";
import canonicalize from "canonicalize";
import type { DataObjects, EncryptionKeys, KeyLookup, RandomSource, SigningKeys, SystemKeys } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { CrossNodeLock } from "../store/cross-node-lock.js";
import { JweRefused, openParsedJwe, parseCompactJwe } from "./jwe-ecdh-es.js";

/** The data object that holds the sealed key set. */
export const samKeySetLabel = "sam-encryption-keys";
/** How long a key stays valid for decryption after a rotation replaced it (default). */
export const defaultRetirementMs = 7 * 24 * 60 * 60 * 1000;
/** The most keys (current and retiring) the set holds; a rotation beyond it is refused. */
export const maxSamKeys = 8;
/** The largest R.SAD or signer envelope, a compact JWE (Limits.max_r_sad_bytes, AuthorizeRequest.r_sad). */
export const maxRSadBytes = 16_384;
/** The one message of every decryption failure: it says nothing about which check failed. */
export const sadInvalidMessage = "the R.SAD is invalid";

/**
 * Issue 20 (keeping R-3.2.1.2 / T-2.2.1.5: only a published key before its not_after decrypts;
 * R-3.2.1.7: a set changed outside the SAM is never used): how long a set read from the module
 * also serves the per-transaction paths (the key a challenge names, the key a JWE is decrypted
 * with) of this process. Why a set read this recently
 * decides every JWE exactly as the module's newest would, while reading the module at most once per
 * window instead of twice per transaction (SoftHSM2 walks every object of the token per read):
 * - A key is only ever added (rotate, the first key), given a not_after (rotate: now + the
 *   retirement period, days) or removed once past it (prune). A kid the older set does not know is
 *   read again from the module at once (a key another node just created decrypts at once).
 * - A key retired meanwhile is, in the newest set, usable until at least the retirement period
 *   after the rotation, far past this window: usable in both. A key removed meanwhile was past its
 *   not_after in the older set too (its retirement began before that set was read): refused in both.
 * - The set is verified (seal) when read; a set changed outside the SAM is never used, and fails
 *   closed on the next read. Publication (GetInfo, currentKey, publishedKeys) and every update read
 *   the module each time; so does everything when the retirement period is not longer than the window.
 * So the one difference is that a challenge may name the replaced key for up to this long after
 * another node's rotation: a key that still decrypts for the whole retirement period.
 */
export const keySetReuseMs = 1_000;

/** The sole JWE key-management algorithm published for SAM keys. */
export const samKeyAlgorithm = "ECDH-ES+A256KW";

/** A public SAM encryption key as GetInfo publishes it. */
export interface PublishedSamKey {
  kid: string;
  alg: typeof samKeyAlgorithm;
  /** The public JWK: kty, crv, x, y, kid, alg, use "enc". Never a private member. */
  jwk: { kty: "EC"; crv: "P-256"; x: string; y: string; kid: string; alg: typeof samKeyAlgorithm; use: "enc" };
  /** True for the one key new JWEs should be encrypted to. */
  current: boolean;
  /** JWEs to this key are refused from this instant; undefined for the current key. */
  notAfter: Date | undefined;
}

/** One key of the sealed set. */
interface KeyEntry {
  /** The module's key id (hex CKA_ID). */
  keyId: string;
  /** RFC 7638 SHA-256 thumbprint of the public JWK, base64url: the JWE "kid". */
  kid: string;
  x: string;
  y: string;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601; absent for the current key. */
  notAfter?: string;
}

interface KeySetBody {
  v: 1;
  /**
   * The SAM's id (GetInfoResponse.sam_id, the R.SAD audience): "urn:inkan:sam:" and 128 random
   * bits from the module, drawn once with the first key and never changed. Shared by every node
   * that uses this module, unlike the per-node nodeId.
   */
  samId: string;
  /** The current key first, then the retiring ones. */
  keys: KeyEntry[];
}

interface KeySet {
  body: KeySetBody;
  /** The document's bytes as read, to skip verifying an unchanged set again. */
  raw: Uint8Array | undefined;
  /** When it was read from (or written to) the module, by {@link SamEncryptionKeysOptions.monotonicMs}. */
  readAtMs: number;
}

export type SamKeysCrypto = EncryptionKeys & KeyLookup & DataObjects & RandomSource & Pick<SystemKeys, "hmacSha256"> & Pick<SigningKeys, "destroyKeyPair">;

export interface SamEncryptionKeysOptions {
  crypto: SamKeysCrypto;
  /** Several nodes on one module: the lock that makes their updates of the key set one at a time (issue 21). */
  lock?: CrossNodeLock | undefined;
  /** How long a replaced key still decrypts; default {@link defaultRetirementMs}. */
  retirementMs?: number;
  /** Told of each key created or destroyed (the composition root logs and audits it). */
  onKeyCreated?: (kid: string) => void;
  onKeyDestroyed?: (kid: string) => void;
  /** Tests: the monotonic clock of {@link keySetReuseMs}; default performance.now. */
  monotonicMs?: () => number;
}

export interface DecryptOptions {
  /** The most characters the compact JWE may have (Limits.max_r_sad_bytes: 16,384). */
  maxBytes: number;
  /** The instant the key's not_after is checked against. */
  now: Date;
  /** When set, the protected header's "cty" must equal it ("inkan-sad-envelope+json" for R.SAD). */
  cty?: string;
}

const sealContext = "inkan-sam-encryption-keys-v1\n";
const encoder = new TextEncoder();

/**
 * The SAM's encryption keys: created, rotated and published here, used to decrypt JWEs sent to
 * the SAM.
 *
 * @example
 * const keys = new SamEncryptionKeys({ crypto });
 * await keys.ensureCurrentKey(new Date());            // inkan init, inkan serve
 * const published = await keys.publishedKeys(new Date());
 * const envelope = await keys.decryptCompactJwe(rSad, { maxBytes: 16_384, now: new Date() });
 */
export class SamEncryptionKeys {
  private cached: KeySet | undefined;
  /** The module read in flight for the per-transaction paths: concurrent callers share it. */
  private reading: Promise<KeySetBody> | undefined;
  private writing: Promise<unknown> = Promise.resolve();
  private readonly retirementMs: number;
  private readonly reuseMs: number;
  private readonly monotonicMs: () => number;

  constructor(private readonly o: SamEncryptionKeysOptions) {
    this.retirementMs = o.retirementMs ?? defaultRetirementMs;
    this.reuseMs = this.retirementMs > keySetReuseMs ? keySetReuseMs : 0; // the argument at keySetReuseMs needs a longer retirement
    this.monotonicMs = o.monotonicMs ?? (() => performance.now());
  }

  /**
   * Makes sure a current key exists (creating the first one, and the SAM id, when the set is empty)
   * and that every listed key is in the module with the public key the set publishes. Removes keys
   * past their not_after. Returns the current kid. Used by `inkan init` and at every start.
   */
  ensureCurrentKey(now: Date): Promise<string> {
    return this.serialized(async () => {
      const set = await this.load();
      let body = set?.body;
      if (!body) {
        const samId = `urn:inkan:sam:${Buffer.from(await this.o.crypto.randomBytes(16)).toString("base64url")}`;
        body = { v: 1, samId, keys: [await this.createKey(now)] };
        await this.store(body);
      } else {
        await this.checkInModule(body);
        body = await this.prune(body, now);
      }
      return body.keys[0]!.kid;
    });
  }

  /**
   * Creates a new current key; the one it replaces keeps decrypting until now + the retirement
   * period (its not_after). Keys already past not_after are removed from the set and destroyed.
   * Refused with LIMIT_EXCEEDED when the set would hold more than {@link maxSamKeys} keys.
   */
  rotate(now: Date): Promise<string> {
    return this.serialized(async () => {
      const set = await this.load();
      if (!set) throw new InkanError("STATE_CONFLICT", "no SAM encryption key exists yet; run inkan init");
      const body = await this.prune(set.body, now);
      if (body.keys.length + 1 > maxSamKeys) {
        throw new InkanError("LIMIT_EXCEEDED", `at most ${maxSamKeys} SAM encryption keys can be valid at once`);
      }
      const notAfter = new Date(now.getTime() + this.retirementMs).toISOString();
      const retired = body.keys.map((k) => (k.notAfter === undefined ? { ...k, notAfter } : k));
      const next: KeySetBody = { ...body, keys: [await this.createKey(now), ...retired] };
      await this.store(next);
      return next.keys[0]!.kid;
    });
  }

  /**
   * The SAM id (GetInfoResponse.sam_id, the R.SAD "aud"). Issue 20: read from the module once. It
   * is fixed when the set is first created (rotate and prune keep it) and this instance only keeps
   * a set whose seal verified, so later reads could only confirm it; the keys themselves are still
   * read and verified on every use (a set changed meanwhile fails those closed).
   */
  async samId(): Promise<string> {
    return this.cached?.body.samId ?? (await this.required()).samId;
  }

  /** The keys that still decrypt at `now`: the current one first, then those being retired. */
  async publishedKeys(now: Date): Promise<PublishedSamKey[]> {
    return publishedOf(await this.required(), now);
  }

  /** The key new JWEs should be encrypted to. */
  async currentKey(now: Date): Promise<PublishedSamKey> {
    return currentOf(await this.required(), now);
  }

  /** The SAM id and the current key from one read of the key set (a recent one, {@link keySetReuseMs}): what a challenge carries. */
  async audienceAndCurrentKey(now: Date): Promise<{ audience: string; encryptionKey: PublishedSamKey }> {
    const body = await this.recent();
    return { audience: body.samId, encryptionKey: currentOf(body, now) };
  }

  /**
   * Decrypts a compact JWE sent to a SAM key (R-3.2.1.2, T-2.2.1.5): size bound before parsing,
   * strict header allow-list, epk on P-256, kid of a key that is published and not past
   * not_after, Z derived in the module, Concat KDF, AES-256 key unwrap, AES-256-GCM with the
   * protected header as associated data. Every refusal is the same SAD_INVALID error with the same
   * message (no decryption oracle); the specific reason is only in `cause`. A failure of the module
   * itself stays CRYPTO_MODULE_FAILURE, and a key set that fails its seal INTEGRITY_VIOLATION.
   */
  async decryptCompactJwe(jwe: string, options: DecryptOptions): Promise<Uint8Array> {
    let parsed;
    try {
      parsed = parseCompactJwe(jwe, { maxBytes: options.maxBytes, cty: options.cty });
    } catch (err) {
      throw sadInvalid(err);
    }
    // Issue 20: a recent read of the set (keySetReuseMs argues why it decides as the newest would);
    // a kid it does not know is looked up in the module's newest set (another node's new key).
    const recent = await this.recent();
    const key = recent.keys.find((k) => k.kid === parsed.kid) ?? (await this.required()).keys.find((k) => k.kid === parsed.kid);
    if (!key) throw sadInvalid(new JweRefused("kid names no SAM key"));
    // T-2.2.1.5 (issue 18): exactly the algorithm the key is published with; the parser also knows
    // direct ECDH-ES, which no SAM key offers.
    if (parsed.alg !== samKeyAlgorithm) throw sadInvalid(new JweRefused(`alg ${parsed.alg} is not the published ${samKeyAlgorithm}`));
    if (!usable(key, options.now)) throw sadInvalid(new JweRefused("the key is past its not_after"));
    let z: Uint8Array;
    try {
      z = await this.o.crypto.deriveSharedSecret({ keyId: key.keyId, peerPublicKey: parsed.epk });
    } catch (err) {
      if (err instanceof InkanError && err.code === "CRYPTO_MODULE_FAILURE") throw err;
      throw sadInvalid(err);
    }
    try {
      return openParsedJwe(parsed, z);
    } catch (err) {
      throw sadInvalid(err);
    } finally {
      z.fill(0);
    }
  }

  // ---- internals ----------------------------------------------------------------------------

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    // Issue 21: nodes sharing the module update the set one at a time (each reads it again under the lock).
    const locked = this.o.lock ? () => this.o.lock!("sam-encryption-key-set", fn) : fn;
    const run = this.writing.catch(() => undefined).then(locked);
    this.writing = run;
    return run;
  }

  /** The set read within the last {@link keySetReuseMs}, else read now (one read shared by concurrent callers). */
  private recent(): Promise<KeySetBody> {
    const c = this.cached;
    if (c && this.monotonicMs() - c.readAtMs < this.reuseMs) return Promise.resolve(c.body);
    this.reading ??= this.required().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async required(): Promise<KeySetBody> {
    const set = await this.load();
    if (!set) throw new InkanError("CRYPTO_MODULE_FAILURE", "the SAM has no encryption key; run inkan init");
    return set.body;
  }

  /** Reads and verifies the sealed set; undefined when none was written yet. */
  private async load(): Promise<KeySet | undefined> {
    const readAtMs = this.monotonicMs(); // before the read: its age is never understated
    const raw = await this.o.crypto.readDataObject(samKeySetLabel);
    if (!raw) return undefined;
    const c = this.cached;
    if (c?.raw && c.raw.length === raw.length && timingSafeEqual(c.raw, raw)) {
      c.readAtMs = Math.max(c.readAtMs, readAtMs);
      return c;
    }
    let doc: { body: KeySetBody; seal: string };
    try {
      doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw)) as { body: KeySetBody; seal: string };
      if (typeof doc.seal !== "string" || typeof doc.body !== "object" || doc.body === null) throw new Error("malformed");
    } catch (err) {
      throw new InkanError("INTEGRITY_VIOLATION", "the SAM encryption key set failed its integrity check", { cause: err });
    }
    const expected = await this.seal(doc.body);
    const seal = Buffer.from(doc.seal, "base64url");
    // R-3.2.1.7: a key set changed outside the SAM (another kid made current, a key kept past its end) is never used.
    if (seal.length !== expected.length || !timingSafeEqual(seal, expected) || !wellFormed(doc.body)) {
      throw new InkanError("INTEGRITY_VIOLATION", "the SAM encryption key set failed its integrity check");
    }
    const set = { body: doc.body, raw, readAtMs };
    this.cached = set;
    return set;
  }

  private async store(body: KeySetBody): Promise<void> {
    const raw = encoder.encode(JSON.stringify({ body, seal: Buffer.from(await this.seal(body)).toString("base64url") }));
    await this.o.crypto.writeDataObject(samKeySetLabel, raw);
    this.cached = { body, raw, readAtMs: this.monotonicMs() };
  }

  private seal(body: KeySetBody): Promise<Uint8Array> {
    // Its own prefix: this HMAC is never valid as a record seal, nor a record seal as this.
    return this.o.crypto.hmacSha256("record-seal", encoder.encode(sealContext + canonicalize(body)));
  }

  private async createKey(now: Date): Promise<KeyEntry> {
    const generated = await this.o.crypto.generateEncryptionKeyPair("EC_P256");
    const { x, y } = pointOf(generated.publicKeySpki);
    const entry: KeyEntry = { keyId: generated.keyId, kid: thumbprint(x, y), x, y, createdAt: now.toISOString() };
    this.o.onKeyCreated?.(entry.kid);
    return entry;
  }

  /** Every listed key is a "derive" P-256 key in the module with exactly the published public key. */
  private async checkInModule(body: KeySetBody): Promise<void> {
    for (const k of body.keys) {
      const found = await this.o.crypto.findKey(k.keyId);
      if (!found || found.usage !== "derive" || found.algorithm !== "EC_P256") {
        throw new InkanError("CRYPTO_MODULE_FAILURE", `SAM encryption key ${k.kid} is missing from the crypto module`);
      }
      const { x, y } = pointOf(found.publicKeySpki);
      if (x !== k.x || y !== k.y) throw new InkanError("INTEGRITY_VIOLATION", `SAM encryption key ${k.kid} does not match the crypto module`);
    }
  }

  /** Drops keys past their not_after from the set, then destroys them in the module. */
  private async prune(body: KeySetBody, now: Date): Promise<KeySetBody> {
    const expired = body.keys.filter((k) => !usable(k, now));
    if (expired.length === 0) return body;
    const next = { ...body, keys: body.keys.filter((k) => usable(k, now)) };
    await this.store(next); // first the set, so that it never names a key that is gone
    for (const k of expired) {
      await this.o.crypto.destroyKeyPair(k.keyId).catch((err: unknown) => {
        if (!(err instanceof InkanError && err.code === "CREDENTIAL_NOT_FOUND")) throw err;
      });
      this.o.onKeyDestroyed?.(k.kid);
    }
    return next;
  }
}

function sadInvalid(cause: unknown): InkanError {
  return new InkanError("SAD_INVALID", sadInvalidMessage, { cause });
}

/** The keys of `body` that still decrypt at `now`: the current one first, then those being retired. */
function publishedOf(body: KeySetBody, now: Date): PublishedSamKey[] {
  return body.keys.filter((k) => usable(k, now)).map((k, i) => published(k, i === 0 && k.notAfter === undefined));
}

/** The key of `body` new JWEs should be encrypted to. */
function currentOf(body: KeySetBody, now: Date): PublishedSamKey {
  const current = publishedOf(body, now).find((k) => k.current);
  if (!current) throw new InkanError("CRYPTO_MODULE_FAILURE", "the SAM has no current encryption key; run inkan init");
  return current;
}

function usable(k: KeyEntry, now: Date): boolean {
  return k.notAfter === undefined || now.getTime() < Date.parse(k.notAfter);
}

function published(k: KeyEntry, current: boolean): PublishedSamKey {
  return {
    kid: k.kid,
    alg: samKeyAlgorithm,
    jwk: { kty: "EC", crv: "P-256", x: k.x, y: k.y, kid: k.kid, alg: samKeyAlgorithm, use: "enc" },
    current,
    notAfter: k.notAfter === undefined ? undefined : new Date(k.notAfter),
  };
}

/** The public point of a P-256 SPKI as JWK coordinates. */
function pointOf(spki: Uint8Array): { x: string; y: string } {
  const jwk = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }).export({ format: "jwk" });
  if (jwk.kty !== "EC" || jwk.crv !== "P-256" || !jwk.x || !jwk.y) throw new InkanError("CRYPTO_MODULE_FAILURE", "SAM encryption key is not P-256");
  return { x: jwk.x, y: jwk.y };
}

/** RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace. */
export function thumbprint(x: string, y: string): string {
  return createHash("sha256").update(JSON.stringify({ crv: "P-256", kty: "EC", x, y })).digest("base64url");
}

function wellFormed(body: KeySetBody): boolean {
  if (body.v !== 1 || typeof body.samId !== "string" || !Array.isArray(body.keys) || body.keys.length === 0) return false;
  return body.keys.every(
    (k, i) => typeof k.keyId === "string" && typeof k.x === "string" && typeof k.y === "string" && k.kid === thumbprint(k.x, k.y) && (i === 0) === (k.notAfter === undefined),
  );
}
