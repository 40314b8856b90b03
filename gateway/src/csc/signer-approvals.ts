/**
 * What the CSC oauth2code mode needs from the signer portal: "show this SadChallenge to its signer
 * and give me the R.SAD the signer's device built". The portal (issue 15) keeps such requests in
 * its `requests` table (the SadChallenge as protobuf JSON, a 256-bit random id, pending -> submitted
 * | declined | expired) and hands the R.SAD over in memory only, never at rest: `PortalApprovals`
 * (portal-approvals.ts), the gateway's default.
 */
import type { SadChallenge } from "@inkan/sdk";

export interface ApprovalRequest {
  /** The SAM's challenge, relayed unchanged (the device checks the SAM's signature on it). */
  challenge: SadChallenge;
  /** Who asks, as the signer sees it: the CSC client's registered name. */
  requester: string;
  /** The CSC client's id: the request is filed under it, apart from every SCA's (mTLS) requests. */
  clientId: string;
  /**
   * Where the portal sends the signer's browser once the signer approved or declined (a gateway
   * URL of the CSC API, carrying its own unguessable id): the CSC flow continues there.
   */
  returnTo: string;
}

export type ApprovalOutcome =
  | { approved: true; rSad: string }
  | { approved: false; reason: "declined" | "expired" };

export interface SignerApprovals {
  /** Files the request with the portal; returns its id and the portal URL the signer opens. */
  open(request: ApprovalRequest): Promise<{ requestId: string; signerUrl: string }>;
  /** Resolves once the signer decided or the request expired. The R.SAD is handed over once. */
  outcome(requestId: string, signal: AbortSignal): Promise<ApprovalOutcome>;
  /** The SAM's verdict on the R.SAD, so the portal shows how the request ended (optional). */
  settle?(requestId: string, verdict: { authorized: true } | { authorized: false; reason: string }): void | Promise<void>;
}

export class PortalUnavailable extends Error {}

/** No portal (tests of the CSC API without it): every request fails, so the CSC answer is temporarily_unavailable. */
export const portalNotWired: SignerApprovals = {
  open: () => Promise.reject(new PortalUnavailable("the signer portal is not wired to the CSC API")),
  outcome: () => Promise.reject(new PortalUnavailable("the signer portal is not wired to the CSC API")),
};
