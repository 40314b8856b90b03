import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import canonicalize from "canonicalize";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { FullCryptoModule } from "../crypto/port.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import type { CredentialRecord, FactorRecord, SignerRecord, Store } from "../store/port.js";
import { createSqliteStore, sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { FieldCipher, RecordSealer } from "./record-sealer.js";
import { VerifiedRecords } from "./sealed-records.js";

// Direct tampering with the SQLite file, as an insider with write access to the database (but not
// to the crypto module) would do it. Every edit must be caught on read (R-3.1.1.1, R-3.2.1.7,
// R-3.2.2.3). Real SoftHSM2 token, real SQLite file.
let dataDir: string;
let crypto: FullCryptoModule;
let store: Store;
let records: VerifiedRecords;
let cipher: FieldCipher;
let db: Database.Database;
const violations: string[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "inkan-integrity-"));
  await initEmbeddedToken(dataDir);
  crypto = await openEmbeddedCryptoModule(dataDir);
  store = await createSqliteStore({ file: sqliteStoreFile(dataDir) });
  records = new VerifiedRecords(store, new RecordSealer({ keys: crypto, onViolation: (kind, id) => void violations.push(`${kind}/${id}`) }));
  cipher = new FieldCipher(crypto);
  db = new Database(sqliteStoreFile(dataDir)); // the insider's own connection
});
afterAll(async () => {
  db?.close();
  await store?.close();
  await crypto?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

let n = 0;
async function newCredential(signerId: string): Promise<CredentialRecord> {
  const key = await crypto.generateKeyPair("EC_P256");
  const spki = Buffer.from(key.publicKeySpki);
  return records.create<CredentialRecord>({
    kind: "credential",
    id: `cred-${++n}`,
    version: 1,
    signerId,
    status: "ACTIVE",
    publicKeyFingerprint: createHash("sha256").update(spki).digest("hex"),
    body: canonicalize({ keyId: key.keyId, algorithm: key.algorithm, publicKeySpki: spki.toString("base64") })!,
  });
}

async function expectCaught(kind: "credential" | "factor" | "signer", id: string) {
  const before = violations.length;
  await expect(records.get(kind, id)).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
  expect(violations.slice(before)).toEqual([`${kind}/${id}`]);
}

describe("sealed records on SoftHSM2 and SQLite: direct database edits are caught", () => {
  let a: CredentialRecord;
  let b: CredentialRecord;
  beforeEach(async () => {
    a = await newCredential("signer-alice");
    b = await newCredential("signer-bob");
  });

  it("reads back untouched records", async () => {
    expect(await records.get("credential", a.id)).toEqual(a);
    const page = await records.list({ kind: "credential", where: { signerId: "signer-alice" }, limit: 100 });
    expect(page.items.map((r) => r.id)).toContain(a.id);
  });

  it("catches a swapped public key (R-3.1.1.4, T-2.1.1.2)", async () => {
    const other = await crypto.generateKeyPair("EC_P256");
    const spki = Buffer.from(other.publicKeySpki);
    db.prepare("UPDATE credentials SET public_key_fingerprint = ?, body = json_set(body, '$.publicKeySpki', ?) WHERE id = ?")
      .run(createHash("sha256").update(spki).digest("hex"), spki.toString("base64"), a.id);
    await expectCaught("credential", a.id);
  });

  it("catches a credential moved to another signer (R-3.1.2.2)", async () => {
    db.prepare("UPDATE credentials SET signer_id = 'signer-mallory' WHERE id = ?").run(a.id);
    await expectCaught("credential", a.id);
    await expect(records.list({ kind: "credential", where: { signerId: "signer-mallory" }, limit: 10 })).rejects.toMatchObject({
      code: "INTEGRITY_VIOLATION",
    });
  });

  it("catches a reactivated credential (status edited)", async () => {
    const suspended = await records.update<CredentialRecord>({ ...a, version: 2, status: "SUSPENDED" }, 1);
    expect(suspended?.status).toBe("SUSPENDED");
    db.prepare("UPDATE credentials SET status = 'ACTIVE' WHERE id = ?").run(a.id);
    await expectCaught("credential", a.id);
  });

  it("catches two records' seals swapped", async () => {
    const seals = db.prepare("SELECT id, seal FROM credentials WHERE id IN (?, ?)").all(a.id, b.id) as { id: string; seal: Buffer }[];
    const update = db.prepare("UPDATE credentials SET seal = ? WHERE id = ?");
    update.run(seals[1]!.seal, seals[0]!.id);
    update.run(seals[0]!.seal, seals[1]!.id);
    await expectCaught("credential", a.id);
    await expectCaught("credential", b.id);
  });

  it("catches a forged record inserted with a made-up seal", async () => {
    db.prepare("INSERT INTO credentials (id, version, signer_id, status, public_key_fingerprint, body, seal) VALUES (?, 1, ?, 'ACTIVE', ?, '{}', ?)")
      .run("cred-forged", "signer-mallory", "00".repeat(32), Buffer.alloc(32, 1));
    await expectCaught("credential", "cred-forged");
  });
});

describe("counters and confidential fields", () => {
  it("catches a lowered failed-attempts counter on a factor (lockout evasion)", async () => {
    const factor = await records.create<FactorRecord>({
      kind: "factor", id: "factor-pin-1", version: 1, signerId: "signer-alice", type: "PIN", status: "ACTIVE",
      body: canonicalize({ failedAttempts: 4, pinHash: "argon2id$..." })!,
    });
    db.prepare("UPDATE factors SET body = json_set(body, '$.failedAttempts', 0) WHERE id = ?").run(factor.id);
    await expectCaught("factor", factor.id);
  });

  it("catches a raised record version (replaying an update)", async () => {
    const signer = await records.create<SignerRecord>({ kind: "signer", id: "signer-1", version: 1, status: "ACTIVE", body: "{}" });
    db.prepare("UPDATE signers SET version = 7 WHERE id = ?").run(signer.id);
    await expectCaught("signer", signer.id);
  });

  it("keeps a TOTP secret encrypted in the module's AES-GCM key, bound to its record", async () => {
    const secret = new TextEncoder().encode("JBSWY3DPEHPK3PXP");
    const encrypted = await cipher.encrypt("factor", "factor-totp-1", secret);
    expect(encrypted).not.toContain("JBSWY3DPEHPK3PXP");
    expect(Buffer.from(await cipher.decrypt("factor", "factor-totp-1", encrypted))).toEqual(Buffer.from(secret));
    // The same ciphertext copied into another signer's factor does not decrypt.
    await expect(cipher.decrypt("factor", "factor-totp-2", encrypted)).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
  });

  it("catches an edited security-policy version (R-3.2.2.3)", async () => {
    await records.appendPolicyVersion({ kind: "policy", id: "security-policy", version: 1, body: canonicalize({ lockoutThreshold: 5 })! });
    db.prepare("UPDATE policy_versions SET body = json_set(body, '$.lockoutThreshold', 1000000) WHERE id = 'security-policy'").run();
    await expect(records.latestPolicyVersion("security-policy")).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
  });
});
