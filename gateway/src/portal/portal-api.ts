/**
 * The portal page's API (issue 15). The gateway relays the device's requests to the SAM's
 * SignerService and decides nothing: activation codes and PINs travel in JWEs to the SAM, every
 * change carries the device's own JWS, and the SAM checks it. What the gateway itself guards is
 * what it shows: a signing request only to a session opened by AuthenticateDevice for that signer.
 *
 *   POST /api/portal/challenge       {signerId, purpose, credentialId?}  SignerService.CreateChallenge
 *   POST /api/portal/activate        ActivateRequest (protobuf JSON)      SignerService.Activate
 *   POST /api/portal/session         {signerId, deviceProof}              SignerService.AuthenticateDevice -> bearer token
 *   POST /api/portal/pin             ChangePinRequest                     SignerService.ChangePin          (session)
 *   POST /api/portal/suspension      RequestSuspensionRequest             SignerService.RequestSuspension  (session)
 *   POST /api/portal/history         {historyRequest, limit?}             SignerService.ListAuthorizations (session)
 *   GET  /api/portal/requests                                             the signer's open requests       (session)
 *   GET  /api/portal/requests/:id?after=VERSION                           one request; long poll           (session)
 *   POST /api/portal/requests/:id/approve  {rSad}                         hand the R.SAD to the SCA        (session)
 *   POST /api/portal/requests/:id/decline                                 tell the SCA no                  (session)
 */
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import {
  ActivateRequestSchema,
  ActivateResponseSchema,
  ChallengePurpose,
  ChangePinRequestSchema,
  CreateChallengeResponseSchema,
  ListAuthorizationsResponseSchema,
  RequestSuspensionRequestSchema,
} from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { CredentialStatus } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { IncomingMessage } from "node:http";
import { HttpError, readJson, sendJson } from "../http/respond.js";
import type { Route } from "../http/router.js";
import { atSam } from "../http/sam-errors.js";
import type { SigningRequest, SigningRequests } from "../requests/signing-requests.js";
import type { GatewayContext } from "../server.js";
import type { PortalSession, PortalSessions } from "./sessions.js";

const purposes: Record<string, ChallengePurpose> = {
  activation: ChallengePurpose.ACTIVATION,
  "pin-change": ChallengePurpose.PIN_CHANGE,
  suspension: ChallengePurpose.SUSPENSION,
  "device-authentication": ChallengePurpose.DEVICE_AUTHENTICATION,
  "authorization-history": ChallengePurpose.AUTHORIZATION_HISTORY,
};

/** The longest a page's wait for a change lasts (seconds). */
const maxPortalWaitSeconds = 20;

function message<T>(parse: () => T): T {
  try {
    return parse();
  } catch {
    throw new HttpError(400, "invalid_request", "the body is not the expected message");
  }
}

function text(body: Record<string, unknown>, name: string, max = 8192): string {
  const v = body[name];
  if (typeof v !== "string" || v.length === 0 || v.length > max) throw new HttpError(400, "invalid_request", `${name} is required`);
  return v;
}

export function portalApiRoutes(ctx: GatewayContext, requests: SigningRequests, sessions: PortalSessions): Route[] {
  const signer = ctx.sam.signer;
  const session = async (req: IncomingMessage): Promise<PortalSession> => {
    const s = await sessions.fromHeader(req.headers.authorization);
    if (!s) throw new HttpError(401, "unauthorized", "sign in with your device first");
    return s;
  };
  /** Issue 15: a request is shown only to a session of its signer; any other sees "no such request". */
  const ownRequest = async (s: PortalSession, id: string): Promise<SigningRequest> => {
    const r = await requests.get(id);
    if (!r || r.signerId !== s.signerId) throw new HttpError(404, "not_found", "no such request");
    return r;
  };
  const view = (r: SigningRequest) => ({
    id: r.id,
    state: requests.isExpired(r) && (r.state === "pending" || r.state === "submitted") ? "expired" : r.state,
    version: r.version,
    sca: r.sca,
    credentialId: r.credentialId,
    transactionId: r.transactionId,
    expiresAt: new Date(r.expiresAt).toISOString(),
    refusal: r.refusal,
    refusals: r.refusals,
    signed: r.signed,
    challenge: JSON.parse(r.challengeJson) as JsonValue,
    // A CSC request: the gateway path the page sends the browser back to after the decision.
    returnTo: r.returnTo,
  });

  return [
    {
      method: "POST",
      path: "/api/portal/challenge",
      async handler({ req, res }) {
        const body = await readJson(req, 4096);
        const purpose = purposes[String(body.purpose)];
        if (!purpose) throw new HttpError(400, "invalid_request", "unknown purpose");
        const credentialId = typeof body.credentialId === "string" ? body.credentialId : "";
        const out = await atSam(() => signer.createChallenge({ signerId: text(body, "signerId", 128), purpose, credentialId }));
        sendJson(res, 200, toJson(CreateChallengeResponseSchema, out));
      },
    },
    {
      method: "POST",
      path: "/api/portal/activate",
      async handler({ req, res }) {
        const body = await readJson(req, 64 * 1024);
        const request = message(() => fromJson(ActivateRequestSchema, body as never));
        const out = await atSam(() => signer.activate(request));
        sendJson(res, 200, toJson(ActivateResponseSchema, out));
      },
    },
    {
      method: "POST",
      path: "/api/portal/session",
      async handler({ req, res }) {
        const body = await readJson(req, 16 * 1024);
        const out = await atSam(() => signer.authenticateDevice({ signerId: text(body, "signerId", 128), deviceProof: text(body, "deviceProof") }));
        const opened = await sessions.open({ signerId: out.signerId, deviceKeyId: out.deviceKeyId });
        sendJson(res, 200, {
          token: opened.token,
          expiresAt: new Date(opened.expiresAt).toISOString(),
          signerId: out.signerId,
          deviceKeyId: out.deviceKeyId,
          credentials: out.credentials.map((c) => ({ credentialId: c.credentialId, status: CredentialStatus[c.status] })),
        });
      },
    },
    ...managementRoutes(ctx, sessions, session),
    ...requestRoutes(requests, session, ownRequest, view),
  ];
}

function managementRoutes(ctx: GatewayContext, sessions: PortalSessions, session: (req: IncomingMessage) => Promise<PortalSession>): Route[] {
  const signer = ctx.sam.signer;
  /** The body's signer must be the session's: a session of one signer relays nothing for another. */
  const sameSigner = (s: PortalSession, signerId: string) => {
    if (signerId !== s.signerId) throw new HttpError(403, "forbidden", "this session is for another signer");
  };
  return [
    {
      method: "POST",
      path: "/api/portal/session/end",
      async handler({ req, res }) {
        await sessions.close(req.headers.authorization);
        res.writeHead(204).end();
      },
    },
    {
      method: "POST",
      path: "/api/portal/pin",
      async handler({ req, res }) {
        const s = await session(req);
        const body = await readJson(req, 64 * 1024);
        const r = message(() => fromJson(ChangePinRequestSchema, body as never));
        sameSigner(s, r.signerId);
        const out = await atSam(() => signer.changePin(r));
        sendJson(res, 200, { changedAt: out.changedAt ? new Date(Number(out.changedAt.seconds) * 1000).toISOString() : null });
      },
    },
    {
      method: "POST",
      path: "/api/portal/suspension",
      async handler({ req, res }) {
        const s = await session(req);
        const body = await readJson(req, 16 * 1024);
        const r = message(() => fromJson(RequestSuspensionRequestSchema, body as never));
        sameSigner(s, r.signerId);
        const out = await atSam(() => signer.requestSuspension(r));
        sendJson(res, 200, { credentialId: out.credentialId, status: CredentialStatus[out.status] });
      },
    },
    {
      method: "POST",
      path: "/api/portal/history",
      async handler({ req, res }) {
        const s = await session(req);
        const body = await readJson(req, 16 * 1024);
        const limit = typeof body.limit === "number" ? Math.min(100, Math.max(0, Math.floor(body.limit))) : 20;
        const out = await atSam(() => signer.listAuthorizations({ signerId: s.signerId, historyRequest: text(body, "historyRequest"), limit }));
        sendJson(res, 200, toJson(ListAuthorizationsResponseSchema, out));
      },
    },
  ];
}

function requestRoutes(
  requests: SigningRequests,
  session: (req: IncomingMessage) => Promise<PortalSession>,
  ownRequest: (s: PortalSession, id: string) => Promise<SigningRequest>,
  view: (r: SigningRequest) => unknown,
): Route[] {
  return [
    {
      method: "GET",
      path: "/api/portal/requests",
      async handler({ req, res }) {
        const s = await session(req);
        sendJson(res, 200, { requests: (await requests.openFor(s.signerId)).map(view) });
      },
    },
    {
      method: "GET",
      path: "/api/portal/requests/:id",
      async handler({ req, res, params, url }) {
        const s = await session(req);
        let r = await ownRequest(s, params.id!);
        const after = url.searchParams.get("after");
        if (after !== null && Number.isInteger(Number(after))) {
          const abort = new AbortController();
          res.once("close", () => abort.abort());
          r = (await requests.waitForChange(r.id, Number(after), maxPortalWaitSeconds * 1000, abort.signal)) ?? r;
        }
        sendJson(res, 200, view(r));
      },
    },
    {
      method: "POST",
      path: "/api/portal/requests/:id/approve",
      async handler({ req, res, params }) {
        const s = await session(req);
        const r = await ownRequest(s, params.id!);
        const body = await readJson(req, 64 * 1024);
        const rSad = text(body, "rSad", 32 * 1024);
        if (!(await requests.submit(r.id, rSad))) throw new HttpError(409, "invalid_request", "the request is no longer waiting for you");
        res.writeHead(202).end();
      },
    },
    {
      method: "POST",
      path: "/api/portal/requests/:id/decline",
      async handler({ req, res, params }) {
        const s = await session(req);
        const r = await ownRequest(s, params.id!);
        if (!(await requests.decline(r.id))) throw new HttpError(409, "invalid_request", "the request is no longer waiting for you");
        res.writeHead(204).end();
      },
    },
  ];
}
