import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason, requestSignatureHeader } from "@inkan/sdk";
import { AuditOutcome, AuditProblemKind, AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import Database from "better-sqlite3";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Store } from "../store/port.js";
import { newRequestSigningKey, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";

// The audit trail of privileged work, read by an auditor over the admin API (R-3.2.2.4, T-2.2.2.3).
let t: TestServer;
let failAuditWrites = false;
let auditor: PrivilegedPerson;

const newKey = newRequestSigningKey;

beforeAll(async () => {
  // Fault injection: the real store, with its audit append made to fail on demand.
  const wrapStore = (store: Store): Store =>
    new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === "appendAuditRecord") {
          return async (...args: Parameters<Store["appendAuditRecord"]>) => {
            if (failAuditWrites) throw new Error("disk full (injected)");
            return target.appendAuditRecord(...args);
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  t = await startTestServer({}, { wrapStore });
  auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-1");
});
afterAll(async () => {
  await t?.close();
});

const auditApi = () => createClient(AuditService, t.as(auditor));

describe("the audit trail (R-3.2.2.4)", () => {
  it("records the start, each privileged operation before and after it, and refused requests", async () => {
    const bad = createClient(PrivilegedUserService, t.transport("grpc", t.pki.admin));
    await bad.listPrivilegedUsers({}, { headers: { [requestSignatureHeader]: "not-a-jws" } }).catch(() => undefined);
    const { records } = await auditApi().listAuditRecords({ page: { pageSize: 1000 } });
    const types = records.map((r) => r.eventType);
    expect(types[0]).toBe("sam.started");
    expect(types).toEqual(expect.arrayContaining(["privileged_operation.requested", "privileged_operation.performed", "admin_request.refused"]));
    const refused = records.find((r) => r.eventType === "admin_request.refused");
    expect(refused?.outcome).toBe(AuditOutcome.DENIED);
    expect(refused?.reason).toBe(Reason.REQUEST_SIGNATURE_INVALID);
    const created = records.find((r) => r.eventType === "privileged_operation.performed" && r.details["method"]?.endsWith("/CreatePrivilegedUser"));
    expect(created?.actor?.id).toBe(t.pki.paths.adminUserId);
    expect(created?.outcome).toBe(AuditOutcome.SUCCESS);
  });

  it("T-2.2.2.3: never holds request signatures, nonces or keys", async () => {
    const { records } = await auditApi().listAuditRecords({ page: { pageSize: 1000 } });
    const text = JSON.stringify(records, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v));
    expect(text).not.toContain("not-a-jws");
    expect(text).not.toContain(auditor.privateJwk.d!);
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+\./); // no JWS anywhere
  });

  it("fails closed: a privileged operation whose audit record cannot be written does not happen", async () => {
    const so = createClient(PrivilegedUserService, t.adminTransport());
    const before = (await so.getPrivilegedUser({ userId: auditor.userId })).user!.keys.length;
    const key = await newKey();
    failAuditWrites = true;
    let err: ConnectError | undefined;
    try {
      await so.addUserKey({ userId: auditor.userId, publicKeyJwk: key.publicJwk });
    } catch (e) {
      err = ConnectError.from(e);
    } finally {
      failAuditWrites = false;
    }
    expect(err?.code).toBe(Code.Unavailable);
    expect(inkanErrorReason(err)).toBe(Reason.AUDIT_FAILURE);
    expect((await so.getPrivilegedUser({ userId: auditor.userId })).user!.keys.length).toBe(before);
  });

  it("lets the auditor verify the chain, and reports an edited record with its sequence", async () => {
    expect((await auditApi().verifyAuditLog({})).ok).toBe(true);
    const db = new Database(join(t.dataDir, "store.sqlite3"));
    try {
      db.exec("DROP TRIGGER IF EXISTS audit_records_no_update");
      expect(db.prepare("UPDATE audit_records SET event = 'nothing.happened' WHERE node_id = 'node-1' AND sequence = 3").run().changes).toBe(1);
    } finally {
      db.close();
    }
    const result = await auditApi().verifyAuditLog({});
    expect(result.ok).toBe(false);
    expect(result.nodes[0]?.problem?.kind).toBe(AuditProblemKind.EDITED);
    expect(result.nodes[0]?.problem?.firstBadSequence).toBe(3n);
  });
});
