/**
 * The key-import transport keys on a real SoftHSM2 token (T-2.1.4.1): generated in the module,
 * kept across a restart of the module, rotated within a day of expiry, expired keys refused, and a
 * key list changed outside the SAM never used.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pkcs11CryptoModule } from "../crypto/pkcs11/pkcs11-crypto-module.js";
import { initEmbeddedToken, openEmbeddedCryptoModule } from "../crypto/pkcs11/softhsm-token.js";
import { InkanError } from "../errors.js";
import { KeyImportTransportKeys, transportKeyLifetimeMs, transportKeyRenewMs, transportKeySetLabel } from "./key-import-transport-key.js";

let dataDir: string;
let hsm: Pkcs11CryptoModule;
const t0 = new Date("2026-03-01T10:00:00Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

async function failure(p: Promise<unknown>): Promise<InkanError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof InkanError)) throw new Error(`expected an InkanError, got ${String(err)}`);
  return err;
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "inkan-transport-keys-"));
  await initEmbeddedToken(dataDir);
  hsm = await openEmbeddedCryptoModule(dataDir);
}, 120_000);

afterAll(async () => {
  await hsm?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("key-import transport keys", () => {
  it("T-2.1.4.1 the first request generates an RSA 3072 unwrap key in the module; it survives a restart of the module and is the same for another instance", async () => {
    const first = await new KeyImportTransportKeys({ crypto: hsm }).current(t0);
    expect(first.expiresAt).toEqual(at(transportKeyLifetimeMs));
    const keyId = await new KeyImportTransportKeys({ crypto: hsm }).unwrapKeyId(first.transportKeyId, t0);
    expect(await hsm.findKey(keyId)).toMatchObject({ usage: "unwrap", algorithm: "RSA_3072", generatedInModule: true });
    await hsm.close();
    hsm = await openEmbeddedCryptoModule(dataDir);
    const again = await new KeyImportTransportKeys({ crypto: hsm }).current(at(60_000));
    expect(again.transportKeyId).toBe(first.transportKeyId);
    expect(Buffer.from(again.publicKeySpki)).toEqual(Buffer.from(first.publicKeySpki));
  }, 60_000);

  it("T-2.1.4.1 within a day of expiry a new key is generated; the old one is accepted until it expires (then EXPIRED) and destroyed at the next rotation", async () => {
    const keys = new KeyImportTransportKeys({ crypto: hsm });
    const old = await keys.current(t0);
    const oldKeyId = await keys.unwrapKeyId(old.transportKeyId, t0);
    const nearEnd = at(transportKeyLifetimeMs - transportKeyRenewMs + 1);
    const fresh = await keys.current(nearEnd);
    expect(fresh.transportKeyId).not.toBe(old.transportKeyId);
    expect(await keys.unwrapKeyId(old.transportKeyId, nearEnd)).toBe(oldKeyId);
    const err = await failure(keys.unwrapKeyId(old.transportKeyId, at(transportKeyLifetimeMs)));
    expect(err).toMatchObject({ code: "EXPIRED", field: "transport_key_id" });
    expect((await failure(keys.unwrapKeyId("unknown", t0))).code).toBe("INVALID_REQUEST");
    // The next rotation (near the new key's end) drops and destroys the expired one.
    await keys.current(new Date(fresh.expiresAt.getTime() - transportKeyRenewMs + 1));
    expect(await hsm.findKey(oldKeyId)).toBeUndefined();
  }, 60_000);

  it("R-3.2.1.7 a key list changed outside the SAM (an expiry pushed back) fails its integrity check", async () => {
    const keys = new KeyImportTransportKeys({ crypto: hsm });
    const current = await keys.current(t0);
    const raw = (await hsm.readDataObject(transportKeySetLabel))!;
    const doc = JSON.parse(new TextDecoder().decode(raw)) as { body: { keys: { expiresAt: string }[] }; seal: string };
    doc.body.keys[0]!.expiresAt = "2099-01-01T00:00:00.000Z";
    await hsm.writeDataObject(transportKeySetLabel, new TextEncoder().encode(JSON.stringify(doc)));
    try {
      expect((await failure(keys.unwrapKeyId(current.transportKeyId, t0))).code).toBe("INTEGRITY_VIOLATION");
      expect((await failure(keys.current(t0))).code).toBe("INTEGRITY_VIOLATION");
    } finally {
      await hsm.writeDataObject(transportKeySetLabel, raw);
    }
  });
});
