import { describe, expect, it } from "vitest";
import { gatewayConfig, GatewayConfigError, parsePublicUrl } from "./config.js";

// The gateway's public URL (--public-url, INKAN_GATEWAY_PUBLIC_URL): the CSC client-assertion
// audience, info's oauth2 URL and the portal's request links come from it, never from Host.
describe("the gateway's public URL", () => {
  it("is an origin, returned as the exact string clients build URLs from", () => {
    expect(parsePublicUrl("https://rssp.example")).toBe("https://rssp.example");
    expect(parsePublicUrl("https://rssp.example/")).toBe("https://rssp.example");
    expect(parsePublicUrl("https://RSSP.Example:8444")).toBe("https://rssp.example:8444");
    expect(parsePublicUrl("https://rssp.example:443")).toBe("https://rssp.example");
    expect(parsePublicUrl("http://127.0.0.1:8080")).toBe("http://127.0.0.1:8080");
    expect(parsePublicUrl("https://[::1]:8444")).toBe("https://[::1]:8444");
  });

  it("refuses anything else with what is wrong", () => {
    const cases: [string, RegExp][] = [
      ["rssp.example", /not an absolute URL/],
      ["/csc/v2", /not an absolute URL/],
      ["ftp://rssp.example", /not an https:\/\/ or http:\/\/ URL/],
      ["javascript:alert(1)", /not an https:\/\/ or http:\/\/ URL/],
      ["https://rssp.example/?x=1", /query or fragment/],
      ["https://rssp.example?", /query or fragment/],
      ["https://rssp.example/#top", /query or fragment/],
      ["https://user:pw@rssp.example", /user name or password/],
      ["https://rssp.example/gateway", /has a path/],
    ];
    for (const [value, why] of cases) {
      expect(() => parsePublicUrl(value), value).toThrow(GatewayConfigError);
      expect(() => parsePublicUrl(value), value).toThrow(why);
    }
  });

  it("gatewayConfig checks it before reading the data directory; unset, it is undefined (the listen URL)", () => {
    expect(() => gatewayConfig({ dataDir: "/nonexistent-inkan", publicUrl: "https://rssp.example/x" })).toThrow(/public-url: "https:\/\/rssp.example\/x" has a path/);
    expect(() => gatewayConfig({ dataDir: "/nonexistent-inkan", publicUrl: "https://rssp.example" })).toThrow(/pki.*is missing/);
  });
});
