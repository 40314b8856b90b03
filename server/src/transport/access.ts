import type { DescService } from "@bufbuild/protobuf";
import type { CallerKind } from "./identity.js";

/**
 * Which kind of caller may call a service, by package. The SAP and the signer-facing service are
 * for SCAs (their certificates come from the SCA CA); the admin services are for privileged users
 * (admin CA; the per-request signature and the role come with the privileged-users issue).
 * Health and reflection answer any authenticated caller. A service in no row is refused.
 */
const rules: { prefix: string; kinds: readonly CallerKind[] }[] = [
  { prefix: "inkan.sam.v1.", kinds: ["sca"] },
  { prefix: "inkan.admin.v1.", kinds: ["privileged"] },
  { prefix: "grpc.health.v1.", kinds: ["sca", "privileged"] },
  { prefix: "grpc.reflection.", kinds: ["sca", "privileged"] },
];

export function callerKindsFor(service: DescService): readonly CallerKind[] {
  return rules.find((r) => service.typeName.startsWith(r.prefix))?.kinds ?? [];
}
