import { WardenError } from '../../core/errors';
import { mulberry32 } from '../../core/random';
import type { ImageInput } from './graph';
import { runInWorker, type ProbeRange } from './runtime';

/**
 * The proof behind `warden model expose`: the original and the exposed model run on the same seeded probe inputs
 * and every original output must come out with the same type, shape and bytes. Probe images are drawn in pixel
 * space [0, 1] (noise, smooth fields, blocks, ramps) and mapped to the model's input range as the manifest's preprocessing would. Both models run in one worker thread
 * (probe-worker.ts) with the same session options.
 */

export interface ProofOptions {
  /** Probe inputs (single images; a fixed-batch model gets batches of its size). Default 24. */
  probes?: number;
  seed?: number;
  /** How pixel-space probe values map to the model's input (the manifest's scale / mean / std); default identity. */
  range?: ProbeRange;
}

export interface ProofReport {
  /** Probe runs compared (each one or more images). */
  runs: number;
  /** Images fed in total. */
  images: number;
  batchSizes: number[];
  /** Original outputs compared on every run. */
  outputs: string[];
  /** Shapes of the new outputs on the last run. */
  newOutputShapes: Record<string, number[]>;
  identical: true;
}

export const DEFAULT_PROBES = 24;

/** Seeded probe image k, pixel space [0, 1], layout C×H×W. */
export function probeImage(k: number, seed: number, channels: number, height: number, width: number): Float32Array {
  const rnd = mulberry32((seed * 7919 + k * 104729) >>> 0);
  const hw = height * width;
  const out = new Float32Array(channels * hw);
  const kind = k % 4;
  for (let c = 0; c < channels; c++) {
    const plane = out.subarray(c * hw, (c + 1) * hw);
    if (kind === 0) for (let i = 0; i < hw; i++) plane[i] = rnd();
    else if (kind === 1) {
      const waves = Array.from({ length: 4 }, () => ({ fy: rnd() * 6, fx: rnd() * 6, ph: rnd() * 6.283, a: rnd() }));
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          let v = 0;
          for (const w of waves) v += w.a * Math.cos((w.fy * y) / height * 6.283 + (w.fx * x) / width * 6.283 + w.ph);
          plane[y * width + x] = 0.5 + v / 8;
        }
      }
    } else if (kind === 2) {
      plane.fill(rnd());
      for (let b = 0; b < 6; b++) {
        const y0 = Math.floor(rnd() * height);
        const x0 = Math.floor(rnd() * width);
        const y1 = Math.min(height, y0 + 1 + Math.floor(rnd() * height / 2));
        const x1 = Math.min(width, x0 + 1 + Math.floor(rnd() * width / 2));
        const v = rnd();
        for (let y = y0; y < y1; y++) plane.fill(v, y * width + x0, y * width + x1);
      }
    } else {
      const gy = rnd();
      const gx = rnd();
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) plane[y * width + x] = Math.min(1, Math.max(0, (gy * y) / height / 2 + (gx * x) / width / 2 + (rnd() - 0.5) * 0.2));
      }
    }
  }
  return out;
}

/**
 * Runs both models on the probes and compares every original output exactly.
 * @throws MODEL_SURGERY_CHANGED_OUTPUTS naming the output and the probe; MODEL_LOAD_FAILED, MODEL_INFERENCE_FAILED
 */
export async function proveOriginalOutputsUnchanged(original: Uint8Array, exposed: Uint8Array, input: ImageInput, opts: ProofOptions = {}): Promise<ProofReport> {
  const probes = Math.max(1, Math.floor(opts.probes ?? DEFAULT_PROBES));
  // A dynamic-batch model is also checked with a batch of 4: batching must not change the original outputs either.
  const batches: number[] = input.fixedBatch !== undefined ? Array(probes).fill(input.fixedBatch) : [...Array(probes).fill(1), 4];
  const res = await runInWorker({
    kind: 'compare', original, exposed, input, batches, seed: opts.seed ?? 1,
    range: opts.range ?? { scale: [0, 1], mean: [0], std: [1] },
  });
  return { runs: batches.length, images: batches.reduce((a, b) => a + b, 0), batchSizes: [...new Set(batches)], outputs: res.outputs, newOutputShapes: res.newOutputShapes, identical: true };
}

/** The probe batch of one run: `n` seeded images starting at probe `first`, mapped to the model's range. */
export function probeBatch(first: number, n: number, seed: number, input: ImageInput, range: ProbeRange): Float32Array {
  const per = input.channels * input.height * input.width;
  const hw = input.height * input.width;
  const data = new Float32Array(n * per);
  for (let j = 0; j < n; j++) {
    const img = probeImage(first + j, seed, input.channels, input.height, input.width);
    for (let i = 0; i < per; i++) {
      const c = Math.floor(i / hw);
      data[j * per + i] = (range.scale[0] + img[i] * (range.scale[1] - range.scale[0]) - (range.mean[c] ?? range.mean[0])) / (range.std[c] ?? range.std[0]);
    }
  }
  return data;
}

/** The sentence of the refusal. */
export function changedOutputError(output: string, run: number, runs: number, batch: number, why: string): WardenError {
  return new WardenError('MODEL_SURGERY_CHANGED_OUTPUTS',
    `Original output '${output}' differs after adding the feature outputs (probe run ${run} of ${runs}, batch ${batch}: ${why}). `
    + 'ONNX Runtime probably optimised the graph differently around a tapped tensor: choose other taps with --taps '
    + '(post-activation tensors such as Relu outputs rarely interfere; see `warden model inspect`).',
    { detail: { output, run, batch } });
}

/** The tensor fields compared. */
export interface ComparableTensor {
  type: string;
  dims: readonly number[];
  data: unknown;
}

function bytesOf(data: unknown): Buffer {
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(JSON.stringify(data));
}

/** Why two tensors are not bit-identical, or '' when they are. */
export function difference(x: ComparableTensor | undefined, y: ComparableTensor | undefined): string {
  if (!x || !y) return 'missing';
  if (x.type !== y.type) return `type ${x.type} vs ${y.type}`;
  if (x.dims.join(',') !== y.dims.join(',')) return `shape [${x.dims.join(', ')}] vs [${y.dims.join(', ')}]`;
  if (bytesOf(x.data).equals(bytesOf(y.data))) return '';
  let maxAbs = 0;
  let count = 0;
  if (x.type === 'float32') {
    const a = x.data as Float32Array;
    const b = y.data as Float32Array;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i] - b[i]);
      if (!(d === 0 || (Number.isNaN(a[i]) && Number.isNaN(b[i])))) count++;
      if (d > maxAbs) maxAbs = d;
    }
    return `${count} of ${a.length} values differ, max |difference| ${maxAbs.toExponential(2)}`;
  }
  return 'the bytes differ';
}
