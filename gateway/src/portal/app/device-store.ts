/**
 * The device's registration in IndexedDB: the device key (a non-extractable WebCrypto private key,
 * stored as the CryptoKey object itself: the browser keeps it, the page can use it but never read
 * it), the signer id, and the SAM's challenge-signing key pinned at activation.
 */
import type { DeviceKey } from "@inkan/sdk/device";

export interface Registration {
  signerId: string;
  deviceKey: DeviceKey;
  /** GetInfo/CreateChallenge challenge_signing_key as protobuf JSON, pinned at activation. */
  challengeSigningKey: unknown;
  samId: string;
  registeredAt: string;
}

const dbName = "inkan-portal";
const storeName = "device";

function open(): Promise<IDBDatabase> {
  return new Promise((done, fail) => {
    const req = indexedDB.open(dbName, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(storeName);
    req.onsuccess = () => done(req.result);
    req.onerror = () => fail(req.error);
  });
}

async function run<T>(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((done, fail) => {
      const req = op(db.transaction(storeName, mode).objectStore(storeName));
      req.onsuccess = () => done(req.result as T);
      req.onerror = () => fail(req.error);
    });
  } finally {
    db.close();
  }
}

export function loadRegistration(): Promise<Registration | undefined> {
  return run<Registration | undefined>("readonly", (s) => s.get("current"));
}

export async function saveRegistration(r: Registration): Promise<void> {
  await run("readwrite", (s) => s.put(r, "current"));
}
