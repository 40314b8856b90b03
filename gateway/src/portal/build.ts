import { copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { portalAppDir } from "./assets.js";

const appSource = fileURLToPath(new URL("../../src/portal/app/", import.meta.url));

/**
 * Bundles the portal page with esbuild (a dev dependency: the bundle is built, then served as
 * static files; no CDN): src/portal/app/main.ts with @inkan/sdk/device and its dependencies into
 * one portal.js, beside index.html and portal.css.
 */
export async function buildPortal(outDir = portalAppDir): Promise<void> {
  const esbuild = await import("esbuild");
  mkdirSync(outDir, { recursive: true });
  await esbuild.build({
    entryPoints: [appSource + "main.ts"],
    outfile: outDir + "portal.js",
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    conditions: ["@inkan/source"],
    minify: true,
    sourcemap: false,
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(appSource + "index.html", outDir + "index.html");
  copyFileSync(appSource + "portal.css", outDir + "portal.css");
}
