import { createHash, randomBytes } from "node:crypto";
import type { GatewayStore } from "../store/gateway-store.js";

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
  constructor(private readonly db: GatewayStore, private readonly clock: () => number = Date.now) {}

  async open(session: PortalSession): Promise<{ token: string; expiresAt: number }> {
    const token = randomBytes(32).toString("base64url");
    const expiresAt = this.clock() + sessionLifetimeMs;
    await this.db.run("DELETE FROM portal_sessions WHERE expires_at <= ?", [this.clock()]);
    await this.db.run("INSERT INTO portal_sessions (token_hash, signer_id, device_key_id, expires_at) VALUES (?, ?, ?, ?)", [hashOf(token), session.signerId, session.deviceKeyId, expiresAt]);
    return { token, expiresAt };
  }

  /** The session of an `Authorization: Bearer` header; undefined when absent, unknown or expired. */
  async fromHeader(header: string | undefined): Promise<PortalSession | undefined> {
    const m = /^Bearer ([A-Za-z0-9_-]{43})$/.exec(header ?? "");
    if (!m) return undefined;
    const row = await this.db.get<{ signer_id: string; device_key_id: string }>("SELECT signer_id, device_key_id FROM portal_sessions WHERE token_hash = ? AND expires_at > ?", [hashOf(m[1]!), this.clock()]);
    return row ? { signerId: row.signer_id, deviceKeyId: row.device_key_id } : undefined;
  }

  async close(header: string | undefined): Promise<void> {
    const m = /^Bearer ([A-Za-z0-9_-]{43})$/.exec(header ?? "");
    if (m) await this.db.run("DELETE FROM portal_sessions WHERE token_hash = ?", [hashOf(m[1]!)]);
  }
}
