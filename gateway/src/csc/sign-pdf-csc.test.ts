import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { extractSignature } from "@signpdf/utils";
import { exportJWK, generateKeyPair } from "jose";
import { PDFDocument, StandardFonts } from "pdf-lib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signPdfsViaCsc, type CscClientOptions } from "../../../sdk/examples/sign-pdf/sign-pdf-csc.js";
import { startTestServer, type TestServer } from "../../../server/src/testing/harness.js";
import { activeSignerWithCredential, testPin } from "../../../server/src/testing/signers.js";
import { gatewayConfig } from "../config.js";
import { startGateway, type Gateway } from "../server.js";
import { httpsRequest } from "../testing/https.js";
import { DeviceApprovals } from "./testing/device-approvals.js";

// The example SCA signs PDFs through the CSC API (issue 16): oauth2code with the signer approving
// on the device (test double of the portal and browser, real SAM and crypto); the PAdES B-B output
// is validated by pdfsig and openssl cms -verify, as the SAP version is.
const tools = ["pdfsig", "certutil", "openssl"].filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0);
if (tools.length) console.warn(`sign-pdf over CSC skipped: ${tools.join(", ")} missing (scripts/setup.sh installs them)`);

let t: TestServer;
let gateway: Gateway;
let work: string;
let csc: CscClientOptions;
let signer: Awaited<ReturnType<typeof activeSignerWithCredential>>;
const approvals = new DeviceApprovals();

async function pdfWithText(text: string): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  doc.addPage([595, 842]).drawText(text, { x: 72, y: 760, size: 14, font: await doc.embedFont(StandardFonts.Helvetica) });
  return doc.save();
}

beforeAll(async () => {
  if (tools.length) return;
  work = mkdtempSync(join(tmpdir(), "inkan-sign-pdf-csc-"));
  t = await startTestServer();
  const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-sign-pdf-csc");
  signer = await activeSignerWithCredential(t, operator);
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const redirectUri = "https://sca.example/csc/callback";
  writeFileSync(join(t.dataDir, "csc-clients.json"), JSON.stringify({ clients: [{ clientId: "sign-pdf", name: "sign-pdf example", jwks: { keys: [await exportJWK(publicKey)] }, redirectUris: [redirectUri], signers: [signer.signerId] }] }));
  gateway = await startGateway(gatewayConfig({ dataDir: t.dataDir, listen: "127.0.0.1:0", samUrl: t.server.url }), [], { signerApprovals: approvals });
  csc = { baseUrl: `${gateway.url}/csc/v2`, ca: readFileSync(join(t.dataDir, "pki", "ca.crt"), "utf8"), clientId: "sign-pdf", privateJwk: await exportJWK(privateKey), redirectUri };
  execFileSync("certutil", ["-N", "-d", `sql:${work}`, "--empty-password"]);
  execFileSync("certutil", ["-A", "-d", `sql:${work}`, "-n", "inkan-dev-signer-ca", "-t", "CT,C,C", "-i", t.pki.paths.signerIssuingCaCert]);
}, 60_000);
afterAll(async () => {
  await gateway?.close();
  await t?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(tools.length > 0)("example SCA sign-pdf through the CSC API (issue 16)", () => {
  it("signs three PDFs under one oauth2code authorization; pdfsig and openssl cms -verify accept every signature", async () => {
    let approved = 0;
    const pdfs = await Promise.all(["Invoice 1", "Invoice 2", "Invoice 3"].map(pdfWithText));
    const signed = await signPdfsViaCsc(csc, pdfs, {
      credentialId: signer.credential.credentialId, name: "Sato Hanako", description: "Invoices 2026-11, 3 PDFs",
      // The signer's browser: to the portal, approve on the device, back through the gateway to the SCA.
      approve: async (authorizeUrl) => {
        approved++;
        const toPortal = await httpsRequest(authorizeUrl, { ca: csc.ca });
        expect(toPortal.status).toBe(302);
        const id = approvals.ids.at(-1)!;
        expect(approvals.challengeOf(id).description).toBe("Invoices 2026-11, 3 PDFs");
        const back = await approvals.approve(id, { deviceKey: signer.deviceKey, pin: testPin, challengeSigningKey: signer.challengeSigningKey });
        const toSca = await httpsRequest(`${gateway.url}${back}`, { ca: csc.ca });
        return String(toSca.headers.location);
      },
    });
    expect(approved).toBe(1);
    for (const [i, pdf] of signed.entries()) {
      const file = join(work, `signed-${i}.pdf`);
      writeFileSync(file, pdf);
      const report = execFileSync("pdfsig", ["-nssdir", `sql:${work}`, file], { encoding: "utf8" });
      expect(report).toContain("Signature Validation: Signature is Valid.");
      expect(report).toContain("Certificate Validation: Certificate is Trusted.");
      const { signature, signedData } = extractSignature(pdf);
      writeFileSync(join(work, "cms.der"), Buffer.from(signature, "binary"));
      writeFileSync(join(work, "content.bin"), signedData);
      const verify = spawnSync("openssl", ["cms", "-verify", "-binary", "-inform", "DER", "-in", join(work, "cms.der"), "-content", join(work, "content.bin"), "-CAfile", t.pki.paths.signerIssuingCaCert, "-purpose", "any", "-out", "/dev/null"], { encoding: "utf8" });
      expect(verify.stderr).toContain("Verification successful");
    }
  }, 60_000);

  it("a signer who declines: the example stops with the CSC error and signs nothing", async () => {
    await expect(signPdfsViaCsc(csc, [await pdfWithText("Contract 43")], {
      credentialId: signer.credential.credentialId, name: "Sato Hanako", description: "Contract 43",
      approve: async (authorizeUrl) => {
        await httpsRequest(authorizeUrl, { ca: csc.ca });
        const back = approvals.decline(approvals.ids.at(-1)!);
        return String((await httpsRequest(`${gateway.url}${back}`, { ca: csc.ca })).headers.location);
      },
    })).rejects.toThrow(/access_denied/);
  });
});
