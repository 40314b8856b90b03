/**
 * A test double of the signer portal + the signer's device for the oauth2code flow: it files the
 * SadChallenge like the portal would, and `approve` builds the R.SAD with `@inkan/sdk/device`
 * exactly as the browser does (the SAM's signature on the challenge checked against the key the
 * device pinned at activation, device key + PIN, JWE to the SAM). Real SAM, real crypto; only the
 * browser is missing. Returns the URL the portal would send the browser to.
 */
import { randomBytes } from "node:crypto";
import type { SadChallenge, SamSigningKey } from "@inkan/sdk";
import { buildRSadFor, type DeviceKey } from "@inkan/sdk/device";
import type { ApprovalOutcome, ApprovalRequest, SignerApprovals } from "../signer-approvals.js";

interface Filed {
  request: ApprovalRequest;
  settle: (o: ApprovalOutcome) => void;
  outcome: Promise<ApprovalOutcome>;
}

export class DeviceApprovals implements SignerApprovals {
  readonly #filed = new Map<string, Filed>();
  /** The request ids in filing order (the newest last). */
  readonly ids: string[] = [];

  async open(request: ApprovalRequest): Promise<{ requestId: string; signerUrl: string }> {
    const requestId = randomBytes(32).toString("base64url");
    let settle!: (o: ApprovalOutcome) => void;
    const outcome = new Promise<ApprovalOutcome>((r) => (settle = r));
    this.#filed.set(requestId, { request, settle, outcome });
    this.ids.push(requestId);
    return { requestId, signerUrl: `https://portal.invalid/requests/${requestId}` };
  }

  outcome(requestId: string, signal: AbortSignal): Promise<ApprovalOutcome> {
    const f = this.#filed.get(requestId);
    if (!f) return Promise.reject(new Error("unknown request"));
    return Promise.race([f.outcome, new Promise<never>((_, fail) => signal.addEventListener("abort", () => fail(new Error("timeout")), { once: true }))]);
  }

  challengeOf(requestId: string): SadChallenge {
    return this.#filed.get(requestId)!.request.challenge;
  }

  requestOf(requestId: string): ApprovalRequest {
    return this.#filed.get(requestId)!.request;
  }

  /** The signer approves on the device: the R.SAD as the browser builds it. Returns the portal's returnTo. */
  async approve(requestId: string, device: { deviceKey: DeviceKey; pin: string; challengeSigningKey: SamSigningKey }): Promise<string> {
    const f = this.#filed.get(requestId)!;
    const rSad = await buildRSadFor(f.request.challenge, { deviceKey: device.deviceKey, pin: device.pin, challengeSigningKey: device.challengeSigningKey });
    f.settle({ approved: true, rSad });
    return f.request.returnTo;
  }

  decline(requestId: string): string {
    const f = this.#filed.get(requestId)!;
    f.settle({ approved: false, reason: "declined" });
    return f.request.returnTo;
  }
}
