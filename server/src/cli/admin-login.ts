/**
 * `inkan admin login --profile NAME ...`: checks an identity against the SAM and saves where its
 * files are as a named profile (paths only, never the secrets themselves), so later commands need
 * only `--profile NAME` (or INKAN_ADMIN_PROFILE).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { createClient } from "@connectrpc/connect";
import { PrivilegedSessionService } from "@inkan/sdk/gen/inkan/admin/v1/auth_pb.js";
import { adminTransport, AdminUsageError, loadIdentity, profileFile, resolveIdentityPaths } from "./admin-identity.js";
import type { Verb } from "./admin-command.js";

export const loginVerb: Verb = {
  summary: "check an identity against the SAM and save it as a profile (--profile NAME)",
  help: `Resolves the identity from the flags, INKAN_ADMIN_* variables, --from-init or --data-dir, checks
that the SAM accepts its certificate, and writes the file paths, target and user id to
$INKAN_ADMIN_CONFIG_DIR/profiles/NAME.json (default ~/.config/inkan; mode 0600). The key files stay
where they are; the profile holds no secret.`,
  async run(ctx) {
    const name = ctx.identityFlags.profile ?? ctx.env["INKAN_ADMIN_PROFILE"];
    if (!name) throw new AdminUsageError("--profile NAME is required");
    const file = profileFile(name, ctx.env);
    // The profile is the output here, so the identity comes from everything but it.
    const env = { ...ctx.env, INKAN_ADMIN_PROFILE: "" };
    const paths = resolveIdentityPaths({ ...ctx.identityFlags, profile: undefined }, env);
    await createClient(PrivilegedSessionService, adminTransport(loadIdentity(paths))).createRequestNonce({});
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, JSON.stringify(paths, null, 2) + "\n", { mode: 0o600 });
    ctx.out.value({ profile: name, file, ...paths }, `Saved profile ${name} (user ${paths.userId} at ${paths.target}) to ${file}\nUse it with --profile ${name} or INKAN_ADMIN_PROFILE=${name}.`);
  },
};
