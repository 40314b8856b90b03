import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { AuditOutcome, AuditProblemKind, AuditRecordSchema, type AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import type { AuditLog } from "../audit/audit-log.js";
import { auditExported, auditListed, auditVerified, type PrivilegedUserActor } from "../audit/events.js";
import { auditKeyFromSpki, readHighWaterMarks } from "../audit/checkpoint.js";
import { exportAuditLog } from "../audit/export.js";
import { recordJsonOf } from "../audit/record-form.js";
import { verifyAuditLog } from "../audit/verify.js";
import type { AuditSigning, DataObjects } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { AuditRecords } from "../store/port.js";
import { kAdmin } from "./admin-auth.js";
import { kRequestId } from "./identity.js";

export interface AuditServiceOptions {
  store: AuditRecords;
  crypto: AuditSigning & DataObjects;
  audit: AuditLog & { readonly nodeId: string; checkpoint(): Promise<void> };
}

const auditorOf = (ctx: HandlerContext): PrivilegedUserActor => {
  const user = ctx.values.get(kAdmin);
  if (!user) throw new InkanError("CLIENT_CERTIFICATE_REJECTED", "not authenticated");
  return { kind: "privileged-user", userId: user.userId, role: user.role };
};

/** Scan at most this many records per ListAuditRecords call, so a narrow filter cannot stall the SAM. */
const maxScan = 10_000;

/** AuditService: the auditor's read-only view of the audit log (R-3.2.2.4, T-2.2.2.2). */
export function auditService(o: AuditServiceOptions): Partial<ServiceImpl<typeof AuditService>> {
  const keys = async () => [await auditKeyFromSpki(await o.crypto.systemPublicKey("audit-signing"))];
  return {
    async listAuditKeys() {
      return { keys: (await keys()).map((k) => ({ keyId: k.keyId, publicKeyJwk: JSON.stringify(k.jwk) })) };
    },

    async verifyAuditLog(req, ctx) {
      const result = await verifyAuditLog(o.store, await o.crypto.systemPublicKey("audit-signing"), await readHighWaterMarks(o.crypto), req.nodeId ? { nodeId: req.nodeId } : {});
      await o.audit.record(auditVerified({
        auditor: auditorOf(ctx), ok: result.ok, brokenNodes: result.nodes.filter((n) => !n.ok).map((n) => n.nodeId),
        ...(req.nodeId ? { nodeId: req.nodeId } : {}), requestId: ctx.values.get(kRequestId),
      }));
      return {
        ok: result.ok,
        verifiedAt: timestampFromDate(result.verifiedAt),
        nodes: result.nodes.map((n) => ({
          nodeId: n.nodeId,
          ok: n.ok,
          recordsChecked: BigInt(n.recordsChecked),
          lastSequence: BigInt(n.lastSequence),
          lastCheckpointSequence: BigInt(n.lastCheckpointSequence),
          moduleCheckpointSequence: BigInt(n.moduleCheckpointSequence),
          problem: n.problem && {
            kind: AuditProblemKind[n.problem.kind],
            firstBadSequence: BigInt(n.problem.firstBadSequence),
            description: n.problem.description,
          },
        })),
      };
    },

    async *exportAuditLog(req, ctx) {
      await o.audit.record(auditExported({
        auditor: auditorOf(ctx), requestId: ctx.values.get(kRequestId),
        ...(req.nodeId ? { nodeId: req.nodeId } : {}),
        ...(req.fromSequence ? { fromSequence: Number(req.fromSequence) } : {}),
        ...(req.toSequence ? { toSequence: Number(req.toSequence) } : {}),
      }));
      const lines = exportAuditLog(o.store, {
        auditKeys: (await keys()).map((k) => k.jwk),
        auditLog: o.audit,
        ...(req.nodeId ? { nodeId: req.nodeId } : {}),
        ...(req.fromSequence ? { fromSequence: Number(req.fromSequence) } : {}),
        ...(req.toSequence ? { toSequence: Number(req.toSequence) } : {}),
      });
      for await (const line of lines) yield { data: new TextEncoder().encode(line) };
    },

    async listAuditRecords(req, ctx) {
      const nodes = req.nodeId ? [req.nodeId] : (await o.store.listAuditNodes()).sort();
      const [tokenNode, tokenSeq] = (req.page?.pageToken ?? "").split(":");
      const limit = req.page?.pageSize || 100;
      const from = req.startTime && timestampDate(req.startTime);
      const to = req.endTime && timestampDate(req.endTime);
      const records = [];
      let next = "";
      let scanned = 0;
      outer: for (const node of nodes) {
        if (tokenNode && node < tokenNode) continue;
        let seq = tokenNode === node ? Number(tokenSeq) : 1;
        for (;;) {
          const page = await o.store.readAuditRecords({ nodeId: node, fromSequence: seq, limit: Math.min(1000, maxScan) });
          if (page.length === 0) break;
          for (const row of page) {
            scanned++;
            seq = row.sequence + 1;
            const json = recordJsonOf(row);
            if (!json) continue;
            const record = fromJson(AuditRecordSchema, json as unknown as JsonValue, { ignoreUnknownFields: true });
            const t = row.time;
            const match =
              (!from || t >= from) && (!to || t < to) &&
              (req.eventTypes.length === 0 || req.eventTypes.includes(record.eventType)) &&
              (!req.actorId || record.actor?.id === req.actorId) &&
              (!req.signerId || record.signerId === req.signerId) &&
              (!req.credentialId || record.credentialId === req.credentialId) &&
              (req.outcome === AuditOutcome.UNSPECIFIED || record.outcome === req.outcome);
            if (match) records.push(record);
            if (records.length >= limit || scanned >= maxScan) {
              next = `${node}:${seq}`;
              break outer;
            }
          }
        }
      }
      await o.audit.record(auditListed({ auditor: auditorOf(ctx), records: records.length, requestId: ctx.values.get(kRequestId) }));
      return { records, page: { nextPageToken: next } };
    },
  };
}
