import type { DecodedInstance, ModelInput } from '../core/types';
import { WardenError } from '../core/errors';
import type { ModelManifest } from './manifest';

/**
 * preprocess: modality values → the model's NCHW float32 tensor, exactly as the manifest says
 * (docs/model-manifest.md). Pure and deterministic. Arithmetic after windowing is rounded to float32 at
 * every step (Math.fround) so the result equals what a float32 torch pipeline computes; in particular an
 * 8-bit unsigned MONOCHROME2 frame at the input size becomes exactly float32(u8) / 255.
 */

export type FrameChoice = 'first' | 'middle';
export type WindowRule = ModelManifest['preprocess']['window'];

export interface PreprocessOptions {
  /** Which frame of a multi-frame instance is scanned. Default 'first'. */
  frame?: FrameChoice;
  /**
   * The caller gives the decoded frame up: windowing writes into it instead of a new array, one frame-size
   * allocation less per scan (16 MiB for a 2048² frame). The frame's modality values are gone afterwards.
   */
  consumeFrame?: boolean;
}

export interface PreprocessResult extends ModelInput {
  /** Index of the frame that was scanned. */
  frameIndex: number;
  /** The window rule actually applied (after 'auto' and fallbacks). */
  window: Exclude<WindowRule, 'auto'>;
}

export function selectFrame(numberOfFrames: number, choice: FrameChoice = 'first'): number {
  if (numberOfFrames <= 1) return 0;
  return choice === 'middle' ? Math.floor((numberOfFrames - 1) / 2) : 0;
}

export function preprocess(instance: DecodedInstance, manifest: ModelManifest, options: PreprocessOptions = {}): PreprocessResult {
  const { rows, columns, samplesPerPixel: spp } = instance;
  const frameIndex = selectFrame(instance.frames.length, options.frame);
  const frame = instance.frames[frameIndex];
  const pixels = rows * columns;
  if (!frame || frame.length !== pixels * spp || pixels === 0) {
    throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `Frame ${frameIndex} has ${frame ? frame.length : 0} samples, expected ${pixels * spp}.`);
  }
  const [, channels, outH, outW] = manifest.input.shape;
  const pp = manifest.preprocess;

  // 1. Colour handling on modality values: RGB → planar channels, or → grey (BT.601 luma) for a 1-channel model.
  let planes: Float32Array[];
  if (spp === 1) planes = [frame];
  else if (channels === 1) planes = [rgbToLuma(frame, pixels)];
  else planes = deinterleave(frame, pixels);

  // 2. Window parameters (one set over all planes), MONOCHROME1 inversion.
  const rule = resolveWindowRule(pp.window, instance);
  const win = windowParameters(rule, planes, instance);
  const invert = pp.invertMonochrome1 && instance.photometricInterpretation.trim().toUpperCase() === 'MONOCHROME1';

  // 3. Window to [0, 1] and resize to the model's input size. A resize reads at most two source rows and columns
  //    per output row and column, so only that sub-grid is windowed (≈ 200 K of a 2048² frame's 4 M pixels): the
  //    same values as windowing every pixel first, without a frame-size pass or allocation.
  if (rows !== outH || columns !== outW) {
    const nearest = pp.resize === 'nearest';
    const ys = compactAxis(nearest ? nearestIndices(rows, outH) : linearIndices(rows, outH));
    const xs = compactAxis(nearest ? nearestIndices(columns, outW) : linearIndices(columns, outW));
    planes = planes.map((p) => {
      const grid = applyWindow(gather(p, columns, ys.keep, xs.keep), win, invert);
      return nearest
        ? nearestFrom(grid, xs.keep.length, ys.axis.i0, xs.axis.i0, outH, outW)
        : bilinearFrom(grid, xs.keep.length, ys.axis, xs.axis, outH, outW);
    });
  } else {
    // Planes made above (luma, deinterleaved) are ours to overwrite; the caller's frame only when it gives it up.
    planes = planes.map((p) => applyWindow(p, win, invert, p !== frame || options.consumeFrame ? p : new Float32Array(p.length)));
  }

  // 4. Channels (grey → replicate), value range and normalisation, written into one NCHW tensor.
  const plane = outH * outW;
  const tensor = new Float32Array(channels * plane);
  const [lo, hi] = pp.scale;
  const span = Math.fround(hi - lo);
  const identity = lo === 0 && hi === 1;
  for (let c = 0; c < channels; c++) {
    const src = planes[planes.length === 1 ? 0 : c];
    const mean = Math.fround(pp.mean.length === 1 ? pp.mean[0] : pp.mean[c]);
    const std = Math.fround(pp.std.length === 1 ? pp.std[0] : pp.std[c]);
    const off = c * plane;
    if (identity && mean === 0 && std === 1) {
      tensor.set(src, off);
      continue;
    }
    for (let i = 0; i < plane; i++) {
      let x = src[i];
      if (!identity) x = Math.fround(lo + Math.fround(x * span));
      tensor[off + i] = Math.fround(Math.fround(x - mean) / std);
    }
  }
  return { tensor, shape: [1, channels, outH, outW], frameIndex, window: win.rule };
}

/** 'auto': 8-bit unsigned → 'bits'; else 'voi' (which itself falls back to 'percentile'). */
export function resolveWindowRule(rule: WindowRule, instance: DecodedInstance): Exclude<WindowRule, 'auto'> {
  if (rule !== 'auto') return rule;
  const bits = instance.colourBits ?? instance.bitsStored;
  return bits <= 8 && instance.pixelRepresentation === 0 ? 'bits' : 'voi';
}

interface Window {
  rule: Exclude<WindowRule, 'auto'>;
  /** Linear map x → (x - offset) / divisor, clamped to [0, 1]. */
  offset: number;
  divisor: number;
  /** For 'voi': PS3.3 C.11.2.1.2.1 linear function parameters. */
  voi?: { center: number; width: number };
}

function windowParameters(rule: Exclude<WindowRule, 'auto'>, planes: Float32Array[], instance: DecodedInstance): Window {
  switch (rule) {
    case 'bits': {
      // PALETTE COLOR: the values are LUT entries, whose depth is colourBits, not the index depth.
      const bits = instance.colourBits ?? instance.bitsStored;
      const range = 2 ** bits - 1;
      const offset = instance.pixelRepresentation === 1 && instance.colourBits === undefined ? -(2 ** (bits - 1)) : 0;
      return { rule, offset, divisor: range };
    }
    case 'voi': {
      const w = instance.window;
      if (w && Number.isFinite(w.center) && Number.isFinite(w.width) && w.width >= 1) {
        return { rule, offset: 0, divisor: 1, voi: { center: w.center, width: w.width } };
      }
      return windowParameters('percentile', planes, instance);
    }
    case 'percentile': {
      const [p0, p1] = percentiles(planes, 0.5, 99.5);
      return { rule, offset: p0, divisor: p1 - p0 };
    }
    case 'minmax': {
      let min = Infinity;
      let max = -Infinity;
      for (const p of planes) for (let i = 0; i < p.length; i++) {
        const v = p[i];
        if (v < min) min = v;
        if (v > max) max = v;
      }
      return { rule, offset: min, divisor: max - min };
    }
  }
}

/** Writes into `out` (default: `src` itself; each element is read before it is written). */
function applyWindow(src: Float32Array, win: Window, invert: boolean, out: Float32Array = src): Float32Array {
  const n = src.length;
  if (win.voi) {
    // PS3.3 C.11.2.1.2.1, output range [0, 1].
    const c = win.voi.center - 0.5;
    const w1 = win.voi.width - 1;
    const loEdge = c - w1 / 2;
    const hiEdge = c + w1 / 2;
    for (let i = 0; i < n; i++) {
      const x = src[i];
      let y: number;
      if (x <= loEdge) y = 0;
      else if (x > hiEdge) y = 1;
      else y = w1 === 0 ? 1 : (x - c) / w1 + 0.5;
      out[i] = invert ? Math.fround(1 - Math.fround(y)) : y;
    }
    return out;
  }
  const { offset, divisor } = win;
  if (!(divisor > 0)) return out.fill(invert ? 1 : 0); // constant frame (out may be src: fill both ways)
  for (let i = 0; i < n; i++) {
    // (x - offset) in double is exact for integer-valued modality data; one rounding to float32 after the
    // division gives float32(u8)/255 bit-exactly (double rounding of a quotient is innocuous, 53 ≥ 2·24+2).
    let y = (src[i] - offset) / divisor;
    if (y < 0) y = 0;
    else if (y > 1) y = 1;
    const f = Math.fround(y);
    out[i] = invert ? Math.fround(1 - f) : f;
  }
  return out;
}

/** Percentiles with numpy's default linear interpolation, over all planes together. */
export function percentiles(planes: Float32Array[], pLo: number, pHi: number): [number, number] {
  let total = 0;
  for (const p of planes) total += p.length;
  const counted = integerOrderStatistics(planes, total);
  if (counted) {
    const at = (q: number): number => {
      const pos = (q / 100) * (total - 1);
      const k = Math.floor(pos);
      const frac = pos - k;
      const a = counted(k);
      if (frac === 0 || k + 1 >= total) return a;
      return a + (counted(k + 1) - a) * frac;
    };
    return [at(pLo), at(pHi)];
  }
  const all = new Float32Array(total);
  let o = 0;
  for (const p of planes) {
    all.set(p, o);
    o += p.length;
  }
  const at = (q: number): number => {
    const pos = (q / 100) * (total - 1);
    const k = Math.floor(pos);
    const frac = pos - k;
    const a = select(all, k);
    if (frac === 0 || k + 1 >= total) return a;
    // After select(k), every element right of k is ≥ a: the (k+1)-th order statistic is their minimum.
    let b = Infinity;
    for (let i = k + 1; i < total; i++) if (all[i] < b) b = all[i];
    return a + (b - a) * frac;
  };
  const lo = at(pLo);
  const hi = at(pHi);
  return [lo, hi];
}

/** Integer data within this span is counted instead of copied and selected. */
const COUNTING_MAX_SPAN = 1 << 20;

/**
 * For integer-valued planes (stored pixel values, or modality values with an integer rescale) spanning at most
 * COUNTING_MAX_SPAN: a histogram, and from it the k-th smallest value exactly as quickselect would find it,
 * without copying the planes (a 2048² frame would need a 16 MiB copy). Null for other data.
 */
function integerOrderStatistics(planes: Float32Array[], total: number): ((k: number) => number) | null {
  let min = Infinity;
  let max = -Infinity;
  for (const p of planes) {
    const [lo, hi] = planeRange(p);
    if (lo < min) min = lo;
    if (hi > max) max = hi;
  }
  // (NaN never passes the comparisons in planeRange and fails countPlane's integer test; ±Infinity fails the span test.)
  if (total === 0 || !(max - min <= COUNTING_MAX_SPAN)) return null;
  const counts = new Uint32Array(max - min + 1);
  for (const p of planes) if (!countPlane(p, min, counts)) return null;
  return (k) => {
    let seen = 0;
    for (let v = 0; v < counts.length; v++) {
      seen += counts[v];
      if (seen > k) return v + min;
    }
    return max;
  };
}

// Small single-purpose loops over one typed array: V8 optimises these far better than the same loops inlined.
function planeRange(p: Float32Array): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  const n = p.length;
  for (let i = 0; i < n; i++) {
    const x = p[i];
    if (x < min) min = x;
    if (x > max) max = x;
  }
  return [min, max];
}

/** Adds p's values (offset by -min) to counts; false at the first value that is not an integer. */
function countPlane(p: Float32Array, min: number, counts: Uint32Array): boolean {
  const n = p.length;
  for (let i = 0; i < n; i++) {
    const d = p[i] - min;
    const k = d | 0;
    if (k !== d) return false;
    counts[k]++;
  }
  return true;
}

/** Quickselect (Hoare partition, median-of-three): arr[k] becomes the k-th smallest; in place. */
function select(arr: Float32Array, k: number): number {
  let left = 0;
  let right = arr.length - 1;
  while (right > left) {
    const mid = (left + right) >>> 1;
    // median of three as pivot
    const a = arr[left];
    const b = arr[mid];
    const c = arr[right];
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
    let i = left;
    let j = right;
    while (i <= j) {
      while (arr[i] < pivot) i++;
      while (arr[j] > pivot) j--;
      if (i <= j) {
        const t = arr[i];
        arr[i] = arr[j];
        arr[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) right = j;
    else if (k >= i) left = i;
    else return arr[k];
  }
  return arr[k];
}

function rgbToLuma(rgb: Float32Array, pixels: number): Float32Array {
  const out = new Float32Array(pixels);
  for (let i = 0, j = 0; i < pixels; i++, j += 3) out[i] = 0.299 * rgb[j] + 0.587 * rgb[j + 1] + 0.114 * rgb[j + 2];
  return out;
}

function deinterleave(rgb: Float32Array, pixels: number): Float32Array[] {
  const planes = [new Float32Array(pixels), new Float32Array(pixels), new Float32Array(pixels)];
  for (let i = 0, j = 0; i < pixels; i++, j += 3) {
    planes[0][i] = rgb[j];
    planes[1][i] = rgb[j + 1];
    planes[2][i] = rgb[j + 2];
  }
  return planes;
}

/**
 * Source indices and weights exactly as torch's CPU upsample_bilinear2d (align_corners=False, torch 1.13
 * UpSampleKernel.cpp): the ratio is float32 (in/out), the source index is computed in double (acc_type of
 * float on CPU), the weights are stored as float32.
 */
/** Per output index along one axis: the two source indices a resize reads and their weights. */
interface AxisTable { i0: Int32Array; i1: Int32Array; w0: Float32Array; w1: Float32Array }

function linearIndices(inSize: number, outSize: number): AxisTable {
  const ratio = Math.fround(inSize / outSize);
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w0 = new Float32Array(outSize);
  const w1 = new Float32Array(outSize);
  for (let d = 0; d < outSize; d++) {
    let src = inSize === outSize ? d : ratio * (d + 0.5) - 0.5;
    if (src < 0) src = 0;
    const idx = Math.min(Math.trunc(src), inSize - 1);
    const lambda = Math.fround(Math.min(Math.max(src - idx, 0), 1));
    i0[d] = idx;
    i1[d] = idx < inSize - 1 ? idx + 1 : idx;
    w1[d] = lambda;
    w0[d] = Math.fround(1 - lambda);
  }
  return { i0, i1, w0, w1 };
}

/** torch `F.interpolate(mode='nearest')` source indices (i1 = i0, weights unused). */
function nearestIndices(inSize: number, outSize: number): AxisTable {
  const scale = Math.fround(inSize / outSize);
  const i0 = new Int32Array(outSize);
  for (let d = 0; d < outSize; d++) i0[d] = Math.min(Math.floor(Math.fround(d * scale)), inSize - 1);
  return { i0, i1: i0, w0: new Float32Array(outSize).fill(1), w1: new Float32Array(outSize) };
}

/** The source indices an axis table reads (ascending), and the table re-indexed onto just those. */
function compactAxis(t: AxisTable): { keep: Int32Array; axis: AxisTable } {
  const keep = Int32Array.from(new Set([...t.i0, ...t.i1])).sort();
  const at = new Map<number, number>();
  keep.forEach((v, i) => at.set(v, i));
  const remap = (a: Int32Array): Int32Array => a.map((v) => at.get(v)!);
  return { keep, axis: { i0: remap(t.i0), i1: remap(t.i1), w0: t.w0, w1: t.w1 } };
}

/** The sub-grid rows × cols of a row-major plane of width `width`. */
function gather(src: Float32Array, width: number, rows: Int32Array, cols: Int32Array): Float32Array {
  const out = new Float32Array(rows.length * cols.length);
  for (let r = 0; r < rows.length; r++) {
    const base = rows[r] * width;
    const o = r * cols.length;
    for (let c = 0; c < cols.length; c++) out[o + c] = src[base + cols[c]];
  }
  return out;
}

function bilinearFrom(src: Float32Array, inW: number, ys: AxisTable, xs: AxisTable, outH: number, outW: number): Float32Array {
  const out = new Float32Array(outH * outW);
  const f = Math.fround;
  for (let y = 0; y < outH; y++) {
    const r0 = ys.i0[y] * inW;
    const r1 = ys.i1[y] * inW;
    const wy0 = ys.w0[y];
    const wy1 = ys.w1[y];
    const o = y * outW;
    for (let x = 0; x < outW; x++) {
      const c0 = xs.i0[x];
      const c1 = xs.i1[x];
      const wx0 = xs.w0[x];
      const wx1 = xs.w1[x];
      const top = f(f(src[r0 + c0] * wx0) + f(src[r0 + c1] * wx1));
      const bot = f(f(src[r1 + c0] * wx0) + f(src[r1 + c1] * wx1));
      out[o + x] = f(f(top * wy0) + f(bot * wy1));
    }
  }
  return out;
}

function nearestFrom(src: Float32Array, inW: number, rowIdx: Int32Array, colIdx: Int32Array, outH: number, outW: number): Float32Array {
  const out = new Float32Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    const r = rowIdx[y] * inW;
    for (let x = 0; x < outW; x++) out[y * outW + x] = src[r + colIdx[x]];
  }
  return out;
}

/** Bilinear resize matching torch `F.interpolate(mode='bilinear', align_corners=False, antialias=False)`. */
export function resizeBilinear(src: Float32Array, inH: number, inW: number, outH: number, outW: number): Float32Array {
  return bilinearFrom(src, inW, linearIndices(inH, outH), linearIndices(inW, outW), outH, outW);
}

/** Nearest resize matching torch `F.interpolate(mode='nearest')`. */
export function resizeNearest(src: Float32Array, inH: number, inW: number, outH: number, outW: number): Float32Array {
  return nearestFrom(src, inW, nearestIndices(inH, outH).i0, nearestIndices(inW, outW).i0, outH, outW);
}
