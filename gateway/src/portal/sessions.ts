import { createHash, randomBytes } from "node:crypto";
import type Database from "better-sqlite3";

/** How long a portal session lasts after the SAM verified the device key. */
export const sessionLifetimeMs = 15 * 60 * 1000;

export interface PortalSession {
  signerId: string;
  deviceKeyId: string;
}

const hashOf = (token: string) => createHash("sha256").update(token).digest("base64url");

/**
 * Portal sessions: a bearer token the page holds in memory, opened only after the SAM verified a
 * JWS by a device key registered to the signer (SignerService.AuthenticateDevice). Only the
 * token's hash is stored.
 */
export class PortalSessions {
  constructor(private readonly db: Database.Database, private readonly clock: () => number = Date.now) {}

  open(session: PortalSession): { token: string; expiresAt: number } {
    const token = randomBytes(32).toString("base64url");
    const expiresAt = this.clock() + sessionLifetimeMs;
    this.db.prepare("DELETE FROM portal_sessions WHERE expires_at <= ?").run(this.clock());
    this.db.prepare("INSERT INTO portal_sessions (token_hash, signer_id, device_key_id, expires_at) VALUES (?, ?, ?, ?)").run(hashOf(token), session.signerId, session.deviceKeyId, expiresAt);
    return { token, expiresAt };
  }

  /** The session of an `Authorization: Bearer` header; undefined when absent, unknown or expired. */
  fromHeader(header: string | undefined): PortalSession | undefined {
    const m = /^Bearer ([A-Za-z0-9_-]{43})$/.exec(header ?? "");
    if (!m) return undefined;
    const row = this.db.prepare("SELECT signer_id, device_key_id FROM portal_sessions WHERE token_hash = ? AND expires_at > ?").get(hashOf(m[1]!), this.clock()) as
      | { signer_id: string; device_key_id: string }
      | undefined;
    return row ? { signerId: row.signer_id, deviceKeyId: row.device_key_id } : undefined;
  }

  close(header: string | undefined): void {
    const m = /^Bearer ([A-Za-z0-9_-]{43})$/.exec(header ?? "");
    if (m) this.db.prepare("DELETE FROM portal_sessions WHERE token_hash = ?").run(hashOf(m[1]!));
  }
}
