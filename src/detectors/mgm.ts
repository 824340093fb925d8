/**
 * MGM — one multivariate Gaussian on clean penultimate features (after Li & Zhu 2020).
 *
 * Mean and Ledoit–Wolf shrunk covariance (stable when D approaches n) of the clean training features of one
 * layer, class-agnostic; score = squared Mahalanobis distance (x − μ)ᵀ Σ⁻¹ (x − μ). The threshold is not a
 * χ² quantile but the conformal one from clean calibration scores, like every detector here.
 */

import { WardenError } from '../core/errors';
import { BaseDetector, type DetectorState, type FeatureTable, type FeatureVector, type StateArray } from './detector';
import { fitTiedGaussian, gaussianFromState, mahalanobis2, type TiedGaussian } from './gaussian';

export interface MgmParams {
  layer: string;
  /** 'class' (default): Mondrian p-values per predicted class (clean distances differ by class). */
  calibrateBy: 'marginal' | 'class';
}

export const MGM_DEFAULTS: MgmParams = { layer: 'penultimate', calibrateBy: 'class' };

export class MgmDetector extends BaseDetector {
  readonly name = 'mgm';
  readonly version = 1;
  /** Distance from the clean training data: the model's answer is unreliable far from it; not evidence of manipulation. */
  readonly signal = 'domain';
  private g?: TiedGaussian;
  private scratch = new Float64Array(0);

  constructor(params: Partial<MgmParams> = {}) {
    const p = { ...MGM_DEFAULTS, ...params };
    if (typeof p.layer !== 'string') throw new WardenError('USAGE', 'Detector mgm: parameter layer must be a layer name.');
    super(p as unknown as Record<string, unknown>);
  }

  protected fitImpl(train: FeatureTable): void {
    const layer = (this.params as unknown as MgmParams).layer;
    this.g = fitTiedGaussian(train.layers[layer], null, 1);
    this.scratch = new Float64Array(this.g.dim);
  }

  protected scoreImpl(features: FeatureVector): number {
    const layer = (this.params as unknown as MgmParams).layer;
    return mahalanobis2(this.g as TiedGaussian, features[layer], 0, this.scratch);
  }

  protected saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> } {
    const g = this.g as TiedGaussian;
    return { meta: { shrinkage: g.shrinkage }, arrays: { mean: g.means, precision: g.precision } };
  }

  static fromState(state: DetectorState): MgmDetector {
    const d = new MgmDetector(state.params as Partial<MgmParams>);
    d.restoreCommon(state);
    const dim = state.layers[(d.params as unknown as MgmParams).layer];
    d.g = gaussianFromState(state, '', dim, 1);
    d.scratch = new Float64Array(dim);
    return d;
  }
}
