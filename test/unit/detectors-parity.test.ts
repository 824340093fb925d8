/**
 * Parity with the Python reference implementations (lab/detectors/reference.py): golden vectors written by
 * lab/detectors/make_golden.py. TS fits the same detectors on the same float32 features and must agree within
 * 1e-5 relative on every score and exactly on the conformal p-values.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DETECTORS, fitAndCalibrate, instanceOf, type FeatureTable, KdDetector, LidDetector, UadDetector } from '../../src/detectors';

interface Encoded { n: number; predicted: number[]; layers: Record<string, string> }
const golden = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'detectors', 'golden.json'), 'utf8'));

function decode(t: Encoded): FeatureTable {
  const layers: FeatureTable['layers'] = {};
  for (const [name, b64] of Object.entries(t.layers)) {
    const buf = Buffer.from(b64, 'base64');
    const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    layers[name] = { dim: golden.layers[name], data };
  }
  return { n: t.n, layers, predicted: Int32Array.from(t.predicted), numClasses: golden.numClasses };
}

const train = decode(golden.train);
const calibration = decode(golden.calibration);
const test = decode(golden.test);
const REL = 1e-5;

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

describe.each(['kd', 'lid', 'mgm', 'uad', 'nrd'])('parity with the Python reference: %s', (kind) => {
  const det = DETECTORS[kind].create(golden.params[kind]);
  fitAndCalibrate(det, train, calibration);
  const scores = Array.from({ length: test.n }, (_, i) => det.score(instanceOf(test, i), test.predicted[i]));

  it(`scores equal the reference within ${REL} relative`, () => {
    const expected: number[] = golden.expected.scores[kind];
    expect(scores.length).toBe(expected.length);
    const worst = Math.max(...scores.map((s, i) => relErr(s, expected[i])));
    expect(worst).toBeLessThan(REL);
  });

  it('p-values equal the reference', () => {
    const expected: number[] = golden.expected.pValues[kind];
    scores.forEach((s, i) => expect(det.pValue(s, test.predicted[i])).toBeCloseTo(expected[i], 12));
  });
});

describe('parity of intermediate quantities', () => {
  it('KD picks the same bandwidth by leave-one-out likelihood', () => {
    const d = new KdDetector(golden.params.kd);
    d.fit(train);
    expect(relErr(d.bandwidth, golden.expected.kd_bandwidth)).toBeLessThan(1e-9);
  });

  it('LID vectors match', () => {
    const d = new LidDetector(golden.params.lid);
    d.fit(train);
    const exp: number[][] = golden.expected.lid_vectors;
    for (let i = 0; i < test.n; i++) {
      const v = d.lidVector(instanceOf(test, i));
      v.forEach((x, j) => expect(relErr(x, exp[i][j])).toBeLessThan(REL));
    }
  });

  it('UAD per-layer scores match', () => {
    const d = new UadDetector(golden.params.uad);
    d.fit(train);
    const exp: number[][] = golden.expected.uad_layer_scores;
    for (let i = 0; i < test.n; i++) {
      const v = d.layerScores(instanceOf(test, i));
      v.forEach((x, j) => expect(relErr(x, exp[i][j])).toBeLessThan(REL));
    }
  });
});
