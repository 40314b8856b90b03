import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PolicyVersion, defaultSecurityPolicy } from "../admin/security-policy.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { AuditEvent } from "../audit/events.js";
import { InkanError } from "../errors.js";
import type { CredentialView } from "../registration/credentials.js";
import type { CredentialStatus } from "../store/port.js";
import { createSqliteStore, type SqliteStore } from "../store/sqlite/sqlite-store.js";
import { MemoryFreshness } from "../integrity/freshness.js";
import { AuthorizationSeals } from "./authorization-seal.js";
import { dtbsrDigest } from "./dtbsr-digest.js";
import { SapTransactions, type ScaCaller } from "./transactions.js";

// SapTransactions with the real SQLite store, a fixed clock and fakes of the other ports.
const t0 = new Date("2026-03-01T10:00:00Z");
const me: ScaCaller = { certificateSha256: "aa".repeat(32), subject: "CN=sca-a" };
const other: ScaCaller = { certificateSha256: "bb".repeat(32), subject: "CN=sca-b" };
const h = (s: string) => new Uint8Array(createHash("sha256").update(s).digest());

let dir: string;
let store: SqliteStore;
let now: Date;
let events: AuditEvent[];
let auditFails: boolean;
let status: CredentialStatus;

/** The policy's max_hashes_per_chunk: small, so that an upload in chunks takes a few hashes. */
let chunkSize: number;
const policy = () => new PolicyVersion({
  kind: "policy",
  id: "security-policy",
  version: 1,
  body: JSON.stringify({ policy: { ...defaultSecurityPolicy({ trustedScaCaCertificates: [], trustedAdminCaCertificates: [] }), maxHashesPerChunk: chunkSize }, updatedAt: t0.toISOString(), updatedBy: "", approvedBy: "" }),
  seal: new Uint8Array(),
});
const credential = (): CredentialView => ({
  credential: { kind: "credential", id: "cred-1", signerId: "signer-1", status, version: 1, body: "", seal: new Uint8Array() },
  body: { keyAlgorithm: "EC_P256", assuranceLevel: 2 },
} as unknown as CredentialView);

function service(): SapTransactions {
  const audit: AuditLog = {
    async record(e) {
      if (auditFails) throw new InkanError("AUDIT_FAILURE", "the audit log is unavailable");
      events.push(e);
    },
  };
  return new SapTransactions({
    store,
    random: { randomBytes: async (n) => new Uint8Array(n).map(() => Math.floor(Math.random() * 256)) },
    policies: { current: async () => policy() },
    credentials: { get: async (id) => { if (id !== "cred-1") throw new InkanError("CREDENTIAL_NOT_FOUND", "no such credential"); return credential(); } },
    samKeys: { audienceAndCurrentKey: async () => ({ audience: "urn:inkan:sam:test", encryptionKey: { kid: "k1", alg: "ECDH-ES+A256KW", jwk: {} as never, current: true, notAfter: undefined } }) },
    audit,
    seals: new AuthorizationSeals({ keys: { hmacSha256: async (_key, data) => new Uint8Array(createHash("sha256").update("test-key").update(data).digest()) } }),
    freshness: new MemoryFreshness(),
    clock: () => now,
  });
}
const beginInput = (hashes: Uint8Array[], n = hashes.length) => ({
  caller: me, credentialId: "cred-1", signerId: "signer-1", hashAlgorithm: "SHA256" as const, signatureFormat: 0, numSignatures: n, hashes, description: "test",
});
const codeOf = async (p: Promise<unknown>) => p.then(() => "OK", (e: unknown) => (e instanceof InkanError ? e.code : String(e)));

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "inkan-tx-"));
  store = await createSqliteStore({ file: join(dir, "store.sqlite3") });
  now = t0;
  events = [];
  auditFails = false;
  status = "ACTIVE";
  chunkSize = 1;
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("SapTransactions (domain)", () => {
  it("T-2.2.1.4: a SUSPENDED, LOCKED or DESTROYED credential cannot open a transaction, and nothing is stored", async () => {
    for (const [s, code] of [["SUSPENDED", "CREDENTIAL_SUSPENDED"], ["LOCKED", "CREDENTIAL_LOCKED"], ["DESTROYED", "CREDENTIAL_DESTROYED"]] as const) {
      status = s;
      expect(await codeOf(service().begin(beginInput([h("a")])))).toBe(code);
    }
    expect(events).toEqual([]);
  });

  it("R-3.2.2.4: when the audit record cannot be written, no challenge leaves (fail closed)", async () => {
    auditFails = true;
    expect(await codeOf(service().begin(beginInput([h("a")])))).toBe("AUDIT_FAILURE");
  });

  it("the transaction binds the SCA's certificate; another SCA gets TRANSACTION_NOT_FOUND (R-3.2.1.2)", async () => {
    const tx = service();
    const res = await tx.begin(beginInput([h("a")], 2));
    expect(res.state).toBe("UPLOADING");
    const loaded = await tx.load(res.transactionId, me);
    expect(loaded.record).toMatchObject({ sca: me.certificateSha256, credentialId: "cred-1", signerId: "signer-1", numSignatures: 2, hashAlgorithm: "SHA256" });
    expect(loaded.state).toBe("UPLOADING");
    expect(await codeOf(tx.load(res.transactionId, other))).toBe("TRANSACTION_NOT_FOUND");
    expect(await codeOf(tx.append({ caller: other, transactionId: res.transactionId, chunkIndex: 1, hashes: [h("b")] }))).toBe("TRANSACTION_NOT_FOUND");
  });

  it("R-3.2.1.4: an upload that does not finish before upload_expires_at is EXPIRED; a sealed transaction reports EXPIRED after its lifetime", async () => {
    const tx = service();
    const up = await tx.begin(beginInput([h("a")], 2));
    now = new Date(t0.getTime() + 600_000);
    expect(await codeOf(tx.append({ caller: me, transactionId: up.transactionId, chunkIndex: 1, hashes: [h("b")] }))).toBe("EXPIRED");
    expect(await codeOf(tx.sealUpload({ caller: me, transactionId: up.transactionId, dtbsrDigest: dtbsrDigest(1, [h("a"), h("b")]) }))).toBe("EXPIRED");

    now = t0;
    const sealed = await tx.begin(beginInput([h("c")]));
    expect(sealed.state).toBe("PENDING");
    if (sealed.state !== "PENDING") return;
    expect(sealed.sadChallenge.expiresAt).toEqual(new Date(t0.getTime() + 300_000));
    expect((await tx.load(sealed.transactionId, me)).record.dtbsrDigest).toEqual(dtbsrDigest(1, [h("c")]));
    now = new Date(t0.getTime() + 300_000);
    expect((await tx.load(sealed.transactionId, me)).state).toBe("EXPIRED");
    // Cancelling an ended transaction changes nothing and reports how it ended.
    expect(await tx.cancel({ caller: me, transactionId: sealed.transactionId })).toEqual({ state: "EXPIRED", signaturesCreated: 0 });
  });

  it("the challenge is returned once: sealing a sealed transaction again is TRANSACTION_STATE (only its hash is kept)", async () => {
    const tx = service();
    const up = await tx.begin(beginInput([h("a")], 2));
    await tx.append({ caller: me, transactionId: up.transactionId, chunkIndex: 1, hashes: [h("b")] });
    const digest = dtbsrDigest(1, [h("a"), h("b")]);
    const first = await tx.sealUpload({ caller: me, transactionId: up.transactionId, dtbsrDigest: digest });
    expect(first.challenge).toHaveLength(32);
    expect(await codeOf(tx.sealUpload({ caller: me, transactionId: up.transactionId, dtbsrDigest: digest }))).toBe("TRANSACTION_STATE");
  });

  it("R-3.2.1.4 (issue 18): every chunk but the last holds exactly max_hashes_per_chunk: a short chunk 0 is refused before anything is stored or audited, a short AppendHashes chunk that is not the last is refused", async () => {
    chunkSize = 2;
    const tx = service();
    for (const [inline, n] of [[[], 3], [[h("a")], 3], [[h("a")], 2]] as const) {
      expect(await codeOf(tx.begin(beginInput([...inline], n))), `${inline.length} of ${n}`).toBe("INVALID_REQUEST");
    }
    expect(events).toEqual([]);
    const up = await tx.begin(beginInput([h("a"), h("b")], 5));
    expect(up).toMatchObject({ state: "UPLOADING", hashesReceived: 2, nextChunkIndex: 1 });
    expect(await codeOf(tx.append({ caller: me, transactionId: up.transactionId, chunkIndex: 1, hashes: [h("c")] }))).toBe("INVALID_REQUEST");
    expect(await tx.append({ caller: me, transactionId: up.transactionId, chunkIndex: 1, hashes: [h("c"), h("d")] })).toMatchObject({ hashesReceived: 4, nextChunkIndex: 2 });
    expect(await tx.append({ caller: me, transactionId: up.transactionId, chunkIndex: 2, hashes: [h("e")] })).toMatchObject({ hashesReceived: 5 });
    // A list that fits in chunk 0 is sealed at once, however short.
    expect((await tx.begin(beginInput([h("f")], 1))).state).toBe("PENDING");
  });
});
