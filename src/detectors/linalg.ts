/**
 * Small dense linear algebra on typed arrays, float64 throughout (inputs may be float32).
 * Performance notes: everything a detector needs per instance is precomputed at fit/load time
 * (means, precision matrices); the hot path is only a few D×D quadratic forms and one pass over a bank.
 */

import { WardenError } from '../core/errors';
import { mulberry32 } from '../core/random';

/** Row-major n × dim matrix of float32 features (one row per instance). */
export interface LayerMatrix {
  dim: number;
  data: Float32Array;
}

/** Column means of an n × d row-major matrix, optionally restricted to some rows. */
export function columnMeans(m: LayerMatrix, rows?: ArrayLike<number>): Float64Array {
  const d = m.dim;
  const out = new Float64Array(d);
  const n = rows ? rows.length : m.data.length / d;
  for (let r = 0; r < n; r++) {
    const i = rows ? rows[r] : r;
    const off = i * d;
    for (let j = 0; j < d; j++) out[j] += m.data[off + j];
  }
  for (let j = 0; j < d; j++) out[j] /= n;
  return out;
}

/**
 * Ledoit–Wolf shrunk covariance of already-centred data `x` (n × d, float64), exactly the estimator of
 * sklearn.covariance.ledoit_wolf with assume_centered=True: (1 − s)·S + s·μ·I with S = XᵀX / n,
 * μ = tr(S)/d and s the Ledoit–Wolf optimal shrinkage.
 */
export function ledoitWolf(x: Float64Array, n: number, d: number): { cov: Float64Array; shrinkage: number } {
  const S = new Float64Array(d * d);
  const S2 = new Float64Array(d * d); // (X²)ᵀ X²
  for (let r = 0; r < n; r++) {
    const off = r * d;
    for (let a = 0; a < d; a++) {
      const xa = x[off + a];
      if (xa === 0) continue;
      const xa2 = xa * xa;
      const rowA = a * d;
      for (let b = a; b < d; b++) {
        const xb = x[off + b];
        S[rowA + b] += xa * xb;
        S2[rowA + b] += xa2 * xb * xb;
      }
    }
  }
  for (let a = 0; a < d; a++) {
    for (let b = a + 1; b < d; b++) {
      S[b * d + a] = S[a * d + b];
      S2[b * d + a] = S2[a * d + b];
    }
  }
  let trace = 0;
  for (let a = 0; a < d; a++) trace += S[a * d + a] / n;
  const mu = trace / d;
  if (d === 1) {
    const cov = new Float64Array(1);
    cov[0] = S[0] / n;
    return { cov, shrinkage: 0 };
  }
  let delta_ = 0;
  let beta_ = 0;
  for (let i = 0; i < d * d; i++) {
    delta_ += S[i] * S[i];
    beta_ += S2[i];
  }
  delta_ /= n * n;
  let beta = (1 / (d * n)) * (beta_ / n - delta_);
  let delta = delta_ - 2 * mu * trace + d * mu * mu;
  delta /= d;
  beta = Math.min(beta, delta);
  const shrinkage = beta === 0 ? 0 : beta / delta;
  const cov = new Float64Array(d * d);
  for (let a = 0; a < d; a++) {
    for (let b = 0; b < d; b++) cov[a * d + b] = (1 - shrinkage) * (S[a * d + b] / n);
    cov[a * d + a] += shrinkage * mu;
  }
  return { cov, shrinkage };
}

/** In-place Cholesky factor L (lower, row-major) of a symmetric positive-definite matrix. */
export function cholesky(a: Float64Array, d: number): Float64Array {
  const L = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * d + j];
      for (let k = 0; k < j; k++) s -= L[i * d + k] * L[j * d + k];
      if (i === j) {
        if (!(s > 0)) {
          throw new WardenError('INTERNAL', `Covariance matrix is not positive definite (pivot ${i} = ${s}); add more clean samples or shrinkage.`);
        }
        L[i * d + i] = Math.sqrt(s);
      } else {
        L[i * d + j] = s / L[j * d + j];
      }
    }
  }
  return L;
}

/** Inverse of a symmetric positive-definite matrix through its Cholesky factor. */
export function spdInverse(a: Float64Array, d: number): Float64Array {
  const L = cholesky(a, d);
  // Linv: inverse of lower-triangular L
  const Li = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    Li[i * d + i] = 1 / L[i * d + i];
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= L[i * d + k] * Li[k * d + j];
      Li[i * d + j] = s / L[i * d + i];
    }
  }
  // A⁻¹ = Liᵀ Li
  const inv = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < d; k++) s += Li[k * d + i] * Li[k * d + j];
      inv[i * d + j] = s;
      inv[j * d + i] = s;
    }
  }
  return inv;
}

/** (x − μ)ᵀ P (x − μ), with a scratch vector to avoid allocation on the hot path. */
export function quadForm(x: ArrayLike<number>, mu: Float64Array, muOffset: number, P: Float64Array, d: number, scratch: Float64Array): number {
  for (let j = 0; j < d; j++) scratch[j] = x[j] - mu[muOffset + j];
  let q = 0;
  for (let a = 0; a < d; a++) {
    const row = a * d;
    let s = 0;
    for (let b = 0; b < d; b++) s += P[row + b] * scratch[b];
    q += scratch[a] * s;
  }
  return q;
}

export { mulberry32 };

/**
 * Up to `k` of the indices 0..n-1, chosen without replacement by a seeded partial Fisher–Yates shuffle, then
 * sorted ascending. When k ≥ n all indices are returned. The lab's reference reads the chosen indices from the
 * bundle rather than re-implementing the PRNG.
 */
export function subsampleIndices(n: number, k: number, seed: number): Int32Array {
  if (k >= n) return Int32Array.from({ length: n }, (_, i) => i);
  const idx = Int32Array.from({ length: n }, (_, i) => i);
  const rnd = mulberry32(seed);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rnd() * (n - i));
    const t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  return idx.slice(0, k).sort();
}

/** log(Σ exp(v_i)) over the first n entries, stable. */
export function logSumExp(v: Float64Array, n: number): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (v[i] > m) m = v[i];
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(v[i] - m);
  return m + Math.log(s);
}

/**
 * erfc(x) to about 1e-15 relative: Taylor series of erf for |x| < 2, Lentz continued fraction beyond
 * (Math has no erfc; the Python reference uses scipy.special.erfc).
 */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < 0) return 2 - erfc(-x);
  if (x < 2) {
    // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
    let term = x;
    let sum = x;
    const x2 = x * x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (x > 27) return 0;
  // erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …)))))
  const tiny = 1e-300;
  let f = x;
  let C = x;
  let D = 0;
  for (let n = 1; n < 500; n++) {
    const a = n / 2;
    D = x + a * D;
    D = Math.abs(D) < tiny ? tiny : D;
    C = x + a / C;
    C = Math.abs(C) < tiny ? tiny : C;
    D = 1 / D;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** Upper tail of the standard normal, P[Z > z]. */
export function normalSf(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}
