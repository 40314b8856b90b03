import type { Code } from "@connectrpc/connect";
import type { Reason } from "@inkan/sdk";
import type { RequirementId } from "./requirement-ids.js";
import type { Outcome, Session } from "./session.js";

/** The refusal a conforming SAM answers an attack with (sam.proto, signer.proto). */
export interface ExpectedRefusal {
  code: Code;
  reason: Reason;
}

/** What an attack produced: how the attack call ended, and how many signatures it got out of the SAM. */
export interface Observation {
  outcome: Outcome;
  /** Signatures the attack obtained or caused (the "nothing was signed" check); must be 0. */
  signed: number;
  /** Further broken invariants the case found (e.g. "2 of 16 concurrent calls succeeded"). */
  problems?: string[];
}

/**
 * Thrown by a case's run when the target does not offer what the case exercises (a method or an
 * assurance level its policy does not enable): the case is reported skipped with this reason.
 */
export class CaseSkipped extends Error {}

/** What a case needs beyond one SCA and a registration operator. */
export type Need = "secondSca" | "secondOfficer" | "otherScopeSca";

/** A black-box attack against the target. */
export interface AttackCase {
  kind: "attack";
  /** Stable id, kebab-case, e.g. "replay-sad-token". */
  id: string;
  covers: RequirementId[];
  /** One paragraph: what the attacker does and why a conforming SAM refuses it. */
  description: string;
  /** The refusal a conforming SAM answers with, or "success" for the cases that check a legitimate flow's result. */
  expected: ExpectedRefusal | "success";
  /** Other refusals that conform as well (e.g. the losers of a race may see either of two). */
  alsoAccepted?: ExpectedRefusal[];
  needs?: Need[];
  /** Heavy (concurrency) cases run on one protocol only. */
  oneProtocol?: boolean;
  run(session: Session): Promise<Observation>;
}

/** A threat or requirement that needs the operator's side: covered by named server integration tests. */
export interface CoveredElsewhere {
  kind: "covered-elsewhere";
  id: string;
  covers: RequirementId[];
  description: string;
  /** The server integration tests (file and test name) that cover it. */
  coveredBy: string[];
}

export type ConformanceCase = AttackCase | CoveredElsewhere;
