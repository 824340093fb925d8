/** Public surface of the decide stage: the policy schema and default, and the pure functions that decide. */
export { DEFAULT_POLICY, MOVED_POLICY_KEYS, PolicySchema, validatePolicy } from './schema';
export type { ApplicabilitySelectors, Combine, ErrorClass, OutOfScopeRule, Policy, SignalPolicy } from './schema';
export { combinePValues, decide, errorClassOf, makeDecision } from './decide';
export type { InstanceOutcome, PartRejection } from './decide';
export { applyStudyRule, decideStudy, worstVerdict } from './study';
export { fitsModelInput, isApplicable, outOfScopeAction } from './scope';
export type { InstanceAttributes, PixelGeometry } from './scope';
export { flagLabels, formatP, formatReason, formatReasons } from './reasons';
export { unreachableThresholds } from './thresholds';
export { policySignalProblems } from './signals';
