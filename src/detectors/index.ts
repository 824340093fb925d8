import type { DetectorScore } from '../core/types';
import { WardenError } from '../core/errors';

/**
 * Public surface of the detect stage (contract shared by the pipeline and the detectors).
 * The detectors engineer replaces the body of `loadBundle`; the signatures stay.
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
}

/** Loads a bundle; refuses (BUNDLE_MODEL_MISMATCH) when it was fitted for another model. */
export async function loadBundle(bundlePath: string, expectedModelSha256: string): Promise<DetectorBundle> {
  void expectedModelSha256;
  throw new WardenError('BUNDLE_INVALID', `No detector bundle implementation yet (asked for ${bundlePath}).`);
}
