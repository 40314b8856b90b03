/**
 * Threats and requirements that a black-box client cannot attack: they need the operator's side
 * (the database, the audit log, the configuration, the crypto module, the registration desk). The
 * report names the Inkan server integration tests that cover them, so no ID is left silent.
 * Against another SAM, these are the evaluator's to check by other means.
 */
import type { CoveredElsewhere } from "../case.js";

const tests = (file: string, ...names: string[]) => names.map((n) => `server/src/${file}: ${n}`);

export const coveredElsewhere: CoveredElsewhere[] = [
  {
    kind: "covered-elsewhere",
    id: "registration-desk",
    covers: ["T-2.1.1.1", "T-2.1.1.3", "T-2.1.1.4", "R-3.1.1.2"],
    description: "Enrollment and activation: the activation code is one-time and attempt-limited, the PIN travels encrypted to the SAM, a signer cannot be activated by someone holding only the enrollment data.",
    coveredBy: [...tests("registration/registration-domain.test.ts", "T-2.1.1.x"), ...tests("registration/registration-service.test.ts", "T-2.1.1.x"), ...tests("registration/activation.test.ts", "T-2.1.1.1, T-2.1.1.4, R-3.1.1.2")],
  },
  {
    kind: "covered-elsewhere",
    id: "certification-integrity",
    covers: ["T-2.1.1.2", "T-2.1.3.1", "T-2.1.3.2", "R-3.1.1.4", "R-3.1.3.1", "R-3.1.3.2"],
    description: "The public key, the CSR and the imported certificate: a certificate for another key, an altered CSR or a CSR under a false identity is refused; CSR traffic runs only over the mutually authenticated admin channel.",
    coveredBy: [...tests("registration/certificates.test.ts", "T-2.1.1.2, T-2.1.3.1, T-2.1.3.2, R-3.1.1.4, R-3.1.3.2"), ...tests("registration/certificates.unit.test.ts", "CSR checks"), ...tests("transport/server.test.ts", "mTLS: a client without a certificate is refused in the handshake")],
  },
  {
    kind: "covered-elsewhere",
    id: "key-import",
    covers: ["T-2.1.4.2", "T-2.1.4.3", "T-2.1.4.4", "R-3.1.1.3"],
    description: "Key generation and import inside the crypto module: the stated key information must match the key, a public key the SAM already knows is refused under any signer.",
    coveredBy: [...tests("crypto/pkcs11/pkcs11-crypto-module.services.test.ts", "T-2.1.4.3"), "server/src/store/contract.ts: T-2.1.4.4: refuses a public key the SAM already knows, under any signer and after destruction", ...tests("crypto/pkcs11/pkcs11-crypto-module.test.ts", "R-3.1.1.3")],
  },
  {
    kind: "covered-elsewhere",
    id: "stored-data-integrity",
    covers: ["R-3.1.1.1", "R-3.1.2.2", "R-3.2.1.7", "T-2.2.2.3"],
    description: "Sealed records: a signer, credential or privileged-user record edited directly in the database is detected and refused (INTEGRITY_VIOLATION); secrets (PIN hashes, TOTP seeds) are field-encrypted and never logged or audited.",
    coveredBy: [...tests("integrity/integrity.test.ts", "R-3.1.1.1, R-3.1.2.2, R-3.2.1.7"), ...tests("integrity/record-sealer.test.ts", "R-3.1.1.1"), ...tests("admin/audit-trail.test.ts", "T-2.2.2.3"), ...tests("audit/events.test.ts", "T-2.2.2.3")],
  },
  {
    kind: "covered-elsewhere",
    id: "privileged-users",
    covers: ["T-2.1.2.2", "T-2.2.2.2", "R-3.2.1.6"],
    description: "Privileged users and their keys change only under security-officer control with dual control; auditors alone read the audit log; PIN and OTP changes never expose the old or new secret.",
    coveredBy: [...tests("admin/privileged-user-service.test.ts", "R-3.2.1.6, T-2.2.2.2"), ...tests("admin/dual-control.test.ts", "R-3.2.1.6"), ...tests("admin/admin-auth.test.ts", "T-2.2.2.2"), ...tests("registration/activation.test.ts", "T-2.1.2.2")],
  },
  {
    kind: "covered-elsewhere",
    id: "rng-quality",
    covers: ["R-3.2.2.2"],
    description: "Keys, challenges and tokens come from the crypto module's RNG, with a continuous health test that stops the SAM on a stuck generator.",
    coveredBy: [...tests("crypto/continuous-rng-check.test.ts", "R-3.2.2.2"), ...tests("crypto/pkcs11/pkcs11-crypto-module.test.ts", "R-3.2.2.2")],
  },
  {
    kind: "covered-elsewhere",
    id: "configuration-tampering",
    covers: ["R-3.2.2.3"],
    description: "The security policy changes only through PolicyService under dual control; a policy edited in the database stops signing until security officers restore it.",
    coveredBy: [...tests("admin/policy-tampering.test.ts", "R-3.2.2.3"), ...tests("admin/policy-service.test.ts", "R-3.2.2.3"), ...tests("admin/security-policy.test.ts", "R-3.2.2.3")],
  },
  {
    kind: "covered-elsewhere",
    id: "audit-tampering",
    covers: ["R-3.2.2.4"],
    description: "The audit log is hash-chained and checkpoint-signed in the crypto module: a rewritten, deleted or truncated record is detected by `inkan audit verify` and at start-up; an audit write that fails stops the operation.",
    coveredBy: [...tests("audit/audit-log.test.ts", "R-3.2.2.4"), ...tests("audit/verify.test.ts", "R-3.2.2.4"), ...tests("audit/audit-command.test.ts", "R-3.2.2.4"), ...tests("sap/sign-hash.test.ts", "R-3.2.2.4: fail closed")],
  },
  {
    kind: "covered-elsewhere",
    id: "verify-before-release",
    covers: ["R-3.2.1.5"],
    description: "A signature the crypto module produced wrongly is checked against the credential's key inside the SAM and withheld (SIGNATURE_CHECK_FAILED); this needs a faulty crypto module, injected on the server side.",
    coveredBy: tests("sap/sign-hash.test.ts", "R-3.2.1.5: a signature that does not verify against the credential's key is withheld"),
  },
];
