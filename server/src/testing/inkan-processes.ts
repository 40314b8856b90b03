/**
 * The `inkan` command as an operator runs it (child processes of the built binary), and the two
 * programs around the SAM that are not operators: the signer's device (the SDK's device builders,
 * talking through the signer front end's identity, in place of the portal) and an SCA (the SDK's
 * client). For the tests that follow the README from `inkan init` on (issues 21 and 23).
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { buildActivationRequest, buildRSadFor, createDeviceKey, createInkanClient, type DeviceKey } from "@inkan/sdk";
import { SignatureActivationService, type SamSigningKey } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { ChallengePurpose, SignerService } from "@inkan/sdk/gen/inkan/sam/v1/signer_pb.js";
import type { HashAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { transportFor } from "./harness.js";

export const inkanBin = fileURLToPath(new URL("../../bin/inkan.js", import.meta.url));
/** True when the binary's dist is built (npm test builds it first; `npm run build` by hand). */
export const inkanBuilt = (() => {
  try {
    readFileSync(fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url)));
    return true;
  } catch {
    return false;
  }
})();

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a child: this process's, without any INKAN_* variable, plus `env`. */
function childEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(out)) if (k.startsWith("INKAN_")) delete out[k];
  return { ...out, ...env };
}

/** Runs `inkan ...args` to its end. */
export function runInkan(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string): Promise<Run> {
  const child = spawn(process.execPath, [inkanBin, ...args], { env: childEnv(env), stdio: ["ignore", "pipe", "pipe"], ...(cwd ? { cwd } : {}) });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

export interface ServeProcess {
  url: string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `inkan serve ...args` and waits for its `listening on URL` line. */
export async function startInkanServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [inkanBin, "serve", ...args], { env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on("close", r));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once("line", resolve);
    child.once("close", () => reject(new Error(`inkan serve exited early:\n${stderr}`)));
  });
  const url = /^listening on (https:\/\/\S+)$/.exec(line)?.[1];
  if (!url) {
    child.kill("SIGKILL");
    throw new Error(`inkan serve printed ${line}`);
  }
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      return exited;
    },
  };
}

/** PEM files of a TLS client identity, as `inkan init --json` lists them. */
export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

const tlsOf = (f: TlsFiles) => ({ ca: readFileSync(f.ca, "utf8"), cert: readFileSync(f.cert, "utf8"), key: readFileSync(f.key, "utf8") });

/** The signer's device after activation: its key, PIN, and the SAM challenge-signing key it pinned (T-2.2.1.7). */
export interface SignerDevice {
  deviceKey: DeviceKey;
  pin: string;
  challengeSigningKey: SamSigningKey;
}

/** The signer activates on a new device with the code the operator delivered (device SDK; the front end relays). */
export async function activateDevice(url: string, frontEnd: TlsFiles, signerId: string, activationCode: string, pin: string): Promise<SignerDevice> {
  const device = createClient(SignerService, transportFor("grpc", url, tlsOf(frontEnd)));
  const ch = await device.createChallenge({ signerId, purpose: ChallengePurpose.ACTIVATION });
  const deviceKey = await createDeviceKey();
  const { request } = await buildActivationRequest({ signerId, activationCode, pin, deviceKey, challenge: ch.challenge, samKey: ch.encryptionKey!, audience: ch.audience });
  await device.activate(request);
  return { deviceKey, pin, challengeSigningKey: ch.challengeSigningKey! };
}

/**
 * An SCA begins a SAP transaction over exactly `dtbsr` (one hash) and the signer approves it on
 * the device: the transaction id and its one-time SAD token (what `inkan admin csr create` takes).
 */
export async function approveOnDevice(
  url: string, sca: TlsFiles, device: SignerDevice,
  t: { signerId: string; credentialId: string; dtbsr: Uint8Array; hashAlgorithm: HashAlgorithm; signatureAlgorithm: SignatureAlgorithm; description: string },
): Promise<{ transactionId: string; sadToken: string }> {
  const sam = createClient(SignatureActivationService, transportFor("grpc", url, tlsOf(sca)));
  const { sadChallenge: ch } = await sam.beginTransaction({
    credentialId: t.credentialId, signerId: t.signerId, hashAlgorithm: t.hashAlgorithm, signatureAlgorithm: t.signatureAlgorithm, numSignatures: 1, hashes: [t.dtbsr], description: t.description,
  });
  const rSad = await buildRSadFor(ch!, { deviceKey: device.deviceKey, pin: device.pin, challengeSigningKey: device.challengeSigningKey });
  const { sadToken } = await sam.authorize({ transactionId: ch!.transactionId, rSad });
  return { transactionId: ch!.transactionId, sadToken };
}

/** An SCA (the SDK's client) signs one hash with the credential, approved on the device; the SDK checks the signature against the certificate (T-2.2.1.8). */
export async function signOnce(url: string, sca: TlsFiles, device: SignerDevice, signerId: string, credentialId: string, hash: Uint8Array): Promise<Uint8Array> {
  const inkan = createInkanClient({ baseUrl: url, tls: tlsOf(sca) });
  try {
    const tx = await inkan.beginTransaction({ signerId, credentialId, hashes: [hash], description: "Contract 2026-12" });
    const rSad = await buildRSadFor(tx.challenge, { deviceKey: device.deviceKey, pin: device.pin, challengeSigningKey: device.challengeSigningKey });
    const [signature] = await tx.authorizeAndSign(rSad);
    return signature!;
  } finally {
    inkan.close();
  }
}
