/**
 * Detector registry: adding a detector = one new file implementing `Detector` (usually by extending
 * BaseDetector) + one line here.
 */

import { WardenError } from '../core/errors';
import type { Detector, DetectorState } from './detector';
import { KdDetector } from './kd';
import { LidDetector } from './lid';
import { MgmDetector } from './mgm';
import { NrdDetector } from './nrd';
import { UadDetector } from './uad';

export interface DetectorFactory {
  /** Builds an unfitted detector; the constructor only stores and validates parameters. */
  create(params?: Record<string, unknown>): Detector;
  /** Rebuilds a fitted detector from saved state. @throws BUNDLE_INVALID */
  fromState(state: DetectorState): Detector;
  /** One line for `--help` and the report. */
  description: string;
}

export const DETECTORS: Record<string, DetectorFactory> = {
  kd: { create: (p) => new KdDetector(p), fromState: KdDetector.fromState, description: 'kernel density of penultimate features under the predicted class (Feinman 2017)' },
  lid: { create: (p) => new LidDetector(p), fromState: LidDetector.fromState, description: 'k-NN MLE local intrinsic dimensionality per layer against a clean bank, Mahalanobis-fused (Ma 2018)' },
  mgm: { create: (p) => new MgmDetector(p), fromState: MgmDetector.fromState, description: 'one Ledoit–Wolf Gaussian on penultimate features, Mahalanobis distance (Li & Zhu 2020)' },
  uad: { create: (p) => new UadDetector(p), fromState: UadDetector.fromState, description: 'per-layer class-conditional tied Gaussians, per-layer p-values fused (Bonferroni by default), recalibrated' },
  nrd: { create: (p) => new NrdDetector(p), fromState: NrdDetector.fromState, description: 'noise residual: Ledoit–Wolf Gaussian on high-pass residual statistics of the input' },
};

/** The detectors `warden fit` builds by default, in report order. */
export const DEFAULT_DETECTORS = ['kd', 'lid', 'mgm', 'uad', 'nrd'];

export function getDetectorFactory(name: string): DetectorFactory {
  const f = DETECTORS[name];
  if (!f) throw new WardenError('USAGE', `Unknown detector '${name}'; known: ${Object.keys(DETECTORS).join(', ')}.`);
  return f;
}
