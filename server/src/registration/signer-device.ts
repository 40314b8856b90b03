/**
 * What a signer's device may ask the SAM about itself, through the signer front end (issue 15):
 * AuthenticateDevice (the device holds a key registered to the signer: the portal shows it the
 * signer's requests only then) and ListAuthorizations (the signer's recent R.SAD verdicts).
 *
 * Both are device-key JWSs over a one-time challenge, checked exactly like RequestSuspension
 * (signer-request.ts): the challenge works once and only for this signer and purpose, the key is
 * looked up among this signer's registered device keys only, the claims are exact, the jti once.
 * Store binding: purpose "signer-request", subjects "device-auth <signer>" and
 * "authorization-history <signer>" (activation.ts challengeBinding). Every outcome is audited as a
 * DEVICE_KEY factor check, like the suspension request's.
 */
import { durationMs, type PolicyVersion, type SecurityPolicies } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import { factorCheckFailed, factorVerified } from "../audit/events.js";
import { InkanError, type ReasonCode } from "../errors.js";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import type { SamEncryptionKeys } from "../keys/sam-encryption-keys.js";
import type { AuditRecords, CredentialRecord, OneTimeObjects } from "../store/port.js";
import { challengeBinding } from "./activation.js";
import { verifySignerRequest } from "./signer-request.js";

export const deviceAuthenticationTyp = "inkan-device-authentication+jwt";
export const authorizationHistoryTyp = "inkan-authorization-history+jwt";

/** How many of each node's newest audit records ListAuthorizations reads (signer.proto). */
export const authorizationHistoryWindow = 20_000;
const historyPage = 1_000;

export interface SignerDeviceOptions {
  records: VerifiedRecords;
  oneTime: Pick<OneTimeObjects, "consumeChallenge" | "useJti">;
  samKeys: Pick<SamEncryptionKeys, "samId">;
  policies: Pick<SecurityPolicies, "current">;
  audit: AuditLog;
  auditRecords: Pick<AuditRecords, "listAuditNodes" | "latestAuditRecord" | "readAuditRecordsByEvent">;
}

export interface AuthenticatedDevice {
  signerId: string;
  deviceKeyId: string;
  authenticatedAt: Date;
  credentials: { credentialId: string; status: CredentialRecord["status"] }[];
}

export interface AuthorizationVerdict {
  time: Date;
  transactionId: string;
  credentialId: string;
  sca: string;
  authorized: boolean;
  refusalReason: string;
}

const claims = ["sub", "aud", "chal", "iat", "exp", "jti"];
const audited = new Set<ReasonCode>(["NONCE_REPLAYED", "AUTHENTICATION_FAILED", "SIGNER_INACTIVE"]);
const refused = (cause?: unknown) => new InkanError("AUTHENTICATION_FAILED", "the request could not be verified", { cause });
const replayed = () => new InkanError("NONCE_REPLAYED", "the challenge is unknown, expired or already used");
const req = (a: { requestId?: string | undefined }) => (a.requestId ? { requestId: a.requestId } : {});

export class SignerDevice {
  constructor(private readonly o: SignerDeviceOptions) {}

  /** AuthenticateDevice: the signer's id, the device key that signed, and the signer's credentials. */
  async authenticate(input: { signerId: string; deviceProof: string; requestId?: string | undefined; now: Date }): Promise<AuthenticatedDevice> {
    const kid = await this.checked(input, "DEVICE_AUTHENTICATION", deviceAuthenticationTyp, input.deviceProof);
    const page = await this.o.records.list({ kind: "credential", where: { signerId: input.signerId }, limit: 100 });
    return {
      signerId: input.signerId,
      deviceKeyId: kid,
      authenticatedAt: input.now,
      credentials: page.items.filter((c) => c.status !== "DESTROYED").map((c) => ({ credentialId: c.id, status: c.status })),
    };
  }

  /** ListAuthorizations: the signer's newest "sad.verified" audit records, newest first. */
  async listAuthorizations(input: { signerId: string; historyRequest: string; limit: number; requestId?: string | undefined; now: Date }): Promise<AuthorizationVerdict[]> {
    await this.checked(input, "AUTHORIZATION_HISTORY", authorizationHistoryTyp, input.historyRequest);
    const limit = input.limit === 0 ? 20 : input.limit;
    const found: AuthorizationVerdict[] = [];
    for (const nodeId of await this.o.auditRecords.listAuditNodes()) {
      const latest = await this.o.auditRecords.latestAuditRecord(nodeId);
      if (!latest) continue;
      const nodeFound: AuthorizationVerdict[] = [];
      // Bounded: at most the window's records of this node, read forward page by page; keep the newest `limit`.
      for (let from = Math.max(1, latest.sequence - authorizationHistoryWindow + 1); from <= latest.sequence; ) {
        const records = await this.o.auditRecords.readAuditRecordsByEvent({ nodeId, event: "sad.verified", fromSequence: from, limit: historyPage });
        for (const r of records) {
          const v = verdictOf(r.body, r.time, input.signerId);
          if (v) nodeFound.push(v);
        }
        if (nodeFound.length > limit) nodeFound.splice(0, nodeFound.length - limit);
        if (records.length < historyPage) break;
        from = records[records.length - 1]!.sequence + 1;
      }
      found.push(...nodeFound);
    }
    return found.sort((a, b) => b.time.getTime() - a.time.getTime()).slice(0, limit);
  }

  /** The shared checks (signer-request.ts), audited; returns the verified key id. */
  private async checked(input: { signerId: string; requestId?: string | undefined; now: Date }, purpose: "DEVICE_AUTHENTICATION" | "AUTHORIZATION_HISTORY", typ: string, jws: string): Promise<string> {
    const { signerId, now } = input;
    try {
      const policy = await this.o.policies.current();
      // Issue 15: a device sees a signer's data only with a JWS by a key registered to that very signer, over a one-time challenge (T-2.3.1.1, T-2.3.1.2).
      await verifySignerRequest(this.o, {
        jws,
        signerId,
        binding: challengeBinding(purpose, signerId),
        typ,
        claims,
        expect: { sub: signerId, aud: await this.o.samKeys.samId() },
        now,
        skewMs: msOf(policy, "maxClockSkew", 60_000),
        maxLifetimeMs: msOf(policy, "maxSadLifetime", 300_000),
        refused,
        replayed,
      });
      const signer = await this.o.records.get("signer", signerId);
      if (!signer || signer.status !== "ACTIVE") throw new InkanError("SIGNER_INACTIVE", "the signer is not active");
      const kid = (JSON.parse(Buffer.from(jws.split(".")[0]!, "base64url").toString("utf8")) as { kid: string }).kid;
      await this.o.audit.record(factorVerified({ actor: { kind: "signer", signerId }, signerId, factor: "DEVICE_KEY", ...req(input) }));
      return kid;
    } catch (err) {
      if (err instanceof InkanError && audited.has(err.code)) {
        await this.o.audit.record(factorCheckFailed({ actor: { kind: "signer", signerId }, signerId, factor: "DEVICE_KEY", failedAttempts: 0, reason: err.code, ...req(input) }));
      }
      throw err;
    }
  }
}

function verdictOf(body: string, time: Date, signerId: string): AuthorizationVerdict | undefined {
  let e: { signerId?: string; transactionId?: string; credentialId?: string; actor?: { id?: string }; outcome?: string; reason?: string };
  try {
    e = JSON.parse(body) as typeof e;
  } catch {
    return undefined;
  }
  if (e.signerId !== signerId) return undefined;
  const authorized = e.outcome === "AUDIT_OUTCOME_SUCCESS";
  return { time, transactionId: e.transactionId ?? "", credentialId: e.credentialId ?? "", sca: e.actor?.id ?? "", authorized, refusalReason: authorized ? "" : (e.reason ?? "") };
}

function msOf(policy: PolicyVersion, field: string, fallback: number): number {
  const v = policy.policy[field];
  return v === undefined ? fallback : durationMs(v, field);
}
