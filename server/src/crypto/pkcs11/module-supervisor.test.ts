/**
 * The supervisor's state machine (issue 22), with fake timers and a fake check and reconnect:
 * which failures mark the module lost, fail-closed refusal while lost, backoff, recovery, the
 * periodic check, and that nothing runs after close. The real module is in module-loss.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { InkanError } from "../../errors.js";
import type { ModuleStateChange } from "../port.js";
import { pkcs11js } from "./library.js";
import { ModuleSupervisor, type ModuleSupervisorOptions } from "./module-supervisor.js";

const ckr = (name: string) => Object.assign(new pkcs11js.Pkcs11Error(name, 0, "C_Sign"), { message: name });

function supervisor(options: Partial<ModuleSupervisorOptions> = {}) {
  const changes: ModuleStateChange[] = [];
  const check = vi.fn(options.check ?? (async () => undefined));
  const reconnect = vi.fn(options.reconnect ?? (async () => undefined));
  const s = new ModuleSupervisor({ initialDelayMs: 100, maxDelayMs: 1_000, probeIntervalMs: 0, random: () => 1, ...options, check, reconnect });
  s.onStateChange((c) => changes.push(c));
  return { s, changes, check, reconnect };
}

const codeOf = (fn: () => void) => {
  try {
    fn();
  } catch (err) {
    return (err as InkanError).code;
  }
  return "no error";
};

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("ModuleSupervisor (issue 22)", () => {
  it("a CKR code meaning the device is gone marks the module lost: every call is refused with CRYPTO_MODULE_FAILURE until a reconnect succeeds", async () => {
    const { s, changes, reconnect } = supervisor();
    s.observe(ckr("CKR_DEVICE_REMOVED"));
    expect(s.available).toBe(false);
    expect(codeOf(() => s.assertAvailable())).toBe("CRYPTO_MODULE_FAILURE");
    expect(changes).toEqual([{ state: "lost", reason: "CKR_DEVICE_REMOVED" }]);
    await vi.advanceTimersByTimeAsync(0); // the first attempt follows at once
    expect(reconnect).toHaveBeenCalledWith(1);
    expect(s.available).toBe(true);
    expect(changes.at(-1)).toMatchObject({ state: "recovered", attempts: 1 });
    expect(codeOf(() => s.assertAvailable())).toBe("no error");
  });

  it.each(["CKR_DEVICE_REMOVED", "CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_CLOSED", "CKR_TOKEN_NOT_PRESENT", "CKR_USER_NOT_LOGGED_IN", "CKR_CRYPTOKI_NOT_INITIALIZED"])(
    "%s, also as the cause of a CRYPTO_MODULE_FAILURE, marks the module lost",
    (name) => {
      const { s } = supervisor();
      s.observe(new InkanError("CRYPTO_MODULE_FAILURE", "crypto module failure during signing", { cause: ckr(name) }));
      expect(s.available).toBe(false);
    },
  );

  it("a refusal of the request (bad input, a key not found, tampered data) says nothing about the module: no check, still available", async () => {
    const { s, check } = supervisor();
    for (const code of ["INVALID_REQUEST", "CREDENTIAL_NOT_FOUND", "INTEGRITY_VIOLATION", "HASH_LENGTH_MISMATCH"] as const) s.observe(new InkanError(code, "refused"));
    await vi.advanceTimersByTimeAsync(0);
    expect(check).not.toHaveBeenCalled();
    expect(s.available).toBe(true);
  });

  it("an unexpected failure is checked: a passing check keeps the module available, a failing one marks it lost with the check's reason", async () => {
    let healthy = true;
    const { s, changes, check } = supervisor({
      check: async () => {
        if (!healthy) throw ckr("CKR_GENERAL_ERROR");
      },
      reconnect: async () => {
        throw new InkanError("CRYPTO_MODULE_FAILURE", "no initialized token matches the configured token URI");
      },
    });
    s.observe(ckr("CKR_DEVICE_ERROR")); // may be passing: checked, not taken for a loss
    await vi.advanceTimersByTimeAsync(0);
    expect(check).toHaveBeenCalledTimes(1);
    expect(s.available).toBe(true);
    healthy = false;
    s.observe(new InkanError("CRYPTO_MODULE_FAILURE", "attribute missing in the module's answer"));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.available).toBe(false);
    expect(changes[0]).toEqual({ state: "lost", reason: "CKR_GENERAL_ERROR" });
    await s.close();
  });

  it("reconnect attempts back off: delays double from the initial one up to the maximum, each failure reported, until one succeeds", async () => {
    let failures = 5;
    const { s, changes, reconnect } = supervisor({
      reconnect: async () => {
        if (failures-- > 0) throw ckr("CKR_DEVICE_REMOVED");
      },
    });
    s.observe(ckr("CKR_DEVICE_REMOVED"));
    await vi.advanceTimersByTimeAsync(0);
    const failed = () => changes.filter((c) => c.state === "reconnect-failed");
    expect(failed()).toEqual([{ state: "reconnect-failed", attempt: 1, reason: "CKR_DEVICE_REMOVED", retryInMs: 100 }]);
    await vi.advanceTimersByTimeAsync(99);
    expect(reconnect).toHaveBeenCalledTimes(1); // not before its delay
    await vi.advanceTimersByTimeAsync(1 + 200 + 400 + 800 + 1_000);
    expect(failed().map((c) => (c.state === "reconnect-failed" ? c.retryInMs : 0))).toEqual([100, 200, 400, 800, 1_000]);
    expect(s.available).toBe(true);
    expect(changes.at(-1)).toMatchObject({ state: "recovered", attempts: 6, downMs: 2_500 });
  });

  it("a permanent reconnect failure (a refused PIN) ends the attempts: retries would lock the token's user; calls stay refused", async () => {
    const { s, changes, reconnect } = supervisor({
      reconnect: async () => Promise.reject(ckr("CKR_PIN_INCORRECT")),
      isPermanent: (err) => err instanceof Error && err.message === "CKR_PIN_INCORRECT",
    });
    s.observe(ckr("CKR_SESSION_HANDLE_INVALID"));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(reconnect).toHaveBeenCalledTimes(1);
    expect(changes).toEqual([
      { state: "lost", reason: "CKR_SESSION_HANDLE_INVALID" },
      { state: "reconnect-failed", attempt: 1, reason: "CKR_PIN_INCORRECT", retryInMs: null },
    ]);
    expect(codeOf(() => s.assertAvailable())).toBe("CRYPTO_MODULE_FAILURE");
  });

  it("jitter spreads the delay between half and all of it", async () => {
    const { s, changes } = supervisor({ random: () => 0, reconnect: async () => Promise.reject(ckr("CKR_DEVICE_ERROR")) });
    s.observe(ckr("CKR_DEVICE_REMOVED"));
    await vi.advanceTimersByTimeAsync(0);
    expect(changes.at(-1)).toMatchObject({ state: "reconnect-failed", retryInMs: 50 });
    await s.close();
  });

  it("the periodic check notices a module lost while nobody calls", async () => {
    let healthy = true;
    const { s, changes } = supervisor({
      probeIntervalMs: 1_000,
      check: async () => {
        if (!healthy) throw ckr("CKR_SESSION_HANDLE_INVALID");
      },
    });
    await vi.advanceTimersByTimeAsync(3_000);
    expect(changes).toEqual([]);
    healthy = false;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(changes).toEqual([{ state: "lost", reason: "CKR_SESSION_HANDLE_INVALID" }]);
    await vi.advanceTimersByTimeAsync(1); // the reconnect attempt follows at once
    expect(changes[1]).toMatchObject({ state: "recovered", attempts: 1 });
    await s.close();
  });

  it("confirm() joins the check under way and throws CRYPTO_MODULE_FAILURE when it fails, so a lost token is not reported as a missing key", async () => {
    let release: () => void = () => undefined;
    const { s, check } = supervisor({
      check: () => new Promise<void>((_, reject) => (release = () => reject(ckr("CKR_GENERAL_ERROR")))),
      reconnect: () => new Promise<void>(() => undefined),
    });
    const confirms = [s.confirm(), s.confirm(), s.confirm()].map((p) => p.catch((err: unknown) => (err as InkanError).code));
    release();
    expect(await Promise.all(confirms)).toEqual(["CRYPTO_MODULE_FAILURE", "CRYPTO_MODULE_FAILURE", "CRYPTO_MODULE_FAILURE"]);
    expect(check).toHaveBeenCalledTimes(1);
    expect(await s.confirm().catch((err: unknown) => (err as InkanError).code)).toBe("CRYPTO_MODULE_FAILURE"); // lost: refused at once
  });

  it("after close nothing is checked or reconnected, and calls are refused", async () => {
    const { s, reconnect, check } = supervisor({ probeIntervalMs: 100, reconnect: async () => Promise.reject(ckr("CKR_DEVICE_ERROR")) });
    s.observe(ckr("CKR_DEVICE_REMOVED"));
    await vi.advanceTimersByTimeAsync(0);
    await s.close();
    const attempts = reconnect.mock.calls.length;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(reconnect).toHaveBeenCalledTimes(attempts);
    expect(check).not.toHaveBeenCalled();
    expect(codeOf(() => s.assertAvailable())).toBe("CRYPTO_MODULE_FAILURE");
  });

  it("a throwing listener does not stop the others or the supervision", async () => {
    const { s, changes } = supervisor();
    s.onStateChange(() => {
      throw new Error("listener bug");
    });
    s.observe(ckr("CKR_DEVICE_REMOVED"));
    await vi.advanceTimersByTimeAsync(0);
    expect(changes.map((c) => c.state)).toEqual(["lost", "recovered"]);
  });
});
