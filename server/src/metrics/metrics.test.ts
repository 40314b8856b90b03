/**
 * Issue 23: the metrics listener on the real server (mTLS, SoftHSM2 behind the PKCS#11 fault shim,
 * SQLite). A small workload (signatures by SignHash and SignStream, a refused token, a lockout, a
 * record edited in the database, a failing store and audit write, a lost crypto module) moves every
 * metric; /metrics shows each non-zero and never an id the workload created; /readyz turns 503 when
 * a check fails while /healthz stays 200; nothing else is served.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createClient } from "@connectrpc/connect";
import { buildRSad, type DeviceKey } from "@inkan/sdk";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { HashAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildFaultShim, type FaultShim } from "../crypto/pkcs11/testing/fault-shim.js";
import { InkanError } from "../errors.js";
import type { Store } from "../store/port.js";
import { refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";
import { metricNames } from "./metrics.js";

const built = buildFaultShim();
const shim: FaultShim | undefined = "shim" in built ? built.shim : undefined;
if (!shim) console.warn(`metrics test: the crypto-module loss part is skipped: ${"skipped" in built ? built.skipped : ""}`);

let t: TestServer;
let operator: PrivilegedPerson;
type Signer = { signerId: string; credentialId: string; deviceKey: DeviceKey };
let alice: Signer;
let bob: Signer;
/** Every id and secret the workload saw: none may appear in a scrape. */
const secrets = new Set<string>();
/** Fault switches of the store the server uses (hooks.wrapStore). */
const faults = { storeDown: false, auditAppendFails: 0 };

const sca = () => createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
const metricsUrl = () => t.server.metricsUrl!;
const get = (path: string, init?: RequestInit) => fetch(metricsUrl() + path, init);

/** The scrape as name{labels} -> value. */
async function scrape(): Promise<{ text: string; samples: Map<string, number> }> {
  const res = await get("/metrics");
  expect(res.status).toBe(200);
  const text = await res.text();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { text, samples };
}

/** The sum of every sample of `name` whose labels contain all of `labels` (e.g. `method="SignHash"`). */
function total(samples: Map<string, number>, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const [key, v] of samples) {
    const base = key.split("{", 1)[0];
    if (base === name && labels.every((l) => key.includes(l))) sum += v;
  }
  return sum;
}

async function waitFor(what: string, condition: () => Promise<boolean>, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const hashOf = (seed: string) => new Uint8Array(createHash("sha256").update(`${seed}-${Math.random()}`).digest());

/** BeginTransaction + the signer's R.SAD + Authorize: the SAD token. */
async function authorized(who: Signer, hashes: Uint8Array[], pin = testPin): Promise<{ transactionId: string; token: string }> {
  const { sadChallenge: ch } = await sca().beginTransaction({
    credentialId: who.credentialId, signerId: who.signerId, hashAlgorithm: HashAlgorithm.SHA256, numSignatures: hashes.length, hashes, description: "metrics",
  });
  secrets.add(ch!.transactionId);
  const rSad = await buildRSad({
    deviceKey: who.deviceKey, signerId: ch!.signerId, credentialId: ch!.credentialId, samId: ch!.audience, transactionId: ch!.transactionId,
    challenge: ch!.challenge, dtbsrDigest: ch!.dtbsrDigest, count: ch!.numSignatures, hashAlgorithm: ch!.hashAlgorithm, description: ch!.description, pin, samKey: ch!.encryptionKey!,
  });
  const res = await sca().authorize({ transactionId: ch!.transactionId, rSad });
  secrets.add(res.sadToken);
  return { transactionId: ch!.transactionId, token: res.sadToken };
}

async function signer(): Promise<Signer> {
  const a = await activeSignerWithCredential(t, operator);
  const s = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey };
  secrets.add(s.signerId).add(s.credentialId).add(a.code);
  return s;
}

function faultyStore(store: Store): Store {
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (faults.storeDown && prop === "latestAuditRecord") return Promise.reject(new InkanError("STORE_FAILURE", "injected: the store is down"));
        if (faults.auditAppendFails > 0 && (prop === "appendAuditRecord" || prop === "appendAuditRecords")) {
          faults.auditAppendFails--;
          return Promise.reject(new InkanError("STORE_FAILURE", "injected: the audit append failed"));
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

describe("Issue 23: metrics, /healthz and /readyz on their own plain-HTTP listener", () => {
  beforeAll(async () => {
    const module = shim ? { pkcs11Library: shim.library, pkcs11Token: "pkcs11:token=inkan", pkcs11PinFile: "hsm/user-pin" } : {};
    t = await startTestServer({ metricsListen: "127.0.0.1:0", policyCheckIntervalMs: "200", ...module }, { wrapStore: faultyStore });
    operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-metrics");
    alice = await signer();
    bob = await signer();
  }, 90_000);
  afterAll(async () => {
    await t?.close();
    shim?.remove();
  });

  it("serves only /metrics, /healthz and /readyz, without a client certificate", async () => {
    expect(metricsUrl()).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await get("/healthz")).status).toBe(200);
    const ready = await get("/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, checks: { serving: true, cryptoModule: true, policy: true, audit: true, store: true } });
    for (const path of ["/", "/metrics/", "/inkan.sam.v1.SignatureActivationService/GetInfo", "/debug", "/healthz/x"]) {
      expect((await get(path)).status, path).toBe(404);
    }
    expect((await get("/metrics", { method: "POST", body: "x" })).status).toBe(405);
  });

  it("a workload moves every metric, and no label or value carries an id or secret the workload created", async () => {
    // Signatures by SignHash (2) and by SignStream (3).
    const h = [hashOf("a1"), hashOf("a2")];
    const a = await authorized(alice, h);
    expect((await sca().signHash({ authorization: { case: "sadToken", value: a.token }, hashes: h })).signatures).toHaveLength(2);
    const b = await authorized(alice, [hashOf("b1"), hashOf("b2"), hashOf("b3")]);
    let streamed = 0;
    for await (const m of sca().signStream({ sadToken: b.token, startIndex: 0 })) {
      streamed += m.signatures.length;
      if (m.resumeToken) secrets.add(m.resumeToken);
    }
    expect(streamed).toBe(3);
    // A token that is no token: refused.
    await refusalOf(sca().signHash({ authorization: { case: "sadToken", value: "not-a-token-" + "x".repeat(40) }, hashes: [hashOf("c")] }));
    // An open transaction, authorized and not yet signed.
    await authorized(alice, [hashOf("open")]);
    // Bob's PIN wrong five times: AUTHENTICATION_FAILED, then his credential is locked (T-2.1.2.2).
    for (let i = 0; i < 5; i++) await refusalOf(authorized(bob, [hashOf(`bob${i}`)], `00000${i}`));
    // A record edited in the database: INTEGRITY_VIOLATION when read.
    const db = new Database(join(t.dataDir, "store.sqlite3"));
    try {
      db.prepare("UPDATE signers SET body = json_set(body, '$.legalName', 'Mallory') WHERE id = ?").run(bob.signerId);
    } finally {
      db.close();
    }
    expect((await refusalOf(createClient(RegistrationService, t.as(operator)).getSigner({ signerId: bob.signerId }))).code).toBeDefined();
    // An audit append that fails: the operation fails closed, counted.
    faults.auditAppendFails = 1;
    await refusalOf(createClient(RegistrationService, t.as(operator)).getSigner({ signerId: alice.signerId }));
    faults.auditAppendFails = 0;

    const { text, samples } = await scrape();
    const signHash = 'method="SignHash"';
    const nonZero: Record<string, number> = {
      rpcs: total(samples, "inkan_rpc_requests_total", 'method="inkan.sam.v1.SignatureActivationService/SignHash"', 'code="OK"'),
      rpcRefused: total(samples, "inkan_rpc_requests_total", 'method="inkan.sam.v1.SignatureActivationService/Authorize"', 'code="UNAUTHENTICATED"') + total(samples, "inkan_rpc_requests_total", 'method="inkan.sam.v1.SignatureActivationService/Authorize"', 'code="PERMISSION_DENIED"'),
      latency: total(samples, "inkan_rpc_duration_seconds_count", 'method="inkan.sam.v1.SignatureActivationService/SignStream"'),
      releasedHash: total(samples, "inkan_signatures_released_total", signHash),
      releasedStream: total(samples, "inkan_signatures_released_total", 'method="SignStream"'),
      refused: total(samples, "inkan_signatures_refused_total", signHash),
      authorized: total(samples, "inkan_authorize_total", 'outcome="AUTHORIZED"'),
      authFailed: total(samples, "inkan_authorize_total", 'outcome="AUTHENTICATION_FAILED"'),
      lockouts: total(samples, "inkan_lockouts_total"),
      integrity: total(samples, "inkan_integrity_violations_total", 'kind="signer"'),
      auditEvents: total(samples, "inkan_audit_events_total", 'event="signature.created"'),
      auditFailures: total(samples, "inkan_audit_write_failures_total", 'operation="record"'),
      uncheckpointed: total(samples, "inkan_audit_uncheckpointed_records"),
      checkpointAge: total(samples, "inkan_audit_checkpoint_age_seconds"),
      auditUsable: total(samples, "inkan_audit_log_usable"),
      transactions: total(samples, "inkan_sap_transactions_active"),
      connections: total(samples, "inkan_transport_connections"),
      cryptoLatency: total(samples, "inkan_crypto_module_call_duration_seconds_count", 'operation="sign"') + total(samples, "inkan_crypto_module_call_duration_seconds_count", 'operation="signMany"'),
      cryptoCalls: total(samples, "inkan_crypto_module_call_duration_seconds_count"),
      moduleAvailable: total(samples, "inkan_crypto_module_available"),
      sessionsOpen: total(samples, "inkan_crypto_sessions", 'state="open"'),
      storeLatency: total(samples, "inkan_store_call_duration_seconds_count"),
      storeErrors: total(samples, "inkan_store_call_errors_total", 'operation="appendAuditRecord'),
      policy: total(samples, "inkan_policy_integrity_ok"),
      ready: total(samples, "inkan_ready"),
    };
    console.log(`metrics after the workload (scrape ${text.length} bytes, ${samples.size} samples): ${JSON.stringify(nonZero)}`);
    for (const [what, value] of Object.entries(nonZero)) expect(value, what).toBeGreaterThan(0);
    expect(nonZero["releasedHash"]).toBe(2);
    expect(nonZero["releasedStream"]).toBe(3);
    expect(nonZero["lockouts"]).toBe(1);
    // Gauges that the workload left at rest are present (declared), at zero.
    for (const idle of ["inkan_sign_streams_open", "inkan_crypto_session_waiters", "inkan_transport_calls_in_progress", "inkan_rpc_in_flight"]) {
      expect(text, idle).toContain(`# TYPE ${idle} gauge`);
    }
    // Every metric the SAM declares is in the scrape.
    for (const name of metricNames) expect(text, name).toContain(`# TYPE ${name} `);
    // No label or value carries an id or secret the workload created.
    for (const secret of [...secrets, testPin]) expect(text.includes(secret), `the scrape contains ${secret.slice(0, 12)}…`).toBe(false);
  }, 120_000);

  it("/readyz is 503 while the store does not answer, 200 again once it does; /healthz stays 200", async () => {
    faults.storeDown = true;
    try {
      const res = await get("/readyz");
      expect(res.status).toBe(503);
      expect(((await res.json()) as { checks: Record<string, boolean> }).checks).toMatchObject({ store: false, cryptoModule: true, policy: true });
      expect((await get("/healthz")).status).toBe(200);
      expect(total((await scrape()).samples, "inkan_store_call_errors_total", 'operation="latestAuditRecord"')).toBeGreaterThan(0);
    } finally {
      faults.storeDown = false;
    }
    expect((await get("/readyz")).status).toBe(200);
  });

  it.skipIf(!shim)("/readyz is 503 while the crypto module is lost (gRPC health NOT_SERVING), /healthz stays 200; ready again after the reconnect", async () => {
    shim!.outage("CKR_DEVICE_REMOVED");
    try {
      // A call that needs the module meets the outage: the supervisor reports the module lost.
      await refusalOf(authorized(alice, [hashOf("lost")]));
      await waitFor("/readyz says not ready", async () => (await get("/readyz")).status === 503);
      const body = (await (await get("/readyz")).json()) as { ready: boolean; checks: Record<string, boolean> };
      expect(body.ready).toBe(false);
      expect(body.checks).toMatchObject({ cryptoModule: false, serving: false });
      expect((await get("/healthz")).status).toBe(200);
      const { samples } = await scrape();
      expect(total(samples, "inkan_crypto_module_available")).toBe(0);
      expect(total(samples, "inkan_ready")).toBe(0);
      expect(total(samples, "inkan_crypto_module_losses_total")).toBe(1);
      expect(total(samples, "inkan_crypto_module_call_errors_total")).toBeGreaterThan(0);
    } finally {
      shim!.clear();
    }
    await waitFor("/readyz says ready again", async () => (await get("/readyz")).status === 200, 30_000);
    expect(total((await scrape()).samples, "inkan_crypto_module_available")).toBe(1);
  }, 60_000);

  // Last: the gate stays closed until two security officers set a new policy.
  it("R-3.2.2.3 a security policy edited in the database: inkan_policy_integrity_ok 0, /readyz 503 (policy), /healthz 200", async () => {
    const db = new Database(join(t.dataDir, "store.sqlite3"));
    try {
      db.prepare("UPDATE policy_versions SET body = json_set(body, '$.lockoutThreshold', 1000000) WHERE id = 'security-policy'").run();
    } finally {
      db.close();
    }
    await waitFor("the policy gate closes", async () => total((await scrape()).samples, "inkan_policy_integrity_ok") === 0);
    const res = await get("/readyz");
    expect(res.status).toBe(503);
    expect(((await res.json()) as { checks: Record<string, boolean> }).checks).toMatchObject({ policy: false, serving: false, cryptoModule: true });
    expect((await get("/healthz")).status).toBe(200);
    const { samples } = await scrape();
    expect(total(samples, "inkan_integrity_violations_total", 'kind="policy"')).toBeGreaterThan(0);
    expect(total(samples, "inkan_ready")).toBe(0);
  });
});
