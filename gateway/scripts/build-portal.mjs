// Bundles the signer portal into gateway/dist/portal-app (run by `npm run build` after tsc -b).
import { buildPortal } from "../dist/portal/build.js";

await buildPortal();
