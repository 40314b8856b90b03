import "reflect-metadata"; // @peculiar/x509 (via tsyringe) needs the Reflect metadata polyfill
import { createHash, webcrypto, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Reason, inkanErrorReason } from "@inkan/sdk";
import { AuditService } from "@inkan/sdk/gen/inkan/admin/v1/audit_pb.js";
import { CertificateBindingSchema, PrivilegedUserService, type CertificateBinding } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import * as x509 from "@peculiar/x509";
import Database from "better-sqlite3";
import canonicalize from "canonicalize";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VerifiedRecords } from "../integrity/sealed-records.js";
import { loadCertificateAuthority, serialNumber, type Pem } from "../pki/dev-pki.js";
import type { PrivilegedUserRecord } from "../store/port.js";
import { sqliteStoreFile } from "../store/sqlite/sqlite-store.js";
import { bindingOf, newRequestSigningKey, refusalOf, startTestServer, type PrivilegedPerson, type TestServer } from "../testing/harness.js";
import type { PrivilegedUserBody } from "./privileged-users.js";

// T-2.2.2.1, R-3.2.1.6: one client certificate identifies at most one privileged user. A security
// officer must not be able to bind another user so that an officer's certificate matches them too
// (shadowing the officer, or splitting their identity), in any binding form a client could send.
let t: TestServer;
let records: VerifiedRecords | undefined;
beforeAll(async () => {
  t = await startTestServer({}, { onRecords: (r) => void (records = r) });
}, 60_000);
afterAll(async () => {
  await t?.close();
});

/** The outcome of a call: "ok", or its gRPC code and Inkan reason. */
async function outcome(p: Promise<unknown>): Promise<"ok" | { code: Code; reason: Reason }> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return { code: ConnectError.from(err).code, reason: inkanErrorReason(err) };
  }
}

/**
 * A CertificateBinding with one field as a client sends it on the wire: 1 certificate SHA-256 and
 * 2 subject (the forms Inkan took before issue 13), 3 SPKI SHA-256. Built from bytes, so a form
 * this SDK no longer knows still reaches the SAM exactly as an older client would send it.
 */
function wireBinding(field: 1 | 2 | 3, value: Uint8Array | string): CertificateBinding {
  const w = new BinaryWriter().tag(field, WireType.LengthDelimited);
  const bytes = typeof value === "string" ? w.string(value).finish() : w.bytes(value).finish();
  return fromBinary(CertificateBindingSchema, bytes);
}

/** Every binding that the certificate `pem` matches, by form. */
function bindingsMatching(pem: string): Record<"spkiSha256" | "certificateSha256" | "subject", CertificateBinding> {
  const cert = new X509Certificate(pem);
  return {
    spkiSha256: wireBinding(3, createHash("sha256").update(cert.publicKey.export({ type: "spki", format: "der" })).digest()),
    certificateSha256: wireBinding(1, Buffer.from(cert.fingerprint256.replaceAll(":", ""), "hex")),
    subject: wireBinding(2, cert.subject),
  };
}

const users = (who: PrivilegedPerson) => createClient(PrivilegedUserService, t.as(who));
const registration = (who: PrivilegedPerson) => createClient(RegistrationService, t.as(who));
const alreadyExists = { code: Code.AlreadyExists, reason: Reason.ALREADY_EXISTS };
const invalid = { code: Code.InvalidArgument, reason: Reason.INVALID_REQUEST };

describe("a client certificate identifies at most one privileged user (T-2.2.2.1, R-3.2.1.6)", () => {
  it("T-2.2.2.1: no binding that officer A's certificate matches can be given to another user, in any form; A stays A", async () => {
    const so1 = t.firstSecurityOfficer;
    const a = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "officer-a", so1);
    const attempts: Record<string, unknown> = {};
    for (const [form, binding] of Object.entries(bindingsMatching(a.cert.cert))) {
      // An auditor needs no second officer's approval: the cheapest way to plant a shadow.
      attempts[form] = await outcome(users(so1).createPrivilegedUser({
        displayName: `shadow of A (${form})`, role: PrivilegedRole.AUDITOR, certificateBinding: binding,
        publicKeyJwk: (await newRequestSigningKey()).publicJwk,
      }));
    }
    // The key's binding is taken; the forms that let one certificate match two users are gone.
    expect(attempts).toEqual({ spkiSha256: alreadyExists, certificateSha256: invalid, subject: invalid });
    // A's certificate still authenticates A (with A's key), and only A.
    const self = await users(a).getPrivilegedUser({ userId: a.userId });
    expect(self.user?.userId).toBe(a.userId);
    const listed = await users(so1).listPrivilegedUsers({});
    expect(listed.users.filter((u) => u.displayName.startsWith("shadow of A"))).toEqual([]);
  });
});

/** A certificate from the development admin CA for the key of `holder` (same SubjectPublicKeyInfo), with `subject`. */
async function certificateForKeyOf(holder: Pem, subject: string): Promise<Pem> {
  const read = (f: string) => readFileSync(f, "utf8");
  const ca = await loadCertificateAuthority({ cert: read(t.pki.paths.adminCaCert), key: read(t.pki.paths.adminCaKey) });
  const spki = new X509Certificate(holder.cert).publicKey.export({ type: "spki", format: "der" });
  const publicKey = await webcrypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(), subject, issuer: ca.certificate.subject, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000),
    publicKey, signingKey: ca.signingKey, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ],
  });
  return { cert: certificate.toString("pem"), key: holder.key };
}

describe("bindings by public key (T-2.2.2.1)", () => {
  it("T-2.2.2.1: re-binding a user (UpdatePrivilegedUser) to another user's key is refused ALREADY_EXISTS; the binding stays", async () => {
    const so1 = t.firstSecurityOfficer;
    const b = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-b", so1);
    const auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-c", so1);
    const before = (await users(so1).getPrivilegedUser({ userId: auditor.userId })).user!;
    const rebind = users(so1).updatePrivilegedUser({ userId: auditor.userId, expectedVersion: before.version, displayName: before.displayName, certificateBinding: bindingOf(b.cert) });
    expect(await refusalOf(rebind)).toMatchObject(alreadyExists);
    expect((await users(so1).getPrivilegedUser({ userId: auditor.userId })).user!.certificateBinding).toEqual(before.certificateBinding);
    // B's certificate still authenticates B: B reaches an RPC of B's role, which the auditor's is refused.
    expect(await outcome(registration(b).listSigners({}))).toBe("ok");
  });

  it("a certificate renewed for the same key identifies the same user; another key with the same subject identifies nobody", async () => {
    const so1 = t.firstSecurityOfficer;
    const a = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-renewed", so1);
    const subject = new X509Certificate(a.cert.cert).subject.split("\n").join(", ");
    const renewed: PrivilegedPerson = { ...a, cert: await certificateForKeyOf(a.cert, subject) };
    expect(await outcome(registration(renewed).listSigners({}))).toBe("ok");
    const impostorCert = await t.issueAdminCertificate("operator-renewed"); // the same subject, another key
    expect(new X509Certificate(impostorCert.cert).subject).toBe(new X509Certificate(a.cert.cert).subject);
    const impostor: PrivilegedPerson = { ...a, cert: impostorCert };
    expect(await refusalOf(registration(impostor).listSigners({}))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.CLIENT_CERTIFICATE_REJECTED });
  });
});

describe("a certificate that matches two users identifies nobody (T-2.2.2.1, fail closed)", () => {
  it("T-2.2.2.1: with the store's unique index gone and a second sealed user on A's key, A's certificate is refused and the refusal audited", async () => {
    const so1 = t.firstSecurityOfficer;
    const auditor = await t.createPrivilegedUser(PrivilegedRole.AUDITOR, "auditor-ambiguity", so1);
    const a = await t.createPrivilegedUser(PrivilegedRole.REGISTRATION_OPERATOR, "operator-twinned", so1);
    expect(await outcome(registration(a).listSigners({}))).toBe("ok");

    // The insider drops the unique index (SQLite: rebuild the table without it) ...
    const db = new Database(sqliteStoreFile(t.dataDir));
    try {
      db.exec(`
        CREATE TABLE privileged_users_loose (id TEXT PRIMARY KEY, version INTEGER NOT NULL, role TEXT NOT NULL, status TEXT NOT NULL,
          certificate_fingerprint TEXT NOT NULL, body TEXT NOT NULL, seal BLOB NOT NULL) STRICT;
        INSERT INTO privileged_users_loose SELECT id, version, role, status, certificate_fingerprint, body, seal FROM privileged_users;
        DROP TABLE privileged_users;
        ALTER TABLE privileged_users_loose RENAME TO privileged_users;`);
    } finally {
      db.close();
    }
    // ... and a second user on A's key gets written with a valid seal, as two concurrent
    // CreatePrivilegedUser calls could do once nothing refuses the second.
    const original = (await records!.get("privileged-user", a.userId))!;
    const body: PrivilegedUserBody = { ...(JSON.parse(original.body) as PrivilegedUserBody), displayName: "twin" };
    await records!.create<PrivilegedUserRecord>({ kind: "privileged-user", id: "pu-twin", version: 1, role: "AUDITOR", status: "ACTIVE", certificateFingerprint: original.certificateFingerprint, body: canonicalize(body)! });

    expect(await refusalOf(registration(a).listSigners({}))).toMatchObject({ code: Code.Unauthenticated, reason: Reason.CLIENT_CERTIFICATE_REJECTED });
    const { records: audit } = await createClient(AuditService, t.as(auditor)).listAuditRecords({ page: { pageSize: 1000 } });
    const aSha256 = Buffer.from(new X509Certificate(a.cert.cert).fingerprint256.replaceAll(":", ""), "hex");
    const refused = audit.filter((r) => r.eventType === "admin_request.refused" && r.reason === Reason.CLIENT_CERTIFICATE_REJECTED);
    expect(refused.some((r) => Buffer.from(r.actor?.certificateSha256 ?? []).equals(aSha256))).toBe(true);
    // Everyone else is unaffected.
    expect((await users(so1).getPrivilegedUser({ userId: a.userId })).user?.userId).toBe(a.userId);
  });
});
