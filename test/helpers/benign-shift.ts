import * as fs from 'node:fs';
import * as path from 'node:path';
import { mulberry32 } from '../../src/core/random';
import { grey8Dicom, kermanyGrey, syntheticUid } from './write-dicom';

/**
 * Benign, site-like image processing for tests: unsharp masking (edge enhancement, as CR/DX post-processing does).
 * out = clamp(round(x + amount · (x − G_σ * x))) with a separable Gaussian G_σ (edges replicated), on 8-bit pixels.
 */
export function unsharpMask(pixels: Uint8Array, width: number, height: number, sigma: number, amount: number): Uint8Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = new Float64Array(2 * radius + 1);
  let sum = 0;
  for (let i = -radius; i <= radius; i++) sum += kernel[i + radius] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < kernel.length; i++) kernel[i] /= sum;
  const clampAt = (v: number, n: number) => (v < 0 ? 0 : v >= n ? n - 1 : v);
  const tmp = new Float64Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let acc = 0;
      for (let k = -radius; k <= radius; k++) acc += kernel[k + radius] * pixels[y * width + clampAt(x + k, width)];
      tmp[y * width + x] = acc;
    }
  }
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let blur = 0;
      for (let k = -radius; k <= radius; k++) blur += kernel[k + radius] * tmp[clampAt(y + k, height) * width + x];
      const v = Math.round(pixels[y * width + x] + amount * (pixels[y * width + x] - blur));
      out[y * width + x] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

export interface ShiftedSite {
  /** Folder of the studies to calibrate on. */
  calibrate: string;
  /** Folder of the other studies (held out). */
  heldOut: string;
  studies: { calibrate: number; heldOut: number };
  instances: { calibrate: number; heldOut: number };
}

/**
 * A "site": Kermany images (lab/splits.csv paths) after unsharp masking, written as 8-bit DX DICOM studies of
 * `perStudy` instances; whole studies go to `calibrate` or `heldOut` by a seeded shuffle (half each).
 */
export async function writeShiftedSite(dir: string, sources: string[], opts: { perStudy: number; seed: number; sigma: number; amount: number }): Promise<ShiftedSite> {
  const studies = Math.ceil(sources.length / opts.perStudy);
  const order = Array.from({ length: studies }, (_, i) => i);
  const rnd = mulberry32(opts.seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const calibrateSet = new Set(order.slice(0, Math.floor(studies / 2)));
  const site: ShiftedSite = { calibrate: path.join(dir, 'calibrate'), heldOut: path.join(dir, 'held-out'), studies: { calibrate: 0, heldOut: 0 }, instances: { calibrate: 0, heldOut: 0 } };
  for (let s = 0; s < studies; s++) {
    const side = calibrateSet.has(s) ? 'calibrate' : 'heldOut';
    site.studies[side]++;
    for (let k = 0; k < opts.perStudy && s * opts.perStudy + k < sources.length; k++) {
      const source = sources[s * opts.perStudy + k];
      const spec = { studyUid: syntheticUid('shifted-site', String(s)), seriesUid: syntheticUid('shifted-site-series', String(s)), sopUid: syntheticUid('shifted-site-sop', source), instanceNumber: k + 1, rows: 224, columns: 224 };
      const pixels = unsharpMask(await kermanyGrey(source), 224, 224, opts.sigma, opts.amount);
      const file = path.join(site[side], `study${String(s).padStart(4, '0')}`, `IM${String(k + 1).padStart(2, '0')}.dcm`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, grey8Dicom(pixels, spec));
      site.instances[side]++;
    }
  }
  return site;
}
