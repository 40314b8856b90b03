import { createHash, X509Certificate } from "node:crypto";
import canonicalize from "canonicalize";
import { InkanError } from "../errors.js";
import { IntegrityViolationError } from "../integrity/record-sealer.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { PolicyRecord } from "../store/port.js";

/** The policy stream's id in the store (PolicyRecord.id). */
export const securityPolicyId = "security-policy";

/** What SAP callers are told while the gate is closed. */
export const policyGateClosedMessage = "the security policy failed its integrity check; signing is stopped";

export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };
/**
 * The policy in proto3 JSON form (inkan.admin.v1.SecurityPolicy: lowerCamelCase names, enums by
 * name, durations as "300s", bytes as base64). The transport converts it and validates it with
 * protovalidate; the domain reads only the settings it enforces, through {@link PolicyVersion}.
 */
export type PolicyJson = { readonly [field: string]: JsonValue };

/** What the sealed body of a policy version holds. */
export interface PolicyBody {
  policy: PolicyJson;
  /** ISO 8601. */
  updatedAt: string;
  /** The requesting security officer; "" for the version `inkan init` writes. */
  updatedBy: string;
  /** The approving security officer; "" when no approval was needed. */
  approvedBy: string;
}

/** The operations a dual-control switch governs (SecurityPolicy.dual_control). */
export type DualControlSwitch = "credentialDestruction" | "securityOfficerChanges" | "securityPolicyChanges" | "signerRebinding";

/** A policy setting as recorded in the audit log: trusted CAs by SHA-256 fingerprint, never whole. */
export type PolicySnapshotValue = string | number | boolean | readonly (string | number)[] | PolicySnapshot;
export interface PolicySnapshot {
  readonly [setting: string]: PolicySnapshotValue;
}

const certificateFields = ["trustedScaCaCertificates", "trustedAdminCaCertificates", "trustedIssuingCaCertificates", "trustedFrontEndCaCertificates"] as const;
const certificateFieldNames: Record<(typeof certificateFields)[number], string> = {
  trustedScaCaCertificates: "policy.trusted_sca_ca_certificates",
  trustedFrontEndCaCertificates: "policy.trusted_front_end_ca_certificates",
  trustedAdminCaCertificates: "policy.trusted_admin_ca_certificates",
  trustedIssuingCaCertificates: "policy.trusted_issuing_ca_certificates",
};

/** What identifies an SCA to the policy's scopes (SecurityPolicy.sca_scopes), lower-case hex. */
export interface ScaScopeKey {
  /** SHA-256 of the DER SubjectPublicKeyInfo of the SCA's client certificate. */
  spkiSha256: string;
  /** SHA-256 of the DER of the CA certificate that issued it. */
  issuerSha256: string;
}

/**
 * The signers an SCA may act for: every signer, or those whose group is in `groups` (a signer
 * without a group is in no group). `scopes` names the scopes that matched, for the audit log.
 */
export type SignerScope = { readonly all: true; readonly scopes: readonly string[] } | { readonly all: false; readonly groups: ReadonlySet<string>; readonly scopes: readonly string[] };

/** Whether a signer of `group` ("" for none) is within `scope`. */
export function inSignerScope(scope: SignerScope, group: string): boolean {
  return scope.all || (group !== "" && scope.groups.has(group));
}

/** The name `inkan init` gives the scope of the development SCA CA (every signer). */
export const developmentScopeName = "development";

const bytesHex = (v: JsonValue | undefined): string => (typeof v === "string" ? Buffer.from(v, "base64").toString("hex") : "");
const asObject = (v: JsonValue | undefined): PolicyJson | undefined => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as PolicyJson) : undefined);

/** A proto3 JSON Duration ("300s", "0.500s") in milliseconds. */
export function durationMs(value: JsonValue | undefined, field: string): number {
  const m = typeof value === "string" ? /^(\d+)(?:\.(\d{1,9}))?s$/.exec(value) : null;
  if (!m) throw new RangeError(`security policy: ${field} is not a duration`);
  return Number(m[1]) * 1000 + Math.floor(Number(`0.${m[2] ?? "0"}`) * 1000);
}

/**
 * One sealed version of the security policy, with typed getters for the settings the SAM
 * enforces. Everything else stays in `policy` (proto3 JSON) for the admin service to return.
 */
export class PolicyVersion {
  readonly version: number;
  readonly policy: PolicyJson;
  readonly updatedAt: Date;
  readonly updatedBy: string;
  readonly approvedBy: string;
  /** {@link trustedCaSha256}'s sets, by kind. */
  readonly #caDigests = new Map<string, ReadonlySet<string>>();

  constructor(readonly record: PolicyRecord) {
    const body = JSON.parse(record.body) as PolicyBody;
    this.version = record.version;
    this.policy = body.policy;
    this.updatedAt = new Date(body.updatedAt);
    this.updatedBy = body.updatedBy;
    this.approvedBy = body.approvedBy;
  }

  private uint(field: string): number {
    const v = this.policy[field];
    return typeof v === "number" ? v : 0; // proto3 JSON omits zero
  }

  private ms(field: string): number {
    return durationMs(this.policy[field], field);
  }

  /** SHA-256 (lower-case hex) of each CA certificate trusted to identify SCAs, signer front ends (issue 18 item 7), or privileged users. */
  trustedCaSha256(kind: "sca" | "front-end" | "admin"): ReadonlySet<string> {
    // Issue 20: asked on every call (the trusted-CA interceptor); a version never changes, so hashed once.
    let digests = this.#caDigests.get(kind);
    if (!digests) {
      const field = kind === "sca" ? "trustedScaCaCertificates" : kind === "front-end" ? "trustedFrontEndCaCertificates" : "trustedAdminCaCertificates";
      const list = this.policy[field];
      digests = new Set((Array.isArray(list) ? list : []).map((b64) => createHash("sha256").update(Buffer.from(String(b64), "base64")).digest("hex")));
      this.#caDigests.set(kind, digests);
    }
    return digests;
  }

  /** Consecutive failed factor checks that lock a signer's credentials. */
  get lockoutThreshold(): number {
    return this.uint("lockoutThreshold");
  }
  get sadTokenLifetimeMs(): number {
    return this.ms("sadTokenLifetime");
  }
  get defaultTransactionLifetimeMs(): number {
    return this.ms("defaultTransactionLifetime");
  }
  get maxTransactionLifetimeMs(): number {
    return this.ms("maxTransactionLifetime");
  }
  get maxHashesPerTransaction(): number {
    return this.uint("maxHashesPerTransaction");
  }
  /** Unused, unexpired challenges one signer may hold per purpose; protovalidate keeps it at 1 to 100, so 0 only means a record from before the field: `inkan init`'s default. */
  get maxOpenChallengesPerSigner(): number {
    return this.uint("maxOpenChallengesPerSigner") || defaultMaxOpenChallengesPerSigner;
  }
  get maxHashesPerChunk(): number {
    return this.uint("maxHashesPerChunk");
  }
  /** sam.proto Limits.max_authorize_attempts: failed Authorize calls a transaction survives. */
  get maxAuthorizeAttempts(): number {
    return this.uint("maxAuthorizeAttempts");
  }
  get activationCodeLifetimeMs(): number {
    return this.ms("activationCodeLifetime");
  }
  get activationCodeMaxAttempts(): number {
    return this.uint("activationCodeMaxAttempts");
  }
  get pendingApprovalLifetimeMs(): number {
    return this.ms("pendingApprovalLifetime");
  }
  /** The scrypt parameters of new PIN hashes (SecurityPolicy.pin_hash_cost); unset: the default, N = 2^12, r = 8, p = 1. */
  get pinHashCost(): PinHashCost {
    return pinHashCostOf(this.policy);
  }
  /** How long after its certificate's notAfter a credential still signs; unset (the default): 0, none. */
  get certificateExpiryGraceMs(): number {
    return this.policy["certificateExpiryGrace"] === undefined ? 0 : this.ms("certificateExpiryGrace");
  }

  private names(field: string, prefix: string): string[] {
    const v = this.policy[field];
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string" && x.startsWith(prefix)).map((x) => x.slice(prefix.length)) : [];
  }

  /** Key algorithms GenerateKey and ImportKey accept, as the crypto port names them ("EC_P256", "ED25519"...). */
  get allowedKeyAlgorithms(): string[] {
    return this.names("allowedKeyAlgorithms", "KEY_ALGORITHM_");
  }
  /** Assurance levels a credential may have (1, 2, 3). */
  get allowedAssuranceLevels(): number[] {
    return this.names("allowedAssuranceLevels", "ASSURANCE_LEVEL_").map(Number).filter((n) => n >= 1 && n <= 3);
  }
  /** The level a credential gets when none is asked for; undefined when the policy names none. */
  get defaultAssuranceLevel(): number | undefined {
    const v = this.policy["defaultAssuranceLevel"];
    const n = typeof v === "string" && v.startsWith("ASSURANCE_LEVEL_") ? Number(v.slice("ASSURANCE_LEVEL_".length)) : NaN;
    return n >= 1 && n <= 3 ? n : undefined;
  }

  /**
   * The signers the SCA identified by `sca` may act for (SecurityPolicy.sca_scopes): the union of
   * every scope that names its key or its issuing CA. No scope names it: no signer (deny by default).
   */
  scaScope(sca: ScaScopeKey | undefined): SignerScope {
    const list = this.policy["scaScopes"];
    const groups = new Set<string>();
    const scopes: string[] = [];
    let all = false;
    for (const item of Array.isArray(list) ? list : []) {
      const scope = asObject(item);
      if (!scope || !sca) continue;
      const name = typeof scope["name"] === "string" ? scope["name"] : "";
      const spki = bytesHex(scope["scaSpkiSha256"]);
      const ca = bytesHex(scope["scaCaCertificateSha256"]);
      const names = (spki !== "" && spki === sca.spkiSha256) || (ca !== "" && ca === sca.issuerSha256);
      if (!names) continue;
      scopes.push(name);
      if (scope["allSigners"] === true) all = true;
      const listed = asObject(scope["signerGroups"])?.["groups"];
      for (const g of Array.isArray(listed) ? listed : []) if (typeof g === "string" && g !== "") groups.add(g);
      if (scope["ownGroup"] === true && name !== "") groups.add(name);
    }
    return all ? { all, scopes } : { all, groups, scopes };
  }

  /** Whether `operation` needs a second privileged user's approval: anything but SINGLE_CONTROL does (fail safe). */
  requiresDualControl(operation: DualControlSwitch): boolean {
    const switches = this.policy.dualControl;
    const value = typeof switches === "object" && switches !== null && !Array.isArray(switches) ? (switches as PolicyJson)[operation] : undefined;
    return value !== "APPROVAL_REQUIREMENT_SINGLE_CONTROL";
  }

  /** The policy as the audit log records it (old and new values of a change). */
  auditSnapshot(): PolicySnapshot {
    return snapshotOf(this.policy);
  }
}

/** The settings of `policy` for the audit log: trusted CA certificates by SHA-256 fingerprint. */
export function snapshotOf(policy: PolicyJson): PolicySnapshot {
  const out: Record<string, PolicySnapshotValue> = {};
  for (const [k, v] of Object.entries(policy)) {
    if ((certificateFields as readonly string[]).includes(k) && Array.isArray(v)) {
      out[k] = v.map((b) => createHash("sha256").update(Buffer.from(String(b), "base64")).digest("hex"));
    } else if (k === "scaScopes" && Array.isArray(v)) {
      out[k] = v.map((scope) => scopeText(asObject(scope) ?? {}));
    } else if (Array.isArray(v)) {
      out[k] = v.map((x) => (typeof x === "number" ? x : String(x)));
    } else if (typeof v === "object" && v !== null) {
      out[k] = snapshotOf(v as PolicyJson);
    } else if (v !== null) {
      out[k] = v as string | number | boolean;
    }
  }
  return out;
}

/** One SCA scope as the audit log records it: "name sca-ca=<hex> signers=all" (or spki=, groups=a|b, own-group). */
function scopeText(scope: PolicyJson): string {
  const sca = scope["scaSpkiSha256"] !== undefined ? `spki=${bytesHex(scope["scaSpkiSha256"])}` : `sca-ca=${bytesHex(scope["scaCaCertificateSha256"])}`;
  const groups = asObject(scope["signerGroups"])?.["groups"];
  const signers = scope["allSigners"] === true ? "all" : scope["ownGroup"] === true ? "own-group" : `groups=${(Array.isArray(groups) ? groups : []).join("|")}`;
  return `${String(scope["name"] ?? "")} ${sca} signers=${signers}`;
}

/**
 * `inkan init`'s max_open_challenges_per_signer, also for a stored policy from before the field.
 * Generous: it bounds what one signer id can pile up in the store, never a signer's own use (the
 * concurrent-guessing attacks send tens of challenges for one signer at once).
 */
export const defaultMaxOpenChallengesPerSigner = 100;

/** The CA certificates the first policy trusts (DER), from the deployment's PKI. */
export interface DefaultPolicyInput {
  /** SCA CAs whose SCAs act for every signer (one scope each). */
  trustedScaCaCertificates: Uint8Array[];
  trustedAdminCaCertificates: Uint8Array[];
  trustedIssuingCaCertificates?: Uint8Array[];
  /** Issue 18 item 7: the CAs of the signer front end (SignerService's only caller kind). */
  trustedFrontEndCaCertificates?: Uint8Array[];
  /**
   * Issue 19: further SCA CAs, trusted too, whose SCAs act only for the signers of the named
   * groups (one scope each, named `scope`): `inkan init`'s second development SCA CA.
   */
  groupScopedScaCas?: { certificate: Uint8Array; scope: string; groups: string[] }[];
}

/**
 * The policy `inkan init` writes as version 1: secure defaults that satisfy every protovalidate
 * rule of SecurityPolicy. Level 2 only (level 1 and 3 are a security officer's decision), two
 * factors, dual control for every switch, lockout after 5 failures, SAD tokens for 5 minutes,
 * transactions of 5 minutes by default and 1 hour at most, 100,000 hashes per transaction, and
 * one SCA scope per given SCA CA that lets its SCAs act for every signer.
 */
export function defaultSecurityPolicy(input: DefaultPolicyInput): PolicyJson {
  const b64 = (list: Uint8Array[] | undefined) => (list ?? []).map((d) => Buffer.from(d).toString("base64"));
  const issuing = b64(input.trustedIssuingCaCertificates);
  const frontEnd = b64(input.trustedFrontEndCaCertificates);
  const sha = (d: Uint8Array) => createHash("sha256").update(d).digest("base64");
  const grouped = input.groupScopedScaCas ?? [];
  // Issue 19: the deployment's own SCA CA acts for every signer; a CA added later gets no scope.
  const scopes: PolicyJson[] = [
    ...input.trustedScaCaCertificates.map((d, i) => ({
      name: i === 0 ? developmentScopeName : `${developmentScopeName}-${i + 1}`,
      scaCaCertificateSha256: sha(d),
      allSigners: true,
    })),
    ...grouped.map((g) => ({ name: g.scope, scaCaCertificateSha256: sha(g.certificate), signerGroups: { groups: g.groups } })),
  ];
  return {
    defaultAssuranceLevel: "ASSURANCE_LEVEL_2",
    allowedAssuranceLevels: ["ASSURANCE_LEVEL_2"],
    allowedKeyAlgorithms: ["KEY_ALGORITHM_EC_P256", "KEY_ALGORITHM_EC_P384", "KEY_ALGORITHM_EC_P521", "KEY_ALGORITHM_RSA_2048", "KEY_ALGORITHM_RSA_3072", "KEY_ALGORITHM_RSA_4096"],
    allowedHashAlgorithms: ["HASH_ALGORITHM_SHA256", "HASH_ALGORITHM_SHA384", "HASH_ALGORITHM_SHA512"],
    allowedSignatureAlgorithms: ["SIGNATURE_ALGORITHM_ECDSA", "SIGNATURE_ALGORITHM_RSA_PKCS1_V1_5", "SIGNATURE_ALGORITHM_RSA_PSS"],
    defaultTransactionLifetime: "300s",
    maxTransactionLifetime: "3600s",
    sadTokenLifetime: "300s",
    maxHashesPerTransaction: 100_000,
    lockoutThreshold: 5,
    activationCodeLifetime: "259200s",
    activationCodeMaxAttempts: 5,
    pendingApprovalLifetime: "86400s",
    trustedScaCaCertificates: b64([...input.trustedScaCaCertificates, ...grouped.map((g) => g.certificate)]),
    trustedAdminCaCertificates: b64(input.trustedAdminCaCertificates),
    ...(issuing.length > 0 ? { trustedIssuingCaCertificates: issuing } : {}),
    ...(frontEnd.length > 0 ? { trustedFrontEndCaCertificates: frontEnd } : {}),
    dualControl: {
      credentialDestruction: "APPROVAL_REQUIREMENT_DUAL_CONTROL",
      securityOfficerChanges: "APPROVAL_REQUIREMENT_DUAL_CONTROL",
      securityPolicyChanges: "APPROVAL_REQUIREMENT_DUAL_CONTROL",
      signerRebinding: "APPROVAL_REQUIREMENT_DUAL_CONTROL", // T-2.2.2.1: no lone operator re-binds a signer who holds a key
    },
    auditCheckpointEveryRecords: 1000,
    auditCheckpointInterval: "60s",
    maxHashesPerChunk: 10_000,
    maxAuthorizeAttempts: 3,
    uploadTimeout: "600s",
    maxSadLifetime: "300s",
    maxClockSkew: "60s",
    allowedDeviceKeyAlgorithms: ["JWS_ALGORITHM_ES256", "JWS_ALGORITHM_ES384", "JWS_ALGORITHM_ES512", "JWS_ALGORITHM_EDDSA"],
    enabledAuthenticationMethods: ["AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN", "AUTHENTICATION_METHOD_PIN_AND_TOTP"],
    pinMinLength: 6,
    pinMaxLength: 64,
    pinHashCost: { log2N: 12, r: 8, p: 1 }, // issue 20: the pepper and the lockout protect the PIN; see pin-hash.ts
    challengeLifetime: "300s",
    maxOpenChallengesPerSigner: defaultMaxOpenChallengesPerSigner,
    // Issue 19: the deployment's own SCA CA acts for every signer (a CA added later gets no scope).
    ...(scopes.length > 0 ? { scaScopes: scopes } : {}),
  };
}

/** A policy change: the version replaced (undefined when it failed its check) and the new one. */
export interface PolicyChange {
  previous: PolicyVersion | undefined;
  current: PolicyVersion;
}

/** Told of every integrity failure of the policy and every version written through update(). */
export interface PolicyListener {
  /** `storedVersion`: the stored latest version number (unverified; undefined when none or unreadable). */
  violated?(err: IntegrityViolationError, storedVersion: number | undefined): void;
  updated?(change: PolicyChange): void;
}

export interface SecurityPoliciesOptions {
  records: VerifiedRecords;
}

/** The last version a node trusted: read with a valid seal, or written by it. */
export interface TrustedVersion {
  version: number;
  updatedAt: Date;
}

/**
 * The security policy (R-3.2.2.3): one append-only stream of sealed versions, read with its seal
 * verified every time and changed only by update(), which the admin service calls for a security
 * officer (under dual control by default). A version that fails its check is never used.
 */
export class SecurityPolicies {
  private readonly listeners = new Set<PolicyListener>();
  private trusted: TrustedVersion | undefined;
  private verified: PolicyVersion | undefined;
  /** Counts update()s, so that a read that raced with one does not report a stale failure. */
  private updates = 0;

  constructor(private readonly o: SecurityPoliciesOptions) {}

  /** Registers a listener; returns the function that removes it. */
  subscribe(listener: PolicyListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The last version this node read with a valid seal, or wrote. */
  get lastTrusted(): TrustedVersion | undefined {
    return this.trusted;
  }

  /** The policy version last read with a valid seal (or written) by this node; undefined before the first. */
  get lastVerified(): PolicyVersion | undefined {
    return this.verified;
  }

  /**
   * The policy in force. Throws IntegrityViolationError when its seal does not verify, when no
   * policy is stored, or when the latest version is older than one this node has already trusted
   * and was not written after it (rows deleted to roll the policy back): all three are changes
   * made outside the admin service.
   */
  async current(): Promise<PolicyVersion> {
    let version: PolicyVersion;
    const updatesAtStart = this.updates;
    try {
      const record = await this.o.records.latestPolicyVersion(securityPolicyId);
      // R-3.2.2.3: a deleted or rolled-back policy is tampering too, not a reason to fall back to defaults.
      if (!record) throw new IntegrityViolationError("policy", securityPolicyId);
      // Issue 20: the same seal is the same sealed fields (the seal verified on this read), so the
      // version already parsed is reused instead of parsing the body (a few KB) on every call.
      const known = this.verified;
      version = known && Buffer.compare(known.record.seal, record.seal) === 0 ? known : new PolicyVersion(record);
      const t = this.trusted;
      if (t && version.version < t.version && version.updatedAt <= t.updatedAt) throw new IntegrityViolationError("policy", securityPolicyId);
    } catch (err) {
      // A failure seen by a read that an update() overtook describes a version already replaced:
      // reporting it would close the gate behind the restore for good.
      if (err instanceof IntegrityViolationError && updatesAtStart === this.updates) {
        const stored = await this.o.records.latestPolicyVersionNumber(securityPolicyId).catch(() => undefined);
        for (const l of this.listeners) l.violated?.(err, stored || undefined);
      }
      throw err;
    }
    if (version.version >= (this.trusted?.version ?? 0)) {
      // A read that an update() overtook must not move the trusted version back.
      this.trusted = { version: version.version, updatedAt: version.updatedAt };
      this.verified = version;
    }
    return version;
  }

  /**
   * Replaces the whole policy if it is still at `expectedVersion` (compare-and-set) and seals it
   * as the next version. `expectedVersion` 0 restores a policy that failed its check (its version
   * cannot be trusted); it is refused while the policy is intact. The caller (the transport) has
   * validated `policyJson` against SecurityPolicy's rules and applied dual control; `by` and
   * `approvedBy` are the two security officers. Returns the old and new versions for the audit.
   */
  async update(input: { policyJson: PolicyJson; expectedVersion: number; by: string; approvedBy?: string | undefined; now: Date }): Promise<PolicyChange> {
    checkCaCertificates(input.policyJson);
    pinHashCostOf(input.policyJson); // issue 20: no policy below the scrypt floor
    let previous: PolicyVersion | undefined;
    let next: number;
    try {
      previous = await this.current();
      next = previous.version + 1;
    } catch (err) {
      if (!(err instanceof IntegrityViolationError)) throw err;
      if (input.expectedVersion !== 0) {
        throw new InkanError("VERSION_CONFLICT", "the stored policy failed its integrity check; send expected_version 0 to restore it", { field: "expected_version" });
      }
      next = (await this.o.records.latestPolicyVersionNumber(securityPolicyId)) + 1;
    }
    if (previous && input.expectedVersion === 0) {
      throw new InkanError("VERSION_CONFLICT", "expected_version 0 only restores a policy that failed its integrity check", { field: "expected_version" });
    }
    if (previous && previous.version !== input.expectedVersion) {
      throw new InkanError("VERSION_CONFLICT", "the policy changed meanwhile; read it again", { field: "expected_version" });
    }
    const body: PolicyBody = { policy: input.policyJson, updatedAt: input.now.toISOString(), updatedBy: input.by, approvedBy: input.approvedBy ?? "" };
    // Append-only: the store accepts version n + 1 only while n is the latest, so of two writers one wins.
    const record = await this.o.records.appendPolicyVersion({ kind: "policy", id: securityPolicyId, version: next, body: canonicalize(body)! });
    if (!record) throw new InkanError("VERSION_CONFLICT", "the policy changed meanwhile; read it again", { field: "expected_version" });
    const change: PolicyChange = { previous, current: new PolicyVersion(record) };
    this.updates++;
    this.trusted = { version: change.current.version, updatedAt: change.current.updatedAt };
    this.verified = change.current;
    for (const l of this.listeners) l.updated?.(change);
    return change;
  }

  /**
   * Writes version 1 with {@link defaultSecurityPolicy} unless a policy is stored already (in
   * whatever state: a stored policy is never overwritten here). Used by `inkan init`; idempotent.
   * Returns the version written, or undefined when there was one.
   */
  async ensureDefault(input: DefaultPolicyInput & { now: Date }): Promise<PolicyVersion | undefined> {
    if ((await this.o.records.latestPolicyVersionNumber(securityPolicyId)) > 0) return undefined;
    const body: PolicyBody = { policy: defaultSecurityPolicy(input), updatedAt: input.now.toISOString(), updatedBy: "", approvedBy: "" };
    const record = await this.o.records.appendPolicyVersion({ kind: "policy", id: securityPolicyId, version: 1, body: canonicalize(body)! });
    return record && new PolicyVersion(record);
  }
}

/** scrypt parameters of a PIN hash (pin-hash.ts); N is a power of two. */
export interface PinHashCost {
  N: number;
  r: number;
  p: number;
}
/** Issue 20: the default cost (about 4 MiB, a few ms per check) and the floor below which a policy is refused (N = 2^10). */
export const defaultPinHashCost: PinHashCost = { N: 2 ** 12, r: 8, p: 1 };
export const minPinHashLog2N = 10;

/**
 * The policy's PIN hash cost; INVALID_REQUEST when it is out of bounds (the transport's
 * protovalidate rules say the same: the domain refuses too, so no path stores a weaker cost).
 */
export function pinHashCostOf(policy: PolicyJson): PinHashCost {
  const cost = asObject(policy["pinHashCost"]);
  if (policy["pinHashCost"] === undefined) return { ...defaultPinHashCost };
  const field = "policy.pin_hash_cost";
  const log2N = cost?.["log2N"] ?? 0;
  const r = cost?.["r"] ?? 0;
  const p = cost?.["p"] ?? 0;
  const within = (v: JsonValue, min: number, max: number) => typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
  if (!within(log2N, minPinHashLog2N, 16)) throw new InkanError("INVALID_REQUEST", `log2_n must be ${minPinHashLog2N} to 16 (N = 2^10 is the floor)`, { field: `${field}.log2_n` });
  if (!within(r, 1, 16)) throw new InkanError("INVALID_REQUEST", "r must be 1 to 16", { field: `${field}.r` });
  if (!within(p, 1, 4)) throw new InkanError("INVALID_REQUEST", "p must be 1 to 4", { field: `${field}.p` });
  return { N: 2 ** (log2N as number), r: r as number, p: p as number };
}

/** Every trusted CA entry must be a DER X.509 certificate of a CA (INVALID_REQUEST names the first that is not). */
function checkCaCertificates(policy: PolicyJson): void {
  for (const field of certificateFields) {
    const list = policy[field];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new InkanError("INVALID_REQUEST", "not a list of certificates", { field: certificateFieldNames[field] });
    list.forEach((item, i) => {
      const path = `${certificateFieldNames[field]}[${i}]`;
      const der = Buffer.from(String(item), "base64");
      let cert: X509Certificate;
      try {
        if (der[0] !== 0x30) throw new Error("not DER"); // X509Certificate would also take PEM
        cert = new X509Certificate(der);
      } catch (err) {
        throw new InkanError("INVALID_REQUEST", "not a DER X.509 certificate", { field: path, cause: err });
      }
      if (!cert.ca) throw new InkanError("INVALID_REQUEST", "not a CA certificate", { field: path });
    });
  }
}

/** Whether SAP calls are served: open, or closed since a policy integrity failure. */
export type GateState = { open: true } | { open: false; since: Date; error: IntegrityViolationError };

export interface PolicyIntegrityGateOptions {
  policies: SecurityPolicies;
  /** How often check() runs once start() is called (the node sees others' changes this often). */
  intervalMs: number;
  clock?: () => Date;
  /** The gate closed (R-3.2.2.3: signing stops; the audit log records it). */
  onClosed?: (error: IntegrityViolationError) => void;
  /** The gate opened again: a valid version was written through the admin service. */
  onOpened?: (version: PolicyVersion) => void;
  /** A check could not be made (store or crypto-module failure); the state is unchanged. */
  onCheckFailed?: (error: unknown) => void;
}

interface Closed {
  since: Date;
  error: IntegrityViolationError;
  /** The last version trusted before the failure, if any. */
  before: TrustedVersion | undefined;
  /** The stored latest version number when the failure was seen (unverified). */
  storedVersion: number | undefined;
}

/**
 * Checks the policy's seal at start and every `intervalMs` (R-3.2.2.3), and on every read through
 * SecurityPolicies. A failure CLOSES the gate: SCA-facing calls are refused with
 * INTEGRITY_VIOLATION while the admin services keep working, so that security officers can
 * restore the policy. It stays closed until a valid version is written through the admin service:
 * update() on this node, or, written by another node, a valid latest version sealed after the
 * last one trusted here (or, if none was, numbered above the failed one). Undoing the edit in the
 * database, or deleting the bad row, does not reopen it.
 */
export class PolicyIntegrityGate {
  private closed: Closed | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<boolean> | undefined;
  private readonly clock: () => Date;

  constructor(private readonly o: PolicyIntegrityGateOptions) {
    this.clock = o.clock ?? (() => new Date());
    o.policies.subscribe({
      violated: (err, storedVersion) => this.close(err, storedVersion),
      updated: (change) => this.open(change.current),
    });
  }

  get state(): GateState {
    return this.closed ? { open: false, since: this.closed.since, error: this.closed.error } : { open: true };
  }

  get isOpen(): boolean {
    return this.closed === undefined;
  }

  /** Throws INTEGRITY_VIOLATION, saying why, while the gate is closed. */
  assertOpen(): void {
    if (this.closed) throw new InkanError("INTEGRITY_VIOLATION", policyGateClosedMessage, { cause: this.closed.error });
  }

  /** Checks the stored policy now; resolves to whether the gate is open afterwards. */
  check(): Promise<boolean> {
    return (this.checking ??= this.runCheck().finally(() => (this.checking = undefined)));
  }

  private async runCheck(): Promise<boolean> {
    try {
      const current = await this.o.policies.current(); // a failure closes the gate through the listener
      const c = this.closed;
      if (c && (c.before ? current.updatedAt > c.before.updatedAt : c.storedVersion !== undefined && current.version > c.storedVersion)) this.open(current);
    } catch (err) {
      if (!(err instanceof IntegrityViolationError)) this.o.onCheckFailed?.(err);
    }
    return this.isOpen;
  }

  /** Runs check() every intervalMs until stop(); the timer does not keep the process alive. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.o.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private close(error: IntegrityViolationError, storedVersion: number | undefined): void {
    if (this.closed) return;
    // The versions trusted before the failure: captured now, before a later read moves them.
    this.closed = { since: this.clock(), error, before: this.o.policies.lastTrusted, storedVersion };
    this.o.onClosed?.(error);
  }

  private open(version: PolicyVersion): void {
    if (!this.closed) return;
    this.closed = undefined;
    this.o.onOpened?.(version);
  }
}

/**
 * Issue 20: the security policy read at most once in one call: the first `current()` reads it (where
 * the call first needs it, so the order of refusals is unchanged), every later one gets that same
 * version, or the same refusal (R-3.2.2.3: a policy that fails its check fails every step).
 */
export function policyOncePerCall(policies: Pick<SecurityPolicies, "current">): Pick<SecurityPolicies, "current"> {
  let read: ReturnType<SecurityPolicies["current"]> | undefined;
  return { current: () => (read ??= policies.current()) };
}
