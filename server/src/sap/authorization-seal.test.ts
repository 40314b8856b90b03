import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { IntegrityViolationError } from "../integrity/record-sealer.js";
import type { SadTokenRecord, TransactionRecord } from "../store/port.js";
import { AuthorizationSeals, type AuthorizationFacts } from "./authorization-seal.js";

// Issue 14 (T-2.2.2.2): the pure logic of sealed authorizations and entry/token MACs, with a fake
// module HMAC (the real one is exercised by insider.test.ts on SoftHSM2).
const moduleKey = Buffer.from("module-held record-seal key (fake)");
const keys = { hmacSha256: async (_key: "record-seal", data: Uint8Array) => new Uint8Array(createHmac("sha256", moduleKey).update(data).digest()) };

function setup() {
  const reported: string[] = [];
  const seals = new AuthorizationSeals({ keys, onViolation: (kind, id, cause) => void reported.push(`${kind} ${id} ${cause}`) });
  return { seals, reported };
}

const expiresAt = new Date("2030-01-01T00:10:00.000Z");
const digest = new Uint8Array(32).fill(7);
const facts: AuthorizationFacts = {
  v: 1, transactionId: "txn_1", signerId: "sgn_1", credentialId: "crd_1", sca: "ab".repeat(32), hashAlgorithm: "SHA256",
  signatureScheme: "ECDSA", signatureFormat: 0, numSignatures: 2, dtbsrDigest: Buffer.from(digest).toString("base64url"),
  expiresAt: expiresAt.toISOString(), authorizedAt: "2030-01-01T00:00:00.000Z", method: "AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN",
  factors: [{ id: "dev", type: "DEVICE_KEY" }, { id: "pin", type: "PIN" }], csrOnly: false,
};

async function recordWith(seals: AuthorizationSeals, change: Partial<TransactionRecord> = {}): Promise<TransactionRecord> {
  return {
    id: "txn_1", credentialId: "crd_1", signerId: "sgn_1", sca: "ab".repeat(32), hashAlgorithm: "SHA256", numSignatures: 2, body: "{}",
    createdAt: new Date("2030-01-01T00:00:00.000Z"), expiresAt, state: "AUTHORIZED", hashCount: 2, dtbsrDigest: digest, challengeHash: "c",
    signaturesCreated: 0, signaturesRecorded: 0, authorizeFailures: 0, authorizedAt: new Date("2030-01-01T00:00:00.000Z"), updatedAt: new Date("2030-01-01T00:00:00.000Z"),
    authorization: await seals.seal(facts), ...change,
  };
}

describe("sealed authorization (issue 14, T-2.2.2.2)", () => {
  it("opens what it sealed for the row that agrees with it", async () => {
    const { seals } = setup();
    expect(await seals.open(await recordWith(seals))).toEqual(facts);
  });

  it("refuses, and reports, a row without an authorization, a forged seal, another row's authorization, or a row that disagrees with it", async () => {
    const { seals, reported } = setup();
    const genuine = await recordWith(seals);
    const cases: Partial<TransactionRecord>[] = [
      { authorization: undefined },
      { authorization: { body: genuine.authorization!.body, seal: new Uint8Array(32) } },
      { authorization: { body: genuine.authorization!.body.replace('"ECDSA"', '"RSA_PSS"'), seal: genuine.authorization!.seal } },
      { id: "txn_clone" },
      { credentialId: "crd_other" },
      { signerId: "sgn_other" },
      { sca: "cd".repeat(32) },
      { numSignatures: 5 },
      { hashAlgorithm: "SHA512" },
      { dtbsrDigest: new Uint8Array(32).fill(8) },
      { expiresAt: new Date(expiresAt.getTime() + 86_400_000) },
    ];
    for (const change of cases) await expect(seals.open({ ...genuine, ...change })).rejects.toBeInstanceOf(IntegrityViolationError);
    expect(reported).toHaveLength(cases.length);
  });

  it("an entry's MAC binds its transaction, index and hash", async () => {
    const { seals, reported } = setup();
    const key = await seals.entryKey("txn_1");
    const hash = new Uint8Array(32).fill(1);
    const mac = key.mac(3, hash);
    await key.checkEntry(3, hash, mac);
    await expect(key.checkEntry(4, hash, mac)).rejects.toBeInstanceOf(IntegrityViolationError); // moved
    await expect(key.checkEntry(3, new Uint8Array(32).fill(2), mac)).rejects.toBeInstanceOf(IntegrityViolationError); // swapped
    await expect(key.checkEntry(3, hash, undefined)).rejects.toBeInstanceOf(IntegrityViolationError); // inserted without one
    await expect((await seals.entryKey("txn_2")).checkEntry(3, hash, mac)).rejects.toBeInstanceOf(IntegrityViolationError); // cloned
    expect(reported).toHaveLength(4);
  });

  it("issue 20: the entries of a claim are checked in one pass: the MACs are the ones stored before (HMAC over 'e', index, hash), and the first edited entry is reported", async () => {
    const { seals, reported } = setup();
    const key = await seals.entryKey("txn_1");
    const entryKey = await keys.hmacSha256("record-seal", new TextEncoder().encode("inkan-transaction-entry-key-v1\ntxn_1"));
    const indices = Array.from({ length: 300 }, (_, i) => 1000 + 3 * i);
    const hashes = indices.map((i) => new Uint8Array(32).fill(i & 0xff).map((b, j) => b ^ j));
    const macs = indices.map((index, i) => key.mac(index, hashes[i]!));
    indices.forEach((index, i) => {
      const position = Buffer.from([0x65, index >>> 24, (index >>> 16) & 0xff, (index >>> 8) & 0xff, index & 0xff]);
      expect(Buffer.from(macs[i]!).toString("hex")).toBe(createHmac("sha256", entryKey).update(position).update(hashes[i]!).digest().subarray(0, 16).toString("hex"));
    });
    await key.checkEntries(indices, hashes, macs);
    for (const bad of [0, 150, 299]) {
      const edited: (Uint8Array | undefined)[] = macs.slice();
      edited[bad] = new Uint8Array(edited[bad]!).map((b, j) => (j === 0 ? b ^ 1 : b));
      if (bad === 150) edited[200] = undefined; // a later bad one: the first is reported
      await expect(key.checkEntries(indices, hashes, edited)).rejects.toBeInstanceOf(IntegrityViolationError);
      expect(reported.at(-1)).toBe(`dtbsr txn_1#${indices[bad]} seal`);
    }
    await expect(key.checkEntries(indices, hashes.slice(1), macs)).rejects.toBeInstanceOf(RangeError);
    expect(reported).toHaveLength(3);
  });

  it("a token's MAC binds every field the SAM wrote", async () => {
    const { seals } = setup();
    const key = await seals.entryKey("txn_1");
    const fields = { hash: "h", transactionId: "txn_1", generation: 1, previousHash: "p", minIndex: 0, issuedAt: new Date(0), expiresAt: new Date(60_000) };
    const token: SadTokenRecord = { ...fields, mac: key.tokenMac(fields), consumedAt: undefined, revokedAt: undefined };
    await key.checkToken(token);
    await key.checkToken({ ...token, consumedAt: new Date(1) }); // state columns are not the MAC's: their rollback is the heads' job
    for (const change of [{ expiresAt: new Date(120_000) }, { generation: 0 }, { transactionId: "txn_2" }, { hash: "h2" }, { minIndex: 5 }, { mac: undefined }]) {
      await expect(key.checkToken({ ...token, ...change })).rejects.toBeInstanceOf(IntegrityViolationError);
    }
  });
});
