/**
 * The JSON Lines export and its offline verification with only the audit public key
 * (R-3.2.2.4): export -> verify offline -> tamper one line -> verify fails. Also checks that the
 * record and checkpoint objects are exactly the proto3 JSON mapping protobuf-es produces for
 * inkan.admin.v1.AuditRecord / AuditCheckpoint, so an auditor's protobuf tooling agrees with the hash.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { AuditCheckpointSchema, AuditRecordSchema } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import type { Store } from "../store/port.js";
import { createSqliteStore } from "../store/sqlite/sqlite-store.js";
import { createAuditLog, type ChainedAuditLog } from "./audit-log.js";
import { policyChanged, signatureCreated, signerEnrolled, systemActor } from "./events.js";
import { EXPORT_FORMAT, exportAuditLog, verifyAuditExport, type ExportAuditLogOptions, type ExportVerification } from "./export.js";
import { canonicalJson, sha256 } from "./record-form.js";

let dataDir: string;
let hsm: Pkcs11CryptoModule;
let auditSpki: Uint8Array;
let store: Store;
let logA: ChainedAuditLog;
let logB: ChainedAuditLog;
let exported: string;

const sca = { kind: "sca", subject: "CN=SCA,O=Example", certificateSha256: new Uint8Array(32).fill(4) } as const;
const officer = { kind: "privileged-user", userId: "so-1", role: "SECURITY_OFFICER" } as const;
const approver = { kind: "privileged-user", userId: "so-2", role: "SECURITY_OFFICER" } as const;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-audit-export-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
  auditSpki = await hsm.systemPublicKey("audit-signing");
  store = await createSqliteStore({ file: join(dataDir, "store.sqlite3") });
  logA = await createAuditLog({ store, nodeId: "node-a", cryptoModule: hsm, checkpointEveryRecords: 10, checkpointTimer: false });
  logB = await createAuditLog({ store, nodeId: "node-b", cryptoModule: hsm, checkpointEveryRecords: 10, checkpointTimer: false });
  for (let i = 1; i <= 25; i++) {
    await logA.record(
      i % 5 === 0
        ? signatureCreated({ sca, signerId: "s-1", credentialId: "c-1", transactionId: `t-${i}`, hash: sha256(`doc ${i}`), hashAlgorithm: "SHA256", signatureAlgorithm: "ES256", requestId: `r-${i}` })
        : signerEnrolled({ actor: officer, signerId: `s-${i}`, requestId: `r-${i}` }),
    );
  }
  await logA.record(policyChanged({ requester: officer, approver, oldVersion: 1, newVersion: 2, oldPolicy: { sadLifetimeSeconds: 300 }, newPolicy: { sadLifetimeSeconds: 120 } }));
  for (let i = 1; i <= 7; i++) await logB.record(signerEnrolled({ actor: systemActor, signerId: `b-${i}` }));
  exported = await exportText({ auditLog: logA });
});

afterAll(async () => {
  await logA?.close();
  await logB?.close();
  await store?.close();
  await hsm?.close();
  await rm(dataDir, { recursive: true, force: true });
});

async function exportText(options: Partial<ExportAuditLogOptions> = {}): Promise<string> {
  let text = "";
  for await (const line of exportAuditLog(store, { auditKeys: auditSpki, pageSize: 4, now: () => new Date("2030-01-01T00:00:00Z"), ...options })) {
    expect(line.endsWith("\n")).toBe(true);
    expect(line.slice(0, -1)).not.toContain("\n");
    text += line;
  }
  return text;
}

const linesOf = (text: string): string[] => text.split("\n").slice(0, -1);
const parsed = (text: string): Record<string, unknown>[] => linesOf(text).map((l) => JSON.parse(l) as Record<string, unknown>);
const join_ = (lines: string[]): string => lines.map((l) => `${l}\n`).join("");

function recordLineIndex(lines: string[], nodeId: string, sequence: number): number {
  const i = lines.findIndex((l) => {
    const v = JSON.parse(l) as { type: string; record?: { nodeId: string; sequence: string } };
    return v.type === "record" && v.record?.nodeId === nodeId && v.record.sequence === String(sequence);
  });
  if (i < 0) throw new Error(`no record line ${nodeId}/${sequence}`);
  return i;
}

function problemOf(result: ExportVerification, nodeId: string): { kind: string; sequence: number } | undefined {
  const p = result.nodes.find((n) => n.nodeId === nodeId)?.problem;
  return p && { kind: p.kind, sequence: p.firstBadSequence };
}

describe("R-3.2.2.4 export format (audit.proto ExportAuditLog)", () => {
  it("R-3.2.2.4: header, per node in node id order the records each followed by their checkpoints, end line with the count", async () => {
    const lines = parsed(exported);
    expect(lines[0]).toMatchObject({ type: "header", format: EXPORT_FORMAT, exportTime: "2030-01-01T00:00:00Z" });
    const keys = lines[0]?.["auditKeys"] as { kty: string; crv: string; alg: string; kid: string }[];
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", kid: logA.keyId });
    expect(lines.at(-1)).toEqual({ type: "end", records: 33 });
    const shape = lines.slice(1, -1).map((l) => {
      const body = (l["record"] ?? l["checkpoint"]) as { nodeId: string; sequence: string };
      return `${l["type"] === "record" ? "r" : "c"}:${body.nodeId}:${body.sequence}`;
    });
    const a = shape.filter((s) => s.includes("node-a"));
    // The exporting node was checkpointed when the export started, so its last record (26) is covered.
    expect(a.filter((s) => s.startsWith("c:"))).toEqual(["c:node-a:10", "c:node-a:20", "c:node-a:26"]);
    expect(a[a.indexOf("r:node-a:10") + 1]).toBe("c:node-a:10");
    expect(shape.indexOf("r:node-b:1")).toBeGreaterThan(shape.indexOf("c:node-a:26"));
  });

  it("R-3.2.2.4: records and checkpoints are exactly protobuf-es's proto3 JSON, and the record hash recomputes from it", () => {
    for (const l of parsed(exported)) {
      if (l["type"] === "record") {
        const json = l["record"] as Record<string, JsonValue>;
        const viaProtobuf = toJson(AuditRecordSchema, fromJson(AuditRecordSchema, json)) as Record<string, JsonValue>;
        expect(viaProtobuf).toEqual(json);
        const { hash, ...hashed } = viaProtobuf;
        expect(Buffer.from(sha256(canonicalJson(hashed))).toString("base64")).toBe(hash);
      } else if (l["type"] === "checkpoint") {
        const json = l["checkpoint"] as Record<string, JsonValue>;
        expect(toJson(AuditCheckpointSchema, fromJson(AuditCheckpointSchema, json))).toEqual(json);
      }
    }
  });

  it("R-3.2.2.4: a range of one node starts with the newest checkpoint below it (the anchor)", async () => {
    const text = await exportText({ nodeId: "node-a", fromSequence: 11, toSequence: 18 });
    const shape = parsed(text)
      .slice(1, -1)
      .map((l) => `${String(l["type"])}:${String(((l["record"] ?? l["checkpoint"]) as { sequence: string }).sequence)}`);
    expect(shape).toEqual(["checkpoint:10", ...Array.from({ length: 8 }, (_, i) => `record:${i + 11}`)]);
    const result = await verifyAuditExport(text, auditSpki, { requireCheckpointedTail: false });
    expect(result.ok).toBe(true);
    expect(result.nodes).toEqual([{ nodeId: "node-a", ok: true, recordsChecked: 8, firstSequence: 11, lastSequence: 18, lastCheckpointSequence: 0, anchored: true }]);
    // Without a checkpoint after them, the records are not authenticated: refused by default.
    expect(problemOf(await verifyAuditExport(text, auditSpki), "node-a")).toEqual({ kind: "INSERTED", sequence: 11 });
    await expect(exportText({ nodeId: "node-a", fromSequence: 99 })).rejects.toMatchObject({ code: "INVALID_REQUEST", field: "from_sequence" });
    await expect(exportText({ nodeId: "node-z" })).rejects.toMatchObject({ code: "INVALID_REQUEST", field: "node_id" });
  });
});

describe("R-3.2.2.4 offline verification of an export, with only the audit public key", () => {
  it("R-3.2.2.4: the export verifies offline (node-b's tail is covered by no checkpoint: it needs requireCheckpointedTail false)", async () => {
    const strict = await verifyAuditExport(exported, auditSpki);
    expect(problemOf(strict, "node-a")).toBeUndefined();
    expect(problemOf(strict, "node-b")).toEqual({ kind: "INSERTED", sequence: 1 });
    const result = await verifyAuditExport(exported, auditSpki, { requireCheckpointedTail: false });
    expect(result.ok).toBe(true);
    expect(result.fileProblem).toBeUndefined();
    expect(result.nodes.map((n) => [n.nodeId, n.ok, n.recordsChecked, n.lastCheckpointSequence])).toEqual([
      ["node-a", true, 26, 26],
      ["node-b", true, 7, 0],
    ]);
    // The same from lines (as readline gives them) and with the key as a JWK.
    const jwk = (parsed(exported)[0]?.["auditKeys"] as object[])[0] as object;
    expect((await verifyAuditExport(linesOf(exported), jwk, { requireCheckpointedTail: false })).ok).toBe(true);
  });

  it("R-3.2.2.4: one edited line (a field of record 5) is EDITED at 5", async () => {
    const lines = linesOf(exported);
    const i = recordLineIndex(lines, "node-a", 5);
    lines[i] = lines[i]!.replace('"t-5"', '"t-6"');
    expect(problemOf(await verifyAuditExport(join_(lines), auditSpki), "node-a")).toEqual({ kind: "EDITED", sequence: 5 });
  });

  it("R-3.2.2.4: an edited detail of the policy change (record 26) is EDITED at 26", async () => {
    const lines = linesOf(exported);
    const i = recordLineIndex(lines, "node-a", 26);
    lines[i] = lines[i]!.replace('"new.sad_lifetime_seconds":"120"', '"new.sad_lifetime_seconds":"99999"');
    expect(lines[i]).toContain("99999");
    expect(problemOf(await verifyAuditExport(join_(lines), auditSpki), "node-a")).toEqual({ kind: "EDITED", sequence: 26 });
  });

  it("R-3.2.2.4: a deleted line is DELETED, two swapped lines REORDERED, a duplicated line INSERTED", async () => {
    const base = linesOf(exported);
    const deleted = [...base];
    deleted.splice(recordLineIndex(base, "node-a", 7), 1);
    expect(problemOf(await verifyAuditExport(join_(deleted), auditSpki), "node-a")).toEqual({ kind: "DELETED", sequence: 7 });

    const swapped = [...base];
    const i = recordLineIndex(base, "node-a", 7);
    [swapped[i], swapped[i + 1]] = [swapped[i + 1]!, swapped[i]!];
    expect(problemOf(await verifyAuditExport(join_(swapped), auditSpki), "node-a")).toEqual({ kind: "REORDERED", sequence: 7 });

    const duplicated = [...base];
    duplicated.splice(i + 1, 0, base[i]!);
    expect(problemOf(await verifyAuditExport(join_(duplicated), auditSpki), "node-a")).toEqual({ kind: "INSERTED", sequence: 7 });
  });

  it("R-3.2.2.4: a forged checkpoint line is CHECKPOINT_INVALID; a wrong public key makes every checkpoint invalid", async () => {
    const lines = linesOf(exported);
    const i = lines.findIndex((l) => l.includes('"type":"checkpoint"') && l.includes('"sequence":"20"'));
    const v = JSON.parse(lines[i]!) as { checkpoint: { recordHash: string } };
    v.checkpoint.recordHash = Buffer.alloc(32, 1).toString("base64");
    lines[i] = JSON.stringify(v);
    expect(problemOf(await verifyAuditExport(join_(lines), auditSpki), "node-a")).toEqual({ kind: "CHECKPOINT_INVALID", sequence: 20 });

    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "der" });
    expect(problemOf(await verifyAuditExport(exported, new Uint8Array(other)), "node-a")).toEqual({ kind: "CHECKPOINT_INVALID", sequence: 10 });
  });

  it("R-3.2.2.4: a cut-off file (no end line) or a wrong end count is reported as a file problem", async () => {
    const lines = linesOf(exported);
    const cut = await verifyAuditExport(join_(lines.slice(0, -1)), auditSpki, { requireCheckpointedTail: false });
    expect(cut.ok).toBe(false);
    expect(cut.fileProblem?.kind).toBe("TRUNCATED");
    const tailCut = lines.slice(0, recordLineIndex(lines, "node-b", 5)).concat(lines.at(-1)!);
    const counted = await verifyAuditExport(join_(tailCut), auditSpki, { requireCheckpointedTail: false });
    expect(counted.fileProblem).toMatchObject({ kind: "DELETED" });
    const garbage = [...lines];
    garbage.splice(3, 0, "not json");
    expect((await verifyAuditExport(join_(garbage), auditSpki)).fileProblem).toMatchObject({ kind: "MALFORMED", line: 4 });
  });
});
