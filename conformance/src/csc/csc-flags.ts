/** The `--protocol csc` flags: the gateway and the suite's registered CSC client(s). */
import { readFileSync } from "node:fs";
import type { JWK } from "jose";
import type { CliValues } from "../cli-options.js";
import type { CscTarget } from "./csc-client.js";

/** "grpc,csc" -> { csc: true, rest: "grpc" }; "csc" -> { csc: true, rest: "" }; "all" stays the SAM protocols. */
export function splitCsc(value: string | undefined): { csc: boolean; rest: string } {
  const list = (value ?? "all").split(",").map((p) => p.trim());
  return { csc: list.includes("csc"), rest: list.filter((p) => p !== "csc").join(",") };
}

export function cscTargetFromFlags(v: CliValues, ca: string): { first: CscTarget; second?: CscTarget } {
  if (!v.gateway || !v["csc-client-id"] || !v["csc-client-key"]) throw new Error("--protocol csc needs --gateway, --csc-client-id and --csc-client-key");
  const baseUrl = `${v.gateway.replace(/\/+$/, "")}/csc/v2`;
  const key = (file: string) => JSON.parse(readFileSync(file, "utf8")) as JWK;
  const first = { baseUrl, ca, clientId: v["csc-client-id"], privateJwk: key(v["csc-client-key"]) };
  if ((v["csc-second-client-id"] === undefined) !== (v["csc-second-client-key"] === undefined)) throw new Error("--csc-second-client-id and --csc-second-client-key go together");
  return v["csc-second-client-id"] ? { first, second: { baseUrl, ca, clientId: v["csc-second-client-id"], privateJwk: key(v["csc-second-client-key"]!) } } : { first };
}
