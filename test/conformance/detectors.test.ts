/**
 * One conformance suite for every registered detector (PyOD's one-template-per-detector, alibi's typed
 * errors): unfitted use fails with a typed error, scores point the right way on seeded synthetic data,
 * save/load round-trips exactly, a bundle for another model refuses to load, and calibration holds.
 */
import {
  DETECTORS,
  bundleFromContents,
  decodeBundle,
  encodeBundle,
  fitBundle,
  instanceOf,
  scoreTable,
  type Detector,
  type FeatureTable,
} from '../../src/detectors';
import { isWardenError } from '../../src/core/errors';
import { auroc, syntheticTable } from '../fixtures/detectors/synthetic';

const SHA = 'a'.repeat(64);
const OTHER_SHA = 'b'.repeat(64);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isWardenError(err) ? err.code : `untyped:${String(err)}`;
  }
  return undefined;
}

const train = syntheticTable(600, 1);
const calibration = syntheticTable(1000, 2);
const cleanTest = syntheticTable(2000, 3);

/** Parameters that fit the synthetic layers, for detectors whose defaults name the reference model's layers. */
const SYNTH_PARAMS: Record<string, Record<string, unknown>> = {
  coherence: { probes: [[['stage1_mean'], ['logits']], [['penultimate'], ['logits']]] },
};

describe.each(Object.keys(DETECTORS))('detector %s', (kind) => {
  // adversarial-signal detectors read the logits and the views' outputs too (the tables with `decision`)
  const decision = DETECTORS[kind].create(SYNTH_PARAMS[kind] ?? {}).signal === 'adversarial';
  const train = syntheticTable(600, 1, 0, decision);
  const calibration = syntheticTable(1000, 2, 0, decision);
  const cleanTest = syntheticTable(2000, 3, 0, decision);
  const shifted = syntheticTable(200, 4, 1.5, decision);
  const make = () => DETECTORS[kind].create(SYNTH_PARAMS[kind] ?? {});
  let fitted: { bundle: ReturnType<typeof fitBundle>['bundle']; contents: ReturnType<typeof fitBundle>['contents'] };
  let det: Detector;
  let cleanScores: Float64Array;
  let shiftedScores: Float64Array;

  beforeAll(() => {
    fitted = fitBundle(train, calibration, { modelSha256: SHA, specs: [{ id: kind, kind, params: SYNTH_PARAMS[kind] }] });
    det = fitted.bundle.detectors[kind];
    cleanScores = scoreTable(det, cleanTest);
    shiftedScores = scoreTable(det, shifted);
  });

  it('refuses to score before fit with DETECTOR_NOT_FITTED', () => {
    const d = make();
    expect(d.fitted).toBe(false);
    expect(codeOf(() => d.score(instanceOf(cleanTest, 0), 0))).toBe('DETECTOR_NOT_FITTED');
    expect(codeOf(() => d.pValue(1))).toBe('DETECTOR_NOT_FITTED');
    expect(codeOf(() => d.save())).toBe('DETECTOR_NOT_FITTED');
  });

  it('refuses a p-value before calibration with DETECTOR_NOT_FITTED', () => {
    const d = make();
    d.fit(train);
    expect(d.calibrated).toBe(false);
    expect(codeOf(() => d.pValue(1))).toBe('DETECTOR_NOT_FITTED');
  });

  it('rejects features of the wrong shape with FEATURE_SHAPE_MISMATCH', () => {
    const f = instanceOf(cleanTest, 0);
    const layer = det.requiredLayers[0];
    expect(codeOf(() => det.score({ ...f, [layer]: new Float32Array(f[layer].length + 1) }, 0))).toBe('FEATURE_SHAPE_MISMATCH');
    const missing = { ...f };
    delete missing[layer];
    expect(codeOf(() => det.score(missing, 0))).toBe('FEATURE_SHAPE_MISMATCH');
  });

  it('scores finite numbers, higher for shifted features (AUROC floor 0.9)', () => {
    expect(cleanScores.every(Number.isFinite)).toBe(true);
    expect(shiftedScores.every(Number.isFinite)).toBe(true);
    expect(auroc(cleanScores, shiftedScores)).toBeGreaterThan(0.9);
  });

  it('round-trips through the bundle file format with identical scores and p-values', () => {
    const bytes = encodeBundle(fitted.contents);
    const loaded = bundleFromContents(decodeBundle(bytes), SHA, 'test bundle');
    for (let i = 0; i < 50; i++) {
      const f = instanceOf(shifted, i);
      expect(loaded.score(f, shifted.predicted[i])).toEqual(fitted.bundle.score(f, shifted.predicted[i]));
      const g = instanceOf(cleanTest, i);
      expect(loaded.score(g, cleanTest.predicted[i])).toEqual(fitted.bundle.score(g, cleanTest.predicted[i]));
    }
  });

  it('refuses to load for another model with BUNDLE_MODEL_MISMATCH and a clear sentence', () => {
    const bytes = encodeBundle(fitted.contents);
    let err: unknown;
    try {
      bundleFromContents(decodeBundle(bytes), OTHER_SHA, 'test bundle');
    } catch (e) {
      err = e;
    }
    expect(isWardenError(err) && err.code).toBe('BUNDLE_MODEL_MISMATCH');
    expect((err as Error).message).toMatch(/fitted for the model with sha256 aaaaaaaaaaaa.*bbbbbbbbbbbb.*warden fit/);
  });

  it('gives uniform-ish p-values on fresh clean data (calibration holds)', () => {
    const p = Array.from(cleanScores, (s, i) => det.pValue(s, cleanTest.predicted[i]));
    const rate = (a: number) => p.filter((x) => x <= a).length / p.length;
    expect(rate(0.05)).toBeGreaterThan(0.025);
    expect(rate(0.05)).toBeLessThan(0.085);
    expect(rate(0.2)).toBeGreaterThan(0.14);
    expect(rate(0.2)).toBeLessThan(0.26);
    expect(rate(0.5)).toBeGreaterThan(0.42);
    expect(rate(0.5)).toBeLessThan(0.58);
    expect(p.every((x) => x > 0 && x <= 1)).toBe(true);
  });

  it('holds calibration within each predicted class too', () => {
    for (const c of [0, 1]) {
      const p = Array.from(cleanScores, (s, i) => [s, cleanTest.predicted[i]] as const).filter(([, k]) => k === c).map(([s]) => det.pValue(s, c));
      const rate = p.filter((x) => x <= 0.05).length / p.length;
      expect(rate).toBeGreaterThan(0.015);
      expect(rate).toBeLessThan(0.095);
    }
  });

  it('flags shifted features at the 5 % threshold', () => {
    const flagged = Array.from(shiftedScores).filter((s, i) => det.pValue(s, shifted.predicted[i]) <= 0.05).length / shifted.n;
    expect(flagged).toBeGreaterThan(0.6);
    // threshold and p-value agree, per class
    shiftedScores.forEach((s, i) => {
      const c = shifted.predicted[i];
      expect(det.pValue(s, c) <= 0.05).toBe(s > det.threshold(0.05, c));
    });
  });

  it('round-trips class-conditional calibration', () => {
    const loaded = bundleFromContents(decodeBundle(encodeBundle(fitted.contents)), SHA, 'x').detectors[kind];
    expect(loaded.params.calibrateBy).toBe(det.params.calibrateBy);
    for (let i = 0; i < 20; i++) expect(loaded.pValue(shiftedScores[i], 0)).toBe(det.pValue(shiftedScores[i], 0));
  });
});

describe('class-conditional calibration', () => {
  it('uses the predicted class calibration scores for kd and mgm by default', () => {
    for (const kind of ['kd', 'mgm']) {
      const d = DETECTORS[kind].create();
      expect(d.params.calibrateBy).toBe('class');
    }
    expect(DETECTORS.uad.create().params.calibrateBy).toBe('marginal');
    expect(codeOf(() => DETECTORS.mgm.create({ calibrateBy: 'sometimes' }))).toBe('USAGE');
  });

  it('refuses class calibration without classes', () => {
    const d = DETECTORS.mgm.create();
    d.fit(train);
    expect(codeOf(() => d.calibrate([1, 2, 3]))).toBe('USAGE');
  });
});

describe('bundle format', () => {
  // the domain detectors: the plain synthetic tables carry no logits or views for the adversarial ones
  const { contents } = fitBundle(train, calibration, { modelSha256: SHA, specs: ['kd', 'lid', 'mgm', 'uad', 'nrd'].map((k) => ({ id: k, kind: k })) });
  const bytes = encodeBundle(contents);

  it('rejects bad magic, truncation, unknown version and a bad header with BUNDLE_INVALID', () => {
    const bad = Buffer.from(bytes);
    bad.write('NOTABNDL', 0, 'ascii');
    expect(codeOf(() => decodeBundle(bad))).toBe('BUNDLE_INVALID');
    expect(codeOf(() => decodeBundle(bytes.subarray(0, bytes.length - 100)))).toBe('BUNDLE_INVALID');
    expect(codeOf(() => decodeBundle(bytes.subarray(0, 40)))).toBe('BUNDLE_INVALID');
    const hlen = bytes.readUInt32LE(8);
    const header = JSON.parse(bytes.toString('utf8', 12, 12 + hlen));
    for (const mutate of [(h: Record<string, unknown>) => (h.version = 2), (h: Record<string, unknown>) => (h.model = { sha256: 'xyz' })]) {
      const h = JSON.parse(JSON.stringify(header));
      mutate(h);
      let json = Buffer.from(JSON.stringify(h));
      json = Buffer.concat([json, Buffer.alloc((8 - ((12 + json.length) % 8)) % 8, 0x20)]);
      const pre = Buffer.alloc(12);
      pre.write('WDNBNDL1', 0, 'ascii');
      pre.writeUInt32LE(json.length, 8);
      const err = (() => {
        try {
          decodeBundle(Buffer.concat([pre, json, bytes.subarray(12 + hlen)]));
        } catch (e) {
          return e as Error & { code: string };
        }
        return undefined;
      })();
      expect(err?.code).toBe('BUNDLE_INVALID');
    }
  });

  it('records the header fields the issue asks for', () => {
    const { header } = decodeBundle(bytes);
    expect(header.version).toBe(1);
    expect(header.model.sha256).toBe(SHA);
    expect(header.layers).toEqual({ penultimate: 8, stage1_mean: 4, residual_stats: 6 });
    expect(header.calibration.n).toBe(1000);
    expect(header.calibration.targetFpr).toEqual({ flag: 0.05, block: 0.005 });
    expect(header.detectors.map((d) => d.id)).toEqual(['kd', 'lid', 'mgm', 'uad', 'nrd']);
    expect(Date.parse(header.createdAt)).not.toBeNaN();
  });

  it('scores all detectors through the DetectorBundle surface', () => {
    const b = bundleFromContents(decodeBundle(bytes), SHA, 'x');
    expect(b.names).toEqual(['kd', 'lid', 'mgm', 'uad', 'nrd']);
    expect(b.requiredLayers).toEqual(['penultimate', 'residual_stats', 'stage1_mean']);
    const s = b.score(instanceOf(cleanTest, 0), cleanTest.predicted[0]);
    for (const k of b.names) {
      expect(Number.isFinite(s[k].score)).toBe(true);
      expect(s[k].pValue).toBeGreaterThan(0);
      expect(s[k].pValue).toBeLessThanOrEqual(1);
    }
  });
});

export type { FeatureTable };
