/**
 * `inkan admin policy ...`: the security policy (PolicyService, security officer). A change is held
 * for a second security officer's approval by default (exit 4, then `approval approve`).
 */
import { readFileSync } from "node:fs";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import {
  PolicyService,
  SecurityPolicyRecordSchema,
  SecurityPolicySchema,
  type SecurityPolicy,
} from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { AdminUsageError } from "./admin-identity.js";
import { stringOption, type AdminContext, type Noun } from "./admin-command.js";
import { adminRegistry, isoOf, jsonOf } from "./admin-output.js";

/**
 * The policy in a file: the JSON of a SecurityPolicy message, or `policy show --json` output (a
 * SecurityPolicyRecord: its `policy` is taken, and its `version` as the version the change expects).
 */
function readPolicyFile(file: string): { policy: SecurityPolicy; version?: bigint } {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new AdminUsageError(`${file}: not readable as JSON (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const record = typeof value === "object" && value !== null && "policy" in value ? (value as { policy: unknown; version?: unknown }) : undefined;
  try {
    const policy = fromJson(SecurityPolicySchema, (record ? record.policy : value) as JsonValue, { registry: adminRegistry });
    return record?.version !== undefined ? { policy, version: BigInt(record.version as string) } : { policy };
  } catch (err) {
    throw new AdminUsageError(`${file}: not a SecurityPolicy in JSON: ${(err as Error).message}`);
  }
}

async function current(ctx: AdminContext) {
  const { record } = await ctx.client(PolicyService).getSecurityPolicy({});
  if (!record?.policy) throw new Error("the SAM returned no policy");
  return record;
}

interface Change {
  path: string;
  from: JsonValue | undefined;
  to: JsonValue | undefined;
}

/** The fields that differ between two JSON values, by dotted path (arrays compared whole). */
function diff(a: JsonValue | undefined, b: JsonValue | undefined, path = ""): Change[] {
  const isObj = (v: unknown): v is Record<string, JsonValue> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diff(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [{ path: path || "(policy)", from: a, to: b }];
}

export const policyNoun: Noun = {
  summary: "show, compare and change the security policy (security officer)",
  verbs: {
    show: {
      summary: "show the policy in force and its version (--json: a record `policy set` and `policy diff` accept)",
      async run(ctx) {
        const record = await current(ctx);
        if (ctx.json) {
          ctx.out.message(SecurityPolicyRecordSchema, record);
          return;
        }
        console.log(`Security policy version ${record.version}, updated ${isoOf(record.updatedAt)}${record.updatedBy ? ` by ${record.updatedBy}` : ""}${record.approvedBy ? `, approved by ${record.approvedBy}` : ""}`);
        console.log(JSON.stringify(jsonOf(SecurityPolicySchema, record.policy!), null, 2));
      },
    },
    diff: {
      args: "FILE",
      summary: "compare the policy in force with a policy file (SecurityPolicy JSON or `policy show --json`)",
      async run(ctx, [file]) {
        const { policy } = readPolicyFile(file!);
        const record = await current(ctx);
        const changes = diff(jsonOf(SecurityPolicySchema, record.policy!), jsonOf(SecurityPolicySchema, policy));
        if (ctx.json) {
          console.log(JSON.stringify({ version: record.version.toString(), equal: changes.length === 0, changes }));
          return;
        }
        if (changes.length === 0) {
          console.log(`${file} equals the policy in force (version ${record.version})`);
          return;
        }
        console.log(`Differences from the policy in force (version ${record.version}) to ${file}:`);
        for (const c of changes) console.log(`  ${c.path}: ${JSON.stringify(c.from) ?? "(unset)"} -> ${JSON.stringify(c.to) ?? "(unset)"}`);
      },
    },
    set: {
      args: "FILE",
      summary: "replace the policy with a policy file; held for a second security officer's approval by default",
      help: `FILE is the JSON of a SecurityPolicy message (proto JSON names, e.g. "lockoutThreshold"), or
\`inkan admin policy show --json\` output edited in place. The change applies only if the policy is
still at the version read (--expected-version, else the file's "version", else the version in force
now). Review with \`inkan admin policy diff FILE\` first. Under dual control (the default) this exits
4 with the pending request id; a second security officer runs \`inkan admin approval approve ID\`.`,
      options: { "expected-version": { type: "string", help: "the version the change replaces (0 only to restore a policy that failed its integrity check)" } },
      async run(ctx, [file], o) {
        const { policy, version } = readPolicyFile(file!);
        const flag = stringOption(o, "expected-version");
        if (flag !== undefined && !/^\d+$/.test(flag)) throw new AdminUsageError(`--expected-version ${flag}: not a version number`);
        const expectedVersion = flag !== undefined ? BigInt(flag) : (version ?? (await current(ctx)).version);
        const { record } = await ctx.client(PolicyService).updateSecurityPolicy({ expectedVersion, policy });
        if (record) ctx.out.message(SecurityPolicyRecordSchema, record, `Security policy version ${record.version} is in force`);
      },
    },
  },
};
