import type { DetectorScore } from '../core/types';
import { WardenError } from '../core/errors';
import { type Detector, type FeatureTable, fitAndCalibrate } from './detector';
import { type BundleContents, type BundleHeader, readBundleFile, writeBundleFile } from './bundle';
import { DEFAULT_DETECTORS, getDetectorFactory } from './registry';

/**
 * Public surface of the detect stage (contract shared by the pipeline and the detectors).
 */
export interface DetectorBundle {
  /** Detector names in the bundle, e.g. ['kd', 'lid', 'mgm', 'uad']. */
  readonly names: string[];
  /** Feature layers the bundle needs from the extractor. */
  readonly requiredLayers: string[];
  /** sha256 (hex) of the model file the bundle was fitted for. */
  readonly modelSha256: string;
  /** Per-detector score (higher = more anomalous) and conformal p-value against clean calibration scores. */
  score(features: Record<string, Float32Array>, predictedClass: number): Record<string, DetectorScore>;
  /** The validated bundle header (format version, layers, calibration size, creation time…). */
  readonly header?: BundleHeader;
  /** The fitted detectors by id, for evaluation and diagnostics. */
  readonly detectors?: Record<string, Detector>;
}

/** One detector to fit: `id` names it in the bundle and in scores; `kind` picks the registry implementation. */
export interface DetectorSpec {
  id: string;
  kind: string;
  params?: Record<string, unknown>;
}

export const DEFAULT_SPECS: DetectorSpec[] = DEFAULT_DETECTORS.map((k) => ({ id: k, kind: k }));

/**
 * The views the detectors of these specs read (a detector that reads views names them in its `views` parameter,
 * defaults included), so that feature extraction for fitting runs the image as those views too.
 */
export function viewsOfSpecs(specs: DetectorSpec[]): string[] {
  const views = new Set<string>();
  for (const s of specs) {
    const v = getDetectorFactory(s.kind).create(s.params ?? {}).params.views;
    if (Array.isArray(v)) for (const name of v) views.add(String(name));
  }
  return [...views].sort();
}

/** A fitted set of detectors bound to one model. */
export class FittedBundle implements DetectorBundle {
  readonly names: string[];
  readonly requiredLayers: string[];
  readonly detectors: Record<string, Detector>;

  constructor(
    readonly modelSha256: string,
    detectors: Record<string, Detector>,
    readonly header?: BundleHeader,
  ) {
    this.detectors = detectors;
    this.names = Object.keys(detectors);
    this.requiredLayers = [...new Set(Object.values(detectors).flatMap((d) => d.requiredLayers))].sort();
  }

  score(features: Record<string, Float32Array>, predictedClass: number): Record<string, DetectorScore> {
    const out: Record<string, DetectorScore> = {};
    for (const [id, d] of Object.entries(this.detectors)) {
      const score = d.score(features, predictedClass);
      out[id] = { score, pValue: d.pValue(score, predictedClass), signal: d.signal };
    }
    return out;
  }
}

export interface FitBundleOptions {
  modelSha256: string;
  modelFile?: string;
  specs?: DetectorSpec[];
  trainSource?: string;
  calibrationSource?: string;
  targetFpr?: { flag: number; block: number };
  info?: Record<string, unknown>;
  /** Called after each detector is fitted and calibrated. */
  onDetector?: (id: string, index: number, total: number) => void;
}

/** Fits and calibrates every detector of `specs` on clean features; returns the bundle (not yet written). */
export function fitBundle(train: FeatureTable, calibration: FeatureTable, opts: FitBundleOptions): { bundle: FittedBundle; contents: BundleContents } {
  const specs = opts.specs ?? DEFAULT_SPECS;
  const detectors: Record<string, Detector> = {};
  specs.forEach((s, i) => {
    const d = getDetectorFactory(s.kind).create(s.params ?? {});
    fitAndCalibrate(d, train, calibration);
    detectors[s.id] = d;
    opts.onDetector?.(s.id, i + 1, specs.length);
  });
  const layers: Record<string, number> = {};
  for (const [name, m] of Object.entries(train.layers)) layers[name] = m.dim;
  const contents: BundleContents = {
    header: {
      format: 'warden-detector-bundle',
      version: 1,
      createdAt: new Date().toISOString(),
      model: { sha256: opts.modelSha256, ...(opts.modelFile ? { file: opts.modelFile } : {}) },
      numClasses: train.numClasses,
      layers,
      fit: { n: train.n, ...(opts.trainSource ? { source: opts.trainSource } : {}) },
      calibration: { n: calibration.n, ...(opts.calibrationSource ? { source: opts.calibrationSource } : {}), targetFpr: opts.targetFpr ?? { flag: 0.05, block: 0.005 } },
      ...(opts.info ? { info: opts.info } : {}),
    },
    detectors: specs.map((s) => ({ id: s.id, kind: s.kind, state: detectors[s.id].save() })),
  };
  return { bundle: new FittedBundle(opts.modelSha256, detectors), contents };
}

export function saveBundle(bundlePath: string, contents: BundleContents): void {
  writeBundleFile(bundlePath, contents);
}

/** Builds a bundle from decoded contents, checking the model binding. @throws BUNDLE_MODEL_MISMATCH, BUNDLE_INVALID */
export function bundleFromContents(contents: BundleContents & { header: BundleHeader }, expectedModelSha256: string, label: string): FittedBundle {
  const have = contents.header.model.sha256;
  if (have !== expectedModelSha256.toLowerCase()) {
    throw new WardenError(
      'BUNDLE_MODEL_MISMATCH',
      `${label} was fitted for the model with sha256 ${have.slice(0, 12)}…, but the model in use has sha256 ${expectedModelSha256.slice(0, 12)}…; ` +
        'its scores would be meaningless. Refit it for this model with `warden fit --model <model.onnx> …`.',
      { detail: { bundleModelSha256: have, modelSha256: expectedModelSha256 } },
    );
  }
  const detectors: Record<string, Detector> = {};
  for (const d of contents.detectors) {
    let det: Detector;
    try {
      det = getDetectorFactory(d.kind).fromState(d.state);
    } catch (err) {
      if (err instanceof WardenError && err.code !== 'USAGE') throw err;
      throw new WardenError('BUNDLE_INVALID', `${label}: detector '${d.id}' (${d.kind}) cannot be restored: ${(err as Error).message}`, { cause: err });
    }
    for (const [layer, dim] of Object.entries(det.requiredLayers.length ? Object.fromEntries(det.requiredLayers.map((l) => [l, d.state.layers[l]])) : {})) {
      if (contents.header.layers[layer] !== undefined && contents.header.layers[layer] !== dim) {
        throw new WardenError('BUNDLE_INVALID', `${label}: detector '${d.id}' expects layer '${layer}' of ${dim} values, the header says ${contents.header.layers[layer]}.`);
      }
    }
    if (!det.calibrated) throw new WardenError('BUNDLE_INVALID', `${label}: detector '${d.id}' has no calibration scores.`);
    detectors[d.id] = det;
  }
  return new FittedBundle(have, detectors, contents.header);
}

/** Loads a bundle; refuses (BUNDLE_MODEL_MISMATCH) when it was fitted for another model. */
export async function loadBundle(bundlePath: string, expectedModelSha256: string): Promise<DetectorBundle> {
  const contents = readBundleFile(bundlePath);
  return bundleFromContents(contents, expectedModelSha256, `The detector bundle ${bundlePath}`);
}
