/**
 * What the suite needs to know about a target SAM, and the clients it talks to it with. The suite
 * is a black box: it sees only the SAM's gRPC / Connect / gRPC-Web endpoint, as an SCA, as the
 * signer's device (through @inkan/sdk) and as privileged users (through the admin API).
 */
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createAdminRequestSigner } from "@inkan/sdk";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import { createHash, X509Certificate } from "node:crypto";
import { issueClientCertificate, loadIssuer, type Pem } from "./pki.js";

export type Protocol = "grpc" | "connect" | "grpc-web";
export const allProtocols: readonly Protocol[] = ["grpc", "connect", "grpc-web"];

/** A privileged user the suite acts as: their client certificate and request-signing key. */
export interface PrivilegedIdentity extends Pem {
  userId: string;
  /** The private request-signing JWK, with its "kid". */
  signingKey: JWK & { kid: string };
}

export interface TargetOptions {
  /** https://host:port */
  url: string;
  /** PEM of the CA the server's certificate chains to. */
  ca: string;
  /** An SCA's client certificate. */
  sca: Pem;
  /** A second SCA (cross-SCA cases); minted from scaCa when absent. */
  secondSca?: Pem;
  /**
   * The signer front end's client certificate: the caller of SignerService (issue 18 item 7). When
   * absent the SCA's certificate is used, as for a SAM without that caller kind.
   */
  frontEnd?: Pem;
  /**
   * Issue 19: an SCA whose scope does not cover the signers the suite enrolls (they have no signer
   * group), e.g. `inkan init`'s second SCA (scope "demo-b"); the scope cases are skipped without it.
   */
  otherScopeSca?: Pem;
  /** The SCA client CA, to mint a second SCA when none is given. */
  scaCa?: Pem;
  /** A security officer. */
  admin: PrivilegedIdentity;
  /** A registration operator; created by the security officer (with a certificate from adminCa) when absent. */
  operator?: PrivilegedIdentity;
  /** The admin client CA, to mint certificates for the privileged users the suite creates. */
  adminCa?: Pem;
  /** The CA that certifies signers' keys (trusted by the target's policy). */
  signerIssuingCa: Pem;
}

/** A Connect transport of `protocol` over HTTP/2 with mutual TLS. */
export function transportFor(protocol: Protocol, url: string, tls: { ca: string } & Partial<Pem>, interceptors: Interceptor[] = []): Transport {
  const options = { baseUrl: url, httpVersion: "2" as const, nodeOptions: { ca: tls.ca, ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}) }, interceptors };
  switch (protocol) {
    case "grpc":
      return createGrpcTransport(options);
    case "connect":
      return createConnectTransport(options);
    case "grpc-web":
      return createGrpcWebTransport(options);
  }
}

/** A transport acting as a privileged user: their certificate, every admin request signed with their key. */
export function privilegedTransport(protocol: Protocol, o: TargetOptions, who: PrivilegedIdentity): Transport {
  const tls = { ca: o.ca, cert: who.cert, key: who.key };
  return transportFor(protocol, o.url, tls, [createAdminRequestSigner({ userId: who.userId, privateJwk: who.signingKey, nonceTransport: transportFor(protocol, o.url, tls) })]);
}

/** Creates a privileged user of `role` with a fresh certificate from the admin CA, asked by the security officer. */
export async function createPrivilegedUser(o: TargetOptions, role: PrivilegedRole, name: string): Promise<PrivilegedIdentity> {
  if (!o.adminCa) throw new Error("no admin CA to mint a certificate with");
  const pem = await issueClientCertificate(await loadIssuer(o.adminCa), name);
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, "sha256");
  // Bound by the SHA-256 of the certificate's public key (privileged_user.proto CertificateBinding).
  const spkiSha256 = createHash("sha256").update(new X509Certificate(pem.cert).publicKey.export({ type: "spki", format: "der" })).digest();
  const { user } = await createClient(PrivilegedUserService, privilegedTransport("grpc", o, o.admin)).createPrivilegedUser({
    displayName: name,
    role,
    certificateBinding: { binding: { case: "spkiSha256", value: spkiSha256 } },
    publicKeyJwk: JSON.stringify(pub),
    keyLabel: "inkan-conformance",
  });
  return { ...pem, userId: user!.userId, signingKey: { ...(await exportJWK(privateKey)), kid } };
}

/** The target's prepared identities: a registration operator and, where possible, a second SCA and a second security officer. */
export interface Identities {
  operator: PrivilegedIdentity;
  secondSca: Pem | undefined;
  secondOfficer: PrivilegedIdentity | undefined;
  /** Why a missing identity is missing (reported as the skip reason of the cases that need it). */
  missing: { secondSca?: string; secondOfficer?: string; otherScopeSca?: string };
}

export async function prepareIdentities(o: TargetOptions): Promise<Identities> {
  const run = Date.now().toString(36);
  if (!o.operator && !o.adminCa) throw new Error("a registration operator (--operator-*) or the admin CA (--admin-ca-*) is needed to enroll test signers");
  const operator = o.operator ?? (await createPrivilegedUser(o, PrivilegedRole.REGISTRATION_OPERATOR, `conformance-operator-${run}`));
  const secondSca = o.secondSca ?? (o.scaCa ? await issueClientCertificate(await loadIssuer(o.scaCa), `conformance-second-sca-${run}`) : undefined);
  let secondOfficer: PrivilegedIdentity | undefined;
  let officerProblem: string | undefined;
  if (o.adminCa) {
    try {
      secondOfficer = await createPrivilegedUser(o, PrivilegedRole.SECURITY_OFFICER, `conformance-officer-${run}`);
    } catch (err) {
      officerProblem = `the security officer could not create a second security officer: ${(err as Error).message}`;
    }
  } else {
    officerProblem = "no admin CA given (--admin-ca-cert/--admin-ca-key): no second security officer to approve a DestroyCredential";
  }
  return {
    operator,
    secondSca,
    secondOfficer,
    missing: {
      ...(secondSca ? {} : { secondSca: "no second SCA certificate given (--second-sca-cert/--second-sca-key) and no SCA CA to mint one (--sca-ca-cert/--sca-ca-key)" }),
      ...(officerProblem ? { secondOfficer: officerProblem } : {}),
      ...(o.otherScopeSca ? {} : { otherScopeSca: "no SCA outside the test signers' scope given (--other-scope-sca-cert/--other-scope-sca-key, or `secondSca` of --from-init)" }),
    },
  };
}
