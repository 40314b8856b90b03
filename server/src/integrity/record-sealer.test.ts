import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { SystemKeys } from "../crypto/port.js";
import type { CredentialRecord } from "../store/port.js";
import { FieldCipher, IntegrityViolationError, RecordSealer } from "./record-sealer.js";

// Unit tests of the sealing logic with node:crypto standing in for the module's system keys; the
// integration test (integrity.test.ts) runs the same code on a SoftHSM2 token and a SQLite file.
const hmacKey = randomBytes(32);
const aesKey = randomBytes(32);
const keys: SystemKeys = {
  async hmacSha256(_key, data) {
    return createHmac("sha256", hmacKey).update(data).digest();
  },
  async encrypt(_key, plaintext, aad) {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", aesKey, iv).setAAD(aad);
    return Buffer.concat([iv, c.update(plaintext), c.final(), c.getAuthTag()]);
  },
  async decrypt(_key, sealed, aad) {
    const d = createDecipheriv("aes-256-gcm", aesKey, sealed.subarray(0, 12)).setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    return Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]);
  },
};

const credential: Omit<CredentialRecord, "seal"> = {
  kind: "credential",
  id: "cred-1",
  version: 1,
  signerId: "signer-1",
  status: "ACTIVE",
  publicKeyFingerprint: "ab".repeat(32),
  body: JSON.stringify({ keyId: "0a0b", algorithm: "EC_P256" }),
};

describe("RecordSealer (R-3.1.1.1, R-3.2.1.7)", () => {
  const violations: string[] = [];
  const sealer = new RecordSealer({ keys, onViolation: (kind, id) => void violations.push(`${kind}/${id}`) });

  it("verifies what it sealed", async () => {
    const sealed = await sealer.seal<CredentialRecord>(credential);
    await expect(sealer.verify(sealed)).resolves.toEqual(sealed);
  });

  const edits: [string, (r: CredentialRecord) => CredentialRecord][] = [
    ["another signer", (r) => ({ ...r, signerId: "signer-2" })],
    ["another status", (r) => ({ ...r, status: "SUSPENDED" })],
    ["another public key", (r) => ({ ...r, publicKeyFingerprint: "cd".repeat(32) })],
    ["a raised version", (r) => ({ ...r, version: 2 })],
    ["another id", (r) => ({ ...r, id: "cred-2" })],
    ["an edited body", (r) => ({ ...r, body: r.body.replace("0a0b", "0a0c") })],
  ];
  for (const [what, edit] of edits) {
    it(`refuses a record with ${what} and reports it`, async () => {
      const sealed = await sealer.seal<CredentialRecord>(credential);
      await expect(sealer.verify(edit(sealed))).rejects.toBeInstanceOf(IntegrityViolationError);
      expect(violations.at(-1)).toMatch(/^credential\//);
    });
  }

  it("refuses another record's seal (seals swapped)", async () => {
    const a = await sealer.seal<CredentialRecord>(credential);
    const b = await sealer.seal<CredentialRecord>({ ...credential, id: "cred-2" });
    await expect(sealer.verify({ ...a, seal: b.seal })).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
  });
});

describe("FieldCipher", () => {
  const cipher = new FieldCipher(keys);
  it("round-trips a confidential field bound to its record", async () => {
    const secret = new TextEncoder().encode("JBSWY3DPEHPK3PXP");
    const ct = await cipher.encrypt("factor", "f-1", secret);
    expect(Buffer.from(await cipher.decrypt("factor", "f-1", ct))).toEqual(Buffer.from(secret));
    await expect(cipher.decrypt("factor", "f-2", ct)).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
  });
});
