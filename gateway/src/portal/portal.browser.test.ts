/**
 * The signer portal end to end (issue 15): the real SAM (startTestServer), the real gateway, the
 * bundled page in headless Chromium, and an SCA that posts its SadChallenge to the gateway.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { createInkanClient, InkanError, Reason, type InkanClient } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type PrivilegedPerson, type TestServer } from "../../../server/src/testing/harness.js";
import { gatewayConfig } from "../config.js";
import { GatewayRelay, SignerDidNotApprove } from "../requests/gateway-relay-client.js";
import { startGateway, type Gateway } from "../server.js";
import type { SqliteGatewayStore } from "../store/gateway-store.js";
import { axeViolations, chromiumPath, launchChromium, newDevice, screenshot } from "../testing/browser.js";
import { activatedDevice as activatedDeviceIn } from "../testing/portal-signer.js";
import { httpsRequest } from "../testing/https.js";
import { buildPortal } from "./build.js";

if (!chromiumPath) console.warn("portal browser tests skipped: no chromium (scripts/setup.sh installs it; or set CHROMIUM_PATH)");

const pin = "135792468";
// Page functions reach the page's document as (globalThis as any).document: the test is type-checked
// without the DOM library, and the page's CSP forbids evaluating strings.

// Generous per-test time: a browser, the SAM and SoftHSM2 share a busy 2-core machine with other test files.
describe.skipIf(!chromiumPath)("signer portal in Chromium (issue 15)", { timeout: 120_000 }, () => {
  let t: TestServer;
  let operator: PrivilegedPerson;
  let gateway: Gateway;
  let browser: Browser;
  let inkan: InkanClient;
  let relay: GatewayRelay;
  let listen: string;

  const startGw = async () => {
    gateway = await startGateway(gatewayConfig({ dataDir: t.dataDir, listen, samUrl: t.server.url }));
    listen = gateway.url.replace("https://", "");
    relay = new GatewayRelay({ baseUrl: gateway.url, tls: { ca: t.pki.ca, ...t.pki.sca } as { ca: string; cert: string; key: string } });
  };

  beforeAll(async () => {
    await buildPortal();
    t = await startTestServer();
    operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-portal");
    listen = "127.0.0.1:0";
    await startGw();
    inkan = createInkanClient({ baseUrl: t.server.url, tls: { ca: t.pki.ca, ...t.pki.sca } as { ca: string; cert: string; key: string } });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    await t?.close();
  });

  /** Activates a freshly enrolled signer on a new browser profile through the page; its credential. */
  const activatedDevice = (name: string) => activatedDeviceIn({ browser, t, operator, gatewayUrl: gateway.url, pin, name });

  const hashes = (n: number, tag: string) => Array.from({ length: n }, (_, i) => createHash("sha256").update(`${tag} ${i}`).digest());

  /** The SCA side running in the background: begin, post to the gateway, authorize, sign, report progress. */
  function scaSigns(signerId: string, credentialId: string, n: number, description: string, onUrl: (url: string) => void) {
    return (async () => {
      const tx = await inkan.beginTransaction({ signerId, credentialId, hashes: hashes(n, description), description });
      const requestId = await relay.authorize(tx, onUrl);
      const signatures = await tx.signAll({ onProgress: ({ signed }) => void relay.progress(requestId, signed) });
      await relay.progress(requestId, signatures.length);
      return signatures;
    })();
  }

  const urlFrom = () => {
    let resolve!: (u: string) => void;
    const url = new Promise<string>((r) => (resolve = r));
    return { url, onUrl: (u: string) => resolve(u) };
  };

  async function openRequest(page: Page, url: string) {
    await page.goto("about:blank");
    await page.goto(url);
    await page.waitForSelector("#request-body:not([hidden]), #request-missing:not([hidden]), body[data-view=activate]");
  }

  async function approveWith(page: Page, thePin: string) {
    await page.fill("#approve-pin", thePin);
    await page.click("#approve");
  }

  let alice: Awaited<ReturnType<typeof activatedDevice>>;

  it("activates a device: non-extractable key in IndexedDB, what was registered is shown; no serious axe violation", async () => {
    alice = await activatedDevice("1-registered");
    const { page } = alice;
    expect(await page.textContent("#registered-signer")).toBe(alice.signerId);
    expect(await page.textContent("#registered-kid")).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Evaluated in the page (a string: the test is type-checked without the DOM library).
    const stored = await page.evaluate(`(async () => {
      const db = await new Promise((r) => { const q = indexedDB.open("inkan-portal"); q.onsuccess = () => r(q.result); });
      const v = await new Promise((r) => { const q = db.transaction("device").objectStore("device").get("current"); q.onsuccess = () => r(q.result); });
      return { extractable: v.deviceKey.privateKey.extractable, type: v.deviceKey.privateKey.type };
    })()`);
    expect(stored).toEqual({ extractable: false, type: "private" });
    expect(await axeViolations(page)).toEqual([]);
    await page.click("#lang-ja");
    expect(await page.textContent("#view-registered h1")).toBe("登録しました");
    expect(await page.getAttribute("html", "lang")).toBe("ja");
    await screenshot(page, "1-registered-ja");
    expect(await axeViolations(page)).toEqual([]);
    await page.click("#lang-en");
    expect(alice.cspViolations).toEqual([]);
  });

  it("serves the page with a strict CSP (scripts only from its own origin) and no inline script", async () => {
    const res = await httpsRequest(`${gateway.url}/`, { ca: t.pki.ca });
    expect(res.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(res.headers["content-security-policy"]).not.toContain("unsafe-inline");
    expect(res.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(res.body).not.toMatch(/https?:\/\//);
  });

  it("approves a 3-document batch: the request shows what the SAM signed; the SCA gets the R.SAD and signs", async () => {
    const { page } = alice;
    const { url, onUrl } = urlFrom();
    const signing = scaSigns(alice.signerId, alice.credentialId, 3, "Invoices 2026-12 (3)", onUrl);
    await openRequest(page, await url);
    expect(await page.textContent("#request-description")).toBe("Invoices 2026-12 (3)");
    expect(await page.textContent("#request-count")).toBe("3");
    expect(await page.textContent("#request-credential")).toBe(alice.credentialId);
    expect(await page.textContent("#request-sca")).toContain("sca-dev");
    expect(await page.isVisible("#request-verified")).toBe(true);
    await screenshot(page, "2-request");
    expect(await axeViolations(page)).toEqual([]);
    await approveWith(page, pin);
    expect(await signing).toHaveLength(3);
    await page.waitForSelector("body[data-request-state=authorized][data-signed='3']");
    await screenshot(page, "3-signed");
    await page.goto(`${gateway.url}/#requests`);
    await page.waitForSelector("body[data-view=requests]");
    await screenshot(page, "4-requests");
    expect(await axeViolations(page)).toEqual([]);
  });

  it("approves a 1,000-document batch, with progress", async () => {
    const { page } = alice;
    const { url, onUrl } = urlFrom();
    const signing = scaSigns(alice.signerId, alice.credentialId, 1000, "Payslips December (1,000)", onUrl);
    await openRequest(page, await url);
    expect(await page.textContent("#request-count")).toBe("1000");
    await approveWith(page, pin);
    expect(await signing).toHaveLength(1000);
    await page.waitForSelector("body[data-request-state=authorized][data-signed='1000']", { timeout: 60_000 });
    expect(await page.getAttribute("#request-progress", "value")).toBe("1000");
  });

  it("a device of no signer sees nothing of a request; a device of another signer neither", async () => {
    const { url, onUrl } = urlFrom();
    const tx = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, hashes: hashes(1, "private"), description: "Private contract" });
    const waiting = relay.authorize(tx, onUrl).catch((e: unknown) => e);
    const link = await url;
    const stranger = await newDevice(browser);
    await openRequest(stranger.page, link);
    expect(await stranger.page.isVisible("#activate-unregistered")).toBe(true);
    expect(await stranger.page.content()).not.toContain("Private contract");
    await screenshot(stranger.page, "5-stranger");
    expect(await axeViolations(stranger.page)).toEqual([]);
    // The API refuses a request without a device-authenticated session, and with another signer's session.
    const id = link.split("request=")[1]!;
    expect((await httpsRequest(`${gateway.url}/api/portal/requests/${id}`, { ca: t.pki.ca })).status).toBe(401);
    const bob = await activatedDevice("");
    await openRequest(bob.page, link);
    expect(await bob.page.isVisible("#request-missing")).toBe(true);
    expect(await bob.page.content()).not.toContain("Private contract");
    await stranger.context.close();
    await bob.context.close();
    await tx.cancel();
    void waiting;
  });

  it("R-3.2.1.1, T-2.1.2.2: a wrong PIN is refused and may be entered again, up to the lockout", async () => {
    const carol = await activatedDevice("");
    const { page } = carol;
    /** One wrong PIN on the page: waits for the SAM's verdict to come back through the SCA and the gateway. */
    const wrongPin = async (i: number) => {
      const before = await page.getAttribute("body", "data-version");
      await approveWith(page, `00000${i}x`);
      await page.waitForFunction((v) => (globalThis as any).document.body.dataset.requestState === "refused" && (globalThis as any).document.body.dataset.version !== v, before);
      expect(await page.textContent("#request-outcome"), `attempt ${i}`).toContain("Wrong PIN");
    };
    // The policy allows 3 attempts per transaction (GetInfo limits) and locks the signer at 5 failures: two transactions.
    const first = urlFrom();
    const tx1 = await inkan.beginTransaction({ signerId: carol.signerId, credentialId: carol.credentialId, hashes: hashes(1, "lock 1"), description: "Lockout 1" });
    const firstOutcome = relay.authorize(tx1, first.onUrl).then(() => "authorized", (e: unknown) => e);
    await openRequest(page, await first.url);
    for (let i = 1; i <= 2; i++) await wrongPin(i);
    await screenshot(page, "6-wrong-pin");
    // The third wrong PIN spends the transaction's attempts: the page says so instead of asking again.
    await approveWith(page, "000003x");
    await page.waitForSelector("body[data-request-state=failed]");
    expect(await page.textContent("#request-outcome")).toContain("Too many wrong PINs for this request");
    expect(await page.isHidden("#approve-form")).toBe(true);
    const firstErr = await firstOutcome;
    expect(firstErr).toBeInstanceOf(InkanError);
    expect((firstErr as InkanError).reason).toBe(Reason.AUTHENTICATION_FAILED);

    const second = urlFrom();
    const tx2 = await inkan.beginTransaction({ signerId: carol.signerId, credentialId: carol.credentialId, hashes: hashes(1, "lock 2"), description: "Lockout 2" });
    const outcome = relay.authorize(tx2, second.onUrl).then(() => "authorized", (e: unknown) => e);
    await openRequest(page, await second.url);
    for (let i = 4; i <= 5; i++) await wrongPin(i);
    // The threshold is reached: even the right PIN is now refused, for good.
    await approveWith(page, pin);
    await page.waitForSelector("body[data-request-state=failed]");
    await screenshot(page, "7-locked");
    const err = await outcome;
    expect(err).toBeInstanceOf(InkanError);
    expect((err as InkanError).reason).toBe(Reason.CREDENTIAL_LOCKED);
    expect(await page.textContent("#request-outcome")).toContain("locked");
    await carol.context.close();
  });

  it("declines: the SCA is told", async () => {
    const { page } = alice;
    const { url, onUrl } = urlFrom();
    const tx = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, hashes: hashes(2, "decline"), description: "Not mine" });
    const outcome = relay.authorize(tx, onUrl).then(() => "authorized", (e: unknown) => e);
    await openRequest(page, await url);
    await page.click("#decline");
    await page.waitForSelector("body[data-request-state=declined]");
    await screenshot(page, "8-declined");
    const err = await outcome;
    expect(err).toBeInstanceOf(SignerDidNotApprove);
    expect((err as SignerDidNotApprove).state).toBe("declined");
  });

  it("a gateway restarted while a request is pending keeps it: the signer approves after the restart", async () => {
    const { page } = alice;
    const { url, onUrl } = urlFrom();
    const signing = scaSigns(alice.signerId, alice.credentialId, 2, "Across a restart", onUrl);
    const link = await url;
    await gateway.close();
    await startGw();
    await openRequest(page, link);
    expect(await page.textContent("#request-description")).toBe("Across a restart");
    await approveWith(page, pin);
    expect(await signing).toHaveLength(2);
  });

  it("Manage: change the PIN, list recent authorizations, request suspension (T-2.3.1.1: by the signer's own device)", async () => {
    const { page } = alice;
    await page.goto(`${gateway.url}/#manage`);
    await page.waitForSelector("body[data-view=manage]");
    await page.fill("#pin-old", pin);
    await page.fill("#pin-new", "864209753");
    await page.click("#pin-form button[type=submit]");
    await page.waitForFunction(() => (globalThis as any).document.getElementById("status").textContent === "The PIN is changed.");
    await page.click("#history-load");
    await page.waitForSelector("#history-table:not([hidden])");
    expect(await page.locator("#history-body tr").count()).toBeGreaterThanOrEqual(3);
    await screenshot(page, "9-manage");
    expect(await axeViolations(page)).toEqual([]);
    page.once("dialog", (d) => void d.accept());
    await page.selectOption("#suspend-credential", alice.credentialId);
    await page.click("#suspend-form button[type=submit]");
    await page.waitForFunction(() => /suspended/.test((globalThis as any).document.getElementById("status").textContent));
    await screenshot(page, "10-suspended");
    const refused = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, hashes: hashes(1, "after"), description: "after" }).then(() => undefined, (e: unknown) => e);
    expect(refused).toBeInstanceOf(InkanError);
    expect((refused as InkanError).reason).toBe(Reason.CREDENTIAL_SUSPENDED);
    expect((refused as InkanError).code).toBe(Code.FailedPrecondition);
    expect(alice.cspViolations).toEqual([]);
  });

  it("keeps no PIN, R.SAD or device key at rest in its store", () => {
    const file = readFileSync(join(t.dataDir, "gateway.sqlite"));
    for (const secret of [pin, "864209753"]) expect(file.includes(Buffer.from(secret))).toBe(false);
    const columns = (gateway.store as SqliteGatewayStore).db.prepare("SELECT name FROM pragma_table_info('requests') UNION SELECT name FROM pragma_table_info('portal_sessions')").all() as { name: string }[];
    expect(columns.map((c) => c.name).filter((n) => /sad|pin|private|token$/i.test(n))).toEqual([]);
  });
});
