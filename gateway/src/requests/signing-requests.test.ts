import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openGatewayDatabase, SqliteGatewayStore } from "../store/gateway-store.js";
import { SigningRequests } from "./signing-requests.js";

// Unit tests of the request state machine on a real SQLite file, with a clock the test moves.
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), "inkan-gw-requests-"));
  dirs.push(dir);
  const file = join(dir, "gateway.sqlite");
  let now = 1_800_000_000_000;
  const clock = () => now;
  const open = () => SigningRequests.open(new SqliteGatewayStore(openGatewayDatabase(file)), clock);
  const requests = await open();
  const r = await requests.create({ signerId: "sgn-1", credentialId: "crd-1", sca: "CN=sca", scaFingerprint: "AA", transactionId: "txn-1", challengeJson: "{}", expiresAt: now + 300_000 });
  return { requests, r, open, advance: (ms: number) => (now += ms) };
}

describe("signing requests (issue 15)", () => {
  it("an R.SAD is handed to the SCA once, and only from memory: a restart puts the request back to pending", async () => {
    const { requests, r, open } = await setup();
    expect(await requests.submit(r.id, "r.sad.jwe.x.y")).toBe(true);
    expect(await requests.submit(r.id, "again")).toBe(false);
    expect(requests.scaUpdate((await requests.get(r.id))!)).toEqual({ state: "approved", rSad: "r.sad.jwe.x.y" });
    const restarted = await open();
    const after = (await restarted.get(r.id))!;
    expect(after.state).toBe("pending");
    expect(restarted.scaUpdate(after)).toEqual({ state: "pending" });
    expect((await restarted.openFor("sgn-1")).map((x) => x.id)).toEqual([r.id]);
  });

  it("a pending request survives a restart until its transaction expires, then is no longer shown nor answerable", async () => {
    const { r, open, advance } = await setup();
    const restarted = await open();
    expect(await restarted.openFor("sgn-1")).toHaveLength(1);
    advance(300_001);
    expect(await restarted.openFor("sgn-1")).toEqual([]);
    expect(await restarted.submit(r.id, "late")).toBe(false);
    expect(restarted.scaUpdate((await restarted.get(r.id))!)).toEqual({ state: "expired" });
    advance(86_400_000);
    expect(await restarted.purge()).toBe(1);
  });

  it("a wrong PIN sends it back to pending with the reason; another refusal ends it; the first progress means authorized", async () => {
    const { requests, r } = await setup();
    await requests.submit(r.id, "one");
    expect(await requests.report(r.id, { authorized: false, reason: "REASON_AUTHENTICATION_FAILED", retry: true })).toBe(true);
    expect(await requests.get(r.id)).toMatchObject({ state: "pending", refusal: "REASON_AUTHENTICATION_FAILED" });
    await requests.submit(r.id, "two");
    expect(await requests.get(r.id)).toMatchObject({ state: "submitted", refusal: null });
    expect(await requests.progress(r.id, 10)).toBe(true);
    expect(await requests.get(r.id)).toMatchObject({ state: "authorized", signed: 10 });
    expect(await requests.progress(r.id, 5)).toBe(false); // out of order: never goes back
    expect(await requests.decline(r.id)).toBe(false);

    const { requests: other, r: r2 } = await setup();
    await other.submit(r2.id, "x");
    await other.report(r2.id, { authorized: false, reason: "REASON_CREDENTIAL_LOCKED", retry: false });
    expect(await other.get(r2.id)).toMatchObject({ state: "failed", refusal: "REASON_CREDENTIAL_LOCKED" });
    expect(await other.submit(r2.id, "y")).toBe(false);

    // The SAM allows max_authorize_attempts refused R.SADs per transaction: the last one ends the request.
    const { requests: third, r: r3 } = await setup();
    for (let i = 1; i <= 3; i++) {
      await third.submit(r3.id, `try ${i}`);
      await third.report(r3.id, { authorized: false, reason: "REASON_AUTHENTICATION_FAILED", retry: true, maxRefusals: 3 });
      expect(await third.get(r3.id)).toMatchObject({ state: i < 3 ? "pending" : "failed", refusals: i });
    }
  });

  it("a long poll wakes on a change and returns at its timeout otherwise", async () => {
    const { requests, r } = await setup();
    const woken = requests.waitForChange(r.id, r.version, 60_000);
    await requests.decline(r.id);
    expect((await woken)?.state).toBe("declined");
    const { requests: idle, r: r2 } = await setup();
    expect((await idle.waitForChange(r2.id, r2.version, 10))?.state).toBe("pending");
  });
});
