/**
 * The `inkan admin` command table in-process (no server): every noun and command answers --help,
 * option words map to enum values, and usage errors exit 2 before any identity file is read.
 */
import { KeyAlgorithm, AssuranceLevel } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createCertificateAuthority, issueCertificate } from "../pki/dev-pki.js";
import { newRequestSigningKey } from "../testing/harness.js";
import { adminNouns, adminVerbs } from "./admin.js";
import { enumOption, exitCodes, runAdmin } from "./admin-command.js";

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
  vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void err.push(a.join(" ")));
  return { out: () => out.join("\n"), err: () => err.join("\n") };
}

const run = (argv: string[]) => runAdmin(argv, adminNouns, { INKAN_ADMIN_REQUEST_KEY: "/nonexistent/key.jwk" }, adminVerbs);

afterEach(() => vi.restoreAllMocks());

describe("inkan admin command table", () => {
  it("every noun and every command answers --help with exit 0, its usage, its options and the exit codes", async () => {
    for (const [noun, { verbs }] of Object.entries(adminNouns)) {
      const io = capture();
      expect(await run([noun, "--help"]), noun).toBe(0);
      for (const verb of Object.keys(verbs)) expect(io.out(), `${noun} lists ${verb}`).toContain(verb);
      vi.restoreAllMocks();
      for (const [verb, v] of Object.entries(verbs)) {
        const one = capture();
        expect(await run([noun, verb, "--help"]), `${noun} ${verb}`).toBe(0);
        expect(one.out()).toContain(`usage: inkan admin ${noun} ${verb}`);
        for (const option of Object.keys(v.options ?? {})) expect(one.out(), `${noun} ${verb} --${option}`).toContain(`--${option}`);
        expect(one.out()).toMatch(/4 held for a second privileged user's approval/);
        vi.restoreAllMocks();
      }
    }
    const io = capture();
    expect(await run(["login", "--help"])).toBe(0);
    expect(io.out()).toContain("usage: inkan admin login");
  });

  it("the commands that print a secret say so in their help", async () => {
    for (const argv of [["signer", "activation-code"], ["signer", "reset-factors"]]) {
      const io = capture();
      await run([...argv, "--help"]);
      expect(io.out()).toMatch(/PRINTS THE CODE/);
      vi.restoreAllMocks();
    }
  });

  it("usage errors exit 2 before reading any identity file: unknown noun, missing argument, extra argument, unknown option", async () => {
    for (const argv of [["nonsense"], ["signer"], ["signer", "show"], ["signer", "show", "a", "b"], ["signer", "list", "--colour"], []]) {
      const io = capture();
      expect(await run(argv), argv.join(" ")).toBe(exitCodes.usage);
      expect(io.err() + io.out()).not.toMatch(/nonexistent/);
      vi.restoreAllMocks();
    }
  });

  it("an unreadable request-key file is a usage error (exit 2) that names the file and not its content", async () => {
    const io = capture();
    expect(await run(["signer", "list", "--ca", "/etc/hostname", "--cert", "/etc/hostname", "--key", "/etc/hostname", "--target", "https://127.0.0.1:1"])).toBe(2);
    expect(io.err()).toMatch(/--request-key \/nonexistent\/key\.jwk: cannot read it \(ENOENT\)/);
  });

  it("enum words: kebab-case, the short and the full names; anything else lists the choices", () => {
    expect(enumOption(KeyAlgorithm, "KEY_ALGORITHM", "algorithm", "ec-p256")).toBe(KeyAlgorithm.EC_P256);
    expect(enumOption(KeyAlgorithm, "KEY_ALGORITHM", "algorithm", "KEY_ALGORITHM_RSA_3072")).toBe(KeyAlgorithm.RSA_3072);
    expect(enumOption(AssuranceLevel, "ASSURANCE_LEVEL", "assurance-level", "2")).toBe(AssuranceLevel.ASSURANCE_LEVEL_2);
    expect(() => enumOption(KeyAlgorithm, "KEY_ALGORITHM", "algorithm", "unspecified")).toThrow(/expected one of ec-p256, ec-p384/);
    expect(() => enumOption(KeyAlgorithm, "KEY_ALGORITHM", "algorithm", "dsa")).toThrow(/--algorithm dsa/);
  });

  it("a SAM that cannot be reached is a failure (exit 1, UNAVAILABLE), not a refusal", async () => {
    const dir = mkdtempSync(join(tmpdir(), "inkan-admin-unit-"));
    try {
      const ca = await createCertificateAuthority("unit CA");
      const me = await issueCertificate(ca, { commonName: "me", usage: "client" });
      const { privateJwk } = await newRequestSigningKey();
      const f = (n: string, text: string) => (writeFileSync(join(dir, n), text), join(dir, n));
      const io = capture();
      const code = await runAdmin(
        ["signer", "list", "--target", "https://127.0.0.1:1", "--ca", f("ca.crt", ca.cert), "--cert", f("me.crt", me.cert), "--key", f("me.key", me.key), "--request-key", f("me.jwk", JSON.stringify(privateJwk)), "--user-id", "pu-x"],
        adminNouns, {}, adminVerbs,
      );
      expect(code).toBe(exitCodes.failed);
      expect(io.err()).toMatch(/\[Unavailable\]/);
      expect(io.err()).not.toContain(privateJwk.d!);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
