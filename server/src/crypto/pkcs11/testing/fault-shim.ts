/**
 * Tests only: builds the PKCS#11 fault shim (shim/pkcs11-fault-shim.c) with gcc and commands it.
 * The shim forwards every call to SoftHSM2 and fails chosen calls with chosen CKR codes, or drops
 * every session the way a restarting HSM does (see the C file). A SAM configured with
 * `pkcs11Library: shim.library` meets a real PKCS#11-level fault.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { findSoftHsmLibrary } from "../softhsm-token.js";

/** The C source, beside this file (tests only: not part of the build). */
const source = fileURLToPath(new URL("./shim/pkcs11-fault-shim.c", import.meta.url));

/** The CKR names the shim knows (ckr_names in the C file); a number ("0x30") works too. */
const KNOWN_CKR = new Set([
  "CKR_GENERAL_ERROR", "CKR_FUNCTION_FAILED", "CKR_DEVICE_ERROR", "CKR_DEVICE_MEMORY", "CKR_DEVICE_REMOVED", "CKR_SESSION_CLOSED",
  "CKR_SESSION_HANDLE_INVALID", "CKR_TOKEN_NOT_PRESENT", "CKR_USER_NOT_LOGGED_IN", "CKR_CRYPTOKI_NOT_INITIALIZED", "CKR_PIN_INCORRECT", "CKR_PIN_LOCKED",
]);

function checkCkr(ckr: string): string {
  if (!KNOWN_CKR.has(ckr) && !/^(0x[0-9a-fA-F]+|[1-9][0-9]*)$/.test(ckr)) throw new Error(`the fault shim does not know ${ckr}: add it to ckr_names`);
  return ckr;
}

export interface FaultShim {
  /** The shim's path: configure it as the SAM's PKCS#11 library. */
  library: string;
  /** Calls named in `functions` ("*": every call the shim wraps) fail with `ckr` until clear(). */
  fail(ckr: string, functions: readonly string[] | "*"): void;
  /** Closes every session of SoftHSM2 once, before the next call goes through (an HSM restart). */
  dropSessions(): void;
  /** A device removed, a network HSM gone: every session dropped and every call failing with `ckr`. */
  outage(ckr: string): void;
  /** No more faults (dropped sessions stay dropped). */
  clear(): void;
  /** Removes the build directory. */
  remove(): void;
}

/**
 * Builds the shim into a fresh directory and points it (through the environment it reads in
 * C_GetFunctionList) at SoftHSM2 and its control file. Returns the reason instead when it cannot
 * be built here (no gcc), for the test to print when it skips.
 */
export function buildFaultShim(): { shim: FaultShim } | { skipped: string } {
  let gcc: string;
  try {
    gcc = execFileSync("sh", ["-c", "command -v gcc"], { encoding: "utf8" }).trim();
  } catch {
    return { skipped: "gcc is not installed (apt-get install -y gcc): the PKCS#11 fault shim cannot be built" };
  }
  if (!existsSync(source)) return { skipped: `the shim's source ${source} is missing` };
  const headers = join(dirname(createRequire(import.meta.url).resolve("pkcs11js/package.json")), "includes", "pkcs11");
  const dir = mkdtempSync(join(tmpdir(), "inkan-pkcs11-shim-"));
  const library = join(dir, "libpkcs11-fault-shim.so");
  execFileSync(gcc, ["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-I", headers, "-o", library, source, "-ldl", "-lpthread"], { stdio: "pipe" });
  const control = join(dir, "control");
  process.env["INKAN_SHIM_LIBRARY"] = findSoftHsmLibrary();
  process.env["INKAN_SHIM_CONTROL"] = control;

  let drops = 0;
  let fault = "";
  const write = () => {
    // Atomic for the shim, which reads the file on every call: a new file renamed over the old one.
    const lines = [drops > 0 ? `drop-sessions ${drops}` : "", fault].filter(Boolean).join("\n");
    writeFileSync(`${control}.next`, `${lines}\n`);
    renameSync(`${control}.next`, control);
  };
  return {
    shim: {
      library,
      fail(ckr, functions) {
        fault = `fail ${checkCkr(ckr)} ${functions === "*" ? "*" : functions.join(" ")}`;
        write();
      },
      dropSessions() {
        drops++;
        write();
      },
      outage(ckr) {
        drops++;
        fault = `fail ${checkCkr(ckr)} *`;
        write();
      },
      clear() {
        fault = "";
        write();
      },
      remove() {
        rmSync(dir, { recursive: true, force: true });
      },
    },
  };
}
