/**
 * The threat (T-) and requirement (R-) IDs of the project's requirements document (the JT2A SAM
 * guideline's own numbering), copied here because users of this package do not have that document.
 * catalogue.test.ts checks the catalogue against this copy, and this copy against the document when
 * it is present.
 */
export const requirementIds = [
  "T-2.1.1.1", "T-2.1.1.2", "T-2.1.1.3", "T-2.1.1.4", "T-2.1.2.1", "T-2.1.2.2", "T-2.1.3.1", "T-2.1.3.2",
  "T-2.1.4.1", "T-2.1.4.2", "T-2.1.4.3", "T-2.1.4.4",
  "T-2.2.1.1", "T-2.2.1.2", "T-2.2.1.3", "T-2.2.1.4", "T-2.2.1.5", "T-2.2.1.6", "T-2.2.1.7", "T-2.2.1.8",
  "T-2.2.2.1", "T-2.2.2.2", "T-2.2.2.3", "T-2.3.1.1", "T-2.3.1.2",
  "R-3.1.1.1", "R-3.1.1.2", "R-3.1.1.3", "R-3.1.1.4", "R-3.1.2.1", "R-3.1.2.2", "R-3.1.3.1", "R-3.1.3.2", "R-3.1.4",
  "R-3.2.1.1", "R-3.2.1.2", "R-3.2.1.3", "R-3.2.1.4", "R-3.2.1.5", "R-3.2.1.6", "R-3.2.1.7",
  "R-3.2.2.1", "R-3.2.2.2", "R-3.2.2.3", "R-3.2.2.4", "R-3.3.1", "R-3.3.2",
] as const;

export type RequirementId = (typeof requirementIds)[number];
