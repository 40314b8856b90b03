import { timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { JweAlgorithm, TransactionState, type SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm as HashAlgorithmPb, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import type { HashAlgorithm, SignatureScheme } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { ChallengeSigner } from "../sap/challenge-signature.js";
import type { SadChallenge, SapTransactionState, SapTransactions, ScaCaller } from "../sap/transactions.js";
import { kCaller, kRequestId } from "./identity.js";
import { credentialInfoOut } from "./sca-credentials.js";

type Impl = Partial<ServiceImpl<typeof SignatureActivationService>>;

const hashIn: Partial<Record<HashAlgorithmPb, HashAlgorithm>> = {
  [HashAlgorithmPb.SHA256]: "SHA256",
  [HashAlgorithmPb.SHA384]: "SHA384",
  [HashAlgorithmPb.SHA512]: "SHA512",
  [HashAlgorithmPb.NONE]: "NONE",
};
const hashOut: Record<HashAlgorithm, HashAlgorithmPb> = { SHA256: HashAlgorithmPb.SHA256, SHA384: HashAlgorithmPb.SHA384, SHA512: HashAlgorithmPb.SHA512, NONE: HashAlgorithmPb.NONE };
const schemeIn: Partial<Record<SignatureAlgorithm, SignatureScheme>> = {
  [SignatureAlgorithm.ECDSA]: "ECDSA",
  [SignatureAlgorithm.RSA_PKCS1_V1_5]: "RSA_PKCS1_V1_5",
  [SignatureAlgorithm.RSA_PSS]: "RSA_PSS",
  [SignatureAlgorithm.ED25519]: "ED25519",
};
const stateOut: Record<SapTransactionState, TransactionState> = {
  UPLOADING: TransactionState.UPLOADING,
  PENDING: TransactionState.PENDING,
  AUTHORIZED: TransactionState.AUTHORIZED,
  COMPLETED: TransactionState.COMPLETED,
  CANCELLED: TransactionState.CANCELED,
  EXPIRED: TransactionState.EXPIRED,
  REVOKED: TransactionState.REVOKED,
  FAILED: TransactionState.FAILED,
};

/** The calling SCA from its client certificate; the SCA-only access rule already ran. */
function callerOf(ctx: HandlerContext): ScaCaller {
  const caller = ctx.values.get(kCaller);
  if (!caller || caller.kind !== "sca") throw new InkanError("ROLE_NOT_PERMITTED", "only an SCA may call this method");
  return { certificateSha256: caller.sha256, subject: caller.subject, requestId: ctx.values.get(kRequestId), scope: { spkiSha256: caller.spkiSha256, issuerSha256: caller.issuerSha256 } };
}

const durationToMs = (d: Duration): number => Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);

/**
 * SignatureActivationService BeginTransaction, AppendHashes, SealTransaction and
 * CancelTransaction: proto <-> domain mapping only; the rules live in sap/transactions.ts. The
 * SCA's identity (its certificate) comes from the transport, never from the request. Spread into
 * the same service object as GetInfo.
 */
export function sapTransactionsService(transactions: SapTransactions, challengeSigner: Pick<ChallengeSigner, "sign">): Impl {
  const challengeOut = async (c: SadChallenge) => {
    const info = credentialInfoOut(c.credential, c.policy); // the version the call read (issue 20: once per call)
    const hashAlgorithm = hashOut[c.hashAlgorithm];
    const alg = JweAlgorithm.ECDH_ES_A256KW;
    // T-2.2.1.7: every SadChallenge leaves signed by the SAM, over exactly the values it carries.
    const samSignature = await challengeSigner.sign({ ...c, hashAlgorithm, encryptionKey: { ...c.encryptionKey, alg }, assuranceLevel: info.assuranceLevel, authenticationMethods: info.authenticationMethods });
    return {
      transactionId: c.transactionId,
      signerId: c.signerId,
      credentialId: c.credentialId,
      audience: c.audience,
      challenge: c.challenge,
      dtbsrDigest: c.dtbsrDigest,
      hashAlgorithm,
      numSignatures: c.numSignatures,
      description: c.description,
      expiresAt: timestampFromDate(c.expiresAt),
      encryptionKey: {
        kid: c.encryptionKey.kid,
        alg,
        jwk: JSON.stringify(c.encryptionKey.jwk),
        current: c.encryptionKey.current,
        ...(c.encryptionKey.notAfter ? { notAfter: timestampFromDate(c.encryptionKey.notAfter) } : {}),
      },
      assuranceLevel: info.assuranceLevel,
      authenticationMethods: info.authenticationMethods,
      samSignature,
    };
  };
  return {
    async beginTransaction(req, ctx) {
      const hashAlgorithm = hashIn[req.hashAlgorithm];
      if (!hashAlgorithm) throw new InkanError("INVALID_REQUEST", "hash_algorithm is required", { field: "hash_algorithm" });
      const out = await transactions.begin({
        caller: callerOf(ctx),
        credentialId: req.credentialId,
        signerId: req.signerId,
        hashAlgorithm,
        signatureScheme: schemeIn[req.signatureAlgorithm],
        signatureFormat: req.signatureFormat,
        numSignatures: req.numSignatures,
        hashes: req.hashes,
        description: req.description,
        lifetimeMs: req.lifetime ? durationToMs(req.lifetime) : undefined,
        onBehalfOf: req.onBehalfOf || undefined,
      });
      if (out.state === "UPLOADING") {
        return {
          transactionId: out.transactionId,
          state: TransactionState.UPLOADING,
          hashesReceived: out.hashesReceived,
          nextChunkIndex: out.nextChunkIndex,
          uploadExpiresAt: timestampFromDate(out.uploadExpiresAt),
        };
      }
      return { transactionId: out.transactionId, state: TransactionState.PENDING, hashesReceived: out.hashesReceived, nextChunkIndex: 0, sadChallenge: await challengeOut(out.sadChallenge) };
    },
    async appendHashes(req, ctx) {
      const out = await transactions.append({ caller: callerOf(ctx), transactionId: req.transactionId, chunkIndex: req.chunkIndex, hashes: req.hashes });
      return { hashesReceived: out.hashesReceived, nextChunkIndex: out.nextChunkIndex, uploadExpiresAt: timestampFromDate(out.uploadExpiresAt) };
    },
    async sealTransaction(req, ctx) {
      const out = await transactions.sealUpload({ caller: callerOf(ctx), transactionId: req.transactionId, dtbsrDigest: req.dtbsrDigest });
      return { sadChallenge: await challengeOut(out) };
    },
    async cancelTransaction(req, ctx) {
      const out = await transactions.cancel({ caller: callerOf(ctx), transactionId: req.transactionId });
      return { state: stateOut[out.state], signaturesCreated: out.signaturesCreated };
    },
  };
}
