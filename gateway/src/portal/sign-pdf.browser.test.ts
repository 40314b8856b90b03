/**
 * Issue 15, "Done when": the README's quick start exercised as a user types it. The shell blocks of
 * "Quick start: sign a folder of PDFs, approved in the browser" are read from README.md and run in
 * a scratch directory (the repository's top-level entries linked in, .data/ the test SAM's data
 * directory), with only the SAM's and the gateway's addresses (random ports here), the
 * printed ids and the source PDFs substituted: the demo signer from the real
 * `inkan init --demo-signer`, activated in the portal in Chromium with its printed code; the example
 * SCA's command line; the approval in the browser; pdfsig on every signed file.
 */
import { execFile, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PDFDocument, StandardFonts } from "pdf-lib";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../../server/src/testing/harness.js";
import { gatewayConfig } from "../config.js";
import { startGateway, type Gateway } from "../server.js";
import { chromiumPath, launchChromium, newDevice, screenshot } from "../testing/browser.js";
import { buildPortal } from "./build.js";

const tools = ["pdfsig", "certutil"].filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0);
const missing = [...tools, ...(chromiumPath ? [] : ["chromium"])];
if (missing.length) console.warn(`portal sign-pdf test skipped: ${missing.join(", ")} missing (scripts/setup.sh installs them)`);

const repo = fileURLToPath(new URL("../../../", import.meta.url));

async function pdfWithText(text: string): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  doc.addPage([595, 842]).drawText(text, { x: 72, y: 760, size: 14, font: await doc.embedFont(StandardFonts.Helvetica) });
  return doc.save();
}

/** The quick start's ```sh blocks, in order (README.md, "Quick start: sign a folder of PDFs"). */
function quickStartBlocks(): string[] {
  const readme = readFileSync(join(repo, "README.md"), "utf8");
  const start = readme.indexOf("### Quick start: sign a folder of PDFs");
  expect(start, "the README's quick start section").toBeGreaterThan(0);
  const section = readme.slice(start, readme.indexOf("\n### ", start + 1));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/^ {3}/gm, ""));
}

/** A block's commands: comments dropped, continuation lines joined. */
const commandsOf = (block: string): string[] =>
  block.replace(/\\\n\s*/g, "").split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) => l && !l.startsWith("#"));

describe.skipIf(missing.length > 0)("the README quick start, as a user types it (issue 15)", { timeout: 150_000 }, () => {
  let t: TestServer;
  let gateway: Gateway;
  let browser: Browser;
  let work: string;

  beforeAll(async () => {
    await buildPortal();
    work = mkdtempSync(join(tmpdir(), "inkan-quick-start-"));
    t = await startTestServer();
    gateway = await startGateway(gatewayConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", samUrl: t.server.url }));
    browser = await launchChromium();
    // A checkout as the user has it (every top-level entry linked), its .data/ the test SAM's.
    for (const d of readdirSync(repo)) if (d !== ".data" && d !== ".git") symlinkSync(join(repo, d), join(work, d));
    symlinkSync(t.dataDir, join(work, ".data"));
  });
  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    await t?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("init --demo-signer, activate in the portal, the example SCA with --gateway, approve, pdfsig accepts every PDF", async () => {
    const blocks = quickStartBlocks();
    const [startBlock, scaBlock, , checkBlock] = blocks;
    const { NODE_OPTIONS: _ignored, ...baseEnv } = process.env;
    const env: NodeJS.ProcessEnv = { ...baseEnv };
    for (const k of Object.keys(env)) if (k.startsWith("INKAN_")) delete env[k];
    // The only substitutions: where the test's SAM and gateway listen.
    const local = (cmd: string) => cmd.replaceAll("https://127.0.0.1:8443", t.server.url).replaceAll("https://127.0.0.1:8444", gateway.url);
    // Asynchronous: the SAM and the gateway answer from this process while a command runs.
    const sh = (cmd: string) =>
      new Promise<string>((resolve, reject) =>
        execFile("sh", ["-c", local(cmd)], { cwd: work, env, encoding: "utf8" }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${stdout}${stderr}`)) : resolve(stdout))),
      );

    // Terminal 2: the demo signer, through the running SAM (the README's line; --target and --json added
    // to reach the test's SAM and to read the ids).
    const initLine = commandsOf(startBlock!).find((c) => c.includes("init --demo-signer"));
    expect(initLine).toBe("node server/bin/inkan.js init --demo-signer");
    const demo = JSON.parse(await sh(`${initLine} --target ${t.server.url} --json`)) as { development: boolean; signerId: string; credentialId: string; activationCode: string };
    expect(demo.development).toBe(true);

    // Steps 1-2: the portal; register this device with the signer id, the printed code and a PIN.
    const { page } = await newDevice(browser);
    await page.goto(gateway.url);
    await page.waitForSelector("body[data-view=activate]");
    await page.fill("#activate-signer", demo.signerId);
    await page.fill("#activate-code", demo.activationCode);
    await page.fill("#activate-pin", "112358132");
    await page.fill("#activate-pin2", "112358132");
    await page.click("#activate-form button[type=submit]");
    await page.waitForSelector("body[data-view=registered]");

    // Step 3: a folder of PDFs, the example built and run as written.
    const sources = join(work, "sources");
    mkdirSync(sources);
    for (const n of [1, 2, 3]) writeFileSync(join(sources, `invoice-${n}.pdf`), await pdfWithText(`Invoice ${n}`));
    const scaCommands = commandsOf(scaBlock!).map((c) => c.replace("/path/to/*.pdf", `${sources}/*.pdf`));
    const run = scaCommands.pop()!;
    expect(run).toMatch(/^node sdk\/examples\/sign-pdf\/dist\/main\.js --sam .* --gateway .* invoices\/ signed\/$/);
    for (const c of scaCommands) await sh(c);
    const child = spawn("sh", ["-c", local(run.replace("SIGNER_ID", demo.signerId).replace("CREDENTIAL_ID", demo.credentialId))], { cwd: work, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (d) => {
        stdout += d;
        const m = /open on the signer's device: (\S+)/.exec(stdout);
        if (m) resolve(m[1]!);
      });
      child.on("exit", () => reject(new Error(`the example exited: ${stdout}${stderr}`)));
    });
    expect(url.startsWith(`${gateway.url}/#request=`)).toBe(true);
    await page.goto(url);
    await page.waitForSelector("#request-body:not([hidden])");
    expect(await page.textContent("#request-count")).toBe("3");
    expect(await page.textContent("#request-description")).toBe("3 PDFs: invoice-1.pdf, invoice-2.pdf, invoice-3.pdf");
    await page.fill("#approve-pin", "112358132");
    await page.click("#approve");
    expect(await exited, stderr).toBe(0);
    await page.waitForSelector("body[data-request-state=authorized][data-signed='3']");
    await screenshot(page, "11-pdfs-signed");
    expect(readdirSync(join(work, "signed")).sort()).toEqual(["invoice-1.pdf", "invoice-2.pdf", "invoice-3.pdf"]);

    // Step 4: pdfsig on every signed PDF, the README's lines as written.
    const check = commandsOf(checkBlock!);
    expect(check.at(-1)).toBe('for f in signed/*.pdf; do pdfsig -nssdir sql:nssdb "$f"; done');
    for (const c of check.slice(0, -1)) await sh(c);
    for (const f of readdirSync(join(work, "signed"))) {
      expect(await sh(`f=signed/${f}; pdfsig -nssdir sql:nssdb "$f"`)).toContain("Signature Validation: Signature is Valid.");
    }
    expect((await sh(check.at(-1)!)).match(/Signature is Valid\./g)).toHaveLength(3);
  });
});
