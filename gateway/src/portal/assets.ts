import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Route } from "../http/router.js";
import { placeholderPage } from "./placeholder.js";

/** Where `npm run build` puts the bundled portal (gateway/scripts/build-portal.mjs). */
export const portalAppDir = fileURLToPath(new URL("../../dist/portal-app/", import.meta.url));

/**
 * Strict CSP: scripts, styles and connections only from the gateway's own origin, no inline
 * script or style, no framing (the page asks for a PIN: clickjacking must not be possible).
 */
export const portalCsp =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const types: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "portal.js": "text/javascript; charset=utf-8",
  "portal.css": "text/css; charset=utf-8",
};

/** The page at `/` and its two assets, read once at start (a rebuilt bundle needs a restart). */
export function portalAssetRoutes(dir = portalAppDir): Route[] {
  const files = new Map<string, Buffer>();
  for (const name of Object.keys(types)) if (existsSync(dir + name)) files.set(name, readFileSync(dir + name));
  const serve = (name: string): Route["handler"] => ({ res }) => {
    const body = files.get(name) ?? (name === "index.html" ? Buffer.from(placeholderPage) : undefined);
    if (!body) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not built: run npm run build");
      return;
    }
    res.writeHead(200, { "Content-Type": types[name]!, "Content-Length": body.length, "Content-Security-Policy": portalCsp, "X-Frame-Options": "DENY" });
    res.end(body);
  };
  return [
    { method: "GET", path: "/", handler: serve("index.html") },
    { method: "GET", path: "/portal.js", handler: serve("portal.js") },
    { method: "GET", path: "/portal.css", handler: serve("portal.css") },
  ];
}
