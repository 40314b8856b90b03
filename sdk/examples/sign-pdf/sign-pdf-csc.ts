/**
 * The sign-pdf example through the CSC API v2 of the Inkan gateway (issue 16) instead of the SAP:
 * the same PAdES B-B preparation, with the CSC oauth2code flow for the signer's approval.
 *
 * 1. The SCA is a registered CSC client: oauth2/token (client_credentials, private_key_jwt) gives
 *    its service token; credentials/info gives the certificate chain.
 * 2. oauth2/authorize with the PDFs' DTBS/R (scope=credential, PKCE S256): the signer's browser
 *    opens it, approves in the portal (device key + PIN) and comes back to the redirect URI with a
 *    code. `approve` is that browser round trip: it gets the authorize URL and returns the URL the
 *    browser came back to.
 * 3. oauth2/token exchanges the code (with the PKCE verifier) for the SAD, which signs every hash in
 *    one signatures/signHash; each signature is checked against the certificate before use.
 */
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { request } from "node:https";
import { createSignatureVerifier, HashAlgorithm } from "@inkan/sdk";
import { importJWK, SignJWT, type JWK } from "jose";
import { embedSignature, preparePdf } from "./sign-pdf.js";

export interface CscClientOptions {
  /** https://gateway/csc/v2 */
  baseUrl: string;
  /** The CA of the gateway's HTTPS certificate (PEM). */
  ca: string;
  clientId: string;
  /** The client's ES256 private JWK, whose public half is registered with the gateway. */
  privateJwk: JWK;
  redirectUri: string;
}

export interface SignPdfsCscOptions {
  credentialId: string;
  name: string;
  /** Shown to the signer in the portal. */
  description: string;
  /** The signer's browser: opens `authorizeUrl`, returns the redirect URI it came back to (with code and state). */
  approve: (authorizeUrl: string) => Promise<string>;
}

const sha256Oid = "2.16.840.1.101.3.4.2.1";

/**
 * Signs PDFs under one CSC credential authorization (oauth2code). Returns the signed PDFs in input order.
 *
 * @example
 * const signed = await signPdfsViaCsc(csc, [readFileSync("contract.pdf")], { credentialId, name: "Sato Hanako",
 *   description: "Contract 42", approve: (url) => openInSignersBrowserAndWaitForRedirect(url) });
 */
export async function signPdfsViaCsc(csc: CscClientOptions, pdfs: Uint8Array[], o: SignPdfsCscOptions): Promise<Buffer[]> {
  const service = await token(csc, { grant_type: "client_credentials" });
  const info = await call(csc, "credentials/info", { credentialID: o.credentialId, certificates: "chain" }, service);
  const chain = ((info.cert as { certificates?: string[] } | undefined)?.certificates ?? []).map((c) => new Uint8Array(Buffer.from(c, "base64")));
  if (!chain.length) throw new Error("the credential has no certificate");
  const prepared = [];
  for (const pdf of pdfs) prepared.push(await preparePdf(pdf, { chain, name: o.name }));

  const verifier = randomBytes(32).toString("base64url");
  const state = randomBytes(16).toString("base64url");
  const query = new URLSearchParams({
    response_type: "code", client_id: csc.clientId, redirect_uri: csc.redirectUri, scope: "credential",
    code_challenge: createHash("sha256").update(verifier).digest("base64url"), code_challenge_method: "S256", state,
    credentialID: o.credentialId, numSignatures: String(prepared.length), hashAlgorithmOID: sha256Oid, description: o.description,
    hashes: prepared.map((p) => Buffer.from(p.dtbsr).toString("base64url")).join(","),
  });
  const back = new URL(await o.approve(`${csc.baseUrl}/oauth2/authorize?${query.toString()}`));
  if (back.searchParams.get("state") !== state) throw new Error("the authorization came back with another state");
  const code = back.searchParams.get("code");
  if (!code) throw new Error(`the signer did not authorize: ${back.searchParams.get("error") ?? "no code"} ${back.searchParams.get("error_description") ?? ""}`);
  const sad = await token(csc, { grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: csc.redirectUri });

  const leafKey = new X509Certificate(chain[0]!).publicKey.export({ format: "der", type: "spki" });
  const ec = new X509Certificate(chain[0]!).publicKey.asymmetricKeyType === "ec";
  const signed = await call(csc, "signatures/signHash", {
    credentialID: o.credentialId, hashes: prepared.map((p) => Buffer.from(p.dtbsr).toString("base64")), hashAlgorithmOID: sha256Oid,
    signAlgo: ec ? "1.2.840.10045.4.3.2" : "1.2.840.113549.1.1.11",
  }, sad);
  const signatures = (signed.signatures as string[]).map((s) => new Uint8Array(Buffer.from(s, "base64")));
  // Never embed a signature that does not verify against the certificate (T-2.2.1.8).
  const check = createSignatureVerifier({ spki: leafKey, hashAlgorithm: HashAlgorithm.SHA256, expectedSignatures: signatures.length });
  if (signatures.length !== prepared.length || prepared.some((p, i) => !check(p.dtbsr, signatures[i]!))) throw new Error("a signature does not verify against the certificate");
  return prepared.map((p, i) => embedSignature(p, signatures[i]!, chain));
}

async function token(csc: CscClientOptions, form: Record<string, string>): Promise<string> {
  const assertion = await new SignJWT({}).setProtectedHeader({ alg: "ES256" }).setIssuer(csc.clientId).setSubject(csc.clientId)
    .setAudience(`${csc.baseUrl}/oauth2/token`).setIssuedAt().setExpirationTime("2m").setJti(randomBytes(16).toString("base64url"))
    .sign(await importJWK(csc.privateJwk, "ES256"));
  const body = new URLSearchParams({ ...form, client_id: csc.clientId, client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion });
  const res = await post(csc, "oauth2/token", body.toString(), "application/x-www-form-urlencoded");
  return res.access_token as string;
}

const call = (csc: CscClientOptions, method: string, body: unknown, bearer: string) => post(csc, method, JSON.stringify(body), "application/json", bearer);

function post(csc: CscClientOptions, method: string, body: string, type: string, bearer?: string): Promise<Record<string, unknown>> {
  return new Promise((done, fail) => {
    const req = request(`${csc.baseUrl}/${method}`, { method: "POST", ca: csc.ca, headers: { "content-type": type, ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const json = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
        if (res.statusCode !== 200) fail(new Error(`${method}: ${res.statusCode} ${String(json.error)} ${String(json.error_description)}`));
        else done(json);
      });
      res.on("error", fail);
    });
    req.on("error", fail);
    req.end(body);
  });
}
