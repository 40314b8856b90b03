import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { contractFiles } from "./contract.js";

describe("contractFiles", () => {
  it("lists every generated inkan file exactly once", () => {
    const genDir = fileURLToPath(new URL("./gen/", import.meta.url));
    const generated = readdirSync(genDir, { recursive: true, encoding: "utf8" })
      .filter((f) => f.startsWith("inkan") && f.endsWith("_pb.ts"))
      .map((f) => f.replace(/_pb\.ts$/, ".proto").replaceAll("\\", "/"))
      .sort();
    expect(contractFiles.map((f) => f.name + ".proto").sort()).toEqual(generated);
  });
});
