import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { ConnectError, createClient, type Code, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createAdminRequestSigner, inkanErrorReason, type Reason } from "@inkan/sdk";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import type { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import { pino } from "pino";
import { spkiSha256 } from "../admin/privileged-users.js";
import { parseConfig, type RawConfig } from "../config/config.js";
import { initDataDir, type InitPaths } from "../init.js";
import { serve, type ServeHooks } from "../main.js";
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority, type Pem } from "../pki/dev-pki.js";
import type { InkanServer } from "../transport/server.js";

export type Protocol = "connect" | "grpc" | "grpc-web";
export const protocols: Protocol[] = ["connect", "grpc", "grpc-web"];

/** Client TLS material: the CA to trust the server with, and the client's certificate, if any. */
export interface ClientTls {
  ca: string;
  cert?: string;
  key?: string;
}

/** A Connect transport of the given protocol over HTTP/2 with (m)TLS, as an SCA would build it. */
export function transportFor(protocol: Protocol, baseUrl: string, tls: ClientTls, interceptors: Interceptor[] = []): Transport {
  const options = { baseUrl, httpVersion: "2" as const, nodeOptions: { ...tls }, interceptors };
  switch (protocol) {
    case "connect":
      return createConnectTransport(options);
    case "grpc":
      return createGrpcTransport(options);
    case "grpc-web":
      return createGrpcWebTransport(options);
  }
}

/** The development PKI plus the bad client certificates the refusal tests need. */
export interface TestPki {
  paths: InitPaths;
  ca: string;
  sca: Pem;
  /** The signer front end's certificate (front-end CA): the only caller SignerService accepts (issue 18 item 7). */
  frontEnd: Pem;
  /** The second development SCA (second SCA CA), whose scope is the signer group "demo-b" only (issue 19). */
  secondSca: Pem;
  admin: Pem;
  /** A client certificate from a CA the server does not trust. */
  foreign: Pem;
  /** A client certificate from the SCA CA whose validity ended yesterday. */
  expired: Pem;
  /** A valid certificate from the admin CA that is bound to no privileged user. */
  unboundAdmin: Pem;
}

async function createTestPki(paths: InitPaths): Promise<TestPki> {
  const read = (f: string) => readFileSync(f, "utf8");
  const foreignCa = await createCertificateAuthority("Somebody Else's CA");
  const scaCa = await loadCertificateAuthority({ cert: read(paths.scaCaCert), key: read(paths.scaCaKey) });
  const adminCa = await loadCertificateAuthority({ cert: read(paths.adminCaCert), key: read(paths.adminCaKey) });
  const day = 24 * 60 * 60 * 1000;
  return {
    paths,
    ca: read(paths.caCert),
    sca: { cert: read(paths.scaCert), key: read(paths.scaKey) },
    frontEnd: { cert: read(paths.signerFrontEnd.cert), key: read(paths.signerFrontEnd.key) },
    secondSca: { cert: read(paths.secondSca.cert), key: read(paths.secondSca.key) },
    admin: { cert: read(paths.adminCert), key: read(paths.adminKey) },
    foreign: await issueCertificate(foreignCa, { commonName: "intruder", usage: "client" }),
    expired: await issueCertificate(scaCa, {
      commonName: "sca-expired", usage: "client", notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day),
    }),
    unboundAdmin: await issueCertificate(adminCa, { commonName: "stolen-looking", usage: "client" }),
  };
}

/** The error a call failed with; fails the test when the call succeeds. */
export async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

/** The code, Inkan reason and client message a call failed with; fails the test when it succeeds. */
export async function refusalOf(p: Promise<unknown>): Promise<{ code: Code; reason: Reason; message: string }> {
  const e = await errorOf(p);
  return { code: e.code, reason: inkanErrorReason(e), message: e.rawMessage };
}

/** A privileged user the tests act as: their admin certificate and request-signing key. */
export interface PrivilegedPerson {
  userId: string;
  cert: Pem;
  privateJwk: JWK & { kid: string };
}

/** The certificate binding that makes `who`'s certificate identify a privileged user: its public key's SHA-256. */
export function bindingOf(who: Pem): { binding: { case: "spkiSha256"; value: Uint8Array } } {
  return { binding: { case: "spkiSha256", value: Buffer.from(spkiSha256(new X509Certificate(who.cert)), "hex") } };
}

/** A fresh ES256 request-signing key: the public JWK (JSON) to register and the private JWK with its kid. */
export async function newRequestSigningKey(): Promise<{ publicJwk: string; privateJwk: JWK & { kid: string } }> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, "sha256");
  return { publicJwk: JSON.stringify(pub), privateJwk: { ...(await exportJWK(privateKey)), kid } };
}

export interface TestServer {
  server: InkanServer;
  pki: TestPki;
  dataDir: string;
  /** A transport for `protocol` presenting `who`'s certificate (none when undefined). */
  transport(protocol: Protocol, who?: Pem): Transport;
  /**
   * A transport for the first security officer (created by init): its certificate, and every
   * admin request signed with its request-signing key.
   */
  adminTransport(protocol?: Protocol): Transport;
  /** A transport for any privileged user: their certificate, their requests signed with their key. */
  transportAs(who: Pem, userId: string, privateJwk: JWK & { kid: string }, protocol?: Protocol): Transport;
  /** A new client certificate from the development admin CA (not yet bound to any user). */
  issueAdminCertificate(commonName: string): Promise<Pem>;
  /** The security officer `inkan init` created. */
  firstSecurityOfficer: PrivilegedPerson;
  /** A transport acting as `person` (their certificate; every admin request signed by their key). */
  as(person: PrivilegedPerson, protocol?: Protocol): Transport;
  /**
   * Creates a privileged user with a fresh admin certificate and key, asked by `by` (default: the
   * first security officer). A security officer beyond the second needs dual control: use the
   * PrivilegedUserService directly for that.
   */
  createPrivilegedUser(role: PrivilegedRole, name: string, by?: PrivilegedPerson): Promise<PrivilegedPerson>;
  /**
   * Stops the server, runs `whileStopped` (e.g. an edit of the store file), and serves again on the
   * same data directory, as a restart would; `server` and new transports then point at it. Rejects
   * when the server refuses to start (then it stays stopped).
   */
  restart(whileStopped?: () => void | Promise<void>): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts the real SAM, as `inkan init` + `inkan serve` would, on 127.0.0.1:0: a fresh data
 * directory with its development PKI, SoftHSM2 token and SQLite store, served over mTLS. Logs go
 * to `<dataDir>/server.log` so a failing test can be read afterwards.
 */
export async function startTestServer(raw: RawConfig = {}, hooks: ServeHooks = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "inkan-test-"));
  const { paths } = await initDataDir(dataDir);
  const pki = await createTestPki(paths);
  const config = parseConfig({ dataDir, listen: "127.0.0.1:0", shutdownGraceMs: "2000", ...raw });
  writeFileSync(join(dataDir, "server.log"), "");
  const log = pino({ level: "info" }, pino.destination({ dest: join(dataDir, "server.log"), sync: true }));
  let server = await serve(config, log, hooks);
  let running = true;
  const transport = (protocol: Protocol, who?: Pem) => transportFor(protocol, server.url, { ca: pki.ca, ...who });
  const privateJwk = JSON.parse(readFileSync(paths.adminRequestKey, "utf8")) as JWK & { kid: string };
  const firstSecurityOfficer: PrivilegedPerson = { userId: paths.adminUserId, cert: pki.admin, privateJwk };
  const issueAdminCertificate = async (commonName: string) => {
    const read = (f: string) => readFileSync(f, "utf8");
    const ca = await loadCertificateAuthority({ cert: read(paths.adminCaCert), key: read(paths.adminCaKey) });
    return issueCertificate(ca, { commonName, usage: "client" });
  };
  const transportAs = (who: Pem, userId: string, jwk: JWK & { kid: string }, protocol: Protocol = "grpc") =>
    transportFor(protocol, server.url, { ca: pki.ca, ...who }, [
      createAdminRequestSigner({ userId, privateJwk: jwk, nonceTransport: transport(protocol, who) }),
    ]);
  return {
    get server() {
      return server;
    },
    pki,
    dataDir,
    transport,
    adminTransport: (protocol = "grpc") => transportAs(pki.admin, paths.adminUserId, privateJwk, protocol),
    transportAs,
    issueAdminCertificate,
    firstSecurityOfficer,
    as: (person, protocol = "grpc") => transportAs(person.cert, person.userId, person.privateJwk, protocol),
    async createPrivilegedUser(role, name, by = firstSecurityOfficer) {
      const cert = await issueAdminCertificate(name);
      const key = await newRequestSigningKey();
      const { user } = await createClient(PrivilegedUserService, transportAs(by.cert, by.userId, by.privateJwk)).createPrivilegedUser({
        displayName: name,
        role,
        certificateBinding: bindingOf(cert),
        publicKeyJwk: key.publicJwk,
        keyLabel: "test",
      });
      return { userId: user!.userId, cert, privateJwk: key.privateJwk };
    },
    async restart(whileStopped) {
      if (running) await server.close(500);
      running = false;
      await whileStopped?.();
      server = await serve(config, log, hooks);
      running = true;
    },
    async close() {
      if (running) await server.close(500);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
