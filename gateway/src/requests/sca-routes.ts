/**
 * The SCA's side of a signing request (issue 15): an SCA that uses the SAP posts the SadChallenge
 * of its transaction, sends the signer the request URL, waits for the R.SAD, and reports the SAM's
 * verdict. Authenticated by the SCA's client certificate (mutual TLS, issued by the SCA CA).
 *
 *   POST   /api/sca/requests                 {challenge}        -> 201 {requestId, requestUrl, expiresAt}
 *   GET    /api/sca/requests/:id?wait=SECONDS                    -> {state, rSad?}  (long poll, at most 25 s)
 *   POST   /api/sca/requests/:id/outcome     {authorized, reason?, final?}
 *   POST   /api/sca/requests/:id/progress    {signed}
 *   GET    /api/sca/requests/:id/qr.svg                          the request URL as a QR code (SVG), for a signer on another device
 *   DELETE /api/sca/requests/:id                                 (the SCA cancelled its transaction)
 */
import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { fromJson, toJsonString } from "@bufbuild/protobuf";
import { SadChallengeRefused, verifySadChallenge, type SamSigningKey } from "@inkan/sdk";
import { renderSVG } from "uqr";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HttpError, readJson, sendJson } from "../http/respond.js";
import type { Route } from "../http/router.js";
import { atSam } from "../http/sam-errors.js";
import type { GatewayContext } from "../server.js";
import type { SigningRequest, SigningRequests } from "./signing-requests.js";

/** The longest an SCA's wait lasts before it asks again (seconds); documented in the README. */
export const maxScaWaitSeconds = 25;
/** SAM refusals after which the signer may answer the same request again. */
const retryable = new Set(["REASON_AUTHENTICATION_FAILED"]);

export interface ScaIdentity {
  subject: string;
  fingerprint: string;
}

/** The verified SCA client certificate, or 401. */
export function scaOf(req: IncomingMessage): ScaIdentity {
  const socket = req.socket as TLSSocket;
  const cert = socket.authorized ? socket.getPeerCertificate() : undefined;
  if (!cert || !cert.fingerprint256) throw new HttpError(401, "unauthorized_client", "an SCA client certificate issued by the SCA CA is required");
  const subject = Object.entries(cert.subject ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(", ");
  return { subject, fingerprint: cert.fingerprint256 };
}

/**
 * The portal URL of a request, on the gateway's public URL (never the Host header the SCA sent,
 * which would let a request link point at another server). The id goes in the fragment: browsers
 * never send it to a server or in a Referer.
 */
function requestUrl(ctx: GatewayContext, id: string): string {
  return `${ctx.publicUrl()}/#request=${id}`;
}

export function scaRoutes(ctx: GatewayContext, requests: SigningRequests): Route[] {
  let info: { challengeSigningKey: SamSigningKey | undefined; maxAuthorizeAttempts: number | undefined } | undefined;
  const samInfo = async () => {
    if (!info) {
      const i = await atSam(() => ctx.sam.inkan.getInfo());
      info = { challengeSigningKey: i.challengeSigningKey, maxAuthorizeAttempts: i.limits?.maxAuthorizeAttempts || undefined };
    }
    return info;
  };
  const trustedKey = async () => (await samInfo()).challengeSigningKey;

  /** The request, only to the SCA that posted it (another SCA gets 404, as for an unknown id). */
  const own = async (req: IncomingMessage, id: string): Promise<SigningRequest> => {
    const sca = scaOf(req);
    const r = await requests.get(id);
    if (!r || r.scaFingerprint !== sca.fingerprint) throw new HttpError(404, "not_found", "no such request");
    return r;
  };

  return [
    {
      method: "POST",
      path: "/api/sca/requests",
      async handler({ req, res }) {
        const sca = scaOf(req);
        const body = await readJson(req);
        let challenge;
        try {
          challenge = fromJson(SadChallengeSchema, body.challenge as never);
        } catch {
          throw new HttpError(400, "invalid_request", "challenge is not a SadChallenge in protobuf JSON");
        }
        // T-2.2.1.7: refuse at once a challenge the SAM did not sign (the device checks it again).
        const key = await trustedKey();
        if (!key) throw new HttpError(502, "sam_unavailable", "the SAM published no challenge-signing key");
        try {
          await verifySadChallenge(challenge, key);
        } catch (err) {
          if (err instanceof SadChallengeRefused) throw new HttpError(400, "invalid_request", `the challenge is not signed by the SAM (${err.code})`);
          throw err;
        }
        const expiresAt = Number(challenge.expiresAt!.seconds) * 1000 + Math.floor(challenge.expiresAt!.nanos / 1e6);
        if (expiresAt <= Date.now()) throw new HttpError(400, "invalid_request", "the transaction has expired");
        const r = await requests.create({
          signerId: challenge.signerId,
          credentialId: challenge.credentialId,
          sca: sca.subject,
          scaFingerprint: sca.fingerprint,
          transactionId: challenge.transactionId,
          challengeJson: toJsonString(SadChallengeSchema, challenge),
          expiresAt,
        });
        sendJson(res, 201, { requestId: r.id, requestUrl: requestUrl(ctx, r.id), expiresAt: new Date(expiresAt).toISOString() });
      },
    },
    {
      method: "GET",
      path: "/api/sca/requests/:id",
      async handler({ req, res, params, url }) {
        const r = await own(req, params.id!);
        const wait = Math.min(maxScaWaitSeconds, Math.max(0, Number(url.searchParams.get("wait") ?? "0") || 0));
        const abort = new AbortController();
        res.once("close", () => abort.abort());
        let now = (await requests.get(r.id))!;
        const deadline = Date.now() + wait * 1000;
        while (requests.scaUpdate(now).state === "pending" && Date.now() < deadline && !abort.signal.aborted) {
          now = (await requests.waitForChange(r.id, now.version, deadline - Date.now(), abort.signal)) ?? now;
        }
        const update = requests.scaUpdate(now);
        sendJson(res, 200, { ...update, refusal: now.refusal ?? undefined });
      },
    },
    {
      method: "POST",
      path: "/api/sca/requests/:id/outcome",
      async handler({ req, res, params }) {
        const r = await own(req, params.id!);
        const body = await readJson(req, 4096);
        if (typeof body.authorized !== "boolean") throw new HttpError(400, "invalid_request", "authorized must be true or false");
        const reason = typeof body.reason === "string" ? body.reason.slice(0, 64) : "REASON_UNSPECIFIED";
        const max = (await samInfo()).maxAuthorizeAttempts;
        const ok = body.authorized
          ? await requests.report(r.id, { authorized: true })
          : await requests.report(r.id, { authorized: false, reason, retry: retryable.has(reason) && body.final !== true, ...(max ? { maxRefusals: max } : {}) });
        if (!ok) throw new HttpError(409, "invalid_request", "the request is not waiting for an outcome");
        res.writeHead(204).end();
      },
    },
    {
      method: "POST",
      path: "/api/sca/requests/:id/progress",
      async handler({ req, res, params }) {
        const r = await own(req, params.id!);
        const body = await readJson(req, 4096);
        const signed = body.signed;
        if (typeof signed !== "number" || !Number.isInteger(signed) || signed < 0) throw new HttpError(400, "invalid_request", "signed must be a count");
        await requests.progress(r.id, signed);
        res.writeHead(204).end();
      },
    },
    {
      method: "GET",
      path: "/api/sca/requests/:id/qr.svg",
      async handler({ req, res, params }) {
        const r = await own(req, params.id!);
        const svg = renderSVG(requestUrl(ctx, r.id), { border: 2 });
        res.writeHead(200, { "Content-Type": "image/svg+xml", "Content-Length": Buffer.byteLength(svg) }).end(svg);
      },
    },
    {
      method: "DELETE",
      path: "/api/sca/requests/:id",
      async handler({ req, res, params }) {
        const r = await own(req, params.id!);
        await requests.cancel(r.id);
        res.writeHead(204).end();
      },
    },
  ];
}
