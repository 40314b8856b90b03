import { createHash } from "node:crypto";
import type { RandomSource } from "../crypto/port.js";
import { InkanError } from "../errors.js";

/**
 * A new record id: `prefix`, the creation time (12 hex digits of milliseconds, so that the
 * store's id order is oldest first) and 96 bits from the crypto module's RNG (R-3.2.2.2), so ids
 * are never guessed nor reused.
 */
export async function newRecordId(prefix: string, random: RandomSource, now: Date): Promise<string> {
  const time = now.getTime().toString(16).padStart(12, "0");
  return `${prefix}-${time}-${Buffer.from(await random.randomBytes(12)).toString("base64url")}`;
}

/**
 * Page tokens of filtered listings: the last id returned and a digest of the filters, so that a
 * token is refused (INVALID_REQUEST, "page.page_token") with other filters. Opaque to clients.
 */
export function pageToken(after: string | undefined, filters: object): string {
  return after === undefined ? "" : Buffer.from(JSON.stringify({ a: after, f: filterDigest(filters) })).toString("base64url");
}

/** The cursor in `token`, undefined for the first page; INVALID_REQUEST when it is not one of ours for these filters. */
export function readPageToken(token: string | undefined, filters: object): string | undefined {
  if (!token) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { a?: unknown; f?: unknown };
    if (typeof parsed.a === "string" && parsed.a !== "" && parsed.f === filterDigest(filters)) return parsed.a;
  } catch {
    // fall through: not a token of this SAM
  }
  throw new InkanError("INVALID_REQUEST", "page_token is not one this SAM issued for these filters", { field: "page.page_token" });
}

function filterDigest(filters: object): string {
  const entries = Object.entries(filters).filter(([, v]) => v !== undefined && v !== "").sort(([a], [b]) => (a < b ? -1 : 1));
  return createHash("sha256").update(JSON.stringify(entries)).digest("base64url").slice(0, 22);
}
