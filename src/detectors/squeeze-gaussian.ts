/**
 * SQZG — the clean distribution of squeezing's effect (this work, after Xu et al. 2018): the vector of logit changes
 * under each view, z − z_view concatenated over the views, modelled by one Ledoit–Wolf Gaussian fitted on clean
 * training images; score = squared Mahalanobis distance. Where SQUEEZE asks "did the answer move a lot", SQZG asks
 * "did it move in a way clean images never do". An adversarial-signal detector. Reference: lab/detectors/adversarial.py.
 */

import { WardenError } from '../core/errors';
import { BaseDetector, type DetectorState, type FeatureTable, type FeatureVector, type StateArray } from './detector';
import { fitTiedGaussian, gaussianFromState, mahalanobis2, type TiedGaussian } from './gaussian';

export interface SqueezeGaussianParams {
  views: string[];
}

export class SqueezeGaussianDetector extends BaseDetector {
  readonly name = 'sqzg';
  readonly version = 1;
  readonly signal = 'adversarial';
  private g?: TiedGaussian;
  #x = new Float64Array(0);
  #scratch = new Float64Array(0);

  constructor(params: Partial<SqueezeGaussianParams> = {}) {
    const p = { views: ['median2', 'bits5'], ...params };
    if (!Array.isArray(p.views) || p.views.length === 0) throw new WardenError('USAGE', 'Detector sqzg: parameter views must name at least one view.');
    super(p as unknown as Record<string, unknown>);
  }

  private get views(): string[] {
    return (this.params as unknown as SqueezeGaussianParams).views;
  }

  protected layersToFit(): string[] {
    return ['logits', ...this.views.map((v) => `${v}/logits`)];
  }

  private delta(f: FeatureVector, out: Float64Array): Float64Array {
    const z = f.logits;
    this.views.forEach((v, i) => {
      const zv = f[`${v}/logits`];
      for (let j = 0; j < z.length; j++) out[i * z.length + j] = z[j] - zv[j];
    });
    return out;
  }

  protected fitImpl(train: FeatureTable): void {
    const k = train.numClasses;
    const dim = k * this.views.length;
    const data = new Float64Array(train.n * dim);
    const row = new Float64Array(dim);
    const z = train.layers.logits.data;
    for (let i = 0; i < train.n; i++) {
      const f: FeatureVector = { logits: z.subarray(i * k, (i + 1) * k) };
      for (const v of this.views) f[`${v}/logits`] = train.layers[`${v}/logits`].data.subarray(i * k, (i + 1) * k);
      this.delta(f, row);
      data.set(row, i * dim);
    }
    this.g = fitTiedGaussian({ dim, data }, null, 1);
    this.#x = new Float64Array(dim);
    this.#scratch = new Float64Array(dim);
  }

  protected scoreImpl(f: FeatureVector): number {
    return mahalanobis2(this.g as TiedGaussian, this.delta(f, this.#x), 0, this.#scratch);
  }

  protected saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> } {
    const g = this.g as TiedGaussian;
    return { meta: { shrinkage: g.shrinkage }, arrays: { mean: g.means, precision: g.precision } };
  }

  static fromState(state: DetectorState): SqueezeGaussianDetector {
    const d = new SqueezeGaussianDetector(state.params as Partial<SqueezeGaussianParams>);
    d.restoreCommon(state);
    const dim = (state.layers.logits ?? 0) * d.views.length;
    d.g = gaussianFromState(state, '', dim, 1);
    d.#x = new Float64Array(dim);
    d.#scratch = new Float64Array(dim);
    return d;
  }
}
