/**
 * ENERGY — the free energy of the logits, E = −logsumexp(z) (Liu et al., NeurIPS 2020). `high` scores E; `two_sided`
 * scores |E − μ| / σ against the clean training energies. An adversarial-signal companion detector.
 * Reference: lab/detectors/adversarial.py (Energy).
 */

import { WardenError } from '../core/errors';
import { BaseDetector, type DetectorState, type FeatureTable, type FeatureVector, type StateArray } from './detector';
import { logSumExpOf, meanSd } from './logits';

export interface EnergyParams {
  mode: 'high' | 'two_sided';
}

export class EnergyDetector extends BaseDetector {
  readonly name = 'energy';
  readonly version = 1;
  readonly signal = 'adversarial';
  private mu = 0;
  private sd = 1;

  constructor(params: Partial<EnergyParams> = {}) {
    const p = { mode: 'high', ...params };
    if (p.mode !== 'high' && p.mode !== 'two_sided') throw new WardenError('USAGE', `Detector energy: parameter mode must be high or two_sided (got ${String(p.mode)}).`);
    super(p as unknown as Record<string, unknown>);
  }

  protected layersToFit(): string[] {
    return ['logits'];
  }

  protected fitImpl(train: FeatureTable): void {
    const k = train.numClasses;
    const z = train.layers.logits.data;
    const e = new Float64Array(train.n);
    for (let i = 0; i < train.n; i++) e[i] = -logSumExpOf(z.subarray(i * k, (i + 1) * k));
    ({ mean: this.mu, sd: this.sd } = meanSd(e));
  }

  protected scoreImpl(f: FeatureVector): number {
    const e = -logSumExpOf(f.logits);
    return (this.params as unknown as EnergyParams).mode === 'high' ? e : Math.abs(e - this.mu) / this.sd;
  }

  protected saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> } {
    return { meta: { mu: this.mu, sd: this.sd }, arrays: {} };
  }

  static fromState(state: DetectorState): EnergyDetector {
    const d = new EnergyDetector(state.params as Partial<EnergyParams>);
    d.restoreCommon(state);
    d.mu = Number(state.meta.mu);
    d.sd = Number(state.meta.sd);
    return d;
  }
}
