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
import { CoherenceDetector } from './coherence';
import { EnergyDetector } from './energy';
import { MarginDetector } from './margin';
import { SqueezeDetector } from './squeeze';
import { SqueezeGaussianDetector } from './squeeze-gaussian';

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
  squeeze: { create: (p) => new SqueezeDetector(p), fromState: SqueezeDetector.fromState, description: 'feature squeezing: change of the answer under squeezed views of the image (Xu et al. 2018)' },
  sqzg: { create: (p) => new SqueezeGaussianDetector(p), fromState: SqueezeGaussianDetector.fromState, description: 'Gaussian of the clean logit changes under squeezed views; Mahalanobis distance' },
  coherence: { create: (p) => new CoherenceDetector(p), fromState: CoherenceDetector.fromState, description: 'decision coherence: clean ridge probes from early layers to the logits disagree with them (after NIC, Ma et al. 2019)' },
  margin: { create: (p) => new MarginDetector(p), fromState: MarginDetector.fromState, description: 'logit margin of the predicted class: decisions just past the boundary' },
  energy: { create: (p) => new EnergyDetector(p), fromState: EnergyDetector.fromState, description: 'free energy −logsumexp(z) of the logits (Liu et al. 2020)' },
};

/**
 * The detectors `warden fit` builds by default, in report order: the domain detectors, then the adversarial ones the
 * shipped policy blocks on (src/policy/schema.ts, DEFAULT_ADVERSARIAL).
 */
export const DEFAULT_DETECTORS = ['kd', 'lid', 'mgm', 'uad', 'nrd', 'squeeze', 'coherence', 'margin'];

export function getDetectorFactory(name: string): DetectorFactory {
  const f = DETECTORS[name];
  if (!f) throw new WardenError('USAGE', `Unknown detector '${name}'; known: ${Object.keys(DETECTORS).join(', ')}.`);
  return f;
}
