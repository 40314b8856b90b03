import type { DescService } from "@bufbuild/protobuf";
import type { CallerKind } from "./identity.js";

/**
 * Which kind of caller may call a service; the first matching row wins. SignerService is for the
 * signer front end only (its certificates come from a front-end CA, issue 18 item 7); the rest of
 * the SAP is for SCAs (SCA CA); the admin services are for privileged users (admin CA; the
 * per-request signature and the role are checked by admin-auth). Health and reflection answer any
 * authenticated caller. A service in no row is refused.
 */
const rules: { prefix: string; kinds: readonly CallerKind[] }[] = [
  { prefix: "inkan.sam.v1.SignerService", kinds: ["front-end"] },
  { prefix: "inkan.sam.v1.", kinds: ["sca"] },
  { prefix: "inkan.admin.v1.", kinds: ["privileged"] },
  { prefix: "grpc.health.v1.", kinds: ["sca", "front-end", "privileged"] },
  { prefix: "grpc.reflection.", kinds: ["sca", "front-end", "privileged"] },
];

export function callerKindsFor(service: DescService): readonly CallerKind[] {
  return rules.find((r) => service.typeName.startsWith(r.prefix))?.kinds ?? [];
}
