/**
 * Issue 15, "Done when": a folder of PDFs signed by the example SCA (sdk/examples/sign-pdf) pointed
 * at the gateway, approved in the signer portal in Chromium; pdfsig accepts every file.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { KeyAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { PDFDocument, StandardFonts } from "pdf-lib";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../../server/src/testing/harness.js";
import { issueSignerCertificate, signerIssuingCa } from "../../../server/src/testing/signer-certificates.js";
import { enrolledSigner } from "../../../server/src/testing/signers.js";
import { gatewayConfig } from "../config.js";
import { startGateway, type Gateway } from "../server.js";
import { chromiumPath, launchChromium, newDevice, screenshot } from "../testing/browser.js";
import { buildPortal } from "./build.js";

const tools = ["pdfsig", "certutil"].filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0);
const missing = [...tools, ...(chromiumPath ? [] : ["chromium"])];
if (missing.length) console.warn(`portal sign-pdf test skipped: ${missing.join(", ")} missing (scripts/setup.sh installs them)`);

async function pdfWithText(text: string): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  doc.addPage([595, 842]).drawText(text, { x: 72, y: 760, size: 14, font: await doc.embedFont(StandardFonts.Helvetica) });
  return doc.save();
}

describe.skipIf(missing.length > 0)("a folder of PDFs signed through the gateway (issue 15)", { timeout: 120_000 }, () => {
  let t: TestServer;
  let gateway: Gateway;
  let browser: Browser;
  let work: string;

  beforeAll(async () => {
    await buildPortal();
    work = mkdtempSync(join(tmpdir(), "inkan-portal-pdf-"));
    t = await startTestServer();
    gateway = await startGateway(gatewayConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", samUrl: t.server.url }));
    browser = await launchChromium();
    execFileSync("certutil", ["-N", "-d", `sql:${work}`, "--empty-password"]);
    execFileSync("certutil", ["-A", "-d", `sql:${work}`, "-n", "inkan-dev-signer-ca", "-t", "CT,C,C", "-i", t.pki.paths.signerIssuingCaCert]);
  });
  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    await t?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("the example SCA with --gateway: the signer activates and approves in the portal; pdfsig validates every PDF", async () => {
    // The registration operator enrolls the signer and certifies a credential; the signer activates in the browser.
    const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-portal-pdf");
    const { signerId, code } = await enrolledSigner(t, operator);
    const { page } = await newDevice(browser);
    await page.goto(gateway.url);
    await page.waitForSelector("body[data-view=activate]");
    await page.fill("#activate-signer", signerId);
    await page.fill("#activate-code", code);
    await page.fill("#activate-pin", "112358132");
    await page.fill("#activate-pin2", "112358132");
    await page.click("#activate-form button[type=submit]");
    await page.waitForSelector("body[data-view=registered]");
    const ra = createClient(RegistrationService, t.as(operator));
    const { credential } = await ra.generateKey({ signerId, keyAlgorithm: KeyAlgorithm.EC_P256, label: "" });
    await ra.importCertificate({ credentialId: credential!.credentialId, certificateChain: [await issueSignerCertificate(await signerIssuingCa(t), credential!.publicKeySpki)] });

    const exampleDir = fileURLToPath(new URL("../../../sdk/examples/sign-pdf/", import.meta.url));
    execFileSync(process.execPath, [fileURLToPath(new URL("../../../node_modules/typescript/bin/tsc", import.meta.url)), "-b", exampleDir]);
    const inDir = join(work, "invoices");
    const outDir = join(work, "signed");
    mkdirSync(inDir);
    for (const n of [1, 2, 3]) writeFileSync(join(inDir, `invoice-${n}.pdf`), await pdfWithText(`Invoice ${n}`));
    const p = t.pki.paths;
    const { NODE_OPTIONS: _ignored, ...env } = process.env;
    const child = spawn(process.execPath, [join(exampleDir, "dist/main.js"), "--sam", t.server.url, "--gateway", gateway.url, "--ca", p.caCert, "--cert", p.scaCert, "--key", p.scaKey,
      "--signer", signerId, "--credential", credential!.credentialId, "--name", "Sato Hanako", inDir, outDir], { env, stdio: ["ignore", "pipe", "pipe"] });
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
    await page.goto(url);
    await page.waitForSelector("#request-body:not([hidden])");
    expect(await page.textContent("#request-count")).toBe("3");
    expect(await page.textContent("#request-description")).toBe("3 PDFs: invoice-1.pdf, invoice-2.pdf, invoice-3.pdf");
    await page.fill("#approve-pin", "112358132");
    await page.click("#approve");
    expect(await exited, stderr).toBe(0);
    await page.waitForSelector("body[data-request-state=authorized][data-signed='3']");
    await screenshot(page, "11-pdfs-signed");
    expect(readdirSync(outDir).sort()).toEqual(["invoice-1.pdf", "invoice-2.pdf", "invoice-3.pdf"]);
    for (const f of readdirSync(outDir)) {
      expect(execFileSync("pdfsig", ["-nssdir", `sql:${work}`, join(outDir, f)], { encoding: "utf8" })).toContain("Signature Validation: Signature is Valid.");
    }
  });
});
