/**
 * Verification of the audit log in the store (R-3.2.2.4): what `inkan audit verify` and the
 * auditor's VerifyAuditLog RPC report. For each node it streams the records and checkpoints in
 * pages (memory does not grow with the log) and checks each record's hash, each link, contiguous
 * sequences, each checkpoint's signature and the record it covers, and that the chain reaches the
 * checkpoint kept in the crypto module. It reports OK or, per node, the first break with its
 * sequence and kind (audit.proto AuditProblemKind).
 */
import type { JWK } from "jose";
import { InkanError } from "../errors.js";
import type { AuditCheckpoint, AuditRecords } from "../store/port.js";
import { ChainChecker, LOOKAHEAD, storedEntry, type AuditProblem, type ChainEntry } from "./chain-checker.js";
import { auditKeysFrom, checkpointProblem, storedCheckpointProblem, type AuditHighWaterMark, type AuditPublicKey } from "./checkpoint.js";
import { ZERO_HASH } from "./record-form.js";

export type { AuditProblem, AuditProblemKind } from "./chain-checker.js";

/** The result for one node (audit.proto NodeVerification). */
export interface NodeVerification {
  nodeId: string;
  /** True when the chain verified from sequence 1 to its newest record. */
  ok: boolean;
  /** Records read. */
  recordsChecked: number;
  /** The newest sequence in the store; 0 if none. */
  lastSequence: number;
  /** The newest checkpoint in the store whose signature verified; 0 if none. */
  lastCheckpointSequence: number;
  /** The checkpoint kept in the crypto module; 0 if none. */
  moduleCheckpointSequence: number;
  /** The first break; undefined when ok. */
  problem?: AuditProblem;
}

/** The result of {@link verifyAuditLog} (audit.proto VerifyAuditLogResponse). */
export interface AuditVerification {
  ok: boolean;
  /** One result per node, in node id order. */
  nodes: NodeVerification[];
  verifiedAt: Date;
}

export interface VerifyAuditLogOptions {
  /** Verify only this node. Default: every node known from the store or the crypto module. */
  nodeId?: string;
  /** Records per store read (default 1000, at most the store's page limit). */
  pageSize?: number;
  now?: () => Date;
}

/** Public audit keys: DER SPKI (as the crypto module returns it) or JWKs; current and retired. */
export type AuditKeyInput = Uint8Array | JWK | readonly (Uint8Array | JWK)[];

/**
 * Verifies the audit chains in `store` with the audit public key(s) and the checkpoints the
 * crypto module holds (`readHighWaterMarks(cryptoModule)`). Throws INVALID_REQUEST (field
 * "node_id") when `options.nodeId` names a node with no records and no checkpoint.
 */
export async function verifyAuditLog(
  store: AuditRecords,
  auditKeys: AuditKeyInput,
  highWaterMarks: readonly AuditHighWaterMark[],
  options: VerifyAuditLogOptions = {},
): Promise<AuditVerification> {
  const keys = await auditKeysFrom(auditKeys);
  const pageSize = options.pageSize ?? 1000;
  const marks = new Map(highWaterMarks.map((m) => [m.nodeId, m]));
  let nodes: string[];
  if (options.nodeId !== undefined) {
    const known =
      marks.has(options.nodeId) ||
      (await store.latestAuditRecord(options.nodeId)) !== undefined ||
      (await store.latestAuditCheckpoint(options.nodeId)) !== undefined;
    if (!known) throw new InkanError("INVALID_REQUEST", `no audit records or checkpoint of node ${options.nodeId}`, { field: "node_id" });
    nodes = [options.nodeId];
  } else {
    nodes = [...new Set([...(await store.listAuditNodes()), ...marks.keys()])].sort();
  }
  const results: NodeVerification[] = [];
  for (const nodeId of nodes) results.push(await verifyNode(store, keys, nodeId, marks.get(nodeId), pageSize));
  return { ok: results.every((r) => r.ok), nodes: results, verifiedAt: (options.now ?? (() => new Date()))() };
}

/** Pages through one node's records, with a lookahead for classifying a break. */
class RecordReader {
  #buffer: ChainEntry[] = [];
  #nextSequence = 1;
  #exhausted = false;

  constructor(
    private readonly store: AuditRecords,
    private readonly nodeId: string,
    private readonly pageSize: number,
  ) {}

  async #fill(wanted: number): Promise<void> {
    while (this.#buffer.length < wanted && !this.#exhausted) {
      const page = await this.store.readAuditRecords({ nodeId: this.nodeId, fromSequence: this.#nextSequence, limit: this.pageSize });
      if (page.length < this.pageSize) this.#exhausted = true;
      const last = page[page.length - 1];
      if (last) this.#nextSequence = last.sequence + 1;
      this.#buffer.push(...page.map(storedEntry));
    }
  }

  async next(): Promise<ChainEntry | undefined> {
    await this.#fill(1);
    return this.#buffer.shift();
  }

  async peek(count: number): Promise<ChainEntry[]> {
    await this.#fill(count);
    return this.#buffer.slice(0, count);
  }
}

/** Pages through one node's checkpoint rows in sequence order. */
class CheckpointReader {
  #buffer: AuditCheckpoint[] = [];
  #nextSequence = 1;
  #exhausted = false;

  constructor(
    private readonly store: AuditRecords,
    private readonly nodeId: string,
    private readonly pageSize: number,
  ) {}

  async peek(): Promise<AuditCheckpoint | undefined> {
    if (this.#buffer.length === 0 && !this.#exhausted) {
      const page = await this.store.readAuditCheckpoints({ nodeId: this.nodeId, fromSequence: this.#nextSequence, limit: this.pageSize });
      if (page.length < this.pageSize) this.#exhausted = true;
      const last = page[page.length - 1];
      if (last) this.#nextSequence = last.sequence + 1;
      this.#buffer = page;
    }
    return this.#buffer[0];
  }

  async next(): Promise<AuditCheckpoint | undefined> {
    await this.peek();
    return this.#buffer.shift();
  }
}

async function verifyNode(
  store: AuditRecords,
  keys: readonly AuditPublicKey[],
  nodeId: string,
  mark: AuditHighWaterMark | undefined,
  pageSize: number,
): Promise<NodeVerification> {
  const checker = new ChainChecker({ startSequence: 1, anchorHash: ZERO_HASH });
  const records = new RecordReader(store, nodeId, pageSize);
  const checkpoints = new CheckpointReader(store, nodeId, pageSize);
  let recordsChecked = 0;
  let lastCheckpointSequence = 0;

  const pushStoredCheckpoint = async (row: AuditCheckpoint): Promise<boolean> => {
    const { claim, problem } = await storedCheckpointProblem(row, keys);
    if (!problem) lastCheckpointSequence = Math.max(lastCheckpointSequence, row.sequence);
    return checker.pushCheckpoint({
      sequence: row.sequence,
      recordHash: claim?.recordHash ?? new Uint8Array(),
      invalid: problem,
      label: "checkpoint",
    });
  };

  if (mark) {
    // R-3.2.2.4: the checkpoint outside the database; the chain must reach it with the same hash.
    checker.pushCheckpoint({
      sequence: mark.sequence,
      recordHash: mark.recordHash,
      invalid: await checkpointProblem(mark.checkpoint, keys),
      label: "crypto module checkpoint",
    });
  }
  for (;;) {
    const entry = await records.next();
    if (!entry) break;
    recordsChecked++;
    // Checkpoints up to this record go in first, so each is compared as its record passes.
    for (let cp = await checkpoints.peek(); cp && cp.sequence <= entry.sequence; cp = await checkpoints.peek()) {
      await checkpoints.next();
      if (!(await pushStoredCheckpoint(cp))) break;
    }
    if (checker.problem || !(await checker.pushRecord(entry, () => records.peek(LOOKAHEAD)))) break;
  }
  if (!checker.problem) {
    // Checkpoints beyond the last record: the first valid one proves a truncated tail.
    for (let cp = await checkpoints.next(); cp; cp = await checkpoints.next()) {
      await pushStoredCheckpoint(cp);
      if (lastCheckpointSequence === cp.sequence) break;
    }
  }
  const problem = checker.finish();
  const latest = await store.latestAuditRecord(nodeId);
  return {
    nodeId,
    ok: problem === undefined,
    recordsChecked,
    lastSequence: latest?.sequence ?? 0,
    lastCheckpointSequence,
    moduleCheckpointSequence: mark?.sequence ?? 0,
    ...(problem ? { problem } : {}),
  };
}
