import type { IncomingMessage, ServerResponse } from "node:http";

/** What a route handler gets: the request, the response, the path parameters and the parsed URL. */
export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
}

export type RouteHandler = (ctx: RouteContext) => Promise<void> | void;

export interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** A path with `:name` segments, e.g. `/api/requests/:id`; a trailing `/*` matches any rest (in params["*"]). */
  path: string;
  handler: RouteHandler;
}

/**
 * The gateway's route table: a flat list, first match wins. Features add their routes as a list of
 * their own (the portal in portal-routes.ts, the CSC API under src/csc/), so extending it is one
 * `add(...routes)` call in server.ts.
 */
export class Router {
  readonly #routes: { method: string; parts: string[]; handler: RouteHandler }[] = [];

  add(...routes: Route[]): this {
    for (const r of routes) this.#routes.push({ method: r.method, parts: r.path.split("/").filter(Boolean), handler: r.handler });
    return this;
  }

  /** The handler for a request and its path parameters; `methodNotAllowed` when only the method differs. */
  match(method: string, pathname: string): { handler: RouteHandler; params: Record<string, string> } | "methodNotAllowed" | undefined {
    const segments = pathname.split("/").filter(Boolean);
    let pathMatched = false;
    for (const route of this.#routes) {
      const params = matchParts(route.parts, segments);
      if (!params) continue;
      if (route.method !== method && !(method === "HEAD" && route.method === "GET")) {
        pathMatched = true;
        continue;
      }
      return { handler: route.handler, params };
    }
    return pathMatched ? "methodNotAllowed" : undefined;
  }
}

function matchParts(parts: string[], segments: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === "*") {
      params["*"] = segments.slice(i).join("/");
      return params;
    }
    const segment = segments[i];
    if (segment === undefined) return undefined;
    if (part.startsWith(":")) {
      let value: string;
      try {
        value = decodeURIComponent(segment);
      } catch {
        return undefined;
      }
      params[part.slice(1)] = value;
    } else if (part !== segment) return undefined;
  }
  return segments.length === parts.length ? params : undefined;
}
