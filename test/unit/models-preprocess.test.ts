import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DecodedInstance } from '../../src/core/types';
import { parseManifest, type ModelManifest } from '../../src/models/manifest';
import { percentiles, preprocess, resizeBilinear, resizeNearest } from '../../src/models/preprocess';
import { defaultManifest } from '../fixtures/onnx/build-test-model';

const ref = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'onnx', 'torch-resize-reference.json'), 'utf8'));

function instance(over: Partial<DecodedInstance> & { frames: Float32Array[]; rows: number; columns: number }): DecodedInstance {
  return {
    sopInstanceUidHash: '0123456789abcdef', sopClassUid: '1.2.840.10008.5.1.4.1.1.7', transferSyntaxUid: '1.2.840.10008.1.2.1',
    modality: 'CR', photometricInterpretation: 'MONOCHROME2', numberOfFrames: over.frames.length, samplesPerPixel: 1,
    bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 0, rescaled: false, ...over,
  };
}

function manifest(over: { channels?: 1 | 3; size?: [number, number]; preprocess?: Record<string, unknown> } = {}): ModelManifest {
  const m = defaultManifest();
  m.input.shape = [-1, over.channels ?? 1, ...(over.size ?? [224, 224])];
  Object.assign(m.preprocess, over.preprocess ?? {});
  return parseManifest(m);
}

const u8Frame = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));

describe('preprocess: windowing', () => {
  test('8-bit MONOCHROME2 224×224 is exactly float32(u8)/255 (bit-identical to torch)', () => {
    const frame = u8Frame(224 * 224, (i) => (i * 31 + (i >> 8)) % 256);
    const out = preprocess(instance({ rows: 224, columns: 224, frames: [frame] }), manifest());
    expect(out.shape).toEqual([1, 1, 224, 224]);
    expect(out.window).toBe('bits');
    const torchU8 = Float32Array.from(ref.u8_div_255 as number[]);
    let mismatches = 0;
    for (let i = 0; i < frame.length; i++) if (out.tensor[i] !== torchU8[frame[i]]) mismatches++;
    expect(mismatches).toBe(0);
    // and every one of the 256 values, directly
    const all = preprocess(instance({ rows: 16, columns: 16, frames: [u8Frame(256, (i) => i)] }), manifest({ size: [16, 16] }));
    expect(Array.from(all.tensor)).toEqual(Array.from(torchU8));
  });

  test('MONOCHROME1 is inverted after windowing (1 - x)', () => {
    const frame = u8Frame(256, (i) => i);
    const inst = instance({ rows: 16, columns: 16, frames: [frame], photometricInterpretation: 'MONOCHROME1' });
    const out = preprocess(inst, manifest({ size: [16, 16] }));
    expect(out.tensor[0]).toBe(1);
    expect(out.tensor[255]).toBe(0);
    expect(out.tensor[51]).toBe(Math.fround(1 - Math.fround(51 / 255)));
    const kept = preprocess(inst, manifest({ size: [16, 16], preprocess: { invertMonochrome1: false } }));
    expect(kept.tensor[0]).toBe(0);
  });

  test("'voi' applies the instance window (PS3.3 C.11.2.1.2.1 linear), clamped to [0, 1]", () => {
    // 12-bit CT-like values (already in HU after rescale), window C=40 W=400: [-160, 240] → [0, 1].
    const values = [-1000, -160, -159.5, 40, 239.5, 240, 3000];
    const frame = Float32Array.from([...values, ...new Array(9 - values.length).fill(0)]);
    const inst = instance({ rows: 3, columns: 3, frames: [frame], bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 1, rescaled: true, window: { center: 40, width: 400 } });
    const out = preprocess(inst, manifest({ size: [3, 3] }));
    expect(out.window).toBe('voi'); // 'auto' on 12-bit data
    const expected = values.map((x) => {
      const c = 40 - 0.5;
      const w1 = 399;
      if (x <= c - w1 / 2) return 0;
      if (x > c + w1 / 2) return 1;
      return (x - c) / w1 + 0.5;
    });
    expect(Array.from(out.tensor.slice(0, values.length))).toEqual(expected.map(Math.fround));
    expect(out.tensor[0]).toBe(0);
    expect(out.tensor[6]).toBe(1);
    expect(out.tensor[3]).toBeCloseTo(0.5 + 0.5 / 399, 6);
  });

  test("'voi' without a window falls back to the 0.5/99.5 percentiles; 'percentile' matches numpy's linear rule", () => {
    const frame = u8Frame(1000, (i) => (i * 7919) % 1000); // a permutation of 0..999
    const [lo, hi] = percentiles([frame], 0.5, 99.5);
    expect(lo).toBeCloseTo(4.995, 9); // numpy.percentile(arange(1000), 0.5)
    expect(hi).toBeCloseTo(994.005, 9);
    const inst = instance({ rows: 25, columns: 40, frames: [frame], bitsAllocated: 16, bitsStored: 10 });
    const out = preprocess(inst, manifest({ size: [25, 40] }));
    expect(out.window).toBe('percentile');
    const i500 = frame.indexOf(500);
    expect(out.tensor[i500]).toBe(Math.fround((500 - 4.995) / (994.005 - 4.995)));
    expect(out.tensor[frame.indexOf(0)]).toBe(0);
    expect(out.tensor[frame.indexOf(999)]).toBe(1);
  });

  test('percentiles of integer data (counted) equal those of the same values as fractions (selected), duplicates and negatives included', () => {
    let seed = 7;
    const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32; };
    for (const [n, lo, span] of [[999, 0, 50], [4096, -1024, 3000], [1, 5, 0], [2, 0, 1], [5000, -32768, 65535]] as const) {
      const ints = Float32Array.from({ length: n }, () => lo + Math.floor(rand() * (span + 1)));
      // ×1.5 then ÷1.5 after: non-integer values in the same order take the quickselect path
      const halves = ints.map((x) => x * 1.5);
      for (const [pl, ph] of [[0.5, 99.5], [0, 100], [25, 75], [1, 99]]) {
        const [a, b] = percentiles([ints], pl, ph);
        const [c, d] = percentiles([halves], pl, ph);
        expect(a).toBeCloseTo(c / 1.5, 9);
        expect(b).toBeCloseTo(d / 1.5, 9);
      }
    }
  });

  test("'minmax' and signed 'bits'", () => {
    const frame = Float32Array.from([-100, 0, 100, 300]);
    const mm = preprocess(instance({ rows: 2, columns: 2, frames: [frame], pixelRepresentation: 1, bitsStored: 12, bitsAllocated: 16 }),
      manifest({ size: [2, 2], preprocess: { window: 'minmax' } }));
    expect(Array.from(mm.tensor)).toEqual([0, 0.25, 0.5, 1]);
    const bits = preprocess(instance({ rows: 2, columns: 2, frames: [Float32Array.from([-2048, 0, 2047, 5000])], pixelRepresentation: 1, bitsStored: 12, bitsAllocated: 16 }),
      manifest({ size: [2, 2], preprocess: { window: 'bits' } }));
    expect(Array.from(bits.tensor)).toEqual([0, Math.fround(2048 / 4095), 1, 1]);
  });

  test('scale, mean and std are applied per channel in float32', () => {
    const frame = u8Frame(4, (i) => i * 85); // 0, 85, 170, 255
    const m = manifest({ channels: 3, size: [2, 2], preprocess: { scale: [-1, 1], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } });
    const out = preprocess(instance({ rows: 2, columns: 2, frames: [frame] }), m);
    expect(out.shape).toEqual([1, 3, 2, 2]);
    const f = Math.fround;
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 4; i++) {
        const x = f(-1 + f(f(frame[i] / 255) * 2));
        expect(out.tensor[c * 4 + i]).toBe(f(f(x - f(m.preprocess.mean[c])) / f(m.preprocess.std[c])));
      }
    }
  });
});

  test('consumeFrame windows in place and gives the same tensor, constant frames included', () => {
    const cases: { inst: () => DecodedInstance; m: ModelManifest }[] = [
      { inst: () => instance({ rows: 64, columns: 64, frames: [u8Frame(4096, (i) => (i * 7) % 256)] }), m: manifest({ size: [32, 32] }) },
      { inst: () => instance({ rows: 64, columns: 64, frames: [u8Frame(4096, (i) => (i * 13) % 4096)], bitsAllocated: 16, bitsStored: 12 }), m: manifest({ size: [32, 32] }) },
      { inst: () => instance({ rows: 8, columns: 8, frames: [u8Frame(64, (i) => i * 50 - 900)], bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 1, window: { center: 40, width: 400 } }), m: manifest({ size: [8, 8] }) },
      { inst: () => instance({ rows: 8, columns: 8, frames: [u8Frame(64, () => 300)], bitsAllocated: 16, bitsStored: 12 }), m: manifest({ size: [8, 8] }) },
      { inst: () => instance({ rows: 8, columns: 8, frames: [u8Frame(64, () => 300)], bitsAllocated: 16, bitsStored: 12, photometricInterpretation: 'MONOCHROME1' }), m: manifest({ size: [8, 8] }) },
    ];
    for (const { inst, m } of cases) {
      const kept = inst();
      const frameBefore = Float32Array.from(kept.frames[0]);
      const expected = preprocess(kept, m);
      expect(kept.frames[0]).toEqual(frameBefore); // the default leaves the caller's frame alone
      const given = inst();
      const out = preprocess(given, m, { consumeFrame: true });
      expect(Array.from(out.tensor)).toEqual(Array.from(expected.tensor));
      expect(out.window).toBe(expected.window);
    }
  });

describe('preprocess: channels and frames', () => {
  test('RGB → grey uses BT.601 luma for a 1-channel model; grey → replicated for a 3-channel model', () => {
    const rgb = Float32Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
    const inst = instance({ rows: 2, columns: 2, frames: [rgb], samplesPerPixel: 3, photometricInterpretation: 'RGB' });
    const grey = preprocess(inst, manifest({ size: [2, 2] }));
    [0.299, 0.587, 0.114, 1].forEach((v, i) => expect(grey.tensor[i]).toBeCloseTo(v, 6));
    const colour = preprocess(inst, manifest({ channels: 3, size: [2, 2] }));
    expect(Array.from(colour.tensor)).toEqual([1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1]);
    const g = preprocess(instance({ rows: 1, columns: 2, frames: [Float32Array.from([0, 255])] }), manifest({ channels: 3, size: [1, 2] }));
    expect(Array.from(g.tensor)).toEqual([0, 1, 0, 1, 0, 1]);
  });

  test("multi-frame: 'first' by default, 'middle' on request", () => {
    const frames = [0, 1, 2, 3, 4].map((k) => u8Frame(4, () => k * 50));
    const inst = instance({ rows: 2, columns: 2, frames });
    expect(preprocess(inst, manifest({ size: [2, 2] })).frameIndex).toBe(0);
    const mid = preprocess(inst, manifest({ size: [2, 2] }), { frame: 'middle' });
    expect(mid.frameIndex).toBe(2);
    expect(mid.tensor[0]).toBe(Math.fround(100 / 255));
  });

  test('a frame of the wrong length is a typed error', () => {
    expect(() => preprocess(instance({ rows: 4, columns: 4, frames: [new Float32Array(3)] }), manifest())).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED_PIXEL_FORMAT' }));
  });
});

// Indices and weights follow torch's CPU kernel exactly; the final sums may round differently (torch's
// compiled kernel may fuse multiply-adds), so values agree to one float32 ulp in [0.5, 1).
const ONE_ULP = 2 ** -23;

describe('preprocess: windowing only the pixels the resize reads', () => {
  test('gives exactly "window every pixel, then resize", down and up, bilinear and nearest, for every window rule', () => {
    let seed = 11;
    const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32; };
    const [rows, columns] = [37, 53];
    const make = (over: Partial<DecodedInstance>, f: () => number) => {
      const values = Float32Array.from({ length: rows * columns }, f);
      return () => instance({ rows, columns, frames: [Float32Array.from(values)], ...over });
    };
    const sources = [
      make({}, () => Math.floor(rand() * 256)), // 'bits'
      make({ bitsAllocated: 16, bitsStored: 12, window: { center: 1500, width: 1200 } }, () => Math.floor(rand() * 4096)), // 'voi'
      make({ bitsAllocated: 16, bitsStored: 12 }, () => Math.floor(rand() * 4096)), // 'voi' → percentile
      make({ bitsAllocated: 16, bitsStored: 12, photometricInterpretation: 'MONOCHROME1' }, () => Math.floor(rand() * 4096)),
    ];
    for (const resize of ['bilinear', 'nearest'] as const) {
      for (const source of sources) {
        // the whole frame windowed (same size: no resize), then resized by the exported torch-exact functions
        const full = preprocess(source(), manifest({ size: [rows, columns], preprocess: { resize } })).tensor;
        for (const [outH, outW] of [[16, 20], [64, 64], [37, 17]]) {
          const expected = resize === 'nearest' ? resizeNearest(full, rows, columns, outH, outW) : resizeBilinear(full, rows, columns, outH, outW);
          const out = preprocess(source(), manifest({ size: [outH, outW], preprocess: { resize } }));
          expect(Array.from(out.tensor)).toEqual(Array.from(expected));
        }
      }
    }
  });
});

describe('preprocess: resize against torch F.interpolate', () => {
  const H = 5;
  const W = 7;
  const src = Float32Array.from({ length: H * W }, (_, k) => Math.fround((((Math.floor(k / W) * 7) + (k % W) * 3) % 11) / 10));

  test.each([[3, 4], [9, 11], [5, 7], [2, 13]])('bilinear %i×%i (align_corners=False)', (h, w) => {
    const got = resizeBilinear(src, H, W, h, w);
    const want = ref[`bilinear_${h}x${w}`] as number[];
    expect(got.length).toBe(want.length);
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(ONE_ULP);
  });

  test.each([[3, 4], [9, 11], [2, 13]])('nearest %i×%i', (h, w) => {
    expect(Array.from(resizeNearest(src, H, W, h, w))).toEqual((ref[`nearest_${h}x${w}`] as number[]).map(Math.fround));
  });

  test('300×260 8-bit → 224×224 through the whole preprocess', () => {
    const frame = Float32Array.from({ length: 300 * 260 }, (_, k) => ((Math.floor(k / 260) * 13) + (k % 260) * 5) % 251);
    const out = preprocess(instance({ rows: 300, columns: 260, frames: [frame] }), manifest());
    const big = ref.big as { points: [number, number][]; values: number[]; sum: number };
    big.points.forEach(([y, x], k) => expect(Math.abs(out.tensor[y * 224 + x] - big.values[k])).toBeLessThanOrEqual(ONE_ULP));
    let sum = 0;
    for (const v of out.tensor) sum += v;
    expect(Math.abs(sum - big.sum)).toBeLessThan(1e-3);
  });
});
