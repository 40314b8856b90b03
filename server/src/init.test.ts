import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import canonicalize from "canonicalize";
import { afterAll, describe, expect, it } from "vitest";
import { PrivilegedUsers, spkiSha256, type PrivilegedUserBody } from "./admin/privileged-users.js";
import { openEmbeddedCryptoModule } from "./crypto/pkcs11/softhsm-token.js";
import { initDataDir } from "./init.js";
import { RecordSealer } from "./integrity/record-sealer.js";
import { VerifiedRecords } from "./integrity/sealed-records.js";
import type { PrivilegedUserRecord } from "./store/port.js";
import { createSqliteStore, sqliteStoreFile } from "./store/sqlite/sqlite-store.js";

// `inkan init` binds the first security officer by the public key of pki/admin.crt (T-2.2.2.1),
// and re-binds one that a data directory from before issue 13 bound by the certificate's SHA-256.
const dataDir = mkdtempSync(join(tmpdir(), "inkan-init-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

/** Runs `fn` with the data directory's sealed records and privileged users, as the SAM sees them. */
async function withRecords<T>(fn: (records: VerifiedRecords, users: PrivilegedUsers) => Promise<T>): Promise<T> {
  const crypto = await openEmbeddedCryptoModule(dataDir);
  const store = await createSqliteStore({ file: sqliteStoreFile(dataDir) });
  try {
    const records = new VerifiedRecords(store, new RecordSealer({ keys: crypto }));
    return await fn(records, new PrivilegedUsers({ records, oneTime: store, random: crypto }));
  } finally {
    await store.close();
    await crypto.close();
  }
}

describe("inkan init and the first security officer's binding (T-2.2.2.1)", () => {
  it("binds the first security officer by the SHA-256 of pki/admin.crt's public key", async () => {
    const { paths } = await initDataDir(dataDir);
    const adminCert = new X509Certificate(readFileSync(paths.adminCert));
    const user = await withRecords((_records, users) => users.userOfCertificate({ spkiSha256: spkiSha256(adminCert) }));
    expect(user?.id).toBe(paths.adminUserId);
    expect(user?.certificateFingerprint).toBe(`spki:${createHash("sha256").update(adminCert.publicKey.export({ type: "spki", format: "der" })).digest("hex")}`);
  });

  it("re-binds a first security officer bound by the certificate's SHA-256 (a data directory from before), once, keeping the user", async () => {
    const { paths } = await initDataDir(dataDir);
    const adminCert = new X509Certificate(readFileSync(paths.adminCert));
    const certificateSha256 = adminCert.fingerprint256.replaceAll(":", "").toLowerCase();
    // Put the record back into the old form, sealed as the SAM did then.
    await withRecords(async (records) => {
      const user = (await records.get("privileged-user", paths.adminUserId))!;
      const body: PrivilegedUserBody = { ...(JSON.parse(user.body) as PrivilegedUserBody), certificateBinding: { certificateSha256 } };
      await records.update<PrivilegedUserRecord>({ ...user, version: user.version + 1, certificateFingerprint: `sha256:${certificateSha256}`, body: canonicalize(body)! }, user.version);
    });
    expect(await withRecords((_r, users) => users.userOfCertificate({ spkiSha256: spkiSha256(adminCert) }))).toBeUndefined(); // the old form identifies nobody

    const again = await initDataDir(dataDir);
    expect(again.paths.adminUserId).toBe(paths.adminUserId);
    expect(again.created).toEqual(["first security officer's binding by public key"]);
    const rebound = await withRecords((_r, users) => users.userOfCertificate({ spkiSha256: spkiSha256(adminCert) }));
    expect(rebound?.id).toBe(paths.adminUserId);
    expect(JSON.parse(rebound!.body)).toMatchObject({ certificateBinding: { spkiSha256: spkiSha256(adminCert) } });
    expect((await initDataDir(dataDir)).created).toEqual([]);
  });
});

describe("inkan init's development identities (issues 18.7, 19, 23)", () => {
  it("creates the signer front end (its own CA), a second SCA under a second CA, a registration operator and an auditor, once", async () => {
    const { paths } = await initDataDir(dataDir);
    const cert = (f: string) => new X509Certificate(readFileSync(f));
    const frontEnd = cert(paths.signerFrontEnd.cert);
    expect(frontEnd.checkIssued(cert(paths.frontEndCaCert))).toBe(true);
    expect(frontEnd.checkIssued(cert(paths.scaCaCert))).toBe(false);
    expect(paths.signerFrontEnd.ca).toBe(paths.caCert);
    const secondSca = cert(paths.secondSca.cert);
    expect(secondSca.checkIssued(cert(paths.secondScaCaCert))).toBe(true);
    expect(secondSca.checkIssued(cert(paths.scaCaCert))).toBe(false);
    expect(paths.secondSca.signerGroup).toBe("demo-b");
    // Every client certificate: digitalSignature, clientAuth (the profile the README documents).
    for (const c of [frontEnd, secondSca, cert(paths.registrationOperator.cert), cert(paths.auditor.cert)]) {
      expect(c.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]); // Node lists the extended key usages here: clientAuth only
      expect(c.ca).toBe(false);
    }
    const [ra, auditor] = await withRecords(async (_r, users) => [
      await users.userOfCertificate({ spkiSha256: spkiSha256(cert(paths.registrationOperator.cert)) }),
      await users.userOfCertificate({ spkiSha256: spkiSha256(cert(paths.auditor.cert)) }),
    ]);
    expect(ra).toMatchObject({ id: paths.registrationOperator.userId, role: "REGISTRATION_OPERATOR", status: "ACTIVE" });
    expect(auditor).toMatchObject({ id: paths.auditor.userId, role: "AUDITOR", status: "ACTIVE" });
    for (const who of [paths.registrationOperator, paths.auditor]) {
      const jwk = JSON.parse(readFileSync(who.requestKey, "utf8")) as { sub: string; d?: string; kid?: string };
      expect(jwk.sub).toBe(who.userId);
      expect(jwk.d && jwk.kid).toBeTruthy();
      expect(statSync(who.requestKey).mode & 0o077).toBe(0);
      expect(statSync(who.key).mode & 0o077).toBe(0);
    }
    const again = await initDataDir(dataDir);
    expect(again.created).toEqual([]);
    expect(again.paths).toEqual(paths);
  });
});
