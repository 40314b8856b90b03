/**
 * Issue 22, module loss, on the real server (mTLS, SQLite) whose PKCS#11 library is the fault shim
 * (testing/shim/pkcs11-fault-shim.c, built here with gcc) in front of SoftHSM2: real PKCS#11-level
 * faults. A call that meets the fault fails closed (UNAVAILABLE, CRYPTO_MODULE_FAILURE; a consumed
 * SAD token stays consumed; no signature recorded as made), health turns NOT_SERVING, and the node
 * reconnects with backoff (new sessions, login, system keys found by id and checked) and serves
 * again without a restart. Under load every answered signature verifies and store and audit agree.
 */
import { createHash, createPublicKey, verify as verifySignature } from "node:crypto";
import { readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, inkanErrorReason, type DeviceKey } from "@inkan/sdk";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { AuditService, type AuditRecord } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService, type SadChallenge } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../../testing/signers.js";
import { buildFaultShim, type FaultShim } from "./testing/fault-shim.js";

const built = buildFaultShim();
const shim: FaultShim | undefined = "shim" in built ? built.shim : undefined;
if (!shim) console.warn(`module-loss tests skipped: ${"skipped" in built ? built.skipped : ""}`);

const CKM_ECDSA = "0x1041";
const SAM_SERVICE = "inkan.sam.v1.SignatureActivationService";

let t: TestServer;
let auditor: PrivilegedPerson;
let alice: { signerId: string; credentialId: string; deviceKey: DeviceKey; spki: Uint8Array };

const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const health = () => createClient(Health, t.transport("grpc", t.pki.sca));
const audit = () => createClient(AuditService, t.as(auditor));

/** The status of the server as a whole and of the SAP service; an unanswered check counts as not serving. */
async function serving(): Promise<boolean> {
  try {
    const [all, sam] = await Promise.all([health().check({ service: "" }), health().check({ service: SAM_SERVICE })]);
    return all.status === Status.SERVING && sam.status === Status.SERVING;
  } catch {
    return false;
  }
}

async function notServing(): Promise<boolean> {
  const [all, sam] = await Promise.all([health().check({ service: "" }), health().check({ service: SAM_SERVICE })]);
  return all.status === Status.NOT_SERVING && sam.status === Status.NOT_SERVING;
}

/** Polls `condition` until it holds; fails the test with `what` after `limitMs` (a deadline, not a measurement). */
async function waitFor(what: string, condition: () => Promise<boolean> | boolean, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Every audit record of the given types (all pages). */
async function auditRecords(...eventTypes: string[]): Promise<AuditRecord[]> {
  const all: AuditRecord[] = [];
  let pageToken = "";
  do {
    const res = await audit().listAuditRecords({ eventTypes, page: { pageSize: 1000, pageToken } });
    all.push(...res.records);
    pageToken = res.page?.nextPageToken ?? "";
  } while (pageToken);
  return all;
}

/** The server's log lines (JSON, pino) whose message contains `text`. */
function logLines(text: string): { msg: string; cause?: string; attempt?: number }[] {
  return readFileSync(join(t.dataDir, "server.log"), "utf8")
    .split("\n")
    .filter((line) => line.includes(text))
    .map((line) => JSON.parse(line) as { msg: string; cause?: string; attempt?: number });
}

/** One message and its SHA-256 (the DTBS/R). */
function document(seed: string): { message: Buffer; hash: Uint8Array } {
  const message = Buffer.from(`${seed}-${Math.random()}`);
  return { message, hash: new Uint8Array(createHash("sha256").update(message).digest()) };
}

/** BeginTransaction for one hash + the signer's R.SAD + Authorize: the transaction and its SAD token. */
async function authorized(hash: Uint8Array): Promise<{ ch: SadChallenge; token: string }> {
  const { sadChallenge: ch } = await sca().beginTransaction({
    credentialId: alice.credentialId, signerId: alice.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [hash], description: "module loss",
  });
  const rSad = await buildRSad({
    deviceKey: alice.deviceKey, signerId: ch!.signerId, credentialId: ch!.credentialId, samId: ch!.audience, transactionId: ch!.transactionId,
    challenge: ch!.challenge, dtbsrDigest: ch!.dtbsrDigest, count: ch!.numSignatures, hashAlgorithm: ch!.hashAlgorithm, description: ch!.description, pin: testPin, samKey: ch!.encryptionKey!,
  });
  const res = await sca().authorize({ transactionId: ch!.transactionId, rSad });
  return { ch: ch!, token: res.sadToken };
}

const signHash = (token: string, hash: Uint8Array) => sca().signHash({ authorization: { case: "sadToken", value: token }, hashes: [hash] });

const verifies = (message: Buffer, signature: Uint8Array) =>
  verifySignature("sha256", message, createPublicKey({ key: Buffer.from(alice.spki), format: "der", type: "spki" }), signature);

/** What the store holds for a transaction: its entry's recorded signature and its SAD tokens' consumption. */
function stored(transactionId: string): { signed: boolean; signature: Buffer | null; tokensConsumed: boolean[] } {
  const db = new Database(join(t.dataDir, "store.sqlite3"), { readonly: true, fileMustExist: true });
  try {
    const entry = db.prepare("SELECT signed, signature FROM dtbsr WHERE transaction_id = ? AND idx = 0").get(transactionId) as { signed: number; signature: Buffer | null };
    const tokens = db.prepare("SELECT consumed_at FROM sad_tokens WHERE transaction_id = ?").all(transactionId) as { consumed_at: number | null }[];
    return { signed: entry.signed === 1, signature: entry.signature, tokensConsumed: tokens.map((r) => r.consumed_at !== null) };
  } finally {
    db.close();
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe.skipIf(!shim)("Issue 22: the crypto module goes away and comes back (PKCS#11 fault shim over SoftHSM2)", () => {
  beforeAll(async () => {
    t = await startTestServer({ pkcs11Library: shim!.library, pkcs11Token: "pkcs11:token=inkan", pkcs11PinFile: "hsm/user-pin" });
    const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-module-loss");
    auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-module-loss");
    const a = await activeSignerWithCredential(t, operator);
    alice = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey, spki: a.credential.publicKeySpki };
  }, 60_000);
  afterEach(() => shim?.clear()); // a failed test leaves no fault behind for the next one
  afterAll(async () => {
    await t?.close();
    shim?.remove();
  });

  it("T-2.2.1.3 CKR_DEVICE_ERROR at signing: UNAVAILABLE CRYPTO_MODULE_FAILURE, the token stays consumed, no signature recorded; NOT_SERVING until the node reconnects by itself", async () => {
    const { message, hash } = document("device-error");
    const { ch, token } = await authorized(hash);
    expect(await serving()).toBe(true);

    shim!.fail("CKR_DEVICE_ERROR", [`C_SignInit@${CKM_ECDSA}`]); // the module fails the signature itself
    expect(await refusalOf(signHash(token, hash))).toMatchObject({ code: Code.Unavailable, reason: Reason.CRYPTO_MODULE_FAILURE });
    await waitFor("health says NOT_SERVING", notServing);
    // While lost, calls are refused at once, before anything is consumed.
    const other = document("during-loss");
    expect(await refusalOf(authorized(other.hash))).toMatchObject({ code: Code.Unavailable, reason: Reason.CRYPTO_MODULE_FAILURE });

    shim!.clear();
    await waitFor("health says SERVING again", serving);
    // The token was consumed before the module was called: it signs nothing, ever.
    const replay = await refusalOf(signHash(token, hash));
    expect(replay.code).not.toBe(Code.Unavailable);
    expect(replay.reason).toBe(Reason.SAD_REPLAYED);
    const s = stored(ch.transactionId);
    expect(s).toMatchObject({ signed: true, signature: null }); // claimed and lost: counted, never signed twice
    expect(s.tokensConsumed).toEqual([true]);
    const created = await auditRecords("signature.created");
    expect(created.filter((r) => r.transactionId === ch.transactionId)).toEqual([]);
    const [lost] = (await auditRecords("crypto_module.disconnected")).slice(-1);
    expect(lost?.details["cause"]).toBe("CKR_DEVICE_ERROR");
    expect((await auditRecords("crypto_module.reconnected")).length).toBeGreaterThanOrEqual(1);

    // Served again without a restart.
    const d = document("after-device-error");
    const { token: next } = await authorized(d.hash);
    const res = await signHash(next, d.hash);
    expect(verifies(d.message, res.signatures[0]!)).toBe(true);
    expect(verifies(message, res.signatures[0]!)).toBe(false);
  });

  it("an HSM restart while idle (every session stale: CKR_SESSION_HANDLE_INVALID, login gone) is noticed without a caller; the node logs in again and the next signature works", async () => {
    const recoveredBefore = (await auditRecords("crypto_module.reconnected")).length;
    const lostBefore = (await auditRecords("crypto_module.disconnected")).length;
    const reconnectsBefore = logLines("crypto module reconnected").length;
    shim!.dropSessions();
    // No call meanwhile: only the node's own periodic check can notice (the log file is read, not the server).
    await waitFor("the node noticed the restart and reconnected", () => logLines("crypto module reconnected").length > reconnectsBefore);
    expect((await auditRecords("crypto_module.reconnected")).length).toBe(recoveredBefore + 1);
    const lost = (await auditRecords("crypto_module.disconnected")).slice(lostBefore);
    expect(lost.map((r) => r.details["cause"])).toEqual(["CKR_SESSION_HANDLE_INVALID"]);
    expect(await serving()).toBe(true);
    const { message, hash } = document("after-restart");
    const { token } = await authorized(hash);
    const res = await signHash(token, hash);
    expect(verifies(message, res.signatures[0]!)).toBe(true);
  });

  it("R-3.1.1.1 the token's files go away and come back (SoftHSM2 answers CKR_GENERAL_ERROR until the library is initialized again): refused as CRYPTO_MODULE_FAILURE, never as a missing key or tampered data; served again without a restart", async () => {
    const tokens = join(t.dataDir, "tokens");
    const failedAttemptsBefore = logLines("crypto module reconnect failed").length;
    const before = document("before-token-loss");
    const { token } = await authorized(before.hash);
    renameSync(tokens, `${tokens}.away`);
    try {
      // The SoftHSM2 token now looks empty or broken: its keys' handles fail, lookups find nothing.
      expect(await refusalOf(signHash(token, before.hash))).toMatchObject({ code: Code.Unavailable, reason: Reason.CRYPTO_MODULE_FAILURE });
      await waitFor("health says NOT_SERVING", notServing);
      expect(await refusalOf(authorized(document("token-away").hash))).toMatchObject({ code: Code.Unavailable, reason: Reason.CRYPTO_MODULE_FAILURE });
      await waitFor("reconnect attempts fail while the files are away", () => logLines("crypto module reconnect failed").length >= failedAttemptsBefore + 2);
    } finally {
      renameSync(`${tokens}.away`, tokens);
    }
    await waitFor("health says SERVING again", serving);
    const after = document("after-token-loss");
    const { token: next } = await authorized(after.hash);
    expect(verifies(after.message, (await signHash(next, after.hash)).signatures[0]!)).toBe(true);
    const integrity = await auditRecords("integrity.failed");
    expect(integrity).toEqual([]); // a module that lost its token is not mistaken for tampered records
    expect((await audit().verifyAuditLog({})).ok).toBe(true);
  });

  it("R-3.2.1.5 R-3.2.2.4 under load, a device removed (CKR_DEVICE_REMOVED, sessions dropped) and back: failures are UNAVAILABLE, every answered signature verifies, store and audit agree, the node recovers by itself", async () => {
    interface Outcome {
      transactionId?: string;
      hash: Uint8Array;
      message: Buffer;
      signature?: Uint8Array;
      error?: ConnectError;
    }
    const outcomes: Outcome[] = [];
    let phase: "before" | "outage" | "after" = "before";
    const counts = { before: 0, outage: 0, after: 0 };
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const { message, hash } = document(`load-${w}-${i}`);
        const outcome: Outcome = { hash, message };
        outcomes.push(outcome);
        const at = phase;
        try {
          const { ch, token } = await authorized(hash);
          outcome.transactionId = ch.transactionId;
          outcome.signature = (await signHash(token, hash)).signatures[0];
        } catch (err) {
          outcome.error = ConnectError.from(err);
        }
        counts[at]++;
      }
    };
    const workers = [0, 1, 2].map(worker);
    try {
      await waitFor("signatures flow", () => outcomes.filter((o) => o.signature).length >= 6);
      phase = "outage";
      const failedAttemptsBefore = logLines("crypto module reconnect failed").length;
      shim!.outage("CKR_DEVICE_REMOVED");
      await waitFor("health says NOT_SERVING", notServing);
      // The device stays away for several reconnect attempts (C_Initialize fails too), with backoff.
      await waitFor("reconnect attempts fail", () => logLines("crypto module reconnect failed").length >= failedAttemptsBefore + 3);
      await waitFor("calls meet the outage", () => counts.outage >= 6);
      shim!.clear();
      phase = "after";
      await waitFor("health says SERVING again", serving);
      const signedBefore = outcomes.filter((o) => o.signature).length;
      await waitFor("signatures flow again", () => outcomes.filter((o) => o.signature).length >= signedBefore + 6);
    } finally {
      stop = true;
      await Promise.all(workers);
    }

    const failed = outcomes.filter((o) => o.error);
    const signed = outcomes.filter((o) => o.signature);
    expect(failed.length).toBeGreaterThan(0);
    for (const o of failed) {
      expect({ code: o.error!.code, message: o.error!.rawMessage }).toMatchObject({ code: Code.Unavailable });
      expect([Reason.CRYPTO_MODULE_FAILURE, Reason.AUDIT_FAILURE]).toContain(inkanErrorReason(o.error!));
    }
    for (const o of signed) expect(verifies(o.message, o.signature!)).toBe(true);

    // Store and audit agree with what the clients got: a signature is recorded (store) and audited
    // as created exactly when it was answered; a consumed token of a failed call signs nothing.
    const created = new Set((await auditRecords("signature.created")).map((r) => r.transactionId));
    for (const o of outcomes.filter((x) => x.transactionId)) {
      const s = stored(o.transactionId!);
      expect({ tx: o.transactionId, recorded: s.signature !== null, audited: created.has(o.transactionId!) }).toEqual({
        tx: o.transactionId, recorded: o.signature !== undefined, audited: o.signature !== undefined,
      });
      if (o.signature) expect(hex(s.signature!)).toBe(hex(o.signature));
      if (o.error && s.tokensConsumed.some(Boolean)) expect(s.signed).toBe(true); // claimed, lost: never signed later
    }
    expect((await audit().verifyAuditLog({})).ok).toBe(true);
  });
  // Last: it leaves the node lost for good (a restart is the way back), as intended.
  it("a PIN refused when the node logs in again is not retried (retries would lock the token's user): NOT_SERVING, and the log says to fix it and restart", async () => {
    shim!.fail("CKR_PIN_INCORRECT", ["C_Login"]);
    shim!.dropSessions(); // an HSM restart whose user PIN was changed meanwhile
    expect(await refusalOf(authorized(document("pin-changed").hash))).toMatchObject({ code: Code.Unavailable, reason: Reason.CRYPTO_MODULE_FAILURE });
    await waitFor("the node gives up", () => logLines("the PIN was refused").length > 0);
    const [fatal] = logLines("the PIN was refused");
    expect(fatal).toMatchObject({ cause: "CKR_PIN_INCORRECT", attempt: 1 });
    expect(await notServing()).toBe(true);
    expect(await refusalOf(authorized(document("after-pin").hash))).toMatchObject({ code: Code.Unavailable, reason: Reason.CRYPTO_MODULE_FAILURE });
  });
});
