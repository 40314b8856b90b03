/**
 * Issue 14, from the database insider's position (T-2.2.2.2, R-3.1.1.1, R-3.2.1.1): someone who can
 * write the SQLite file (triggers dropped first) but holds no key of the crypto module tries to grant
 * or use a signing authorization by inserting, cloning, editing and rolling back the rows of
 * `transactions`, `dtbsr` and `sad_tokens`. Each attempt signs nothing, answers INTEGRITY_VIOLATION
 * (or a refusal of state where the row put back is itself refused), is audited (integrity.failed),
 * and the SAM keeps serving other transactions. The real server: SoftHSM2, SQLite, mTLS, gRPC.
 */
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, type DeviceKey } from "@inkan/sdk";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { moduleSignatureCounter } from "../testing/module-signatures.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

let t: TestServer;
let operator: PrivilegedPerson;
let victim: { signerId: string; credentialId: string; deviceKey: DeviceKey };
/** Every signature the crypto module made, by DTBS/R (hex): an attack must add none. */
const { wrapCrypto, counts: moduleSignatures } = moduleSignatureCounter();

const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const registration = () => createClient(RegistrationService, t.as(operator));
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const sha256 = (text: string): Uint8Array => new Uint8Array(createHash("sha256").update(text).digest());
const tokenHash = (token: string): string => createHash("sha256").update(token, "utf8").digest("base64url");
const signedCount = (hashes: Uint8Array[]) => hashes.reduce((n, h) => n + (moduleSignatures.get(hex(h)) ?? 0), 0);

type Row = Record<string, unknown>;

/** The insider's handle on the database file: triggers dropped, as anyone who can write the file would. */
function insider<T>(fn: (db: Database.Database) => T): T {
  const db = new Database(join(t.dataDir, "store.sqlite3"));
  db.pragma("busy_timeout = 5000");
  try {
    for (const { name } of db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").all() as { name: string }[]) db.exec(`DROP TRIGGER IF EXISTS "${name}"`);
    return fn(db);
  } finally {
    db.close();
  }
}

/** A row with the same columns, inserted as is (a clone or a copy put back). */
function insert(db: Database.Database, table: string, row: Row): void {
  const columns = Object.keys(row);
  db.prepare(`INSERT INTO ${table} (${columns.join(", ")}) VALUES (${columns.map((c) => `@${c}`).join(", ")})`).run(row);
}

/** Puts `row` back in place of the current one (same primary key). */
function putBack(db: Database.Database, table: string, key: Row, row: Row): void {
  db.prepare(`DELETE FROM ${table} WHERE ${Object.keys(key).map((k) => `${k} = @${k}`).join(" AND ")}`).run(key);
  insert(db, table, row);
}

function snapshot(transactionId: string): { tx: Row; dtbsr: Row[]; tokens: Row[] } {
  return insider((db) => ({
    tx: db.prepare("SELECT * FROM transactions WHERE id = ?").get(transactionId) as Row,
    dtbsr: db.prepare("SELECT * FROM dtbsr WHERE transaction_id = ? ORDER BY idx").all(transactionId) as Row[],
    tokens: db.prepare("SELECT * FROM sad_tokens WHERE transaction_id = ?").all(transactionId) as Row[],
  }));
}

function restore(s: { tx: Row; dtbsr: Row[]; tokens: Row[] }): void {
  insider((db) =>
    db.transaction(() => {
      putBack(db, "transactions", { id: s.tx.id }, s.tx);
      for (const e of s.dtbsr) putBack(db, "dtbsr", { transaction_id: e.transaction_id, idx: e.idx }, e);
      for (const k of s.tokens) putBack(db, "sad_tokens", { hash: k.hash }, k);
    })(),
  );
}

/** Audit records of integrity failures so far. */
const integrityFailures = (): number =>
  insider((db) => (db.prepare("SELECT COUNT(*) AS n FROM audit_records WHERE event = 'integrity.failed'").get() as { n: number }).n);

async function begin(hashes: Uint8Array[]): Promise<SadChallenge> {
  const res = await sca().beginTransaction({
    credentialId: victim.credentialId, signerId: victim.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "Insider test",
  });
  return res.sadChallenge!;
}

const rSadFor = (ch: SadChallenge) =>
  buildRSad({
    deviceKey: victim.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
    challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
  });

/** A genuine transaction authorized by the victim: its id and first SAD token. */
async function authorized(hashes: Uint8Array[]): Promise<{ transactionId: string; token: string }> {
  const ch = await begin(hashes);
  const res = await sca().authorize({ transactionId: ch.transactionId, rSad: await rSadFor(ch) });
  return { transactionId: ch.transactionId, token: res.sadToken };
}

const signHash = (token: string, hashes: Uint8Array[]) => sca().signHash({ authorization: { case: "sadToken", value: token }, hashes });

/**
 * The attack's verdict: `attack` signs nothing, is refused with `reason` (INTEGRITY_VIOLATION unless
 * said otherwise), an integrity violation is audited when the refusal is one, and a fresh genuine
 * transaction of the same signer still signs (the SAM keeps serving).
 */
async function refusedAndServing(attack: () => Promise<unknown>, watched: Uint8Array[], reason: Reason = Reason.INTEGRITY_VIOLATION): Promise<void> {
  const before = signedCount(watched);
  const audited = integrityFailures();
  expect(await refusalOf(attack())).toMatchObject({ reason });
  expect(signedCount(watched)).toBe(before);
  if (reason === Reason.INTEGRITY_VIOLATION) expect(integrityFailures()).toBeGreaterThan(audited);
  const fresh = [sha256(`still serving ${Math.random()}`)];
  const { token } = await authorized(fresh);
  expect((await signHash(token, fresh)).signatures).toHaveLength(1);
}

beforeAll(async () => {
  t = await startTestServer({}, { wrapCrypto });
  operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-insider");
  const v = await activeSignerWithCredential(t, operator);
  victim = { signerId: v.signerId, credentialId: v.credential.credentialId, deviceKey: v.deviceKey };
}, 90_000);
afterAll(async () => {
  await t?.close();
});

describe("issue 14: a database insider cannot grant an authorization (T-2.2.2.2, R-3.1.1.1)", () => {
  it("inserting an AUTHORIZED transaction, a DTBS/R entry and a token by hand signs nothing: INTEGRITY_VIOLATION, audited", async () => {
    const forged = sha256("the insider's document");
    const token = randomBytes(32).toString("base64url");
    const scaSha256 = Buffer.from(new X509Certificate(t.pki.sca.cert).fingerprint256.replaceAll(":", ""), "hex").toString("hex");
    const now = Date.now();
    insider((db) => {
      insert(db, "transactions", {
        id: "txn_forged", credential_id: victim.credentialId, signer_id: victim.signerId, sca: scaSha256, hash_algorithm: "SHA256", num_signatures: 1,
        body: JSON.stringify({ description: "forged", signatureScheme: "ECDSA", signatureFormat: 0, uploadExpiresAt: new Date(now + 60_000).toISOString(), inlineCount: 1, chunkSize: 1000 }),
        state: "AUTHORIZED", hash_count: 1, dtbsr_digest: Buffer.alloc(32, 1), signatures_created: 0, created_at: now, expires_at: now + 600_000,
        authorized_at: now, updated_at: now, challenge_hash: "x", authorization_body: '{"v":1}', authorization_seal: Buffer.alloc(32, 2),
      });
      insert(db, "dtbsr", { transaction_id: "txn_forged", idx: 0, hash: Buffer.from(forged), signed: 0, mac: Buffer.alloc(16, 3) });
      insert(db, "sad_tokens", { hash: tokenHash(token), transaction_id: "txn_forged", generation: 0, issued_at: now, expires_at: now + 300_000, mac: Buffer.alloc(16, 4) });
    });
    await refusedAndServing(() => signHash(token, [forged]), [forged]);
  });

  it("cloning a genuine authorized transaction under a new id, with a new hash and a token of the insider's choosing, signs nothing", async () => {
    const genuine = [sha256(`genuine ${Math.random()}`)];
    const { transactionId } = await authorized(genuine);
    const swapped = sha256("the insider's other document");
    const token = randomBytes(32).toString("base64url");
    const s = snapshot(transactionId);
    insider((db) => {
      insert(db, "transactions", { ...s.tx, id: "txn_clone" });
      insert(db, "dtbsr", { ...s.dtbsr[0]!, transaction_id: "txn_clone", hash: Buffer.from(swapped) });
      insert(db, "sad_tokens", { ...s.tokens[0]!, hash: tokenHash(token), transaction_id: "txn_clone" });
    });
    await refusedAndServing(() => signHash(token, [swapped]), [swapped, ...genuine]);
    // The sealed authorization alone (a clone whose token carries a MAC copied under the new id) is refused too.
    insider((db) => db.prepare("UPDATE sad_tokens SET transaction_id = 'txn_clone' WHERE hash = ?").run(s.tokens[0]!.hash));
    await refusedAndServing(() => signHash("unknown-to-the-insider", [swapped]), [swapped], Reason.SAD_INVALID);
  });

  it("editing the transaction row (more signatures, another credential's columns) or its sealed authorization signs nothing", async () => {
    const hashes = [sha256(`edit-a ${Math.random()}`)];
    const { transactionId, token } = await authorized(hashes);
    insider((db) => db.prepare("UPDATE transactions SET num_signatures = 5 WHERE id = ?").run(transactionId));
    await refusedAndServing(() => signHash(token, hashes), hashes);

    const more = [sha256(`edit-b ${Math.random()}`)];
    const second = await authorized(more);
    insider((db) => db.prepare("UPDATE transactions SET authorization_body = replace(authorization_body, '\"ECDSA\"', '\"RSA_PSS\"') WHERE id = ?").run(second.transactionId));
    await refusedAndServing(() => signHash(second.token, more), more);
  });

  it("editing a token row (a later expiry) signs nothing", async () => {
    const hashes = [sha256(`token-edit ${Math.random()}`)];
    const { token } = await authorized(hashes);
    insider((db) => db.prepare("UPDATE sad_tokens SET expires_at = expires_at + 86400000 WHERE hash = ?").run(tokenHash(token)));
    await refusedAndServing(() => signHash(token, hashes), hashes);
  });
});

describe("issue 14: a database insider cannot change what an authorization signs (T-2.2.1.6, T-2.2.2.2)", () => {
  it("a DTBS/R entry swapped after a genuine Authorize signs nothing (SignHash)", async () => {
    const hashes = [sha256(`swap-a ${Math.random()}`), sha256(`swap-b ${Math.random()}`)];
    const { transactionId, token } = await authorized(hashes);
    const swapped = sha256(`swapped ${Math.random()}`);
    insider((db) => db.prepare("UPDATE dtbsr SET hash = ? WHERE transaction_id = ? AND idx = 1").run(Buffer.from(swapped), transactionId));
    await refusedAndServing(() => signHash(token, [swapped]), [swapped]);
  });

  it("an entry's MAC copied from another entry, or an entry inserted past the list, signs nothing", async () => {
    const hashes = [sha256(`copy-a ${Math.random()}`), sha256(`copy-b ${Math.random()}`)];
    const { transactionId, token } = await authorized(hashes);
    const extra = sha256(`extra ${Math.random()}`);
    insider((db) => {
      const mac = (db.prepare("SELECT mac FROM dtbsr WHERE transaction_id = ? AND idx = 0").get(transactionId) as { mac: Buffer }).mac;
      insert(db, "dtbsr", { transaction_id: transactionId, idx: 2, hash: Buffer.from(extra), signed: 0, mac });
    });
    await refusedAndServing(() => signHash(token, [extra]), [extra]);
  });

  it("a swapped entry is refused by SignStream before it is signed, and the entries before it are signed once", async () => {
    const hashes = Array.from({ length: 20 }, (_, i) => sha256(`stream ${i} ${Math.random()}`));
    const { transactionId, token } = await authorized(hashes);
    const swapped = sha256(`stream swapped ${Math.random()}`);
    insider((db) => db.prepare("UPDATE dtbsr SET hash = ? WHERE transaction_id = ? AND idx = 0").run(Buffer.from(swapped), transactionId));
    const drain = async () => {
      for await (const _ of sca().signStream({ sadToken: token, startIndex: 0 })) void _;
    };
    await refusedAndServing(drain, [swapped, ...hashes]);
  });
});

describe("issue 14: rolling back an authorization's rows reopens nothing", () => {
  it("rows put back as they were before a signature (token unconsumed, entry unsigned, counter lower) sign nothing more", async () => {
    const hashes = [sha256(`rollback-a ${Math.random()}`), sha256(`rollback-b ${Math.random()}`)];
    const { transactionId, token } = await authorized(hashes);
    const before = snapshot(transactionId);
    const first = await signHash(token, [hashes[0]!]);
    expect(first.signatures).toHaveLength(1);
    restore(before);
    await refusedAndServing(() => signHash(token, [hashes[0]!]), hashes);
    expect(moduleSignatures.get(hex(hashes[0]!))).toBe(1);
  });

  it("a cancelled transaction put back as AUTHORIZED, with its token unrevoked, signs nothing", async () => {
    const hashes = [sha256(`cancel ${Math.random()}`)];
    const { transactionId, token } = await authorized(hashes);
    const before = snapshot(transactionId);
    await sca().cancelTransaction({ transactionId });
    restore(before);
    await refusedAndServing(() => signHash(token, hashes), hashes);
  });

  it("a transaction revoked by RevokeDevice and put back as AUTHORIZED signs nothing (the authorizing device key is revoked)", async () => {
    const v = await activeSignerWithCredential(t, operator);
    const hashes = [sha256(`revoked device ${Math.random()}`)];
    const ch = (await sca().beginTransaction({ credentialId: v.credential.credentialId, signerId: v.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes, description: "stolen phone" })).sadChallenge!;
    const rSad = await buildRSad({
      deviceKey: v.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
      challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
    });
    const { sadToken } = await sca().authorize({ transactionId: ch.transactionId, rSad });
    const before = snapshot(ch.transactionId);
    await registration().revokeDevice({ signerId: v.signerId, deviceKeyId: v.deviceKey.kid, reason: "phone stolen" });
    expect(await refusalOf(signHash(sadToken, hashes))).toMatchObject({ code: Code.FailedPrecondition, reason: Reason.TRANSACTION_STATE });
    restore(before);
    const refusal = await refusalOf(signHash(sadToken, hashes));
    expect([Reason.INTEGRITY_VIOLATION, Reason.TRANSACTION_STATE]).toContain(refusal.reason);
    expect(signedCount(hashes)).toBe(0);
  });
});

describe("issue 17: the claim columns edited by hand release no DTBS/R twice (T-2.2.1.6, T-2.2.2.2)", () => {
  /** A stream read to its end: every entry recorded; its first resume token stays unused. */
  async function streamed(hashes: Uint8Array[]): Promise<{ transactionId: string; resume: string }> {
    const { transactionId, token } = await authorized(hashes);
    let resume = "";
    let received = 0;
    for await (const m of sca().signStream({ sadToken: token, startIndex: 0 })) {
      if (!resume) resume = m.resumeToken;
      received += m.signatures.length;
    }
    expect(received).toBe(hashes.length);
    return { transactionId, resume };
  }

  it("a recorded signature removed and its claim expired by hand: a resumed stream does not sign that entry again (INTEGRITY_VIOLATION)", async () => {
    const hashes = Array.from({ length: 4 }, (_, i) => sha256(`reopened ${i} ${Math.random()}`));
    const { transactionId, resume } = await streamed(hashes);
    insider((db) => db.prepare("UPDATE dtbsr SET signature = NULL, lease_until = 0 WHERE transaction_id = ? AND idx = 1").run(transactionId));
    const drain = async () => {
      for await (const _ of sca().signStream({ sadToken: resume, startIndex: 0 })) void _;
    };
    await refusedAndServing(drain, hashes);
    expect(moduleSignatures.get(hex(hashes[1]!))).toBe(1);
  });

  it("the same with the recorded counter lowered to match: refused by the recorded head (INTEGRITY_VIOLATION)", async () => {
    const hashes = Array.from({ length: 4 }, (_, i) => sha256(`reopened-counter ${i} ${Math.random()}`));
    const { transactionId, resume } = await streamed(hashes);
    insider((db) =>
      db.transaction(() => {
        db.prepare("UPDATE dtbsr SET signature = NULL, lease_until = 0, claim_boot = 'gone' WHERE transaction_id = ? AND idx = 2").run(transactionId);
        db.prepare("UPDATE transactions SET signatures_recorded = signatures_recorded - 1 WHERE id = ?").run(transactionId);
      })(),
    );
    const drain = async () => {
      for await (const _ of sca().signStream({ sadToken: resume, startIndex: 0 })) void _;
    };
    await refusedAndServing(drain, hashes);
    expect(moduleSignatures.get(hex(hashes[2]!))).toBe(1);
  });

  it("a SignHash retried after its recorded signature was removed by hand signs nothing again (INTEGRITY_VIOLATION)", async () => {
    const hashes = [sha256(`retry-a ${Math.random()}`), sha256(`retry-b ${Math.random()}`)];
    const { transactionId, token } = await authorized(hashes);
    expect((await signHash(token, [hashes[0]!])).signatures).toHaveLength(1);
    insider((db) => db.prepare("UPDATE dtbsr SET signature = NULL, lease_until = 0 WHERE transaction_id = ? AND signature IS NOT NULL").run(transactionId));
    await refusedAndServing(() => signHash(token, [hashes[0]!]), hashes);
    expect(moduleSignatures.get(hex(hashes[0]!))).toBe(1);
  });
});

describe("issue 20: seal checks remembered across calls are keyed by the exact bytes (T-2.2.2.2, R-3.1.1.1)", () => {
  /**
   * Two SignHash calls of one authorization: the first signs (the credential, signer, factors,
   * policy, sealed authorization and entry key are now remembered), then `edit` changes sealed bytes
   * in the database and the second call is refused with INTEGRITY_VIOLATION, signs nothing and is
   * audited. `edit` returns the undo (the genuine row put back), after which the SAM serves again.
   */
  async function refusedAfterEdit(edit: (db: Database.Database, transactionId: string) => (db: Database.Database) => void): Promise<void> {
    const hashes = [sha256(`cached-a ${Math.random()}`), sha256(`cached-b ${Math.random()}`)];
    const { transactionId, token } = await authorized(hashes);
    const first = await signHash(token, [hashes[0]!]);
    expect(first.signatures).toHaveLength(1);
    const undo = insider((db) => edit(db, transactionId));
    try {
      const audited = integrityFailures();
      expect(await refusalOf(signHash(first.nextSadToken, [hashes[1]!]))).toMatchObject({ reason: Reason.INTEGRITY_VIOLATION });
      expect(signedCount(hashes)).toBe(1);
      expect(integrityFailures()).toBeGreaterThan(audited);
    } finally {
      insider(undo);
    }
    const fresh = [sha256(`cached still serving ${Math.random()}`)];
    const again = await authorized(fresh);
    expect((await signHash(again.token, fresh)).signatures).toHaveLength(1);
  }

  /** Edits one column of the rows `where` selects and returns the undo: each row put back as it was. */
  const editRows = (table: string, where: string, id: string, set: string) => (db: Database.Database) => {
    const rows = db.prepare(`SELECT * FROM ${table} WHERE ${where} = ?`).all(id) as Row[];
    expect(rows.length).toBeGreaterThan(0);
    db.prepare(`UPDATE ${table} SET ${set} WHERE ${where} = ?`).run(id);
    return (d: Database.Database) => d.transaction(() => rows.forEach((r) => putBack(d, table, { id: r.id }, r)))();
  };

  it("the credential's row edited between two calls: the second is refused", async () => {
    await refusedAfterEdit(editRows("credentials", "id", victim.credentialId, "body = body || ' '"));
  });

  it("the signer's row edited between two calls: the second is refused", async () => {
    await refusedAfterEdit(editRows("signers", "id", victim.signerId, "body = body || ' '"));
  });

  it("the signer's factor rows edited between two calls (a seal copied from another factor): the second is refused", async () => {
    await refusedAfterEdit((db) => {
      const [a, b] = db.prepare("SELECT id, seal FROM factors WHERE signer_id = ? AND status = 'ACTIVE' ORDER BY id").all(victim.signerId) as { id: string; seal: Buffer }[];
      expect(b).toBeDefined();
      const undo = editRows("factors", "signer_id", victim.signerId, "signer_id = signer_id")(db);
      db.prepare("UPDATE factors SET seal = ? WHERE id = ?").run(b!.seal, a!.id);
      return undo;
    });
  });

  it("the sealed authorization edited between two calls: the second is refused", async () => {
    await refusedAfterEdit((db, transactionId) => {
      db.prepare("UPDATE transactions SET authorization_body = authorization_body || ' ' WHERE id = ?").run(transactionId);
      return () => undefined; // that transaction stays refused; nothing else uses it
    });
  });
});
