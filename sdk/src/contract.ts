import type { GenFile } from "@bufbuild/protobuf/codegenv2";
import { file_inkan_sam_v1_error } from "./gen/inkan/sam/v1/error_pb.js";
import { file_inkan_sam_v1_types } from "./gen/inkan/sam/v1/types_pb.js";

/** Every file of the Inkan v1 contract; a server serves each service in them. */
export const contractFiles: GenFile[] = [file_inkan_sam_v1_error, file_inkan_sam_v1_types];
