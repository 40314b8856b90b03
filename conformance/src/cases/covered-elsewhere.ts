/**
 * Threats and requirements that a black-box client cannot attack: they need the operator's side
 * (the database, the audit log, the configuration, the crypto module, the registration desk). The
 * report names the Inkan server integration tests that cover them (file: test name), so no ID is
 * left silent. Against another SAM, these are the evaluator's to check by other means.
 */
import type { CoveredElsewhere } from "../case.js";

const tests = (file: string, ...names: string[]) => names.map((n) => `server/src/${file}: ${n}`);

export const coveredElsewhere: CoveredElsewhere[] = [
  {
    kind: "covered-elsewhere",
    id: "registration-desk",
    covers: ["T-2.1.1.1", "T-2.1.1.3", "T-2.1.1.4", "R-3.1.1.2"],
    description: "Enrollment and activation at the registration desk: the activation code is one-time, attempt-limited and stored only as a hash; only a registration operator enrolls; the PIN travels encrypted to the SAM and is never stored in clear.",
    coveredBy: [
      ...tests("registration/registration-service.test.ts", "T-2.1.1.1, T-2.1.1.3: a code from the module's RNG is returned once, never readable again, and stored only as a hash", "T-2.1.1.4: a security officer, an auditor or an SCA certificate cannot enroll a signer, and nothing is created"),
      ...tests("registration/activation.test.ts", "T-2.1.1.1: a second activation with the same code fails with ACTIVATION_CODE_INVALID and is audited", "T-2.1.1.4: another signer's code fails for this signer; it still works for its own signer", "R-3.1.1.2: the PIN and the TOTP secret are not stored in clear (SQLite file bytes)"),
      ...tests("registration/registration-domain.test.ts", "T-2.1.1.3: a code whose issue cannot be audited is voided before the error (fail closed)"),
    ],
  },
  {
    kind: "covered-elsewhere",
    id: "certification-integrity",
    covers: ["T-2.1.1.2", "T-2.1.3.1", "T-2.1.3.2", "R-3.1.1.4", "R-3.1.3.1", "R-3.1.3.2"],
    description: "The public key and its certificate: a certificate for another key, or a chain the trusted issuing CA does not allow, is refused; a swapped public key in the database is caught; certificate traffic runs only over the mutually authenticated channel.",
    coveredBy: [
      ...tests("registration/certificates.test.ts", "T-2.1.1.2, T-2.1.3.1: over ", "T-2.1.1.2: a certificate whose key differs from the credential's only in its encoding (altered in transit) is KEY_MISMATCH", "T-2.1.3.2: a chain through an intermediate CA that the trusted CA's path length (0) forbids is CERTIFICATE_INVALID", "R-3.1.1.4: on an ACTIVE credential a new certificate for the same key replaces the chain (renewal)"),
      ...tests("integrity/integrity.test.ts", "catches a swapped public key (R-3.1.1.4, T-2.1.1.2)"),
      ...tests("transport/server.test.ts", "client certificates are mandatory and must come from a configured CA"),
    ],
  },
  {
    kind: "covered-elsewhere",
    id: "key-import",
    covers: ["T-2.1.4.2", "T-2.1.4.3", "T-2.1.4.4", "R-3.1.1.3"],
    description: "Key generation and import inside the crypto module: a wrapped key must match the stated public key, a public key the SAM already knows is refused under any signer, keys are generated in the module and bound to one signer.",
    coveredBy: [
      ...tests("crypto/pkcs11/pkcs11-crypto-module.services.test.ts", "T-2.1.4.3 a wrapped key that does not match the stated public key: KEY_MISMATCH, nothing left in the module"),
      ...tests("store/contract.ts", "T-2.1.4.4: refuses a public key the SAM already knows, under any signer and after destruction", "T-2.1.4.4: 64 concurrent imports of one public key: exactly one is stored"),
      ...tests("registration/registration-service.test.ts", "R-3.1.1.3: refuses a disallowed algorithm or level, an unknown or disabled signer, and creates nothing"),
    ],
  },
  {
    kind: "covered-elsewhere",
    id: "stored-data-integrity",
    covers: ["R-3.1.1.1", "R-3.1.2.2", "R-3.2.1.7", "T-2.2.2.3"],
    description: "Sealed records: a signer, credential or privileged-user record edited directly in the database is detected and refused (INTEGRITY_VIOLATION); secrets never reach the audit log or an API answer.",
    coveredBy: [
      ...tests("integrity/integrity.test.ts", "catches a credential moved to another signer (R-3.1.2.2)"),
      ...tests("integrity/record-sealer.test.ts", "verifies what it sealed", "refuses a record with "),
      ...tests("registration/registration-service.test.ts", "R-3.1.1.1: an operator enrolls, reads, lists, updates (compare-and-set), disables and enables a signer"),
      ...tests("admin/privileged-user-service.test.ts", "returns only public keys: no private key material leaves the SAM (T-2.2.2.3)"),
      ...tests("audit/events.test.ts", "T-2.2.2.3: a detail that looks like a secret is refused before anything is recorded"),
    ],
  },
  {
    kind: "covered-elsewhere",
    id: "insider-forged-authorization",
    covers: ["T-2.2.2.2", "R-3.1.1.1", "R-3.2.1.1"],
    description: "A database insider (write access to the store, no key of the crypto module) inserts an authorized transaction with its DTBS/R and SAD token rows by hand, clones a genuine authorization under a new id, or edits a transaction or token row: what Authorize verified is sealed with a module key and checked before every signature, so nothing is signed (INTEGRITY_VIOLATION, audited) and the SAM keeps serving.",
    coveredBy: [
      ...tests("sap/insider.test.ts", "inserting an AUTHORIZED transaction, a DTBS/R entry and a token by hand signs nothing: INTEGRITY_VIOLATION, audited", "cloning a genuine authorized transaction under a new id, with a new hash and a token of the insider's choosing, signs nothing", "editing the transaction row (more signatures, another credential's columns) or its sealed authorization signs nothing", "editing a token row (a later expiry) signs nothing"),
      ...tests("store/contract.ts", "T-2.2.2.2 (issue 14): the sealed authorization, entry MACs and token MACs are stored with their rows and returned exactly"),
    ],
  },
  {
    kind: "covered-elsewhere",
    id: "insider-swapped-dtbsr",
    covers: ["T-2.2.1.6", "T-2.2.2.2"],
    description: "A database insider swaps a DTBS/R entry after a genuine Authorize, copies an entry's MAC onto another, or appends an entry: each entry carries the SAM's MAC and is checked before it is signed, by SignHash and SignStream alike, so the swapped hash is never signed.",
    coveredBy: tests("sap/insider.test.ts", "a DTBS/R entry swapped after a genuine Authorize signs nothing (SignHash)", "an entry's MAC copied from another entry, or an entry inserted past the list, signs nothing", "a swapped entry is refused by SignStream before it is signed, and the entries before it are signed once"),
  },
  {
    kind: "covered-elsewhere",
    id: "insider-rolled-back-authorization",
    covers: ["T-2.2.2.2", "T-2.2.1.3", "R-3.3.1"],
    description: "A database insider puts an authorization's rows back as they were: before a signature (token unconsumed, entry unsigned, counter lower), before a cancellation, or before a RevokeDevice. The authorization's progress is anchored outside the rows and the authorizing factor is checked at each signature, so nothing spent or ended is reopened.",
    coveredBy: tests("sap/insider.test.ts", "rows put back as they were before a signature (token unconsumed, entry unsigned, counter lower) sign nothing more", "a cancelled transaction put back as AUTHORIZED, with its token unrevoked, signs nothing", "a transaction revoked by RevokeDevice and put back as AUTHORIZED signs nothing (the authorizing device key is revoked)"),
  },
  {
    kind: "covered-elsewhere",
    id: "privileged-users",
    covers: ["T-2.1.2.2", "T-2.2.2.2", "R-3.2.1.6"],
    description: "Privileged users and their keys change only under security-officer control with dual control; only auditors read the audit log; a PIN change needs the device key's proof and the old PIN.",
    coveredBy: [
      ...tests("admin/privileged-user-service.test.ts", "T-2.2.2.2: an auditor cannot change anything", "T-2.2.2.1: an operator cannot do a security officer's job"),
      ...tests("admin/dual-control.test.ts", "T-2.2.2.1: a single security officer cannot approve their own request"),
      ...tests("admin/admin-auth.test.ts", "T-2.2.2.2: a security officer cannot act as an auditor (least privilege)"),
      ...tests("registration/activation.test.ts", "T-2.1.2.2: without a registered device key's proof, with a wrong old PIN or with a replayed challenge the change fails and changes nothing"),
    ],
  },
  {
    kind: "covered-elsewhere",
    id: "rng-quality",
    covers: ["R-3.2.2.2"],
    description: "Keys, challenges and tokens come from the crypto module's RNG, behind a continuous health test that refuses a stuck generator.",
    coveredBy: [
      ...tests("crypto/continuous-rng-check.test.ts", "R-3.2.2.2 fails when two consecutive blocks inside one draw are identical", "R-3.2.2.2 latches: after a failure even a healthy source is refused"),
      ...tests("crypto/pkcs11/pkcs11-crypto-module.test.ts", "R-3.2.2.2 returns the requested length, different every time"),
    ],
  },
  {
    kind: "covered-elsewhere",
    id: "configuration-tampering",
    covers: ["R-3.2.2.3"],
    description: "The security policy changes only through PolicyService under security-officer control; a policy edited or rolled back in the database stops signing until security officers restore it.",
    coveredBy: tests("admin/policy-tampering.test.ts", "R-3.2.2.3: an edited policy row stops signing within one check: INTERNAL, INTEGRITY_VIOLATION, saying why", "R-3.2.2.3: deleting the latest version (rolling the policy back) stops signing too"),
  },
  {
    kind: "covered-elsewhere",
    id: "audit-tampering",
    covers: ["R-3.2.2.4"],
    description: "The audit log is hash-chained and checkpoint-signed in the crypto module: an edited, deleted or truncated record is detected by `inkan audit verify`; an audit write that fails stops the operation.",
    coveredBy: [
      ...tests("audit/verify.test.ts", "R-3.2.2.4: an edited record whose hash and all later hashes were recomputed is caught by the signed checkpoint (EDITED at 10)", "R-3.2.2.4: a deleted record 5 is DELETED at 5"),
      ...tests("audit/audit-log.test.ts", "R-3.2.2.4: records are numbered 1, 2, 3... per node, each linked to the one before, and the chain verifies"),
      ...tests("sap/sign-hash.test.ts", "an audit write failing during SignHash is UNAVAILABLE AUDIT_FAILURE and no signature leaves"),
    ],
  },
  {
    kind: "covered-elsewhere",
    id: "verify-before-release",
    covers: ["R-3.2.1.5"],
    description: "A signature the crypto module produced wrongly is checked against the credential's key inside the SAM and withheld (SIGNATURE_CHECK_FAILED); showing it needs a faulty crypto module, injected on the server side.",
    coveredBy: tests("sap/sign-hash.test.ts", "a signature that does not verify against the credential's key is withheld: INTERNAL SIGNATURE_CHECK_FAILED, audited"),
  },
  {
    kind: "covered-elsewhere",
    id: "refused-callers-audited",
    covers: ["R-3.2.2.4", "T-2.1.2.1"],
    description: "A caller refused for its certificate or its kind (another kind's certificate on the SAP or SignerService, a certificate whose binding was tampered with, a refused admin request) is in the audit log (request.refused, admin_request.refused: method, reason, certificate fingerprint, never a request signature), so an auditor sees the probing; a black-box client cannot read the audit log.",
    coveredBy: [
      ...tests("transport/front-end-caller.test.ts", "R-3.2.2.4, T-2.1.2.1: a caller refused by kind on the SAP or SignerService is audited (request.refused: method, reason, certificate fingerprint), like a refused admin request"),
      ...tests("admin/privileged-user-binding.test.ts", "T-2.2.2.1: with the store's unique index gone and a second sealed user on A's key, A's certificate is refused and the refusal audited"),
      ...tests("admin/audit-trail.test.ts", "records the start, each privileged operation before and after it, and refused requests"),
    ],
  },
  {
    kind: "covered-elsewhere",
    id: "seal-cache-insider",
    covers: ["T-2.2.2.2", "R-3.1.1.1"],
    description: "Seal checks remembered across calls (a speed-up) never let an edited record through: a copy with another body, status, version or id, or a seal copied from another record, misses the cache and is checked by the crypto module and refused, every time; a record remembered by its fields is a hit only with exactly those fields (one added, removed, retyped or changed by the caller is checked and refused); the cache is bounded.",
    coveredBy: tests(
      "integrity/seal-cache.test.ts",
      "T-2.2.2.2: an edited copy (body, status, version, id) or a seal copied from another record misses, is checked and refused, every time",
      "T-2.2.2.2: a read with a record's exact fields and seal is a hit; the object handed back changed by its caller, or a copy with a field added, removed or of another type, is checked and refused",
      "is bounded: the least recently used seal goes first",
    ),
  },
];
