/**
 * NRD — noise-residual detector (Warden's own; input-space, after steganalysis' high-pass residual models).
 *
 * The reference model exports `residual_stats`: for six fixed high-pass filters (Laplacian and SRM-style first
 * and second differences) applied to the input in 8-bit grey units, four statistics each (mean |r|, std,
 * mean r², mean min(|r|, 2)). Clean images occupy a narrow band of these energies; an additive perturbation
 * (adversarial or not) raises them. NRD models the clean residual statistics with one Ledoit–Wolf Gaussian
 * (class-agnostic: the residual does not depend on the diagnosis), optionally on log-statistics, and scores the
 * squared Mahalanobis distance.
 *
 * It cannot tell structured adversarial noise from white noise of the same energy (measured: the mean residual
 * profile of PGD-L∞ 4/255 and of Gaussian noise at matched L2 coincide), and it leans on the source images
 * having been JPEG-decoded (any pixel-level change breaks that smoothness); see docs/evaluation.md.
 */

import { WardenError } from '../core/errors';
import { BaseDetector, type DetectorState, type FeatureTable, type FeatureVector, type StateArray } from './detector';
import { fitTiedGaussian, gaussianFromState, mahalanobis2, type TiedGaussian } from './gaussian';

export interface NrdParams {
  layer: string;
  /** 'none': raw statistics; 'log': log(x + offset), more sensitive, also to re-quantisation (exposure changes). */
  transform: 'none' | 'log';
  offset: number;
}

export const NRD_DEFAULTS: NrdParams = { layer: 'residual_stats', transform: 'none', offset: 1e-3 };

export class NrdDetector extends BaseDetector {
  readonly name = 'nrd';
  readonly version = 1;
  /** Distance from the clean training data: the model's answer is unreliable far from it; not evidence of manipulation. */
  readonly signal = 'domain';
  private g?: TiedGaussian;
  private scratch = new Float64Array(0);
  private x = new Float64Array(0);

  constructor(params: Partial<NrdParams> = {}) {
    const p = { ...NRD_DEFAULTS, ...params };
    if (p.transform !== 'none' && p.transform !== 'log') throw new WardenError('USAGE', `Detector nrd: parameter transform must be none or log (got ${String(p.transform)}).`);
    if (!(p.offset > 0)) throw new WardenError('USAGE', 'Detector nrd: parameter offset must be positive.');
    super(p as unknown as Record<string, unknown>);
  }

  private get p(): NrdParams {
    return this.params as unknown as NrdParams;
  }

  private transform(v: ArrayLike<number>, out: Float64Array | Float32Array): void {
    const log = this.p.transform === 'log';
    for (let i = 0; i < out.length; i++) out[i] = log ? Math.log(Math.max(v[i], 0) + this.p.offset) : v[i];
  }

  protected fitImpl(train: FeatureTable): void {
    const m = train.layers[this.p.layer];
    const data = new Float32Array(m.data.length);
    if (this.p.transform === 'log') {
      for (let i = 0; i < data.length; i++) data[i] = Math.fround(Math.log(Math.max(m.data[i], 0) + this.p.offset));
    } else data.set(m.data);
    this.g = fitTiedGaussian({ dim: m.dim, data: this.p.transform === 'log' ? data : m.data }, null, 1);
    this.allocate(m.dim);
  }

  private allocate(dim: number): void {
    this.scratch = new Float64Array(dim);
    this.x = new Float64Array(dim);
  }

  protected scoreImpl(features: FeatureVector): number {
    this.transform(features[this.p.layer], this.x);
    return mahalanobis2(this.g as TiedGaussian, this.x, 0, this.scratch);
  }

  protected saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> } {
    const g = this.g as TiedGaussian;
    return { meta: { shrinkage: g.shrinkage }, arrays: { mean: g.means, precision: g.precision } };
  }

  static fromState(state: DetectorState): NrdDetector {
    const d = new NrdDetector(state.params as Partial<NrdParams>);
    d.restoreCommon(state);
    const dim = state.layers[d.p.layer];
    d.g = gaussianFromState(state, '', dim, 1);
    d.allocate(dim);
    return d;
  }
}
