/**
 * The contract every Store adapter passes: one suite, run against SQLite always and against
 * MongoDB when a server is reachable. Test code (it imports vitest); the product never imports it.
 *
 * Time is a fixed clock (`at(seconds)`); concurrency tests start N callers behind one barrier (a
 * promise they all await, released once every caller is waiting) and assert exactly one wins.
 */
import { createHash, randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type ClaimHolder,
  AuditChainError,
  RecordExistsError,
  StoreFailureError,
  checkTransition,
  maxPageSize,
  type AuditRecord,
  type CredentialRecord,
  type FactorRecord,
  type NewPendingApproval,
  type NewTransaction,
  type PendingApprovalRecord,
  type PrivilegedUserKeyRecord,
  type PrivilegedUserRecord,
  type SealedRecord,
  type SignerRecord,
  type Store,
} from "./port.js";
import { AuthorizationSeals } from "../sap/authorization-seal.js";

export interface StoreFactory {
  /** A new, empty store. */
  open(): Promise<Store>;
  /** Another connection to the same database as `store`, as a second SAM process or node would open. */
  connectAgain(store: Store): Promise<Store>;
  /** Removes what open() created; called after the store and its other connections are closed. */
  dispose?(store: Store): Promise<void>;
}

/** Rounds of each concurrency test, and callers per round. */
export const raceRounds = 100;
export const racers = 64;

const t0 = new Date("2030-01-01T00:00:00.000Z");
/** The fixed clock: t0 plus `seconds`. */
export const at = (seconds: number): Date => new Date(t0.getTime() + seconds * 1000);

const bytes = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "utf8"));
/** A deterministic 32-byte DTBS/R hash for position i. */
/** Issue 17: a claim of node "node-a" (boot "boot-1" unless given), fresh id, a lease of `leaseMs`. */
const holder = (o: { bootId?: string; nodeId?: string; leaseMs?: number; claimId?: string } = {}): ClaimHolder => ({
  claimId: o.claimId ?? randomUUID(),
  nodeId: o.nodeId ?? "node-a",
  bootId: o.bootId ?? "boot-1",
  leaseMs: o.leaseMs ?? 60_000,
});
export const dtbsrHash = (i: number, salt = ""): Uint8Array => new Uint8Array(createHash("sha256").update(`${salt}dtbsr-${i}`).digest());

/** Starts `n` calls at once: each awaits one shared promise, released after all n are waiting. */
export async function race<T>(n: number, attempt: (i: number) => Promise<T>): Promise<T[]> {
  let release!: () => void;
  const barrier = new Promise<void>((resolve) => (release = resolve));
  const calls = Array.from({ length: n }, async (_, i) => {
    await barrier;
    return attempt(i);
  });
  release();
  return Promise.all(calls);
}

// Records with awkward content: unicode and JSON in the body, 0x00 and 0xff in the seal.
const body = (id: string, extra: Record<string, unknown> = {}): string => JSON.stringify({ id, note: "署名 \u0000 \"q\"", ...extra });
const seal = (id: string): Uint8Array => new Uint8Array([0, 255, ...createHash("sha256").update(id).digest(), 0]);

const signer = (id: string, status: SignerRecord["status"] = "ACTIVE"): SignerRecord => ({ kind: "signer", id, version: 1, status, body: body(id), seal: seal(id) });
const credential = (id: string, signerId: string, fingerprint: string, status: CredentialRecord["status"] = "ACTIVE"): CredentialRecord => ({
  kind: "credential", id, version: 1, signerId, status, publicKeyFingerprint: fingerprint, body: body(id), seal: seal(id),
});
const factor = (id: string, signerId: string, type: FactorRecord["type"]): FactorRecord => ({
  kind: "factor", id, version: 1, signerId, type, status: "ACTIVE", body: body(id), seal: seal(id),
});
const privilegedUser = (id: string, role: PrivilegedUserRecord["role"], certificateFingerprint: string): PrivilegedUserRecord => ({
  kind: "privileged-user", id, version: 1, role, status: "ACTIVE", certificateFingerprint, body: body(id), seal: seal(id),
});
const privilegedUserKey = (id: string, userId: string, keyFingerprint: string): PrivilegedUserKeyRecord => ({
  kind: "privileged-user-key", id, version: 1, userId, status: "ACTIVE", keyFingerprint, body: body(id), seal: seal(id),
});
const newTransaction = (id: string, numSignatures: number, expiresInSeconds = 600): NewTransaction => ({
  id, credentialId: "cred-1", signerId: "signer-1", sca: "CN=sca-1", hashAlgorithm: "SHA256", numSignatures,
  body: JSON.stringify({ description: "Invoice 42" }), createdAt: at(0), expiresAt: at(expiresInSeconds),
});

// Pending approvals (dual control): the request holds 0x00 and 0xff, so its base64url text uses "-" and "_".
/** Stand-ins for the SAM's MACs (issue 14): the store keeps them exactly, whatever they are. */
const macsFor = (hashes: readonly Uint8Array[]): Uint8Array[] => hashes.map((h, i) => new Uint8Array([i & 0xff, 0, ...h.subarray(0, 14)]));
const tokenMacStub = new Uint8Array([7, 0, 7, 0, 255]);
const authorizationStub = { body: '{"sealed":"署名 \u0000"}', seal: new Uint8Array([0, 255, 1]) };
const destroyMethod = "/inkan.admin.v1.RegistrationService/DestroyCredential";
const base64url = (u: Uint8Array): string => Buffer.from(u).toString("base64url");
const requestBytes = (text: string): Uint8Array => new Uint8Array([0, 255, 254, ...bytes(text), 0]);
const digestOf = (request: Uint8Array): string => base64url(createHash("sha256").update(request).digest());
const pendingApproval = (
  id: string,
  options: { method?: string; request?: string; requestedBy?: string; expiresInSeconds?: number } = {},
): NewPendingApproval => {
  const request = requestBytes(options.request ?? `destroy ${id}`);
  return {
    kind: "pending-approval",
    id,
    version: 1,
    method: options.method ?? destroyMethod,
    requestDigest: digestOf(request),
    request: base64url(request),
    requestedBy: options.requestedBy ?? "so-1",
    requestedAt: at(0),
    expiresAt: at(options.expiresInSeconds ?? 600),
    state: "PENDING",
    decidedBy: undefined,
    decidedAt: undefined,
    body: body(id),
    seal: seal(id),
  };
};
/** What getPendingApproval returns for a record created from `p` and never decided. */
const stored = (p: NewPendingApproval): PendingApprovalRecord => ({ ...p, decidedBy: undefined, decidedAt: undefined });
/** A decision as the caller sends it, with its own body and seal. */
const decision = (id: string, to: "APPROVED" | "REJECTED", decidedBy: string, seconds: number, note: string = to) => ({
  id, from: "PENDING" as const, to, decidedBy, decidedAt: at(seconds), body: body(id, { decision: note }), seal: seal(`${id}/${note}`), now: at(seconds),
});
const completion = (id: string, to: "EXECUTED" | "FAILED", seconds: number, note: string = to) => ({
  id, from: "APPROVED" as const, to, body: body(id, { outcome: note }), seal: seal(`${id}/${note}`), now: at(seconds),
});

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

export function describeStoreContract(name: string, factory: StoreFactory): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    const extra: Store[] = [];

    beforeEach(async () => {
      store = await factory.open();
    });
    afterEach(async () => {
      for (const s of extra.splice(0)) await s.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      await factory.dispose?.(store);
    });

    /** An authorized transaction over `hashes`, uploaded in one chunk. */
    async function authorized(id: string, hashes: Uint8Array[], numSignatures = hashes.length): Promise<void> {
      await store.createTransaction(newTransaction(id, numSignatures));
      expect(await store.appendDtbsr({ transactionId: id, startIndex: 0, hashes, macs: macsFor(hashes), now: at(1) })).toEqual({ ok: true, hashCount: hashes.length });
      expect(await store.completeDtbsrUpload({ transactionId: id, hashCount: hashes.length, digest: bytes("digest"), challengeHash: "challenge-hash", now: at(1) })).toBe(true);
      expect(await store.transitionTransaction({ id, from: ["PENDING"], to: "AUTHORIZED", authorization: authorizationStub, now: at(2) })).toBe(true);
    }

    describe("sealed records", () => {
      it("returns every field of every kind exactly as stored (id, version, queryable fields, body, seal)", async () => {
        const records: SealedRecord[] = [
          signer("s1"),
          factor("f1", "s1", "DEVICE_KEY"),
          credential("c1", "s1", "fp-1"),
          privilegedUser("u1", "SECURITY_OFFICER", "cert-1"),
          privilegedUserKey("k1", "u1", "key-1"),
        ];
        for (const r of records) await store.createRecord(r);
        for (const r of records) expect(await store.getRecord(r.kind, r.id)).toEqual(r);
        expect(await store.getRecord("signer", "nobody")).toBeUndefined();
      });

      it("refuses a second record with the same id (ALREADY_EXISTS, field id) and keeps the first", async () => {
        await store.createRecord(signer("s1"));
        const err = await rejection(store.createRecord({ ...signer("s1", "DISABLED"), body: "{}" }));
        expect(err).toBeInstanceOf(RecordExistsError);
        expect(err).toMatchObject({ code: "ALREADY_EXISTS", field: "id" });
        expect(await store.getRecord("signer", "s1")).toEqual(signer("s1"));
      });

      it("T-2.1.4.4: refuses a public key the SAM already knows, under any signer and after destruction", async () => {
        await store.createRecord(credential("c1", "s1", "fp-same"));
        const twice = await rejection(store.createRecord(credential("c2", "s2", "fp-same")));
        expect(twice).toBeInstanceOf(RecordExistsError);
        expect(twice).toMatchObject({ code: "ALREADY_EXISTS", field: "publicKeyFingerprint" });
        expect(await store.getRecord("credential", "c2")).toBeUndefined();

        const destroyed = { ...credential("c1", "s1", "fp-same", "DESTROYED"), version: 2 };
        expect(await store.updateRecord(destroyed, 1)).toBe(true);
        await expect(store.createRecord(credential("c3", "s1", "fp-same"))).rejects.toBeInstanceOf(RecordExistsError);

        // Nor can an existing credential be moved onto a known key.
        await store.createRecord(credential("c4", "s1", "fp-other"));
        await expect(store.updateRecord({ ...credential("c4", "s1", "fp-same"), version: 2 }, 1)).rejects.toMatchObject({
          code: "ALREADY_EXISTS",
          field: "publicKeyFingerprint",
        });
        expect(await store.getRecord("credential", "c4")).toEqual(credential("c4", "s1", "fp-other"));
      });

      it("T-2.1.4.4: 64 concurrent imports of one public key: exactly one is stored", async () => {
        const results = await race(racers, (i) => store.createRecord(credential(`c${i}`, `s${i}`, "fp-raced")).then(() => "ok", (e: unknown) => e));
        expect(results.filter((r) => r === "ok")).toHaveLength(1);
        for (const r of results) if (r !== "ok") expect(r).toBeInstanceOf(RecordExistsError);
      });

      it("refuses a second privileged user with the same certificate and a second key with the same fingerprint", async () => {
        await store.createRecord(privilegedUser("u1", "SECURITY_OFFICER", "cert-1"));
        await expect(store.createRecord(privilegedUser("u2", "AUDITOR", "cert-1"))).rejects.toMatchObject({ field: "certificateFingerprint" });
        await store.createRecord(privilegedUserKey("k1", "u1", "key-1"));
        await expect(store.createRecord(privilegedUserKey("k2", "u1", "key-1"))).rejects.toMatchObject({ field: "keyFingerprint" });
      });

      it("updates by compare-and-set on the version: a stale version loses and changes nothing", async () => {
        await store.createRecord(signer("s1"));
        const v2: SignerRecord = { ...signer("s1", "SUSPENDED"), version: 2, body: body("s1", { failedAttempts: 1 }), seal: seal("v2") };
        expect(await store.updateRecord(v2, 1)).toBe(true);
        expect(await store.getRecord("signer", "s1")).toEqual(v2);
        const stale: SignerRecord = { ...signer("s1", "ACTIVE"), version: 2, seal: seal("stale") };
        expect(await store.updateRecord(stale, 1)).toBe(false);
        expect(await store.getRecord("signer", "s1")).toEqual(v2);
        expect(await store.updateRecord({ ...signer("nobody"), version: 2 }, 1)).toBe(false);
      });

      it("refuses an update whose version does not follow the expected one (RangeError, nothing written)", async () => {
        await store.createRecord(signer("s1"));
        await expect(store.updateRecord({ ...signer("s1"), version: 5 }, 1)).rejects.toBeInstanceOf(RangeError);
        await expect(store.updateRecord({ ...signer("s1"), version: 1 }, 1)).rejects.toBeInstanceOf(RangeError);
        await expect(store.createRecord({ ...signer("s2"), version: 2 })).rejects.toBeInstanceOf(RangeError);
        expect((await store.getRecord("signer", "s1"))?.version).toBe(1);
      });

      it("64 concurrent updates from the same version: exactly one wins and its content is stored", async () => {
        await store.createRecord(signer("s1"));
        const results = await race(racers, (i) => store.updateRecord({ ...signer("s1"), version: 2, body: body("s1", { writer: i }) }, 1));
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = results.indexOf(true);
        expect((await store.getRecord("signer", "s1"))?.body).toBe(body("s1", { writer: winner }));
      });

      it("lists by queryable fields in id order, page by page with the last id as cursor", async () => {
        for (let i = 0; i < 25; i++) {
          const id = `c${String(i).padStart(2, "0")}`;
          await store.createRecord(credential(id, i % 2 === 0 ? "even" : "odd", `fp-${i}`, i % 5 === 0 ? "SUSPENDED" : "ACTIVE"));
        }
        const seen: string[] = [];
        let after: string | undefined;
        let pages = 0;
        do {
          const page = await store.listRecords({ kind: "credential", where: { signerId: "even" }, after, limit: 4 });
          expect(page.items.length).toBeLessThanOrEqual(4);
          seen.push(...page.items.map((c) => c.id));
          after = page.next;
          pages++;
        } while (after !== undefined);
        expect(seen).toEqual(Array.from({ length: 13 }, (_, k) => `c${String(k * 2).padStart(2, "0")}`));
        expect(pages).toBe(4); // 4 + 4 + 4 + 1, and no empty last page
        const suspendedEven = await store.listRecords({ kind: "credential", where: { signerId: "even", status: "SUSPENDED" }, limit: 100 });
        expect(suspendedEven.items.map((c) => c.id)).toEqual(["c00", "c10", "c20"]);
        expect(suspendedEven.next).toBeUndefined();
        const all = await store.listRecords({ kind: "credential", where: {}, limit: 100 });
        expect(all.items).toHaveLength(25);
      });

      it("lists signers by status, factors by signer and type, privileged users by role and keys by user", async () => {
        await store.createRecord(signer("s1", "ACTIVE"));
        await store.createRecord(signer("s2", "PENDING_ACTIVATION"));
        await store.createRecord(factor("f1", "s1", "PIN"));
        await store.createRecord(factor("f2", "s1", "DEVICE_KEY"));
        await store.createRecord(factor("f3", "s2", "PIN"));
        await store.createRecord(privilegedUser("u1", "AUDITOR", "cert-1"));
        await store.createRecord(privilegedUser("u2", "SECURITY_OFFICER", "cert-2"));
        await store.createRecord(privilegedUserKey("k1", "u2", "key-1"));
        const ids = (p: { items: { id: string }[] }) => p.items.map((r) => r.id);
        expect(ids(await store.listRecords({ kind: "signer", where: { status: "PENDING_ACTIVATION" }, limit: 10 }))).toEqual(["s2"]);
        expect(ids(await store.listRecords({ kind: "factor", where: { signerId: "s1" }, limit: 10 }))).toEqual(["f1", "f2"]);
        expect(ids(await store.listRecords({ kind: "factor", where: { signerId: "s1", type: "PIN" }, limit: 10 }))).toEqual(["f1"]);
        expect(ids(await store.listRecords({ kind: "privileged-user", where: { role: "SECURITY_OFFICER" }, limit: 10 }))).toEqual(["u2"]);
        expect(ids(await store.listRecords({ kind: "privileged-user-key", where: { userId: "u2" }, limit: 10 }))).toEqual(["k1"]);
      });

      it("finds a record by its unique field", async () => {
        await store.createRecord(credential("c1", "s1", "fp-1"));
        await store.createRecord(privilegedUser("u1", "AUDITOR", "cert-1"));
        await store.createRecord(privilegedUserKey("k1", "u1", "key-1"));
        expect(await store.findRecord("credential", "publicKeyFingerprint", "fp-1")).toEqual(credential("c1", "s1", "fp-1"));
        expect((await store.findRecord("privileged-user", "certificateFingerprint", "cert-1"))?.id).toBe("u1");
        expect((await store.findRecord("privileged-user-key", "keyFingerprint", "key-1"))?.id).toBe("k1");
        expect(await store.findRecord("credential", "publicKeyFingerprint", "fp-unknown")).toBeUndefined();
      });

      it("refuses listing by a field that is not queryable and pages outside 1..maxPageSize (RangeError)", async () => {
        await expect(store.listRecords({ kind: "signer", where: { body: "x" } as never, limit: 10 })).rejects.toBeInstanceOf(RangeError);
        await expect(store.listRecords({ kind: "signer", where: {}, limit: 0 })).rejects.toBeInstanceOf(RangeError);
        await expect(store.listRecords({ kind: "signer", where: {}, limit: maxPageSize + 1 })).rejects.toBeInstanceOf(RangeError);
        await expect(store.findRecord("credential", "signerId" as never, "s1")).rejects.toBeInstanceOf(RangeError);
      });

      it("R-3.2.2.3: appends policy versions in order; a lost race or a gap is refused; history stays readable", async () => {
        const policy = (version: number, note: string) => ({ kind: "policy" as const, id: "security-policy", version, body: body(note), seal: seal(note) });
        expect(await store.latestPolicyVersion("security-policy")).toBeUndefined();
        expect(await store.appendPolicyVersion(policy(2, "gap"))).toBe(false);
        expect(await store.appendPolicyVersion(policy(1, "first"))).toBe(true);
        const raced = await race(racers, (i) => store.appendPolicyVersion(policy(2, `second-${i}`)));
        expect(raced.filter(Boolean)).toHaveLength(1);
        expect(await store.appendPolicyVersion(policy(1, "rewrite"))).toBe(false);
        expect(await store.getPolicyVersion("security-policy", 1)).toEqual(policy(1, "first"));
        expect(await store.latestPolicyVersion("security-policy")).toEqual(policy(2, `second-${raced.indexOf(true)}`));
        expect((await store.listPolicyVersions("security-policy", 0, 10)).map((p) => p.version)).toEqual([1, 2]);
        expect((await store.listPolicyVersions("security-policy", 1, 10)).map((p) => p.version)).toEqual([2]);
        expect(await store.getPolicyVersion("other-stream", 1)).toBeUndefined();
      });
    });

    describe("transactions", () => {
      it("creates a PENDING transaction with an empty list, every field returned; a duplicate id is refused", async () => {
        const tx = newTransaction("tx1", 3);
        await store.createTransaction(tx);
        expect(await store.getTransaction("tx1")).toEqual({
          ...tx,
          state: "PENDING",
          hashCount: 0,
          dtbsrDigest: undefined,
          challengeHash: undefined,
          signaturesCreated: 0,
          signaturesRecorded: 0,
          authorizeFailures: 0,
          authorizedAt: undefined,
          updatedAt: tx.createdAt,
          authorization: undefined,
        });
        expect(await store.getTransaction("tx1")).toHaveProperty("challengeHash", undefined);
        await expect(store.createTransaction(tx)).rejects.toBeInstanceOf(RecordExistsError);
        expect(await store.getTransaction("nope")).toBeUndefined();
      });

      it("T-2.2.2.2 (issue 14): the sealed authorization, entry MACs and token MACs are stored with their rows and returned exactly", async () => {
        const h = [dtbsrHash(0), dtbsrHash(1), dtbsrHash(2)];
        await authorized("tx1", h);
        expect((await store.getTransaction("tx1"))?.authorization).toEqual(authorizationStub);
        expect((await store.readDtbsr({ transactionId: "tx1", fromIndex: 0, limit: 3 })).map((e) => e.mac)).toEqual(macsFor(h));
        const one = await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!], now: at(3), claim: holder() });
        expect(one).toMatchObject({ ok: true, indices: [1], macs: [macsFor(h)[1]] });
        const range = await store.markRangeSigned({ transactionId: "tx1", fromIndex: 2, count: 1, now: at(3), claim: holder() });
        expect(range).toMatchObject({ ok: true, indices: [2], macs: [macsFor(h)[2]] });
        await store.issueSadToken({ hash: "mac-token", transactionId: "tx1", generation: 0, previousHash: undefined, issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub });
        expect((await store.findSadToken("mac-token"))?.mac).toEqual(tokenMacStub);
        expect((await store.consumeSadToken({ hash: "mac-token", now: at(3) }))?.mac).toEqual(tokenMacStub);
        // The move to AUTHORIZED carries the authorization, and no other move does.
        await store.createTransaction(newTransaction("tx2", 1));
        await store.appendDtbsr({ transactionId: "tx2", startIndex: 0, hashes: [h[0]!], macs: macsFor([h[0]!]), now: at(1) });
        await store.completeDtbsrUpload({ transactionId: "tx2", hashCount: 1, digest: bytes("digest"), challengeHash: "challenge-hash-2", now: at(1) });
        await expect(store.transitionTransaction({ id: "tx2", from: ["PENDING"], to: "AUTHORIZED", now: at(2) })).rejects.toBeInstanceOf(RangeError);
        await expect(store.transitionTransaction({ id: "tx2", from: ["PENDING"], to: "CANCELLED", authorization: authorizationStub, now: at(2) })).rejects.toBeInstanceOf(RangeError);
        await expect(store.appendDtbsr({ transactionId: "tx2", startIndex: 1, hashes: [h[1]!], macs: [], now: at(1) })).rejects.toBeInstanceOf(RangeError);
        expect((await store.getTransaction("tx2"))?.state).toBe("PENDING");
      });

      it("T-2.2.2.2 (issue 14): what the SAM seals and MACs comes back byte for byte, so its checks hold on this adapter", async () => {
        // The SAP's own checks over what this adapter returns (a fake module key): an adapter that
        // altered, dropped or re-encoded a byte would make every authorization fail (closed), and one
        // that returned another row's bytes would be caught the same way.
        const keys = { hmacSha256: async (_k: "record-seal", data: Uint8Array) => new Uint8Array(createHash("sha256").update("contract-key").update(data).digest()) };
        const seals = new AuthorizationSeals({ keys });
        const h = [dtbsrHash(0), dtbsrHash(1)];
        const entryKey = await seals.entryKey("sealed-tx");
        await store.createTransaction(newTransaction("sealed-tx", 2));
        await store.appendDtbsr({ transactionId: "sealed-tx", startIndex: 0, hashes: h, macs: entryKey.macs(0, h), now: at(1) });
        await store.completeDtbsrUpload({ transactionId: "sealed-tx", hashCount: 2, digest: bytes("digest-of-two"), challengeHash: "sealed-challenge", now: at(1) });
        const pending = (await store.getTransaction("sealed-tx"))!;
        const authorization = await seals.seal({
          v: 1, transactionId: pending.id, signerId: pending.signerId, credentialId: pending.credentialId, sca: pending.sca, hashAlgorithm: pending.hashAlgorithm,
          signatureScheme: "ECDSA", signatureFormat: 0, numSignatures: 2, dtbsrDigest: Buffer.from(pending.dtbsrDigest!).toString("base64url"),
          expiresAt: pending.expiresAt.toISOString(), authorizedAt: at(2).toISOString(), method: "AUTHENTICATION_METHOD_DEVICE_KEY_AND_PIN", factors: [{ id: "f", type: "PIN" }], csrOnly: false,
        });
        expect(await store.transitionTransaction({ id: "sealed-tx", from: ["PENDING"], to: "AUTHORIZED", authorization, now: at(2) })).toBe(true);
        const authorized = (await store.getTransaction("sealed-tx"))!;
        expect((await seals.open(authorized)).transactionId).toBe("sealed-tx");
        for (const e of await store.readDtbsr({ transactionId: "sealed-tx", fromIndex: 0, limit: 2 })) await entryKey.checkEntry(e.index, e.hash, e.mac);
        const claimed = await store.markHashesSigned({ transactionId: "sealed-tx", hashes: [h[1]!], now: at(3), claim: holder() });
        if (!claimed.ok) throw new Error("claim refused");
        await entryKey.checkEntry(claimed.indices[0]!, h[1]!, claimed.macs[0]);
        const fields = { hash: "sealed-token", transactionId: "sealed-tx", generation: 0, previousHash: undefined, issuedAt: at(2), expiresAt: at(60) };
        await store.issueSadToken({ ...fields, mac: entryKey.tokenMac(fields) });
        await entryKey.checkToken((await store.findSadToken("sealed-token"))!);
        await entryKey.checkToken((await store.consumeSadToken({ hash: "sealed-token", now: at(3) }))!);
        // And the checks do catch a changed byte in what the adapter returns.
        await expect(seals.open({ ...authorized, numSignatures: 3 })).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
        await expect(entryKey.checkEntry(0, h[1]!, claimed.macs[0])).rejects.toMatchObject({ code: "INTEGRITY_VIOLATION" });
      });

      it("R-3.3.1 (issue 13): revokeSignerTransactions ends the signer's open transactions and their unused tokens, and only those", async () => {
        const h = [dtbsrHash(0)];
        await authorized("open-authorized", h);
        await store.createTransaction(newTransaction("open-pending", 1));
        await authorized("done", h);
        await store.markHashesSigned({ transactionId: "done", hashes: h, now: at(3), claim: holder() }); // COMPLETED
        await store.createTransaction({ ...newTransaction("other-signer", 1), signerId: "someone-else" });
        await store.issueSadToken({ hash: "live", transactionId: "open-authorized", generation: 0, previousHash: undefined, issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub });
        const signerId = newTransaction("x", 1).signerId;
        expect((await store.revokeSignerTransactions({ signerId, now: at(4) })).sort()).toEqual(["open-authorized", "open-pending"]);
        expect((await store.getTransaction("open-authorized"))?.state).toBe("REVOKED");
        expect((await store.getTransaction("open-pending"))?.state).toBe("REVOKED");
        expect((await store.getTransaction("done"))?.state).toBe("COMPLETED");
        expect((await store.getTransaction("other-signer"))?.state).toBe("PENDING");
        expect(await store.consumeSadToken({ hash: "live", now: at(5) })).toBeUndefined();
        expect((await store.findSadToken("live"))?.revokedAt).toEqual(at(4));
        expect(await store.revokeSignerTransactions({ signerId, now: at(6) })).toEqual([]);
      });

      it("R-3.2.1.1: PENDING -> AUTHORIZED needs the complete list, happens once, and not after expiry", async () => {
        await store.createTransaction(newTransaction("tx1", 1, 60));
        expect(await store.transitionTransaction({ id: "tx1", from: ["PENDING"], to: "AUTHORIZED", authorization: authorizationStub, now: at(1) })).toBe(false); // upload incomplete
        await store.appendDtbsr({ transactionId: "tx1", startIndex: 0, hashes: [dtbsrHash(0)], macs: macsFor([dtbsrHash(0)]), now: at(1) });
        expect(await store.completeDtbsrUpload({ transactionId: "tx1", hashCount: 1, digest: bytes("d"), challengeHash: "challenge-hash", now: at(1) })).toBe(true);
        expect(await store.transitionTransaction({ id: "tx1", from: ["PENDING"], to: "AUTHORIZED", authorization: authorizationStub, now: at(60) })).toBe(false); // expired
        expect(await store.transitionTransaction({ id: "tx1", from: ["PENDING"], to: "AUTHORIZED", authorization: authorizationStub, now: at(2) })).toBe(true);
        expect(await store.transitionTransaction({ id: "tx1", from: ["PENDING"], to: "AUTHORIZED", authorization: authorizationStub, now: at(3) })).toBe(false); // once
        const tx = await store.getTransaction("tx1");
        expect(tx).toMatchObject({ state: "AUTHORIZED", authorizedAt: at(2), updatedAt: at(2), dtbsrDigest: bytes("d") });
      });

      it("T-2.2.1.3: 64 concurrent Authorize calls on one transaction: exactly one moves it (100 rounds)", async () => {
        for (let round = 0; round < raceRounds; round++) {
          const id = `tx-${round}`;
          await store.createTransaction(newTransaction(id, 1));
          await store.appendDtbsr({ transactionId: id, startIndex: 0, hashes: [dtbsrHash(round)], macs: macsFor([dtbsrHash(round)]), now: at(1) });
          await store.completeDtbsrUpload({ transactionId: id, hashCount: 1, digest: bytes("d"), challengeHash: "challenge-hash", now: at(1) });
          const results = await race(racers, () => store.transitionTransaction({ id, from: ["PENDING"], to: "AUTHORIZED", authorization: authorizationStub, now: at(2) }));
          expect(results.filter(Boolean), `round ${round}`).toHaveLength(1);
        }
      });

      it("terminal states are final and only state-machine edges are accepted", async () => {
        await authorized("tx1", [dtbsrHash(0)]);
        expect(await store.transitionTransaction({ id: "tx1", from: ["PENDING", "AUTHORIZED"], to: "REVOKED", now: at(3) })).toBe(true);
        for (const to of ["CANCELLED", "REVOKED"] as const) {
          expect(await store.transitionTransaction({ id: "tx1", from: ["PENDING", "AUTHORIZED"], to, now: at(4) })).toBe(false);
        }
        expect((await store.getTransaction("tx1"))?.state).toBe("REVOKED");
        await expect(store.transitionTransaction({ id: "tx1", from: ["REVOKED"], to: "AUTHORIZED", authorization: authorizationStub, now: at(4) })).rejects.toBeInstanceOf(RangeError);
        await expect(store.transitionTransaction({ id: "tx1", from: ["PENDING"], to: "COMPLETED", now: at(4) })).rejects.toBeInstanceOf(RangeError);
        await expect(store.transitionTransaction({ id: "tx1", from: [], to: "CANCELLED", now: at(4) })).rejects.toBeInstanceOf(RangeError);
        expect(await store.transitionTransaction({ id: "nope", from: ["PENDING"], to: "CANCELLED", now: at(4) })).toBe(false);
      });

      it("appends DTBS/R chunks only in order, while PENDING, unexpired and before the list is frozen", async () => {
        await store.createTransaction(newTransaction("tx1", 4, 60));
        const h = [0, 1, 2, 3, 4].map((i) => dtbsrHash(i));
        expect(await store.appendDtbsr({ transactionId: "tx1", startIndex: 0, hashes: h.slice(0, 2), macs: macsFor(h.slice(0, 2)), now: at(1) })).toEqual({ ok: true, hashCount: 2 });
        // a retried chunk and a gap are both refused, with the count the client should continue from
        expect(await store.appendDtbsr({ transactionId: "tx1", startIndex: 0, hashes: h.slice(0, 2), macs: macsFor(h.slice(0, 2)), now: at(1) })).toEqual({ ok: false, reason: "INVALID_REQUEST", hashCount: 2 });
        expect(await store.appendDtbsr({ transactionId: "tx1", startIndex: 3, hashes: h.slice(3, 4), macs: macsFor(h.slice(3, 4)), now: at(1) })).toEqual({ ok: false, reason: "INVALID_REQUEST", hashCount: 2 });
        expect(await store.appendDtbsr({ transactionId: "tx1", startIndex: 2, hashes: h.slice(2, 4), macs: macsFor(h.slice(2, 4)), now: at(60) })).toEqual({ ok: false, reason: "EXPIRED" });
        expect(await store.appendDtbsr({ transactionId: "tx1", startIndex: 2, hashes: h.slice(2, 4), macs: macsFor(h.slice(2, 4)), now: at(2) })).toEqual({ ok: true, hashCount: 4 });
        expect(await store.completeDtbsrUpload({ transactionId: "tx1", hashCount: 3, digest: bytes("d"), challengeHash: "challenge-hash", now: at(3) })).toBe(false); // count moved
        expect(await store.completeDtbsrUpload({ transactionId: "tx1", hashCount: 4, digest: bytes("d"), challengeHash: "challenge-hash", now: at(3) })).toBe(true);
        expect(await store.completeDtbsrUpload({ transactionId: "tx1", hashCount: 4, digest: bytes("other"), challengeHash: "challenge-hash", now: at(3) })).toBe(false); // frozen
        expect(await store.appendDtbsr({ transactionId: "tx1", startIndex: 4, hashes: h.slice(4), macs: macsFor(h.slice(4)), now: at(3) })).toEqual({ ok: false, reason: "TRANSACTION_STATE" });
        expect(await store.appendDtbsr({ transactionId: "nope", startIndex: 0, hashes: h.slice(0, 1), macs: macsFor(h.slice(0, 1)), now: at(3) })).toEqual({ ok: false, reason: "TRANSACTION_NOT_FOUND" });
        await expect(store.appendDtbsr({ transactionId: "tx1", startIndex: 4, hashes: [], macs: macsFor([]), now: at(3) })).rejects.toBeInstanceOf(RangeError);
        expect((await store.readDtbsr({ transactionId: "tx1", fromIndex: 0, limit: 10 })).map((e) => e.hash)).toEqual(h.slice(0, 4));
        await store.createTransaction(newTransaction("empty", 1));
        expect(await store.completeDtbsrUpload({ transactionId: "empty", hashCount: 0, digest: bytes("d"), challengeHash: "challenge-hash", now: at(3) })).toBe(false);
      });

      it("R-3.2.2.2, T-2.2.1.3: completeDtbsrUpload stores the challenge hash in the same atomic update that freezes the list, returned exactly", async () => {
        // base64url of SHA-256: 43 characters, "-" and "_" included, so a text column must keep it exactly.
        const hash = "-_" + base64url(createHash("sha256").update("chunked challenge").digest()).slice(2);
        const other = "_-" + hash.slice(2);
        await store.createTransaction(newTransaction("chunked", 2, 60));
        await store.appendDtbsr({ transactionId: "chunked", startIndex: 0, hashes: [dtbsrHash(0)], macs: macsFor([dtbsrHash(0)]), now: at(1) });
        expect((await store.getTransaction("chunked"))?.challengeHash).toBeUndefined(); // still uploading
        // A refused freeze stores neither the digest nor the hash.
        expect(await store.completeDtbsrUpload({ transactionId: "chunked", hashCount: 2, digest: bytes("d"), challengeHash: hash, now: at(2) })).toBe(false);
        expect(await store.getTransaction("chunked")).toMatchObject({ dtbsrDigest: undefined, challengeHash: undefined });
        await store.appendDtbsr({ transactionId: "chunked", startIndex: 1, hashes: [dtbsrHash(1)], macs: macsFor([dtbsrHash(1)]), now: at(2) });
        expect(await store.completeDtbsrUpload({ transactionId: "chunked", hashCount: 2, digest: bytes("d"), challengeHash: hash, now: at(60) })).toBe(false); // expired
        expect(await store.getTransaction("chunked")).toMatchObject({ dtbsrDigest: undefined, challengeHash: undefined });
        expect(await store.completeDtbsrUpload({ transactionId: "chunked", hashCount: 2, digest: bytes("d"), challengeHash: hash, now: at(3) })).toBe(true);
        const sealed = await store.getTransaction("chunked");
        expect(sealed).toMatchObject({ dtbsrDigest: bytes("d"), challengeHash: hash, updatedAt: at(3) });
        expect(sealed?.challengeHash).toBe(hash);
        // Frozen: a second freeze changes neither the digest nor the hash.
        expect(await store.completeDtbsrUpload({ transactionId: "chunked", hashCount: 2, digest: bytes("x"), challengeHash: other, now: at(4) })).toBe(false);
        expect(await store.getTransaction("chunked")).toMatchObject({ dtbsrDigest: bytes("d"), challengeHash: hash, updatedAt: at(3) });
        // Authorize sees it through the state machine unchanged.
        expect(await store.transitionTransaction({ id: "chunked", from: ["PENDING"], to: "AUTHORIZED", authorization: authorizationStub, now: at(5) })).toBe(true);
        expect((await store.getTransaction("chunked"))?.challengeHash).toBe(hash);

        // A hash given at creation (a list sealed at once) is returned from the start and never replaced.
        await store.createTransaction({ ...newTransaction("inline", 1, 60), challengeHash: hash });
        expect((await store.getTransaction("inline"))?.challengeHash).toBe(hash);
        await store.appendDtbsr({ transactionId: "inline", startIndex: 0, hashes: [dtbsrHash(0)], macs: macsFor([dtbsrHash(0)]), now: at(1) });
        expect(await store.completeDtbsrUpload({ transactionId: "inline", hashCount: 1, digest: bytes("d"), challengeHash: other, now: at(2) })).toBe(false);
        expect(await store.getTransaction("inline")).toMatchObject({ dtbsrDigest: undefined, challengeHash: hash });
        expect(await store.completeDtbsrUpload({ transactionId: "inline", hashCount: 1, digest: bytes("d"), challengeHash: hash, now: at(2) })).toBe(true);
        expect(await store.getTransaction("inline")).toMatchObject({ dtbsrDigest: bytes("d"), challengeHash: hash });

        await expect(store.completeDtbsrUpload({ transactionId: "chunked", hashCount: 2, digest: bytes("d"), challengeHash: "", now: at(3) })).rejects.toBeInstanceOf(RangeError);
      });

      it("uploads 100,000 DTBS/R hashes in chunks and reads them back in order, page by page (bounded memory)", async () => {
        const total = 100_000;
        const chunk = 5_000;
        await store.createTransaction(newTransaction("big", total));
        const upload = createHash("sha256");
        for (let start = 0; start < total; start += chunk) {
          const hashes = Array.from({ length: chunk }, (_, i) => dtbsrHash(start + i));
          hashes.forEach((h) => upload.update(h));
          expect(await store.appendDtbsr({ transactionId: "big", startIndex: start, hashes, macs: macsFor(hashes), now: at(1) })).toEqual({ ok: true, hashCount: start + chunk });
        }
        const digest = new Uint8Array(upload.digest());
        expect(await store.completeDtbsrUpload({ transactionId: "big", hashCount: total, digest, challengeHash: "challenge-hash", now: at(2) })).toBe(true);

        const readBack = createHash("sha256");
        let next = 0;
        let pages = 0;
        for (;;) {
          const page = await store.readDtbsr({ transactionId: "big", fromIndex: next, limit: maxPageSize });
          if (page.length === 0) break;
          expect(page.length).toBeLessThanOrEqual(maxPageSize); // never more than a page in memory
          for (const entry of page) {
            if (entry.index !== next) throw new Error(`entry ${next} came back as ${entry.index}`);
            if (entry.signed) throw new Error(`entry ${next} is marked signed`);
            readBack.update(entry.hash);
            next++;
          }
          pages++;
        }
        expect(next).toBe(total);
        expect(pages).toBe(total / maxPageSize);
        expect(new Uint8Array(readBack.digest())).toEqual(digest);
        expect((await store.getTransaction("big"))?.dtbsrDigest).toEqual(digest);
        await expect(store.readDtbsr({ transactionId: "big", fromIndex: 0, limit: maxPageSize + 1 })).rejects.toBeInstanceOf(RangeError);
      });

      it("T-2.2.1.6: mark-signed refuses a hash outside the list, all or nothing", async () => {
        const h = [0, 1, 2].map((i) => dtbsrHash(i));
        await authorized("tx1", h);
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!, dtbsrHash(99)], now: at(3), claim: holder() })).toEqual({ ok: false, reason: "HASH_NOT_AUTHORIZED", index: 1 });
        expect(await store.getTransaction("tx1")).toMatchObject({ signaturesCreated: 0, state: "AUTHORIZED" });
        expect((await store.readDtbsr({ transactionId: "tx1", fromIndex: 0, limit: 10 })).some((e) => e.signed)).toBe(false); // the first claim was rolled back
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[2]!, h[0]!], now: at(3), claim: holder() })).toMatchObject({ ok: true, indices: [2, 0], signaturesCreated: 2, state: "AUTHORIZED" });
      });

      it("T-2.2.1.6: mark-signed refuses a hash more often than it appears, and the same hash twice across calls", async () => {
        const h = [dtbsrHash(0), dtbsrHash(1), dtbsrHash(0)]; // hash 0 appears twice
        await authorized("tx1", h);
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!, h[0]!, h[0]!], now: at(3), claim: holder() })).toEqual({ ok: false, reason: "HASH_NOT_AUTHORIZED", index: 2 });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!], now: at(3), claim: holder() })).toMatchObject({ ok: true, indices: [0] });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!], now: at(3), claim: holder() })).toMatchObject({ ok: true, indices: [2] });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!], now: at(3), claim: holder() })).toEqual({ ok: false, reason: "HASH_NOT_AUTHORIZED", index: 0 });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!], now: at(3), claim: holder() })).toMatchObject({ ok: true, indices: [1], signaturesCreated: 3, state: "COMPLETED" });
      });

      it("T-2.2.1.6: the signature count never exceeds what was authorized; reaching it completes the transaction", async () => {
        const h = [0, 1, 2, 3].map((i) => dtbsrHash(i));
        await authorized("tx1", h, 2); // four hashes listed, two signatures authorized
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: h.slice(0, 3), now: at(3), claim: holder() })).toEqual({ ok: false, reason: "SIGNATURE_COUNT_EXCEEDED" });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!], now: at(3), claim: holder() })).toMatchObject({ ok: true, signaturesCreated: 1, state: "AUTHORIZED" });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!, h[2]!], now: at(3), claim: holder() })).toEqual({ ok: false, reason: "SIGNATURE_COUNT_EXCEEDED" });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!], now: at(3), claim: holder() })).toMatchObject({ ok: true, signaturesCreated: 2, state: "COMPLETED" });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[2]!], now: at(3), claim: holder() })).toEqual({ ok: false, reason: "TRANSACTION_STATE" });
        expect(await store.getTransaction("tx1")).toMatchObject({ signaturesCreated: 2, state: "COMPLETED" });
      });

      it("T-2.2.1.6: 64 concurrent mark-signed calls: exactly the authorized number succeed, no entry twice", async () => {
        const h = Array.from({ length: racers }, (_, i) => dtbsrHash(i));
        await authorized("tx1", h, 10);
        const results = await race(racers, (i) => store.markHashesSigned({ transactionId: "tx1", hashes: [h[i]!], now: at(3), claim: holder() }));
        expect(results.filter((r) => r.ok)).toHaveLength(10);
        expect(await store.getTransaction("tx1")).toMatchObject({ signaturesCreated: 10, state: "COMPLETED" });
        await authorized("tx2", [dtbsrHash(0, "once")], 1);
        const same = await race(racers, () => store.markHashesSigned({ transactionId: "tx2", hashes: [dtbsrHash(0, "once")], now: at(3), claim: holder() }));
        expect(same.filter((r) => r.ok)).toHaveLength(1);
      });

      it("T-2.2.1.2: nothing is marked before authorization, after cancellation or revocation, or after expiry", async () => {
        const h = [dtbsrHash(0)];
        await store.createTransaction(newTransaction("pending", 1));
        await store.appendDtbsr({ transactionId: "pending", startIndex: 0, hashes: h, macs: macsFor(h), now: at(1) });
        expect(await store.markHashesSigned({ transactionId: "pending", hashes: h, now: at(2), claim: holder() })).toEqual({ ok: false, reason: "TRANSACTION_STATE" });
        await authorized("revoked", h);
        await store.transitionTransaction({ id: "revoked", from: ["AUTHORIZED"], to: "REVOKED", now: at(3) });
        expect(await store.markHashesSigned({ transactionId: "revoked", hashes: h, now: at(3), claim: holder() })).toEqual({ ok: false, reason: "TRANSACTION_STATE" });
        await authorized("cancelled", h);
        await store.transitionTransaction({ id: "cancelled", from: ["AUTHORIZED"], to: "CANCELLED", now: at(3) });
        expect(await store.markRangeSigned({ transactionId: "cancelled", fromIndex: 0, count: 1, now: at(3), claim: holder() })).toEqual({ ok: false, reason: "TRANSACTION_STATE" });
        await authorized("expired", h);
        expect(await store.markHashesSigned({ transactionId: "expired", hashes: h, now: at(600), claim: holder() })).toEqual({ ok: false, reason: "EXPIRED" });
        expect(await store.markHashesSigned({ transactionId: "nope", hashes: h, now: at(3), claim: holder() })).toEqual({ ok: false, reason: "TRANSACTION_NOT_FOUND" });
      });

      it("T-2.2.1.6: ranges (SignStream) are claimed once; a resumed stream cannot re-sign or leave the list", async () => {
        const h = Array.from({ length: 10 }, (_, i) => dtbsrHash(i));
        await authorized("tx1", h);
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 0, count: 4, now: at(3), claim: holder() })).toMatchObject({ ok: true, indices: [0, 1, 2, 3], signaturesCreated: 4, state: "AUTHORIZED" });
        // Issue 17: entries claimed under a live lease are left out, never claimed twice; the rest of the range is claimed.
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 2, count: 4, now: at(3), claim: holder() })).toMatchObject({ ok: true, indices: [4, 5], reclaimed: 0, signaturesCreated: 6 });
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 8, count: 3, now: at(3), claim: holder() })).toEqual({ ok: false, reason: "HASH_NOT_AUTHORIZED", index: 10 });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!], now: at(3), claim: holder() })).toEqual({ ok: false, reason: "HASH_NOT_AUTHORIZED", index: 0 });
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 4, count: 6, now: at(3), claim: holder() })).toMatchObject({ ok: true, indices: [6, 7, 8, 9], signaturesCreated: 10, state: "COMPLETED" });
        const entries = await store.readDtbsr({ transactionId: "tx1", fromIndex: 0, limit: 100 });
        expect(entries.every((e) => e.signed)).toBe(true);
        await expect(store.markRangeSigned({ transactionId: "tx1", fromIndex: -1, count: 1, now: at(3), claim: holder() })).rejects.toBeInstanceOf(RangeError);
      });

      it("T-2.2.1.6: a range is claimed only while the claiming stream's token is unused (a resumed stream stops the older one)", async () => {
        const h = Array.from({ length: 4 }, (_, i) => dtbsrHash(i));
        await authorized("tx1", h);
        await store.issueSadToken({ hash: "stream-1", transactionId: "tx1", generation: 1, previousHash: undefined, issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub });
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 0, count: 2, now: at(3), claim: holder(), whileTokenUnused: "stream-1" })).toMatchObject({ ok: true, indices: [0, 1] });
        await store.consumeSadToken({ hash: "stream-1", now: at(3) }); // a newer stream took over
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 2, count: 2, now: at(3), claim: holder(), whileTokenUnused: "stream-1" })).toEqual({ ok: false, reason: "TRANSACTION_STATE" });
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 2, count: 2, now: at(3), claim: holder(), whileTokenUnused: "unknown" })).toEqual({ ok: false, reason: "TRANSACTION_STATE" });
        expect(await store.getTransaction("tx1")).toMatchObject({ signaturesCreated: 2 });
      });

      it("max_authorize_attempts: failed Authorize attempts of a sealed PENDING transaction are counted atomically; the limit makes it FAILED", async () => {
        await store.createTransaction(newTransaction("tx1", 1));
        await store.appendDtbsr({ transactionId: "tx1", startIndex: 0, hashes: [dtbsrHash(0)], macs: macsFor([dtbsrHash(0)]), now: at(1) });
        expect(await store.recordAuthorizeFailure({ id: "tx1", maxFailures: 3, now: at(2) })).toBeUndefined(); // still uploading
        await store.completeDtbsrUpload({ transactionId: "tx1", hashCount: 1, digest: new Uint8Array(32), challengeHash: "c1", now: at(2) });
        expect(await store.recordAuthorizeFailure({ id: "tx1", maxFailures: 3, now: at(2) })).toEqual({ failures: 1, state: "PENDING" });
        const racers64 = await race(racers, () => store.recordAuthorizeFailure({ id: "tx1", maxFailures: 3, now: at(2) }));
        expect(racers64.filter((r) => r?.state === "FAILED")).toHaveLength(1); // exactly one failure reaches the limit
        expect(racers64.filter((r) => r !== undefined)).toHaveLength(2);
        expect(await store.getTransaction("tx1")).toMatchObject({ state: "FAILED", authorizeFailures: 3 });
        expect(await store.transitionTransaction({ id: "tx1", from: ["PENDING"], to: "AUTHORIZED", authorization: authorizationStub, now: at(3) })).toBe(false);
        expect(() => checkTransition(["FAILED"], "AUTHORIZED")).toThrow(RangeError);
      });

      it("T-2.2.1.6: hasUnsignedEntries tells, per hash, whether an unsigned entry with that value remains", async () => {
        const h = [dtbsrHash(0), dtbsrHash(1), dtbsrHash(0)]; // hash 0 twice
        await authorized("tx1", h);
        expect(await store.hasUnsignedEntries({ transactionId: "tx1", hashes: [h[0]!, h[1]!, dtbsrHash(9)] })).toEqual([true, true, false]);
        await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!, h[1]!], now: at(3), claim: holder() });
        expect(await store.hasUnsignedEntries({ transactionId: "tx1", hashes: [h[0]!, h[1]!] })).toEqual([true, false]); // the second 0 remains
        await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!], now: at(3), claim: holder() });
        expect(await store.hasUnsignedEntries({ transactionId: "tx1", hashes: [h[0]!] })).toEqual([false]);
        expect(await store.hasUnsignedEntries({ transactionId: "nope", hashes: [h[0]!] })).toEqual([false]);
        await expect(store.hasUnsignedEntries({ transactionId: "tx1", hashes: [] })).rejects.toBeInstanceOf(RangeError);
      });

      it("T-2.2.1.6: a signature is recorded only under the entry's current claim, once, and is never replaced (SignStream resume)", async () => {
        const h = Array.from({ length: 4 }, (_, i) => dtbsrHash(i));
        await authorized("tx1", h);
        const sig = (b: number) => new Uint8Array([b, b, b]);
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: "none", signatures: [{ index: 0, signature: sig(1) }] })).toEqual({ recorded: [], signaturesRecorded: 0 }); // not claimed
        const claim = holder();
        await store.markRangeSigned({ transactionId: "tx1", fromIndex: 0, count: 2, now: at(3), claim });
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: "another", signatures: [{ index: 0, signature: sig(7) }] })).toEqual({ recorded: [], signaturesRecorded: 0 }); // not the holder
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: claim.claimId, signatures: [{ index: 0, signature: sig(1) }, { index: 1, signature: sig(2) }, { index: 2, signature: sig(3) }] })).toEqual({ recorded: [0, 1], signaturesRecorded: 2 });
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: claim.claimId, signatures: [{ index: 0, signature: sig(9) }] })).toEqual({ recorded: [], signaturesRecorded: 2 }); // never replaced
        const entries = await store.readDtbsr({ transactionId: "tx1", fromIndex: 0, limit: 10 });
        expect(entries.map((e) => e.signature && [...e.signature])).toEqual([[1, 1, 1], [2, 2, 2], undefined, undefined]);
        expect(await store.getTransaction("tx1")).toMatchObject({ signaturesCreated: 2, signaturesRecorded: 2 });
        await expect(store.recordSignatures({ transactionId: "tx1", claimId: claim.claimId, signatures: [] })).rejects.toBeInstanceOf(RangeError);
      });

      it("issue 17: an unrecorded claim is taken over once its lease expired, or at once by a later boot of its node; never counted twice; only the current claim records", async () => {
        const h = Array.from({ length: 6 }, (_, i) => dtbsrHash(i));
        await authorized("tx1", h);
        const sig = new Uint8Array([1, 2, 3]);
        const live = holder({ nodeId: "node-a", bootId: "boot-1" });
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 0, count: 3, now: at(3), claim: live })).toMatchObject({ ok: true, indices: [0, 1, 2], reclaimed: 0, signaturesCreated: 3 });
        // A live lease: another node and the same boot claim nothing of it.
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 0, count: 3, now: at(3), claim: holder({ nodeId: "node-b" }) })).toMatchObject({ ok: true, indices: [], reclaimed: 0, signaturesCreated: 3 });
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 0, count: 3, now: at(3), claim: holder({ bootId: "boot-1" }) })).toMatchObject({ ok: true, indices: [] });
        // The node restarted (boot-2): its earlier boot's claims are free at once; counted once.
        const restarted = holder({ bootId: "boot-2" });
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 0, count: 3, now: at(3), claim: restarted })).toMatchObject({ ok: true, indices: [0, 1, 2], reclaimed: 3, unrecordedBefore: 3, signaturesCreated: 3 });
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: live.claimId, signatures: [{ index: 0, signature: sig }] })).toMatchObject({ recorded: [] }); // the old claim records nothing
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: restarted.claimId, signatures: [{ index: 0, signature: sig }] })).toEqual({ recorded: [0], signaturesRecorded: 1 });
        // An expired lease is free for any node; a recorded entry never is.
        const short = holder({ nodeId: "node-c", leaseMs: 1 });
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 3, count: 3, now: at(3), claim: short })).toMatchObject({ ok: true, indices: [3, 4, 5], signaturesCreated: 6, state: "COMPLETED" });
        await new Promise((r) => setTimeout(r, 20));
        const other = holder({ nodeId: "node-d" });
        // COMPLETED: only take-overs are claimed (entries 1 and 2 are still held by the live boot-2 claim).
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 0, count: 6, now: at(3), claim: other })).toMatchObject({ ok: true, indices: [3, 4, 5], reclaimed: 3, unrecordedBefore: 5, signaturesCreated: 6, signaturesRecorded: 1, state: "COMPLETED" });
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: short.claimId, signatures: [{ index: 3, signature: sig }] })).toMatchObject({ recorded: [] });
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: other.claimId, signatures: [3, 4, 5].map((index) => ({ index, signature: sig })) })).toEqual({ recorded: [3, 4, 5], signaturesRecorded: 4 });
        expect(await store.getTransaction("tx1")).toMatchObject({ signaturesCreated: 6, signaturesRecorded: 4, state: "COMPLETED" });
      });

      it("issue 17 item 2: consuming the SAD token and claiming are one atomic step: of 64 concurrent presentations exactly one consumes and claims", async () => {
        const h = Array.from({ length: 4 }, (_, i) => dtbsrHash(i));
        await authorized("tx1", h);
        const token = (hash: string) => store.issueSadToken({ hash, transactionId: "tx1", generation: 0, previousHash: undefined, issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub });
        await token("t-range");
        // A refused claim leaves the token unconsumed (the operation fails as a whole).
        expect(await store.markRangeSigned({ transactionId: "tx1", fromIndex: 3, count: 2, now: at(3), claim: holder(), consumeToken: "t-range" })).toMatchObject({ ok: false, reason: "HASH_NOT_AUTHORIZED" });
        expect((await store.findSadToken("t-range"))?.consumedAt).toBeUndefined();
        const ranges = await race(racers, () => store.markRangeSigned({ transactionId: "tx1", fromIndex: 0, count: 2, now: at(3), claim: holder(), consumeToken: "t-range" }));
        expect(ranges.filter((r) => r.ok)).toHaveLength(1);
        expect(ranges.filter((r) => !r.ok && r.reason === "SAD_TOKEN")).toHaveLength(racers - 1);
        await token("t-hash");
        const hashes = await race(racers, () => store.markHashesSigned({ transactionId: "tx1", hashes: [h[2]!], now: at(3), claim: holder(), consumeToken: "t-hash" }));
        expect(hashes.filter((r) => r.ok)).toHaveLength(1);
        expect(hashes.filter((r) => !r.ok && r.reason === "SAD_TOKEN")).toHaveLength(racers - 1);
        expect(await store.getTransaction("tx1")).toMatchObject({ signaturesCreated: 3 });
      });

      it("issue 17: a SignHash retried with its consumed token takes over exactly its own claim, only once the claim is free and unrecorded, with the same hashes", async () => {
        const h = Array.from({ length: 4 }, (_, i) => dtbsrHash(i));
        await authorized("tx1", h);
        await store.issueSadToken({ hash: "t1", transactionId: "tx1", generation: 0, previousHash: undefined, issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!, h[0]!], now: at(3), claim: holder(), retryToken: "t1" })).toEqual({ ok: false, reason: "SAD_TOKEN" }); // not consumed yet
        const first = holder({ bootId: "boot-1" });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!, h[0]!], now: at(3), claim: first, consumeToken: "t1" })).toMatchObject({ ok: true, indices: [1, 0], signaturesCreated: 2 });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!, h[0]!], now: at(3), claim: holder({ nodeId: "node-b" }), retryToken: "t1" })).toEqual({ ok: false, reason: "SAD_TOKEN" }); // lease live
        const retry = holder({ bootId: "boot-2" }); // the node restarted
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!, h[2]!], now: at(3), claim: retry, retryToken: "t1" })).toEqual({ ok: false, reason: "SAD_TOKEN" }); // other hashes
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!, h[1]!], now: at(3), claim: retry, retryToken: "t1" })).toMatchObject({ ok: true, indices: [0, 1], hashes: [h[0], h[1]], reclaimed: 2, signaturesCreated: 2 });
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: first.claimId, signatures: [{ index: 0, signature: new Uint8Array([1]) }] })).toMatchObject({ recorded: [] });
        expect(await store.recordSignatures({ transactionId: "tx1", claimId: retry.claimId, signatures: [0, 1].map((index) => ({ index, signature: new Uint8Array([2]) })) })).toMatchObject({ recorded: [0, 1] });
        // Recorded: a retry gets the recorded signatures (the same ones), never a new claim, and only once no live call holds
        // the claim (another node while the lease runs: refused); other hashes are still refused.
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!, h[0]!], now: at(3), claim: holder({ nodeId: "node-b" }), retryToken: "t1" })).toEqual({ ok: false, reason: "SAD_TOKEN" });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[1]!, h[0]!], now: at(3), claim: holder({ bootId: "boot-3" }), retryToken: "t1" })).toMatchObject({ ok: true, indices: [1, 0], reclaimed: 0, signatures: [new Uint8Array([2]), new Uint8Array([2])] });
        expect(await store.markHashesSigned({ transactionId: "tx1", hashes: [h[0]!], now: at(3), claim: holder({ bootId: "boot-3" }), retryToken: "t1" })).toEqual({ ok: false, reason: "SAD_TOKEN" });
        expect(await store.getTransaction("tx1")).toMatchObject({ signaturesCreated: 2, signaturesRecorded: 2 });
      });
    });

    describe("one-time objects", () => {
      const challenge = (hash: string, expiresInSeconds = 60) => ({
        hash, purpose: "transaction" as const, subject: "tx1", createdAt: at(0), expiresAt: at(expiresInSeconds),
      });

      it("a subject holds at most maxOpen unconsumed, unexpired challenges of a purpose, also under 64 concurrent issues", async () => {
        const limit = { maxOpen: 3, now: at(1) };
        const issue = (hash: string, purpose: "transaction" | "admin-nonce" = "transaction", expiresInSeconds = 60) => store.issueChallenge({ ...challenge(hash, expiresInSeconds), purpose }, limit);
        expect([await issue("o1"), await issue("o2"), await issue("o3"), await issue("o4")]).toEqual([true, true, true, false]);
        expect(await store.consumeChallenge({ hash: "o4", purpose: "transaction", now: at(1) })).toBeUndefined(); // the refused one was not stored
        expect(await issue("n1", "admin-nonce")).toBe(true); // another purpose has its own count
        await store.consumeChallenge({ hash: "o1", purpose: "transaction", now: at(1) });
        expect(await issue("o5")).toBe(true); // a used one no longer counts
        expect(await store.issueChallenge({ ...challenge("o6"), subject: "tx2" }, limit)).toBe(true); // nor another subject's
        expect(await store.issueChallenge(challenge("o7"), { maxOpen: 3, now: at(3600) })).toBe(true); // expired ones do not count
        const results = await race(racers, (i) => store.issueChallenge({ ...challenge(`r${i}`), subject: "racer" }, { maxOpen: 10, now: at(1) }));
        expect(results.filter(Boolean)).toHaveLength(10);
      });

      it("T-2.2.1.3: a challenge is consumed once, only for its purpose and before it expires", async () => {
        await store.issueChallenge(challenge("c1"));
        await expect(store.issueChallenge(challenge("c1"))).rejects.toBeInstanceOf(RecordExistsError);
        expect(await store.consumeChallenge({ hash: "c1", purpose: "admin-nonce", now: at(1) })).toBeUndefined();
        expect(await store.consumeChallenge({ hash: "c1", purpose: "transaction", now: at(1) })).toEqual({ ...challenge("c1"), consumedAt: at(1) });
        expect(await store.consumeChallenge({ hash: "c1", purpose: "transaction", now: at(2) })).toBeUndefined();
        await store.issueChallenge(challenge("c2", 10));
        expect(await store.consumeChallenge({ hash: "c2", purpose: "transaction", now: at(10) })).toBeUndefined();
        expect(await store.consumeChallenge({ hash: "unknown", purpose: "transaction", now: at(1) })).toBeUndefined();
      });

      it("T-2.2.1.3: a SAD token is consumed once; a replay is recognisable and revocation stops the chain", async () => {
        const token = (hash: string, generation: number, previousHash?: string) => ({
          hash, transactionId: "tx1", generation, previousHash, issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub,
        });
        await store.issueSadToken(token("t0", 0));
        expect(await store.consumeSadToken({ hash: "t0", now: at(1) })).toEqual({ ...token("t0", 0), minIndex: 0, consumedAt: at(1), revokedAt: undefined });
        expect(await store.consumeSadToken({ hash: "t0", now: at(2) })).toBeUndefined();
        expect((await store.findSadToken("t0"))?.consumedAt).toEqual(at(1)); // the replay is seen as one
        await store.issueSadToken({ ...token("t1", 1, "t0"), minIndex: 300 }); // a stream's token keeps its start index
        expect((await store.findSadToken("t1"))?.minIndex).toBe(300);
        // a token is rotated at most once
        await expect(store.issueSadToken(token("t1-bis", 1, "t0"))).rejects.toMatchObject({ code: "ALREADY_EXISTS", field: "previousHash" });
        await expect(store.issueSadToken(token("t1", 1))).rejects.toMatchObject({ code: "ALREADY_EXISTS", field: "hash" });
        expect(await store.revokeSadTokens({ transactionId: "tx1", now: at(3) })).toBe(1);
        expect(await store.consumeSadToken({ hash: "t1", now: at(4) })).toBeUndefined();
        expect(await store.findSadToken("t1")).toMatchObject({ revokedAt: at(3), consumedAt: undefined, previousHash: "t0", generation: 1 });
        await store.issueSadToken({ ...token("t9", 0), transactionId: "tx9", expiresAt: at(5) });
        expect(await store.consumeSadToken({ hash: "t9", now: at(5) })).toBeUndefined(); // expired
      });

      it("T-2.2.1.3: 64 concurrent rotations of one SAD token: exactly one successor is stored", async () => {
        const results = await race(racers, (i) =>
          store.issueSadToken({ hash: `next-${i}`, transactionId: "tx1", generation: 1, previousHash: "t0", issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub }).then(() => "ok", (e: unknown) => e),
        );
        expect(results.filter((r) => r === "ok")).toHaveLength(1);
        for (const r of results) if (r !== "ok") expect(r).toBeInstanceOf(RecordExistsError);
      });

      it("R-3.1.1.2: an activation code is accepted once; wrong codes use up attempts; expired, revoked or exhausted codes are unavailable", async () => {
        const code = (id: string, attemptsLeft = 3, expiresInSeconds = 600) => ({
          id, signerId: "s1", codeHash: `hash-${id}`, attemptsLeft, createdAt: at(0), expiresAt: at(expiresInSeconds),
        });
        await store.issueActivationCode(code("a1"));
        await expect(store.issueActivationCode(code("a1"))).rejects.toBeInstanceOf(RecordExistsError);
        expect(await store.attemptActivationCode({ id: "a1", codeHash: "wrong", now: at(1) })).toEqual({ outcome: "rejected", attemptsLeft: 2 });
        expect(await store.attemptActivationCode({ id: "a1", codeHash: "hash-a1", now: at(2) })).toEqual({
          outcome: "accepted",
          code: { ...code("a1", 2), consumedAt: at(2), revokedAt: undefined },
        });
        expect(await store.attemptActivationCode({ id: "a1", codeHash: "hash-a1", now: at(3) })).toEqual({ outcome: "unavailable" });
        expect(await store.attemptActivationCode({ id: "a1", codeHash: "wrong", now: at(3) })).toEqual({ outcome: "unavailable" }); // no attempt used

        await store.issueActivationCode(code("a2", 2));
        expect(await store.attemptActivationCode({ id: "a2", codeHash: "x", now: at(1) })).toEqual({ outcome: "rejected", attemptsLeft: 1 });
        expect(await store.attemptActivationCode({ id: "a2", codeHash: "y", now: at(1) })).toEqual({ outcome: "rejected", attemptsLeft: 0 });
        expect(await store.attemptActivationCode({ id: "a2", codeHash: "hash-a2", now: at(1) })).toEqual({ outcome: "unavailable" }); // exhausted

        await store.issueActivationCode(code("a3", 3, 10));
        expect(await store.attemptActivationCode({ id: "a3", codeHash: "hash-a3", now: at(10) })).toEqual({ outcome: "unavailable" }); // expired
        await store.issueActivationCode(code("a4"));
        expect(await store.revokeActivationCodes({ signerId: "s1", now: at(1) })).toBe(3); // every unconsumed code: a2, a3, a4
        expect(await store.attemptActivationCode({ id: "a4", codeHash: "hash-a4", now: at(2) })).toEqual({ outcome: "unavailable" });
        expect(await store.attemptActivationCode({ id: "unknown", codeHash: "x", now: at(1) })).toEqual({ outcome: "unavailable" });
      });

      it("T-2.2.1.3: a jti is used once until it expires", async () => {
        expect(await store.useJti({ key: "iss|jti-1", expiresAt: at(60), now: at(0) })).toBe(true);
        expect(await store.useJti({ key: "iss|jti-1", expiresAt: at(60), now: at(59) })).toBe(false);
        expect(await store.useJti({ key: "iss|jti-2", expiresAt: at(60), now: at(1) })).toBe(true);
        expect(await store.useJti({ key: "iss|jti-1", expiresAt: at(120), now: at(60) })).toBe(true); // the old use expired
        expect(await store.useJti({ key: "iss|jti-1", expiresAt: at(120), now: at(61) })).toBe(false);
      });

      it("purges expired one-time objects and transactions with their DTBS/R lists, and keeps the rest", async () => {
        await store.issueChallenge(challenge("old", 10));
        await store.issueChallenge(challenge("new", 100));
        await store.issueSadToken({ hash: "t-old", transactionId: "tx-old", generation: 0, previousHash: undefined, issuedAt: at(0), expiresAt: at(10), mac: tokenMacStub });
        await store.issueActivationCode({ id: "a-old", signerId: "s1", codeHash: "h", attemptsLeft: 3, createdAt: at(0), expiresAt: at(10) });
        await store.useJti({ key: "j-old", expiresAt: at(10), now: at(0) });
        await store.useJti({ key: "j-new", expiresAt: at(100), now: at(0) });
        await store.createTransaction(newTransaction("tx-old", 1, 10));
        await store.appendDtbsr({ transactionId: "tx-old", startIndex: 0, hashes: [dtbsrHash(0), dtbsrHash(1)], macs: macsFor([dtbsrHash(0), dtbsrHash(1)]), now: at(1) });
        await store.createTransaction(newTransaction("tx-new", 1, 100));
        await store.appendDtbsr({ transactionId: "tx-new", startIndex: 0, hashes: [dtbsrHash(0)], macs: macsFor([dtbsrHash(0)]), now: at(1) });

        expect(await store.purgeExpired(at(10))).toEqual({ challenges: 1, sadTokens: 1, activationCodes: 1, jtis: 1, transactions: 1 });
        expect(await store.getTransaction("tx-old")).toBeUndefined();
        expect(await store.readDtbsr({ transactionId: "tx-old", fromIndex: 0, limit: 10 })).toEqual([]);
        expect(await store.readDtbsr({ transactionId: "tx-new", fromIndex: 0, limit: 10 })).toHaveLength(1);
        expect(await store.findSadToken("t-old")).toBeUndefined();
        expect(await store.consumeChallenge({ hash: "new", purpose: "transaction", now: at(11) })).toBeDefined();
        expect(await store.useJti({ key: "j-new", expiresAt: at(100), now: at(11) })).toBe(false);
        expect(await store.purgeExpired(at(10))).toEqual({ challenges: 0, sadTokens: 0, activationCodes: 0, jtis: 0, transactions: 0 });
      });

      describe(`T-2.2.1.3 replay under concurrency: ${racers} consumers behind a start barrier, exactly one wins, ${raceRounds} rounds`, () => {
        it("challenge", async () => {
          for (let round = 0; round < raceRounds; round++) {
            await store.issueChallenge(challenge(`race-${round}`));
            const results = await race(racers, () => store.consumeChallenge({ hash: `race-${round}`, purpose: "transaction", now: at(1) }));
            expect(results.filter((r) => r !== undefined), `round ${round}`).toHaveLength(1);
          }
        });

        it("SAD token", async () => {
          for (let round = 0; round < raceRounds; round++) {
            const hash = `sad-${round}`;
            await store.issueSadToken({ hash, transactionId: "tx1", generation: 0, previousHash: undefined, issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub });
            const results = await race(racers, () => store.consumeSadToken({ hash, now: at(1) }));
            expect(results.filter((r) => r !== undefined), `round ${round}`).toHaveLength(1);
          }
        });

        it("activation code (the right code presented 64 times)", async () => {
          for (let round = 0; round < raceRounds; round++) {
            const id = `act-${round}`;
            await store.issueActivationCode({ id, signerId: "s1", codeHash: "right", attemptsLeft: 5, createdAt: at(0), expiresAt: at(600) });
            const results = await race(racers, () => store.attemptActivationCode({ id, codeHash: "right", now: at(1) }));
            expect(results.filter((r) => r.outcome === "accepted"), `round ${round}`).toHaveLength(1);
            expect(results.filter((r) => r.outcome === "rejected")).toHaveLength(0);
          }
        });

        it("activation code attempts (64 wrong codes against 5 attempts: each count reported once, then dead)", async () => {
          for (let round = 0; round < raceRounds; round++) {
            const id = `guess-${round}`;
            await store.issueActivationCode({ id, signerId: "s1", codeHash: "right", attemptsLeft: 5, createdAt: at(0), expiresAt: at(600) });
            const results = await race(racers, (i) => store.attemptActivationCode({ id, codeHash: `wrong-${i}`, now: at(1) }));
            const left = results.flatMap((r) => (r.outcome === "rejected" ? [r.attemptsLeft] : [])).sort();
            expect(left, `round ${round}`).toEqual([0, 1, 2, 3, 4]);
            expect(await store.attemptActivationCode({ id, codeHash: "right", now: at(2) })).toEqual({ outcome: "unavailable" });
          }
        });

        it("jti", async () => {
          for (let round = 0; round < raceRounds; round++) {
            const results = await race(racers, () => store.useJti({ key: `jti-${round}`, expiresAt: at(60), now: at(1) }));
            expect(results.filter(Boolean), `round ${round}`).toHaveLength(1);
          }
        });
      });

      it(`T-2.2.1.3 across SAM nodes: ${racers} consumers spread over 4 connections to one database, exactly one wins per object`, async () => {
        const connections = [store];
        for (let i = 0; i < 3; i++) connections.push(await factory.connectAgain(store));
        extra.push(...connections.slice(1));
        const via = (i: number): Store => connections[i % connections.length]!;
        for (let round = 0; round < raceRounds; round++) {
          await via(round).issueChallenge(challenge(`multi-${round}`));
          await via(round + 1).issueSadToken({ hash: `multi-sad-${round}`, transactionId: "tx1", generation: 0, previousHash: undefined, issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub });
          await via(round + 2).issueActivationCode({ id: `multi-act-${round}`, signerId: "s1", codeHash: "right", attemptsLeft: 3, createdAt: at(0), expiresAt: at(600) });
          const [challenges, tokens, codes, jtis] = await Promise.all([
            race(racers, (i) => via(i).consumeChallenge({ hash: `multi-${round}`, purpose: "transaction", now: at(1) })),
            race(racers, (i) => via(i).consumeSadToken({ hash: `multi-sad-${round}`, now: at(1) })),
            race(racers, (i) => via(i).attemptActivationCode({ id: `multi-act-${round}`, codeHash: "right", now: at(1) })),
            race(racers, (i) => via(i).useJti({ key: `multi-jti-${round}`, expiresAt: at(60), now: at(1) })),
          ]);
          expect(challenges.filter((r) => r !== undefined), `round ${round}`).toHaveLength(1);
          expect(tokens.filter((r) => r !== undefined), `round ${round}`).toHaveLength(1);
          expect(codes.filter((r) => r.outcome === "accepted"), `round ${round}`).toHaveLength(1);
          expect(jtis.filter(Boolean), `round ${round}`).toHaveLength(1);
        }
      });
    });

    describe("attempt reservations (T-2.1.2.2: a factor check is reserved before it runs)", () => {
      /** Every reservation is a committed write (unlike a lost consume), so fewer rounds than the consumer races. */
      const rounds = 10;
      const reserve = (subject: string, id: string, seconds = 1, leaseSeconds = 60, via: Store = store) =>
        via.reserveAttempt({ subject, id, now: at(seconds), expiresAt: at(seconds + leaseSeconds) });

      it("T-2.1.2.2: counts the subject's unreleased reservations, this one included (expired ones too); releases each once; other subjects apart", async () => {
        expect([await reserve("signer:s1", "a"), await reserve("signer:s1", "b"), await reserve("signer:s2", "a")]).toEqual([1, 2, 1]);
        expect(await store.releaseAttempt({ subject: "signer:s1", id: "a" })).toBe(true);
        expect(await store.releaseAttempt({ subject: "signer:s1", id: "a" })).toBe(false); // once
        expect(await store.releaseAttempt({ subject: "signer:s2", id: "b" })).toBe(false); // another subject's id
        expect(await store.releaseAttempt({ subject: "signer:s9", id: "a" })).toBe(false); // unknown subject
        // A reservation whose lease ended long ago (its node crashed mid-check) still counts: fail closed.
        expect(await reserve("signer:s1", "c", 3600)).toBe(2);
        expect(await store.releaseAttempt({ subject: "signer:s1", id: "b" })).toBe(true);
        expect(await store.releaseAttempt({ subject: "signer:s1", id: "c" })).toBe(true);
        expect(await reserve("signer:s1", "a")).toBe(1); // a released id can be reserved again
      });

      it("T-2.1.2.2: releaseExpiredAttempts removes only the subject's reservations expired at or before now, and purgeExpired never does", async () => {
        await reserve("txn:t1", "old", 0, 10); // expires at 10
        await reserve("txn:t1", "edge", 0, 20); // expires at 20
        await reserve("txn:t1", "live", 0, 60);
        await reserve("txn:t2", "old", 0, 10);
        expect(await store.purgeExpired(at(100))).toMatchObject({ challenges: 0, jtis: 0 });
        expect(await reserve("txn:t1", "probe", 100)).toBe(4); // nothing purged: expired ones still count
        expect(await store.releaseAttempt({ subject: "txn:t1", id: "probe" })).toBe(true);
        expect(await store.releaseExpiredAttempts({ subject: "txn:t1", now: at(20) })).toBe(2);
        expect(await store.releaseExpiredAttempts({ subject: "txn:t1", now: at(20) })).toBe(0);
        expect(await store.releaseAttempt({ subject: "txn:t1", id: "live" })).toBe(true);
        expect(await store.releaseAttempt({ subject: "txn:t1", id: "old" })).toBe(false);
        expect(await reserve("txn:t2", "probe", 100)).toBe(2); // the other subject kept its expired one
        expect(await store.releaseExpiredAttempts({ subject: "txn:none", now: at(100) })).toBe(0);
      });

      it("refuses a second reservation of an id for the same subject (ALREADY_EXISTS, field id) and malformed ones (RangeError), changing nothing", async () => {
        expect(await reserve("signer:s1", "a")).toBe(1);
        await expect(reserve("signer:s1", "a")).rejects.toMatchObject({ code: "ALREADY_EXISTS", field: "id" });
        await expect(store.reserveAttempt({ subject: "", id: "x", now: at(1), expiresAt: at(2) })).rejects.toBeInstanceOf(RangeError);
        await expect(store.reserveAttempt({ subject: "signer:s1", id: "", now: at(1), expiresAt: at(2) })).rejects.toBeInstanceOf(RangeError);
        await expect(store.reserveAttempt({ subject: "signer:s1", id: "x", now: at(2), expiresAt: at(2) })).rejects.toBeInstanceOf(RangeError);
        expect(await reserve("signer:s1", "b")).toBe(2); // only "a" was stored
      });

      it(`T-2.1.2.2: ${racers} concurrent reservations of one subject behind a start barrier: each count from 1 to ${racers} is seen exactly once, ${rounds} rounds`, async () => {
        for (let round = 0; round < rounds; round++) {
          const counts = await race(racers, (i) => reserve(`signer:race-${round}`, `r${i}`));
          expect(counts.sort((a, b) => a - b), `round ${round}`).toEqual(Array.from({ length: racers }, (_, i) => i + 1));
        }
      });

      it(`T-2.1.2.2: a budget of 5 under ${racers} concurrent checkers (reserve, give back when over budget): never more than 5 held, and every check that kept its reservation is counted`, async () => {
        for (let round = 0; round < rounds; round++) {
          const subject = `signer:budget-${round}`;
          const kept = await race(racers, async (i) => {
            const held = await reserve(subject, `r${i}`);
            if (held <= 5) return true;
            expect(await store.releaseAttempt({ subject, id: `r${i}` })).toBe(true); // refused without a check
            return false;
          });
          const checks = kept.filter(Boolean).length;
          expect(checks, `round ${round}`).toBeGreaterThanOrEqual(1);
          expect(checks, `round ${round}`).toBeLessThanOrEqual(5);
          expect(await reserve(subject, "after")).toBe(checks + 1); // the checks still hold theirs
        }
      });

      it(`T-2.1.2.2 across SAM nodes: ${racers} reservations of one subject spread over 4 connections: each count seen exactly once`, async () => {
        const connections = [store];
        for (let i = 0; i < 3; i++) connections.push(await factory.connectAgain(store));
        extra.push(...connections.slice(1));
        for (let round = 0; round < rounds; round++) {
          const counts = await race(racers, (i) => reserve(`signer:nodes-${round}`, `r${i}`, 1, 60, connections[i % connections.length]!));
          expect(counts.sort((a, b) => a - b), `round ${round}`).toEqual(Array.from({ length: racers }, (_, i) => i + 1));
          const released = await race(racers, (i) => connections[(i + 1) % connections.length]!.releaseAttempt({ subject: `signer:nodes-${round}`, id: `r${i}` }));
          expect(released.every(Boolean), `round ${round}`).toBe(true);
        }
      });

      it("fails closed after the connection is gone (STORE_FAILURE)", async () => {
        await store.close();
        for (const call of [() => reserve("signer:s1", "a"), () => store.releaseAttempt({ subject: "signer:s1", id: "a" }), () => store.releaseExpiredAttempts({ subject: "signer:s1", now: at(1) })]) {
          expect(await rejection(call())).toBeInstanceOf(StoreFailureError);
        }
      });
    });

    describe("audit records", () => {
      const hashOf = (nodeId: string, sequence: number) => new Uint8Array(createHash("sha256").update(`${nodeId}/${sequence}`).digest());
      const record = (nodeId: string, sequence: number): AuditRecord => ({
        nodeId, sequence, time: at(sequence), event: "signature.created", body: JSON.stringify({ sequence }),
        prevHash: sequence === 1 ? new Uint8Array(32) : hashOf(nodeId, sequence - 1), hash: hashOf(nodeId, sequence),
      });

      it("R-3.2.2.4: appends per node chain and reads by range and latest", async () => {
        for (let s = 1; s <= 12; s++) await store.appendAuditRecord(record("node-b", s));
        for (let s = 1; s <= 3; s++) await store.appendAuditRecord(record("node-a", s));
        expect(await store.readAuditRecords({ nodeId: "node-b", fromSequence: 5, limit: 4 })).toEqual([5, 6, 7, 8].map((s) => record("node-b", s)));
        expect(await store.latestAuditRecord("node-b")).toEqual(record("node-b", 12));
        expect(await store.latestAuditRecord("node-a")).toEqual(record("node-a", 3));
        expect(await store.latestAuditRecord("node-z")).toBeUndefined();
        expect(await store.listAuditNodes()).toEqual(["node-a", "node-b"]);
      });

      it("issue 14: reads one node's records of one event in sequence order, from a sequence, page by page", async () => {
        const versioned = (nodeId: string, s: number) => ({ ...record(nodeId, s), event: s % 3 === 0 ? "record.versioned" : "signature.created" });
        for (let s = 1; s <= 12; s++) await store.appendAuditRecord(versioned("node-b", s));
        for (let s = 1; s <= 6; s++) await store.appendAuditRecord(versioned("node-a", s));
        const read = (nodeId: string, fromSequence: number, limit: number) =>
          store.readAuditRecordsByEvent({ nodeId, event: "record.versioned", fromSequence, limit });
        expect(await read("node-b", 1, 100)).toEqual([3, 6, 9, 12].map((s) => versioned("node-b", s)));
        expect((await read("node-b", 4, 2)).map((r) => r.sequence)).toEqual([6, 9]);
        expect((await read("node-b", 10, 100)).map((r) => r.sequence)).toEqual([12]);
        expect((await read("node-a", 1, 100)).map((r) => r.sequence)).toEqual([3, 6]);
        expect(await read("node-b", 13, 100)).toEqual([]);
        expect(await read("node-z", 1, 100)).toEqual([]);
        expect(await store.readAuditRecordsByEvent({ nodeId: "node-b", event: "sam.started", fromSequence: 1, limit: 10 })).toEqual([]);
        await expect(read("node-b", 1, maxPageSize + 1)).rejects.toBeInstanceOf(RangeError);
      });

      it("R-3.2.2.4: refuses a taken sequence, a gap and a prevHash that does not link (AUDIT_FAILURE)", async () => {
        await store.appendAuditRecord(record("n", 1));
        await store.appendAuditRecord(record("n", 2));
        for (const bad of [record("n", 2), record("n", 4), { ...record("n", 3), prevHash: hashOf("n", 1) }, record("other", 2)]) {
          const err = await rejection(store.appendAuditRecord(bad));
          expect(err).toBeInstanceOf(AuditChainError);
          expect(err).toMatchObject({ code: "AUDIT_FAILURE" });
        }
        expect((await store.readAuditRecords({ nodeId: "n", fromSequence: 1, limit: 10 })).map((r) => r.sequence)).toEqual([1, 2]);
        expect(await store.listAuditNodes()).toEqual(["n"]);
      });

      it("R-3.2.2.4: a batch of records is appended all or none: a broken link anywhere writes nothing", async () => {
        await store.appendAuditRecord(record("n", 1));
        await store.appendAuditRecords([record("n", 2), record("n", 3), record("n", 4)]);
        for (const bad of [
          [record("n", 5), record("n", 7)], // a gap inside the batch
          [record("n", 5), { ...record("n", 6), prevHash: hashOf("n", 4) }], // a link that skips
          [record("n", 5), record("other", 6)], // two nodes
          [record("n", 4), record("n", 5)], // a taken sequence
        ]) {
          const err = await rejection(store.appendAuditRecords(bad));
          expect(err).toBeInstanceOf(AuditChainError);
        }
        expect((await store.readAuditRecords({ nodeId: "n", fromSequence: 1, limit: 10 })).map((r) => r.sequence)).toEqual([1, 2, 3, 4]);
        await expect(store.appendAuditRecords([])).rejects.toBeInstanceOf(RangeError);
      });

      it("R-3.2.2.4: 64 concurrent writers of the same sequence: exactly one record is appended", async () => {
        await store.appendAuditRecord(record("n", 1));
        const results = await race(racers, (i) =>
          store.appendAuditRecord({ ...record("n", 2), body: JSON.stringify({ writer: i }) }).then(() => "ok", (e: unknown) => e),
        );
        expect(results.filter((r) => r === "ok")).toHaveLength(1);
        for (const r of results) if (r !== "ok") expect(r).toBeInstanceOf(AuditChainError);
      });

      it("R-3.2.2.4: signed checkpoints are appended in increasing order for existing records and read back", async () => {
        for (let s = 1; s <= 5; s++) await store.appendAuditRecord(record("n", s));
        const checkpoint = (sequence: number) => ({ nodeId: "n", sequence, time: at(sequence), body: JSON.stringify({ head: sequence }), signature: seal(`cp${sequence}`) });
        await store.appendAuditCheckpoint(checkpoint(2));
        await store.appendAuditCheckpoint(checkpoint(5));
        for (const bad of [checkpoint(5), checkpoint(3), checkpoint(6)]) {
          await expect(store.appendAuditCheckpoint(bad)).rejects.toBeInstanceOf(AuditChainError);
        }
        expect(await store.latestAuditCheckpoint("n")).toEqual(checkpoint(5));
        expect(await store.readAuditCheckpoints({ nodeId: "n", fromSequence: 1, limit: 10 })).toEqual([checkpoint(2), checkpoint(5)]);
        expect(await store.latestAuditCheckpoint("other")).toBeUndefined();
      });

      it("offers no way to change or delete audit history", () => {
        const methods = Object.getOwnPropertyNames(Object.getPrototypeOf(store));
        expect(methods.filter((m) => /audit|checkpoint/i.test(m) && /update|delete|remove|purge|set|replace/i.test(m))).toEqual([]);
      });
    });

    describe("pending approvals (dual control, R-3.2.1.6)", () => {
      it("R-3.2.1.6 dual control: stores a pending approval and returns every field exactly (get, find, list)", async () => {
        const p = { ...pendingApproval("pa-1", { request: "x".repeat(100_000) }) };
        await store.createPendingApproval(p);
        const expected = stored(p);
        expect(await store.getPendingApproval("pa-1")).toEqual(expected);
        expect(Buffer.from((await store.getPendingApproval("pa-1"))!.request, "base64url")).toEqual(Buffer.from(requestBytes("x".repeat(100_000))));
        const key = { method: p.method, requestDigest: p.requestDigest, requestedBy: p.requestedBy };
        expect(await store.findPendingApproval({ ...key, now: at(1) })).toEqual(expected);
        expect(await store.findPendingApproval({ ...key, now: at(600) })).toBeUndefined(); // expired: not live
        expect(await store.findPendingApproval({ ...key, method: "/inkan.admin.v1.PolicyService/UpdateSecurityPolicy", now: at(1) })).toBeUndefined();
        expect(await store.findPendingApproval({ ...key, requestDigest: digestOf(requestBytes("other")), now: at(1) })).toBeUndefined();
        expect(await store.findPendingApproval({ ...key, requestedBy: "so-2", now: at(1) })).toBeUndefined();
        expect(await store.listPendingApprovals({ limit: 10, now: at(1) })).toEqual({ items: [expected], next: undefined });
        expect(await store.getPendingApproval("nobody")).toBeUndefined();
      });

      it("R-3.2.1.6 dual control: the same request of the same requester is pending once (ALREADY_EXISTS, field requestDigest) and found again; ids are unique", async () => {
        const first = pendingApproval("pa-1", { request: "destroy cred-1" });
        await store.createPendingApproval(first);
        const again = rejection(store.createPendingApproval(pendingApproval("pa-2", { request: "destroy cred-1" })));
        expect(await again).toBeInstanceOf(RecordExistsError);
        expect(await again).toMatchObject({ code: "ALREADY_EXISTS", field: "requestDigest" });
        expect(await store.getPendingApproval("pa-2")).toBeUndefined();
        // Sending it again while pending finds the first.
        expect(await store.findPendingApproval({ method: first.method, requestDigest: first.requestDigest, requestedBy: "so-1", now: at(5) })).toEqual(stored(first));

        const sameId = await rejection(store.createPendingApproval(pendingApproval("pa-1", { request: "something else" })));
        expect(sameId).toMatchObject({ code: "ALREADY_EXISTS", field: "id" });
        expect(await store.getPendingApproval("pa-1")).toEqual(stored(first));

        // Another requester, or another method, is another pending request.
        await store.createPendingApproval(pendingApproval("pa-3", { request: "destroy cred-1", requestedBy: "so-2" }));
        await store.createPendingApproval(pendingApproval("pa-4", { request: "destroy cred-1", method: "/inkan.admin.v1.PolicyService/UpdateSecurityPolicy" }));

        // Once decided, the same request may be made again.
        expect(await store.decidePendingApproval(decision("pa-1", "REJECTED", "so-2", 10))).toMatchObject({ state: "REJECTED" });
        const retry = pendingApproval("pa-5", { request: "destroy cred-1" });
        await store.createPendingApproval(retry);
        expect(await store.findPendingApproval({ method: retry.method, requestDigest: retry.requestDigest, requestedBy: "so-1", now: at(11) })).toEqual(stored(retry));
      });

      it(`R-3.2.1.6 dual control: ${racers} concurrent identical requests: exactly one is pending, every other is refused as a duplicate`, async () => {
        const results = await race(racers, (i) =>
          store.createPendingApproval(pendingApproval(`dup-${i}`, { request: "destroy cred-raced" })).then(() => "ok", (e: unknown) => e),
        );
        expect(results.filter((r) => r === "ok")).toHaveLength(1);
        for (const r of results) if (r !== "ok") expect(r).toMatchObject({ code: "ALREADY_EXISTS", field: "requestDigest" });
        const pending = await store.listPendingApprovals({ state: "PENDING", limit: 100, now: at(1) });
        expect(pending.items.map((p) => p.id)).toEqual([`dup-${results.indexOf("ok")}`]);
      });

      it("R-3.2.1.6 dual control: an expired request cannot be approved or rejected; it can be marked EXPIRED, only once it has expired", async () => {
        const p = pendingApproval("pa-1", { expiresInSeconds: 60 });
        await store.createPendingApproval(p);
        expect(await store.decidePendingApproval(decision("pa-1", "APPROVED", "so-2", 60))).toBeUndefined();
        expect(await store.decidePendingApproval(decision("pa-1", "REJECTED", "so-2", 61))).toBeUndefined();
        const expire = (seconds: number) => ({ id: "pa-1", from: "PENDING" as const, to: "EXPIRED" as const, body: body("pa-1", { expired: true }), seal: seal("pa-1/expired"), now: at(seconds) });
        expect(await store.decidePendingApproval(expire(59))).toBeUndefined(); // not expired yet
        expect(await store.getPendingApproval("pa-1")).toEqual(stored(p));
        const expired: PendingApprovalRecord = { ...stored(p), state: "EXPIRED", version: 2, body: body("pa-1", { expired: true }), seal: seal("pa-1/expired") };
        expect(await store.decidePendingApproval(expire(60))).toEqual(expired);
        expect(await store.getPendingApproval("pa-1")).toEqual(expired);
        expect(await store.decidePendingApproval(expire(61))).toBeUndefined(); // once
        expect(await store.decidePendingApproval(decision("pa-1", "APPROVED", "so-2", 1))).toBeUndefined(); // an earlier clock does not revive it
        expect(await store.completePendingApproval(completion("pa-1", "EXECUTED", 62))).toBeUndefined();
        expect(await store.getPendingApproval("pa-1")).toEqual(expired);
      });

      it("R-3.2.1.6 dual control: an expired request not yet marked EXPIRED holds its slot until it is; listing EXPIRED finds it", async () => {
        const old = pendingApproval("pa-1", { expiresInSeconds: 60 });
        await store.createPendingApproval(old);
        const key = { method: old.method, requestDigest: old.requestDigest, requestedBy: "so-1" };
        expect(await store.findPendingApproval({ ...key, now: at(100) })).toBeUndefined();
        const fresh = { ...pendingApproval("pa-2", { expiresInSeconds: 700 }), request: old.request, requestDigest: old.requestDigest, requestedAt: at(100) };
        await expect(store.createPendingApproval(fresh)).rejects.toMatchObject({ code: "ALREADY_EXISTS", field: "requestDigest" });
        const expiredPage = await store.listPendingApprovals({ state: "EXPIRED", requestedBy: "so-1", limit: 10, now: at(100) });
        expect(expiredPage.items).toEqual([stored(old)]); // still stored as PENDING: the store never rewrites a sealed record
        expect(await store.listPendingApprovals({ state: "PENDING", limit: 10, now: at(100) })).toEqual({ items: [], next: undefined });
        expect(await store.decidePendingApproval({ id: "pa-1", from: "PENDING", to: "EXPIRED", body: "{}", seal: seal("x"), now: at(100) })).toMatchObject({ state: "EXPIRED" });
        await store.createPendingApproval(fresh);
        expect(await store.findPendingApproval({ ...key, now: at(100) })).toEqual(stored(fresh));
      });

      it("R-3.2.1.6 dual control: approve then complete (EXECUTED); each step bumps the version and stores the caller's body and seal exactly", async () => {
        const p = pendingApproval("pa-1");
        await store.createPendingApproval(p);
        const approved: PendingApprovalRecord = {
          ...stored(p), state: "APPROVED", version: 2, decidedBy: "so-2", decidedAt: at(10), body: body("pa-1", { decision: "APPROVED" }), seal: seal("pa-1/APPROVED"),
        };
        expect(await store.decidePendingApproval(decision("pa-1", "APPROVED", "so-2", 10))).toEqual(approved);
        expect(await store.getPendingApproval("pa-1")).toEqual(approved);
        expect(await store.decidePendingApproval(decision("pa-1", "REJECTED", "so-3", 11))).toBeUndefined(); // decided once
        expect(await store.decidePendingApproval(decision("pa-1", "APPROVED", "so-3", 11))).toBeUndefined();
        expect(await store.findPendingApproval({ method: p.method, requestDigest: p.requestDigest, requestedBy: "so-1", now: at(11) })).toBeUndefined();

        const executed: PendingApprovalRecord = { ...approved, state: "EXECUTED", version: 3, body: body("pa-1", { outcome: "EXECUTED" }), seal: seal("pa-1/EXECUTED") };
        expect(await store.completePendingApproval(completion("pa-1", "EXECUTED", 12))).toEqual(executed);
        expect(await store.getPendingApproval("pa-1")).toEqual(executed);
        expect(await store.completePendingApproval(completion("pa-1", "FAILED", 13))).toBeUndefined(); // the outcome is recorded once
        expect(await store.decidePendingApproval(decision("pa-1", "APPROVED", "so-2", 13))).toBeUndefined();
        expect(await store.getPendingApproval("pa-1")).toEqual(executed);
      });

      it("R-3.2.1.6 dual control: complete only from APPROVED (not PENDING, REJECTED or EXPIRED); a failed execution is recorded as FAILED", async () => {
        await store.createPendingApproval(pendingApproval("pending"));
        expect(await store.completePendingApproval(completion("pending", "EXECUTED", 1))).toBeUndefined();
        expect(await store.getPendingApproval("pending")).toMatchObject({ state: "PENDING", version: 1 });
        await store.createPendingApproval(pendingApproval("rejected"));
        await store.decidePendingApproval(decision("rejected", "REJECTED", "so-1", 1, "withdrawn")); // the requester withdraws it
        expect(await store.completePendingApproval(completion("rejected", "EXECUTED", 2))).toBeUndefined();
        expect(await store.getPendingApproval("rejected")).toMatchObject({ state: "REJECTED", version: 2, decidedBy: "so-1" });
        await store.createPendingApproval(pendingApproval("expired", { expiresInSeconds: 5 }));
        await store.decidePendingApproval({ id: "expired", from: "PENDING", to: "EXPIRED", body: "{}", seal: seal("e"), now: at(5) });
        expect(await store.completePendingApproval(completion("expired", "FAILED", 6))).toBeUndefined();
        expect(await store.completePendingApproval(completion("nobody", "EXECUTED", 6))).toBeUndefined();

        await store.createPendingApproval(pendingApproval("failed"));
        await store.decidePendingApproval(decision("failed", "APPROVED", "so-2", 1));
        expect(await store.completePendingApproval(completion("failed", "FAILED", 2))).toMatchObject({
          state: "FAILED", version: 3, decidedBy: "so-2", decidedAt: at(1), body: body("failed", { outcome: "FAILED" }),
        });
        expect(await store.completePendingApproval(completion("failed", "EXECUTED", 3))).toBeUndefined();
      });

      it("R-3.2.1.6 dual control: refuses edges outside the state machine and malformed records (RangeError, nothing written)", async () => {
        const p = pendingApproval("pa-1");
        await store.createPendingApproval(p);
        const bad: (() => Promise<unknown>)[] = [
          () => store.completePendingApproval({ ...completion("pa-1", "EXECUTED", 1), from: "PENDING" as never }),
          () => store.completePendingApproval({ ...completion("pa-1", "EXECUTED", 1), to: "APPROVED" as never }),
          () => store.decidePendingApproval({ ...decision("pa-1", "APPROVED", "so-2", 1), to: "EXECUTED" as never }),
          () => store.decidePendingApproval({ ...decision("pa-1", "APPROVED", "so-2", 1), from: "APPROVED" as never }),
          () => store.decidePendingApproval({ ...decision("pa-1", "APPROVED", "so-2", 1), decidedBy: undefined as never }),
          () => store.decidePendingApproval({ id: "pa-1", from: "PENDING", to: "EXPIRED", decidedBy: "so-2" as never, body: "{}", seal: seal("x"), now: at(700) }),
          () => store.createPendingApproval({ ...pendingApproval("pa-2"), version: 2 as never }),
          () => store.createPendingApproval({ ...pendingApproval("pa-2"), state: "APPROVED" as never }),
          () => store.createPendingApproval({ ...pendingApproval("pa-2"), decidedBy: "so-2" as never }),
          () => store.createPendingApproval({ ...pendingApproval("pa-2"), requestDigest: base64url(new Uint8Array(31)) }),
          () => store.createPendingApproval({ ...pendingApproval("pa-2"), request: "not base64url!" }),
          () => store.createPendingApproval({ ...pendingApproval("pa-2"), expiresAt: at(0) }),
          () => store.listPendingApprovals({ limit: 0, now: at(1) }),
          () => store.listPendingApprovals({ limit: maxPageSize + 1, now: at(1) }),
        ];
        for (const call of bad) await expect(call()).rejects.toBeInstanceOf(RangeError);
        expect(await store.getPendingApproval("pa-1")).toEqual(stored(p));
        expect(await store.getPendingApproval("pa-2")).toBeUndefined();
      });

      it("R-3.2.1.6 dual control: lists by state (expiry applied at now) and requester, page by page in id order, ascending or descending", async () => {
        // pa-00..pa-11: every third expires at 50; 1, 4, 7, 10 approved; 2 rejected; 5 marked EXPIRED.
        for (let i = 0; i < 12; i++) {
          const id = `pa-${String(i).padStart(2, "0")}`;
          await store.createPendingApproval(pendingApproval(id, { requestedBy: i % 2 === 0 ? "so-1" : "so-2", expiresInSeconds: i % 3 === 0 ? 50 : 600 }));
        }
        for (const i of [1, 4, 7, 10]) expect(await store.decidePendingApproval(decision(`pa-${String(i).padStart(2, "0")}`, "APPROVED", "so-3", 10))).toBeDefined();
        expect(await store.decidePendingApproval(decision("pa-02", "REJECTED", "so-3", 10))).toBeDefined();
        expect(await store.decidePendingApproval(decision("pa-05", "REJECTED", "so-3", 10))).toBeDefined();
        const ids = (items: { id: string }[]) => items.map((r) => r.id);

        const seen: string[] = [];
        let after: string | undefined;
        let pages = 0;
        do {
          const page = await store.listPendingApprovals({ after, limit: 5, now: at(100) });
          seen.push(...ids(page.items));
          after = page.next;
          pages++;
        } while (after !== undefined);
        expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => `pa-${String(i).padStart(2, "0")}`));
        expect(pages).toBe(3);

        const newestFirst: string[] = [];
        after = undefined;
        do {
          const page = await store.listPendingApprovals({ order: "desc", after, limit: 5, now: at(100) });
          newestFirst.push(...ids(page.items));
          after = page.next;
        } while (after !== undefined);
        expect(newestFirst).toEqual([...seen].reverse());

        const list = async (query: Omit<Parameters<Store["listPendingApprovals"]>[0], "limit">) =>
          ids((await store.listPendingApprovals({ limit: 100, ...query })).items);
        expect(await list({ state: "PENDING", now: at(20) })).toEqual(["pa-00", "pa-03", "pa-06", "pa-08", "pa-09", "pa-11"]);
        expect(await list({ state: "PENDING", now: at(100) })).toEqual(["pa-08", "pa-11"]); // 0, 3, 6, 9 expired meanwhile
        expect(await list({ state: "EXPIRED", now: at(100) })).toEqual(["pa-00", "pa-03", "pa-06", "pa-09"]);
        expect(await list({ state: "EXPIRED", now: at(20) })).toEqual([]);
        expect(await list({ state: "APPROVED", now: at(100) })).toEqual(["pa-01", "pa-04", "pa-07", "pa-10"]);
        expect(await list({ state: "REJECTED", now: at(100) })).toEqual(["pa-02", "pa-05"]);
        expect(await list({ state: "EXECUTED", now: at(100) })).toEqual([]);
        expect(await list({ requestedBy: "so-2", now: at(100) })).toEqual(["pa-01", "pa-03", "pa-05", "pa-07", "pa-09", "pa-11"]);
        expect(await list({ state: "PENDING", requestedBy: "so-2", now: at(100) })).toEqual(["pa-11"]);
        expect(await list({ state: "EXPIRED", requestedBy: "so-1", order: "desc", now: at(100) })).toEqual(["pa-06", "pa-00"]);
      });

      it(`R-3.2.1.6 dual control race: ${racers} concurrent approvers of one pending approval behind a start barrier, exactly one wins, ${raceRounds} rounds`, async () => {
        for (let round = 0; round < raceRounds; round++) {
          const id = `race-${round}`;
          await store.createPendingApproval(pendingApproval(id));
          const results = await race(racers, (i) => store.decidePendingApproval(decision(id, "APPROVED", `so-${i + 2}`, 1, `approver-${i}`)));
          const winners = results.filter((r) => r !== undefined);
          expect(winners, `round ${round}`).toHaveLength(1);
          const i = results.findIndex((r) => r !== undefined);
          expect(winners[0]).toMatchObject({ state: "APPROVED", version: 2, decidedBy: `so-${i + 2}` });
          expect(await store.getPendingApproval(id), `round ${round}`).toEqual(winners[0]); // the winner's body and seal, nobody else's
        }
      });

      it(`R-3.2.1.6 dual control race: ${racers} concurrent approvers and rejecters: exactly one decision is stored, ${raceRounds} rounds`, async () => {
        for (let round = 0; round < raceRounds; round++) {
          const id = `mixed-${round}`;
          await store.createPendingApproval(pendingApproval(id));
          const results = await race(racers, (i) => store.decidePendingApproval(decision(id, i % 2 === 0 ? "APPROVED" : "REJECTED", `so-${i + 2}`, 1, `decider-${i}`)));
          const winners = results.filter((r) => r !== undefined);
          expect(winners, `round ${round}`).toHaveLength(1);
          expect(await store.getPendingApproval(id)).toEqual(winners[0]);
        }
      });

      it(`R-3.2.1.6 dual control race: ${racers} concurrent completions of one approved request: the outcome is recorded once, ${raceRounds} rounds`, async () => {
        for (let round = 0; round < raceRounds; round++) {
          const id = `done-${round}`;
          await store.createPendingApproval(pendingApproval(id));
          expect(await store.decidePendingApproval(decision(id, "APPROVED", "so-2", 1))).toBeDefined();
          const results = await race(racers, (i) => store.completePendingApproval(completion(id, i % 2 === 0 ? "EXECUTED" : "FAILED", 2, `performer-${i}`)));
          const winners = results.filter((r) => r !== undefined);
          expect(winners, `round ${round}`).toHaveLength(1);
          expect(await store.getPendingApproval(id)).toEqual(winners[0]);
          expect(winners[0]?.version).toBe(3);
        }
      });

      it(`R-3.2.1.6 dual control across SAM nodes: ${racers} approvers spread over 4 connections to one database, exactly one wins, ${raceRounds} rounds`, async () => {
        const connections = [store];
        for (let i = 0; i < 3; i++) connections.push(await factory.connectAgain(store));
        extra.push(...connections.slice(1));
        const via = (i: number): Store => connections[i % connections.length]!;
        for (let round = 0; round < raceRounds; round++) {
          const id = `nodes-${round}`;
          await via(round).createPendingApproval(pendingApproval(id));
          const results = await race(racers, (i) => via(i).decidePendingApproval(decision(id, "APPROVED", `so-${i + 2}`, 1, `node-approver-${i}`)));
          const winners = results.filter((r) => r !== undefined);
          expect(winners, `round ${round}`).toHaveLength(1);
          expect(await via(round + 1).getPendingApproval(id)).toEqual(winners[0]);
        }
      });

      it("R-3.2.1.6 dual control: fails closed after the connection is gone (STORE_FAILURE)", async () => {
        await store.createPendingApproval(pendingApproval("pa-1"));
        await store.close();
        const calls: (() => Promise<unknown>)[] = [
          () => store.createPendingApproval(pendingApproval("pa-2")),
          () => store.getPendingApproval("pa-1"),
          () => store.findPendingApproval({ method: destroyMethod, requestDigest: digestOf(requestBytes("destroy pa-1")), requestedBy: "so-1", now: at(1) }),
          () => store.listPendingApprovals({ limit: 10, now: at(1) }),
          () => store.decidePendingApproval(decision("pa-1", "APPROVED", "so-2", 1)),
          () => store.completePendingApproval(completion("pa-1", "EXECUTED", 2)),
        ];
        for (const call of calls) {
          const err = await rejection(call());
          expect(err).toBeInstanceOf(StoreFailureError);
          expect(err).toMatchObject({ code: "STORE_FAILURE" });
        }
      });
    });

    describe("restore fence (issue 22)", () => {
      it("voidOneTimeState consumes every open challenge, SAD token and activation code and revokes every open transaction, once; used jti values stay used", async () => {
        await store.issueChallenge({ hash: "v-c1", purpose: "transaction", subject: "tx1", createdAt: at(0), expiresAt: at(60) });
        await store.issueChallenge({ hash: "v-n1", purpose: "admin-nonce", subject: "pu1", createdAt: at(0), expiresAt: at(60) });
        await store.issueChallenge({ hash: "v-c2", purpose: "transaction", subject: "tx1", createdAt: at(0), expiresAt: at(60) });
        await store.consumeChallenge({ hash: "v-c2", purpose: "transaction", now: at(1) }); // already consumed: not counted
        await store.issueSadToken({ hash: "v-t1", transactionId: "v-open", generation: 0, previousHash: undefined, issuedAt: at(0), expiresAt: at(60), mac: tokenMacStub });
        await store.issueActivationCode({ id: "v-a1", signerId: "s1", codeHash: "hash-v-a1", attemptsLeft: 3, createdAt: at(0), expiresAt: at(600) });
        await store.createTransaction(newTransaction("v-open", 1));
        await authorized("v-authorized", [dtbsrHash(1, "v")]);
        await authorized("v-done", [dtbsrHash(2, "v")]);
        expect(await store.transitionTransaction({ id: "v-done", from: ["AUTHORIZED"], to: "COMPLETED", now: at(3) })).toBe(true);
        expect(await store.useJti({ key: "v-jti", expiresAt: at(60), now: at(1) })).toBe(true);

        expect(await store.voidOneTimeState({ now: at(5) })).toEqual({ oneTimeObjects: 4, transactions: 2 });
        expect(await store.consumeChallenge({ hash: "v-c1", purpose: "transaction", now: at(6) })).toBeUndefined();
        expect(await store.consumeChallenge({ hash: "v-n1", purpose: "admin-nonce", now: at(6) })).toBeUndefined();
        expect(await store.consumeSadToken({ hash: "v-t1", now: at(6) })).toBeUndefined();
        expect(await store.attemptActivationCode({ id: "v-a1", codeHash: "hash-v-a1", now: at(6) })).toEqual({ outcome: "unavailable" });
        expect((await store.getTransaction("v-open"))?.state).toBe("REVOKED");
        expect((await store.getTransaction("v-authorized"))?.state).toBe("REVOKED");
        expect((await store.getTransaction("v-done"))?.state).toBe("COMPLETED");
        expect(await store.useJti({ key: "v-jti", expiresAt: at(60), now: at(6) })).toBe(false);
        expect(await store.voidOneTimeState({ now: at(7) })).toEqual({ oneTimeObjects: 0, transactions: 0 });
      });
    });

    describe("failure", () => {
      it("fails closed: after the connection is gone every call throws STORE_FAILURE, the driver error only in cause", async () => {
        await store.close();
        const calls: (() => Promise<unknown>)[] = [
          () => store.getRecord("signer", "s1"),
          () => store.createRecord(signer("s1")),
          () => store.consumeChallenge({ hash: "c", purpose: "transaction", now: at(1) }),
          () => store.consumeSadToken({ hash: "t", now: at(1) }),
          () => store.attemptActivationCode({ id: "a", codeHash: "h", now: at(1) }),
          () => store.useJti({ key: "j", expiresAt: at(60), now: at(1) }),
          () => store.markHashesSigned({ transactionId: "tx", hashes: [dtbsrHash(0)], now: at(1), claim: holder() }),
          () => store.appendAuditRecord({ nodeId: "n", sequence: 1, time: at(1), event: "e", body: "{}", prevHash: new Uint8Array(32), hash: new Uint8Array(32) }),
        ];
        for (const call of calls) {
          const err = await rejection(call());
          expect(err).toBeInstanceOf(StoreFailureError);
          expect(err).toMatchObject({ code: "STORE_FAILURE", message: "the store is unavailable" });
          expect((err as Error).cause).toBeDefined();
        }
      });
    });
  });
}

/** A unique name for a test database or file. */
export const uniqueName = (prefix: string): string => `${prefix}-${randomUUID()}`;
