import { readFileSync } from "node:fs";
import { getOption, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { common_errors, errors } from "@inkan/sdk/gen/inkan/sam/v1/error_options_pb.js";
import { ErrorDetailSchema, Reason } from "@inkan/sdk/gen/inkan/sam/v1/error_pb.js";
import { RegistrationService } from "@inkan/sdk/gen/inkan/admin/v1/registration_pb.js";
import { PrivilegedUserService } from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { PolicyService } from "@inkan/sdk/gen/inkan/admin/v1/policy_pb.js";
import { SignatureActivationService } from "@inkan/sdk/gen/inkan/sam/v1/sam_pb.js";
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { untestedReasons } from "../testing/error-contract-allowlist.js";
import {
  allContractMethods,
  createErrorContractRecorder,
  declaredReasons,
  errorContractRecorder,
  rpcPath,
  type ErrorContractEntry,
} from "./error-contract.js";
import { codeOfReason } from "./error-table.js";

const protoRoot = new URL("../../../proto/", import.meta.url);

/** The REASON_ names in the "Errors" part of each RPC's leading comment, by RPC path. */
function commentReasons(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const files = new Set(allContractMethods().map((m) => m.parent.file.proto.name));
  for (const name of files) {
    const lines = readFileSync(new URL(name, protoRoot), "utf8").split("\n");
    const pkg = /^package ([\w.]+);$/m.exec(lines.join("\n"))![1];
    let service = "";
    lines.forEach((line, i) => {
      const s = /^service (\w+) \{/.exec(line);
      if (s) service = s[1]!;
      const rpc = /^\s*rpc (\w+)\(/.exec(line);
      if (!rpc) return;
      let j = i - 1;
      while (j >= 0 && /^\s*\/\//.test(lines[j]!)) j--;
      const comment = lines.slice(j + 1, i);
      const start = comment.findIndex((l) => /\bErrors\b/.test(l));
      const reasons = start < 0 ? [] : comment.slice(start).flatMap((l) => [...l.matchAll(/REASON_([A-Z_]+)/g)].map((m) => m[1]!));
      out.set(`/${pkg}.${service}/${rpc[1]}`, [...new Set(reasons)]);
    });
  }
  return out;
}

const codeName = (code: Code) => Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
const ownReasons = (m: DescMethod) => getOption(m, errors).map((d) => Reason[d.reason]!);

describe("issue 18: each RPC's error reasons are declared once, in the protos", () => {
  it("every RPC of inkan.sam.v1 and inkan.admin.v1 has a service-wide and an Errors list, and every service declares its common errors", () => {
    const methods = allContractMethods();
    expect(methods.length).toBeGreaterThanOrEqual(50);
    for (const m of methods) {
      expect(getOption(m.parent, common_errors).length, m.parent.typeName).toBeGreaterThan(0);
      expect(declaredReasons(m).has("CLIENT_CERTIFICATE_REJECTED"), rpcPath(m)).toBe(true);
    }
  });

  it("each declaration's gRPC code is the one the server's error table sends with that reason", () => {
    for (const m of allContractMethods()) {
      for (const d of [...getOption(m, errors), ...getOption(m.parent, common_errors)]) {
        const reason = Reason[d.reason] as keyof typeof codeOfReason;
        expect(codeOfReason[reason], `${rpcPath(m)} ${reason}`).toBeDefined();
        expect(d.code, `${rpcPath(m)} ${reason}`).toBe(codeName(codeOfReason[reason]));
      }
    }
  });

  it("each RPC's comment lists exactly the reasons its option declares (the comments cannot drift)", () => {
    const comments = commentReasons();
    for (const m of allContractMethods()) {
      const listed = comments.get(rpcPath(m));
      expect(listed, `no comment found for ${rpcPath(m)}`).toBeDefined();
      expect([...listed!].sort(), rpcPath(m)).toEqual([...new Set(ownReasons(m))].sort());
    }
  });

  it("declares what the server really sends in the cases issue 18 found stale", () => {
    const has = (m: DescMethod, r: string) => declaredReasons(m).has(r);
    expect(has(RegistrationService.method.issueActivationCode, "STATE_CONFLICT")).toBe(true);
    expect(has(RegistrationService.method.enableSigner, "STATE_CONFLICT")).toBe(true);
    expect(has(RegistrationService.method.updateSigner, "VERSION_CONFLICT")).toBe(true);
    expect(has(PrivilegedUserService.method.getPrivilegedUser, "PRIVILEGED_USER_NOT_FOUND")).toBe(true);
    expect(has(PolicyService.method.updateSecurityPolicy, "VERSION_CONFLICT")).toBe(true);
    expect(has(PrivilegedUserService.method.approvePendingRequest, "PENDING_REQUEST_NOT_FOUND")).toBe(true);
    // ApprovePendingRequest returns the guarded RPC's error when performing it fails.
    expect(has(PrivilegedUserService.method.approvePendingRequest, "CREDENTIAL_DESTROYED")).toBe(true);
    expect(has(SignatureActivationService.method.getInfo, "HASH_NOT_AUTHORIZED")).toBe(false);
  });

  it("the test-run recorder flags a reason an RPC returned without declaring it, and only that", () => {
    expect(errorContractRecorder, "vitest.config.ts sets INKAN_ERROR_CONTRACT_LOG").toBeDefined();
    const violations: ErrorContractEntry[] = [];
    const record = createErrorContractRecorder({ violations });
    const withReason = (reason: Reason, code: Code) =>
      new ConnectError("x", code, undefined, [{ desc: ErrorDetailSchema, value: create(ErrorDetailSchema, { reason }) }]);
    record(SignatureActivationService.method.getInfo, withReason(Reason.ROLE_NOT_PERMITTED, Code.PermissionDenied));
    record(SignatureActivationService.method.getInfo, new ConnectError("no detail", Code.Canceled));
    expect(violations).toEqual([]);
    record(SignatureActivationService.method.getInfo, withReason(Reason.HASH_NOT_AUTHORIZED, Code.PermissionDenied));
    expect(violations).toMatchObject([
      { rpc: "/inkan.sam.v1.SignatureActivationService/GetInfo", reason: "HASH_NOT_AUTHORIZED", declared: false },
    ]);
  });

  it("every allow-list entry names declared reasons and says why", () => {
    const services = new Set(allContractMethods().map((m) => `/${m.parent.typeName}/*`));
    for (const entry of untestedReasons) {
      expect(entry.why.length, entry.rpc).toBeGreaterThan(10);
      const methods = allContractMethods().filter(
        (m) => entry.rpc === "*" || rpcPath(m) === entry.rpc || (entry.rpc.endsWith("/*") && rpcPath(m).startsWith(entry.rpc.slice(0, -1))),
      );
      expect(methods.length, `${entry.rpc} names no RPC`).toBeGreaterThan(0);
      if (entry.rpc !== "*" && !services.has(entry.rpc)) {
        for (const r of entry.reasons) expect(declaredReasons(methods[0]!).has(r), `${entry.rpc} ${r}`).toBe(true);
      }
    }
  });
});
