/** `inkan admin signer ...`: RegistrationService's signer RPCs (registration operator). */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  IdentityProofingMethod,
  IssueActivationCodeResponseSchema,
  RegistrationService,
  ResetFactorsResponseSchema,
  SignerKind,
  SignerSchema,
  SignerStatus,
  type Signer,
} from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { AdminUsageError } from "./admin-identity.js";
import { enumOption, stringOption, type AdminContext, type Noun } from "./admin-command.js";
import { enumName, isoOf } from "./admin-output.js";

const reasonOption = { reason: { type: "string", help: "why, for the audit log (required)" } } as const;

export const signerColumns = [
  { header: "SIGNER_ID", value: (s: Signer) => s.signerId },
  { header: "STATUS", value: (s: Signer) => enumName(SignerStatus, s.status) },
  { header: "LEGAL_NAME", value: (s: Signer) => s.identity?.legalName ?? "" },
  { header: "EMAIL", value: (s: Signer) => s.identity?.email ?? "" },
  { header: "GROUP", value: (s: Signer) => s.group },
];

/** Fetches every page of a listing. */
export async function allPages<T>(fetch: (pageToken: string) => Promise<{ items: T[]; next: string }>, max = Infinity): Promise<T[]> {
  const all: T[] = [];
  let token = "";
  do {
    const { items, next } = await fetch(token);
    all.push(...items);
    token = next;
  } while (token && all.length < max);
  return all;
}

function printSigner(ctx: AdminContext, signer: Signer | undefined, title: string): void {
  if (signer) ctx.out.message(SignerSchema, signer, title);
}

/** Prints an activation code response: the one secret this command prints, for out-of-band delivery. */
function printCode(ctx: AdminContext, code: { code: string; expiresAt?: { seconds: bigint; nanos: number }; maxAttempts: number } | undefined): void {
  if (!code) return;
  ctx.out.note(`Activation code (shown once; deliver it to the signer out of band, not through the device's channel):\n  ${code.code}\n  expires ${isoOf(code.expiresAt)}, ${code.maxAttempts} attempts`);
}

export const signerNoun: Noun = {
  summary: "enroll and manage signers (registration operator)",
  verbs: {
    enroll: {
      summary: "enroll a signer whose identity you verified outside the SAM; prints the new signer and its signerId",
      help: "Next: `inkan admin signer activation-code SIGNER_ID`.",
      options: {
        "legal-name": { type: "string", help: "legal name (required)" },
        "display-name": { type: "string", help: "name shown to the signer (default: the legal name)" },
        email: { type: "string", help: "e-mail address" },
        phone: { type: "string", help: "phone number, E.164 (+81...)" },
        organization: { type: "string", help: "organization" },
        country: { type: "string", help: "ISO 3166 alpha-2 country code (JP)" },
        "external-id": { type: "string", help: "your own unique id for the signer" },
        kind: { type: "string", help: "natural-person (default) or legal-person" },
        proofing: { type: "string", help: "identity proofing method: in-person (default), remote, ..." },
        evidence: { type: "string", help: "reference to the proofing evidence (required with --proofing other)" },
        "proofed-at": { type: "string", help: "when the identity was proofed, ISO 8601 (default: now)" },
        group: { type: "string", help: "the signer group (SCA scopes), fixed at enrollment" },
      },
      async run(ctx, _args, o) {
        const legalName = stringOption(o, "legal-name", true);
        const proofedAt = stringOption(o, "proofed-at") ? new Date(stringOption(o, "proofed-at")!) : new Date(Date.now() - 1000);
        if (Number.isNaN(proofedAt.getTime())) throw new AdminUsageError(`--proofed-at ${stringOption(o, "proofed-at")}: not an ISO 8601 time`);
        const { signer } = await ctx.client(RegistrationService).enrollSigner({
          identity: {
            kind: enumOption(SignerKind, "SIGNER_KIND", "kind", stringOption(o, "kind") ?? "natural-person"),
            legalName,
            displayName: stringOption(o, "display-name") ?? legalName,
            email: stringOption(o, "email") ?? "",
            phoneNumber: stringOption(o, "phone") ?? "",
            organization: stringOption(o, "organization") ?? "",
            country: stringOption(o, "country") ?? "",
            externalId: stringOption(o, "external-id") ?? "",
          },
          proofing: {
            method: enumOption(IdentityProofingMethod, "IDENTITY_PROOFING_METHOD", "proofing", stringOption(o, "proofing") ?? "in-person"),
            evidenceReference: stringOption(o, "evidence") ?? "",
            proofedAt: timestampFromDate(proofedAt),
          },
          group: stringOption(o, "group") ?? "",
        });
        printSigner(ctx, signer, `Enrolled signer ${signer?.signerId}`);
      },
    },
    update: {
      args: "SIGNER_ID",
      summary: "change a signer's identity attributes or proofing record (verified outside the SAM); the rest is kept",
      help: "Only the fields given change; the signer must not have changed since it was read (else retry).",
      options: {
        "legal-name": { type: "string", help: "legal name" },
        "display-name": { type: "string", help: "name shown to the signer" },
        email: { type: "string", help: "e-mail address (\"\" to clear)" },
        phone: { type: "string", help: "phone number, E.164 (\"\" to clear)" },
        organization: { type: "string", help: "organization" },
        country: { type: "string", help: "ISO 3166 alpha-2 country code" },
        "external-id": { type: "string", help: "your own unique id for the signer" },
        proofing: { type: "string", help: "identity proofing method of the new proofing" },
        evidence: { type: "string", help: "reference to the new proofing evidence" },
        "proofed-at": { type: "string", help: "when the identity was proofed again, ISO 8601" },
      },
      async run(ctx, [signerId], o) {
        const ra = ctx.client(RegistrationService);
        const { signer } = await ra.getSigner({ signerId: signerId! });
        if (!signer?.identity || !signer.proofing) throw new Error(`the SAM returned signer ${signerId} without identity or proofing`);
        const identity = { ...signer.identity };
        const fields = [["legal-name", "legalName"], ["display-name", "displayName"], ["email", "email"], ["phone", "phoneNumber"], ["organization", "organization"], ["country", "country"], ["external-id", "externalId"]] as const;
        for (const [flag, field] of fields) {
          const v = stringOption(o, flag);
          if (v !== undefined) identity[field] = v;
        }
        const proofing = { ...signer.proofing };
        if (stringOption(o, "proofing")) proofing.method = enumOption(IdentityProofingMethod, "IDENTITY_PROOFING_METHOD", "proofing", stringOption(o, "proofing")!);
        if (stringOption(o, "evidence") !== undefined) proofing.evidenceReference = stringOption(o, "evidence")!;
        if (stringOption(o, "proofed-at")) {
          const d = new Date(stringOption(o, "proofed-at")!);
          if (Number.isNaN(d.getTime())) throw new AdminUsageError(`--proofed-at ${stringOption(o, "proofed-at")}: not an ISO 8601 time`);
          proofing.proofedAt = timestampFromDate(d);
        }
        const r = await ra.updateSigner({ signerId: signerId!, expectedVersion: signer.version, identity, proofing });
        printSigner(ctx, r.signer, `Updated signer ${signerId}`);
      },
    },
    show: {
      args: "SIGNER_ID",
      summary: "show one signer with a summary of its factors (no secrets)",
      async run(ctx, [signerId]) {
        const { signer } = await ctx.client(RegistrationService).getSigner({ signerId: signerId! });
        printSigner(ctx, signer, `Signer ${signerId}`);
      },
    },
    list: {
      summary: "list signers, oldest first",
      options: {
        status: { type: "string", help: "only this status: pending-activation, active, disabled" },
        email: { type: "string", help: "only this e-mail address" },
        "external-id": { type: "string", help: "only this external id" },
      },
      async run(ctx, _args, o) {
        const ra = ctx.client(RegistrationService);
        const status = stringOption(o, "status") ? enumOption(SignerStatus, "SIGNER_STATUS", "status", stringOption(o, "status")!) : SignerStatus.UNSPECIFIED;
        const signers = await allPages(async (pageToken) => {
          const r = await ra.listSigners({ page: { pageToken }, status, email: stringOption(o, "email") ?? "", externalId: stringOption(o, "external-id") ?? "" });
          return { items: r.signers, next: r.page?.nextPageToken ?? "" };
        });
        ctx.out.list(SignerSchema, signers, signerColumns);
      },
    },
    disable: {
      args: "SIGNER_ID",
      summary: "stop a signer at once: no activation, authorization or signing; open transactions end",
      options: reasonOption,
      async run(ctx, [signerId], o) {
        const { signer } = await ctx.client(RegistrationService).disableSigner({ signerId: signerId!, reason: stringOption(o, "reason", true) });
        printSigner(ctx, signer, `Disabled signer ${signerId}`);
      },
    },
    enable: {
      args: "SIGNER_ID",
      summary: "undo disable",
      options: reasonOption,
      async run(ctx, [signerId], o) {
        const { signer } = await ctx.client(RegistrationService).enableSigner({ signerId: signerId!, reason: stringOption(o, "reason", true) });
        printSigner(ctx, signer, `Enabled signer ${signerId}`);
      },
    },
    "activation-code": {
      args: "SIGNER_ID",
      summary: "issue the signer's one-time activation code; PRINTS THE CODE for out-of-band delivery",
      help: `The code is shown once: deliver it to the signer by a channel other than their device's.
For a signer who holds a credential the request is held for a second privileged user's approval
(exit 4): you get your half of the code now, the approver gets the other half.`,
      async run(ctx, [signerId]) {
        const r = await ctx.client(RegistrationService).issueActivationCode({ signerId: signerId! });
        if (ctx.json) ctx.out.message(IssueActivationCodeResponseSchema, r);
        else printCode(ctx, r.activationCode);
      },
    },
    "reset-factors": {
      args: "SIGNER_ID",
      summary: "revoke every factor (PIN, devices, TOTP) and issue a new code; PRINTS THE CODE or your half",
      help: `Verify the signer's identity outside the SAM first. For a signer who holds a credential the
reset is held for approval (exit 4) and nothing changes until a second privileged user approves it:
you get your half of the new code now; the approver gets the other half from
\`inkan admin approval approve ID\`. Deliver each half by a separate out-of-band channel.`,
      options: reasonOption,
      async run(ctx, [signerId], o) {
        const r = await ctx.client(RegistrationService).resetFactors({ signerId: signerId!, reason: stringOption(o, "reason", true) });
        if (ctx.json) {
          ctx.out.message(ResetFactorsResponseSchema, r);
          return;
        }
        printSigner(ctx, r.signer, `Reset the factors of signer ${signerId}`);
        printCode(ctx, r.activationCode);
      },
    },
    "revoke-device": {
      args: "SIGNER_ID DEVICE_KEY_ID",
      summary: "revoke one device key of a signer (a lost phone); other factors stay",
      options: reasonOption,
      async run(ctx, [signerId, deviceKeyId], o) {
        const { signer } = await ctx.client(RegistrationService).revokeDevice({ signerId: signerId!, deviceKeyId: deviceKeyId!, reason: stringOption(o, "reason", true) });
        printSigner(ctx, signer, `Revoked device ${deviceKeyId} of signer ${signerId}`);
      },
    },
    "reset-lockout": {
      args: "SIGNER_ID",
      summary: "clear failed factor attempts and unlock the signer's locked credentials",
      help: "Verify outside the SAM that the failed attempts were the signer's own first.",
      options: reasonOption,
      async run(ctx, [signerId], o) {
        const { signer } = await ctx.client(RegistrationService).resetLockout({ signerId: signerId!, reason: stringOption(o, "reason", true) });
        printSigner(ctx, signer, `Reset the lockout of signer ${signerId}`);
      },
    },
  },
};
