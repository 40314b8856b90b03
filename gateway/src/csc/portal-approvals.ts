/**
 * The CSC oauth2code mode over the signer portal (issues 15, 16): `open` files the SAM's
 * SadChallenge in the portal's `requests` table, under the CSC client's name (the "SCA" the signer
 * sees) and an SCA fingerprint of its own namespace, `csc:<clientId>`: an mTLS fingerprint is
 * SHA-256 hex with colons, so no SCA of the request relay can read, cancel or report on it.
 * `outcome` waits for the signer's decision and hands the R.SAD over once, from memory (the
 * portal's submit keeps it there, never at rest, as for the SCA relay).
 */
import { toJsonString } from "@bufbuild/protobuf";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import type { SigningRequests } from "../requests/signing-requests.js";
import { cscBase } from "./routes.js";
import { PortalUnavailable, type ApprovalOutcome, type ApprovalRequest, type SignerApprovals } from "./signer-approvals.js";

/** The SCA fingerprint namespace of requests filed by the CSC API. */
export const cscNamespace = "csc:";

/** The only place the portal may send the signer's browser back to: the CSC API's return, by its id. */
const returnPath = new RegExp(`^${cscBase}/oauth2/return\\?request=[A-Za-z0-9_-]{43}$`);

export class PortalApprovals implements SignerApprovals {
  /** `publicUrl`: the gateway's (GatewayContext.publicUrl), where the signer's browser is sent. */
  constructor(private readonly requests: SigningRequests, private readonly publicUrl: () => string) {}

  static async open(requests: SigningRequests, publicUrl: () => string, shared = false): Promise<PortalApprovals> {
    // The authorizations behind open CSC requests lived in the memory of the gateway that filed
    // them: after a restart nothing could take their R.SAD, so the signer is not asked in vain.
    // Not on a shared store, where they may belong to another, running gateway node.
    if (!shared) await requests.cancelOpenOf(cscNamespace);
    return new PortalApprovals(requests, publicUrl);
  }

  async open(request: ApprovalRequest): Promise<{ requestId: string; signerUrl: string }> {
    // Never an open redirect: only the gateway's own return path is stored (the page checks it again).
    if (!returnPath.test(request.returnTo)) throw new Error("returnTo is not the CSC API's return path");
    const c = request.challenge;
    if (!c.expiresAt) throw new PortalUnavailable("the challenge has no expiry");
    const r = await this.requests.create({
      signerId: c.signerId,
      credentialId: c.credentialId,
      sca: request.requester,
      scaFingerprint: `${cscNamespace}${request.clientId}`,
      transactionId: c.transactionId,
      challengeJson: toJsonString(SadChallengeSchema, c),
      expiresAt: Number(c.expiresAt.seconds) * 1000 + Math.floor(c.expiresAt.nanos / 1e6),
      returnTo: request.returnTo,
    });
    // The portal at the gateway's public URL, never one named by the Host header of oauth2/authorize;
    // the id in the fragment, which browsers send to no server and in no Referer (as the SCA relay's
    // request URL). The page sends the browser back to returnTo on its own origin: that public URL.
    return { requestId: r.id, signerUrl: `${this.publicUrl()}/#request=${r.id}` };
  }

  async outcome(requestId: string, signal: AbortSignal): Promise<ApprovalOutcome> {
    let r = await this.#own(requestId);
    for (;;) {
      if (signal.aborted) throw new PortalUnavailable("no decision in time");
      if (r.state === "submitted") {
        const rSad = this.requests.takeRSad(r.id);
        if (rSad !== undefined) return { approved: true, rSad };
        throw new PortalUnavailable("the approval was already handed over"); // once only
      }
      if (r.state === "declined") return { approved: false, reason: "declined" };
      if (r.state === "pending" && this.requests.isExpired(r)) return { approved: false, reason: "expired" };
      if (r.state !== "pending") throw new PortalUnavailable(`the request is ${r.state}`);
      r = (await this.requests.waitForChange(r.id, r.version, 60_000, signal)) ?? r;
      if (this.requests.isExpired(r) && r.state === "pending") return { approved: false, reason: "expired" };
    }
  }

  async settle(requestId: string, verdict: { authorized: true } | { authorized: false; reason: string }): Promise<void> {
    // The CSC flow has one return per authorization: a refused R.SAD ends the request (no retry here).
    if (verdict.authorized) await this.requests.report(requestId, { authorized: true });
    else await this.requests.report(requestId, { authorized: false, reason: verdict.reason, retry: false });
  }

  async #own(requestId: string) {
    const r = await this.requests.get(requestId);
    if (!r || !r.scaFingerprint.startsWith(cscNamespace)) throw new PortalUnavailable("no such request");
    return r;
  }
}
