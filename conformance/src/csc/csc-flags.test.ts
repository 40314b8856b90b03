import { describe, expect, it } from "vitest";
import { cscTargetFromFlags, splitCsc } from "./csc-flags.js";

describe("--protocol csc flags (issue 16)", () => {
  it("takes csc out of the protocol list; all stays the SAM protocols", () => {
    expect(splitCsc("grpc,csc")).toEqual({ csc: true, rest: "grpc" });
    expect(splitCsc("csc")).toEqual({ csc: true, rest: "" });
    expect(splitCsc(undefined)).toEqual({ csc: false, rest: "all" });
  });

  it("needs the gateway and a registered client", () => {
    expect(() => cscTargetFromFlags({}, "ca")).toThrow(/--gateway/);
    expect(() => cscTargetFromFlags({ gateway: "https://g", "csc-client-id": "x" }, "ca")).toThrow(/--csc-client-key/);
  });
});
