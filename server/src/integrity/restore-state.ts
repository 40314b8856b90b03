/**
 * The way back to service after `inkan restore` (issue 22, ROLLBACK.md "Backup and restore").
 *
 * The restore is recorded in the audit log ("store.restored", on the CLI's own chain, checkpointed
 * into the crypto module like every chain), and so is its acknowledgement
 * ("store.restore_acknowledged"). The state is read from there at every start: a restore with no
 * acknowledgement keeps the SAM refusing to sign, also after restarts, and deleting the record
 * breaks a chain the module anchors (the start refuses). Nothing else holds the state.
 */
import { InkanError } from "../errors.js";
import type { AuditRecord, AuditRecords } from "../store/port.js";
import { maxPageSize } from "../store/port.js";

/** The node id under which `inkan backup` and `inkan restore` write their audit records. */
export const CLI_NODE_ID = "inkan-cli";
export const STORE_RESTORED = "store.restored";
export const STORE_RESTORE_ACKNOWLEDGED = "store.restore_acknowledged";
export const FACTOR_CHECK_FAILED = "factor.check_failed";

/** Audit high-water marks: node -> newest sequence. */
export type HighWaterMarks = Record<string, number>;

/** A restore that two security officers have not acknowledged yet. */
export interface PendingRestore {
  restoreId: string;
  snapshotId: string;
  restoredAt: Date;
  /** The audit log before the restore (its tail after the snapshot is kept). */
  oldHighWaterMarks: HighWaterMarks;
  /** The snapshot's. */
  newHighWaterMarks: HighWaterMarks;
}

/** Parses `node=sequence,...` (events.ts highWaterMarksText). */
export function parseHighWaterMarks(text: string | undefined): HighWaterMarks {
  const marks: HighWaterMarks = {};
  for (const pair of (text ?? "").split(",").filter(Boolean)) {
    const at = pair.lastIndexOf("=");
    const n = Number(pair.slice(at + 1));
    if (at < 1 || !Number.isSafeInteger(n) || n < 0) throw new InkanError("INTEGRITY_VIOLATION", `malformed audit high-water mark "${pair}"`);
    marks[pair.slice(0, at)] = n;
  }
  return marks;
}

/** The fields of an audit record's body (details are strings). */
export function bodyOf(record: Pick<AuditRecord, "body">): { details: Record<string, string>; signerId?: string } {
  const parsed = JSON.parse(record.body) as { details?: Record<string, string>; signerId?: string };
  return { ...parsed, details: parsed.details ?? {} };
}

/** Every record of `event` on every node, oldest first per node. */
export async function* recordsOfEvent(store: Pick<AuditRecords, "listAuditNodes" | "readAuditRecordsByEvent">, event: string, from: HighWaterMarks = {}, to?: HighWaterMarks): AsyncGenerator<AuditRecord> {
  for (const nodeId of await store.listAuditNodes()) {
    let next = (from[nodeId] ?? 0) + 1;
    const last = to ? to[nodeId] ?? 0 : Number.POSITIVE_INFINITY;
    for (;;) {
      const page = await store.readAuditRecordsByEvent({ nodeId, event, fromSequence: next, limit: maxPageSize });
      for (const record of page) {
        if (record.sequence > last) return void 0;
        yield record;
      }
      if (page.length < maxPageSize) break;
      next = (page.at(-1)?.sequence ?? next) + 1;
    }
  }
}

/**
 * The newest restore, from the audit log, unless it was acknowledged (undefined then, or when the
 * store was never restored). An older restore is superseded by a newer one: acknowledging the
 * newest is what brings the SAM back.
 */
export async function findPendingRestore(store: Pick<AuditRecords, "listAuditNodes" | "readAuditRecordsByEvent">): Promise<PendingRestore | undefined> {
  const acknowledged = new Set<string>();
  for await (const r of recordsOfEvent(store, STORE_RESTORE_ACKNOWLEDGED)) acknowledged.add(bodyOf(r).details["restore_id"] ?? "");
  let newest: PendingRestore | undefined;
  for await (const r of recordsOfEvent(store, STORE_RESTORED)) {
    const d = bodyOf(r).details;
    const restoreId = d["restore_id"] ?? "";
    if (newest && newest.restoredAt > r.time) continue;
    newest = {
      restoreId,
      snapshotId: d["snapshot_id"] ?? "",
      restoredAt: r.time,
      oldHighWaterMarks: parseHighWaterMarks(d["old_high_water_marks"]),
      newHighWaterMarks: parseHighWaterMarks(d["new_high_water_marks"]),
    };
  }
  return newest && newest.restoreId !== "" && !acknowledged.has(newest.restoreId) ? newest : undefined;
}

/** What is refused while a restore awaits acknowledgement: every call that signs or consumes a one-time object. */
export function refusedWhileRestored(service: string): boolean {
  return service.startsWith("inkan.sam.v1.") || service === "inkan.admin.v1.RegistrationService";
}

export const restoreAwaitingMessage =
  "the store was restored from a backup: nothing is signed until two security officers acknowledge the restore (`inkan admin restore acknowledge`)";

/** Holds the pending restore of this node; closed (refusing) until acknowledged. */
export class RestoreGate {
  #pending: PendingRestore | undefined;
  readonly #onChange: () => void;

  constructor(pending: PendingRestore | undefined, onChange: () => void = () => undefined) {
    this.#pending = pending;
    this.#onChange = onChange;
  }

  get pending(): PendingRestore | undefined {
    return this.#pending;
  }

  get isOpen(): boolean {
    return this.#pending === undefined;
  }

  /** Issue 22: throws INTEGRITY_VIOLATION while a restore awaits acknowledgement and `service` signs or consumes. */
  assertAllows(service: string): void {
    if (this.#pending && refusedWhileRestored(service)) throw new InkanError("INTEGRITY_VIOLATION", restoreAwaitingMessage);
  }

  /**
   * Reads the state again from the audit log: another node's acknowledgement opens this node too
   * (the acknowledgement's changes are in the shared store; its heads reach this node by the tail).
   */
  async refresh(store: Pick<AuditRecords, "listAuditNodes" | "readAuditRecordsByEvent">): Promise<void> {
    const pending = this.#pending;
    if (!pending) return;
    const now = await findPendingRestore(store);
    if (now?.restoreId !== pending.restoreId) this.acknowledged(pending.restoreId);
  }

  /** The restore `restoreId` was acknowledged (and audited): serve again. */
  acknowledged(restoreId: string): void {
    if (this.#pending?.restoreId === restoreId) this.#pending = undefined;
    this.#onChange();
  }
}
