import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  PrivilegedUserStatus,
  RequestSignatureAlgorithm,
  type CertificateBinding as CertificateBindingPb,
  type PrivilegedUserService,
} from "@inkan/sdk/gen/inkan/admin/v1/privileged_user_pb.js";
import { PrivilegedRole } from "@inkan/sdk/gen/inkan/admin/v1/types_pb.js";
import type { CertificateBinding, PrivilegedUserBody, PrivilegedUsers, UserKeyBody, UserView } from "../admin/privileged-users.js";
import { InkanError } from "../errors.js";
import { pageToken, readPageToken } from "../registration/ids.js";
import type { PrivilegedUserKeyRecord } from "../store/port.js";
import { kAdmin } from "./admin-auth.js";

type Impl = Partial<ServiceImpl<typeof PrivilegedUserService>>;
const ts = (iso: string | undefined) => (iso ? timestampFromDate(new Date(iso)) : undefined);

/** The authenticated caller (set by the admin-auth interceptor before any handler runs). */
export function adminOf(ctx: HandlerContext): string {
  const user = ctx.values.get(kAdmin);
  if (!user) throw new InkanError("CLIENT_CERTIFICATE_REJECTED", "not authenticated"); // unreachable by construction
  return user.userId;
}

function bindingIn(b: CertificateBindingPb | undefined): CertificateBinding {
  if (b?.binding.case === "spkiSha256") return { spkiSha256: Buffer.from(b.binding.value).toString("hex") };
  throw new InkanError("INVALID_REQUEST", "certificate_binding is required", { field: "certificate_binding" });
}

function keyOut(k: PrivilegedUserKeyRecord) {
  const body = JSON.parse(k.body) as UserKeyBody;
  return {
    keyId: k.id,
    publicKeyJwk: body.jwk,
    algorithm: body.algorithm === "ES256" ? RequestSignatureAlgorithm.ES256 : RequestSignatureAlgorithm.EDDSA,
    label: body.label,
    addedAt: ts(body.addedAt),
    addedBy: body.addedBy,
    revokedAt: ts(body.revokedAt),
    revokedBy: body.revokedBy ?? "",
  };
}

export function userOut({ user, keys }: UserView) {
  const body = JSON.parse(user.body) as PrivilegedUserBody;
  const b = body.certificateBinding;
  return {
    userId: user.id,
    displayName: body.displayName,
    role: PrivilegedRole[user.role],
    // A binding in a form taken before issue 13 identifies nobody: reported as none (unset).
    ...("spkiSha256" in b ? { certificateBinding: { binding: { case: "spkiSha256" as const, value: Buffer.from(b.spkiSha256, "hex") } } } : {}),
    keys: keys.map(keyOut),
    status: user.status === "ACTIVE" ? PrivilegedUserStatus.ACTIVE : PrivilegedUserStatus.REMOVED,
    createdAt: ts(body.createdAt),
    createdBy: body.createdBy,
    updatedAt: ts(body.updatedAt),
    version: BigInt(user.version),
  };
}

const roleIn = (r: PrivilegedRole) => {
  const name = PrivilegedRole[r];
  if (name === "SECURITY_OFFICER" || name === "REGISTRATION_OPERATOR" || name === "AUDITOR") return name;
  throw new InkanError("INVALID_REQUEST", "role is required", { field: "role" });
};

/** PrivilegedUserService: privileged users and their keys, changed only by security officers (R-3.2.1.6). */
export function privilegedUserService(users: PrivilegedUsers, clock: () => Date = () => new Date()): Impl {
  return {
    async createPrivilegedUser(req, ctx) {
      const { user } = await users.create({
        role: roleIn(req.role),
        displayName: req.displayName,
        certificateBinding: bindingIn(req.certificateBinding),
        publicKeyJwk: req.publicKeyJwk,
        keyLabel: req.keyLabel,
        createdBy: adminOf(ctx),
        now: clock(),
      });
      return { user: userOut(await users.get(user.id)) };
    },
    async getPrivilegedUser(req) {
      return { user: userOut(await users.get(req.userId)) };
    },
    async listPrivilegedUsers(req) {
      const status = req.status === PrivilegedUserStatus.ACTIVE ? "ACTIVE" : req.status === PrivilegedUserStatus.REMOVED ? "REMOVED" : undefined;
      const role = req.role ? roleIn(req.role) : undefined;
      const filters = { role, status };
      const after = readPageToken(req.page?.pageToken, filters);
      const page = await users.list({
        ...(role ? { role } : {}),
        ...(status ? { status } : {}),
        ...(after ? { after } : {}),
        limit: req.page?.pageSize || 100,
      });
      return { users: page.users.map(userOut), page: { nextPageToken: pageToken(page.next, filters) } };
    },
    async updatePrivilegedUser(req, ctx) {
      const user = await users.update({
        userId: req.userId,
        expectedVersion: Number(req.expectedVersion),
        displayName: req.displayName,
        certificateBinding: bindingIn(req.certificateBinding),
        by: adminOf(ctx),
        now: clock(),
      });
      return { user: userOut(await users.get(user.id)) };
    },
    async removePrivilegedUser(req, ctx) {
      const user = await users.remove({ userId: req.userId, by: adminOf(ctx), now: clock() });
      return { user: userOut(await users.get(user.id)) };
    },
    async addUserKey(req, ctx) {
      return { key: keyOut(await users.addKey({ userId: req.userId, publicKeyJwk: req.publicKeyJwk, label: req.label, by: adminOf(ctx), now: clock() })) };
    },
    async revokeUserKey(req, ctx) {
      return { key: keyOut(await users.revokeKey({ userId: req.userId, keyId: req.keyId, by: adminOf(ctx), now: clock() })) };
    },
  };
}
