/**
 * Export of the audit log for auditors, and its offline verification (R-3.2.2.4).
 *
 * The format is audit.proto's (ExportAuditLog): JSON Lines, UTF-8, each line ending with "\n":
 * 1. {"type":"header","format":"inkan-audit-export/1","exportTime":"<RFC 3339>","auditKeys":[<public JWK>, ...]}
 * 2. per node, in node id order: when the export starts after sequence 1, the newest checkpoint
 *    below the first exported record ({"type":"checkpoint","checkpoint":{...}}); then every record
 *    ({"type":"record","record":{...}}) in sequence order, each followed by the checkpoints at its
 *    sequence;
 * 3. {"type":"end","records":<number of record lines>}.
 * Records and checkpoints are in the proto3 JSON mapping, exactly the form AuditRecord.hash is
 * computed over, so the offline verifier needs only the audit public key and no protobuf library.
 */
import { InkanError } from "../errors.js";
import type { AuditCheckpoint, AuditRecord, AuditRecords } from "../store/port.js";
import { ChainChecker, LOOKAHEAD, type AuditProblem, type AuditProblemKind, type ChainEntry } from "./chain-checker.js";
import { auditKeysFrom, checkpointProblem, parseCheckpointJson, type CheckpointClaim } from "./checkpoint.js";
import {
  canonicalJson,
  fromBase64,
  parseSequenceJson,
  recordJsonOf,
  sha256,
  timestampJson,
  toBase64,
  ZERO_HASH,
} from "./record-form.js";
import type { AuditKeyInput } from "./verify.js";

export const EXPORT_FORMAT = "inkan-audit-export/1";

export interface ExportAuditLogOptions {
  /** The audit public keys listed in the header (current and retired). */
  auditKeys: AuditKeyInput;
  /** Export only this node. Default: every node in the store, each from sequence 1. */
  nodeId?: string;
  /** First sequence to export (needs nodeId). Default 1. */
  fromSequence?: number;
  /** Last sequence to export (needs nodeId). Default: the newest record. */
  toSequence?: number;
  /**
   * The exporting node's log. Without toSequence, its chain is checkpointed first so every
   * exported record of that node is covered by a signed checkpoint. Other nodes' chains can only
   * be covered by their own nodes' checkpoints.
   */
  auditLog?: { readonly nodeId: string; checkpoint(): Promise<void> };
  /** Records per store read (default 1000). */
  pageSize?: number;
  now?: () => Date;
}

const line = (value: unknown): string => `${JSON.stringify(value)}\n`;

/** A stored record as an export line's "record" object (a row whose body is unreadable keeps it raw, and will not verify). */
function exportedRecord(row: AuditRecord): unknown {
  return (
    recordJsonOf(row) ?? {
      nodeId: row.nodeId,
      sequence: String(row.sequence),
      occurredAt: Number.isNaN(row.time.getTime()) ? "" : timestampJson(row.time),
      eventType: row.event,
      prevHash: toBase64(row.prevHash),
      hash: toBase64(row.hash),
      unreadableBody: row.body,
    }
  );
}

function exportedCheckpoint(row: AuditCheckpoint): unknown {
  try {
    return JSON.parse(row.body) as unknown;
  } catch {
    return { nodeId: row.nodeId, sequence: String(row.sequence), unreadableBody: row.body };
  }
}

/**
 * Streams the export, line by line (each string is one line with its "\n"). Throws
 * INVALID_REQUEST for an invalid range, for a node without records (field "node_id") and for a
 * fromSequence without a record (field "from_sequence").
 */
export async function* exportAuditLog(store: AuditRecords, options: ExportAuditLogOptions): AsyncGenerator<string, void, undefined> {
  const { nodeId, fromSequence = 0, toSequence = 0 } = options;
  if (!nodeId && (fromSequence || toSequence)) throw new InkanError("INVALID_REQUEST", "fromSequence and toSequence need nodeId");
  if (toSequence && fromSequence > toSequence) throw new InkanError("INVALID_REQUEST", "fromSequence must not exceed toSequence");
  const pageSize = options.pageSize ?? 1000;
  const keys = await auditKeysFrom(options.auditKeys);
  const nodes = nodeId ? [nodeId] : await store.listAuditNodes();
  if (nodeId) {
    if (!(await store.latestAuditRecord(nodeId))) throw new InkanError("INVALID_REQUEST", `no audit records of node ${nodeId}`, { field: "node_id" });
    if (fromSequence > 1 && (await store.readAuditRecords({ nodeId, fromSequence, limit: 1 }))[0]?.sequence !== fromSequence) {
      throw new InkanError("INVALID_REQUEST", `node ${nodeId} has no record ${fromSequence}`, { field: "from_sequence" });
    }
  }
  if (options.auditLog && !toSequence && nodes.includes(options.auditLog.nodeId)) await options.auditLog.checkpoint();

  yield line({ type: "header", format: EXPORT_FORMAT, exportTime: timestampJson((options.now ?? (() => new Date()))()), auditKeys: keys.map((k) => k.jwk) });
  let count = 0;
  for (const node of nodes) {
    const from = Math.max(fromSequence, 1);
    const to = toSequence || Number.MAX_SAFE_INTEGER;
    if (from > 1) {
      // The newest checkpoint below the first exported record anchors its prevHash.
      let anchor: AuditCheckpoint | undefined;
      for (let next = 1; next < from; ) {
        const page = await store.readAuditCheckpoints({ nodeId: node, fromSequence: next, limit: pageSize });
        for (const cp of page) if (cp.sequence < from) anchor = cp;
        const last = page[page.length - 1];
        if (!last || page.length < pageSize) break;
        next = last.sequence + 1;
      }
      if (anchor) yield line({ type: "checkpoint", checkpoint: exportedCheckpoint(anchor) });
    }
    let checkpoints: AuditCheckpoint[] = [];
    let nextCheckpoint = from;
    let checkpointsExhausted = false;
    for (let next = from; next <= to; ) {
      const page = await store.readAuditRecords({ nodeId: node, fromSequence: next, limit: pageSize });
      for (const row of page) {
        if (row.sequence > to) break;
        yield line({ type: "record", record: exportedRecord(row) });
        count++;
        for (;;) {
          if (checkpoints.length === 0 && !checkpointsExhausted) {
            checkpoints = await store.readAuditCheckpoints({ nodeId: node, fromSequence: nextCheckpoint, limit: pageSize });
            checkpointsExhausted = checkpoints.length < pageSize;
            const last = checkpoints[checkpoints.length - 1];
            if (last) nextCheckpoint = last.sequence + 1;
          }
          const cp = checkpoints[0];
          if (!cp || cp.sequence > row.sequence) break;
          checkpoints.shift();
          if (cp.sequence === row.sequence) yield line({ type: "checkpoint", checkpoint: exportedCheckpoint(cp) });
        }
      }
      const last = page[page.length - 1];
      if (!last || page.length < pageSize) break;
      next = last.sequence + 1;
    }
  }
  yield line({ type: "end", records: count });
}

// ---------------------------------------------------------------------------------------------
// Offline verification
// ---------------------------------------------------------------------------------------------

/** The result for one node of an export. */
export interface ExportNodeVerification {
  nodeId: string;
  ok: boolean;
  recordsChecked: number;
  /** First and last record sequence in the export; 0 if none. */
  firstSequence: number;
  lastSequence: number;
  /** The newest checkpoint that verified and matched its record; 0 if none. */
  lastCheckpointSequence: number;
  /**
   * True when the first record's prevHash is bound to something signed: sequence 1, or an anchor
   * checkpoint at the sequence just before it. A partial export anchored further back is still
   * verified from its first record on.
   */
  anchored: boolean;
  problem?: AuditProblem;
}

/** A problem with the file itself rather than one node's chain. */
export interface ExportFileProblem {
  kind: AuditProblemKind | "MALFORMED";
  /** 1-based line number. */
  line: number;
  description: string;
}

export interface ExportVerification {
  ok: boolean;
  nodes: ExportNodeVerification[];
  fileProblem?: ExportFileProblem;
}

export interface VerifyAuditExportOptions {
  /**
   * Require every node's last record to be covered by a signed checkpoint (default true): records
   * after the last checkpoint are not authenticated. The SAM checkpoints its own chain when an
   * export starts; set false for exports of other nodes' chains or with a toSequence.
   */
  requireCheckpointedTail?: boolean;
}

type Line =
  | { kind: "header"; value: Record<string, unknown> }
  | { kind: "record"; nodeId: string; value: Record<string, unknown> }
  | { kind: "checkpoint"; nodeId: string; value: unknown }
  | { kind: "end"; value: Record<string, unknown> }
  | { kind: "malformed"; description: string }
  | { kind: "blank" };

function parseLine(text: string): Line {
  if (text === "") return { kind: "blank" };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: "malformed", description: "not JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return { kind: "malformed", description: "not a JSON object" };
  const v = value as Record<string, unknown>;
  const nodeOf = (x: unknown): string | undefined =>
    typeof x === "object" && x !== null && typeof (x as Record<string, unknown>)["nodeId"] === "string" ? ((x as Record<string, unknown>)["nodeId"] as string) : undefined;
  switch (v["type"]) {
    case "header":
      return { kind: "header", value: v };
    case "end":
      return { kind: "end", value: v };
    case "record": {
      const node = nodeOf(v["record"]);
      return node ? { kind: "record", nodeId: node, value: v["record"] as Record<string, unknown> } : { kind: "malformed", description: "record without nodeId" };
    }
    case "checkpoint": {
      const node = nodeOf(v["checkpoint"]);
      return node ? { kind: "checkpoint", nodeId: node, value: v["checkpoint"] } : { kind: "malformed", description: "checkpoint without nodeId" };
    }
    default:
      return { kind: "malformed", description: `unknown line type ${JSON.stringify(v["type"])}` };
  }
}

/** An export's record line as the chain checker sees it. */
function exportEntry(record: Record<string, unknown>): ChainEntry {
  const { hash, ...hashed } = record;
  return {
    sequence: parseSequenceJson(record["sequence"]) ?? 0,
    prevHash: fromBase64(record["prevHash"]) ?? new Uint8Array(),
    hash: fromBase64(hash) ?? new Uint8Array(),
    hashAt: (sequence) => {
      try {
        return sha256(canonicalJson({ ...hashed, sequence: String(sequence) }));
      } catch {
        return undefined;
      }
    },
  };
}

/** Buffered line source with lookahead. */
class Lines {
  readonly #source: AsyncIterator<string> | Iterator<string>;
  readonly #buffer: { text: string; line: Line; number: number }[] = [];
  #number = 0;
  #done = false;

  constructor(input: Iterable<string> | AsyncIterable<string>) {
    this.#source = Symbol.asyncIterator in input ? input[Symbol.asyncIterator]() : input[Symbol.iterator]();
  }

  async #fill(count: number): Promise<void> {
    while (this.#buffer.length < count && !this.#done) {
      const r = await this.#source.next();
      if (r.done) {
        this.#done = true;
        break;
      }
      const text = r.value.endsWith("\r") ? r.value.slice(0, -1) : r.value;
      this.#buffer.push({ text, line: parseLine(text), number: ++this.#number });
    }
  }

  async next(): Promise<{ line: Line; number: number } | undefined> {
    await this.#fill(1);
    return this.#buffer.shift();
  }

  /** The record lines of `nodeId` that come next (up to `count`), stopping at another node's records. */
  async recordsAhead(nodeId: string, count: number): Promise<ChainEntry[]> {
    const out: ChainEntry[] = [];
    for (let i = 0; out.length < count; i++) {
      await this.#fill(i + 1);
      const item = this.#buffer[i];
      if (!item) break;
      if (item.line.kind === "record") {
        if (item.line.nodeId !== nodeId) break;
        out.push(exportEntry(item.line.value));
      } else if (item.line.kind !== "checkpoint") {
        break;
      }
    }
    return out;
  }
}

/** Splits a whole export text into lines; a text not ending in "\n" has a cut-off last line. */
function* splitText(text: string): Generator<string> {
  const parts = text.split("\n");
  const last = parts.pop();
  yield* parts;
  if (last) yield last; // not followed by "\n": reported by the caller through the missing end line
}

interface NodeState {
  result: ExportNodeVerification;
  anchor: { claim: CheckpointClaim | undefined; invalid: string | undefined; sequence: number } | undefined;
  checker: ChainChecker | undefined;
}

/**
 * Verifies an export offline, with only the audit public key(s) (`auditKeys`, obtained out of
 * band: the keys in the file's header are not trusted). Accepts the whole text, or its lines
 * (without "\n", e.g. from `readline`). Reports per node the first break, and file problems (a
 * malformed line, a missing or wrong end line).
 */
export async function verifyAuditExport(
  input: string | Iterable<string> | AsyncIterable<string>,
  auditKeys: AuditKeyInput,
  options: VerifyAuditExportOptions = {},
): Promise<ExportVerification> {
  const keys = await auditKeysFrom(auditKeys);
  const requireTail = options.requireCheckpointedTail ?? true;
  const lines = new Lines(typeof input === "string" ? splitText(input) : input);
  const nodes: ExportNodeVerification[] = [];
  const finished = new Set<string>();
  let current: NodeState | undefined;
  let records = 0;
  let fileProblem: ExportFileProblem | undefined;
  let ended = false;
  let lastLine = 0;

  const finish = (state: NodeState | undefined): void => {
    if (!state) return;
    const r = state.result;
    if (!r.problem && !state.checker && state.anchor?.invalid) {
      r.problem = { kind: "CHECKPOINT_INVALID", firstBadSequence: state.anchor.sequence, description: state.anchor.invalid };
    }
    if (!r.problem && state.checker) {
      const problem = state.checker.finish();
      r.lastCheckpointSequence = state.checker.lastCheckpointSequence;
      if (problem) r.problem = problem;
    }
    if (!r.problem && requireTail && r.lastSequence > r.lastCheckpointSequence) {
      r.problem = {
        kind: "INSERTED",
        firstBadSequence: Math.max(r.lastCheckpointSequence + 1, r.firstSequence),
        description: `records from ${Math.max(r.lastCheckpointSequence + 1, r.firstSequence)} on are not covered by a signed checkpoint`,
      };
    }
    r.ok = !r.problem;
    finished.add(r.nodeId);
  };

  const start = (nodeId: string): NodeState => {
    finish(current);
    const result: ExportNodeVerification = { nodeId, ok: true, recordsChecked: 0, firstSequence: 0, lastSequence: 0, lastCheckpointSequence: 0, anchored: false };
    if (finished.has(nodeId)) {
      const earlier = nodes.find((n) => n.nodeId === nodeId);
      if (earlier && !earlier.problem) {
        earlier.ok = false;
        earlier.problem = { kind: "INSERTED", firstBadSequence: earlier.lastSequence + 1, description: `lines of node ${nodeId} appear after its chain ended` };
      }
      return { result, anchor: undefined, checker: undefined }; // not listed again
    }
    nodes.push(result);
    return { result, anchor: undefined, checker: undefined };
  };

  const checkpointItem = async (value: unknown) => {
    const claim = parseCheckpointJson(value);
    const invalid = claim ? await checkpointProblem(claim, keys) : "malformed checkpoint";
    return { claim, invalid };
  };

  for (let item = await lines.next(); item; item = await lines.next()) {
    const { line: l, number } = item;
    lastLine = number;
    if (fileProblem) break;
    if (number === 1) {
      if (l.kind !== "header" || l.value["format"] !== EXPORT_FORMAT) {
        fileProblem = { kind: "MALFORMED", line: 1, description: `the first line is not an ${EXPORT_FORMAT} header` };
      }
      continue;
    }
    if (ended && l.kind !== "blank") {
      fileProblem = { kind: "INSERTED", line: number, description: "lines after the end line" };
      break;
    }
    switch (l.kind) {
      case "blank":
        fileProblem = { kind: "MALFORMED", line: number, description: "empty line" };
        break;
      case "malformed":
        fileProblem = { kind: "MALFORMED", line: number, description: l.description };
        break;
      case "header":
        fileProblem = { kind: "INSERTED", line: number, description: "a second header" };
        break;
      case "end": {
        ended = true;
        if (l.value["records"] !== records) {
          fileProblem = {
            kind: typeof l.value["records"] === "number" && l.value["records"] > records ? "DELETED" : "INSERTED",
            line: number,
            description: `the end line counts ${String(l.value["records"])} records, the file has ${records}`,
          };
        }
        break;
      }
      case "checkpoint": {
        if (!current || current.result.nodeId !== l.nodeId) current = start(l.nodeId);
        const { claim, invalid } = await checkpointItem(l.value);
        const state = current;
        if (!state.checker) {
          // Before the node's first record: the anchor (keep the newest if there are several).
          const sequence = claim?.sequence ?? 0;
          if (!state.anchor || sequence > state.anchor.sequence) state.anchor = { claim, invalid, sequence };
        } else if (!state.result.problem) {
          state.checker.pushCheckpoint({
            sequence: claim?.sequence ?? state.checker.verifiedThrough,
            recordHash: claim?.recordHash ?? new Uint8Array(),
            invalid,
            label: "checkpoint",
          });
          if (state.checker.problem) state.result.problem = state.checker.problem;
        }
        break;
      }
      case "record": {
        records++;
        if (!current || current.result.nodeId !== l.nodeId) current = start(l.nodeId);
        const state = current;
        const entry = exportEntry(l.value);
        const r = state.result;
        if (!state.checker) {
          r.firstSequence = entry.sequence;
          const anchor = state.anchor;
          if (!anchor) {
            r.anchored = true;
            state.checker = new ChainChecker({ startSequence: 1, anchorHash: ZERO_HASH });
          } else {
            const adjacent = entry.sequence === anchor.sequence + 1;
            r.anchored = adjacent && !anchor.invalid;
            state.checker = new ChainChecker({
              startSequence: Math.max(entry.sequence, anchor.sequence + 1),
              anchorHash: adjacent && anchor.claim ? anchor.claim.recordHash : undefined,
            });
            if (anchor.invalid) {
              r.problem = { kind: "CHECKPOINT_INVALID", firstBadSequence: anchor.sequence, description: anchor.invalid };
            } else if (entry.sequence <= anchor.sequence) {
              r.problem = {
                kind: "REORDERED",
                firstBadSequence: entry.sequence,
                description: `record ${entry.sequence} comes after a checkpoint for record ${anchor.sequence}`,
              };
            }
          }
        }
        if (r.problem) break;
        r.lastSequence = Math.max(r.lastSequence, entry.sequence);
        const checker = state.checker;
        if (!(await checker.pushRecord(entry, () => lines.recordsAhead(l.nodeId, LOOKAHEAD)))) {
          r.problem = checker.problem;
        }
        r.recordsChecked = checker.recordsChecked;
        break;
      }
    }
  }
  finish(current);
  if (!fileProblem && !ended) fileProblem = { kind: "TRUNCATED", line: lastLine + 1, description: "the file ends without its end line: it was cut off" };
  return { ok: !fileProblem && nodes.every((n) => n.ok), nodes, ...(fileProblem ? { fileProblem } : {}) };
}
