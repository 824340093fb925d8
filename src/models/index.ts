/** Public surface of the preprocess and extract stages. */
export {
  MANIFEST_METADATA_KEY, ManifestSchema, loadModelManifest, parseManifest, parseManifestJson, readOnnxMetadataProps,
} from './manifest';
export type { LoadedModel, ModelManifest } from './manifest';
export { preprocess, resizeBilinear, resizeNearest, resolveWindowRule, selectFrame, percentiles } from './preprocess';
export type { FrameChoice, PreprocessOptions, PreprocessResult } from './preprocess';
export { InferencePool, resolveWorkerScript } from './pool';
export { batchWithViews, isViewName, viewFunction, viewsOf } from './views';
export type { ViewFn } from './views';
export type { InferencePoolOptions, InferenceResult, RunOptions } from './pool';
export { DEFAULT_PROBES, exposeModel, inspectModel, proveOriginalOutputsUnchanged } from './onnx';
export type { ExposeOptions, ExposeResult, ImageInput, InspectOptions, LogitsInfo, ModelInspection, PenultimateInfo, Preprocess, ProbeRange, ProofOptions, ProofReport, TapCandidate, TapGroup } from './onnx';
