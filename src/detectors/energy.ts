/**
 * ENERGY — the free energy of the logits, E = −logsumexp(z) (Liu et al., NeurIPS 2020). `high` scores E; `two_sided`
 * scores |E − μ| / σ against the clean training energies. An adversarial-signal companion detector.
 * Reference: lab/detectors/adversarial.py (Energy).
 */

import type { DetectorState } from './detector';
import { LogitStatisticDetector } from './logit-statistic';
import { logSumExpOf } from './logits';

export interface EnergyParams {
  mode: 'high' | 'two_sided';
}

export class EnergyDetector extends LogitStatisticDetector {
  readonly name = 'energy';
  readonly version = 1;

  constructor(params: Partial<EnergyParams> = {}) {
    super('energy', 'high', params);
  }

  protected statistic(z: Float32Array): number {
    return -logSumExpOf(z);
  }

  protected oneSided(z: Float32Array): number {
    return -logSumExpOf(z);
  }

  static fromState(state: DetectorState): EnergyDetector {
    return new EnergyDetector(state.params as Partial<EnergyParams>).restoreStatistic(state);
  }
}
