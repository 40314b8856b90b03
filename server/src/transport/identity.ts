import { X509Certificate } from "node:crypto";
import type { Http2ServerRequest } from "node:http2";
import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { createContextKey } from "@connectrpc/connect";
import { spkiSha256 } from "../admin/privileged-users.js";

/**
 * What the caller is, as its client certificate's issuing CA says: an SCA, the RSSP's signer
 * front end (the relay of SignerService, issue 18 item 7), or a privileged user.
 */
export type CallerKind = "sca" | "front-end" | "privileged";

/** The authenticated caller of one request, derived from its TLS client certificate. */
export interface CallerIdentity {
  kind: CallerKind;
  /** The certificate subject's common name (for logs and audit; not unique on its own). */
  commonName: string;
  /** SHA-256 fingerprint of the client certificate (DER), hex upper case with colons. */
  fingerprint: string;
  /** SHA-256 of the client certificate (DER), lower-case hex without separators. */
  sha256: string;
  /** The subject DN as Node prints it, one RDN a line. */
  subject: string;
  /**
   * SHA-256 of the certificate's public key (DER SubjectPublicKeyInfo), lower-case hex: what a
   * privileged user is bound by (admin/privileged-users.ts CertificateBinding).
   */
  spkiSha256: string;
  /** The certificate's serial number, hex. */
  serialNumber: string;
  /** SHA-256 of the configured CA certificate that issued it (DER), lower-case hex. */
  issuerSha256: string;
}

/** The caller's identity, or undefined when the certificate matched no configured CA. */
export const kCaller = createContextKey<CallerIdentity | undefined>(undefined, { description: "caller identity" });
/** The request id, also sent back in the `inkan-request-id` response header. */
export const kRequestId = createContextKey<string>("", { description: "request id" });

export interface TrustedCas {
  sca: X509Certificate[];
  /** CAs whose certificates identify the signer front end; none: no front end can connect. */
  frontEnd?: X509Certificate[];
  privileged: X509Certificate[];
}

/** Parses every PEM certificate in `pem` (a bundle may hold several). */
export function parseCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

/**
 * Classifies a client certificate by the configured CA that issued it. TLS has already verified
 * the chain and the validity period (the handshake fails otherwise); this decides the caller's
 * kind, so a certificate from the SCA CA can never act as a privileged user or as the signer front
 * end, and so on for each pair (R-3.1.2.1, R-3.2.2.1, issue 18 item 7). A certificate whose issuer
 * is trusted for more than one kind identifies nobody (fail closed: its kind would be a guess).
 */
export function identify(cert: X509Certificate, cas: TrustedCas): CallerIdentity | undefined {
  const issuerIn = (list: X509Certificate[] | undefined) => (list ?? []).find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
  const matches = ([["sca", cas.sca], ["front-end", cas.frontEnd], ["privileged", cas.privileged]] as const)
    .map(([kind, list]) => ({ kind, issuer: issuerIn(list) }))
    .filter((m): m is { kind: CallerKind; issuer: X509Certificate } => m.issuer !== undefined);
  if (matches.length !== 1) return undefined;
  const { kind, issuer } = matches[0]!;
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? "";
  return {
    kind,
    commonName: cn,
    fingerprint: cert.fingerprint256,
    sha256: cert.fingerprint256.replaceAll(":", "").toLowerCase(),
    subject: cert.subject,
    spkiSha256: spkiSha256(cert),
    serialNumber: cert.serialNumber,
    issuerSha256: issuer.fingerprint256.replaceAll(":", "").toLowerCase(),
  };
}

const bySocket = new WeakMap<TLSSocket, CallerIdentity | null>();

/**
 * The identity of the peer on the TLS connection that carries `req`, computed once per
 * connection. `ctx.requestHeader` does not carry the certificate: it lives on the socket.
 */
export function identityOfRequest(req: Http2ServerRequest | IncomingMessage, cas: TrustedCas): CallerIdentity | undefined {
  const socket = ("stream" in req ? req.stream.session?.socket : req.socket) as TLSSocket | undefined;
  if (!socket || typeof socket.getPeerCertificate !== "function") return undefined;
  const known = bySocket.get(socket);
  if (known !== undefined) return known ?? undefined;
  const peer = socket.getPeerCertificate();
  const identity = peer?.raw ? identify(new X509Certificate(peer.raw), cas) : undefined;
  bySocket.set(socket, identity ?? null);
  return identity;
}
