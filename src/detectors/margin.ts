/**
 * MARGIN — how close the decision is to the boundary: the logit margin z_c − max_{j≠c} z_j of the predicted class c.
 * `low` scores −margin (minimal-norm attacks such as CW-L2 κ = 0 and DeepFool stop just past the boundary);
 * `two_sided` scores |log margin − μ| / σ with μ, σ of the clean training log-margins (near the boundary, or
 * over-confident as high-ε attacks make it). An adversarial-signal detector (a cheap companion of the others).
 * Reference: lab/detectors/adversarial.py (Margin).
 */

import { WardenError } from '../core/errors';
import { BaseDetector, type DetectorState, type FeatureTable, type FeatureVector, type StateArray } from './detector';
import { LOG_FLOOR, argmax, marginOf, meanSd } from './logits';

export interface MarginParams {
  mode: 'low' | 'two_sided';
}

export class MarginDetector extends BaseDetector {
  readonly name = 'margin';
  readonly version = 1;
  readonly signal = 'adversarial';
  private mu = 0;
  private sd = 1;

  constructor(params: Partial<MarginParams> = {}) {
    const p = { mode: 'low', ...params };
    if (p.mode !== 'low' && p.mode !== 'two_sided') throw new WardenError('USAGE', `Detector margin: parameter mode must be low or two_sided (got ${String(p.mode)}).`);
    super(p as unknown as Record<string, unknown>);
  }

  protected layersToFit(): string[] {
    return ['logits'];
  }

  protected fitImpl(train: FeatureTable): void {
    const k = train.numClasses;
    const z = train.layers.logits.data;
    const logs = new Float64Array(train.n);
    for (let i = 0; i < train.n; i++) {
      const row = z.subarray(i * k, (i + 1) * k);
      logs[i] = Math.log(Math.max(marginOf(row, argmax(row)), LOG_FLOOR));
    }
    ({ mean: this.mu, sd: this.sd } = meanSd(logs));
  }

  protected scoreImpl(f: FeatureVector): number {
    const m = marginOf(f.logits, argmax(f.logits));
    if ((this.params as unknown as MarginParams).mode === 'low') return -m;
    return Math.abs(Math.log(Math.max(m, LOG_FLOOR)) - this.mu) / this.sd;
  }

  protected saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> } {
    return { meta: { mu: this.mu, sd: this.sd }, arrays: {} };
  }

  static fromState(state: DetectorState): MarginDetector {
    const d = new MarginDetector(state.params as Partial<MarginParams>);
    d.restoreCommon(state);
    d.mu = Number(state.meta.mu);
    d.sd = Number(state.meta.sd);
    return d;
  }
}
