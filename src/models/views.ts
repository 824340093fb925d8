import { WardenError } from '../core/errors';
import type { ModelManifest } from './manifest';

/**
 * Views: deterministic transforms of the model's input image (feature squeezers, Xu, Evans & Qi 2018), run in the
 * same batch as the image itself so that detectors can compare the model's answers on both. Each acts per channel on
 * the windowed image in its [0, 1] value space (the tensor is de-normalised with the manifest's scale/mean/std first
 * and normalised again after), so a view means the same for every model. The definitions are fixed and mirrored
 * bit for bit by the lab (lab/detectors/views.py; golden vectors in test/fixtures/detectors):
 *
 * - `bits<b>` (b = 1…7): y = floor(x·(2^b − 1) + 0.5) / (2^b − 1)
 * - `median2`: median of the 2×2 block x[i..i+1, j..j+1] (the last row/column repeats at the far edge); the median
 *   of 4 values is the mean of the two middle ones
 * - `median3` / `median5`: median of the 3×3 / 5×5 block around (i, j), indices clamped to the image
 * - `blur`: 3×3 binomial low-pass [1,2,1]ᵀ[1,2,1]/16, indices clamped to the image
 *
 * Feature naming: a view's outputs are `<view>/<output>` (e.g. `median2/logits`).
 */

export type ViewFn = (plane: Float32Array, height: number, width: number) => Float32Array;

const BITS_RE = /^bits([1-7])$/;

function bits(b: number): ViewFn {
  const levels = 2 ** b - 1;
  return (x) => {
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) y[i] = Math.floor(x[i] * levels + 0.5) / levels;
    return y;
  };
}

const median2: ViewFn = (x, h, w) => {
  // The two middle values of four are max(min(a, b), min(c, d)) and min(max(a, b), max(c, d)): no TypedArray.sort
  // per pixel (that dominated a scan's cost) and no data-dependent branches; adding them is the same double operation
  // as on the sorted block, so the bits do not change.
  const y = new Float32Array(x.length);
  for (let i = 0; i < h; i++) {
    const r0 = i * w;
    const r1 = Math.min(i + 1, h - 1) * w;
    for (let j = 0; j < w; j++) {
      const j1 = Math.min(j + 1, w - 1);
      const a = x[r0 + j], b = x[r0 + j1], c = x[r1 + j], d = x[r1 + j1];
      y[r0 + j] = (Math.max(Math.min(a, b), Math.min(c, d)) + Math.min(Math.max(a, b), Math.max(c, d))) / 2;
    }
  }
  return y;
};

function medianOdd(radius: number): ViewFn {
  const size = (2 * radius + 1) ** 2;
  return (x, h, w) => {
    const y = new Float32Array(x.length);
    const v = new Float64Array(size);
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        let k = 0;
        for (let di = -radius; di <= radius; di++) {
          const r = Math.min(Math.max(i + di, 0), h - 1) * w;
          for (let dj = -radius; dj <= radius; dj++) v[k++] = x[r + Math.min(Math.max(j + dj, 0), w - 1)];
        }
        v.sort();
        y[i * w + j] = v[(size - 1) / 2];
      }
    }
    return y;
  };
}

const KERNEL = [1, 2, 1];
const blur: ViewFn = (x, h, w) => {
  const y = new Float32Array(x.length);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      let s = 0;
      for (let di = -1; di <= 1; di++) {
        const r = Math.min(Math.max(i + di, 0), h - 1) * w;
        for (let dj = -1; dj <= 1; dj++) s += KERNEL[di + 1] * KERNEL[dj + 1] * x[r + Math.min(Math.max(j + dj, 0), w - 1)];
      }
      y[i * w + j] = s / 16;
    }
  }
  return y;
};

const NAMED: Record<string, ViewFn> = { median2, median3: medianOdd(1), median5: medianOdd(2), blur };

/** The view function of a name. @throws USAGE for an unknown view */
export function viewFunction(name: string): ViewFn {
  const m = BITS_RE.exec(name);
  if (m) return bits(Number(m[1]));
  const f = NAMED[name];
  if (!f) throw new WardenError('USAGE', `Unknown view '${name}'; known: bits1…bits7, ${Object.keys(NAMED).join(', ')}.`);
  return f;
}

export function isViewName(name: string): boolean {
  return BITS_RE.test(name) || name in NAMED;
}

/** The views a set of feature names asks for (`<view>/<output>`), in a stable order. @throws USAGE for an unknown view */
export function viewsOf(featureNames: Iterable<string>): string[] {
  const views = new Set<string>();
  for (const f of featureNames) {
    const slash = f.indexOf('/');
    if (slash > 0) {
      const v = f.slice(0, slash);
      viewFunction(v);
      views.add(v);
    }
  }
  return [...views].sort();
}

/**
 * One NCHW batch: the image (N = 1 tensor) followed by each view of it. Views act on the de-normalised [0, 1] planes.
 */
export function batchWithViews(tensor: Float32Array, shape: number[], views: string[], manifest: ModelManifest): { tensor: Float32Array; shape: number[] } {
  if (views.length === 0) return { tensor, shape };
  const [, c, h, w] = shape;
  const plane = h * w;
  const { scale: [lo, hi], mean, std } = manifest.preprocess;
  const out = new Float32Array(tensor.length * (views.length + 1));
  out.set(tensor, 0);
  const fns = views.map(viewFunction);
  for (let ch = 0; ch < c; ch++) {
    const m = mean.length === 1 ? mean[0] : mean[ch];
    const s = std.length === 1 ? std[0] : std[ch];
    const x = new Float32Array(plane);
    const src = tensor.subarray(ch * plane, (ch + 1) * plane);
    for (let i = 0; i < plane; i++) x[i] = (src[i] * s + m - lo) / (hi - lo);
    fns.forEach((fn, v) => {
      const y = fn(x, h, w);
      const dst = out.subarray((v + 1) * tensor.length + ch * plane, (v + 1) * tensor.length + (ch + 1) * plane);
      for (let i = 0; i < plane; i++) dst[i] = (lo + y[i] * (hi - lo) - m) / s;
    });
  }
  return { tensor: out, shape: [views.length + 1, c, h, w] };
}
