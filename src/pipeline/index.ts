/** Public surface of the pipeline: the composition root and the scan/extract compositions it builds. */
export { compose, providersFor, resolveBundlePath, runtimeOptionsFromConfig } from './compose';
export type { Runtime, RuntimeConfig, RuntimeOptions } from './compose';
export { ScanPipeline, predictionOf } from './scan-pipeline';
export type { ExtractResult, ScanMeta, ScanPipelineParts, ScanRecord, ScanResult } from './scan-pipeline';
