/**
 * Gaussian feature models shared by MGM and UAD: class means (or one global mean) with one tied covariance,
 * Ledoit–Wolf shrunk, stored as its precision matrix so scoring is a quadratic form per class.
 */

import { WardenError } from '../core/errors';
import type { DetectorState } from './detector';
import { ledoitWolf, type LayerMatrix, quadForm, spdInverse } from './linalg';

export interface TiedGaussian {
  dim: number;
  /** Number of means (classes, or 1 for a global Gaussian). */
  k: number;
  /** k × dim means. */
  means: Float64Array;
  /** dim × dim precision (inverse shrunk covariance). */
  precision: Float64Array;
  shrinkage: number;
}

/**
 * Fits k means (labels in 0..k-1; `labels === null` → one global mean) and the Ledoit–Wolf covariance of the
 * residuals x − mean[label]. A class without rows keeps mean NaN and is ignored when scoring.
 */
export function fitTiedGaussian(m: { dim: number; data: ArrayLike<number> }, labels: Int32Array | null, k: number): TiedGaussian {
  const d = m.dim;
  const n = m.data.length / d;
  const means = new Float64Array(k * d);
  const counts = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    const c = labels ? labels[i] : 0;
    counts[c]++;
    for (let j = 0; j < d; j++) means[c * d + j] += m.data[i * d + j];
  }
  for (let c = 0; c < k; c++) for (let j = 0; j < d; j++) means[c * d + j] = counts[c] > 0 ? means[c * d + j] / counts[c] : NaN;
  const resid = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    const c = labels ? labels[i] : 0;
    for (let j = 0; j < d; j++) resid[i * d + j] = m.data[i * d + j] - means[c * d + j];
  }
  const { cov, shrinkage } = ledoitWolf(resid, n, d);
  // A constant feature (e.g. a dead ReLU channel) makes the covariance singular when shrinkage is 0.
  let trace = 0;
  for (let j = 0; j < d; j++) trace += cov[j * d + j];
  const ridge = Math.max(trace / d, 1e-12) * 1e-9;
  for (let j = 0; j < d; j++) cov[j * d + j] += ridge;
  let precision: Float64Array;
  try {
    precision = spdInverse(cov, d);
  } catch (err) {
    throw new WardenError('INTERNAL', `Could not invert the covariance of a ${d}-dimensional layer fitted on ${n} instances.`, { cause: err });
  }
  return { dim: d, k, means, precision, shrinkage };
}

/** Squared Mahalanobis distance to mean c. */
export function mahalanobis2(g: TiedGaussian, x: ArrayLike<number>, c: number, scratch: Float64Array): number {
  return quadForm(x, g.means, c * g.dim, g.precision, g.dim, scratch);
}

/** min over fitted means of the squared Mahalanobis distance (Lee et al. 2018's closest-class score). */
export function minMahalanobis2(g: TiedGaussian, x: ArrayLike<number>, scratch: Float64Array): number {
  let best = Infinity;
  for (let c = 0; c < g.k; c++) {
    if (Number.isNaN(g.means[c * g.dim])) continue;
    const q = quadForm(x, g.means, c * g.dim, g.precision, g.dim, scratch);
    if (q < best) best = q;
  }
  return best;
}

/** Rebuilds a TiedGaussian from `${prefix}mean` / `${prefix}precision` arrays, checking sizes. */
export function gaussianFromState(state: DetectorState, prefix: string, dim: number, k: number): TiedGaussian {
  const means = state.arrays[`${prefix}mean`];
  const precision = state.arrays[`${prefix}precision`];
  if (!(means instanceof Float64Array) || means.length !== k * dim || !(precision instanceof Float64Array) || precision.length !== dim * dim) {
    throw new WardenError('BUNDLE_INVALID', `Detector ${state.name}: Gaussian arrays '${prefix}mean'/'${prefix}precision' are missing or have the wrong size.`);
  }
  const shr = (state.meta.shrinkage as Record<string, number> | number | undefined);
  const shrinkage = typeof shr === 'number' ? shr : (shr?.[prefix] ?? 0);
  return { dim, k, means, precision, shrinkage };
}
