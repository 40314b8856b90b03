/**
 * The method cases (cases/methods.ts) against an in-repo SAM whose policy allows level 1 and
 * enables every method (changed under dual control, as an operator would), with an OpenID
 * provider configured: the level-1 cases, skipped against the default policy, run and pass here
 * (R-3.1.4), and the PIN + TOTP and level-2 cases still pass.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clone } from "@bufbuild/protobuf";
import { ConnectError, createClient } from "@connectrpc/connect";
import { PolicyService, SecurityPolicySchema } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { ApprovalRequiredSchema, PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import { AuthenticationMethod } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { AssuranceLevel } from "@inkan/sdk/gen/inkan/sam/v1/types_pb.js";
import { exportJWK, generateKeyPair } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../server/src/testing/harness.js";
import { methodCases } from "./cases/methods.js";
import { targetFromInit } from "./cli-options.js";
import { runSuite, type CaseResult } from "./runner.js";

let t: TestServer;
let opDir: string;
let results: Map<string, CaseResult>;

beforeAll(async () => {
  const { publicKey } = await generateKeyPair("ES256");
  opDir = mkdtempSync(join(tmpdir(), "inkan-conformance-op-"));
  const jwksFile = join(opDir, "jwks.json");
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "op-1", alg: "ES256", use: "sig" }] }));
  t = await startTestServer({ oidcIssuer: "https://op.rssp.example", oidcClientId: "inkan-sam", oidcJwksFile: jwksFile });
  // Two security officers: levels 1 and 2, every method enabled (dual control).
  const so2 = await t.createPrivilegedUser(PrivilegedRole.SECURITY_OFFICER, "so2-conformance-levels");
  const policies = createClient(PolicyService, t.adminTransport());
  const { record } = await policies.getSecurityPolicy({});
  const policy = clone(SecurityPolicySchema, record!.policy!);
  policy.allowedAssuranceLevels = [AssuranceLevel.ASSURANCE_LEVEL_1, AssuranceLevel.ASSURANCE_LEVEL_2];
  policy.enabledAuthenticationMethods = [AuthenticationMethod.DEVICE_KEY_AND_PIN, AuthenticationMethod.PIN_AND_TOTP, AuthenticationMethod.PIN, AuthenticationMethod.LOGIN_ASSERTION];
  const held = await policies.updateSecurityPolicy({ expectedVersion: record!.version, policy }).then(() => undefined, (e: unknown) => ConnectError.from(e));
  const detail = held!.findDetails(ApprovalRequiredSchema)[0]!;
  await createClient(PrivilegedUserService, t.as(so2)).approvePendingRequest({ pendingRequestId: detail.pendingRequestId, requestDigest: detail.requestDigest });
  const report = await runSuite({ target: targetFromInit(t.server.url, t.pki.paths), protocols: ["grpc"], cases: methodCases });
  results = new Map(report.runs[0]!.results.map((r) => [r.id, r]));
  for (const r of results.values()) console.log(`levels 1 and 2: ${r.id} ${r.status}${r.detail ? `: ${r.detail}` : ""}`);
}, 120_000);
afterAll(async () => {
  await t?.close();
  if (opDir) rmSync(opDir, { recursive: true, force: true });
});

describe("the method cases against a SAM that allows level 1 and every method", () => {
  it("R-3.1.4: the level-1 cases run and pass (PIN alone authorizes, a wrong PIN and a forged login are AUTHENTICATION_FAILED)", () => {
    for (const id of ["level-1-pin-authorizes", "level-1-pin-wrong", "level-1-login-forged"]) expect(results.get(id)?.status, id).toBe("passed");
  });

  it("R-3.1.4, T-2.2.1.3, T-2.2.1.7: the PIN + TOTP and level-2 cases pass as well", () => {
    for (const c of methodCases) expect(results.get(c.id)?.status, c.id).toBe("passed");
  });
});
