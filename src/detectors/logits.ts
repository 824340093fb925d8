/** Small helpers on a logit vector, shared by the detectors that read the model's decision. */

const LOG_FLOOR = 1e-12;
export { LOG_FLOOR };

export function argmax(z: ArrayLike<number>): number {
  let c = 0;
  for (let i = 1; i < z.length; i++) if (z[i] > z[c]) c = i;
  return c;
}

/** z_c − max_{j ≠ c} z_j. */
export function marginOf(z: ArrayLike<number>, c: number): number {
  let other = -Infinity;
  for (let j = 0; j < z.length; j++) if (j !== c && z[j] > other) other = z[j];
  return z[c] - other;
}

/** Softmax into `out` (max-shifted, in double precision). */
export function softmaxInto(z: ArrayLike<number>, out: Float64Array): Float64Array {
  let m = -Infinity;
  for (let j = 0; j < z.length; j++) if (z[j] > m) m = z[j];
  let sum = 0;
  for (let j = 0; j < z.length; j++) { out[j] = Math.exp(z[j] - m); sum += out[j]; }
  for (let j = 0; j < z.length; j++) out[j] /= sum;
  return out;
}

export function logSumExpOf(z: ArrayLike<number>): number {
  let m = -Infinity;
  for (let j = 0; j < z.length; j++) if (z[j] > m) m = z[j];
  let sum = 0;
  for (let j = 0; j < z.length; j++) sum += Math.exp(z[j] - m);
  return m + Math.log(sum);
}

/** Mean and sample standard deviation (ddof 1, floored). */
export function meanSd(v: ArrayLike<number>): { mean: number; sd: number } {
  let mean = 0;
  for (let i = 0; i < v.length; i++) mean += v[i];
  mean /= v.length;
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += (v[i] - mean) ** 2;
  return { mean, sd: Math.max(Math.sqrt(ss / Math.max(1, v.length - 1)), LOG_FLOOR) };
}
