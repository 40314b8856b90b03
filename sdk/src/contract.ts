import type { GenFile } from "@bufbuild/protobuf/codegenv2";
import { file_inkan_admin_v1_audit } from "./gen/inkan/admin/v1/audit_pb.js";
import { file_inkan_admin_v1_auth } from "./gen/inkan/admin/v1/auth_pb.js";
import { file_inkan_admin_v1_policy } from "./gen/inkan/admin/v1/policy_pb.js";
import { file_inkan_admin_v1_privileged_user } from "./gen/inkan/admin/v1/privileged_user_pb.js";
import { file_inkan_admin_v1_registration } from "./gen/inkan/admin/v1/registration_pb.js";
import { file_inkan_admin_v1_types } from "./gen/inkan/admin/v1/types_pb.js";
import { file_inkan_sam_v1_error } from "./gen/inkan/sam/v1/error_pb.js";
import { file_inkan_sam_v1_error_options } from "./gen/inkan/sam/v1/error_options_pb.js";
import { file_inkan_sam_v1_sam } from "./gen/inkan/sam/v1/sam_pb.js";
import { file_inkan_sam_v1_signer } from "./gen/inkan/sam/v1/signer_pb.js";
import { file_inkan_sam_v1_types } from "./gen/inkan/sam/v1/types_pb.js";

/**
 * Every file of the Inkan v1 contract. A server serves each service in them (reflection included);
 * a test checks this list against the files in sdk/src/gen, so a new proto cannot be forgotten.
 */
export const contractFiles: GenFile[] = [
  file_inkan_sam_v1_error,
  file_inkan_sam_v1_error_options,
  file_inkan_sam_v1_types,
  file_inkan_sam_v1_sam,
  file_inkan_sam_v1_signer,
  file_inkan_admin_v1_types,
  file_inkan_admin_v1_auth,
  file_inkan_admin_v1_privileged_user,
  file_inkan_admin_v1_registration,
  file_inkan_admin_v1_policy,
  file_inkan_admin_v1_audit,
];
