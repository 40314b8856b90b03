/**
 * Replay, bypass and forgery through the CSC API (issue 16, `--protocol csc`): the suite is a CSC
 * client of the gateway, authorizes with the explicit mode (PIN + OTP of a signer it enrolled with
 * TOTP; oauth2code needs a person in the portal) and attacks what a CSC client holds: assertions,
 * service tokens, SADs, hashes and credential ids. A conforming gateway answers each with the CSC
 * error below and signs nothing for the attack.
 */
import { createHash, randomBytes } from "node:crypto";
import type { RequirementId } from "../requirement-ids.js";
import type { Session, TestSigner } from "../session.js";
import type { CscAnswer, CscClient } from "./csc-client.js";

export interface CscExpected {
  status: number;
  error: string;
}

export interface CscObservation {
  answer: CscAnswer;
  /** Signatures the attack obtained; must be 0. */
  signed: number;
  problems?: string[];
}

/** What a CSC case works with. */
export interface CscSession {
  client: CscClient;
  /** A second registered client, when given: the SAD of one must not work for the other. */
  otherClient: CscClient | undefined;
  /** A fresh signer with PIN + TOTP in the client's scope (enrolled through the SAM's admin API). */
  signer(): Promise<TestSigner>;
  /** A second credential of another signer in scope. */
  otherSigner(): Promise<TestSigner>;
  pin: string;
  otp(s: TestSigner): string;
  /** The SAM's own APIs (gRPC): enrolment, the signer's device, the admin API, for the cases' setup and checks. */
  sam: Session;
}

export interface CscCase {
  id: string;
  covers: RequirementId[];
  description: string;
  expected: CscExpected;
  run(s: CscSession): Promise<CscObservation>;
}

const sha256 = "2.16.840.1.101.3.4.2.1";
const ecdsaSha256 = "1.2.840.10045.4.3.2";
const invalidRequest = { status: 400, error: "invalid_request" };
export const hashes = (n: number) => Array.from({ length: n }, () => createHash("sha256").update(randomBytes(24)).digest("base64"));

/** credentials/authorize (explicit) for `list`: the SAD. */
export async function authorize(s: CscSession, signer: TestSigner, list: string[]): Promise<string> {
  const res = await s.client.call("credentials/authorize", {
    credentialID: signer.credentialId, numSignatures: list.length, hashes: list, hashAlgorithmOID: sha256, description: "Conformance (CSC)",
    authData: [{ id: "PIN", value: s.pin }, { id: "OTP", value: s.otp(signer) }],
  });
  if (res.status !== 200 || typeof res.body.SAD !== "string") throw new CscCaseSkipped(`explicit authorization is not available to the suite's client: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.SAD;
}

export class CscCaseSkipped extends Error {}

export const signHash = (c: CscClient, credentialID: string, SAD: string, list: string[]) =>
  c.call("signatures/signHash", { credentialID, SAD, hashes: list, hashAlgorithmOID: sha256, signAlgo: ecdsaSha256 });

const observe = (answer: CscAnswer): CscObservation => ({ answer, signed: Array.isArray(answer.body.signatures) ? answer.body.signatures.length : 0 });

/**
 * Signs one authorized hash, then asks the same SAD for it again: the second answer must be the
 * recorded signature (signed: 0), never a new one (signed: 1). Shared by `csc-replay-signed-hash`
 * and the catalogue's `replay-sad-token` over CSC.
 */
export async function signHashAgain(s: CscSession): Promise<CscObservation> {
  const signer = await s.signer();
  const list = hashes(1);
  const sad = await authorize(s, signer, list);
  const first = await signHash(s.client, signer.credentialId, sad, list);
  const again = await signHash(s.client, signer.credentialId, sad, list);
  // ECDSA signatures are randomized: a byte-equal answer is the recorded one, not a new signature.
  const same = JSON.stringify(first.body.signatures) === JSON.stringify(again.body.signatures);
  return { answer: again, signed: same ? 0 : 1, ...(first.status === 200 ? {} : { problems: [`the first signHash failed (${first.status})`] }) };
}

export const cscCases: CscCase[] = [
  {
    id: "csc-replay-client-assertion",
    covers: ["T-2.2.1.3"],
    description: "The client's private_key_jwt assertion, seen once, is presented again for a new access token. Its jti was used, so the gateway refuses it as a client authentication failure.",
    expected: { status: 401, error: "invalid_client" },
    async run(s) {
      const a = await s.client.assertion();
      const first = await s.client.clientCredentials(a);
      const o = observe(await s.client.clientCredentials(a));
      return first.status === 200 ? { ...o, signed: 0 } : { ...o, problems: ["the first use of the assertion was refused, so the replay proves nothing"] };
    },
  },
  {
    id: "csc-assertion-for-another-host",
    covers: ["T-2.2.1.3", "T-2.2.1.1"],
    description: "A client assertion made for another server's token endpoint (one the client also uses, or that captured it) is replayed here with that server's name in the Host header. The audience a gateway accepts is its own public URL, never what the request's Host header says, so the assertion is a client authentication failure; and info's oauth2 URL does not follow the Host header either.",
    expected: { status: 401, error: "invalid_client" },
    async run(s) {
      const elsewhere = "other-rssp.example";
      const forOther = await s.client.assertion(undefined, `https://${elsewhere}/csc/v2/oauth2/token`);
      const o = observe(await s.client.clientCredentials(forOther, { hostHeader: elsewhere }));
      const info = await s.client.call("info", {}, null, { hostHeader: elsewhere });
      const oauth2 = typeof info.body.oauth2 === "string" ? info.body.oauth2 : "";
      return oauth2.includes(elsewhere) ? { ...o, problems: [`info names the Host header's server as its OAuth 2.0 URL (${oauth2})`] } : o;
    },
  },
  {
    id: "csc-bypass-no-token",
    covers: ["T-2.2.1.1"],
    description: "signHash without any access token, with a SAD that was genuinely issued. The gateway requires the client's service authorization first.",
    expected: { status: 401, error: "invalid_token" },
    async run(s) {
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      return observe(await s.client.call("signatures/signHash", { credentialID: signer.credentialId, SAD: sad, hashes: list, hashAlgorithmOID: sha256, signAlgo: ecdsaSha256 }, null));
    },
  },
  {
    id: "csc-forged-sad",
    covers: ["T-2.2.1.1", "T-2.2.1.5"],
    description: "signHash with a made-up SAD of the right shape (the client never authorized). The SAD is the gateway's own opaque credential, so a guess matches nothing.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      return observe(await signHash(s.client, signer.credentialId, randomBytes(32).toString("base64url"), hashes(1)));
    },
  },
  {
    id: "csc-altered-sad",
    covers: ["T-2.2.1.4", "T-2.2.1.7"],
    description: "A genuine SAD with one character changed is presented with signHash. The gateway knows only the SADs it issued, refuses the altered one, and the genuine SAD still signs afterwards.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      const altered = sad.slice(0, -1) + (sad.endsWith("A") ? "B" : "A");
      const o = observe(await signHash(s.client, signer.credentialId, altered, list));
      if (o.answer.status === 200) return o;
      const genuine = await signHash(s.client, signer.credentialId, sad, list);
      return genuine.status === 200 ? o : { ...o, problems: [`the genuine SAD no longer signed after the refused attack (${genuine.status})`] };
    },
  },
  {
    id: "csc-hash-substitution",
    covers: ["T-2.2.1.6"],
    description: "After the signer authorized a list, the client asks signHash for a hash outside it. The SAD is bound to the authorized hashes, so the gateway refuses and signs nothing.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const sad = await authorize(s, signer, hashes(2));
      return observe(await signHash(s.client, signer.credentialId, sad, hashes(1)));
    },
  },
  {
    id: "csc-another-credential",
    covers: ["T-2.2.1.4"],
    description: "A SAD authorized for one credential is presented with another credential's id. The SAD is bound to its credential, so the gateway refuses it.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const other = await s.otherSigner();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      return observe(await signHash(s.client, other.credentialId, sad, list));
    },
  },
  {
    id: "csc-replay-sad-after-extend",
    covers: ["T-2.2.1.3"],
    description: "extendTransaction replaces the SAD; the client presents the old one again. The old SAD stopped working when the new one was issued.",
    expected: invalidRequest,
    async run(s) {
      const signer = await s.signer();
      const list = hashes(2);
      const sad = await authorize(s, signer, list);
      const ext = await s.client.call("credentials/extendTransaction", { credentialID: signer.credentialId, SAD: sad });
      const o = observe(await signHash(s.client, signer.credentialId, sad, list.slice(0, 1)));
      return ext.status === 200 ? o : { ...o, problems: [`extendTransaction failed (${ext.status}), so the replay proves nothing`] };
    },
  },
  {
    id: "csc-replay-signed-hash",
    covers: ["T-2.2.1.3", "T-2.2.1.6"],
    description: "The client asks again for a hash already signed under its SAD (a retry, or an attempt at a second signature). A conforming gateway answers with the recorded signature and makes no new one.",
    expected: { status: 200, error: "" },
    run: signHashAgain,
  },
  {
    id: "csc-sad-of-another-client",
    covers: ["T-2.2.1.4", "R-3.2.1.2"],
    description: "A second CSC client presents the first client's SAD (a leaked SAD). The SAD is bound to the client that obtained it, so the gateway refuses it as unknown.",
    expected: invalidRequest,
    async run(s) {
      if (!s.otherClient) throw new CscCaseSkipped("no second CSC client given (--csc-second-client-*)");
      const signer = await s.signer();
      const list = hashes(1);
      const sad = await authorize(s, signer, list);
      return observe(await signHash(s.otherClient, signer.credentialId, sad, list));
    },
  },
];
