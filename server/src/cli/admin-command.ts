/**
 * `inkan admin NOUN VERB [ARGS] [--json]`: one command group over the admin RPCs, each request
 * signed by the privileged user's request-signing key (the SDK's createAdminRequestSigner).
 *
 * Exit codes: 0 done; 1 failed (the SAM or the network failed: UNAVAILABLE, INTERNAL, ...);
 * 2 usage or identity-file problem (nothing was sent); 3 refused by the SAM (its reason is
 * printed); 4 held for approval under dual control (the pending request id is printed).
 */
import { parseArgs } from "node:util";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { reasonAdvice, toInkanError } from "@inkan/sdk";
import { ActivationCodePart, ActivationCodeSchema } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { ApprovalRequiredSchema } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { adminTransport, AdminUsageError, identityOptions, resolveIdentity, type IdentityFlags } from "./admin-identity.js";
import { createOutput, type Output } from "./admin-output.js";

export type OptionValues = Record<string, string | boolean | string[] | undefined>;

export interface VerbOption {
  type: "string" | "boolean";
  help: string;
  multiple?: boolean;
}

export interface Verb {
  /** The positional arguments, e.g. "SIGNER_ID"; optional ones in brackets. */
  args?: string;
  summary: string;
  /** More lines for `--help`. */
  help?: string;
  options?: Record<string, VerbOption>;
  run(ctx: AdminContext, args: string[], options: OptionValues): Promise<number | void>;
}

export interface Noun {
  summary: string;
  verbs: Record<string, Verb>;
}

export interface AdminContext {
  json: boolean;
  /** The identity flags given, and the environment (for commands that resolve the identity themselves). */
  identityFlags: IdentityFlags;
  env: NodeJS.ProcessEnv;
  out: Output;
  /** A client of `service` acting as the resolved privileged user (resolved on first use). */
  client<S extends DescService>(service: S): Client<S>;
}

export const exitCodes = { ok: 0, failed: 1, usage: 2, refused: 3, approvalRequired: 4 } as const;

const globalHelp = `Identity and connection (flag, else variable, else --from-init, else --data-dir):
${Object.entries(identityOptions).map(([k, o]) => `  --${`${k} ${k === "data-dir" ? "DIR" : k === "target" ? "URL" : k === "user-id" ? "ID" : k === "profile" ? "NAME" : k === "role" ? "ROLE" : "FILE"}`.padEnd(20)} ${o.env}: ${o.help}`).join("\n")}
  --json                  machine-readable output (one JSON value on stdout)
  --help                  this help
Exit codes: 0 done, 1 failed (SAM or network), 2 usage or unreadable identity file, 3 refused by
the SAM (reason printed), 4 held for a second privileged user's approval (pending id printed).`;

/** Runs `inkan admin ...` (argv after "admin") with the given command table; resolves to the exit code. */
export async function runAdmin(argv: string[], nouns: Record<string, Noun>, env: NodeJS.ProcessEnv = process.env, verbs: Record<string, Verb> = {}): Promise<number> {
  const { positionals: [nounName, verbName], rest, role } = splitNounVerb(argv);
  const topVerb = nounName === undefined ? undefined : verbs[nounName];
  if (topVerb) return runVerb(`inkan admin ${nounName}`, topVerb, verbName === undefined ? rest : [verbName, ...rest], env, role);
  const wantsHelp = rest.includes("--help") || rest.includes("-h") || nounName === "help";
  const noun = nounName === undefined ? undefined : nouns[nounName];
  if (!noun) {
    if (wantsHelp || nounName === undefined) {
      console.log(topHelp(nouns, verbs));
      return nounName === undefined && !wantsHelp ? exitCodes.usage : exitCodes.ok;
    }
    console.error(`inkan admin: unknown command "${nounName}"\n\n${topHelp(nouns, verbs)}`);
    return exitCodes.usage;
  }
  const verb = verbName === undefined ? undefined : noun.verbs[verbName];
  if (!verb) {
    const text = nounHelp(nounName!, noun);
    if (wantsHelp && verbName === undefined) {
      console.log(text);
      return exitCodes.ok;
    }
    console.error(verbName === undefined ? text : `inkan admin ${nounName}: unknown command "${verbName}"\n\n${text}`);
    return exitCodes.usage;
  }
  return runVerb(`inkan admin ${nounName} ${verbName}`, verb, rest, env, role);
}

async function runVerb(name: string, verb: Verb, rest: string[], env: NodeJS.ProcessEnv, role?: string): Promise<number> {
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(verbHelp(name, verb));
    return exitCodes.ok;
  }
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = { json: { type: "boolean" } };
  for (const k of Object.keys(identityOptions)) options[k] = { type: "string" };
  for (const [k, o] of Object.entries(verb.options ?? {})) options[k] = o.multiple ? { type: o.type, multiple: true } : { type: o.type };
  let values: OptionValues;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: rest, options, allowPositionals: true, strict: true }) as { values: OptionValues; positionals: string[] });
    const [min, max] = arity(verb.args ?? "");
    if (positionals.length < min || positionals.length > max) {
      throw new AdminUsageError(`expected ${verb.args ? verb.args : "no arguments"}, got ${positionals.length === 0 ? "none" : positionals.join(" ")}`);
    }
  } catch (err) {
    console.error(`${name}: ${(err as Error).message}\nusage: ${name}${verb.args ? ` ${verb.args}` : ""} [options]   (--help for more)`);
    return exitCodes.usage;
  }
  const json = values["json"] === true;
  const flags: IdentityFlags = {};
  for (const k of Object.keys(identityOptions) as (keyof typeof identityOptions)[]) {
    const v = values[k];
    if (typeof v === "string" && !(k === "role" && verb.options?.["role"])) flags[k] = v;
  }
  if (role !== undefined) flags.role = role; // issue 23: `inkan admin --role ROLE NOUN VERB`
  let transport: Transport | undefined;
  const ctx: AdminContext = {
    json,
    identityFlags: flags,
    env,
    out: createOutput(json),
    client: (service) => createClient(service, (transport ??= adminTransport(resolveIdentity(flags, env)))),
  };
  try {
    return (await verb.run(ctx, positionals, values)) ?? exitCodes.ok;
  } catch (err) {
    if (err instanceof AdminUsageError) {
      console.error(`${name}: ${err.message}`);
      return exitCodes.usage;
    }
    if (err instanceof ConnectError) return reportRefusal(name, err, json);
    console.error(`${name}: ${(err as Error).message}`);
    return exitCodes.failed;
  }
}

const failedCodes = new Set([Code.Unknown, Code.Internal, Code.Unavailable, Code.DeadlineExceeded, Code.DataLoss, Code.Canceled, Code.Unimplemented]);

/**
 * Prints a refusal: the reason, the SAM's message and what to do (the SDK's advice table). A
 * request held for approval prints its pending id, how to approve it and, for ResetFactors and
 * IssueActivationCode, the requester's half of the activation code: the one secret shown, because
 * the operator must deliver it to the signer.
 */
function reportRefusal(name: string, err: ConnectError, json: boolean): number {
  const e = toInkanError(err);
  const held = err.findDetails(ApprovalRequiredSchema)[0];
  const half = err.findDetails(ActivationCodeSchema).find((c) => c.part === ActivationCodePart.REQUESTER_HALF);
  const error = { code: Code[e.code], reason: e.reasonName, message: e.message, ...(e.field ? { field: e.field } : {}), ...(e.requestId ? { requestId: e.requestId } : {}) };
  if (json) {
    console.log(JSON.stringify({
      error,
      ...(held ? { approvalRequired: { pendingRequestId: held.pendingRequestId, method: held.method, requestDigest: Buffer.from(held.requestDigest).toString("hex"), expiresAt: held.expiresAt ? new Date(Number(held.expiresAt.seconds) * 1000).toISOString() : undefined } } : {}),
      ...(half ? { activationCode: { code: half.code, part: "REQUESTER_HALF", expiresAt: half.expiresAt ? new Date(Number(half.expiresAt.seconds) * 1000).toISOString() : undefined } } : {}),
    }));
  }
  if (held) {
    const lines = [
      `Held for approval (dual control): pending request ${held.pendingRequestId} (${held.method})`,
      `A second privileged user approves it with: inkan admin approval approve ${held.pendingRequestId}`,
    ];
    if (half) {
      lines.push(
        `Your half of the new activation code, shown once: deliver it to the signer out of band; the approver gets the other half:`,
        `  ${half.code}`,
      );
    }
    (json ? console.error : console.log)(lines.join("\n"));
    return exitCodes.approvalRequired;
  }
  console.error(`${name}: ${e.reasonName}: ${e.message}${e.field ? ` (field ${e.field})` : ""} [${Code[e.code]}]${e.requestId ? ` request ${e.requestId}` : ""}`);
  console.error(`  what to do: ${reasonAdvice(e.reason)}`);
  return failedCodes.has(e.code) ? exitCodes.failed : exitCodes.refused;
}

/** The first two words that are neither options nor values of identity options: NOUN and VERB. */
function splitNounVerb(argv: string[]): { positionals: string[]; rest: string[]; role?: string } {
  const positionals: string[] = [];
  const rest: string[] = [];
  let role: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    // Before NOUN VERB, --role is the identity's (a verb's own --role, as in `user create`, comes after).
    if (positionals.length < 2 && (a === "--role" || a.startsWith("--role="))) {
      role = a === "--role" ? argv[++i] : a.slice("--role=".length);
      continue;
    }
    if (positionals.length < 2 && !a.startsWith("-")) {
      positionals.push(a);
      continue;
    }
    rest.push(a);
    const name = a.replace(/^--?/, "");
    if (a.startsWith("--") && !a.includes("=") && name in identityOptions && i + 1 < argv.length) rest.push(argv[++i]!);
  }
  return { positionals, rest, ...(role !== undefined ? { role } : {}) };
}

function arity(args: string): [number, number] {
  const words = args.split(/\s+/).filter(Boolean);
  if (words.some((w) => w.includes("..."))) return [words.filter((w) => !w.startsWith("[")).length, Infinity];
  return [words.filter((w) => !w.startsWith("[")).length, words.length];
}

function topHelp(nouns: Record<string, Noun>, verbs: Record<string, Verb>): string {
  return `usage: inkan admin NOUN VERB [ARGS] [options] [--json]

${Object.entries(nouns).map(([n, v]) => `  ${n.padEnd(12)} ${v.summary}\n               ${Object.keys(v.verbs).join(", ")}`).join("\n")}
${Object.entries(verbs).map(([n, v]) => `  ${n.padEnd(12)} ${v.summary}`).join("\n")}

\`inkan admin NOUN --help\` lists a noun's commands, \`inkan admin NOUN VERB --help\` one command's options.
Secrets are read only from files and never printed, except an activation code (or its half) that the
operator must deliver to the signer.

${globalHelp}`;
}

function nounHelp(name: string, noun: Noun): string {
  return `inkan admin ${name}: ${noun.summary}

${Object.entries(noun.verbs).map(([v, verb]) => `  ${`${v}${verb.args ? ` ${verb.args}` : ""}`.padEnd(34)} ${verb.summary}`).join("\n")}

\`inkan admin ${name} VERB --help\` for a command's options.`;
}

function verbHelp(name: string, verb: Verb): string {
  const opts = Object.entries(verb.options ?? {}).map(([k, o]) => `  --${`${k}${o.type === "string" ? " VALUE" : ""}`.padEnd(24)} ${o.help}${o.multiple ? " (repeatable)" : ""}`);
  return [
    `usage: ${name}${verb.args ? ` ${verb.args}` : ""} [options]`,
    "",
    verb.summary,
    ...(verb.help ? ["", verb.help] : []),
    ...(opts.length > 0 ? ["", "Options:", ...opts] : []),
    "",
    globalHelp,
  ].join("\n");
}

/** The value of a string option, or a usage error naming it when it is required and missing. */
export function stringOption(options: OptionValues, name: string): string | undefined;
export function stringOption(options: OptionValues, name: string, required: true): string;
export function stringOption(options: OptionValues, name: string, required = false): string | undefined {
  const v = options[name];
  if (typeof v === "string") return v;
  if (required) throw new AdminUsageError(`--${name} is required`);
  return undefined;
}

/**
 * An enum value from a command-line word: "ec-p256", "EC_P256" or the full
 * "KEY_ALGORITHM_EC_P256" all name KeyAlgorithm.EC_P256.
 */
export function enumOption<E extends Record<string, string | number>>(e: E, prefix: string, flag: string, word: string): E[keyof E] {
  const key = word.trim().toUpperCase().replace(/-/g, "_").replace(new RegExp(`^${prefix}_`), "");
  let value = e[key];
  if (typeof value !== "number") value = e[`${prefix}_${key}`];
  if (typeof value !== "number" || value === 0) {
    const names = Object.keys(e).filter((k) => Number.isNaN(Number(k)) && e[k] !== 0).map((k) => k.toLowerCase().replace(/_/g, "-"));
    throw new AdminUsageError(`--${flag} ${word}: expected one of ${names.join(", ")}`);
  }
  return value as E[keyof E];
}
