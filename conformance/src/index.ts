export { catalogue } from "./catalogue.js";
export { requirementIds, type RequirementId } from "./requirement-ids.js";
export { CaseSkipped, type AttackCase, type ConformanceCase, type CoveredElsewhere, type ExpectedRefusal, type Observation } from "./case.js";
export { allCases } from "./cases/index.js";
export { conforms, judge, parseKnownFailures, runSuite, suiteVersion, type CaseResult, type CaseStatus, type ProtocolRun, type RunOptions, type SuiteReport } from "./runner.js";
export { toJson, toJunit, toMarkdown } from "./report.js";
export { allProtocols, prepareIdentities, type Identities, type PrivilegedIdentity, type Protocol, type TargetOptions } from "./target.js";
export { targetFromInit, type InitPaths } from "./cli-options.js";
