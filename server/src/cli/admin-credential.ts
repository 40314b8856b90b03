/**
 * `inkan admin credential|csr|certificate ...`: a signer's credentials (RegistrationService):
 * key generation in the crypto module, CSR, certificate import, suspension, resumption, and
 * destruction (a security officer's, under dual control by default).
 */
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import {
  CreateCsrResponseSchema,
  CredentialSchema,
  GetKeyImportTransportKeyResponseSchema,
  ImportKeyRequestSchema,
  KeyWrapScheme,
  PrepareCsrResponseSchema,
  RegistrationService,
  type Credential,
} from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { AssuranceLevel, CredentialStatus, HashAlgorithm, KeyAlgorithm, SignatureAlgorithm } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { AdminUsageError } from "./admin-identity.js";
import { enumOption, stringOption, type AdminContext, type Noun } from "./admin-command.js";
import { enumName, isoOf } from "./admin-output.js";
import { allPages } from "./admin-signer.js";

const reasonOption = { reason: { type: "string", help: "why, for the audit log (required)" } } as const;

const columns = [
  { header: "CREDENTIAL_ID", value: (c: Credential) => c.credentialId },
  { header: "STATUS", value: (c: Credential) => enumName(CredentialStatus, c.status) },
  { header: "ALGORITHM", value: (c: Credential) => enumName(KeyAlgorithm, c.keyAlgorithm) },
  { header: "FINGERPRINT", value: (c: Credential) => Buffer.from(c.publicKeyFingerprint).toString("hex") },
  { header: "LABEL", value: (c: Credential) => c.label },
];

function printCredential(ctx: AdminContext, c: Credential | undefined, title: string): void {
  if (!c) return;
  ctx.out.message(CredentialSchema, c, title);
  // The fingerprint as the signer's device and `credential destroy --fingerprint` show it.
  if (!ctx.json) console.log(`  fingerprint (hex)  ${Buffer.from(c.publicKeyFingerprint).toString("hex")}`);
}

/** 32 bytes from hex or base64: the fingerprint the operator confirms. */
function fingerprintOf(text: string): Uint8Array {
  const t = text.trim();
  const bytes = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : Buffer.from(t.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (bytes.length !== 32) throw new AdminUsageError(`--fingerprint ${text}: expected the credential's 32-byte public key fingerprint, hex or base64`);
  return bytes;
}

/** DER certificates from PEM or DER files, in the order given. */
function certificatesOf(files: string[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const f of files) {
    let data: Buffer;
    try {
      data = readFileSync(f);
    } catch (err) {
      throw new AdminUsageError(`${f}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    const pems = data.toString("latin1").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    try {
      for (const der of pems ? pems.map((p) => new X509Certificate(p).raw) : [new X509Certificate(data).raw]) out.push(new Uint8Array(der));
    } catch {
      throw new AdminUsageError(`${f}: not a PEM or DER X.509 certificate`);
    }
  }
  return out;
}

function readSecretFile(file: string, flag: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new AdminUsageError(`--${flag} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

export const credentialNoun: Noun = {
  summary: "generate and manage signers' credentials (registration operator; destroy: security officer)",
  verbs: {
    generate: {
      args: "SIGNER_ID",
      summary: "generate a key pair in the crypto module for the signer; prints the credential (KEY_GENERATED)",
      help: "Next: have the key certified (`inkan admin csr prepare`), then `inkan admin certificate import`.",
      options: {
        algorithm: { type: "string", help: "ec-p256, ec-p384, ec-p521, rsa-2048, rsa-3072, rsa-4096, ed25519 (required)" },
        "assurance-level": { type: "string", help: "1, 2 or 3 (default: the policy's)" },
        label: { type: "string", help: "a label shown to SCAs and the signer" },
      },
      async run(ctx, [signerId], o) {
        const { credential } = await ctx.client(RegistrationService).generateKey({
          signerId: signerId!,
          keyAlgorithm: enumOption(KeyAlgorithm, "KEY_ALGORITHM", "algorithm", stringOption(o, "algorithm", true)),
          assuranceLevel: stringOption(o, "assurance-level") ? enumOption(AssuranceLevel, "ASSURANCE_LEVEL", "assurance-level", stringOption(o, "assurance-level")!) : AssuranceLevel.ASSURANCE_LEVEL_UNSPECIFIED,
          label: stringOption(o, "label") ?? "",
        });
        printCredential(ctx, credential, `Generated credential ${credential?.credentialId}`);
      },
    },
    list: {
      args: "SIGNER_ID",
      summary: "list a signer's credentials, oldest first, destroyed ones included",
      options: { status: { type: "string", help: "only this status: key-generated, active, suspended, locked, destroyed" } },
      async run(ctx, [signerId], o) {
        const status = stringOption(o, "status") ? enumOption(CredentialStatus, "CREDENTIAL_STATUS", "status", stringOption(o, "status")!) : CredentialStatus.UNSPECIFIED;
        const ra = ctx.client(RegistrationService);
        const items = await allPages(async (pageToken) => {
          const r = await ra.listCredentials({ signerId: signerId!, page: { pageToken }, status });
          return { items: r.credentials, next: r.page?.nextPageToken ?? "" };
        });
        ctx.out.list(CredentialSchema, items, columns);
      },
    },
    show: {
      args: "CREDENTIAL_ID",
      summary: "show one credential",
      async run(ctx, [credentialId]) {
        const { credential } = await ctx.client(RegistrationService).getCredential({ credentialId: credentialId! });
        printCredential(ctx, credential, `Credential ${credentialId}`);
      },
    },
    suspend: {
      args: "CREDENTIAL_ID",
      summary: "suspend a credential: it signs nothing until resumed",
      options: reasonOption,
      async run(ctx, [credentialId], o) {
        const { credential } = await ctx.client(RegistrationService).suspendCredential({ credentialId: credentialId!, reason: stringOption(o, "reason", true) });
        printCredential(ctx, credential, `Suspended credential ${credentialId}`);
      },
    },
    resume: {
      args: "CREDENTIAL_ID",
      summary: "resume a suspended credential",
      options: reasonOption,
      async run(ctx, [credentialId], o) {
        const { credential } = await ctx.client(RegistrationService).resumeCredential({ credentialId: credentialId!, reason: stringOption(o, "reason", true) });
        printCredential(ctx, credential, `Resumed credential ${credentialId}`);
      },
    },
    "transport-key": {
      summary: "show the SAM's current key-import transport key; --out writes its JWK for the key's source to wrap under",
      options: { out: { type: "string", help: "write the transport public key (JWK) to this file" } },
      async run(ctx, _args, o) {
        const r = await ctx.client(RegistrationService).getKeyImportTransportKey({});
        const out = stringOption(o, "out");
        if (out) writeFileSync(out, r.publicKeyJwk + "\n");
        if (ctx.json) {
          ctx.out.message(GetKeyImportTransportKeyResponseSchema, r);
          return;
        }
        console.log(`Transport key ${r.transportKeyId}, ${enumName(KeyWrapScheme, r.wrapScheme)}, expires ${isoOf(r.expiresAt)}${out ? `; JWK written to ${out}` : ""}`);
      },
    },
    "import-key": {
      summary: "import a wrapped private key with the signer's consent, from an ImportKeyRequest in JSON",
      help: `--request FILE holds an ImportKeyRequest in proto JSON (signerId, transportKeyId, wrapScheme,
encryptedKek, wrappedPrivateKey, keyAlgorithm, publicKeySpki, signerConsent, optional assuranceLevel,
label, certificateChain): the key wrapped by its source under \`credential transport-key\`, and the
consent the signer's device built (the SDK's buildKeyImportConsent). The operator relays both and
can read neither the key nor the consent.`,
      options: { request: { type: "string", help: "the ImportKeyRequest JSON file (required)" } },
      async run(ctx, _args, o) {
        const file = stringOption(o, "request", true);
        let request;
        try {
          request = fromJson(ImportKeyRequestSchema, JSON.parse(readFileSync(file, "utf8")) as JsonValue);
        } catch (err) {
          throw new AdminUsageError(`--request ${file}: not an ImportKeyRequest in JSON (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
        }
        const { credential } = await ctx.client(RegistrationService).importKey(request);
        printCredential(ctx, credential, `Imported credential ${credential?.credentialId}`);
      },
    },
    destroy: {
      args: "CREDENTIAL_ID",
      summary: "destroy the credential's key in the crypto module (security officer; held for a second one's approval)",
      help: `Irreversible. --fingerprint confirms which key: the credential's public key fingerprint as
\`inkan admin credential show\` prints it. Under dual control (the default) this exits 4 with the
pending request id; a second security officer runs \`inkan admin approval approve ID\`.`,
      options: { ...reasonOption, fingerprint: { type: "string", help: "the credential's public key fingerprint, hex or base64 (required)" } },
      async run(ctx, [credentialId], o) {
        const { credential } = await ctx.client(RegistrationService).destroyCredential({
          credentialId: credentialId!,
          publicKeyFingerprint: fingerprintOf(stringOption(o, "fingerprint", true)),
          reason: stringOption(o, "reason", true),
        });
        printCredential(ctx, credential, `Destroyed credential ${credentialId}`);
      },
    },
  },
};

export const csrNoun: Noun = {
  summary: "certificate signing requests for a credential, approved by the signer through the SAP",
  verbs: {
    prepare: {
      args: "CREDENTIAL_ID",
      summary: "build the CertificationRequestInfo to approve; writes it to --out and prints the DTBS/R",
      help: `The signer approves the DTBS/R in a SAP transaction on this credential (an SCA begins it with
exactly this one hash and this hash algorithm); then \`inkan admin csr create\` signs it.`,
      options: {
        subject: { type: "string", help: "subject DN, RFC 4514 (\"CN=Sato Hanako,O=Example Corp,C=JP\") (required)" },
        out: { type: "string", help: "file for the DER CertificationRequestInfo (required)" },
        "hash-algorithm": { type: "string", help: "sha256, sha384, sha512, none (default: the key's)" },
        "signature-algorithm": { type: "string", help: "ecdsa, rsa-pkcs1-v1-5, rsa-pss, ed25519 (default: the key's)" },
      },
      async run(ctx, [credentialId], o) {
        const subject = stringOption(o, "subject", true);
        const out = stringOption(o, "out", true);
        const r = await ctx.client(RegistrationService).prepareCsr({
          credentialId: credentialId!,
          subject,
          hashAlgorithm: stringOption(o, "hash-algorithm") ? enumOption(HashAlgorithm, "HASH_ALGORITHM", "hash-algorithm", stringOption(o, "hash-algorithm")!) : HashAlgorithm.UNSPECIFIED,
          signatureAlgorithm: stringOption(o, "signature-algorithm") ? enumOption(SignatureAlgorithm, "SIGNATURE_ALGORITHM", "signature-algorithm", stringOption(o, "signature-algorithm")!) : SignatureAlgorithm.UNSPECIFIED,
        });
        writeFileSync(out, r.certificationRequestInfo);
        if (ctx.json) {
          ctx.out.message(PrepareCsrResponseSchema, r);
          return;
        }
        console.log(`Wrote the CertificationRequestInfo to ${out}`);
        console.log(`  dtbsr (base64)        ${Buffer.from(r.dtbsr).toString("base64")}`);
        console.log(`  hash algorithm        ${enumName(HashAlgorithm, r.hashAlgorithm).toLowerCase()}`);
        console.log(`  signature algorithm   ${enumName(SignatureAlgorithm, r.signatureAlgorithm).toLowerCase().replace(/_/g, "-")}`);
        console.log(`  key fingerprint (hex) ${Buffer.from(r.publicKeyFingerprint).toString("hex")}`);
      },
    },
    create: {
      args: "CREDENTIAL_ID",
      summary: "sign the approved CertificationRequestInfo with the credential's key; writes the CSR (PEM) to --out",
      options: {
        cri: { type: "string", help: "the file `csr prepare` wrote (required)" },
        "hash-algorithm": { type: "string", help: "as `csr prepare` printed it (required)" },
        "signature-algorithm": { type: "string", help: "as `csr prepare` printed it (required)" },
        "transaction-id": { type: "string", help: "the SAP transaction in which the signer approved it (required)" },
        "sad-token-file": { type: "string", help: "file holding that transaction's SAD token (a secret: never on the command line) (required)" },
        out: { type: "string", help: "file for the CSR, PEM (required)" },
      },
      async run(ctx, [credentialId], o) {
        const criFile = stringOption(o, "cri", true);
        let cri: Uint8Array;
        try {
          cri = readFileSync(criFile);
        } catch (err) {
          throw new AdminUsageError(`--cri ${criFile}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
        }
        const out = stringOption(o, "out", true);
        const r = await ctx.client(RegistrationService).createCsr({
          credentialId: credentialId!,
          certificationRequestInfo: cri,
          hashAlgorithm: enumOption(HashAlgorithm, "HASH_ALGORITHM", "hash-algorithm", stringOption(o, "hash-algorithm", true)),
          signatureAlgorithm: enumOption(SignatureAlgorithm, "SIGNATURE_ALGORITHM", "signature-algorithm", stringOption(o, "signature-algorithm", true)),
          transactionId: stringOption(o, "transaction-id", true),
          sadToken: readSecretFile(stringOption(o, "sad-token-file", true), "sad-token-file"),
        });
        const b64 = Buffer.from(r.csr).toString("base64").replace(/.{64}/g, "$&\n").trimEnd();
        writeFileSync(out, `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`);
        if (ctx.json) ctx.out.message(CreateCsrResponseSchema, r);
        else console.log(`Wrote the CSR to ${out}`);
      },
    },
  },
};

export const certificateNoun: Noun = {
  summary: "attach a certificate chain to a credential",
  verbs: {
    import: {
      args: "CREDENTIAL_ID CERT_FILE [CHAIN_FILE...]",
      summary: "import the end-entity certificate (and intermediates) for exactly the credential's key; the credential becomes ACTIVE",
      help: "Files are PEM (several certificates per file allowed) or DER, end-entity first.",
      async run(ctx, [credentialId, ...files]) {
        const { credential } = await ctx.client(RegistrationService).importCertificate({ credentialId: credentialId!, certificateChain: certificatesOf(files) });
        printCredential(ctx, credential, `Imported the certificate of credential ${credentialId}`);
      },
    },
  },
};
