import { describe, expect, it } from "vitest";
import type { CredentialRecord, CredentialStatus, SignerRecord } from "../store/port.js";
import { certificateRefusal, credentialRefusal, csrApprovalShapeRefusal, isCsrApproval, type CredentialUsabilityInput } from "./credential-usability.js";

// Unit tests of the pure check the SAP runs before it authorizes or signs: records as the
// store returns them (seals are not this function's concern).
const t0 = new Date("2026-11-25T10:00:00.000Z");
const at = (ms: number) => new Date(t0.getTime() + ms);

function signer(status: SignerRecord["status"] = "ACTIVE", body: object = {}): SignerRecord {
  return { kind: "signer", id: "sig-1", version: 1, status, body: JSON.stringify(body), seal: new Uint8Array() } as SignerRecord;
}
function credential(status: CredentialStatus = "ACTIVE", body: object = {}, signerId = "sig-1"): CredentialRecord {
  return { kind: "credential", id: "crd-1", version: 1, signerId, status, publicKeyFingerprint: "00", body: JSON.stringify({ keyId: "0a", ...body }), seal: new Uint8Array() } as CredentialRecord;
}
const transaction = (createdAt: Date = t0, signerId = "sig-1") => ({ signerId, createdAt });
/** credentialRefusal at t0 without grace, unless the input says otherwise. */
const refusal = (input: Omit<CredentialUsabilityInput, "now" | "certificateExpiryGraceMs"> & Partial<CredentialUsabilityInput>) =>
  credentialRefusal({ now: t0, certificateExpiryGraceMs: 0, ...input });
const codeOf = (...args: Parameters<typeof refusal>) => refusal(...args)?.code;

describe("credentialRefusal (R-3.3.1)", () => {
  it("lets an ACTIVE credential of an ACTIVE signer be used", () => {
    expect(refusal({ credential: credential(), signer: signer(), transaction: transaction() })).toBeUndefined();
  });

  it("R-3.3.1: refuses a SUSPENDED credential with CREDENTIAL_SUSPENDED, whenever the transaction was created", () => {
    const c = credential("SUSPENDED", { usableSince: at(1000).toISOString(), suspendedAt: at(1000).toISOString() });
    expect(codeOf({ credential: c, signer: signer(), transaction: transaction(at(0)) })).toBe("CREDENTIAL_SUSPENDED");
    expect(codeOf({ credential: c, signer: signer(), transaction: transaction(at(5000)) })).toBe("CREDENTIAL_SUSPENDED");
  });

  it("R-3.3.1: after a resumption, a transaction created before it (and so its SAD tokens) stays unusable: TRANSACTION_STATE", () => {
    const resumed = credential("ACTIVE", { usableSince: at(1000).toISOString() });
    expect(codeOf({ credential: resumed, signer: signer(), transaction: transaction(at(0)) })).toBe("TRANSACTION_STATE");
    expect(codeOf({ credential: resumed, signer: signer(), transaction: transaction(at(1000)) })).toBe("TRANSACTION_STATE"); // the same millisecond: refused
    expect(refusal({ credential: resumed, signer: signer(), transaction: transaction(at(1001)) })).toBeUndefined();
  });

  it("fails closed on an unreadable usableSince", () => {
    const odd = credential("ACTIVE", { usableSince: "not a date" });
    expect(codeOf({ credential: odd, signer: signer(), transaction: transaction(at(10_000)) })).toBe("TRANSACTION_STATE");
  });

  it("refuses DESTROYED, LOCKED and KEY_GENERATED (PENDING) credentials with their reasons", () => {
    expect(codeOf({ credential: credential("DESTROYED"), signer: signer(), transaction: transaction() })).toBe("CREDENTIAL_DESTROYED");
    expect(codeOf({ credential: credential("LOCKED"), signer: signer(), transaction: transaction() })).toBe("CREDENTIAL_LOCKED");
    expect(codeOf({ credential: credential("PENDING"), signer: signer(), transaction: transaction() })).toBe("CREDENTIAL_SUSPENDED");
  });

  it("refuses when the signer is locked out, inactive or gone", () => {
    expect(codeOf({ credential: credential(), signer: signer("ACTIVE", { lockedAt: t0.toISOString() }), transaction: transaction() })).toBe("CREDENTIAL_LOCKED");
    expect(codeOf({ credential: credential(), signer: signer("DISABLED"), transaction: transaction() })).toBe("SIGNER_INACTIVE");
    expect(codeOf({ credential: credential(), signer: signer("PENDING_ACTIVATION"), transaction: transaction() })).toBe("SIGNER_INACTIVE");
    expect(codeOf({ credential: credential(), signer: undefined, transaction: transaction() })).toBe("SIGNER_INACTIVE");
  });

  it("refuses a missing credential, or one bound to another signer than the transaction's, as destroyed", () => {
    expect(codeOf({ credential: undefined, signer: signer(), transaction: transaction() })).toBe("CREDENTIAL_DESTROYED");
    expect(codeOf({ credential: credential("ACTIVE", {}, "sig-2"), signer: signer(), transaction: transaction() })).toBe("CREDENTIAL_DESTROYED");
    expect(codeOf({ credential: credential(), signer: signer(), transaction: transaction(t0, "sig-2") })).toBe("CREDENTIAL_DESTROYED");
  });
});

describe("a KEY_GENERATED credential signs only its CSR (R-3.1.3.2, T-2.1.3.2)", () => {
  it("R-3.1.3.2: usable for a CSR approval (Authorize, CreateCsr), never otherwise (SignHash, SignStream)", () => {
    expect(refusal({ credential: credential("PENDING"), signer: signer(), transaction: transaction(), csrApproval: true })).toBeUndefined();
    expect(codeOf({ credential: credential("PENDING"), signer: signer(), transaction: transaction(), csrApproval: false })).toBe("CREDENTIAL_SUSPENDED");
    expect(codeOf({ credential: credential("PENDING"), signer: signer(), transaction: transaction() })).toBe("CREDENTIAL_SUSPENDED");
  });

  it("R-3.3.1: a CSR approval does not lift any other refusal", () => {
    const csr = { signer: signer(), transaction: transaction(), csrApproval: true };
    expect(codeOf({ ...csr, credential: credential("SUSPENDED") })).toBe("CREDENTIAL_SUSPENDED");
    expect(codeOf({ ...csr, credential: credential("LOCKED") })).toBe("CREDENTIAL_LOCKED");
    expect(codeOf({ ...csr, credential: credential("DESTROYED") })).toBe("CREDENTIAL_DESTROYED");
    expect(codeOf({ ...csr, credential: credential("PENDING"), signer: signer("DISABLED") })).toBe("SIGNER_INACTIVE");
    expect(codeOf({ ...csr, credential: credential("PENDING"), signer: signer("ACTIVE", { lockedAt: t0.toISOString() }) })).toBe("CREDENTIAL_LOCKED");
    expect(codeOf({ ...csr, credential: credential("PENDING", { usableSince: at(1000).toISOString() }) })).toBe("TRANSACTION_STATE");
  });

  it("T-2.1.3.2: BeginTransaction on a KEY_GENERATED credential takes exactly one DTBS/R; other statuses any number", () => {
    expect(isCsrApproval(1)).toBe(true);
    expect(csrApprovalShapeRefusal("PENDING", 1)).toBeUndefined();
    for (const n of [0, 2, 1000]) expect(csrApprovalShapeRefusal("PENDING", n)).toMatchObject({ code: "INVALID_REQUEST", field: "num_signatures" });
    expect(csrApprovalShapeRefusal("ACTIVE", 2)).toBeUndefined();
  });
});

describe("a certificate outside its validity period (R-3.1.1.4, T-2.1.3.2)", () => {
  const certified = (notBefore: Date, notAfter: Date, status: CredentialStatus = "ACTIVE") =>
    credential(status, { certificate: { notBefore: notBefore.toISOString(), notAfter: notAfter.toISOString() } });
  const valid = certified(at(-60_000), at(60_000));

  it("T-2.1.3.2: refuses CERTIFICATE_EXPIRED after notAfter and before notBefore; inclusive bounds", () => {
    const input = { signer: signer(), transaction: transaction(at(-120_000)) };
    expect(refusal({ ...input, credential: valid, now: at(60_000) })).toBeUndefined();
    expect(refusal({ ...input, credential: valid, now: at(-60_000) })).toBeUndefined();
    expect(codeOf({ ...input, credential: valid, now: at(60_001) })).toBe("CERTIFICATE_EXPIRED");
    expect(codeOf({ ...input, credential: valid, now: at(-60_001) })).toBe("CERTIFICATE_EXPIRED");
  });

  it("T-2.1.3.2: the policy's grace extends notAfter only, never notBefore", () => {
    const input = { signer: signer(), transaction: transaction(at(-120_000)), credential: valid, certificateExpiryGraceMs: 10_000 };
    expect(refusal({ ...input, now: at(70_000) })).toBeUndefined();
    expect(codeOf({ ...input, now: at(70_001) })).toBe("CERTIFICATE_EXPIRED");
    expect(codeOf({ ...input, now: at(-60_001) })).toBe("CERTIFICATE_EXPIRED");
  });

  it("fails closed on validity dates that do not parse", () => {
    const odd = credential("ACTIVE", { certificate: { notBefore: "yesterday", notAfter: at(60_000).toISOString() } });
    expect(codeOf({ credential: odd, signer: signer(), transaction: transaction(at(-120_000)) })).toBe("CERTIFICATE_EXPIRED");
    expect(certificateRefusal({}, t0, 0)?.code).toBe("CERTIFICATE_EXPIRED");
    expect(certificateRefusal(undefined, t0, 0)).toBeUndefined();
  });

  it("R-3.1.3.2: a KEY_GENERATED credential (no certificate) keeps its CSR-approval-only rule, whatever the time", () => {
    expect(refusal({ credential: credential("PENDING"), signer: signer(), transaction: transaction(), csrApproval: true, now: at(10 * 365 * 86_400_000) })).toBeUndefined();
    expect(codeOf({ credential: credential("PENDING"), signer: signer(), transaction: transaction(), now: at(10 * 365 * 86_400_000) })).toBe("CREDENTIAL_SUSPENDED");
  });

  it("R-3.3.1: the status refusals come first (a suspended credential with an expired certificate reads CREDENTIAL_SUSPENDED)", () => {
    const both = certified(at(-60_000), at(60_000), "SUSPENDED");
    expect(codeOf({ credential: both, signer: signer(), transaction: transaction(), now: at(120_000) })).toBe("CREDENTIAL_SUSPENDED");
  });
});
