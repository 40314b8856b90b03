/** Issue 23: the labels an RPC's outcome gets: gRPC status code names and Inkan reason codes only. */
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { InkanError } from "../errors.js";
import { outcomeOf } from "./metrics.js";

describe("Issue 23: RPC outcome labels", () => {
  it("name the gRPC status code and the reason, never the message", () => {
    expect(outcomeOf(undefined)).toEqual({ code: "OK", reason: "" });
    expect(outcomeOf(new InkanError("SAD_REPLAYED", "token abc-secret-123 was used"))).toEqual({ code: "PERMISSION_DENIED", reason: "SAD_REPLAYED" });
    expect(outcomeOf(new InkanError("LIMIT_EXCEEDED", "too many"))).toEqual({ code: "RESOURCE_EXHAUSTED", reason: "LIMIT_EXCEEDED" });
    expect(outcomeOf(new ConnectError("gone", Code.Canceled))).toMatchObject({ code: "CANCELLED" });
    expect(outcomeOf(new Error("driver said: password=hunter2"))).toEqual({ code: "INTERNAL", reason: "UNSPECIFIED" });
  });
});
