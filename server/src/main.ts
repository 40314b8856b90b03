import { readFileSync } from "node:fs";
import type { DescService } from "@bufbuild/protobuf";
import type { HandlerContext, Interceptor } from "@connectrpc/connect";
import type { JSONWebKeySet } from "jose";
import type { Logger } from "pino";
import { DualControl } from "./admin/dual-control.js";
import { DEFAULT_CHECKPOINT_EVERY_RECORDS, createAuditLog, type ChainedAuditLog } from "./audit/audit-log.js";
import { cryptoModuleDisconnected, cryptoModuleReconnected, integrityViolationDetected, samStarted, samStopped } from "./audit/events.js";
import { contractFiles } from "@inkan/sdk";
import { HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { PrivilegedUsers } from "./admin/privileged-users.js";
import { PolicyIntegrityGate, SecurityPolicies, durationMs, type PolicyVersion } from "./admin/security-policy.js";
import { SharedClock, systemClock, type Clock } from "./clock.js";
import type { Config } from "./config/config.js";
import type { FullCryptoModule, ModuleAvailability, ModuleStateChange } from "./crypto/port.js";
import { createPkcs11CryptoModule } from "./crypto/pkcs11/pkcs11-crypto-module.js";
import { openEmbeddedCryptoModule } from "./crypto/pkcs11/softhsm-token.js";
import { InkanError } from "./errors.js";
import { FieldCipher, RecordSealer } from "./integrity/record-sealer.js";
import { SealCache } from "./integrity/seal-cache.js";
import { openRecordHeads, type RecordHeads } from "./integrity/record-heads.js";
import { VerifiedRecords } from "./integrity/sealed-records.js";
import { RestoreGate, findPendingRestore, restoreAwaitingMessage } from "./integrity/restore-state.js";
import { restoreService } from "./transport/restore-service.js";
import { markServing } from "./integrity/serve-marker.js";
import { AuthorizationSeals } from "./sap/authorization-seal.js";
import { createMongoStore } from "./store/mongodb/mongo-store.js";
import type { Store } from "./store/port.js";
import { createPostgresStore } from "./store/postgres/postgres-store.js";
import { createPostgresLock, type PostgresLock } from "./store/postgres/postgres-lock.js";
import { createPostgresTimeSource } from "./store/postgres/postgres-time.js";
import { createSqliteStore } from "./store/sqlite/sqlite-store.js";
import { retryWhileBusy, sqliteBusyTimeoutMs, withBusyRetry } from "./store/sqlite/busy-retry.js";
import { approvalService, createDualControlInterceptor } from "./transport/dual-control.js";
import { createPolicyGateInterceptor, createTrustedCaInterceptor, policyService } from "./transport/policy-service.js";
import { createOperationAuditInterceptor, createRefusalAuditInterceptor } from "./transport/audit-interceptors.js";
import { auditService } from "./transport/audit-service.js";
import { privilegedSessionService } from "./transport/privileged-session.js";
import { privilegedUserService } from "./transport/privileged-user-service.js";
import { Credentials } from "./registration/credentials.js";
import { CredentialLifecycle } from "./registration/credential-lifecycle.js";
import { SignerDevice } from "./registration/signer-device.js";
import { ScaCredentials } from "./registration/sca-view.js";
import { Activation } from "./registration/activation.js";
import { Signers } from "./registration/signers.js";
import { createCsrService, registrationService } from "./transport/registration-service.js";
import { credentialLifecycleService } from "./transport/credential-lifecycle-service.js";
import { signerService } from "./transport/signer-service.js";
import { keyImportService } from "./transport/key-import-service.js";
import { KeyImport } from "./registration/key-import.js";
import { KeyImportTransportKeys } from "./keys/key-import-transport-key.js";
import { SamEncryptionKeys } from "./keys/sam-encryption-keys.js";
import { samInfoService } from "./transport/sam-info.js";
import { scaCredentialsService } from "./transport/sca-credentials.js";
import { sapTransactionsService } from "./transport/sap-transactions.js";
import { sapSigningService } from "./transport/sap-signing.js";
import { SapAuthorize } from "./sap/authorize.js";
import { SapCsrApproval } from "./sap/csr-approval.js";
import { ChallengeSigner } from "./sap/challenge-signature.js";
import { createLoginAssertionVerifier } from "./sap/login-assertion.js";
import { SapSignHash } from "./sap/sign-hash.js";
import { SapSignStream } from "./sap/sign-stream.js";
import { schedulePurge } from "./store/purge-schedule.js";
import { SapTransactions } from "./sap/transactions.js";
import { startServer, type InkanServer } from "./transport/server.js";
import { SamMetrics, countAuditWrites, type MetricSources } from "./metrics/metrics.js";
import type { MetricsListener } from "./metrics/metrics-listener.js";
import { serveMetrics } from "./metrics/serve-metrics.js";

/** The version recorded when the SAM starts: the server package's (src/ and dist/ both sit beside package.json). */
const samVersion = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;

/** Opens the configured crypto module: the embedded SoftHSM2 token, or an HSM's PKCS#11 library. */
export async function openCryptoModule(config: Config): Promise<FullCryptoModule & ModuleAvailability> {
  const m = config.cryptoModule;
  const workers = config.cryptoWorkers !== undefined ? { workers: config.cryptoWorkers } : {};
  if (m.kind === "embedded") return openEmbeddedCryptoModule(config.dataDir, workers);
  return createPkcs11CryptoModule({ library: m.library, token: m.token, ...(m.pinFile ? { pin: { file: m.pinFile } } : {}), ...workers });
}

/** Opens the configured store and runs its migrations. */
export async function openStore(config: Config): Promise<Store> {
  const s = config.store;
  if (s.kind === "postgres") return createPostgresStore({ uri: s.uri, poolSize: s.poolSize });
  if (s.kind === "mongodb") return createMongoStore({ uri: s.uri });
  // Issue 17.4: a write lock held by another process is waited for asynchronously, never on the event loop.
  const open = () => createSqliteStore({ file: s.file, busyTimeoutMs: sqliteBusyTimeoutMs });
  return withBusyRetry(await retryWhileBusy(open, config.storeBusyWaitMs), config.storeBusyWaitMs);
}

/**
 * Issue 21: the time source that decides security. Nodes sharing PostgreSQL read the database
 * server's clock (every node the same time); one node on SQLite reads its own. MongoDB: the
 * local clock (README: the adapter's limits). `stop` ends the sampling.
 */
export async function openClock(config: Config, log: Logger): Promise<{ clock: Clock; stop: () => Promise<void> }> {
  if (config.store.kind !== "postgres") return { clock: systemClock, stop: async () => undefined };
  const source = createPostgresTimeSource(config.store.uri);
  const clock = new SharedClock({ read: () => source.read(), onSampleError: (err) => log.warn({ err }, "the database's time was not read; retried at the next tick") });
  try {
    await clock.start();
  } catch (err) {
    await source.close().catch(() => undefined);
    throw err;
  }
  log.info({ skewMs: Math.round(clock.skewMs) }, "time source: the PostgreSQL server's clock");
  return { clock, stop: async () => { clock.stop(); await source.close(); } };
}

/**
 * The composition root: the only place that sees every adapter. Opens the crypto module and the
 * store, checks that the SAM's own keys answer before accepting a single call (fail closed), wires
 * the domain to the transport and serves. Every RPC of the contract has a handler (the start fails otherwise).
 */
export interface ServeHooks {
  /** Wraps the opened store: fault-injection tests make one of its methods fail this way. */
  wrapStore?: (store: Store) => Store;
  /**
   * Wraps the opened crypto module, the same way: e.g. a module whose check of a signature fails.
   * The bench returns it unwrapped and keeps it, to measure the raw module on the same sessions.
   */
  wrapCrypto?: (crypto: FullCryptoModule) => FullCryptoModule;
  /**
   * Tests only: the sealed-record access, for tests that tamper with records (a database edit
   * under the seal) or set up states directly. Never set by `inkan serve`.
   */
  onRecords?: (records: VerifiedRecords) => void;
  /** Tests only: the SAP components' clock, so expiry tests need not wait out the policy's minimum lifetimes. */
  clock?: () => Date;
  /** Tests only: the node's time source (default: openClock); everything outside the SAP components reads it. */
  nodeClock?: Clock;
}

export async function serve(config: Config, log: Logger, hooks: ServeHooks = {}): Promise<InkanServer> {
  const opened = await openCryptoModule(config);
  // Issue 23: metrics only when their listener is configured; the crypto module, the store and the audit log are counted at their ports.
  let metricSources: MetricSources | undefined;
  const metrics = config.metricsListen ? new SamMetrics(() => metricSources) : undefined;
  const wrapped = hooks.wrapCrypto ? hooks.wrapCrypto(opened) : opened;
  const crypto = metrics ? metrics.instrumentCrypto(wrapped) : wrapped;
  const sessionPool = opened as { sessionPoolStats?: { open: number; busy: number; waiting: number } }; // the PKCS#11 module's pool
  const moduleState: ModuleAvailability = opened;
  let store: Store | undefined;
  let audit: ChainedAuditLog | undefined;
  let heads: RecordHeads | undefined;
  let stopWatchingModule: (() => void) | undefined;
  let metricsListener: MetricsListener | undefined;
  let timeSource: Awaited<ReturnType<typeof openClock>> | undefined;
  let nodeLock: PostgresLock | undefined;
  let restoreWatch: NodeJS.Timeout | undefined;
  try {
    store = await openStore(config);
    if (hooks.wrapStore) store = hooks.wrapStore(store);
    if (metrics) store = metrics.instrumentStore(store);
    // Issue 21: one time source for the decisions on time (usable-since, expiry, policy checks).
    timeSource = hooks.nodeClock ? { clock: hooks.nodeClock, stop: async () => undefined } : await openClock(config, log);
    const nodeClock = timeSource.clock;
    const now = () => nodeClock.now();
    // Issue 21: the key sets the nodes share in the module are updated by one node at a time.
    if (config.store.kind === "postgres") nodeLock = createPostgresLock(config.store.uri);
    const lock = nodeLock?.lock;
    await selfCheck(crypto);
    // R-3.2.1.2 / T-2.2.1.5: the JWE key R.SAD is encrypted to; created if missing, checked against the module.
    const samKeys = new SamEncryptionKeys({ crypto, lock, onKeyCreated: (kid) => log.info({ kid }, "SAM encryption key created") });
    await samKeys.ensureCurrentKey(now());
    // R-3.2.2.4: the audit log opens first; a truncated or rewritten log stops the start.
    audit = await createAuditLog({
      nodeId: config.nodeId,
      store,
      cryptoModule: crypto,
      onBackgroundError: (err) => {
        metrics?.auditFailure("checkpoint");
        log.error({ err }, "audit checkpoint failed; the next record will fail closed");
      },
    });
    const auditLog = audit;
    if (metrics) countAuditWrites(auditLog, metrics);
    await auditLog.record(samStarted({ version: samVersion, ...auditLog.startState }));
    // Issue 14: the heads of versioned records, journaled in the audit chains (integrity/ROLLBACK.md);
    // another node's versioned events that disagree with its checkpoints stop the start.
    heads = await openRecordHeads({
      nodeId: config.nodeId,
      audit: auditLog,
      store,
      cryptoModule: crypto,
      ownHeads: auditLog.takeStartHeads(),
      onTailError: (err) => log.warn({ err }, "reading other nodes' versioned heads failed; retried at the next tick"),
    });
    // Issue 20: seal checks and entry keys remembered across calls (integrity/seal-cache.ts), cleared when the module is lost or reconnects.
    const sealCache = new SealCache();
    const sealer = new RecordSealer({
      keys: crypto,
      cache: sealCache,
      onViolation: async (kind, id, cause) => {
        log.error({ kind, id, cause }, "integrity violation: record refused");
        await auditLog.record(integrityViolationDetected({ kind, id, cause }));
      },
    });
    const records = new VerifiedRecords(store, sealer, heads);
    // Issue 22: a restore (`inkan restore`) not yet acknowledged by two security officers, from the audit log: nothing signs meanwhile.
    const restore = new RestoreGate(await findPendingRestore(store), () => applyHealth());
    if (restore.pending) log.error({ snapshotId: restore.pending.snapshotId }, restoreAwaitingMessage);
    // Several nodes: an acknowledgement made on another node opens this one within seconds.
    const openedStore = store;
    restoreWatch = setInterval(() => {
      if (restore.isOpen) return clearInterval(restoreWatch);
      restore.refresh(openedStore).catch((err: unknown) => log.warn({ err }, "reading the restore state failed; retried"));
    }, 2000);
    restoreWatch.unref();
    // Issue 14 (T-2.2.2.2): sealed authorizations and the MACs of DTBS/R entries and SAD tokens;
    // the progress of each authorization is a head of its own (txn:<id>), so a row put back signs nothing.
    const seals = new AuthorizationSeals({ keys: crypto, cache: sealCache, onViolation: (kind, id, cause) => sealer.reportViolation(kind, id, cause) });
    const freshness = heads;
    const users = new PrivilegedUsers({ records, oneTime: store, random: crypto });
    const dual = new DualControl({ store, sealer, random: crypto });
    const policies = new SecurityPolicies({ records });
    const signers = new Signers({ records, oneTime: store, random: crypto, policies, audit: auditLog });
    const credentials = new Credentials({ records, keys: crypto, random: crypto, policies, audit: auditLog, signers, attempts: store });
    const fields = new FieldCipher(crypto);
    const activation = new Activation({ records, oneTime: store, attempts: store, crypto, fields, samKeys, policies, audit: auditLog, signers, openTransactions: store, freshness });
    // level 1: the RSSP's OpenID provider, only from its configured key file (a bad key set stops the start).
    const loginAssertions = config.oidc
      ? await createLoginAssertionVerifier({ issuer: config.oidc.issuer, clientId: config.oidc.clientId, jwks: JSON.parse(readFileSync(config.oidc.jwksFile, "utf8")) as JSONWebKeySet })
      : undefined;
    const methods = { loginAssertion: loginAssertions !== undefined };
    const lifecycle = new CredentialLifecycle({ records, keys: crypto, oneTime: store, samKeys, policies, audit: auditLog });
    const transportKeys = new KeyImportTransportKeys({ crypto, lock, onKeyCreated: (kid) => log.info({ kid }, "key-import transport key created") });
    const keyImport = new KeyImport({ records, oneTime: store, attempts: store, crypto, transportKeys, samKeys, policies, audit: auditLog, signers });
    // T-2.2.1.7: every SadChallenge is signed with the module's challenge-signing key, published in GetInfo.
    const challengeSigner = new ChallengeSigner(crypto);
    let server: InkanServer | undefined;
    // Issue 22: every service is NOT_SERVING while the crypto module is lost; the SAP services also while the policy gate is closed.
    const applyHealth = () => {
      const sam = (s: string) => s.startsWith("inkan.sam.v1.");
      server?.health.setWhere((s) => !sam(s), moduleState.available ? Status.SERVING : Status.NOT_SERVING);
      server?.health.setWhere(sam, moduleState.available && gate.isOpen && restore.isOpen ? Status.SERVING : Status.NOT_SERVING);
    };
    // R-3.2.2.3: a policy that fails its check stops signing until security officers restore it.
    const gate = new PolicyIntegrityGate({
      policies,
      clock: now,
      intervalMs: config.policyCheckIntervalMs,
      onClosed: (error) => {
        log.error({ err: error }, "security policy failed its integrity check: signing stopped");
        auditLog.record(integrityViolationDetected({ kind: "policy", id: "security-policy" })).catch((err: unknown) => log.error({ err }, "audit write failed"));
        applyHealth();
      },
      onOpened: (version) => {
        log.warn({ version: version.version }, "security policy restored: signing resumed");
        applyHealth();
      },
      onCheckFailed: (err) => {
        metrics?.policyCheckFailed();
        log.error({ err }, "security policy check could not be made");
      },
    });
    await gate.check(); // at start, before the first call
    // Issue 13 finding 5: the policy's checkpoint cadence bounds the audit records a crash can lose.
    applyCheckpointPolicy(auditLog, policies.lastVerified, log);
    policies.subscribe({ updated: (change) => applyCheckpointPolicy(auditLog, change.current, log) });
    // Issue 22: the module reconnects by itself; each change is logged, audited when the audit log can write, and sets the health.
    stopWatchingModule = moduleState.onStateChange((change) => {
      sealCache.clear(); // a module that comes back is judged by its own key only
      logModuleChange(log, change);
      if (change.state === "lost") metrics?.moduleLost();
      applyHealth();
      if (change.state === "reconnect-failed") return;
      const event = change.state === "lost" ? cryptoModuleDisconnected({ cause: change.reason }) : cryptoModuleReconnected(change);
      auditLog.record(event).catch((err: unknown) => log.warn({ err, event: event.eventType }, "crypto module change not audited: the audit log cannot write"));
    });
    const clock = { clock: hooks.clock ?? now };
    // Issue 21: the lease of this node's claims of DTBS/R entries (claimLeaseMs).
    const claims = { leaseMs: config.claimLeaseMs };
    const sapTransactions = new SapTransactions({ store, random: crypto, policies, credentials: new ScaCredentials({ signers, credentials, policies, audit: auditLog }), samKeys, audit: auditLog, seals, freshness, ...clock });
    hooks.onRecords?.(records);
    const services = contractFiles.flatMap((f) => f.services);
    const implementations: Record<string, Record<string, unknown>> = {
      "inkan.admin.v1.PrivilegedSessionService": privilegedSessionService(users, now),
      "inkan.admin.v1.PrivilegedUserService": {
        ...privilegedUserService(users, now),
        ...approvalService({ dual, audit: auditLog, users, services, clock: now, handlerOf: (path) => handlerOf(implementations, services, path) }),
      },
      "inkan.admin.v1.PolicyService": {
        ...policyService(policies, auditLog, now),
        ...restoreService({ gate: restore, audit: auditLog, deps: { store, audit: auditLog, sealer, heads, records, lockoutThreshold: async () => (await policies.current()).lockoutThreshold }, afterAcknowledged: () => gate.check() }),
      },
      "inkan.admin.v1.AuditService": auditService({ store, crypto, audit: auditLog }),
      "inkan.admin.v1.RegistrationService": {
        ...registrationService(signers, credentials, activation, now),
        ...credentialLifecycleService(lifecycle, now),
        ...keyImportService(transportKeys, keyImport, now),
        ...createCsrService(new SapCsrApproval({ transactions: sapTransactions, store, records, seals, freshness, keys: crypto, random: crypto, policies, audit: auditLog, claims })),
      },
      "inkan.sam.v1.SignerService": signerService(activation, lifecycle, challengeSigner, now, new SignerDevice({ records, oneTime: store, samKeys, policies, audit: auditLog, auditRecords: store })),
      "inkan.sam.v1.SignatureActivationService": {
        ...samInfoService({ keys: samKeys, policies, version: samVersion, maxMessageBytes: config.limits.readMaxBytes, transport: config.limits, methods, challengeKey: challengeSigner, clock: now }),
        ...scaCredentialsService(new ScaCredentials({ signers, credentials, policies, audit: auditLog }), policies, now),
        ...sapTransactionsService(sapTransactions, challengeSigner),
        ...sapSigningService(
          new SapAuthorize({ transactions: sapTransactions, seals, store, random: crypto, policies, samKeys, rSad: { samKeys, records, signers, oneTime: store, attempts: store, crypto, fields, policies, audit: auditLog, loginAssertions }, ...clock }),
          new SapSignHash({ transactions: sapTransactions, store, records, seals, freshness, keys: crypto, random: crypto, policies, audit: auditLog, claims, ...clock }),
          new SapSignStream({ transactions: sapTransactions, store, records, seals, freshness, keys: crypto, random: crypto, policies, audit: auditLog, claims, ...clock }),
        ),
      },
    };
    const started = await startServer({
      config,
      log,
      contract: contractFiles,
      authenticateAdmin: (req) => users.authenticate({ ...req, now: now() }),
      implementations,
      outerInterceptors: [...(metrics ? [metrics.interceptor()] : []), createRefusalAuditInterceptor(auditLog)],
      gateInterceptors: [createPolicyGateInterceptor(gate), createRestoreGateInterceptor(restore), createTrustedCaInterceptor(policies)],
      innerInterceptors: [createOperationAuditInterceptor(auditLog), createDualControlInterceptor(dual, { users, policies, credentials, signers, random: crypto, restore }, auditLog, now)],
    });
    server = started;
    applyHealth();
    gate.start();
    const opened = store;
    if (metrics && config.metricsListen) {
      const m = await serveMetrics({
        metrics, listen: config.metricsListen, health: started.health, services: services.map((s) => s.typeName), module: { get available() { return moduleState.available; }, get sessionPoolStats() { return sessionPool.sessionPoolStats; } },
        policy: gate, audit: auditLog, storeProbe: () => opened.latestAuditRecord(config.nodeId), transportStats: () => started.transportStats(), log,
      });
      metricsListener = m.listener;
      metricSources = m.sources;
    }
    const openedMetrics = metricsListener;
    // Expired one-time objects and transactions are deleted every 10 minutes, a day after expiry.
    const purge = schedulePurge({
      store: opened,
      clock: now,
      intervalMs: 10 * 60_000,
      retentionMs: 24 * 60 * 60_000,
      onPurged: (counts) => log.debug({ counts }, "expired one-time objects purged"),
      onError: (err) => log.warn({ err }, "purging expired one-time objects failed; retried at the next tick"),
    });
    const openedHeads = heads;
    const openedTime = timeSource;
    const openedLock = nodeLock;
    // Issue 22: `inkan restore` refuses while this process serves the data directory.
    const serving = markServing(config.dataDir);
    return {
      ...started,
      ...(openedMetrics ? { metricsUrl: openedMetrics.url } : {}),
      async close(graceMs) {
        stopWatchingModule?.();
        clearInterval(restoreWatch);
        gate.stop();
        openedHeads.stop();
        purge.stop();
        server = undefined; // the shutdown owns the health status from here on
        await started.close(graceMs);
        await openedMetrics?.close();
        await auditLog.record(samStopped({ cause: "shutdown" })).catch((err: unknown) => log.error({ err }, "audit write failed"));
        await auditLog.close().catch((err: unknown) => log.error({ err }, "audit close failed"));
        await opened.close();
        await openedTime.stop().catch(() => undefined);
        await openedLock?.close().catch(() => undefined);
        await crypto.close();
        serving.release();
      },
    };
  } catch (err) {
    await metricsListener?.close();
    clearInterval(restoreWatch);
    heads?.stop();
    stopWatchingModule?.();
    await audit?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    await timeSource?.stop().catch(() => undefined);
    await nodeLock?.close().catch(() => undefined);
    await crypto.close().catch(() => undefined);
    throw err;
  }
}

/** Issue 22: while a restore awaits acknowledgement, every call that signs or consumes a one-time object is refused. */
function createRestoreGateInterceptor(restore: RestoreGate): Interceptor {
  return (next) => async (req) => {
    restore.assertAllows(req.service.typeName);
    return next(req);
  };
}

/** Applies the security policy's audit checkpoint settings (audit_checkpoint_every_records, audit_checkpoint_interval). */
function applyCheckpointPolicy(audit: ChainedAuditLog, version: PolicyVersion | undefined, log: Logger): void {
  if (!version) return;
  const every = version.policy["auditCheckpointEveryRecords"];
  try {
    audit.setCheckpointPolicy({
      everyRecords: typeof every === "number" ? every : DEFAULT_CHECKPOINT_EVERY_RECORDS,
      intervalMs: durationMs(version.policy["auditCheckpointInterval"], "auditCheckpointInterval"),
    });
  } catch (err) {
    // The policy was validated when written; a value out of range keeps the cadence in force.
    log.error({ err }, "the security policy's audit checkpoint settings were not applied");
  }
}

/** The unary implementation of a method by full path ("/package.Service/Method"). */
function handlerOf(implementations: Record<string, Record<string, unknown>>, services: DescService[], path: string) {
  const [, serviceName = "", methodName = ""] = path.split("/");
  const method = services.find((s) => s.typeName === serviceName)?.methods.find((m) => m.name === methodName);
  const impl = method && implementations[serviceName]?.[method.localName];
  return method?.methodKind === "unary" && typeof impl === "function" ? (impl as (m: unknown, ctx: HandlerContext) => Promise<unknown>) : undefined;
}

/** One log line per change of the crypto module's state (issue 22); reasons are CKR names or check messages, never secrets. */
function logModuleChange(log: Logger, change: ModuleStateChange): void {
  if (change.state === "lost") log.error({ cause: change.reason }, "crypto module lost: calls refused, NOT_SERVING, reconnecting");
  else if (change.state === "reconnect-failed" && change.retryInMs === null) log.fatal({ attempt: change.attempt, cause: change.reason }, "crypto module reconnect failed: the PIN was refused; not retrying (retries could lock the token's user); fix it and restart");
  else if (change.state === "reconnect-failed") log.warn({ attempt: change.attempt, cause: change.reason, retryInMs: change.retryInMs }, "crypto module reconnect failed");
  else log.warn({ attempts: change.attempts, downMs: change.downMs }, "crypto module reconnected and checked: SERVING");
}

/** The system keys exist and work: record sealing, field encryption, audit and challenge signing. */
async function selfCheck(crypto: FullCryptoModule): Promise<void> {
  const probe = new TextEncoder().encode("inkan start-up self-check");
  try {
    await crypto.hmacSha256("record-seal", probe);
    const sealed = await crypto.encrypt("field-encryption", probe, probe);
    await crypto.decrypt("field-encryption", sealed, probe);
    await crypto.systemPublicKey("audit-signing");
    await crypto.systemPublicKey("challenge-signing");
  } catch (err) {
    throw new InkanError("CRYPTO_MODULE_FAILURE", "the crypto module's system keys are missing or unusable; run `inkan init`", { cause: err });
  }
}
