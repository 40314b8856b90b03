/**
 * npx inkan-conformance --target https://host:port --from-init init.json --protocol all
 *   --report-json out.json --junit out.xml --markdown out.md [--known-failures FILE]
 * Exit status: 0 when no case failed, 1 when one did, 2 on a usage or setup error.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { allCases } from "./cases/index.js";
import { cliOptions, protocolsOf, targetFromFlags, type CliValues } from "./cli-options.js";
import { toJson, toJunit, toMarkdown } from "./report.js";
import { conforms, parseKnownFailures, runSuite, suiteVersion } from "./runner.js";
import { cscTargetFromFlags, splitCsc } from "./csc/csc-flags.js";
import { runCscCases } from "./csc/run-csc.js";
import { prepareIdentities } from "./target.js";

const usage = `inkan-conformance ${suiteVersion}: replay, bypass and forgery attacks against a SAM serving inkan.sam.v1

  --target URL                   the SAM, https://host:port (required)
  --from-init FILE               the JSON \`inkan init --json\` printed (replaces the certificate flags below)
  --ca FILE                      CA certificate the server's certificate chains to
  --sca-cert FILE --sca-key FILE an SCA client certificate
  --second-sca-cert/--second-sca-key   a second SCA (cross-SCA cases); or --sca-ca-cert/--sca-ca-key to mint one
  --front-end-cert/--front-end-key     the signer front end, SignerService's caller (default: the SCA's)
  --other-scope-sca-cert/--other-scope-sca-key   an SCA whose scope covers no signer without a group
                                 (scope cases; --from-init gives \`secondSca\`)
  --admin-cert/--admin-key/--admin-signing-key FILE [--admin-user-id ID]   a security officer
  --operator-cert/--operator-key/--operator-signing-key [--operator-user-id] a registration operator,
                                 or --admin-ca-cert/--admin-ca-key to have the security officer create one
  --signer-issuing-ca-cert/--signer-issuing-ca-key   the CA that certifies signers' keys
  --protocol grpc|connect|grpc-web|csc|all (or a comma list; default all = the three SAM protocols)
  --gateway URL --csc-client-id ID --csc-client-key FILE   for csc: the gateway (https://host:port) and a
                                 CSC client registered there (private JWK file, explicit mode, the
                                 suite's signers in scope); --csc-second-client-id/-key for cross-client cases
  --report-json FILE --junit FILE --markdown FILE
  --known-failures FILE          lines "case-id: reason"
  --case ID                      run only this case (repeatable)
  --list                         list the cases and exit

The suite enrolls its own signers and credentials on the target: point it at a test SAM.`;

export async function main(argv: string[]): Promise<number> {
  let values: CliValues;
  try {
    values = parseArgs({ args: argv, options: cliOptions, strict: true }).values as CliValues;
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${usage}`);
    return 2;
  }
  if (values.help) {
    console.log(usage);
    return 0;
  }
  if (values.list) {
    for (const c of allCases) console.log(`${c.id.padEnd(40)} ${c.kind === "attack" ? "attack" : "covered-elsewhere"}  ${c.covers.join(", ")}`);
    return 0;
  }
  let target;
  let protocols;
  let knownFailures;
  let csc;
  try {
    target = targetFromFlags(values);
    const split = splitCsc(values.protocol);
    protocols = split.rest === "" ? [] : protocolsOf(split.rest);
    csc = split.csc ? cscTargetFromFlags(values, target.ca) : undefined;
    knownFailures = values["known-failures"] ? parseKnownFailures(readFileSync(values["known-failures"], "utf8")) : undefined;
  } catch (err) {
    console.error(`inkan-conformance: ${(err as Error).message}`);
    return 2;
  }
  const only = values.case;
  const unknown = (only ?? []).filter((id) => !allCases.some((c) => c.id === id));
  if (unknown.length > 0) {
    console.error(`inkan-conformance: unknown case ${unknown.join(", ")} (see --list)`);
    return 2;
  }
  const identities = await prepareIdentities(target).catch((err: unknown) => {
    console.error(`inkan-conformance: could not prepare the run: ${(err as Error).message}`);
    return undefined;
  });
  if (!identities) return 2;
  const report = await runSuite({
    target,
    protocols,
    identities,
    ...(knownFailures ? { knownFailures } : {}),
    ...(only ? { cases: allCases.filter((c) => only.includes(c.id)) } : {}),
    onResult: (protocol, r) => {
      if (r.status === "covered-elsewhere") return;
      console.error(`${r.status.padEnd(13)} ${protocol.padEnd(8)} ${r.id}${r.detail && r.status !== "passed" ? `: ${r.detail}` : ""}`);
    },
  }).catch((err: unknown) => {
    console.error(`inkan-conformance: could not prepare the run: ${(err as Error).message}`);
    return undefined;
  });
  if (!report) return 2;
  if (csc) {
    report.runs.push(await runCscCases({
      target, identities, csc: csc.first, ...(csc.second ? { otherCsc: csc.second } : {}),
      onResult: (r) => console.error(`${r.status.padEnd(13)} ${"csc".padEnd(8)} ${r.id}${r.detail && r.status !== "passed" ? `: ${r.detail}` : ""}`),
    }));
  }
  if (values["report-json"]) writeFileSync(values["report-json"], toJson(report));
  if (values.junit) writeFileSync(values.junit, toJunit(report));
  if (values.markdown) writeFileSync(values.markdown, toMarkdown(report));
  const all = report.runs.flatMap((r) => r.results);
  const count = (s: string) => all.filter((r) => r.status === s).length;
  console.error(`\n${count("passed")} passed, ${count("failed")} failed, ${count("known-failure")} known failures, ${count("skipped")} skipped, ${count("covered-elsewhere")} covered elsewhere${count("not-applicable") ? `, ${count("not-applicable")} not applicable` : ""}`);
  return conforms(report) ? 0 : 1;
}
