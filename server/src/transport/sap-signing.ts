import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { InkanError } from "../errors.js";
import type { SapAuthorize } from "../sap/authorize.js";
import type { SapSignHash } from "../sap/sign-hash.js";
import type { ScaCaller } from "../sap/transactions.js";
import { kCaller, kRequestId } from "./identity.js";

type Impl = Partial<ServiceImpl<typeof SignatureActivationService>>;

/** The calling SCA from its client certificate; the SCA-only access rule already ran. */
function callerOf(ctx: HandlerContext): ScaCaller {
  const caller = ctx.values.get(kCaller);
  if (!caller || caller.kind !== "sca") throw new InkanError("ROLE_NOT_PERMITTED", "only an SCA may call this method");
  return { certificateSha256: caller.sha256, subject: caller.subject, requestId: ctx.values.get(kRequestId) };
}

/**
 * SignatureActivationService Authorize and SignHash (methods 1 and 2): proto <-> domain mapping
 * only; the rules live in sap/authorize.ts and sap/sign-hash.ts. Spread into the same service
 * object as GetInfo and the transaction RPCs.
 */
export function sapSigningService(authorize: SapAuthorize, signHash: SapSignHash): Impl {
  return {
    async authorize(req, ctx) {
      const out = await authorize.authorize({ caller: callerOf(ctx), transactionId: req.transactionId, rSad: req.rSad });
      return { sadToken: out.sadToken, sadTokenExpiresAt: timestampFromDate(out.sadTokenExpiresAt), signaturesRemaining: out.signaturesRemaining };
    },
    async signHash(req, ctx) {
      const caller = callerOf(ctx);
      if (req.authorization.case === "inlineAuthorization") {
        throw new InkanError("NOT_IMPLEMENTED", "SignHash with inline_authorization (the one-call form) is not implemented by this SAM yet: call Authorize, then SignHash with the SAD token");
      }
      if (req.authorization.case !== "sadToken") throw new InkanError("INVALID_REQUEST", "sad_token is required", { field: "sad_token" });
      const out = await signHash.signHash({ caller, sadToken: req.authorization.value, hashes: req.hashes });
      return {
        signatures: out.signatures,
        nextSadToken: out.nextSadToken,
        ...(out.nextSadTokenExpiresAt ? { nextSadTokenExpiresAt: timestampFromDate(out.nextSadTokenExpiresAt) } : {}),
        signaturesRemaining: out.signaturesRemaining,
      };
    },
  };
}
