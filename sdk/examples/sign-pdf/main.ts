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
 */
import { readFileSync, readdirSync, statSync, mkdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { toBinary } from "@bufbuild/protobuf";
import { createInkanClient } from "@inkan/sdk";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { GatewayRelay } from "@inkan/gateway/relay";
import { signPdfs } from "./sign-pdf.js";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    sam: { type: "string" }, ca: { type: "string" }, cert: { type: "string" }, key: { type: "string" },
    signer: { type: "string" }, credential: { type: "string" }, name: { type: "string" }, description: { type: "string" },
    gateway: { type: "string" },
  },
});
const [input, outDir] = positionals;
const missing = ["sam", "ca", "cert", "key", "signer", "credential", "name"].filter((k) => !values[k as keyof typeof values]);
if (!input || !outDir || missing.length) {
  console.error(`usage: main.js --sam URL --ca PEM --cert PEM --key PEM --signer ID --credential ID --name NAME <pdf|folder> <out-dir>${missing.length ? `\nmissing: ${missing.join(", ")}` : ""}`);
  process.exit(2);
}
const files = statSync(input).isDirectory()
  ? readdirSync(input).filter((f) => f.toLowerCase().endsWith(".pdf")).sort().map((f) => join(input, f))
  : [input];
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const tls = { ca: readFileSync(values.ca!, "utf8"), cert: readFileSync(values.cert!, "utf8"), key: readFileSync(values.key!, "utf8") };
const relay = values.gateway ? new GatewayRelay({ baseUrl: values.gateway, tls }) : undefined;
let requestId = "";
const inkan = createInkanClient({ baseUrl: values.sam!, tls: { ca: readFileSync(values.ca!, "utf8"), cert: readFileSync(values.cert!, "utf8"), key: readFileSync(values.key!, "utf8") } });

const signed = await signPdfs(inkan, files.map((f) => readFileSync(f)), {
  signerId: values.signer!,
  credentialId: values.credential!,
  name: values.name!,
  description: values.description ?? `${files.length} PDF${files.length === 1 ? "" : "s"}: ${files.map((f) => basename(f)).join(", ")}`.slice(0, 500),
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
