/**
 * LID — local intrinsic dimensionality (Ma et al. 2018), with a fixed clean reference bank.
 *
 * For each layer, the MLE estimate from the k nearest bank neighbours (Euclidean, float64):
 *   LID(x) = −( (1/k) Σ_{i≤k} log(r_i / r_k) )⁻¹.
 * The original estimates against a clean minibatch at test time; a gateway keeps a fixed bank instead (a seeded
 * subsample of the clean training features). The per-layer vector of log-LIDs becomes one unsupervised score:
 * its squared Mahalanobis distance under a Ledoit–Wolf Gaussian fitted on the leave-one-out log-LID vectors of
 * the bank's own members (each bank row's neighbours exclude itself).
 */

import { WardenError } from '../core/errors';
import { BaseDetector, type DetectorState, type FeatureTable, type FeatureVector, numberParam, type StateArray } from './detector';
import { fitTiedGaussian, gaussianFromState, mahalanobis2, type TiedGaussian } from './gaussian';
import { subsampleIndices } from './linalg';

export interface LidParams {
  /** Layer names, or 'all' for every layer of the training features. */
  layers: string[] | 'all';
  k: number;
  bankSize: number;
  seed: number;
}

export const LID_DEFAULTS: LidParams = { layers: 'all', k: 20, bankSize: 1000, seed: 2 };

/** Distances below this are treated as equal to it, so duplicate images do not give log(0). */
export const LID_MIN_DISTANCE = 1e-12;

export class LidDetector extends BaseDetector {
  readonly name = 'lid';
  readonly version = 1;
  /** Distance from the clean training data: the model's answer is unreliable far from it; not evidence of manipulation. */
  readonly signal = 'domain';
  private banks: Float32Array[] = [];
  private bankIndex: Int32Array = new Int32Array(0);
  private g?: TiedGaussian;
  private scratch = new Float64Array(0);
  private knn = new Float64Array(0);
  private lidVec = new Float64Array(0);

  constructor(params: Partial<LidParams> = {}) {
    const p = { ...LID_DEFAULTS, ...params };
    numberParam('k', 'lid', p.k, 2, 10000, true);
    numberParam('bankSize', 'lid', p.bankSize, 3, 1e7, true);
    super(p as unknown as Record<string, unknown>);
  }

  get bankRowIndices(): Int32Array {
    return this.bankIndex;
  }

  private get k(): number {
    return (this.params as unknown as LidParams).k;
  }

  protected fitImpl(train: FeatureTable): void {
    const p = this.params as unknown as LidParams;
    const layers = this.requiredLayers;
    this.bankIndex = subsampleIndices(train.n, p.bankSize, p.seed);
    const nb = this.bankIndex.length;
    if (nb <= p.k) throw new WardenError('USAGE', `Detector lid: the bank has ${nb} rows, it needs more than k = ${p.k}.`);
    this.banks = layers.map((l) => {
      const m = train.layers[l];
      const b = new Float32Array(nb * m.dim);
      for (let r = 0; r < nb; r++) b.set(m.data.subarray(this.bankIndex[r] * m.dim, (this.bankIndex[r] + 1) * m.dim), r * m.dim);
      return b;
    });
    this.allocate();
    // leave-one-out log-LID vectors of the bank members
    const L = layers.length;
    const vecs = new Float32Array(nb * L);
    for (let r = 0; r < nb; r++) {
      for (let li = 0; li < L; li++) {
        const dim = this.layerDims[layers[li]];
        const x = this.banks[li].subarray(r * dim, (r + 1) * dim);
        vecs[r * L + li] = Math.log(this.lidOf(li, x, r));
      }
    }
    this.g = fitTiedGaussian({ dim: L, data: vecs }, null, 1);
  }

  private allocate(): void {
    this.scratch = new Float64Array(this.requiredLayers.length);
    this.knn = new Float64Array(this.k);
    this.lidVec = new Float64Array(this.requiredLayers.length);
  }

  /** MLE LID of x against bank layer li, skipping bank row `exclude` (−1 = none). */
  lidOf(li: number, x: ArrayLike<number>, exclude = -1): number {
    const dim = this.layerDims[this.requiredLayers[li]];
    const bank = this.banks[li];
    const nb = bank.length / dim;
    const k = this.k;
    const best = this.knn; // ascending squared distances, length k
    best.fill(Infinity);
    let worst = Infinity;
    for (let j = 0; j < nb; j++) {
      if (j === exclude) continue;
      const off = j * dim;
      let s = 0;
      for (let t = 0; t < dim; t++) {
        const u = x[t] - bank[off + t];
        s += u * u;
        if (s >= worst) break; // cannot enter the k nearest
      }
      if (s >= worst) continue;
      // insert into sorted list
      let pos = k - 1;
      while (pos > 0 && best[pos - 1] > s) {
        best[pos] = best[pos - 1];
        pos--;
      }
      best[pos] = s;
      worst = best[k - 1];
    }
    const rk = Math.max(Math.sqrt(best[k - 1]), LID_MIN_DISTANCE);
    let sum = 0;
    for (let i = 0; i < k; i++) sum += Math.log(Math.max(Math.sqrt(best[i]), LID_MIN_DISTANCE) / rk);
    const mean = sum / k;
    return mean < 0 ? -1 / mean : 1 / LID_MIN_DISTANCE;
  }

  /** Per-layer LID values (not logged) of one instance. */
  lidVector(features: FeatureVector): Float64Array {
    this.assertFitted();
    this.checkFeatures(features);
    const layers = this.requiredLayers;
    const out = new Float64Array(layers.length);
    for (let li = 0; li < layers.length; li++) out[li] = this.lidOf(li, features[layers[li]]);
    return out;
  }

  protected scoreImpl(features: FeatureVector): number {
    const layers = this.requiredLayers;
    for (let li = 0; li < layers.length; li++) this.lidVec[li] = Math.log(this.lidOf(li, features[layers[li]]));
    return mahalanobis2(this.g as TiedGaussian, this.lidVec, 0, this.scratch);
  }

  protected saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> } {
    const g = this.g as TiedGaussian;
    const arrays: Record<string, StateArray> = { mean: g.means, precision: g.precision, bank_index: this.bankIndex };
    this.requiredLayers.forEach((l, i) => {
      arrays[`bank:${l}`] = this.banks[i];
    });
    return { meta: { shrinkage: g.shrinkage, layerOrder: this.requiredLayers }, arrays };
  }

  static fromState(state: DetectorState): LidDetector {
    const d = new LidDetector(state.params as Partial<LidParams>);
    d.restoreCommon(state);
    const order = state.meta.layerOrder as string[];
    if (!Array.isArray(order)) throw new WardenError('BUNDLE_INVALID', 'Detector lid: layerOrder is missing.');
    d.layerDims = Object.fromEntries(order.map((l) => [l, state.layers[l]]));
    d.banks = order.map((l) => {
      const b = state.arrays[`bank:${l}`];
      if (!(b instanceof Float32Array) || b.length % state.layers[l] !== 0) throw new WardenError('BUNDLE_INVALID', `Detector lid: bank for layer '${l}' is missing or has the wrong size.`);
      return b;
    });
    const bi = state.arrays.bank_index;
    d.bankIndex = bi instanceof Int32Array ? bi : new Int32Array(0);
    d.g = gaussianFromState(state, '', order.length, 1);
    d.allocate();
    return d;
  }
}
