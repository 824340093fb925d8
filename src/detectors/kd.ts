/**
 * KD — kernel density (Feinman et al. 2017, "Detecting adversarial samples from artifacts").
 *
 * Gaussian kernel density of one feature layer (the penultimate) under the clean training features of the
 * instance's predicted class: log p̂_c(x) = logΣ_j exp(−‖x − x_j‖² / 2h²) − log n_c − (D/2)·log(2πh²),
 * identical to sklearn.neighbors.KernelDensity(kernel='gaussian').score_samples.
 * Score = −log p̂_c(x) (low density = suspicious).
 *
 * Bandwidth: one h for all classes, chosen on clean training data only, by leave-one-out log-likelihood over a
 * geometric grid around the median pairwise distance (never on attacks). Banks are subsampled per class to
 * `bankPerClass` rows (seeded) to bound memory and scoring time.
 */

import { WardenError } from '../core/errors';
import { BaseDetector, type DetectorState, type FeatureTable, type FeatureVector, numberParam, type StateArray } from './detector';
import { logSumExp, subsampleIndices } from './linalg';

export interface KdParams {
  layer: string;
  /** Fixed bandwidth; null = select by leave-one-out likelihood. */
  bandwidth: number | null;
  bankPerClass: number;
  /** Rows per class used for the bandwidth search (O(m²·D)). */
  selectionPerClass: number;
  /** Grid multipliers of the median pairwise distance. */
  grid: number[];
  seed: number;
  /** 'class' (default): p-values against calibration scores of the same predicted class, KD's scale is per class. */
  calibrateBy: 'marginal' | 'class';
}

export const KD_DEFAULTS: KdParams = {
  calibrateBy: 'class',
  layer: 'penultimate',
  bandwidth: null,
  bankPerClass: 1000,
  selectionPerClass: 800,
  grid: [0.05, 0.0707, 0.1, 0.1414, 0.2, 0.2828, 0.4, 0.5657, 0.8, 1.1314],
  seed: 1,
};

export class KdDetector extends BaseDetector {
  readonly name = 'kd';
  readonly version = 1;
  /** Distance from the clean training data: the model's answer is unreliable far from it; not evidence of manipulation. */
  readonly signal = 'domain';
  private layer: string;
  private h = 0;
  private dim = 0;
  /** Per class: bank rows (float32, n_c × D) and the per-class constant −log n_c − (D/2)·log(2πh²). */
  private banks: Float32Array[] = [];
  private consts: number[] = [];
  private bankIndices: Int32Array[] = [];
  private selection: { grid: number[]; loglik: number[]; median: number } | null = null;
  private scratch = new Float64Array(0);

  constructor(params: Partial<KdParams> = {}) {
    const p = { ...KD_DEFAULTS, ...params };
    super(p as unknown as Record<string, unknown>);
    if (typeof p.layer !== 'string') throw new WardenError('USAGE', 'Detector kd: parameter layer must be a layer name.');
    if (p.bandwidth !== null) numberParam('bandwidth', 'kd', p.bandwidth, 1e-12, 1e12);
    numberParam('bankPerClass', 'kd', p.bankPerClass, 2, 1e7, true);
    numberParam('selectionPerClass', 'kd', p.selectionPerClass, 2, 1e5, true);
    this.layer = p.layer;
  }

  get bandwidth(): number {
    return this.h;
  }

  get bankRowIndices(): Int32Array[] {
    return this.bankIndices;
  }

  protected fitImpl(train: FeatureTable): void {
    const p = this.params as unknown as KdParams;
    const m = train.layers[this.layer];
    const D = m.dim;
    this.dim = D;
    const byClass: number[][] = Array.from({ length: train.numClasses }, () => []);
    for (let i = 0; i < train.n; i++) byClass[train.predicted[i]]?.push(i);
    // bandwidth
    if (p.bandwidth !== null) {
      this.h = p.bandwidth;
      this.selection = null;
    } else {
      const sel = byClass.map((rows, c) => {
        const pick = subsampleIndices(rows.length, p.selectionPerClass, p.seed + 1000 + c);
        return Array.from(pick, (k) => rows[k]);
      });
      const { best, loglik, median } = selectBandwidth(m.data, D, sel, p.grid);
      this.h = best;
      this.selection = { grid: p.grid, loglik, median };
    }
    // banks
    this.banks = [];
    this.bankIndices = [];
    this.consts = [];
    for (let c = 0; c < train.numClasses; c++) {
      const rows = byClass[c];
      const pick = subsampleIndices(rows.length, p.bankPerClass, p.seed + c);
      const idx = Int32Array.from(pick, (k) => rows[k]);
      const bank = new Float32Array(idx.length * D);
      for (let r = 0; r < idx.length; r++) bank.set(m.data.subarray(idx[r] * D, idx[r] * D + D), r * D);
      this.banks.push(bank);
      this.bankIndices.push(idx);
    }
    this.computeConsts();
  }

  private computeConsts(): void {
    const D = this.dim;
    this.consts = this.banks.map((b) => {
      const n = b.length / D;
      return n === 0 ? NaN : -Math.log(n) - (D / 2) * Math.log(2 * Math.PI * this.h * this.h);
    });
    let maxN = 0;
    for (const b of this.banks) maxN = Math.max(maxN, b.length / D);
    this.scratch = new Float64Array(maxN);
  }

  /** log density of x under class c's KDE. */
  logDensity(x: Float32Array, c: number): number {
    const bank = this.banks[c];
    const D = this.dim;
    if (!bank || bank.length === 0) return -Infinity;
    const n = bank.length / D;
    const inv = -1 / (2 * this.h * this.h);
    const e = this.scratch;
    for (let j = 0; j < n; j++) {
      let s = 0;
      const off = j * D;
      for (let k = 0; k < D; k++) {
        const t = x[k] - bank[off + k];
        s += t * t;
      }
      e[j] = s * inv;
    }
    return logSumExp(e, n) + this.consts[c];
  }

  protected scoreImpl(features: FeatureVector, predictedClass: number): number {
    if (!(predictedClass >= 0 && predictedClass < this.banks.length)) {
      throw new WardenError('FEATURE_SHAPE_MISMATCH', `Detector kd: predicted class ${predictedClass} is outside the ${this.banks.length} fitted classes.`);
    }
    return -this.logDensity(features[this.layer], predictedClass);
  }

  protected saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> } {
    const arrays: Record<string, StateArray> = {};
    this.banks.forEach((b, c) => {
      arrays[`bank_${c}`] = b;
      arrays[`bank_index_${c}`] = this.bankIndices[c];
    });
    return { meta: { bandwidth: this.h, classes: this.banks.length, selection: this.selection }, arrays };
  }

  static fromState(state: DetectorState): KdDetector {
    const d = new KdDetector(state.params as Partial<KdParams>);
    d.restoreCommon(state);
    const meta = state.meta as { bandwidth: number; classes: number };
    d.h = meta.bandwidth;
    d.dim = state.layers[d.layer];
    d.banks = [];
    d.bankIndices = [];
    for (let c = 0; c < meta.classes; c++) {
      const b = state.arrays[`bank_${c}`];
      if (!(b instanceof Float32Array) || b.length % d.dim !== 0) {
        throw new WardenError('BUNDLE_INVALID', `Detector kd: bank for class ${c} is missing or has the wrong size.`);
      }
      d.banks.push(b);
      const idx = state.arrays[`bank_index_${c}`];
      d.bankIndices.push(idx instanceof Int32Array ? idx : new Int32Array(0));
    }
    d.selection = (state.meta.selection as KdDetector['selection']) ?? null;
    d.computeConsts();
    return d;
  }
}

/**
 * Leave-one-out log-likelihood of each candidate bandwidth (grid × median pairwise distance), summed over
 * the per-class selection sets; returns the best. Pairwise squared distances are computed once per class.
 */
export function selectBandwidth(data: Float32Array, D: number, rowsPerClass: number[][], grid: number[]): { best: number; loglik: number[]; median: number } {
  const d2s: Float64Array[] = [];
  const all: number[] = [];
  for (const rows of rowsPerClass) {
    const n = rows.length;
    const d2 = new Float64Array(n * n);
    for (let a = 0; a < n; a++) {
      const oa = rows[a] * D;
      for (let b = a + 1; b < n; b++) {
        const ob = rows[b] * D;
        let s = 0;
        for (let k = 0; k < D; k++) {
          const t = data[oa + k] - data[ob + k];
          s += t * t;
        }
        d2[a * n + b] = s;
        d2[b * n + a] = s;
        all.push(s);
      }
    }
    d2s.push(d2);
  }
  if (all.length === 0) throw new WardenError('USAGE', 'Detector kd: bandwidth selection needs at least two instances of one class.');
  all.sort((x, y) => x - y);
  const median = Math.sqrt(all[Math.floor((all.length - 1) / 2)]);
  const loglik: number[] = [];
  for (const g of grid) {
    const h = g * median;
    const inv = -1 / (2 * h * h);
    let total = 0;
    let count = 0;
    rowsPerClass.forEach((rows, c) => {
      const n = rows.length;
      if (n < 2) return;
      const d2 = d2s[c];
      const e = new Float64Array(n - 1);
      const cst = -Math.log(n - 1) - (D / 2) * Math.log(2 * Math.PI * h * h);
      for (let a = 0; a < n; a++) {
        let k = 0;
        for (let b = 0; b < n; b++) if (b !== a) e[k++] = d2[a * n + b] * inv;
        total += logSumExp(e, n - 1) + cst;
        count++;
      }
    });
    loglik.push(total / count);
  }
  let bi = 0;
  for (let i = 1; i < grid.length; i++) if (loglik[i] > loglik[bi]) bi = i;
  return { best: grid[bi] * median, loglik, median };
}
