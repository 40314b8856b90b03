import { createHash, timingSafeEqual, type X509Certificate } from "node:crypto";
import canonicalize from "canonicalize";
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, importJWK, type JWK } from "jose";
import type { RandomSource } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type {
  OneTimeObjects,
  PrivilegedRole,
  PrivilegedUserKeyRecord,
  PrivilegedUserRecord,
} from "../store/port.js";
import { nonceMethod, rolesFor } from "./roles.js";

/** The JWS `typ` of a privileged user's per-request signature. */
export const requestSignatureType = "inkan-admin-req+jwt";
/** How long a nonce from CreateRequestNonce can be used. */
export const nonceLifetimeMs = 300_000;
/** auth.proto CreateRequestNonce: how many unused, unexpired nonces one privileged user may hold. */
export const maxOpenNonces = 100;
const maxSignatureLifetimeS = 120;
const clockSkewS = 30;

export type RequestSigningAlgorithm = "ES256" | "EdDSA";

/**
 * How a privileged user's client certificates are recognised (T-2.2.2.1): by their public key,
 * the SHA-256 of its DER SubjectPublicKeyInfo in lower-case hex (the RFC 7469 pin). One form only,
 * so a certificate matches at most one binding; the TLS handshake proves the client holds the
 * private key; a certificate renewed for the same key keeps working, a name alone never does.
 */
export interface CertificateBinding {
  spkiSha256: string;
}

/**
 * A binding as a stored body may hold it: the current form, or a form Inkan took before issue 13
 * (a certificate's SHA-256 or its subject), which let one certificate match two users. A record
 * with an old form is kept for the audit trail but identifies nobody (its store key has another
 * prefix than {@link bindingKey} writes) until a security officer binds the user again.
 */
export type StoredBinding = CertificateBinding | { certificateSha256: string } | { subject: string };

/** The client certificate a request came with, as the transport saw it. */
export interface PresentedCertificate {
  /** SHA-256 of the certificate's DER SubjectPublicKeyInfo, lower-case hex. */
  spkiSha256: string;
}

export interface AuthenticatedUser {
  userId: string;
  role: PrivilegedRole;
  /** The request-signing key that signed this request (undefined for CreateRequestNonce). */
  keyId: string | undefined;
}

export interface PrivilegedUserBody {
  displayName: string;
  certificateBinding: StoredBinding;
  createdAt: string;
  createdBy: string;
  updatedAt: string;
}

export interface UserKeyBody {
  /** The public JWK, canonical JSON. */
  jwk: string;
  algorithm: RequestSigningAlgorithm;
  label: string;
  addedAt: string;
  addedBy: string;
  revokedAt?: string;
  revokedBy?: string;
}

/** A privileged user with their request-signing keys. */
export interface UserView {
  user: PrivilegedUserRecord;
  keys: PrivilegedUserKeyRecord[];
}

export interface AdminRequest {
  /** Full RPC path, "/inkan.admin.v1.Service/Method". */
  method: string;
  /** SHA-256 of the request message's deterministic binary encoding. */
  digest: Uint8Array;
  /** The `inkan-request-signature` header, if any. */
  signature: string | undefined;
  certificate: PresentedCertificate;
  now: Date;
}

export interface PrivilegedUsersOptions {
  records: VerifiedRecords;
  oneTime: OneTimeObjects;
  random: RandomSource;
}

const fail = (code: "CLIENT_CERTIFICATE_REJECTED" | "REQUEST_SIGNATURE_INVALID" | "NONCE_REPLAYED" | "ROLE_NOT_PERMITTED", message: string, cause?: unknown) =>
  new InkanError(code, message, cause === undefined ? {} : { cause });

const sha256 = (data: Uint8Array | string) => createHash("sha256").update(data).digest();

/**
 * The binding value of a certificate: SHA-256 over its public key's DER SubjectPublicKeyInfo,
 * lower-case hex, as `openssl x509 -noout -pubkey | openssl pkey -pubin -outform der | openssl
 * dgst -sha256` prints it.
 */
export function spkiSha256(certificate: X509Certificate): string {
  return createHash("sha256").update(certificate.publicKey.export({ type: "spki", format: "der" })).digest("hex");
}

/** The unique store key of a certificate binding (PrivilegedUserRecord.certificateFingerprint). */
export function bindingKey(binding: CertificateBinding): string {
  return `spki:${binding.spkiSha256.toLowerCase()}`;
}

const taken = () => new InkanError("ALREADY_EXISTS", "this public key is already bound to a privileged user", { field: "certificate_binding" });

/**
 * Privileged users and the authentication of every admin request (R-3.1.2.1, R-3.2.2.1): the
 * client certificate names the user, a per-request JWS by one of the user's registered keys over
 * method, request digest, a one-time nonce and a short expiry proves it is the user asking for
 * exactly this, now. Records are sealed (R-3.2.1.7).
 */
export class PrivilegedUsers {
  constructor(private readonly o: PrivilegedUsersOptions) {}

  /**
   * The active user a client certificate belongs to, or undefined. T-2.2.2.1: a certificate that
   * matches more than one user (which the store's unique index and the checks in create() and
   * update() never let happen, unless that index is gone) identifies nobody:
   * CLIENT_CERTIFICATE_REJECTED, which the transport audits as a refused admin request.
   */
  async userOfCertificate(cert: PresentedCertificate): Promise<PrivilegedUserRecord | undefined> {
    const matches = await this.o.records.list({ kind: "privileged-user", where: { certificateFingerprint: bindingKey(cert) }, limit: 2 });
    if (matches.items.length > 1) {
      throw fail("CLIENT_CERTIFICATE_REJECTED", "client certificate not accepted", new Error("the certificate's public key is bound to more than one privileged user"));
    }
    const user = matches.items[0];
    return user?.status === "ACTIVE" ? user : undefined;
  }

  /**
   * Authenticates one admin request, in the documented order: certificate, signature and claims,
   * nonce (consumed atomically, whatever follows), role. Throws the matching InkanError.
   */
  async authenticate(req: AdminRequest): Promise<AuthenticatedUser> {
    const user = await this.userOfCertificate(req.certificate);
    if (!user) throw fail("CLIENT_CERTIFICATE_REJECTED", "client certificate not accepted"); // T-2.2.2.1
    if (req.method === nonceMethod) return this.permit(user, req.method, undefined);
    if (!req.signature) throw fail("REQUEST_SIGNATURE_INVALID", "request signature missing"); // a stolen certificate alone does nothing (T-2.1.2.1)

    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(req.signature);
    } catch (err) {
      throw fail("REQUEST_SIGNATURE_INVALID", "request signature malformed", err);
    }
    const alg = header.alg;
    if (header.typ !== requestSignatureType || (alg !== "ES256" && alg !== "EdDSA") || header.crit !== undefined || typeof header.kid !== "string") {
      throw fail("REQUEST_SIGNATURE_INVALID", "request signature header not accepted");
    }
    const key = await this.o.records.get("privileged-user-key", header.kid);
    const keyBody = key && (JSON.parse(key.body) as UserKeyBody);
    if (!key || !keyBody || key.userId !== user.id || key.status !== "ACTIVE" || keyBody.algorithm !== alg) {
      throw fail("REQUEST_SIGNATURE_INVALID", "request signature key not registered to this user"); // T-2.2.2.1
    }
    let claims: Record<string, unknown>;
    try {
      const verified = await compactVerify(req.signature, await importJWK(JSON.parse(keyBody.jwk) as JWK, alg), { algorithms: [alg] });
      claims = JSON.parse(new TextDecoder().decode(verified.payload)) as Record<string, unknown>;
    } catch (err) {
      throw fail("REQUEST_SIGNATURE_INVALID", "request signature does not verify", err);
    }
    const now = Math.floor(req.now.getTime() / 1000);
    const { sub, mth, dig, non, iat, exp } = claims;
    const digest = typeof dig === "string" ? Buffer.from(dig, "base64url") : Buffer.alloc(0);
    const problems = [
      sub !== user.id && "sub",
      mth !== req.method && "mth", // signed for another method: refused (T-2.2.2.1)
      (digest.length !== req.digest.length || !timingSafeEqual(digest, req.digest)) && "dig", // altered request
      (typeof iat !== "number" || iat > now + clockSkewS) && "iat",
      (typeof exp !== "number" || exp <= now || typeof iat !== "number" || exp <= iat || exp - iat > maxSignatureLifetimeS) && "exp",
      typeof non !== "string" && "non",
    ].filter(Boolean);
    if (problems.length > 0) throw fail("REQUEST_SIGNATURE_INVALID", `request signature claims not accepted (${problems.join(", ")})`);

    // T-2.2.2.1 replay: the nonce is consumed by one atomic update before anything else happens.
    const nonce = await this.o.oneTime.consumeChallenge({ hash: nonceHash(non as string), purpose: "admin-nonce", now: req.now });
    if (!nonce || nonce.subject !== user.id) throw fail("NONCE_REPLAYED", "request nonce unknown, expired or already used");
    return this.permit(user, req.method, key.id);
  }

  private permit(user: PrivilegedUserRecord, method: string, keyId: string | undefined): AuthenticatedUser {
    if (!rolesFor(method).includes(user.role)) throw fail("ROLE_NOT_PERMITTED", "this role may not call this method"); // least privilege
    return { userId: user.id, role: user.role, keyId };
  }

  /** A fresh one-time nonce for the user's next request signature (32 bytes from the module's RNG). */
  async issueNonce(userId: string, now: Date): Promise<{ nonce: string; expiresAt: Date }> {
    const nonce = Buffer.from(await this.o.random.randomBytes(32)).toString("base64url"); // R-3.2.2.2
    const expiresAt = new Date(now.getTime() + nonceLifetimeMs);
    // auth.proto: at most 100 unused, unexpired nonces per user (counted and issued atomically).
    const issued = await this.o.oneTime.issueChallenge({ hash: nonceHash(nonce), purpose: "admin-nonce", subject: userId, createdAt: now, expiresAt }, { maxOpen: maxOpenNonces, now });
    if (!issued) throw new InkanError("LIMIT_EXCEEDED", `at most ${maxOpenNonces} unused nonces at once: use them or let them expire`);
    return { nonce, expiresAt };
  }

  /**
   * Creates a privileged user with one request-signing key. R-3.2.1.6: the caller (the transport)
   * has already checked that `createdBy` is a security officer; `inkan init` passes "inkan-init".
   */
  async create(input: {
    role: PrivilegedRole;
    displayName: string;
    certificateBinding: CertificateBinding;
    publicKeyJwk: string;
    keyLabel: string;
    createdBy: string;
    now: Date;
  }): Promise<{ user: PrivilegedUserRecord; key: PrivilegedUserKeyRecord }> {
    const id = `pu-${Buffer.from(await this.o.random.randomBytes(12)).toString("base64url")}`;
    const at = input.now.toISOString();
    const body: PrivilegedUserBody = {
      displayName: input.displayName,
      certificateBinding: input.certificateBinding,
      createdAt: at,
      createdBy: input.createdBy,
      updatedAt: at,
    };
    const key = await this.keyRecord(id, input.publicKeyJwk, input.keyLabel, input.createdBy, input.now);
    // Checked first so that a refusal leaves nothing half-created; the unique indexes still decide races.
    if (await this.o.records.get("privileged-user-key", key.id)) throw new InkanError("ALREADY_EXISTS", "this key is already registered", { field: "public_key_jwk" });
    // T-2.2.2.1: a key another user's certificates already carry (removed users included) is never bound again.
    if (await this.o.records.find("privileged-user", "certificateFingerprint", bindingKey(input.certificateBinding))) throw taken();
    const user = await this.o.records.create<PrivilegedUserRecord>({
      kind: "privileged-user",
      id,
      version: 1,
      role: input.role,
      status: "ACTIVE",
      certificateFingerprint: bindingKey(input.certificateBinding),
      body: canonicalize(body)!,
    });
    return { user, key: await this.o.records.create<PrivilegedUserKeyRecord>(key) };
  }

  /** A privileged user with all their keys (revoked ones included), or NOT_FOUND. */
  async get(userId: string): Promise<UserView> {
    const user = await this.o.records.get("privileged-user", userId);
    if (!user) throw new InkanError("PRIVILEGED_USER_NOT_FOUND", "no such privileged user", { field: "user_id" });
    return { user, keys: await this.keysOf(userId) };
  }

  /** One page of privileged users (by id), with their keys. */
  async list(query: { role?: PrivilegedRole; status?: PrivilegedUserRecord["status"]; after?: string; limit: number }): Promise<{ users: UserView[]; next: string | undefined }> {
    const where = { ...(query.role ? { role: query.role } : {}), ...(query.status ? { status: query.status } : {}) };
    const page = await this.o.records.list({ kind: "privileged-user", where, after: query.after, limit: query.limit });
    return { users: await Promise.all(page.items.map(async (user) => ({ user, keys: await this.keysOf(user.id) }))), next: page.next };
  }

  /** Active security officers (at most `limit`). */
  async countSecurityOfficers(limit = 3): Promise<number> {
    const page = await this.o.records.list({ kind: "privileged-user", where: { role: "SECURITY_OFFICER", status: "ACTIVE" }, limit });
    return page.items.length;
  }

  /** Registers another request-signing key for a user (R-3.2.1.6: a security officer's act). */
  async addKey(input: { userId: string; publicKeyJwk: string; label: string; by: string; now: Date }): Promise<PrivilegedUserKeyRecord> {
    const { user } = await this.get(input.userId);
    if (user.status !== "ACTIVE") throw new InkanError("STATE_CONFLICT", "the privileged user was removed", { field: "user_id" });
    return this.o.records.create<PrivilegedUserKeyRecord>(await this.keyRecord(user.id, input.publicKeyJwk, input.label, input.by, input.now));
  }

  /** Revokes one of a user's request-signing keys; signatures by it stop verifying at once. */
  async revokeKey(input: { userId: string; keyId: string; by: string; now: Date }): Promise<PrivilegedUserKeyRecord> {
    const key = await this.o.records.get("privileged-user-key", input.keyId);
    if (!key || key.userId !== input.userId) throw new InkanError("INVALID_REQUEST", "no such key for this user", { field: "key_id" });
    if (key.status === "REVOKED") return key;
    const body: UserKeyBody = { ...(JSON.parse(key.body) as UserKeyBody), revokedAt: input.now.toISOString(), revokedBy: input.by };
    const updated = await this.o.records.update<PrivilegedUserKeyRecord>({ ...key, version: key.version + 1, status: "REVOKED", body: canonicalize(body)! }, key.version);
    if (!updated) throw new InkanError("VERSION_CONFLICT", "the key changed meanwhile; retry");
    return updated;
  }

  /** Changes a user's display name and certificate binding (compare-and-set on the version). */
  async update(input: { userId: string; expectedVersion: number; displayName: string; certificateBinding: CertificateBinding; by: string; now: Date }): Promise<PrivilegedUserRecord> {
    const { user } = await this.get(input.userId);
    if (user.version !== input.expectedVersion) throw new InkanError("VERSION_CONFLICT", "the user changed meanwhile; read it again", { field: "expected_version" });
    if (user.status !== "ACTIVE") throw new InkanError("STATE_CONFLICT", "the privileged user was removed", { field: "user_id" });
    // T-2.2.2.1: re-binding to a key another user's certificates carry would make one certificate match two users.
    const holder = await this.o.records.find("privileged-user", "certificateFingerprint", bindingKey(input.certificateBinding));
    if (holder && holder.id !== user.id) throw taken();
    const body: PrivilegedUserBody = { ...(JSON.parse(user.body) as PrivilegedUserBody), displayName: input.displayName, certificateBinding: input.certificateBinding, updatedAt: input.now.toISOString() };
    const updated = await this.o.records.update<PrivilegedUserRecord>(
      { ...user, version: user.version + 1, certificateFingerprint: bindingKey(input.certificateBinding), body: canonicalize(body)! },
      user.version,
    );
    if (!updated) throw new InkanError("VERSION_CONFLICT", "the user changed meanwhile; read it again", { field: "expected_version" });
    return updated;
  }

  /** Removes a user (kept as REMOVED for the audit trail); never the last security officer. */
  async remove(input: { userId: string; by: string; now: Date }): Promise<PrivilegedUserRecord> {
    const { user } = await this.get(input.userId);
    if (user.status === "REMOVED") return user;
    if (user.role === "SECURITY_OFFICER" && (await this.countSecurityOfficers(2)) < 2) {
      throw new InkanError("LAST_SECURITY_OFFICER", "the last security officer cannot be removed");
    }
    const body: PrivilegedUserBody = { ...(JSON.parse(user.body) as PrivilegedUserBody), updatedAt: input.now.toISOString() };
    const updated = await this.o.records.update<PrivilegedUserRecord>({ ...user, version: user.version + 1, status: "REMOVED", body: canonicalize(body)! }, user.version);
    if (!updated) throw new InkanError("VERSION_CONFLICT", "the user changed meanwhile; retry");
    return updated;
  }

  private async keysOf(userId: string): Promise<PrivilegedUserKeyRecord[]> {
    const keys: PrivilegedUserKeyRecord[] = [];
    let after: string | undefined;
    do {
      const page = await this.o.records.list({ kind: "privileged-user-key", where: { userId }, after, limit: 100 });
      keys.push(...page.items);
      after = page.next;
    } while (after);
    return keys;
  }

  /** Whether any privileged user exists (so `inkan init` creates the first one only once). */
  async any(): Promise<boolean> {
    const page = await this.o.records.list({ kind: "privileged-user", where: {}, limit: 1 });
    return page.items.length > 0;
  }

  private async keyRecord(userId: string, publicKeyJwk: string, label: string, addedBy: string, now: Date): Promise<Omit<PrivilegedUserKeyRecord, "seal">> {
    const { jwk, algorithm } = parsePublicJwk(publicKeyJwk);
    try {
      await importJWK(jwk, algorithm); // the point must be on the curve
    } catch (err) {
      throw new InkanError("INVALID_REQUEST", "public_key_jwk is not a valid public key", { field: "public_key_jwk", cause: err });
    }
    const kid = await calculateJwkThumbprint(jwk, "sha256");
    const body: UserKeyBody = { jwk: canonicalize(jwk)!, algorithm, label, addedAt: now.toISOString(), addedBy };
    return { kind: "privileged-user-key", id: kid, version: 1, userId, status: "ACTIVE", keyFingerprint: kid, body: canonicalize(body)! };
  }
}

/** Nonces are stored only as hashes: the store never holds a usable one. */
function nonceHash(nonce: string): string {
  return sha256(nonce).toString("base64url");
}

/** A public request-signing key: P-256 (ES256) or Ed25519 (EdDSA), no private part. */
export function parsePublicJwk(text: string): { jwk: JWK; algorithm: RequestSigningAlgorithm } {
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch (err) {
    throw new InkanError("INVALID_REQUEST", "public_key_jwk is not JSON", { field: "public_key_jwk", cause: err });
  }
  if (typeof jwk !== "object" || jwk === null || "d" in jwk) {
    throw new InkanError("INVALID_REQUEST", "public_key_jwk must be a public key", { field: "public_key_jwk" });
  }
  if (jwk.kty === "EC" && jwk.crv === "P-256" && typeof jwk.x === "string" && typeof jwk.y === "string") {
    return { jwk: { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y }, algorithm: "ES256" };
  }
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519" && typeof jwk.x === "string") {
    return { jwk: { kty: "OKP", crv: "Ed25519", x: jwk.x }, algorithm: "EdDSA" };
  }
  throw new InkanError("ALGORITHM_NOT_ALLOWED", "public_key_jwk must be an EC P-256 or Ed25519 key", { field: "public_key_jwk" });
}
