import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromBinary } from "@bufbuild/protobuf";
import { extractSignature } from "@signpdf/utils";
import { PDFDocument, StandardFonts } from "pdf-lib";
import { buildRSadFor, createInkanClient, type DeviceKey, type SamSigningKey } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signPdfs } from "../../../sdk/examples/sign-pdf/sign-pdf.js";
import { startTestServer, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

// The example SCA sdk/examples/sign-pdf against the real SAM: PAdES B-B signatures on PDFs from a
// level-2 signer (device key + PIN), a batch under one authorization, validated by independent
// tools: poppler's pdfsig (with the development signer CA as trusted) and openssl cms -verify.
const tools = ["pdfsig", "certutil", "openssl"].filter((tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0);
if (tools.length) console.warn(`sign-pdf e2e skipped: ${tools.join(", ")} missing (apt-get install poppler-utils libnss3-tools openssl; scripts/setup.sh installs them)`);

let t: TestServer;
let work: string;
let signer: { signerId: string; credentialId: string; deviceKey: DeviceKey; challengeSigningKey: SamSigningKey };

async function pdfWithText(text: string): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  const page = doc.addPage([595, 842]);
  page.drawText(text, { x: 72, y: 760, size: 14, font: await doc.embedFont(StandardFonts.Helvetica) });
  return doc.save();
}

beforeAll(async () => {
  if (tools.length) return;
  work = mkdtempSync(join(tmpdir(), "inkan-sign-pdf-"));
  t = await startTestServer();
  const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-sign-pdf");
  const a = await activeSignerWithCredential(t, operator);
  signer = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey, challengeSigningKey: a.challengeSigningKey };
  // pdfsig trusts what the NSS database trusts: the development signer issuing CA.
  execFileSync("certutil", ["-N", "-d", `sql:${work}`, "--empty-password"]);
  execFileSync("certutil", ["-A", "-d", `sql:${work}`, "-n", "inkan-dev-signer-ca", "-t", "CT,C,C", "-i", t.pki.paths.signerIssuingCaCert]);
}, 60_000);
afterAll(async () => {
  await t?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(tools.length > 0)("example SCA sign-pdf: PAdES B-B through the SAM", () => {
  it("signs three PDFs under one authorization; pdfsig says every signature is valid and trusted, openssl cms -verify accepts the CMS", async () => {
    const inkan = createInkanClient({ baseUrl: t.server.url, tls: { ca: t.pki.ca, cert: t.pki.sca.cert, key: t.pki.sca.key } });
    const pdfs = await Promise.all(["Invoice 1", "Invoice 2", "Invoice 3"].map(pdfWithText));
    let authorizations = 0;
    const progress: number[] = [];
    const signed = await signPdfs(inkan, pdfs, {
      signerId: signer.signerId, credentialId: signer.credentialId, description: "Invoices 2026-11, 3 PDFs", name: "Sato Hanako",
      authorize: async (challenge, summary) => {
        authorizations++;
        expect(summary).toContain("Sign 3 documents");
        return buildRSadFor(challenge, { deviceKey: signer.deviceKey, pin: testPin, challengeSigningKey: signer.challengeSigningKey });
      },
      onProgress: (p) => progress.push(p.signed),
    });
    expect(authorizations).toBe(1);
    expect(progress.at(-1)).toBe(3);
    for (const [i, pdf] of signed.entries()) {
      const file = join(work, `signed-${i}.pdf`);
      writeFileSync(file, pdf);
      const report = execFileSync("pdfsig", ["-nssdir", `sql:${work}`, file], { encoding: "utf8" });
      expect(report).toContain("Signature Validation: Signature is Valid.");
      expect(report).toContain("Certificate Validation: Certificate is Trusted.");
      expect(report).toContain("Signature Type: ETSI.CAdES.detached");
      const { signature, signedData } = extractSignature(pdf);
      writeFileSync(join(work, "cms.der"), Buffer.from(signature, "binary"));
      writeFileSync(join(work, "content.bin"), signedData);
      const verify = spawnSync("openssl", ["cms", "-verify", "-binary", "-inform", "DER", "-in", join(work, "cms.der"), "-content", join(work, "content.bin"), "-CAfile", t.pki.paths.signerIssuingCaCert, "-purpose", "any", "-out", "/dev/null"], { encoding: "utf8" });
      expect(verify.stderr).toContain("Verification successful");
      expect(verify.status).toBe(0);
    }
  }, 60_000);

  it("a byte changed in a signed PDF is detected by pdfsig (the example's signature covers the ByteRange)", async () => {
    const inkan = createInkanClient({ baseUrl: t.server.url, tls: { ca: t.pki.ca, cert: t.pki.sca.cert, key: t.pki.sca.key } });
    const [pdf] = await signPdfs(inkan, [await pdfWithText("Contract 42: 100 EUR")], {
      signerId: signer.signerId, credentialId: signer.credentialId, description: "Contract 42", name: "Sato Hanako",
      authorize: (challenge) => buildRSadFor(challenge, { deviceKey: signer.deviceKey, pin: testPin, challengeSigningKey: signer.challengeSigningKey }),
    });
    const altered = Buffer.from(pdf!);
    const at = altered.indexOf("/MediaBox");
    altered[at + 1] = "m".charCodeAt(0);
    const file = join(work, "altered.pdf");
    writeFileSync(file, altered);
    const report = spawnSync("pdfsig", ["-nssdir", `sql:${work}`, file], { encoding: "utf8" }).stdout;
    expect(report).not.toContain("Signature is Valid.");
    expect(report).toMatch(/Digest Mismatch|Signature is Invalid/);
  }, 60_000);

  it("the command signs a folder of PDFs under one authorization (R.SAD read from stdin) with a progress bar; pdfsig validates every output", async () => {
    const exampleDir = fileURLToPath(new URL("../../../sdk/examples/sign-pdf/", import.meta.url));
    execFileSync(process.execPath, [fileURLToPath(new URL("../../../node_modules/typescript/bin/tsc", import.meta.url)), "-b", exampleDir]);
    const inDir = join(work, "in");
    const outDir = join(work, "out");
    mkdirSync(inDir);
    for (const n of [1, 2, 3, 4]) writeFileSync(join(inDir, `invoice-${n}.pdf`), await pdfWithText(`Invoice ${n}`));
    const { NODE_OPTIONS: _ignored, ...env } = process.env;
    const p = t.pki.paths;
    const child = spawn(process.execPath, [join(exampleDir, "dist/main.js"), "--sam", t.server.url, "--ca", p.caCert, "--cert", p.scaCert, "--key", p.scaKey,
      "--signer", signer.signerId, "--credential", signer.credentialId, "--name", "Sato Hanako", inDir, outDir], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    let answered = false; // set before the await: a second chunk of stdout must not answer again
    child.stdout.on("data", async (d) => {
      stdout += d;
      const m = stdout.match(/^challenge: ([A-Za-z0-9+/=]+)$/m);
      if (m && !answered) {
        answered = true;
        const challenge = fromBinary(SadChallengeSchema, Buffer.from(m[1]!, "base64"));
        child.stdin.end(`${await buildRSadFor(challenge, { deviceKey: signer.deviceKey, pin: testPin, challengeSigningKey: signer.challengeSigningKey })}\n`);
      }
    });
    expect(await exited, stderr).toBe(0);
    expect(stdout).toContain('Sign 4 documents: "4 PDFs: invoice-1.pdf, invoice-2.pdf, invoice-3.pdf, invoice-4.pdf"');
    expect(stderr).toContain("] 4/4");
    expect(readdirSync(outDir).sort()).toEqual(["invoice-1.pdf", "invoice-2.pdf", "invoice-3.pdf", "invoice-4.pdf"]);
    for (const f of readdirSync(outDir)) {
      expect(execFileSync("pdfsig", ["-nssdir", `sql:${work}`, join(outDir, f)], { encoding: "utf8" })).toContain("Signature Validation: Signature is Valid.");
    }
  }, 60_000);
});
