/**
 * Revoked factors and CSR approvals (issue 13 findings 2 and 4, T-2.1.2.2, R-3.1.3.2,
 * T-2.1.3.2): what a device authorized ends when the device is revoked or the signer's factors are
 * reset, and the SAD token of a signer's CSR approval signs the CSR and nothing else, also after the
 * certificate is imported.
 */
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { buildActivationRequest, createDeviceKey, Reason, type DeviceKey } from "@inkan/sdk";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { ActivationCodePart, ActivationCodeSchema, ResetFactorsResponseSchema, type PrepareCsrResponse } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { ChallengePurpose } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import { AssuranceLevel, KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import * as x509 from "@peculiar/x509";
import { CaseSkipped, type AttackCase } from "../case.js";
import { issueSignerCertificate, loadIssuer } from "../pki.js";
import { conformancePin, outcomeOf, type Outcome, type Session, type TestSigner } from "../session.js";

const revoked = { code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE };

/** A whole SignStream from `startIndex` (drained): how it ended. */
const streamed = (s: Session, token: string, startIndex: number): Promise<Outcome> =>
  outcomeOf((async () => {
    for await (const m of s.signStream(token, startIndex)) void m;
  })());

/** The second path must refuse as well: the token left valid by a refused SignHash is not good for SignStream either. */
async function streamRefused(s: Session, token: string, startIndex: number, what: string): Promise<string[]> {
  return (await streamed(s, token, startIndex)) === "succeeded" ? [`SignStream with ${what} succeeded`] : [];
}

/**
 * ResetFactors for `signerId` as the registration operator. For a signer who holds a credential the
 * SAM holds it for a second privileged user (registration.proto, dual_control.signer_rebinding):
 * the target's security officer approves, and the code comes in two halves. A target whose policy
 * does not hold it returns the whole code at once.
 */
export async function resetFactors(s: Session, signerId: string): Promise<string | [string, string]> {
  let held: ConnectError;
  try {
    const { activationCode } = await s.ra.resetFactors({ signerId, reason: "conformance: device lost, identity re-verified" });
    return activationCode!.code;
  } catch (err) {
    held = ConnectError.from(err);
  }
  const pending = held.findDetails(ApprovalRequiredSchema)[0];
  const mine = held.findDetails(ActivationCodeSchema).find((c) => c.part === ActivationCodePart.REQUESTER_HALF);
  if (!pending || !mine) throw held;
  const { pendingApproval } = await s.adminClient(PrivilegedUserService, s.target.admin).approvePendingRequest({ pendingRequestId: pending.pendingRequestId, requestDigest: pending.requestDigest });
  const response = pendingApproval?.result ? anyUnpack(pendingApproval.result, ResetFactorsResponseSchema) : undefined;
  if (!response?.activationCode?.code) throw new Error(`the approved ResetFactors returned no activation code (${pendingApproval?.errorCode || "no result"})`);
  return [mine.code, response.activationCode.code];
}

/** The signer activates again from a new device with `code` and the suite's PIN: the new device key. */
async function reactivate(s: Session, signerId: string, code: string | [string, string]): Promise<DeviceKey> {
  const ch = await s.device.createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
  const deviceKey = await createDeviceKey();
  const { request } = await buildActivationRequest({ signerId, activationCode: code, pin: conformancePin, deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
  await s.device.activate(request);
  return deviceKey;
}

/** The signer's approval of a prepared CSR through the SAP: one transaction whose only DTBS/R is the CSR's. */
async function approveCsr(s: Session, signer: TestSigner, credentialId: string, prepared: Pick<PrepareCsrResponse, "dtbsr" | "hashAlgorithm" | "signatureAlgorithm">): Promise<{ transactionId: string; token: string }> {
  const { sadChallenge: ch } = await s.sca.beginTransaction({
    credentialId, signerId: signer.signerId, hashAlgorithm: prepared.hashAlgorithm, signatureAlgorithm: prepared.signatureAlgorithm,
    numSignatures: 1, hashes: [prepared.dtbsr], description: "Inkan conformance suite: certificate request",
  });
  const { sadToken } = await s.sca.authorize({ transactionId: ch!.transactionId, rSad: await s.rSad(signer, ch!) });
  return { transactionId: ch!.transactionId, token: sadToken };
}

/** A certificate for the CSR, as the signer's CA would issue it: the CSR's signature checked, its key certified. */
async function certify(s: Session, csr: Uint8Array, credentialSpki: Uint8Array): Promise<Uint8Array> {
  const request = new x509.Pkcs10CertificateRequest(csr);
  if (!(await request.verify())) throw new Error("the CSR's signature does not verify");
  const spki = new Uint8Array(request.publicKey.rawData);
  if (Buffer.compare(Buffer.from(spki), Buffer.from(credentialSpki)) !== 0) throw new Error("the CSR does not carry the credential's public key");
  return issueSignerCertificate(await loadIssuer(s.target.signerIssuingCa), spki, "Conformance CSR signer");
}

export const revocationCases: AttackCase[] = [
  {
    kind: "attack",
    id: "revoked-device-rotated-token",
    covers: ["R-3.3.1", "T-2.1.2.2"],
    description: "A thief holds the signer's phone and an SCA-side SAD token: a transaction of three documents is authorized and one is signed, then the signer reports the phone stolen and a registration operator calls RevokeDevice. The rotated token is presented for the second document with SignHash, then with SignStream. RevokeDevice cancels what the device authorized: the transaction is revoked and nothing more is signed.",
    expected: revoked,
    async run(s) {
      const signer = await s.newSigner();
      const tx = await s.authorized(signer, 3);
      const first = await s.signHash(tx.token, [tx.hashes[0]!]);
      await s.ra.revokeDevice({ signerId: signer.signerId, deviceKeyId: signer.deviceKey.kid, reason: "conformance: phone stolen" });
      const outcome = await outcomeOf(s.signHash(first.nextSadToken, [tx.hashes[1]!]));
      const problems = await streamRefused(s, first.nextSadToken, 1, "the rotated token after RevokeDevice");
      return { outcome, signed: (await s.signaturesCreated(tx.ch.transactionId)) - 1, problems };
    },
  },
  {
    kind: "attack",
    id: "reset-factors-old-token",
    covers: ["R-3.3.1", "T-2.1.2.2"],
    description: "A transaction is authorized with the signer's device and its SAD token kept back. The signer loses the device: a registration operator resets the signer's factors (approved by the security officer where the SAM holds it for a second privileged user) and the signer activates again from a new device. The token from before the reset is then presented with SignHash and SignStream. ResetFactors cancels the signer's open transactions and tokens, so it signs nothing; a new authorization from the new device still signs.",
    expected: revoked,
    async run(s) {
      const signer = await s.newSigner();
      const tx = await s.authorized(signer, 2);
      const code = await resetFactors(s, signer.signerId);
      const deviceKey = await reactivate(s, signer.signerId, code);
      const outcome = await outcomeOf(s.signHash(tx.token, [tx.hashes[0]!]));
      const problems = await streamRefused(s, tx.token, 0, "the token from before ResetFactors");
      const signed = await s.signaturesCreated(tx.ch.transactionId);
      // Not vacuous: the re-activated signer signs with a new authorization.
      const fresh = await s.authorized({ ...signer, deviceKey }, 1);
      if ((await outcomeOf(s.signHash(fresh.token, fresh.hashes))) !== "succeeded") problems.push("the re-activated signer could not sign with a new authorization from the new device");
      return { outcome, signed, problems };
    },
  },
  {
    kind: "attack",
    id: "csr-approval-sign-hash",
    covers: ["R-3.1.3.2", "T-2.1.3.2"],
    description: "A credential's key is generated (no certificate yet) and PrepareCsr builds its CSR; the signer approves that CSR twice through the SAP, and the SCA keeps the second approval's SAD token. CreateCsr redeems the first; the signer issuing CA certifies the CSR's key and the certificate is imported, so the credential is active. The kept token is then presented with SignHash (and SignStream) for its DTBS/R. A CSR approval is CSR-only for its whole life: only CreateCsr redeems it, so the SAM refuses and signs nothing.",
    expected: revoked,
    async run(s) {
      const signer = await s.newSigner();
      const { credential: generated } = await s.ra.generateKey({ signerId: signer.signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "conformance csr", assuranceLevel: AssuranceLevel.ASSURANCE_LEVEL_UNSPECIFIED });
      const credentialId = generated!.credentialId;
      const prepared = await s.ra.prepareCsr({ credentialId, subject: "CN=Conformance CSR signer,O=Inkan conformance,C=JP" }).catch((err: unknown) => {
        if (ConnectError.from(err).code === Code.Unimplemented) throw new CaseSkipped("the target does not offer PrepareCsr (CSR approval through the SAP)");
        throw err;
      });
      const kept = await approveCsr(s, signer, credentialId, prepared);
      const approval = await approveCsr(s, signer, credentialId, prepared);
      const { csr } = await s.ra.createCsr({
        credentialId, certificationRequestInfo: prepared.certificationRequestInfo, hashAlgorithm: prepared.hashAlgorithm,
        signatureAlgorithm: prepared.signatureAlgorithm, transactionId: approval.transactionId, sadToken: approval.token,
      });
      await s.ra.importCertificate({ credentialId, certificateChain: [await certify(s, csr, generated!.publicKeySpki)] });
      const outcome = await outcomeOf(s.signHash(kept.token, [prepared.dtbsr]));
      const problems = await streamRefused(s, kept.token, 0, "the CSR approval's token");
      return { outcome, signed: await s.signaturesCreated(kept.transactionId), problems };
    },
  },
];
