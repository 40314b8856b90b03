/** The command line and `inkan init --json` output, turned into TargetOptions. */
import { readFileSync } from "node:fs";
import type { JWK } from "jose";
import type { Pem } from "./pki.js";
import { allProtocols, type PrivilegedIdentity, type Protocol, type TargetOptions } from "./target.js";

/** The paths `inkan init --json` prints (the fields the suite reads). */
export interface InitPaths {
  caCert: string;
  scaCert: string;
  scaKey: string;
  scaCaCert?: string;
  scaCaKey?: string;
  adminCert: string;
  adminKey: string;
  adminCaCert?: string;
  adminCaKey?: string;
  adminRequestKey: string;
  adminUserId?: string;
  signerIssuingCaCert: string;
  signerIssuingCaKey: string;
  /** Issue 18 item 7: SignerService's caller. */
  signerFrontEnd?: { cert: string; key: string };
  /** Issue 19: the second SCA, whose scope is the signer group "demo-b" only. */
  secondSca?: { cert: string; key: string };
}

const read = (file: string) => readFileSync(file, "utf8");
const pem = (cert: string, key: string): Pem => ({ cert: read(cert), key: read(key) });

/** A request-signing key file (a private JWK with "kid"); the user id from `userId` or the key's "sub". */
function identity(cert: string, key: string, signingKeyFile: string, userId: string | undefined, what: string): PrivilegedIdentity {
  const signingKey = JSON.parse(read(signingKeyFile)) as JWK & { kid?: string; sub?: string };
  const id = userId ?? signingKey.sub;
  if (!id) throw new Error(`${what}: the user id is neither given nor the "sub" of the signing key`);
  if (!signingKey.kid) throw new Error(`${what}: the signing key has no "kid"`);
  return { ...pem(cert, key), userId: id, signingKey: signingKey as JWK & { kid: string } };
}

/** TargetOptions from the JSON `inkan init --json` printed, for `url`. */
export function targetFromInit(url: string, paths: InitPaths): TargetOptions {
  return {
    url,
    ca: read(paths.caCert),
    sca: pem(paths.scaCert, paths.scaKey),
    ...(paths.scaCaCert && paths.scaCaKey ? { scaCa: pem(paths.scaCaCert, paths.scaCaKey) } : {}),
    admin: identity(paths.adminCert, paths.adminKey, paths.adminRequestKey, paths.adminUserId, "admin"),
    ...(paths.adminCaCert && paths.adminCaKey ? { adminCa: pem(paths.adminCaCert, paths.adminCaKey) } : {}),
    signerIssuingCa: pem(paths.signerIssuingCaCert, paths.signerIssuingCaKey),
    ...(paths.signerFrontEnd ? { frontEnd: pem(paths.signerFrontEnd.cert, paths.signerFrontEnd.key) } : {}),
    ...(paths.secondSca ? { otherScopeSca: pem(paths.secondSca.cert, paths.secondSca.key) } : {}),
  };
}

export const cliOptions = {
  target: { type: "string" },
  "from-init": { type: "string" },
  ca: { type: "string" },
  "sca-cert": { type: "string" },
  "sca-key": { type: "string" },
  "second-sca-cert": { type: "string" },
  "second-sca-key": { type: "string" },
  "front-end-cert": { type: "string" },
  "front-end-key": { type: "string" },
  "other-scope-sca-cert": { type: "string" },
  "other-scope-sca-key": { type: "string" },
  "sca-ca-cert": { type: "string" },
  "sca-ca-key": { type: "string" },
  "admin-cert": { type: "string" },
  "admin-key": { type: "string" },
  "admin-signing-key": { type: "string" },
  "admin-user-id": { type: "string" },
  "admin-ca-cert": { type: "string" },
  "admin-ca-key": { type: "string" },
  "operator-cert": { type: "string" },
  "operator-key": { type: "string" },
  "operator-signing-key": { type: "string" },
  "operator-user-id": { type: "string" },
  "signer-issuing-ca-cert": { type: "string" },
  "signer-issuing-ca-key": { type: "string" },
  protocol: { type: "string", default: "all" },
  gateway: { type: "string" },
  "csc-client-id": { type: "string" },
  "csc-client-key": { type: "string" },
  "csc-second-client-id": { type: "string" },
  "csc-second-client-key": { type: "string" },
  "report-json": { type: "string" },
  junit: { type: "string" },
  markdown: { type: "string" },
  "known-failures": { type: "string" },
  case: { type: "string", multiple: true },
  list: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export type CliValues = { [K in keyof typeof cliOptions]?: (typeof cliOptions)[K] extends { multiple: true } ? string[] : (typeof cliOptions)[K]["type"] extends "boolean" ? boolean : string };

export function protocolsOf(value: string | undefined): Protocol[] {
  if (value === undefined || value === "all") return [...allProtocols];
  const list = value.split(",").map((p) => p.trim());
  for (const p of list) if (!(allProtocols as readonly string[]).includes(p)) throw new Error(`--protocol: "${p}" is not grpc, connect, grpc-web or all`);
  return list as Protocol[];
}

/** TargetOptions from the flags (a --from-init file first, then any separate flag overrides it); every missing flag is reported. */
export function targetFromFlags(v: CliValues): TargetOptions {
  if (!v.target) throw new Error("--target https://host:port is required");
  const both = (a: keyof CliValues, b: keyof CliValues) => {
    const x = v[a] as string | undefined;
    const y = v[b] as string | undefined;
    if ((x === undefined) !== (y === undefined)) throw new Error(`--${a} and --${b} go together`);
    return x !== undefined && y !== undefined ? pem(x, y) : undefined;
  };
  const fromInit = v["from-init"] ? targetFromInit(v.target, JSON.parse(read(v["from-init"])) as InitPaths) : undefined;
  const missing = (["ca", "sca-cert", "sca-key", "admin-cert", "admin-key", "admin-signing-key", "signer-issuing-ca-cert", "signer-issuing-ca-key"] as const).filter((k) => v[k] === undefined);
  if (!fromInit && missing.length > 0) throw new Error(`missing ${missing.map((m) => `--${m}`).join(", ")} (or give --from-init FILE)`);
  const base = fromInit ?? ({} as Partial<TargetOptions>);
  const admin = v["admin-cert"] ? identity(v["admin-cert"], v["admin-key"]!, v["admin-signing-key"]!, v["admin-user-id"], "admin") : base.admin;
  const operator = v["operator-cert"] ? identity(v["operator-cert"], v["operator-key"]!, v["operator-signing-key"]!, v["operator-user-id"], "operator") : undefined;
  const sca = both("sca-cert", "sca-key") ?? base.sca;
  const secondSca = both("second-sca-cert", "second-sca-key");
  const frontEnd = both("front-end-cert", "front-end-key") ?? base.frontEnd;
  const otherScopeSca = both("other-scope-sca-cert", "other-scope-sca-key") ?? base.otherScopeSca;
  const scaCa = both("sca-ca-cert", "sca-ca-key") ?? base.scaCa;
  const adminCa = both("admin-ca-cert", "admin-ca-key") ?? base.adminCa;
  const signerIssuingCa = both("signer-issuing-ca-cert", "signer-issuing-ca-key") ?? base.signerIssuingCa;
  return {
    url: v.target,
    ca: v.ca ? read(v.ca) : base.ca!,
    sca: sca!,
    admin: admin!,
    signerIssuingCa: signerIssuingCa!,
    ...(secondSca ? { secondSca } : {}),
    ...(frontEnd ? { frontEnd } : {}),
    ...(otherScopeSca ? { otherScopeSca } : {}),
    ...(scaCa ? { scaCa } : {}),
    ...(adminCa ? { adminCa } : {}),
    ...(operator ? { operator } : {}),
  };
}
