/**
 * `inkan admin audit ...`: the audit log over AuditService (auditor, read-only). `verify` asks the
 * SAM to verify its chains; `export` writes the JSON Lines export that `inkan audit verify --file`
 * checks offline with the key `audit keys --out` writes.
 */
import { createWriteStream, writeFileSync } from "node:fs";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AuditKeySchema,
  AuditOutcome,
  AuditRecordSchema,
  AuditService,
  VerifyAuditLogResponseSchema,
  type AuditRecord,
} from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { Reason } from "@inkan/sdk";
import { AdminUsageError } from "./admin-identity.js";
import { enumOption, stringOption, type Noun, type OptionValues } from "./admin-command.js";
import { enumName, isoOf } from "./admin-output.js";
import { allPages } from "./admin-signer.js";

const columns = [
  { header: "NODE", value: (r: AuditRecord) => r.nodeId },
  { header: "SEQ", value: (r: AuditRecord) => r.sequence.toString() },
  { header: "OCCURRED_AT", value: (r: AuditRecord) => isoOf(r.occurredAt) },
  { header: "EVENT", value: (r: AuditRecord) => r.eventType },
  { header: "OUTCOME", value: (r: AuditRecord) => enumName(AuditOutcome, r.outcome) },
  { header: "ACTOR", value: (r: AuditRecord) => r.actor?.id ?? "" },
  { header: "REASON", value: (r: AuditRecord) => (r.reason ? enumName(Reason, r.reason) : "") },
  { header: "SUBJECT", value: (r: AuditRecord) => r.signerId || r.credentialId || r.subjectUserId || r.pendingRequestId },
];

function timeOption(o: OptionValues, name: string) {
  const v = stringOption(o, name);
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new AdminUsageError(`--${name} ${v}: not an ISO 8601 time`);
  return timestampFromDate(d);
}

function sequenceOption(o: OptionValues, name: string): bigint {
  const v = stringOption(o, name);
  if (v === undefined) return 0n;
  if (!/^\d+$/.test(v)) throw new AdminUsageError(`--${name} ${v}: not a sequence number`);
  return BigInt(v);
}

export const auditNoun: Noun = {
  summary: "list, verify and export the audit log (auditor)",
  verbs: {
    list: {
      summary: "list audit records matching every filter given, oldest first",
      options: {
        since: { type: "string", help: "records at or after this time, ISO 8601" },
        until: { type: "string", help: "records before this time, ISO 8601" },
        event: { type: "string", multiple: true, help: "only this event type, e.g. signer.enrolled" },
        actor: { type: "string", help: "only records by this actor id" },
        signer: { type: "string", help: "only records about this signer id" },
        credential: { type: "string", help: "only records about this credential id" },
        node: { type: "string", help: "only this SAM node" },
        outcome: { type: "string", help: "success, denied or failure" },
        limit: { type: "string", help: "at most this many records (default: all)" },
      },
      async run(ctx, _args, o) {
        const limit = stringOption(o, "limit");
        if (limit !== undefined && !/^\d+$/.test(limit)) throw new AdminUsageError(`--limit ${limit}: not a number`);
        const max = limit === undefined ? Infinity : Number(limit);
        const startTime = timeOption(o, "since");
        const endTime = timeOption(o, "until");
        const audit = ctx.client(AuditService);
        const records = await allPages(async (pageToken) => {
          const r = await audit.listAuditRecords({
            page: { pageToken, pageSize: Math.min(1000, max === Infinity ? 1000 : max) },
            ...(startTime ? { startTime } : {}),
            ...(endTime ? { endTime } : {}),
            eventTypes: (o["event"] as string[] | undefined) ?? [],
            actorId: stringOption(o, "actor") ?? "",
            signerId: stringOption(o, "signer") ?? "",
            credentialId: stringOption(o, "credential") ?? "",
            nodeId: stringOption(o, "node") ?? "",
            outcome: stringOption(o, "outcome") ? enumOption(AuditOutcome, "AUDIT_OUTCOME", "outcome", stringOption(o, "outcome")!) : AuditOutcome.UNSPECIFIED,
          });
          return { items: r.records, next: r.page?.nextPageToken ?? "" };
        }, max);
        ctx.out.list(AuditRecordSchema, records.slice(0, max), columns);
      },
    },
    verify: {
      summary: "have the SAM verify every node's chain and checkpoints; exit 1 when a chain is broken",
      help: "To verify without trusting the SAM, export the log and run `inkan audit verify --file EXPORT --public-key KEY`.",
      options: { node: { type: "string", help: "only this SAM node" } },
      async run(ctx, _args, o) {
        const r = await ctx.client(AuditService).verifyAuditLog({ nodeId: stringOption(o, "node") ?? "" });
        if (ctx.json) {
          ctx.out.message(VerifyAuditLogResponseSchema, r);
        } else {
          for (const n of r.nodes) {
            console.log(
              n.problem
                ? `node ${n.nodeId}: BROKEN at sequence ${n.problem.firstBadSequence}: ${n.problem.kind} (${n.problem.description})`
                : `node ${n.nodeId}: OK, ${n.recordsChecked} records, last checkpoint ${n.lastCheckpointSequence}, crypto module checkpoint ${n.moduleCheckpointSequence}`,
            );
          }
          console.log(r.ok ? "OK" : "BROKEN");
        }
        return r.ok ? 0 : 1;
      },
    },
    export: {
      summary: "write the signed JSON Lines export (records and checkpoints) to --out; progress on stderr",
      options: {
        out: { type: "string", help: "the file to write (required)" },
        node: { type: "string", help: "only this SAM node (needed with --from/--to)" },
        from: { type: "string", help: "first sequence number" },
        to: { type: "string", help: "last sequence number (the tail after the last checkpoint needs `inkan audit verify --partial`)" },
      },
      async run(ctx, _args, o) {
        const out = stringOption(o, "out", true);
        const stream = ctx.client(AuditService).exportAuditLog({
          nodeId: stringOption(o, "node") ?? "",
          fromSequence: sequenceOption(o, "from"),
          toSequence: sequenceOption(o, "to"),
        });
        const file = createWriteStream(out, { mode: 0o600 });
        const opened = new Promise<void>((resolve, reject) => file.once("open", () => resolve()).once("error", reject));
        let bytes = 0;
        let lines = 0;
        let records = 0;
        // Issue 23: a progress bar on a terminal only; nothing with --json or when stderr is piped.
        const to = sequenceOption(o, "to");
        const from = sequenceOption(o, "from");
        const total = stringOption(o, "node") !== undefined && to > 0n ? Number(to - (from > 0n ? from : 1n) + 1n) : undefined;
        const progress = createProgress(process.stderr, { enabled: !ctx.json, ...(total !== undefined && total > 0 ? { total } : {}) });
        const text = new TextDecoder();
        try {
          await opened;
          for await (const chunk of stream) {
            bytes += chunk.data.length;
            for (const b of chunk.data) if (b === 10) lines += 1;
            records += text.decode(chunk.data).split("\n").filter((l) => l.startsWith('{"type":"record"')).length;
            if (!file.write(chunk.data)) await new Promise<void>((r) => file.once("drain", () => r()));
            progress.update(records, bytes);
          }
        } finally {
          progress.done();
          await new Promise<void>((resolve) => file.end(resolve));
        }
        ctx.out.value({ file: out, lines, bytes }, `Exported ${lines} lines (${bytes} bytes) to ${out}`);
      },
    },
    keys: {
      summary: "list the audit-signing public keys; --out writes the current one for `inkan audit verify --file`",
      options: { out: { type: "string", help: "write the current (unretired) key's JWK to this file" } },
      async run(ctx, _args, o) {
        const { keys } = await ctx.client(AuditService).listAuditKeys({});
        const out = stringOption(o, "out");
        if (out) {
          const currentKey = keys.find((k) => !k.retiredAt) ?? keys[keys.length - 1];
          if (!currentKey) throw new Error("the SAM listed no audit key");
          writeFileSync(out, currentKey.publicKeyJwk + "\n");
          ctx.out.note(`Wrote audit key ${currentKey.keyId} to ${out}`);
        }
        ctx.out.list(AuditKeySchema, keys, [
          { header: "KEY_ID", value: (k) => k.keyId },
          { header: "CREATED_AT", value: (k) => isoOf(k.createdAt) },
          { header: "RETIRED_AT", value: (k) => isoOf(k.retiredAt) },
        ]);
      },
    },
  },
};

/** Where a progress bar is drawn: a terminal says so with isTTY (and its width in columns). */
export interface ProgressSink {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

/**
 * Issue 23: the export's progress on a terminal, one line redrawn at most ten times a second: a bar
 * with the percentage when the number of records is known (--node with --to), otherwise the count;
 * records, MiB and records per second either way. Draws nothing unless `enabled` and the sink is a
 * TTY, so scripts (--json, stderr piped to a file) see no control characters. done() clears it.
 */
export function createProgress(sink: ProgressSink, o: { enabled: boolean; total?: number; now?: () => number }): { update(records: number, bytes: number): void; done(): void } {
  if (!o.enabled || !sink.isTTY) return { update: () => undefined, done: () => undefined };
  const now = o.now ?? (() => performance.now());
  const started = now();
  let last = Number.NEGATIVE_INFINITY;
  let drawn = false;
  const draw = (records: number, bytes: number) => {
    const seconds = Math.max((now() - started) / 1000, 0.001);
    const facts = `${records.toLocaleString("en-US")}${o.total ? `/${o.total.toLocaleString("en-US")}` : ""} records  ${(bytes / 1048576).toFixed(1)} MiB  ${Math.round(records / seconds).toLocaleString("en-US")} rec/s`;
    let bar = "";
    if (o.total) {
      const share = Math.min(1, records / o.total);
      const width = Math.max(10, Math.min(40, (sink.columns ?? 80) - facts.length - 10));
      const filled = Math.round(share * width);
      bar = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(Math.floor(share * 100)).padStart(3)}%  `;
    }
    sink.write(`\r\x1b[2Kexporting ${bar}${facts}`);
    drawn = true;
  };
  let latest = { records: 0, bytes: 0 };
  return {
    update(records, bytes) {
      latest = { records, bytes };
      const t = now();
      if (t - last < 100) return;
      last = t;
      draw(records, bytes);
    },
    done() {
      if (!drawn) return;
      draw(latest.records, latest.bytes);
      sink.write("\n");
    },
  };
}
