import type { ConformanceCase } from "../case.js";
import { bypassCases } from "./bypass.js";
import { coveredElsewhere } from "./covered-elsewhere.js";
import { forgeryCases } from "./forgery.js";
import { integrityCases } from "./integrity.js";
import { methodCases } from "./methods.js";
import { joseCases } from "./jose-attacks.js";
import { lockoutCases } from "./lockout.js";
import { replayCases } from "./replay.js";
import { revocationCases } from "./revocation.js";
import { scopeCases } from "./scope.js";
import { whatSignerSeesCases } from "./what-signer-sees.js";

/** Every case of the suite, in report order. */
export const allCases: readonly ConformanceCase[] = [...integrityCases, ...replayCases, ...forgeryCases, ...bypassCases, ...scopeCases, ...whatSignerSeesCases, ...revocationCases, ...methodCases, ...lockoutCases, ...joseCases, ...coveredElsewhere];
