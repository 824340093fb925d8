/** Public surface of telemetry: the metric definitions and the subscription that feeds them. */
export { createMetrics, P_VALUE_BUCKETS, SCORE_BUCKETS, STAGE_BUCKETS, UPSTREAM_BUCKETS } from './metrics';
export type { MetricsOptions, MetricsProbes, WardenMetrics } from './metrics';
export { subscribeMetrics } from './subscribe';
export { DriftWatch, binomialUpperTail, type DriftKey, type DriftReading } from './drift';
