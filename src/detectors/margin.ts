/**
 * MARGIN — how close the decision is to the boundary: the logit margin z_c − max_{j≠c} z_j of the predicted class c.
 * `low` scores −margin (minimal-norm attacks such as CW-L2 κ = 0 and DeepFool stop just past the boundary);
 * `two_sided` scores |log margin − μ| / σ with μ, σ of the clean training log-margins (near the boundary, or
 * over-confident as high-ε attacks make it). An adversarial-signal detector (a cheap companion of the others).
 * Reference: lab/detectors/adversarial.py (Margin).
 */

import type { DetectorState } from './detector';
import { LogitStatisticDetector } from './logit-statistic';
import { LOG_FLOOR, argmax, marginOf } from './logits';

export interface MarginParams {
  mode: 'low' | 'two_sided';
}

export class MarginDetector extends LogitStatisticDetector {
  readonly name = 'margin';
  readonly version = 1;

  constructor(params: Partial<MarginParams> = {}) {
    super('margin', 'low', params);
  }

  protected statistic(z: Float32Array): number {
    return Math.log(Math.max(marginOf(z, argmax(z)), LOG_FLOOR));
  }

  protected oneSided(z: Float32Array): number {
    return -marginOf(z, argmax(z));
  }

  static fromState(state: DetectorState): MarginDetector {
    return new MarginDetector(state.params as Partial<MarginParams>).restoreStatistic(state);
  }
}
