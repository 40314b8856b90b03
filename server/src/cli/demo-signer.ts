/**
 * `inkan init --demo-signer` (issue 15; DEVELOPMENT ONLY): a demo signer with a certified P-256
 * credential, and a fresh activation code on every run. It works through the running SAM's admin
 * API (never on the data directory behind the server's back: the server's audit chain and sealed
 * records are written by the server alone), acting as `inkan init`'s development registration
 * operator, with the first security officer as the second person where dual control applies, and
 * certifying the key with the development signer issuing CA. What it made is remembered in
 * DIR/demo-signer.json (ids only, no secret), so a second run keeps the signer and its credential.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { anyUnpack, timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import {
  ActivationCodePart,
  ActivationCodeSchema,
  IdentityProofingMethod,
  IssueActivationCodeResponseSchema,
  RegistrationService,
  ResetFactorsResponseSchema,
  SignerKind,
  SignerStatus,
} from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { inkanErrorReason, Reason } from "@inkan/sdk";
import type { InitPaths } from "../init.js";
import { issueSignerCertificate, loadCertificateAuthority } from "../pki/dev-pki.js";
import { adminTransport, type AdminIdentity } from "./admin-identity.js";

/** What `--demo-signer` prints (with --json: this object). The code is printed once, never stored. */
export interface DemoSigner {
  signerId: string;
  credentialId: string;
  /** A fresh one-time activation code (two halves joined by "-" when dual control split it): enter it whole. */
  activationCode: string;
  expiresAt: string;
  /** True when this run enrolled the signer (false: it was kept and only a new code was issued). */
  created: boolean;
}

const iso = (t: Timestamp | undefined) => (t ? timestampDate(t).toISOString() : "");

/** What the demo signer needs of an initialized data directory (DevIdentityPaths reads it without opening the token or the store). */
export type DemoSignerPaths = Pick<InitPaths, "dataDir" | "caCert" | "adminCert" | "adminKey" | "adminRequestKey" | "adminUserId" | "registrationOperator" | "signerIssuingCaCert" | "signerIssuingCaKey">;

/** The state file: which signer and credential are the demo's. */
const stateFile = (dataDir: string) => join(dataDir, "demo-signer.json");

function identityOf(paths: DemoSignerPaths, target: string, who: "registrationOperator" | "securityOfficer"): AdminIdentity {
  const read = (f: string) => readFileSync(f, "utf8");
  const files = who === "registrationOperator"
    ? { cert: paths.registrationOperator.cert, key: paths.registrationOperator.key, requestKey: paths.registrationOperator.requestKey, userId: paths.registrationOperator.userId }
    : { cert: paths.adminCert, key: paths.adminKey, requestKey: paths.adminRequestKey, userId: paths.adminUserId };
  return { target, ca: read(paths.caCert), cert: read(files.cert), key: read(files.key), userId: files.userId, privateJwk: JSON.parse(read(files.requestKey)) as AdminIdentity["privateJwk"] };
}

/**
 * Enrolls the demo signer with a certified P-256 credential (first run), or keeps it (later runs),
 * and issues a fresh activation code through the SAM at `target`.
 */
export async function demoSigner(paths: DemoSignerPaths, target: string): Promise<DemoSigner> {
  const ra = createClient(RegistrationService, adminTransport(identityOf(paths, target, "registrationOperator")));
  const officer = createClient(PrivilegedUserService, adminTransport(identityOf(paths, target, "securityOfficer")));
  const known = existsSync(stateFile(paths.dataDir)) ? (JSON.parse(readFileSync(stateFile(paths.dataDir), "utf8")) as { signerId: string; credentialId: string }) : undefined;
  const signer = known ? await ra.getSigner({ signerId: known.signerId }).then((r) => r.signer, (err: unknown) => {
    if (inkanErrorReason(err) === Reason.SIGNER_NOT_FOUND) return undefined; // another store (a new data directory): start again
    throw err;
  }) : undefined;

  if (!known || !signer) {
    const { signer: enrolled } = await ra.enrollSigner({
      identity: { kind: SignerKind.NATURAL_PERSON, legalName: "Demo Signer", displayName: "Demo", email: "demo-signer@example.invalid", country: "JP" },
      proofing: { method: IdentityProofingMethod.IN_PERSON, evidenceReference: "inkan init --demo-signer (development only)", proofedAt: timestampFromDate(new Date(Date.now() - 60_000)) },
    });
    const signerId = enrolled!.signerId;
    // The first code before any key exists: one operator may issue it whole (T-2.2.2.1 applies to signers who hold a key).
    const { activationCode } = await ra.issueActivationCode({ signerId });
    const { credential } = await ra.generateKey({ signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "demo" });
    const issuer = await loadCertificateAuthority({ cert: readFileSync(paths.signerIssuingCaCert, "utf8"), key: readFileSync(paths.signerIssuingCaKey, "utf8") });
    const certificate = await issueSignerCertificate(issuer, credential!.publicKeySpki, { subject: "C=JP, O=Inkan development (demo), CN=Demo Signer" });
    await ra.importCertificate({ credentialId: credential!.credentialId, certificateChain: [certificate] });
    writeFileSync(stateFile(paths.dataDir), JSON.stringify({ signerId, credentialId: credential!.credentialId }) + "\n", { mode: 0o644 });
    return { signerId, credentialId: credential!.credentialId, activationCode: activationCode!.code, expiresAt: iso(activationCode!.expiresAt), created: true };
  }

  // Kept: a new code. The signer holds a key, so dual control splits it (T-2.2.2.1, T-2.2.2.3): the
  // operator asks (gets one half), the first security officer approves (gets the other).
  const active = signer.status === SignerStatus.ACTIVE;
  const ask = active
    ? ra.resetFactors({ signerId: known.signerId, reason: "inkan init --demo-signer: a new activation code (development only)" })
    : ra.issueActivationCode({ signerId: known.signerId });
  const refused = await ask.then((r) => r, (err: unknown) => ConnectError.from(err));
  if (!(refused instanceof ConnectError)) {
    // Dual control switched off by the policy: the operator got the whole code.
    const code = refused.activationCode!;
    return { ...known, activationCode: code.code, expiresAt: iso(code.expiresAt), created: false };
  }
  const held = refused.findDetails(ApprovalRequiredSchema)[0];
  const mine = refused.findDetails(ActivationCodeSchema).find((c) => c.part === ActivationCodePart.REQUESTER_HALF);
  if (refused.code !== Code.FailedPrecondition || !held || !mine) throw refused;
  const { pendingApproval } = await officer.approvePendingRequest({ pendingRequestId: held.pendingRequestId, requestDigest: held.requestDigest });
  const result = pendingApproval?.result;
  const response = result ? (active ? anyUnpack(result, ResetFactorsResponseSchema) : anyUnpack(result, IssueActivationCodeResponseSchema)) : undefined;
  const theirs = response?.activationCode;
  if (!theirs?.code) throw new Error(`the approval of the new activation code returned no code (${pendingApproval?.errorCode ?? "no result"})`);
  return { ...known, activationCode: `${mine.code}-${theirs.code}`, expiresAt: iso(theirs.expiresAt), created: false };
}
