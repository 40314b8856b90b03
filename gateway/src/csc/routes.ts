/**
 * The CSC API v2 (v2.0.0.2, following v2.2 where it clarifies) under /csc/v2/, relaying to the SAM
 * through the SDK as one SCA (the gateway's certificate) that names the CSC client it acts for in
 * BeginTransaction.on_behalf_of.
 *
 * Field names follow the v2.0.0.2 JSON members as the public clients send them (asitplus vck
 * `at.asitplus.rqes` data classes: credentialID, SAD, hashes, hashAlgorithmOID, signAlgo,
 * signAlgoParams, numSignatures, authData; credentialInfo's key/cert/auth/SCAL/multisign as in the
 * EUDI rqes-csc-swift `CSCCredentialsInfoResponse`). The oauth2/authorize query parameters are the
 * v2 camelCase ones (credentialID, numSignatures, hashes as comma-separated base64url,
 * hashAlgorithmOID); the EUDI Swift client's snake_case spellings (credential_id, num_signatures,
 * hash_algorithm_oid) are accepted too.
 *
 * Service authorization: OAuth 2.0 client credentials with private_key_jwt (oauth.ts); the access
 * token goes in `Authorization: Bearer`. Credential authorization: oauth2code (the signer approves
 * in the portal with device key + PIN; the code's access token is the SAD) or explicit
 * (credentials/authorize with PIN + OTP: only for credentials whose policy allows PIN + TOTP, and
 * the CSC client then sees the PIN and OTP on their way to the SAM).
 */
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { buildClaimsRSadFor, SignatureAlgorithm, SignatureFormat, type CredentialInfo, type HashAlgorithm, type InkanClient, type SadChallenge } from "@inkan/sdk";
import { AuthenticationMethod } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { AssuranceLevel, CertificateStatus, CredentialStatus } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { HttpError, sendJson } from "../http/respond.js";
import type { Route, RouteContext } from "../http/router.js";
import { samError } from "../http/sam-errors.js";
import type { SamClients } from "../sam/sam-client.js";
import { CscClients, type CscClient } from "./clients.js";
import { CscError, fromSam, invalidParameter, invalidSad as invalidSadError, missingParameter } from "./errors.js";
import { AuthorizationCodes, ClientAuthenticator, ServiceTokens } from "./oauth.js";
import { hashLength, hashOids, keyInfoOf, signAlgoOf, signAlgoOids } from "./oids.js";
import { PortalUnavailable, type SignerApprovals } from "./signer-approvals.js";
import { SigningSessions } from "./signing-session.js";

export const cscBase = "/csc/v2";

/** The methods this gateway implements, by their CSC names: `info` lists exactly these. */
export const cscMethods = [
  "info",
  "oauth2/authorize",
  "oauth2/token",
  "credentials/list",
  "credentials/info",
  "credentials/authorize",
  "credentials/extendTransaction",
  "signatures/signHash",
] as const;

export interface CscOptions {
  sam: SamClients;
  /** The SAM client to act for `client` with (its own SCA certificate, or the gateway's); default sam.inkan. */
  samFor?: (client: CscClient) => InkanClient;
  clients: CscClients;
  approvals: SignerApprovals;
  /** How long oauth2 waits at the return URL for the portal's outcome (ms). */
  approvalWaitMs?: number;
  /**
   * The gateway's public URL (GatewayContext.publicUrl): the token URL a client assertion's aud
   * must name, and info's oauth2. Never the request's Host header, which the client chooses: an
   * assertion made for another server, sent here with that server's Host, would pass (T-2.2.1.3,
   * T-2.2.1.1; conformance case csc-assertion-for-another-host).
   */
  publicUrl: () => string;
}

const maxBodyBytes = 1024 * 1024;
const maxHashes = 1000;

/** A pending oauth2code authorization, between oauth2/authorize and the signer's return. */
interface Pending {
  client: CscClient;
  redirectUri: string;
  state: string | undefined;
  codeChallenge: string;
  requestId: string;
  challenge: SadChallenge;
  credential: CredentialInfo;
  hashes: Uint8Array[];
  signatureAlgorithm: SignatureAlgorithm;
}

export function cscRoutes(o: CscOptions): Route[] {
  const auth = new ClientAuthenticator(o.clients);
  const serviceTokens = new ServiceTokens();
  const codes = new AuthorizationCodes();
  const sessions = new SigningSessions();
  const pending = new Map<string, Pending>();
  const inkan = o.sam.inkan; // the gateway's own SCA: only for info
  const samOf = (client: CscClient): InkanClient => o.samFor?.(client) ?? inkan;
  const samOfId = (clientId: string): InkanClient => {
    const c = o.clients.get(clientId);
    if (!c) throw invalidSadError();
    return samOf(c);
  };

  /** The CSC client of a request's Bearer service token; invalid_token otherwise (RFC 6750 3.1). */
  function serviceClient(req: IncomingMessage, res: RouteContext["res"]): CscClient {
    const token = bearer(req);
    const clientId = token ? serviceTokens.clientOf(token) : undefined;
    const client = clientId ? o.clients.get(clientId) : undefined;
    if (!client) throw invalidToken(res);
    return client;
  }

  /** A credential this client may see (issue 19: out of scope reads exactly as not found). */
  async function visibleCredential(client: CscClient, credentialId: unknown): Promise<CredentialInfo> {
    if (typeof credentialId !== "string" || !/^[!-~]{1,128}$/.test(credentialId)) throw missingParameter("credentialID");
    let c: CredentialInfo;
    try {
      c = await samOf(client).getCredential(credentialId);
    } catch (err) {
      throw fromSam(err);
    }
    if (!CscClients.mayActFor(client, c.signerId)) throw invalidParameter("credentialID");
    return c;
  }

  /** Opens the SAM transaction for an authorization request (both modes). */
  async function begin(client: CscClient, credential: CredentialInfo, p: AuthorizationParams) {
    const signatureAlgorithm = p.signAlgo ?? defaultScheme(credential);
    try {
      return { signatureAlgorithm, tx: await samOf(client).sam.beginTransaction({
        credentialId: credential.credentialId,
        signerId: credential.signerId,
        hashAlgorithm: p.hashAlgorithm,
        signatureAlgorithm,
        signatureFormat: SignatureFormat.DER,
        numSignatures: p.hashes.length,
        hashes: p.hashes,
        description: p.description ?? `${client.name}: ${p.hashes.length} document${p.hashes.length === 1 ? "" : "s"} to sign`,
        onBehalfOf: client.clientId, // issue 16: the SAM's audit shows which CSC client asked
      }) };
    } catch (err) {
      throw fromSam(err);
    }
  }

  const post = (path: string, handler: (ctx: RouteContext) => Promise<void>): Route => ({ method: "POST", path: `${cscBase}/${path}`, handler });

  return [
    post("info", async ({ req, res }) => {
      await readBody(req); // any body, even empty: info takes only an optional `lang`
      const info = await inkan.getInfo().catch((err: unknown) => { throw fromSam(err); });
      sendJson(res, 200, {
        specs: "2.0.0.2",
        name: "Inkan",
        logo: "",
        region: "JP",
        lang: "en-US",
        description: `Inkan remote signing (SAM ${info.samId})`,
        authType: ["oauth2client"],
        oauth2: `${o.publicUrl()}${cscBase}`,
        methods: [...cscMethods],
        signAlgorithms: { algos: [...signAlgoOids] },
      });
    }),

    // RFC 6749 3.2 + RFC 7523: client_credentials (service authorization) and authorization_code
    // (+PKCE) for oauth2code. Form-encoded as RFC 6749 says; JSON is accepted too (CSC v2 allows it).
    post("oauth2/token", async ({ req, res }) => {
      const form = await readForm(req);
      const client = await auth.authenticate(form, `${o.publicUrl()}${cscBase}/oauth2/token`); // RFC 7523 3: aud = this server's token URL
      if (form.grant_type === "client_credentials") {
        if (form.scope !== undefined && form.scope !== "service") throw new CscError("invalid_scope", "only scope=service is granted with client credentials");
        return sendJson(res, 200, { ...serviceTokens.issue(client.clientId), scope: "service" });
      }
      if (form.grant_type === "authorization_code") {
        if (!form.code) throw missingParameter("code");
        const grant = codes.redeem(form.code, client.clientId, form.code_verifier, form.redirect_uri);
        return sendJson(res, 200, { access_token: grant.sad, token_type: "Bearer", expires_in: grant.expiresIn, scope: "credential", credentialID: grant.credentialId });
      }
      throw new CscError("unsupported_grant_type", "grant_type must be client_credentials or authorization_code");
    }),

    {
      method: "GET",
      path: `${cscBase}/oauth2/authorize`,
      handler: async ({ url, res }) => {
        const q = (name: string, alt?: string) => url.searchParams.get(name) ?? (alt ? url.searchParams.get(alt) : null) ?? undefined;
        const client = o.clients.get(q("client_id") ?? "");
        const redirectUri = q("redirect_uri");
        // RFC 6749 4.1.2.1: never redirect to a URI not registered for the client; answer here instead.
        if (!client || !redirectUri || !client.redirectUris.includes(redirectUri)) throw new CscError("invalid_request", "unknown client_id or unregistered redirect_uri");
        const state = q("state");
        try {
          if (q("response_type") !== "code") throw new CscError("invalid_request", "response_type must be code");
          const codeChallenge = q("code_challenge");
          if (q("code_challenge_method") !== "S256" || !codeChallenge || !/^[A-Za-z0-9_-]{43}$/.test(codeChallenge)) throw new CscError("invalid_request", "PKCE with code_challenge_method=S256 is required");
          const p = authorizationParams(fromAuthorizationDetails(q("authorization_details")) ?? scopeCredential(q));
          const credential = await visibleCredential(client, p.credentialId);
          const { tx, signatureAlgorithm } = await begin(client, credential, p);
          const challenge = tx.sadChallenge!;
          const id = randomBytes(32).toString("base64url");
          let opened;
          try {
            opened = await o.approvals.open({ challenge, requester: client.name, clientId: client.clientId, returnTo: `${cscBase}/oauth2/return?request=${id}` });
          } catch (err) {
            await samOf(client).sam.cancelTransaction({ transactionId: challenge.transactionId }).catch(() => undefined);
            if (err instanceof PortalUnavailable) throw new CscError("temporarily_unavailable", "the signer portal is unavailable");
            throw err;
          }
          for (const [k, v] of pending) if (expiryOf(v.challenge).getTime() <= Date.now()) pending.delete(k); // expired requests go
          pending.set(id, { client, redirectUri, state, codeChallenge, requestId: opened.requestId, challenge, credential, hashes: p.hashes, signatureAlgorithm });
          res.writeHead(302, { Location: opened.signerUrl });
          res.end();
        } catch (err) {
          if (!(err instanceof HttpError) || err.status >= 500 && !(err instanceof CscError)) throw err;
          redirectError(res, redirectUri, err.error === "not_found" ? "invalid_request" : err.error, err.message, state);
        }
      },
    },

    // Where the portal sends the signer's browser back: the R.SAD goes to the SAM, the client gets a code.
    {
      method: "GET",
      path: `${cscBase}/oauth2/return`,
      handler: async ({ url, res }) => {
        const id = url.searchParams.get("request") ?? "";
        const p = pending.get(id);
        if (!p) throw new CscError("invalid_request", "unknown or finished authorization request");
        pending.delete(id); // one return per request
        const signal = AbortSignal.timeout(o.approvalWaitMs ?? 25_000);
        let outcome;
        try {
          outcome = await o.approvals.outcome(p.requestId, signal);
        } catch {
          return redirectError(res, p.redirectUri, "temporarily_unavailable", "the signer portal did not answer", p.state);
        }
        // This authorization is over either way: its SAM transaction is not left open behind it.
        const cancel = () => samOf(p.client).sam.cancelTransaction({ transactionId: p.challenge.transactionId }).catch(() => undefined);
        if (!outcome.approved) {
          await cancel();
          return redirectError(res, p.redirectUri, "access_denied", `the signer ${outcome.reason === "declined" ? "declined" : "did not answer in time"}`, p.state);
        }
        let authorized;
        try {
          authorized = await samOf(p.client).sam.authorize({ transactionId: p.challenge.transactionId, rSad: outcome.rSad });
        } catch (err) {
          await o.approvals.settle?.(p.requestId, { authorized: false, reason: samError(err).error });
          await cancel(); // one attempt per authorization (a wrong PIN included): the client asks again
          const e = fromSam(err);
          return redirectError(res, p.redirectUri, e.error, e.message, p.state);
        }
        await o.approvals.settle?.(p.requestId, { authorized: true });
        const { sad, session } = sessions.create({
          clientId: p.client.clientId, credentialId: p.credential.credentialId, signerId: p.credential.signerId, transactionId: p.challenge.transactionId,
          hashAlgorithm: p.challenge.hashAlgorithm, signatureAlgorithm: p.signatureAlgorithm, hashes: p.hashes, spki: credentialKey(p.credential),
          samToken: authorized.sadToken, expiresAt: expiryOf(p.challenge),
        });
        const code = codes.issue({
          clientId: p.client.clientId, redirectUri: p.redirectUri, codeChallenge: p.codeChallenge, sad, credentialId: p.credential.credentialId,
          expiresIn: secondsUntil(expiryOf(p.challenge)), revoke: () => session.break(),
        });
        const to = new URL(p.redirectUri);
        to.searchParams.set("code", code);
        if (p.state !== undefined) to.searchParams.set("state", p.state);
        res.writeHead(302, { Location: to.toString() });
        res.end();
      },
    },

    post("credentials/list", async ({ req, res }) => {
      const client = serviceClient(req, res);
      const body = await readBody(req);
      const userId = body.userID;
      if (typeof userId !== "string" || !/^[!-~]{1,128}$/.test(userId)) throw missingParameter("userID");
      const withInfo = optionalBoolean(body, "credentialInfo");
      const certificates = certificatesParam(body);
      const certInfo = optionalBoolean(body, "certInfo");
      const authInfo = optionalBoolean(body, "authInfo");
      const maxResults = body.maxResults;
      if (maxResults !== undefined && (!Number.isInteger(maxResults) || (maxResults as number) < 1 || (maxResults as number) > 100)) throw invalidParameter("maxResults");
      if (body.pageToken !== undefined && typeof body.pageToken !== "string") throw invalidParameter("pageToken");
      // Issue 19: a signer outside this client's scope reads exactly as an unknown one.
      if (!CscClients.mayActFor(client, userId)) throw invalidParameter("userID");
      let listed;
      try {
        listed = await samOf(client).sam.listCredentials({
          signerId: userId,
          includeCertificateChain: withInfo && certificates !== "none",
          page: { pageSize: (maxResults as number | undefined) ?? 100, pageToken: (body.pageToken as string | undefined) ?? "" },
        });
      } catch (err) {
        const e = fromSam(err);
        throw e.message === "Invalid parameter credentialID" ? invalidParameter("pageToken") : e;
      }
      sendJson(res, 200, {
        credentialIDs: listed.credentials.map((c) => c.credentialId),
        ...(withInfo ? { credentialInfos: listed.credentials.map((c) => ({ credentialID: c.credentialId, ...credentialInfo(c, { certificates, certInfo, authInfo }) })) } : {}),
        ...(listed.page?.nextPageToken ? { nextPageToken: listed.page.nextPageToken } : {}),
      });
    }),

    post("credentials/info", async ({ req, res }) => {
      const client = serviceClient(req, res);
      const body = await readBody(req);
      const certificates = certificatesParam(body);
      const certInfo = optionalBoolean(body, "certInfo");
      const authInfo = optionalBoolean(body, "authInfo");
      const credential = await visibleCredential(client, body.credentialID);
      sendJson(res, 200, credentialInfo(credential, { certificates, certInfo, authInfo }));
    }),

    // Explicit mode (CSC v2 11.6): the PIN and OTP come in authData, so the CSC client sees them.
    // Only for credentials whose policy allows PIN + TOTP (off in the default policy).
    post("credentials/authorize", async ({ req, res }) => {
      const client = serviceClient(req, res);
      const body = await readBody(req);
      const p = authorizationParams((name) => body[name] as string | undefined, body);
      const factors = authDataOf(body.authData);
      const credential = await visibleCredential(client, p.credentialId);
      // Off unless both the client's registration and the credential's policy allow PIN + TOTP.
      if (!client.explicit || !credential.authenticationMethods.includes(AuthenticationMethod.PIN_AND_TOTP)) {
        throw new CscError("invalid_request", "explicit authorization is not allowed for this client or credential (use oauth2code)");
      }
      const { tx, signatureAlgorithm } = await begin(client, credential, p);
      const challenge = tx.sadChallenge!;
      let samToken: string;
      try {
        const info = await samOf(client).getInfo();
        const rSad = await buildClaimsRSadFor(challenge, { factors, challengeSigningKey: info.challengeSigningKey! });
        samToken = (await samOf(client).sam.authorize({ transactionId: challenge.transactionId, rSad })).sadToken;
      } catch (err) {
        // A refused authorization leaves no open transaction behind.
        await samOf(client).sam.cancelTransaction({ transactionId: challenge.transactionId }).catch(() => undefined);
        throw fromSam(err);
      }
      const { sad } = sessions.create({
        clientId: client.clientId, credentialId: credential.credentialId, signerId: credential.signerId, transactionId: challenge.transactionId,
        hashAlgorithm: challenge.hashAlgorithm, signatureAlgorithm, hashes: p.hashes, spki: credentialKey(credential), samToken, expiresAt: expiryOf(challenge),
      });
      sendJson(res, 200, { SAD: sad, expiresIn: secondsUntil(expiryOf(challenge)) });
    }),

    post("credentials/extendTransaction", async ({ req, res }) => {
      const { client, sad, body } = await sadCaller(req, res);
      if (typeof body.credentialID !== "string") throw missingParameter("credentialID");
      const next = await sessions.extend(sad, client, body.credentialID);
      sendJson(res, 200, { SAD: next.sad, expiresIn: secondsUntil(next.session.input.expiresAt) });
    }),

    post("signatures/signHash", async ({ req, res }) => {
      const { client, sad, body } = await sadCaller(req, res);
      if (typeof body.credentialID !== "string") throw missingParameter("credentialID");
      if (!Array.isArray(body.hashes) || body.hashes.length === 0 || body.hashes.length > maxHashes) throw missingParameter("hashes");
      if (typeof body.signAlgo !== "string") throw missingParameter("signAlgo");
      if (body.hashAlgorithmOID !== undefined && typeof body.hashAlgorithmOID !== "string") throw invalidParameter("hashAlgorithmOID");
      if (body.signAlgoParams !== undefined && typeof body.signAlgoParams !== "string") throw invalidParameter("signAlgoParams");
      if (body.operationMode !== undefined && body.operationMode !== "S") throw invalidParameter("operationMode"); // synchronous only
      const hashAlgorithm = body.hashAlgorithmOID === undefined ? undefined : hashOids[body.hashAlgorithmOID as string];
      if (body.hashAlgorithmOID !== undefined && hashAlgorithm === undefined) throw invalidParameter("hashAlgorithmOID");
      const algo = signAlgoOf(body.signAlgo, hashAlgorithm, body.signAlgoParams as string | undefined);
      if (!algo) throw invalidParameter(body.signAlgoParams !== undefined ? "signAlgoParams" : "signAlgo");
      const session = sessions.get(sad, client, body.credentialID);
      // The signature scheme and hash were fixed when the signer authorized: asking for others is refused.
      if (algo.hash !== session.input.hashAlgorithm || algo.scheme !== session.input.signatureAlgorithm) throw new CscError("invalid_request", "signAlgo or hashAlgorithmOID differs from the authorized transaction");
      const hashes = body.hashes.map((h) => decodeHash(h, algo.hash));
      const signatures = await session.sign(samOfId(client), hashes);
      sendJson(res, 200, { signatures: signatures.map((s) => Buffer.from(s).toString("base64")) });
    }),
  ];

  /**
   * The caller of a SAD-bearing method: a service token + `SAD`, or (oauth2code) the credential
   * access token itself as Bearer with no SAD (CSC v2: "not needed if the signing application has
   * passed an access token with scope credential").
   */
  async function sadCaller(req: IncomingMessage, res: RouteContext["res"]): Promise<{ client: string; sad: string; body: Record<string, unknown> }> {
    const token = bearer(req);
    if (!token) throw invalidToken(res);
    const body = await readBody(req);
    const serviceClientId = serviceTokens.clientOf(token);
    if (serviceClientId) {
      if (typeof body.SAD !== "string" || body.SAD.length === 0 || body.SAD.length > 512) throw missingParameter("SAD");
      return { client: serviceClientId, sad: body.SAD, body };
    }
    if (body.SAD !== undefined) throw invalidToken(res);
    // A credential token (oauth2code): the session it names carries its client.
    const session = sessions.peek(token);
    if (!session) throw invalidToken(res);
    return { client: session.input.clientId, sad: token, body };
  }
}

interface AuthorizationParams {
  credentialId: string;
  hashes: Uint8Array[];
  hashAlgorithm: HashAlgorithm;
  signAlgo: SignatureAlgorithm | undefined;
  description: string | undefined;
}

/**
 * credentialID, numSignatures, hashes, hashAlgorithmOID (+ description, and the gateway's optional
 * signAlgo: the scheme is fixed at authorization, as the SAM's transaction is) of both authorization
 * modes. SCAL 2: the hashes are required and numSignatures must equal their count.
 */
function authorizationParams(q: (name: string, alt?: string) => string | undefined, json?: Record<string, unknown>): AuthorizationParams {
  const credentialId = q("credentialID", "credential_id");
  if (typeof credentialId !== "string" || credentialId.length === 0) throw missingParameter("credentialID");
  const hashOid = q("hashAlgorithmOID", "hash_algorithm_oid");
  if (typeof hashOid !== "string") throw missingParameter("hashAlgorithmOID");
  const hashAlgorithm = hashOids[hashOid];
  if (hashAlgorithm === undefined) throw invalidParameter("hashAlgorithmOID");
  const rawHashes: unknown = json ? json.hashes : q("hashes")?.split(",");
  if (!Array.isArray(rawHashes) || rawHashes.length === 0 || rawHashes.length > maxHashes) throw missingParameter("hashes");
  const hashes = rawHashes.map((h) => decodeHash(h, hashAlgorithm));
  if (new Set(hashes.map((h) => Buffer.from(h).toString("hex"))).size !== hashes.length) throw invalidParameter("hashes");
  const n = json ? json.numSignatures : Number(q("numSignatures", "num_signatures"));
  if (n !== hashes.length) throw invalidParameter("numSignatures");
  const description = json ? json.description : q("description");
  if (description !== undefined && (typeof description !== "string" || description.length < 1 || description.length > 500 || /[\x00-\x1f\x7f]/.test(description))) throw invalidParameter("description");
  const signAlgoRaw = q("signAlgo");
  let signAlgo: SignatureAlgorithm | undefined;
  if (signAlgoRaw !== undefined) {
    const a = signAlgoOf(signAlgoRaw, hashAlgorithm, q("signAlgoParams"));
    if (!a) throw invalidParameter("signAlgo");
    signAlgo = a.scheme;
  }
  return { credentialId, hashes, hashAlgorithm, signAlgo, description: description as string | undefined };
}

/** `scope=credential` with the credential parameters in the query (CSC v2 8.4.2). */
function scopeCredential(q: (name: string, alt?: string) => string | undefined) {
  if (q("scope") !== "credential") throw new CscError("invalid_scope", "scope must be credential (or send authorization_details)");
  return q;
}

/**
 * `authorization_details` (RFC 9396) of type "credential", as CSC v2 and the EUDI clients send it
 * (rqes-csc-swift; eudi-lib-jvm-rqes-csc-kt `AuthorizationDetailTO`): [{ "type": "credential",
 * "credentialID", "numSignatures"?, "documentDigests": [{ "hash", "label" }], "hashAlgorithmOID" }].
 * Exactly one entry; its digests are the hashes; numSignatures, when sent, must equal their count.
 */
function fromAuthorizationDetails(raw: string | undefined): ((name: string, alt?: string) => string | undefined) | undefined {
  if (raw === undefined) return undefined;
  let details: unknown;
  try {
    details = JSON.parse(raw);
  } catch {
    throw invalidParameter("authorization_details");
  }
  const d = Array.isArray(details) && details.length === 1 ? (details[0] as Record<string, unknown>) : undefined;
  const digests = d?.documentDigests;
  if (!d || d.type !== "credential" || typeof d.credentialID !== "string" || typeof d.hashAlgorithmOID !== "string" || !Array.isArray(digests)
    || digests.some((x: unknown) => typeof (x as { hash?: unknown })?.hash !== "string")) throw invalidParameter("authorization_details");
  const hashes = digests.map((x: { hash: string }) => x.hash);
  // numSignatures is optional here; the EUDI Kotlin client (eudi-lib-jvm-rqes-csc-kt AuthorizationDetailTO) sends it as a string.
  const n = d.numSignatures === undefined ? String(hashes.length) : String(d.numSignatures);
  const values: Record<string, string> = { credentialID: d.credentialID, hashAlgorithmOID: d.hashAlgorithmOID, hashes: hashes.join(","), numSignatures: n };
  if (typeof d.signAlgo === "string") values.signAlgo = d.signAlgo;
  if (typeof d.signAlgoParams === "string") values.signAlgoParams = d.signAlgoParams;
  return (name) => values[name];
}

function decodeHash(h: unknown, hashAlgorithm: HashAlgorithm): Uint8Array {
  // Base64 (CSC v2 signHash) or base64url (oauth2/authorize's hashes): both decode the same.
  if (typeof h !== "string" || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(h)) throw invalidParameter("hashes");
  const bytes = Buffer.from(h.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (bytes.length !== hashLength[hashAlgorithm]) throw invalidParameter("hashes");
  return new Uint8Array(bytes);
}

/** authData [{id: "PIN", value}, {id: "OTP", value}] (CSC v2 11.6, rqes-csc-swift `AuthData`). */
function authDataOf(raw: unknown): { pin: string; otp: string } {
  if (!Array.isArray(raw)) throw missingParameter("authData");
  const value = (id: string) => {
    const found = raw.filter((x: unknown) => (x as { id?: unknown })?.id === id);
    const v = (found[0] as { value?: unknown } | undefined)?.value;
    if (found.length !== 1 || typeof v !== "string") throw missingParameter(`authData ${id}`);
    return v;
  };
  const pin = value("PIN");
  const otp = value("OTP");
  if (pin.length < 4 || pin.length > 64) throw invalidParameter("authData PIN");
  if (!/^[0-9]{6,8}$/.test(otp)) throw invalidParameter("authData OTP");
  return { pin, otp };
}

type CertificatesParam = "none" | "single" | "chain";

function certificatesParam(body: Record<string, unknown>): CertificatesParam {
  const v = body.certificates ?? "single";
  if (v !== "none" && v !== "single" && v !== "chain") throw invalidParameter("certificates");
  return v;
}

function optionalBoolean(body: Record<string, unknown>, name: string): boolean {
  const v = body[name];
  if (v !== undefined && typeof v !== "boolean") throw invalidParameter(name);
  return v === true;
}

/** A credential as CSC v2 credentialInfo: key, cert, auth, SCAL, multisign. */
function credentialInfo(c: CredentialInfo, o: { certificates: CertificatesParam; certInfo: boolean; authInfo: boolean }) {
  const key = keyInfoOf(c.keyAlgorithm);
  const chain = c.certificate?.chain ?? [];
  const explicit = !c.authenticationMethods.includes(AuthenticationMethod.DEVICE_KEY_AND_PIN) && c.authenticationMethods.includes(AuthenticationMethod.PIN_AND_TOTP);
  const cert: Record<string, unknown> = { status: certStatus(c.certificate?.status) };
  if (o.certificates !== "none") cert.certificates = (o.certificates === "single" ? chain.slice(0, 1) : chain).map((d) => Buffer.from(d).toString("base64"));
  if (o.certInfo && chain[0]) {
    const x = new X509Certificate(chain[0]);
    Object.assign(cert, { issuerDN: c.certificate!.issuerDn, subjectDN: c.certificate!.subjectDn, serialNumber: x.serialNumber, validFrom: generalizedTime(new Date(x.validFrom)), validTo: generalizedTime(new Date(x.validTo)) });
  }
  return {
    description: c.label || undefined,
    key: { status: c.status === CredentialStatus.ACTIVE ? "enabled" : "disabled", algo: key.algo, len: key.len, ...(key.curve ? { curve: key.curve } : {}) },
    cert,
    auth: {
      mode: explicit ? "explicit" : "oauth2code",
      ...(o.authInfo && explicit ? {
        expression: "PIN AND OTP",
        objects: [
          { type: "Password", id: "PIN", format: "N", label: "PIN", description: "The signer's PIN (the CSC client sees it in this mode)" },
          { type: "Password", id: "OTP", format: "N", generator: "totp", label: "OTP", description: "The current TOTP code" },
        ],
      } : {}),
    },
    // SCAL 2: the SAD is bound to the hashes (R.SAD's DTBS/R digest at the SAM).
    SCAL: "2",
    multisign: c.maxSignaturesPerTransaction || 1000,
    ...(c.assuranceLevel === AssuranceLevel.ASSURANCE_LEVEL_3 ? { signatureQualifier: "eu_eidas_qes" } : {}),
  };
}

function certStatus(s: CertificateStatus | undefined): string {
  switch (s) {
    case CertificateStatus.VALID: return "valid";
    case CertificateStatus.EXPIRED: return "expired";
    case CertificateStatus.REVOKED: return "revoked";
    case CertificateStatus.SUSPENDED: return "suspended";
    default: return "valid";
  }
}

/** X.509 GeneralizedTime as CSC v2 uses for validFrom/validTo (YYYYMMDDHHMMSSZ). */
const generalizedTime = (d: Date) => d.toISOString().replace(/[-:T]/g, "").replace(/\.\d{3}/, "");

function defaultScheme(c: CredentialInfo): SignatureAlgorithm {
  return c.signatureAlgorithms[0] ?? SignatureAlgorithm.UNSPECIFIED;
}

function credentialKey(c: CredentialInfo): Uint8Array {
  const leaf = c.certificate?.chain[0];
  return leaf ? new Uint8Array(new X509Certificate(leaf).publicKey.export({ format: "der", type: "spki" })) : c.publicKeySpki;
}

function expiryOf(ch: SadChallenge): Date {
  const t = ch.expiresAt;
  return t ? new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)) : new Date(Date.now());
}

const secondsUntil = (d: Date) => Math.max(0, Math.floor((d.getTime() - Date.now()) / 1000));

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  const m = typeof h === "string" ? /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(h) : null;
  return m?.[1];
}

/** RFC 6750 3.1: a 401 for a bearer token says so in WWW-Authenticate. */
function invalidToken(res: RouteContext["res"]): CscError {
  res.setHeader("WWW-Authenticate", 'Bearer error="invalid_token"');
  return new CscError("invalid_token", "the access token is missing, invalid or expired");
}

function redirectError(res: RouteContext["res"], redirectUri: string | undefined, error: string, description: string, state: string | undefined): void {
  if (!redirectUri) throw new CscError("invalid_request", description);
  const to = new URL(redirectUri);
  to.searchParams.set("error", error);
  to.searchParams.set("error_description", description);
  if (state !== undefined) to.searchParams.set("state", state);
  res.writeHead(302, { Location: to.toString() });
  res.end();
}

async function rawBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodyBytes) throw new CscError("payload_too_large", `the body is larger than ${maxBodyBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** A JSON object body (CSC v2: every method but oauth2 takes JSON); an empty body is {}. */
async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = (req.headers["content-type"] ?? "").toLowerCase();
  const text = await rawBody(req);
  if (text.length === 0) return {};
  if (!type.startsWith("application/json")) throw new CscError("unsupported_media_type", "the body must be application/json");
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new CscError("invalid_request", "the body is not JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new CscError("invalid_request", "the body must be a JSON object");
  return v as Record<string, unknown>;
}

/** oauth2/token: application/x-www-form-urlencoded (RFC 6749), or a JSON object of strings. */
async function readForm(req: IncomingMessage): Promise<Record<string, string>> {
  const type = (req.headers["content-type"] ?? "").toLowerCase();
  if (type.startsWith("application/json")) {
    const body = await readBody(req);
    if (Object.values(body).some((v) => typeof v !== "string")) throw new CscError("invalid_request", "every token request parameter is a string");
    return body as Record<string, string>;
  }
  if (!type.startsWith("application/x-www-form-urlencoded")) throw new CscError("unsupported_media_type", "the body must be application/x-www-form-urlencoded");
  const params = new URLSearchParams(await rawBody(req));
  const out: Record<string, string> = {};
  for (const [k, v] of params) {
    if (k in out) throw new CscError("invalid_request", `parameter ${k} is repeated`); // RFC 6749 3.2
    out[k] = v;
  }
  return out;
}

export const sha256Base64url = (v: string) => createHash("sha256").update(v).digest("base64url");
