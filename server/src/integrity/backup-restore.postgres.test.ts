/**
 * Backup and restore on PostgreSQL (issue 22): `inkan backup` by `pg_dump` of an exported snapshot
 * while the node serves, `inkan restore` by `pg_restore` (refused while a node is connected), the
 * audit tail kept, and the same dual-controlled acknowledgement as on SQLite
 * (backup-restore.test.ts). A throwaway cluster (store/testing/postgres-cluster.ts); the node is
 * provisioned by the harness (its SQLite store copied into the database, as
 * multi-node-postgres.test.ts does) and then served the production way (`store: postgres://…`).
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import { Reason, buildRSad, createAdminRequestSigner, inkanErrorReason, type DeviceKey } from "@inkan/sdk";
import { AcknowledgeRestoreResponseSchema, PolicyService } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PendingApprovalState, PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openConfigured } from "../cli/backup-command.js";
import { takeBackup, type BackupResult } from "../cli/backup.js";
import { restoreBackup } from "../cli/restore.js";
import { parseConfig } from "../config/config.js";
import { serve } from "../main.js";
import { findPostgresBinaries, startTestCluster, type TestCluster } from "../store/testing/postgres-cluster.js";
import { errorOf, startTestServer, transportFor, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";
import type { InkanServer } from "../transport/server.js";
import { postgresInstead } from "../store/testing/postgres-instead.js";

const binaries = findPostgresBinaries();
const skipReason = "missing" in binaries ? binaries.missing : undefined;
if (skipReason) console.warn(skipReason);

describe.skipIf(skipReason !== undefined)(skipReason ?? "issue 22: backup and restore on PostgreSQL", () => {
  let cluster: TestCluster;
  let uri: string;
  let t: TestServer;
  let node: InkanServer | undefined;
  let nodeB: InkanServer | undefined;
  let so2: PrivilegedPerson;
  let bob: { signerId: string; credentialId: string; deviceKey: DeviceKey };
  let work: string;
  let backup: BackupResult;
  const config = () => parseConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", shutdownGraceMs: "2000", nodeId: "node-a", store: uri, storePoolSize: "4" });
  const url = () => node?.url ?? t.server.url;
  const sca = (at = url()) => createClient(SignatureActivationService, transportFor("grpc", at, { ca: t.pki.ca, ...t.pki.sca }));
  const as = (who: PrivilegedPerson) =>
    transportFor("grpc", url(), { ca: t.pki.ca, ...who.cert }, [createAdminRequestSigner({ userId: who.userId, privateJwk: who.privateJwk, nonceTransport: transportFor("grpc", url(), { ca: t.pki.ca, ...who.cert }) })]);
  const audited = async (event: string) => {
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    try {
      return (await client.query("SELECT node_id, sequence, body FROM audit_records WHERE event = $1 ORDER BY node_id, sequence", [event])).rows as { body: string }[];
    } finally {
      await client.end();
    }
  };

  async function begin(at = url()) {
    const hash = new Uint8Array(createHash("sha256").update(randomBytes(16)).digest());
    const ch = (await sca(at).beginTransaction({ credentialId: bob.credentialId, signerId: bob.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: 1, hashes: [hash], description: "pg backup" })).sadChallenge!;
    const rSad = await buildRSad({
      deviceKey: bob.deviceKey, signerId: ch.signerId, credentialId: ch.credentialId, samId: ch.audience, transactionId: ch.transactionId,
      challenge: ch.challenge, dtbsrDigest: ch.dtbsrDigest, count: ch.numSignatures, hashAlgorithm: ch.hashAlgorithm, description: ch.description, pin: testPin, samKey: ch.encryptionKey!,
    });
    return { transactionId: ch.transactionId, hash, rSad };
  }
  async function trySign(at = url()): Promise<number | Reason> {
    try {
      const tx = await begin(at);
      const { sadToken } = await sca(at).authorize({ transactionId: tx.transactionId, rSad: tx.rSad });
      return (await sca(at).signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: [tx.hash] })).signatures.length;
    } catch (err) {
      return inkanErrorReason(ConnectError.from(err));
    }
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "inkan-pg-backup-"));
    cluster = await startTestCluster((binaries as { bindir: string }).bindir);
    uri = await cluster.createDatabase();
    t = await startTestServer({ nodeId: "node-a" }, { wrapStore: postgresInstead(uri, 4) });
    const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-pg-backup");
    so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "so2-pg-backup");
    const s = await activeSignerWithCredential(t, operator);
    bob = { signerId: s.signerId, credentialId: s.credential.credentialId, deviceKey: s.deviceKey };
  }, 120_000);
  afterAll(async () => {
    await nodeB?.close(500).catch(() => undefined);
    await node?.close(500).catch(() => undefined);
    await t?.close().catch(() => undefined);
    await cluster?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("backs up with pg_dump while the node serves, refuses to restore while it is connected, restores, and signs only after two officers acknowledge", async () => {
    expect(await trySign()).toBe(1);
    const before = await begin();
    backup = await takeBackup(config(), join(work, "pg.inkan"), openConfigured);
    expect(backup.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    expect((await audited("store.backup_created")).map((r) => JSON.parse(r.body).details.snapshot_id)).toContain(backup.snapshotId);
    // After the snapshot: the R.SAD made before it is used, and signs.
    const { sadToken } = await sca().authorize({ transactionId: before.transactionId, rSad: before.rSad });
    expect((await sca().signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: [before.hash] })).signatures).toHaveLength(1);

    await expect(restoreBackup(config(), join(work, "pg.inkan"), openConfigured)).rejects.toMatchObject({ code: "STATE_CONFLICT" });
    await t.server.close(500);
    const restored = await restoreBackup(config(), join(work, "pg.inkan"), openConfigured);
    expect(restored.keptRecords).toBeGreaterThan(0);
    node = await serve(config(), pino({ level: "silent" }));
    // A second node on the same database: refuses too, and opens once the first node's acknowledgement is in the audit log.
    nodeB = await serve(parseConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", shutdownGraceMs: "2000", nodeId: "node-b", store: uri, storePoolSize: "4" }), pino({ level: "silent" }));
    expect(await trySign()).toBe(Reason.INTEGRITY_VIOLATION);
    expect(await trySign(nodeB.url)).toBe(Reason.INTEGRITY_VIOLATION);

    const held = await errorOf(createClient(PolicyService, as(t.firstSecurityOfficer)).acknowledgeRestore({ snapshotId: backup.snapshotId }));
    const detail = held.findDetails(ApprovalRequiredSchema)[0]!;
    const { pendingApproval } = await createClient(PrivilegedUserService, as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
    expect(pendingApproval?.state).toBe(PendingApprovalState.EXECUTED);
    expect(anyUnpack(pendingApproval!.result!, AcknowledgeRestoreResponseSchema)!.snapshotId).toBe(backup.snapshotId);

    // The R.SAD and SAD token used after the snapshot serve nothing again; new work signs.
    expect(await errorOf(sca().authorize({ transactionId: before.transactionId, rSad: before.rSad })).then(inkanErrorReason)).toBe(Reason.TRANSACTION_STATE); // revoked
    // (issued after the snapshot, it is not in the restored store at all)
    expect(await errorOf(sca().signHash({ authorization: { case: "sadToken", value: sadToken }, hashes: [before.hash] })).then(inkanErrorReason)).toBe(Reason.SAD_INVALID);
    expect(await trySign()).toBe(1);
    let onB: number | Reason = Reason.UNSPECIFIED;
    for (let i = 0; i < 50 && onB !== 1; i++) {
      await new Promise((r) => setTimeout(r, 300)); // node B reads the restore state every 2 s
      onB = await trySign(nodeB.url);
      if (onB !== 1) expect(onB).toBe(Reason.INTEGRITY_VIOLATION); // refused until it sees the acknowledgement, never another way
    }
    expect(onB).toBe(1);
    const ack = (await audited("store.restore_acknowledged")).map((r) => JSON.parse(r.body).details);
    expect(ack).toHaveLength(1);
    expect(ack[0].snapshot_id).toBe(backup.snapshotId);
    expect((await audited("signature.created")).length).toBe(4); // before the snapshot, after it (kept in the tail), after the acknowledgement on each node
  }, 180_000);
});
