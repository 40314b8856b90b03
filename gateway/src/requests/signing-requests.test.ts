import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openGatewayDatabase } from "../store/gateway-store.js";
import { SigningRequests } from "./signing-requests.js";

// Unit tests of the request state machine on a real SQLite file, with a clock the test moves.
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "inkan-gw-requests-"));
  dirs.push(dir);
  const file = join(dir, "gateway.sqlite");
  let now = 1_800_000_000_000;
  const clock = () => now;
  const open = () => new SigningRequests(openGatewayDatabase(file), clock);
  const requests = open();
  const r = requests.create({ signerId: "sgn-1", credentialId: "crd-1", sca: "CN=sca", scaFingerprint: "AA", transactionId: "txn-1", challengeJson: "{}", expiresAt: now + 300_000 });
  return { requests, r, open, advance: (ms: number) => (now += ms) };
}

describe("signing requests (issue 15)", () => {
  it("an R.SAD is handed to the SCA once, and only from memory: a restart puts the request back to pending", () => {
    const { requests, r, open } = setup();
    expect(requests.submit(r.id, "r.sad.jwe.x.y")).toBe(true);
    expect(requests.submit(r.id, "again")).toBe(false);
    expect(requests.scaUpdate(requests.get(r.id)!)).toEqual({ state: "approved", rSad: "r.sad.jwe.x.y" });
    const restarted = open();
    const after = restarted.get(r.id)!;
    expect(after.state).toBe("pending");
    expect(restarted.scaUpdate(after)).toEqual({ state: "pending" });
    expect(restarted.openFor("sgn-1").map((x) => x.id)).toEqual([r.id]);
  });

  it("a pending request survives a restart until its transaction expires, then is no longer shown nor answerable", () => {
    const { r, open, advance } = setup();
    const restarted = open();
    expect(restarted.openFor("sgn-1")).toHaveLength(1);
    advance(300_001);
    expect(restarted.openFor("sgn-1")).toEqual([]);
    expect(restarted.submit(r.id, "late")).toBe(false);
    expect(restarted.scaUpdate(restarted.get(r.id)!)).toEqual({ state: "expired" });
    advance(86_400_000);
    expect(restarted.purge()).toBe(1);
  });

  it("a wrong PIN sends it back to pending with the reason; another refusal ends it; the first progress means authorized", () => {
    const { requests, r } = setup();
    requests.submit(r.id, "one");
    expect(requests.report(r.id, { authorized: false, reason: "REASON_AUTHENTICATION_FAILED", retry: true })).toBe(true);
    expect(requests.get(r.id)).toMatchObject({ state: "pending", refusal: "REASON_AUTHENTICATION_FAILED" });
    requests.submit(r.id, "two");
    expect(requests.get(r.id)).toMatchObject({ state: "submitted", refusal: null });
    expect(requests.progress(r.id, 10)).toBe(true);
    expect(requests.get(r.id)).toMatchObject({ state: "authorized", signed: 10 });
    expect(requests.progress(r.id, 5)).toBe(false); // out of order: never goes back
    expect(requests.decline(r.id)).toBe(false);

    const { requests: other, r: r2 } = setup();
    other.submit(r2.id, "x");
    other.report(r2.id, { authorized: false, reason: "REASON_CREDENTIAL_LOCKED", retry: false });
    expect(other.get(r2.id)).toMatchObject({ state: "failed", refusal: "REASON_CREDENTIAL_LOCKED" });
    expect(other.submit(r2.id, "y")).toBe(false);

    // The SAM allows max_authorize_attempts refused R.SADs per transaction: the last one ends the request.
    const { requests: third, r: r3 } = setup();
    for (let i = 1; i <= 3; i++) {
      third.submit(r3.id, `try ${i}`);
      third.report(r3.id, { authorized: false, reason: "REASON_AUTHENTICATION_FAILED", retry: true, maxRefusals: 3 });
      expect(third.get(r3.id)).toMatchObject({ state: i < 3 ? "pending" : "failed", refusals: i });
    }
  });

  it("a long poll wakes on a change and returns at its timeout otherwise", async () => {
    const { requests, r } = setup();
    const woken = requests.waitForChange(r.id, r.version, 60_000);
    requests.decline(r.id);
    expect((await woken)?.state).toBe("declined");
    const { requests: idle, r: r2 } = setup();
    expect((await idle.waitForChange(r2.id, r2.version, 10))?.state).toBe("pending");
  });
});
