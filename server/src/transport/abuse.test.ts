import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { request as httpsRequest } from "node:https";
import { Code, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@inkan/sdk/gen/grpc/health/v1/health_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorOf, startTestServer, type TestServer } from "../testing/harness.js";
import { rawH2Connect, type RawH2Connection } from "../testing/raw-h2.js";

// Issue 17.6: stream abuse, rapid resets, half-open sockets and slow requests leave the SAM's
// memory bounded and its health check answering. Sized for a 2-core CI machine; loopback only; no
// timed assertions (latencies are printed; waits poll for a state with a generous deadline).

const mib = (n: number) => Math.round(n / 1048576);
const getInfo = `/${SignatureActivationService.typeName}/GetInfo`;
const connectProto = { "content-type": "application/proto", "connect-protocol-version": "1" };

/** Polls `cond` until it holds; fails only after `deadlineMs`, so a slow machine is no failure. */
async function until(what: string, cond: () => boolean, deadlineMs = 30_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`still waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Samples this process's RSS (the server runs in it) until stopped: the peak over the baseline. */
function rssSampler() {
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
  return {
    before,
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage().rss);
      return { beforeMib: mib(before), peakMib: mib(peak), growthMib: mib(peak - before) };
    },
  };
}

async function timedHealth(t: TestServer, who = t.pki.sca): Promise<number> {
  const started = performance.now();
  const health = createClient(Health, t.transport("grpc", who));
  expect((await health.check({}, { timeoutMs: 30_000 })).status).toBe(Status.SERVING);
  return Math.round(performance.now() - started);
}

describe("stream abuse on few connections (issue 17.6)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("5 connections x 500 streams that never send their message: at most 100 streams per connection and 128 calls run, memory stays bounded, health answers", async () => {
    const rss = rssSampler();
    const conns: RawH2Connection[] = await Promise.all(Array.from({ length: 5 }, () => rawH2Connect(t.server.url, { ca: t.pki.ca, ...t.pki.sca })));
    for (const c of conns) for (let i = 0; i < 500; i++) c.open(getInfo, connectProto);
    // Every stream beyond the limit is refused (RST_STREAM) or its connection is told to go away.
    // Every stream beyond the limits is refused (RST_STREAM REFUSED_STREAM, or an answer with
    // LIMIT_EXCEEDED), or its connection is closed for breaking the protocol.
    await until("the server answered every stream beyond the limits", () => conns.every((c) => c.seen.rstStream + c.seen.headers >= 400 || c.seen.goaway > 0 || c.isClosed()));
    const healthMs = await timedHealth(t, t.pki.admin);
    const memory = rss.stop();
    const stats = t.server.transportStats();
    console.log("many streams:", { ...memory, healthMs, stats, seen: conns.map((c) => c.seen) });
    for (const c of conns) expect(c.seen.rstStream + c.seen.headers > 0 || c.isClosed(), "streams beyond the limit were refused").toBe(true);
    expect(stats.peakStreamsPerConnection).toBeLessThanOrEqual(100);
    expect(stats.peakCallsInProgress).toBeLessThanOrEqual(128);
    expect(stats.refusedCalls).toBeGreaterThan(0);
    expect(memory.growthMib, "RSS growth during the attack (MiB)").toBeLessThan(256);
    for (const c of conns) c.close();
    await until("the attack's call slots were given back", () => t.server.transportStats().callsInProgress === 0);
    // The limits a client must respect are published (GetInfo, Limits).
    const { limits } = await createClient(SignatureActivationService, t.transport("grpc", t.pki.sca)).getInfo({});
    expect(limits).toMatchObject({ maxConcurrentStreams: 100, maxConcurrentCalls: 128, maxHeaderBytes: 16_384 });
    expect([limits?.requestTimeout?.seconds, limits?.idleTimeout?.seconds]).toEqual([60n, 300n]);
  }, 60_000);

  it("a rapid-reset burst of 20,000 streams leaves memory bounded, no call slot held, and health answering", async () => {
    const rss = rssSampler();
    const total = 20_000;
    let sent = 0;
    let connections = 0;
    let healthMs = -1;
    const probe = (async () => {
      await until("the burst is under way", () => sent >= total / 4);
      healthMs = await timedHealth(t, t.pki.admin);
    })();
    while (sent < total) {
      const c = await rawH2Connect(t.server.url, { ca: t.pki.ca, ...t.pki.sca });
      connections++;
      // Open and reset at once, as fast as the socket takes it, until the server ends the connection.
      for (let burst = 0; burst < 10 && !c.isClosed() && sent < total; burst++) {
        for (let i = 0; i < 200 && sent < total; i++, sent++) c.reset(c.open(getInfo, connectProto, new Uint8Array(0)));
        await new Promise((r) => setImmediate(r));
      }
      c.close();
    }
    await probe;
    await until("every reset call gave its slot back", () => t.server.transportStats().callsInProgress === 0);
    const memory = rss.stop();
    const stats = t.server.transportStats();
    console.log("rapid reset:", { ...memory, healthMs, connections, resets: sent, stats });
    expect(stats.peakCallsInProgress).toBeLessThanOrEqual(128);
    expect(stats.resetFloods, "connections closed for resetting too fast").toBeGreaterThan(0);
    expect(memory.growthMib, "RSS growth during the burst (MiB)").toBeLessThan(256);
    expect(await timedHealth(t)).toBeGreaterThanOrEqual(0);
  }, 60_000);
});

describe("timeouts and connection limits (issue 17.6)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ handshakeTimeoutMs: "300", idleTimeoutMs: "300", requestTimeoutMs: "300", maxConnections: "40" });
  });
  afterAll(async () => {
    await t?.close();
  });
  const { hostname, port } = { hostname: "127.0.0.1", port: () => Number(new URL(t.server.url).port) };

  it("closes half-open TLS sockets (no ClientHello, or half of one) after the handshake timeout", async () => {
    const sockets: Socket[] = [];
    for (let i = 0; i < 30; i++) {
      const s = netConnect(port(), hostname);
      s.on("error", () => undefined);
      // Half of them send the first bytes of a TLS record and stop.
      if (i % 2) s.once("connect", () => s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])));
      sockets.push(s);
    }
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.once("close", () => resolve()))));
    expect(t.server.transportStats().handshakeTimeouts).toBeGreaterThanOrEqual(30);
    console.log("half-open:", t.server.transportStats());
  }, 30_000);

  it("closes TLS connections that never start HTTP/2 or HTTP/1.1 after the idle timeout", async () => {
    const closed = await Promise.all(
      ["h2", "http/1.1"].map(
        (alpn) =>
          new Promise<string>((resolve, reject) => {
            const s = tlsConnect({ host: hostname, port: port(), ca: t.pki.ca, ...t.pki.sca, ALPNProtocols: [alpn], servername: "localhost" });
            s.on("error", () => undefined);
            s.resume(); // read what the server sends (its GOAWAY), so its close is seen
            let connected = false;
            s.once("secureConnect", () => (connected = true));
            s.once("close", () => (connected ? resolve(alpn) : reject(new Error(`${alpn}: closed before the handshake`))));
          }),
      ),
    );
    expect(closed.sort()).toEqual(["h2", "http/1.1"]);
  }, 30_000);

  it("resets streams whose request never arrives whole after the request timeout, and gives their call slots back", async () => {
    const c = await rawH2Connect(t.server.url, { ca: t.pki.ca, ...t.pki.sca });
    for (let i = 0; i < 20; i++) c.open(getInfo, connectProto);
    await until("all 20 streams reset", () => c.seen.rstStream >= 20 || c.seen.goaway > 0);
    await until("their call slots given back", () => t.server.transportStats().callsInProgress === 0);
    c.close();
    expect(await timedHealth(t)).toBeGreaterThanOrEqual(0);
  }, 30_000);

  it("closes connections beyond maxConnections on accept and keeps serving the others", async () => {
    const before = t.server.transportStats().droppedConnections;
    const held = await Promise.all(
      Array.from({ length: 45 }, () =>
        new Promise<Socket>((resolve) => {
          const s = netConnect(port(), hostname, () => resolve(s));
          s.on("error", () => undefined);
        }),
      ),
    );
    await until("the extra connections were dropped", () => t.server.transportStats().droppedConnections - before >= 5, 10_000);
    for (const s of held) s.destroy();
    await until("the held connections are gone", () => t.server.transportStats().connections === 0);
    expect(await timedHealth(t)).toBeGreaterThanOrEqual(0);
  }, 30_000);

  it("refuses request headers over maxHeaderBytes, on HTTP/2 and HTTP/1.1", async () => {
    const big = "x".repeat(20_000);
    const h2 = createClient(Health, t.transport("grpc", t.pki.sca));
    const err = await errorOf(h2.check({}, { headers: { "x-big": big } }));
    expect(err.code).toBe(Code.ResourceExhausted);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(`${t.server.url}/grpc.health.v1.Health/Check`, { method: "POST", ca: t.pki.ca, ...t.pki.sca, headers: { ...connectProto, "x-big": big } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(431);
  }, 30_000);
});

describe("calls at once per client certificate (issue 17.6)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ maxConcurrentCalls: "3", maxConcurrentCallsPerClient: "2" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("refuses a client's call beyond its limit with RESOURCE_EXHAUSTED LIMIT_EXCEEDED, serves other clients, and always answers health", async () => {
    const health = createClient(Health, t.transport("grpc", t.pki.sca));
    const stop = new AbortController();
    const seen: number[] = [];
    const watch = () =>
      (async () => {
        for await (const m of health.watch({}, { signal: stop.signal })) seen.push(m.status);
      })().catch(() => undefined);
    const watches = [watch(), watch()];
    await until("both watches hold their slot", () => seen.length >= 2);
    const sap = createClient(SignatureActivationService, t.transport("grpc", t.pki.sca));
    const refused = await errorOf(sap.getInfo({}));
    expect(refused.code).toBe(Code.ResourceExhausted);
    expect(inkanErrorReason(refused)).toBe(Reason.LIMIT_EXCEEDED);
    expect((await health.check({})).status).toBe(Status.SERVING); // probes are not counted
    // Another client certificate still has the node's last slot.
    const admin = createClient(Health, t.transport("grpc", t.pki.admin));
    const adminWatch = admin.watch({}, { signal: stop.signal })[Symbol.asyncIterator]();
    expect((await adminWatch.next()).value?.status).toBe(Status.SERVING);
    stop.abort();
    await Promise.all(watches);
    await until("the slots were given back", () => t.server.transportStats().callsInProgress === 0);
    expect((await sap.getInfo({})).name).toBe("Inkan");
  }, 30_000);
});
