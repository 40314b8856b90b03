import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { InkanError } from "../errors.js";
import type { SapAuthorize } from "../sap/authorize.js";
import type { SapSignHash } from "../sap/sign-hash.js";
import type { SapSignStream } from "../sap/sign-stream.js";
import type { ScaCaller } from "../sap/transactions.js";
import { kCaller, kRequestId } from "./identity.js";

type Impl = Partial<ServiceImpl<typeof SignatureActivationService>>;

const invalid = (message: string, field: string): never => {
  throw new InkanError("INVALID_REQUEST", message, { field });
};

/** The calling SCA from its client certificate; the SCA-only access rule already ran. */
function callerOf(ctx: HandlerContext): ScaCaller {
  const caller = ctx.values.get(kCaller);
  if (!caller || caller.kind !== "sca") throw new InkanError("ROLE_NOT_PERMITTED", "only an SCA may call this method");
  return { certificateSha256: caller.sha256, subject: caller.subject, requestId: ctx.values.get(kRequestId) };
}

const optionalTimestamp = <K extends string>(key: K, d: Date | undefined) => (d ? { [key]: timestampFromDate(d) } : {}) as Partial<Record<K, ReturnType<typeof timestampFromDate>>>;

/**
 * SignatureActivationService Authorize, SignHash (methods 1 and 2, and the one-call form) and
 * SignStream: proto <-> domain mapping only; the rules live in sap/authorize.ts, sap/sign-hash.ts
 * and sap/sign-stream.ts. Spread into the same service object as GetInfo and the transaction RPCs.
 */
export function sapSigningService(authorize: SapAuthorize, signHash: SapSignHash, signStream: SapSignStream): Impl {
  return {
    async authorize(req, ctx) {
      const out = await authorize.authorize({ caller: callerOf(ctx), transactionId: req.transactionId, rSad: req.rSad });
      return { sadToken: out.sadToken, sadTokenExpiresAt: timestampFromDate(out.sadTokenExpiresAt), signaturesRemaining: out.signaturesRemaining };
    },
    async signHash(req, ctx) {
      const caller = callerOf(ctx);
      const { authorization: a, hashes } = req;
      const out =
        a.case === "inlineAuthorization" ? await signHash.signInline({ caller, transactionId: a.value.transactionId, rSad: a.value.rSad, hashes }, authorize)
        : a.case === "sadToken" ? await signHash.signHash({ caller, sadToken: a.value, hashes })
        : invalid("sad_token or inline_authorization is required", "sad_token");
      return {
        signatures: out.signatures,
        nextSadToken: out.nextSadToken,
        ...optionalTimestamp("nextSadTokenExpiresAt", out.nextSadTokenExpiresAt),
        signaturesRemaining: out.signaturesRemaining,
      };
    },
    async *signStream(req, ctx) {
      const caller = callerOf(ctx);
      for await (const m of signStream.signStream({ caller, sadToken: req.sadToken, startIndex: req.startIndex, signal: ctx.signal })) {
        yield {
          signatures: m.signatures,
          resumeToken: m.resumeToken,
          resumeIndex: m.resumeIndex,
          ...optionalTimestamp("resumeTokenExpiresAt", m.resumeTokenExpiresAt),
          signaturesRemaining: m.signaturesRemaining,
        };
      }
    },
  };
}
