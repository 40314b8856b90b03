import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { afterEach, describe, expect, it } from "vitest";
import { SigningRequests } from "../requests/signing-requests.js";
import { openGatewayDatabase, SqliteGatewayStore } from "../store/gateway-store.js";
import { PortalApprovals } from "./portal-approvals.js";

// Unit tests of the CSC API's approvals over the portal's request table (a real SQLite file); the
// browser test (csc-portal.browser.test.ts) runs the whole oauth2code flow through the real page.
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

const returnTo = (id = "x".repeat(43)) => `/csc/v2/oauth2/return?request=${id}`;

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), "inkan-gw-csc-approvals-"));
  dirs.push(dir);
  const file = join(dir, "gateway.sqlite");
  const open = async () => {
    const requests = await SigningRequests.open(new SqliteGatewayStore(openGatewayDatabase(file)));
    return { requests, approvals: await PortalApprovals.open(requests, () => "https://rssp.example") };
  };
  const challenge = create(SadChallengeSchema, {
    signerId: "sgn-1", credentialId: "crd-1", transactionId: "txn-1", numSignatures: 1,
    expiresAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 300), nanos: 0 },
  });
  return { ...(await open()), open, challenge };
}

describe("CSC approvals through the signer portal (issues 15, 16)", () => {
  it("files the challenge under the client's name and a csc: namespace, with the return path; the signer URL is the portal's at the public URL", async () => {
    const { requests, approvals, challenge } = await setup();
    const { requestId, signerUrl } = await approvals.open({ challenge, requester: "Platform A", clientId: "platform-a", returnTo: returnTo() });
    expect(signerUrl).toBe(`https://rssp.example/#request=${requestId}`);
    const r = (await requests.get(requestId))!;
    expect(r).toMatchObject({ signerId: "sgn-1", credentialId: "crd-1", sca: "Platform A", scaFingerprint: "csc:platform-a", transactionId: "txn-1", returnTo: returnTo(), state: "pending" });
    expect((await requests.openFor("sgn-1")).map((x) => x.id)).toEqual([requestId]);
  });

  it("never stores a returnTo outside the CSC API's return path (no open redirect)", async () => {
    const { approvals, challenge } = await setup();
    for (const bad of ["https://evil.example/csc/v2/oauth2/return?request=" + "x".repeat(43), "//evil.example/", "/csc/v2/oauth2/return?request=short", "/api/portal/requests", returnTo() + "&next=https://evil.example"]) {
      await expect(approvals.open({ challenge, requester: "A", clientId: "a", returnTo: bad }), bad).rejects.toThrow(/returnTo/);
    }
  });

  it("hands the R.SAD over once, from memory; the SAM's verdict settles the request", async () => {
    const { requests, approvals, challenge } = await setup();
    const { requestId } = await approvals.open({ challenge, requester: "A", clientId: "a", returnTo: returnTo() });
    const waiting = approvals.outcome(requestId, new AbortController().signal);
    expect(await requests.submit(requestId, "r.sad.jwe")).toBe(true);
    expect(await waiting).toEqual({ approved: true, rSad: "r.sad.jwe" });
    await expect(approvals.outcome(requestId, new AbortController().signal)).rejects.toThrow(/already handed over/);
    await approvals.settle(requestId, { authorized: true });
    expect((await requests.get(requestId))!.state).toBe("authorized");
  });

  it("a decline is the outcome; an abort ends the wait; a request of an mTLS SCA is not the CSC API's", async () => {
    const { requests, approvals, challenge } = await setup();
    const { requestId } = await approvals.open({ challenge, requester: "A", clientId: "a", returnTo: returnTo() });
    const abort = new AbortController();
    const aborted = approvals.outcome(requestId, abort.signal);
    abort.abort();
    await expect(aborted).rejects.toThrow(/in time/);
    const waiting = approvals.outcome(requestId, new AbortController().signal);
    await requests.decline(requestId);
    expect(await waiting).toEqual({ approved: false, reason: "declined" });
    const sca = await requests.create({ signerId: "sgn-1", credentialId: "crd-1", sca: "CN=sca", scaFingerprint: "AA:BB", transactionId: "txn-2", challengeJson: "{}", expiresAt: Date.now() + 60_000 });
    await expect(approvals.outcome(sca.id, new AbortController().signal)).rejects.toThrow(/no such request/);
  });

  it("a gateway restart cancels the open CSC requests (their authorization was in memory), not the SCAs'", async () => {
    const { requests, approvals, challenge, open } = await setup();
    const { requestId } = await approvals.open({ challenge, requester: "A", clientId: "a", returnTo: returnTo() });
    const sca = await requests.create({ signerId: "sgn-1", credentialId: "crd-1", sca: "CN=sca", scaFingerprint: "AA:BB", transactionId: "txn-2", challengeJson: "{}", expiresAt: Date.now() + 60_000 });
    const restarted = await open();
    expect((await restarted.requests.get(requestId))!.state).toBe("cancelled");
    expect((await restarted.requests.get(sca.id))!.state).toBe("pending");
    expect((await restarted.requests.openFor("sgn-1")).map((x) => x.id)).toEqual([sca.id]);
  });
});
