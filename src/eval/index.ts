/** Public surface of evaluation tooling: manifests and feature dumps on disk, ROC figures and the report. */
export { listFiles, parseCsv, parseSourceSpec, readManifest, selectRows, toCsv, truthy } from './dataset';
export type { ManifestRow, SourceKind, SourceSpec } from './dataset';
export { readFeatureDump, readNpy, writeFeatureDump, writeNpy } from './features-io';
export type { FeatureDump, FeatureDumpHeader } from './features-io';
export { auroc, detLabel, eps255, epsLabel, groupKeys, rateAtOrBelow, renderMarkdown, rocCurve, rocSvg } from './evaluation';
export type { BenignRow, CleanRow, EvalReport, EvalRow } from './evaluation';
export { DISTRIBUTION_TEST_LEVEL, MIN_SCORES_BEYOND_THRESHOLD, ksTwoSample, renderSiteReportMarkdown, scoreDistributionSvg, siteReport } from './site-report';
export type { DetectorSiteRow, KsResult, SignalSiteRow, SiteReport, SiteReportInput, SiteWarning } from './site-report';
export { evaluatePolicy, renderPolicyMarkdown } from './policy-eval';
export type { PolicyEvaluation, PolicyGroupRow, ScoredRows } from './policy-eval';
export { readAdaptiveReport, renderAdaptiveMarkdown } from './adaptive';
export type { AdaptiveReport, AdaptiveRow } from './adaptive';
