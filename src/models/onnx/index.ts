/**
 * Bring-your-own-model support: inspect a sealed ONNX classifier, add pooled feature outputs by graph surgery
 * (original nodes, initializers and outputs untouched, proven on probe inputs) and embed the Warden manifest.
 */
export { inspectModel } from './inspect';
export type { InspectOptions, LogitsInfo, ModelInspection, PenultimateInfo, TapCandidate, TapGroup } from './inspect';
export { exposeModel } from './expose';
export type { ExposeOptions, ExposeResult, Preprocess } from './expose';
export { proveOriginalOutputsUnchanged, DEFAULT_PROBES } from './verify';
export type { ProofOptions, ProofReport } from './verify';
export type { ImageInput } from './graph';
export type { ProbeRange } from './runtime';
