import { WardenError } from '../core/errors';
import { BaseDetector, type DetectorState, type FeatureTable, type FeatureVector, type StateArray } from './detector';
import { meanSd } from './logits';

/**
 * A detector on one statistic of the logits (margin, energy): a one-sided mode scores the statistic's suspicious
 * direction as is; `two_sided` scores |statistic − μ| / σ with μ, σ of the clean training instances. State: meta
 * { mu, sd } (what both detectors saved before this base existed, so bundles load unchanged).
 */
export abstract class LogitStatisticDetector extends BaseDetector {
  readonly signal = 'adversarial';
  private mu = 0;
  private sd = 1;

  /** @param oneSided the name of the detector's one-sided mode (the default) */
  constructor(name: string, oneSided: string, params: { mode?: string }) {
    const p = { mode: oneSided, ...params };
    if (p.mode !== oneSided && p.mode !== 'two_sided') throw new WardenError('USAGE', `Detector ${name}: parameter mode must be ${oneSided} or two_sided (got ${String(p.mode)}).`);
    super(p as Record<string, unknown>);
  }

  /** The statistic whose clean mean and spread the two-sided mode uses. */
  protected abstract statistic(logits: Float32Array): number;
  /** The one-sided score (higher = more suspicious). */
  protected abstract oneSided(logits: Float32Array): number;

  protected layersToFit(): string[] {
    return ['logits'];
  }

  protected fitImpl(train: FeatureTable): void {
    const k = train.numClasses;
    const z = train.layers.logits.data;
    const s = new Float64Array(train.n);
    for (let i = 0; i < train.n; i++) s[i] = this.statistic(z.subarray(i * k, (i + 1) * k));
    ({ mean: this.mu, sd: this.sd } = meanSd(s));
  }

  protected scoreImpl(f: FeatureVector): number {
    return this.params.mode === 'two_sided' ? Math.abs(this.statistic(f.logits) - this.mu) / this.sd : this.oneSided(f.logits);
  }

  protected saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> } {
    return { meta: { mu: this.mu, sd: this.sd }, arrays: {} };
  }

  protected restoreStatistic(state: DetectorState): this {
    this.restoreCommon(state);
    this.mu = Number(state.meta.mu);
    this.sd = Number(state.meta.sd);
    return this;
  }
}
