/**
 * COHERENCE — decision coherence, in the spirit of NIC (Ma et al., NDSS 2019): an adversarial-signal detector.
 *
 * On clean images the model's layers agree with one another: a linear probe fitted on clean data predicts the logits
 * (or the next layer) from an earlier layer well. A perturbation that flips the decision late in the network leaves
 * the early layers telling the old story, so the probes disagree with what the model actually outputs. Per probe:
 * ridge regression (standardised inputs, centred targets) from the source layers to the target layers, fitted on
 * clean training features; the residual (actual − predicted) is scored by its squared Mahalanobis distance under the
 * clean covariance of *out-of-fold* residuals (k folds, so the covariance is not that of residuals the ridge has
 * seen); the log of that, standardised by its clean out-of-fold mean and sd. Probes are fused by max (or mean).
 * Reference: lab/detectors/adversarial.py (Coherence, Ridge).
 */

import { WardenError } from '../core/errors';
import { BaseDetector, numberParam, type DetectorState, type FeatureTable, type FeatureVector, type StateArray } from './detector';
import { fitTiedGaussian, gaussianFromState, mahalanobis2, type TiedGaussian } from './gaussian';
import { spdInverse } from './linalg';
import { LOG_FLOOR, meanSd } from './logits';

export interface CoherenceParams {
  /** Each probe: [source layers, target layers]; a target `logits` is the model's logits. */
  probes: [string[], string[]][];
  alpha: number;
  folds: number;
  fuse: 'max' | 'mean';
}

export const COHERENCE_DEFAULTS: CoherenceParams = {
  probes: [[['stage1_mean', 'stage1_std'], ['logits']], [['stage2_mean', 'stage2_std'], ['logits']], [['stage3_mean', 'stage3_std'], ['logits']]],
  alpha: 1.0,
  folds: 5,
  fuse: 'max',
};

/** Ridge regression on standardised inputs: W = (XsᵀXs + α·n·I)⁻¹ Xsᵀ (Y − Ȳ); prediction Xs W + Ȳ. */
interface Ridge { xMean: Float64Array; xScale: Float64Array; yMean: Float64Array; W: Float64Array; d: number; t: number }

function fitRidge(X: Float64Array, Y: Float64Array, rows: number[], d: number, t: number, alpha: number): Ridge {
  const n = rows.length;
  const xMean = new Float64Array(d);
  const xScale = new Float64Array(d);
  const yMean = new Float64Array(t);
  for (const i of rows) { for (let j = 0; j < d; j++) xMean[j] += X[i * d + j]; for (let k = 0; k < t; k++) yMean[k] += Y[i * t + k]; }
  for (let j = 0; j < d; j++) xMean[j] /= n;
  for (let k = 0; k < t; k++) yMean[k] /= n;
  for (const i of rows) for (let j = 0; j < d; j++) xScale[j] += (X[i * d + j] - xMean[j]) ** 2;
  for (let j = 0; j < d; j++) { const sd = Math.sqrt(xScale[j] / n); xScale[j] = sd > 0 ? sd : 1; }
  const A = new Float64Array(d * d);
  const B = new Float64Array(d * t);
  const xs = new Float64Array(d);
  for (const i of rows) {
    for (let j = 0; j < d; j++) xs[j] = (X[i * d + j] - xMean[j]) / xScale[j];
    for (let a = 0; a < d; a++) {
      const xa = xs[a];
      for (let b = 0; b <= a; b++) A[a * d + b] += xa * xs[b];
      for (let k = 0; k < t; k++) B[a * t + k] += xa * (Y[i * t + k] - yMean[k]);
    }
  }
  for (let a = 0; a < d; a++) { for (let b = 0; b < a; b++) A[b * d + a] = A[a * d + b]; A[a * d + a] += alpha * n; }
  const Ainv = spdInverse(A, d);
  const W = new Float64Array(d * t);
  for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) { const v = Ainv[a * d + b]; for (let k = 0; k < t; k++) W[a * t + k] += v * B[b * t + k]; }
  return { xMean, xScale, yMean, W, d, t };
}

function residualInto(r: Ridge, x: ArrayLike<number>, y: ArrayLike<number>, out: Float64Array): Float64Array {
  for (let k = 0; k < r.t; k++) out[k] = r.yMean[k];
  for (let j = 0; j < r.d; j++) {
    const xs = (x[j] - r.xMean[j]) / r.xScale[j];
    for (let k = 0; k < r.t; k++) out[k] += xs * r.W[j * r.t + k];
  }
  for (let k = 0; k < r.t; k++) out[k] = y[k] - out[k];
  return out;
}

interface Probe { ridge: Ridge; g: TiedGaussian; logMean: number; logSd: number }

export class CoherenceDetector extends BaseDetector {
  readonly name = 'coherence';
  readonly version = 1;
  readonly signal = 'adversarial';
  private probes: Probe[] = [];
  #x = new Float64Array(0);
  #y = new Float64Array(0);
  #r = new Float64Array(0);
  #scratch = new Float64Array(0);

  constructor(params: Partial<CoherenceParams> = {}) {
    const p = { ...COHERENCE_DEFAULTS, ...params };
    if (!Array.isArray(p.probes) || p.probes.length === 0 || p.probes.some((q) => !Array.isArray(q) || q.length !== 2 || !q[0].length || !q[1].length)) {
      throw new WardenError('USAGE', 'Detector coherence: parameter probes must be a non-empty list of [source layers, target layers].');
    }
    numberParam('alpha', 'coherence', p.alpha, 0, 1e6);
    numberParam('folds', 'coherence', p.folds, 2, 50, true);
    if (p.fuse !== 'max' && p.fuse !== 'mean') throw new WardenError('USAGE', `Detector coherence: parameter fuse must be max or mean (got ${String(p.fuse)}).`);
    super(p as unknown as Record<string, unknown>);
  }

  private get p(): CoherenceParams {
    return this.params as unknown as CoherenceParams;
  }

  protected layersToFit(): string[] {
    return [...new Set(this.p.probes.flatMap(([s, t]) => [...s, ...t]))].sort();
  }

  private width(names: string[]): number {
    return names.reduce((n, l) => n + this.layerDims[l], 0);
  }

  /** Concatenated layers of one instance into `out`. */
  private stack(f: FeatureVector, names: string[], out: Float64Array): Float64Array {
    let o = 0;
    for (const l of names) { const v = f[l]; for (let j = 0; j < v.length; j++) out[o++] = v[j]; }
    return out;
  }

  private tableStack(train: FeatureTable, names: string[]): Float64Array {
    const d = this.width(names);
    const out = new Float64Array(train.n * d);
    for (let i = 0; i < train.n; i++) {
      let o = i * d;
      for (const l of names) { const m = train.layers[l]; for (let j = 0; j < m.dim; j++) out[o++] = m.data[i * m.dim + j]; }
    }
    return out;
  }

  protected fitImpl(train: FeatureTable): void {
    const { alpha, folds } = this.p;
    const n = train.n;
    const all = Array.from({ length: n }, (_, i) => i);
    this.probes = this.p.probes.map(([src, tgt]) => {
      const d = this.width(src);
      const t = this.width(tgt);
      const X = this.tableStack(train, src);
      const Y = this.tableStack(train, tgt);
      const R = new Float64Array(n * t);
      const r = new Float64Array(t);
      for (let k = 0; k < folds; k++) {
        const fitRows = all.filter((i) => i % folds !== k);
        const ridge = fitRidge(X, Y, fitRows, d, t, alpha);
        for (let i = k; i < n; i += folds) R.set(residualInto(ridge, X.subarray(i * d, (i + 1) * d), Y.subarray(i * t, (i + 1) * t), r), i * t);
      }
      const g = fitTiedGaussian({ dim: t, data: R }, null, 1);
      const scratch = new Float64Array(t);
      const logs = new Float64Array(n);
      for (let i = 0; i < n; i++) logs[i] = Math.log(Math.max(mahalanobis2(g, R.subarray(i * t, (i + 1) * t), 0, scratch), LOG_FLOOR));
      const { mean, sd } = meanSd(logs);
      return { ridge: fitRidge(X, Y, all, d, t, alpha), g, logMean: mean, logSd: sd };
    });
    this.allocate();
  }

  private allocate(): void {
    const widest = Math.max(...this.p.probes.map(([s, t]) => Math.max(this.width(s), this.width(t))));
    this.#x = new Float64Array(widest);
    this.#y = new Float64Array(widest);
    this.#r = new Float64Array(widest);
    this.#scratch = new Float64Array(widest);
  }

  /** Each probe's standardised log-Mahalanobis residual score. */
  probeScores(f: FeatureVector): number[] {
    return this.p.probes.map(([src, tgt], i) => {
      const pr = this.probes[i];
      const x = this.stack(f, src, this.#x);
      const y = this.stack(f, tgt, this.#y);
      const r = residualInto(pr.ridge, x, y, this.#r).subarray(0, pr.ridge.t);
      const s = Math.log(Math.max(mahalanobis2(pr.g, r, 0, this.#scratch), LOG_FLOOR));
      return (s - pr.logMean) / pr.logSd;
    });
  }

  protected scoreImpl(f: FeatureVector): number {
    const z = this.probeScores(f);
    return this.p.fuse === 'max' ? Math.max(...z) : z.reduce((a, b) => a + b, 0) / z.length;
  }

  protected saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> } {
    const arrays: Record<string, StateArray> = {};
    const meta: Record<string, unknown> = { probes: this.probes.map((p) => ({ logMean: p.logMean, logSd: p.logSd, d: p.ridge.d, t: p.ridge.t })) };
    this.probes.forEach((p, i) => {
      arrays[`p${i}_x_mean`] = p.ridge.xMean;
      arrays[`p${i}_x_scale`] = p.ridge.xScale;
      arrays[`p${i}_y_mean`] = p.ridge.yMean;
      arrays[`p${i}_w`] = p.ridge.W;
      arrays[`p${i}_mean`] = p.g.means;
      arrays[`p${i}_precision`] = p.g.precision;
    });
    return { meta, arrays };
  }

  static fromState(state: DetectorState): CoherenceDetector {
    const d = new CoherenceDetector(state.params as Partial<CoherenceParams>);
    d.restoreCommon(state);
    const metas = state.meta.probes as { logMean: number; logSd: number; d: number; t: number }[] | undefined;
    if (!Array.isArray(metas) || metas.length !== d.p.probes.length) throw new WardenError('BUNDLE_INVALID', 'Detector coherence: the probe state does not match its parameters.');
    d.probes = metas.map((m, i) => {
      const get = (k: string, len: number): Float64Array => {
        const a = state.arrays[`p${i}_${k}`];
        if (!(a instanceof Float64Array) || a.length !== len) throw new WardenError('BUNDLE_INVALID', `Detector coherence: array p${i}_${k} is missing or has the wrong size.`);
        return a;
      };
      return {
        ridge: { xMean: get('x_mean', m.d), xScale: get('x_scale', m.d), yMean: get('y_mean', m.t), W: get('w', m.d * m.t), d: m.d, t: m.t },
        g: gaussianFromState(state, `p${i}_`, m.t, 1),
        logMean: m.logMean, logSd: m.logSd,
      };
    });
    d.allocate();
    return d;
  }
}
