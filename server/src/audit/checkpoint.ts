/**
 * Signed audit checkpoints (R-3.2.2.4): a compact JWS by the crypto module's "audit-signing" key
 * over a node's chain head, in the form audit.proto (AuditCheckpoint) defines:
 *
 *   protected header {"alg":"ES256","typ":"inkan-audit-checkpoint+jwt","kid":<key id>}
 *   payload          {"nod":<node id>,"seq":<sequence, a JSON number>,"hsh":<base64url record hash>,"iat":<seconds>,
 *                     "vct":<versioned events up to seq>,"vdg":<base64url digest over them>}
 *
 * "vct" and "vdg" (issue 14) are the count and running digest of the node's "record.versioned"
 * events up to `seq` (versioned-journal.ts): a node checks them at start by reading only those
 * events. Checkpoints written before them carry neither, and such a checkpoint anchors no digest.
 *
 * The key id is the RFC 7638 JWK SHA-256 thumbprint of the public key. The private key never
 * leaves the module, so jose cannot sign: the signing input is built here, its SHA-256 signed by
 * the module (raw r||s), and the result is verified with jose's `compactVerify`.
 *
 * Storage: the store row holds `body` = JCS of the checkpoint's proto3 JSON (nodeId, sequence,
 * recordHash, signedAt, keyId, jws) and `signature` = the raw 64-byte ECDSA signature (the JWS's
 * third part). The newest checkpoint of each node is also written, in the same JSON, to a data
 * object in the crypto module (its high-water mark), outside the database, so a truncated
 * database is detected; a small index data object lists the nodes that keep one.
 */
import { base64url, calculateJwkThumbprint, compactVerify, exportJWK, importJWK, importSPKI, type JWK } from "jose";
import type { AuditSigning, DataObjects } from "../crypto/port.js";
import { InkanError } from "../errors.js";
import type { AuditCheckpoint } from "../store/port.js";
import type { VersionedAnchor, VersionedDigest } from "./versioned-journal.js";
import {
  HASH_LENGTH,
  canonicalJson,
  equalBytes,
  fromBase64,
  parseSequenceJson,
  parseTimestampJson,
  sha256,
  timestampJson,
  toBase64,
} from "./record-form.js";

export const CHECKPOINT_JWS_TYPE = "inkan-audit-checkpoint+jwt";

/** `inkan.admin.v1.AuditCheckpoint` in proto3 JSON: the store body, the data object, the export line. */
export interface AuditCheckpointJson {
  readonly nodeId: string;
  /** Decimal string. */
  readonly sequence: string;
  /** Standard base64 of the 32-byte record hash. */
  readonly recordHash: string;
  /** RFC 3339 UTC, whole seconds (the JWS's iat). */
  readonly signedAt: string;
  readonly keyId: string;
  readonly jws: string;
}

/** A public audit key ready for verification. */
export interface AuditPublicKey {
  /** RFC 7638 thumbprint, base64url: the checkpoints' `kid`. */
  readonly keyId: string;
  /** Public JWK (P-256) with `alg` "ES256" and `kid`. */
  readonly jwk: JWK;
  readonly key: Awaited<ReturnType<typeof importJWK>>;
}

/** A parsed checkpoint: what the verifiers compare against the chain. */
export interface CheckpointClaim {
  readonly nodeId: string;
  readonly sequence: number;
  readonly recordHash: Uint8Array;
  readonly signedAt: Date;
  /**
   * The count and digest of the node's versioned events up to `sequence`, from the JWS payload
   * ("vct", "vdg"); undefined for a checkpoint made before they existed. Trusted only once
   * {@link checkpointProblem} has verified the JWS.
   */
  readonly versioned: VersionedDigest | undefined;
  readonly json: AuditCheckpointJson;
}

function spkiToPem(spki: Uint8Array): string {
  const b64 = Buffer.from(spki).toString("base64").replace(/(.{64})/g, "$1\n");
  return `-----BEGIN PUBLIC KEY-----\n${b64}\n-----END PUBLIC KEY-----\n`;
}

/** Imports an audit public key from DER SPKI (as `systemPublicKey("audit-signing")` returns it). */
export async function auditKeyFromSpki(spki: Uint8Array): Promise<AuditPublicKey> {
  const imported = await importSPKI(spkiToPem(spki), "ES256", { extractable: true });
  return auditKeyFromJwk(await exportJWK(imported));
}

/** Imports an audit public key from a JWK (as ListAuditKeys and the export header carry it). */
export async function auditKeyFromJwk(input: JWK): Promise<AuditPublicKey> {
  if (input.kty !== "EC" || input.crv !== "P-256" || typeof input.x !== "string" || typeof input.y !== "string" || "d" in input) {
    throw new InkanError("INVALID_REQUEST", "an audit key is a public P-256 JWK");
  }
  const base = { kty: "EC", crv: "P-256", x: input.x, y: input.y };
  const keyId = await calculateJwkThumbprint(base, "sha256");
  const jwk: JWK = { ...base, alg: "ES256", kid: keyId };
  return { keyId, jwk, key: await importJWK(jwk, "ES256") };
}

/** Accepts DER SPKI bytes or JWKs. */
export async function auditKeysFrom(keys: Uint8Array | JWK | readonly (Uint8Array | JWK)[]): Promise<AuditPublicKey[]> {
  const list = Array.isArray(keys) ? (keys as readonly (Uint8Array | JWK)[]) : [keys as Uint8Array | JWK];
  return Promise.all(list.map((k) => (k instanceof Uint8Array ? auditKeyFromSpki(k) : auditKeyFromJwk(k))));
}

/**
 * Signs a checkpoint over `recordHash` at `sequence` with the module's audit key. `signedAt` is
 * truncated to whole seconds so that it equals the JWS's `iat`.
 */
export async function signCheckpoint(args: {
  module: AuditSigning;
  keyId: string;
  nodeId: string;
  sequence: number;
  recordHash: Uint8Array;
  /** The node's versioned events up to `sequence` (versioned-journal.ts). */
  versioned: VersionedDigest;
  now: Date;
}): Promise<AuditCheckpoint> {
  const iat = Math.floor(args.now.getTime() / 1000);
  const signedAt = new Date(iat * 1000);
  const header = { alg: "ES256", typ: CHECKPOINT_JWS_TYPE, kid: args.keyId };
  const payload = {
    nod: args.nodeId,
    seq: args.sequence,
    hsh: base64url.encode(args.recordHash),
    iat,
    vct: args.versioned.count,
    vdg: base64url.encode(args.versioned.digest),
  };
  const signingInput = `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(payload))}`;
  // R-3.2.2.4: the checkpoint is signed inside the crypto module; ES256 wants raw r||s.
  const signature = await args.module.signWithSystemKey("audit-signing", { hash: sha256(signingInput), format: "raw" });
  const json: AuditCheckpointJson = {
    nodeId: args.nodeId,
    sequence: String(args.sequence),
    recordHash: toBase64(args.recordHash),
    signedAt: timestampJson(signedAt),
    keyId: args.keyId,
    jws: `${signingInput}.${base64url.encode(signature)}`,
  };
  return { nodeId: args.nodeId, sequence: args.sequence, time: signedAt, body: canonicalJson(json), signature };
}

/** Parses a checkpoint's proto3 JSON (text or object); undefined if it is not well formed. */
export function parseCheckpointJson(input: unknown): CheckpointClaim | undefined {
  let value = input;
  if (typeof input === "string") {
    try {
      value = JSON.parse(input);
    } catch {
      return undefined;
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  const allowed = new Set(["nodeId", "sequence", "recordHash", "signedAt", "keyId", "jws"]);
  if (!Object.keys(v).every((k) => allowed.has(k))) return undefined;
  const sequence = parseSequenceJson(v["sequence"]);
  const recordHash = fromBase64(v["recordHash"]);
  const signedAt = parseTimestampJson(v["signedAt"]);
  if (typeof v["nodeId"] !== "string" || !v["nodeId"] || typeof v["keyId"] !== "string" || typeof v["jws"] !== "string") return undefined;
  if (sequence === undefined || recordHash?.length !== HASH_LENGTH || !signedAt) return undefined;
  const versioned = versionedClaims(unverifiedPayload(v["jws"]));
  if (versioned === null) return undefined;
  return { nodeId: v["nodeId"], sequence, recordHash, signedAt, versioned, json: v as unknown as AuditCheckpointJson };
}

/** The payload of a compact JWS, not verified; undefined if it is not a JSON object. */
function unverifiedPayload(jws: string): Record<string, unknown> | undefined {
  const part = jws.split(".")[1];
  const bytes = part === undefined ? undefined : safeBase64url(part);
  if (!bytes) return undefined;
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** "vct" and "vdg" of a payload: both, neither (undefined), or malformed (null). */
function versionedClaims(payload: Record<string, unknown> | undefined): VersionedDigest | undefined | null {
  if (!payload || (!("vct" in payload) && !("vdg" in payload))) return undefined;
  const count = payload["vct"];
  const digest = typeof payload["vdg"] === "string" ? safeBase64url(payload["vdg"]) : undefined;
  if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 0 || digest?.length !== HASH_LENGTH) return null;
  return { count, digest };
}

/** The digest a verified checkpoint states, as an anchor for versioned-journal.ts; undefined if it states none. */
export function versionedAnchorOf(claim: CheckpointClaim, label: string): VersionedAnchor | undefined {
  return claim.versioned && { sequence: claim.sequence, versioned: claim.versioned, label: `${label} ${claim.sequence}` };
}

/**
 * Verifies a checkpoint: the JWS signature by one of `keys` (selected by kid), its header, and
 * that the payload states exactly the checkpoint's node, sequence, record hash and time. Returns
 * the reason it is invalid, or undefined when it is valid.
 */
export async function checkpointProblem(claim: CheckpointClaim, keys: readonly AuditPublicKey[]): Promise<string | undefined> {
  const key = keys.find((k) => k.keyId === claim.json.keyId);
  if (!key) return `checkpoint ${claim.sequence} is signed by an unknown audit key (${claim.json.keyId})`;
  let verified: Awaited<ReturnType<typeof compactVerify>>;
  try {
    verified = await compactVerify(claim.json.jws, key.key, { algorithms: ["ES256"] });
  } catch {
    return `checkpoint ${claim.sequence}: signature does not verify`;
  }
  const header = verified.protectedHeader;
  if (header.typ !== CHECKPOINT_JWS_TYPE || header.kid !== key.keyId) return `checkpoint ${claim.sequence}: wrong JWS header`;
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(new TextDecoder().decode(verified.payload)) as Record<string, unknown>;
  } catch {
    return `checkpoint ${claim.sequence}: payload is not JSON`;
  }
  const hsh = typeof payload["hsh"] === "string" ? safeBase64url(payload["hsh"]) : undefined;
  const versioned = versionedClaims(payload);
  if (
    payload["nod"] !== claim.nodeId ||
    payload["seq"] !== claim.sequence ||
    !equalBytes(hsh, claim.recordHash) ||
    payload["iat"] !== claim.signedAt.getTime() / 1000 ||
    versioned === null ||
    versioned?.count !== claim.versioned?.count ||
    (versioned !== undefined && !equalBytes(versioned.digest, claim.versioned?.digest))
  ) {
    return `checkpoint ${claim.sequence}: signed content differs from the checkpoint`;
  }
  return undefined;
}

/**
 * Checks a checkpoint row of the store: its body must be the canonical checkpoint JSON, agree
 * with the row's columns, carry a valid JWS, and the signature column must be the JWS signature.
 * Returns the parsed claim and the reason it is invalid, if it is.
 */
export async function storedCheckpointProblem(
  row: AuditCheckpoint,
  keys: readonly AuditPublicKey[],
): Promise<{ claim: CheckpointClaim | undefined; problem: string | undefined }> {
  const claim = parseCheckpointJson(row.body);
  if (!claim || canonicalJson(claim.json) !== row.body) return { claim: undefined, problem: `checkpoint ${row.sequence}: malformed body` };
  if (claim.nodeId !== row.nodeId || claim.sequence !== row.sequence || claim.signedAt.getTime() !== row.time.getTime()) {
    return { claim, problem: `checkpoint ${row.sequence}: row does not match its signed body` };
  }
  const sig = safeBase64url(claim.json.jws.split(".")[2] ?? "");
  if (!equalBytes(sig, row.signature)) return { claim, problem: `checkpoint ${row.sequence}: signature column differs from the JWS` };
  return { claim, problem: await checkpointProblem(claim, keys) };
}

function safeBase64url(text: string): Uint8Array | undefined {
  try {
    return base64url.decode(text);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The newest checkpoint in the crypto module (the high-water mark)
// ---------------------------------------------------------------------------------------------

/** The data object listing the nodes that keep a checkpoint in the module (JSON array of node ids). */
export const AUDIT_NODES_LABEL = "audit-nodes";

/**
 * The data object label of a node's newest checkpoint: "audit-cp:<node id>" when the id fits a
 * label (1 to 55 of A-Z a-z 0-9 . _ -), otherwise "audit-cph:<base64url SHA-256 of the id>".
 */
export function checkpointLabel(nodeId: string): string {
  if (/^[A-Za-z0-9._-]{1,55}$/.test(nodeId)) return `audit-cp:${nodeId}`;
  return `audit-cph:${base64url.encode(sha256(nodeId))}`;
}

/** A node's newest checkpoint as the crypto module keeps it. */
export interface AuditHighWaterMark {
  readonly nodeId: string;
  readonly sequence: number;
  readonly recordHash: Uint8Array;
  /** The full signed checkpoint, verified again by the verifiers. */
  readonly checkpoint: CheckpointClaim;
}

/** Reads one node's high-water mark; throws INTEGRITY_VIOLATION if the object is not a checkpoint of that node. */
export async function readHighWaterMark(module: DataObjects, nodeId: string): Promise<AuditHighWaterMark | undefined> {
  const raw = await module.readDataObject(checkpointLabel(nodeId));
  if (raw === undefined || raw.length === 0) return undefined;
  const claim = parseCheckpointJson(new TextDecoder().decode(raw));
  if (!claim || claim.nodeId !== nodeId) {
    throw new InkanError("INTEGRITY_VIOLATION", `the audit checkpoint of node ${nodeId} in the crypto module is unreadable`);
  }
  return { nodeId, sequence: claim.sequence, recordHash: claim.recordHash, checkpoint: claim };
}

/** Writes a node's newest checkpoint (its stored body: canonical checkpoint JSON) to the module. */
export async function writeHighWaterMark(module: DataObjects, nodeId: string, checkpointBody: string): Promise<void> {
  await module.writeDataObject(checkpointLabel(nodeId), new TextEncoder().encode(checkpointBody));
}

/**
 * Issue 21: the module's entry for one node, an object of its own ("audit-node:<id>", or
 * "audit-nodeh:<hash>" like {@link checkpointLabel}) holding the node id. Nodes sharing a module
 * each write only their own entry, so nodes starting together lose none (a shared index object,
 * rewritten read-modify-write by every node, lost entries: see README, multi-node).
 */
export function nodeEntryLabel(nodeId: string): string {
  if (/^[A-Za-z0-9._-]{1,52}$/.test(nodeId)) return `audit-node:${nodeId}`;
  return `audit-nodeh:${base64url.encode(sha256(nodeId))}`;
}

/** The node ids the module knows: the per-node entries, plus the shared index written before issue 21. */
export async function readAuditNodeIndex(module: DataObjects): Promise<string[]> {
  const nodes = new Set(await readLegacyNodeIndex(module));
  if (module.listDataObjectLabels) {
    for (const label of await module.listDataObjectLabels("audit-node")) {
      const raw = await module.readDataObject(label);
      if (raw === undefined) continue; // removed meanwhile
      const nodeId = new TextDecoder().decode(raw);
      if (nodeEntryLabel(nodeId) !== label) throw new InkanError("INTEGRITY_VIOLATION", `the audit node entry ${label} in the crypto module is unreadable`);
      nodes.add(nodeId);
    }
  }
  return [...nodes].sort();
}

async function readLegacyNodeIndex(module: DataObjects): Promise<string[]> {
  const raw = await module.readDataObject(AUDIT_NODES_LABEL);
  if (raw === undefined || raw.length === 0) return [];
  try {
    const list: unknown = JSON.parse(new TextDecoder().decode(raw));
    if (Array.isArray(list) && list.every((n) => typeof n === "string")) return list as string[];
  } catch {
    // fall through
  }
  throw new InkanError("INTEGRITY_VIOLATION", "the audit node index in the crypto module is unreadable");
}

/**
 * Adds `nodeId` to the module's index if it is missing: its own entry object where the module can
 * list objects (no other node writes it: race-free, issue 21), else the shared index (a lost
 * update there is repaired at this node's next checkpoint).
 */
export async function ensureAuditNodeIndexed(module: DataObjects, nodeId: string): Promise<void> {
  if (module.listDataObjectLabels) {
    const label = nodeEntryLabel(nodeId);
    const entry = await module.readDataObject(label);
    if (entry === undefined || new TextDecoder().decode(entry) !== nodeId) await module.writeDataObject(label, new TextEncoder().encode(nodeId));
    return;
  }
  const nodes = await readLegacyNodeIndex(module);
  if (nodes.includes(nodeId)) return;
  const next = [...nodes, nodeId].sort();
  await module.writeDataObject(AUDIT_NODES_LABEL, new TextEncoder().encode(JSON.stringify(next)));
}

/** Every high-water mark the module holds: the nodes in its index (plus `alsoNodes`), sorted by node id. */
export async function readHighWaterMarks(module: DataObjects, alsoNodes: readonly string[] = []): Promise<AuditHighWaterMark[]> {
  const nodes = [...new Set([...(await readAuditNodeIndex(module)), ...alsoNodes])].sort();
  const marks: AuditHighWaterMark[] = [];
  for (const node of nodes) {
    const mark = await readHighWaterMark(module, node);
    if (mark) marks.push(mark);
  }
  return marks;
}
