/**
 * The sign-pdf example as a command: signs one PDF, or every PDF of a folder under one
 * authorization, with a progress bar. The R.SAD comes from the signer's device: the command
 * prints the challenge (base64 of the SadChallenge message) with what is being authorized, and
 * reads the device's R.SAD from standard input.
 *
 *   npx tsc -b sdk/examples/sign-pdf && node sdk/examples/sign-pdf/dist/main.js \
 *     --sam https://localhost:8443 --ca ca.pem --cert sca.pem --key sca-key.pem \
 *     --signer SIGNER_ID --credential CREDENTIAL_ID --name "Sato Hanako" invoices/ signed/
 *
 * With --gateway https://HOST:PORT (the gateway of `inkan gateway`, same client certificate) the
 * challenge goes to the signer portal instead: the command prints the request URL to open on the
 * signer's device and waits there for the R.SAD (issue 15).
 *
 * With --csc https://HOST:PORT/csc/v2 it is a CSC client of the gateway instead (issue 16,
 * `signPdfsViaCsc`): no SAP, no SCA certificate; --csc-client-id and --csc-client-key (its private
 * ES256 JWK, whose public half is in the gateway's csc-clients.json) and --redirect-uri (registered
 * with it). It prints the oauth2/authorize URL to open in the signer's browser; the signer approves
 * in the portal, the browser is sent to the redirect URI with a code, and you paste the address the
 * browser arrived at. `--new-csc-client FILE` writes a new private JWK to FILE and prints the
 * csc-clients.json registration for it (with --csc-client-id, --redirect-uri and --signer).
 */
import { readFileSync, readdirSync, statSync, mkdirSync, writeFileSync } from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import { basename, join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { toBinary } from "@bufbuild/protobuf";
import { createInkanClient } from "@inkan/sdk";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { GatewayRelay } from "@inkan/gateway/relay";
import { signPdfs } from "./sign-pdf.js";
import { signPdfsViaCsc } from "./sign-pdf-csc.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    sam: { type: "string" }, ca: { type: "string" }, cert: { type: "string" }, key: { type: "string" },
    signer: { type: "string" }, credential: { type: "string" }, name: { type: "string" }, description: { type: "string" },
    gateway: { type: "string" },
    csc: { type: "string" }, "csc-client-id": { type: "string" }, "csc-client-key": { type: "string" }, "redirect-uri": { type: "string" },
    "new-csc-client": { type: "string" },
  },
});
const usage = `usage: main.js --sam URL --ca PEM --cert PEM --key PEM --signer ID --credential ID --name NAME [--gateway URL] <pdf|folder> <out-dir>
       main.js --csc URL/csc/v2 --ca PEM --csc-client-id ID --csc-client-key JWK --redirect-uri URI --credential ID --name NAME <pdf|folder> <out-dir>
       main.js --new-csc-client JWK --csc-client-id ID --redirect-uri URI --signer ID`;

if (values["new-csc-client"]) {
  const need = ["csc-client-id", "redirect-uri", "signer"].filter((k) => !values[k as keyof typeof values]);
  if (need.length) {
    console.error(`${usage}\nmissing: ${need.join(", ")}`);
    process.exit(2);
  }
  // The private half stays with this client (mode 0600); the gateway gets only the public JWK.
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  try {
    writeFileSync(values["new-csc-client"], JSON.stringify(privateKey.export({ format: "jwk" })), { mode: 0o600, flag: "wx" });
  } catch (err) {
    console.error(`cannot write ${values["new-csc-client"]}: ${(err as NodeJS.ErrnoException).code === "EEXIST" ? "it exists (a key is never overwritten)" : String(err)}`);
    process.exit(2);
  }
  const client = { clientId: values["csc-client-id"], name: "sign-pdf example", jwks: { keys: [publicKey.export({ format: "jwk" })] }, redirectUris: [values["redirect-uri"]], signers: [values.signer] };
  console.log(JSON.stringify({ clients: [client] }, null, 2));
  process.exit(0);
}

const [input, outDir] = positionals;
const required = values.csc ? ["ca", "csc-client-id", "csc-client-key", "redirect-uri", "credential", "name"] : ["sam", "ca", "cert", "key", "signer", "credential", "name"];
const missing = required.filter((k) => !values[k as keyof typeof values]);
if (!input || !outDir || missing.length) {
  console.error(`${usage}${missing.length ? `\nmissing: ${missing.join(", ")}` : ""}`);
  process.exit(2);
}
const files = statSync(input).isDirectory()
  ? readdirSync(input).filter((f) => f.toLowerCase().endsWith(".pdf")).sort().map((f) => join(input, f))
  : [input];
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const description = values.description ?? `${files.length} PDF${files.length === 1 ? "" : "s"}: ${files.map((f) => basename(f)).join(", ")}`.slice(0, 500);

if (values.csc) {
  // Through the CSC API: one oauth2code authorization in the signer's browser, one signHash.
  const signed = await signPdfsViaCsc(
    { baseUrl: values.csc.replace(/\/+$/, ""), ca: readFileSync(values.ca!, "utf8"), clientId: values["csc-client-id"]!, privateJwk: JSON.parse(readFileSync(values["csc-client-key"]!, "utf8")), redirectUri: values["redirect-uri"]! },
    files.map((f) => readFileSync(f)),
    {
      credentialId: values.credential!,
      name: values.name!,
      description,
      async approve(authorizeUrl) {
        console.log(`open in the signer's browser: ${authorizeUrl}`);
        console.log("after approving there, paste the address the browser arrived at:");
        const line = await lines.next();
        if (line.done) throw new Error("no address on standard input");
        return line.value.trim();
      },
    },
  );
  mkdirSync(outDir, { recursive: true });
  signed.forEach((pdf, i) => writeFileSync(join(outDir, basename(files[i]!)), pdf));
  console.log(`signed ${signed.length} PDF${signed.length === 1 ? "" : "s"} into ${outDir}`);
  process.stdin.destroy();
  process.exit(0);
}

const tls = { ca: readFileSync(values.ca!, "utf8"), cert: readFileSync(values.cert!, "utf8"), key: readFileSync(values.key!, "utf8") };
const relay = values.gateway ? new GatewayRelay({ baseUrl: values.gateway, tls }) : undefined;
let requestId = "";
const inkan = createInkanClient({ baseUrl: values.sam!, tls: { ca: readFileSync(values.ca!, "utf8"), cert: readFileSync(values.cert!, "utf8"), key: readFileSync(values.key!, "utf8") } });

const signed = await signPdfs(inkan, files.map((f) => readFileSync(f)), {
  signerId: values.signer!,
  credentialId: values.credential!,
  name: values.name!,
  description,
  async authorize(challenge, summary) {
    console.log(summary);
    if (relay) {
      const answer = await relay.rSadFor(challenge, (url) => console.log(`open on the signer's device: ${url}`));
      requestId = answer.requestId;
      return answer.rSad;
    }
    console.log(`challenge: ${Buffer.from(toBinary(SadChallengeSchema, challenge)).toString("base64")}`);
    console.log("paste the R.SAD from the signer's device:");
    const line = await lines.next();
    if (line.done) throw new Error("no R.SAD on standard input");
    return line.value.trim();
  },
  onProgress({ signed: done, total }) {
    if (relay) void relay.progress(requestId, done).catch(() => undefined); // the portal's progress bar; best effort
    const width = 30;
    const filled = Math.round((done / total) * width);
    process.stderr.write(`\r[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${done}/${total}${done === total ? "\n" : ""}`);
  },
}).catch(async (err: unknown) => {
  if (relay && requestId) await relay.refused(requestId, err).catch(() => undefined); // the portal says why
  throw err;
});
mkdirSync(outDir, { recursive: true });
signed.forEach((pdf, i) => writeFileSync(join(outDir, basename(files[i]!)), pdf));
console.log(`signed ${signed.length} PDF${signed.length === 1 ? "" : "s"} into ${outDir}`);
inkan.close();
process.stdin.destroy();
