import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import type { PrivilegedSessionService } from "@inkan/sdk/gen/inkan/admin/v1/auth_pb.js";
import type { PrivilegedUsers } from "../admin/privileged-users.js";
import { kAdmin } from "./admin-auth.js";

/** PrivilegedSessionService: map in, call the domain, map out. */
export function privilegedSessionService(users: PrivilegedUsers, clock: () => Date = () => new Date()): Partial<ServiceImpl<typeof PrivilegedSessionService>> {
  return {
    async createRequestNonce(_req, ctx) {
      const user = ctx.values.get(kAdmin)!; // set by the admin-auth interceptor, which ran first
      const { nonce, expiresAt } = await users.issueNonce(user.userId, clock());
      return { nonce, expiresAt: timestampFromDate(expiresAt), userId: user.userId, role: PrivilegedRole[user.role] };
    },
  };
}
