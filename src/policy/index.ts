/** Public surface of the decide stage: the policy schema and default, and the pure functions that decide. */
export { DEFAULT_POLICY, PolicySchema, validatePolicy } from './schema';
export type { ApplicabilitySelectors, ErrorClass, OutOfScopeRule, Policy } from './schema';
export { combinePValues, decide, errorClassOf, makeDecision } from './decide';
export type { InstanceOutcome, PartRejection } from './decide';
export { applyStudyRule, decideStudy, worstVerdict } from './study';
export { fitsModelInput, isApplicable, outOfScopeAction } from './scope';
export type { InstanceAttributes, PixelGeometry } from './scope';
export { formatP, formatReason, formatReasons, reasonLabel } from './reasons';
export { unreachableThresholds } from './thresholds';
