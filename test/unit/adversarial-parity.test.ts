/**
 * Parity with the Python reference of the adversarial signal (lab/detectors/views.py, lab/detectors/adversarial.py):
 * golden vectors written by lab/detectors/make_golden_adversarial.py. The views must agree bit for bit (they feed
 * the model); the shipped adversarial detectors, fitted on the same float32 features, within 1e-5 relative on every
 * score, exactly on the conformal p-values, and the policy's merged p-value likewise.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DETECTORS, fitAndCalibrate, instanceOf, type FeatureTable } from '../../src/detectors';
import { viewFunction } from '../../src/models';
import { combinePValues, DEFAULT_POLICY } from '../../src/policy';

const FIX = path.join(__dirname, '..', 'fixtures', 'detectors');
const views = JSON.parse(fs.readFileSync(path.join(FIX, 'golden-views.json'), 'utf8'));
const golden = JSON.parse(fs.readFileSync(path.join(FIX, 'golden-adversarial.json'), 'utf8'));
const KIND: Record<string, string> = { FeatureSqueezing: 'squeeze', SqueezeGaussian: 'sqzg', Coherence: 'coherence', Margin: 'margin', Energy: 'energy' };
const REL = 1e-5;

const f32 = (b64: string): Float32Array => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};
const sha = (a: Float32Array): string => createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

describe('views equal the Python reference bit for bit', () => {
  for (const c of views.cases) {
    it.each(views.views as string[])(`${c.name}: %s`, (v) => {
      const x = f32(c.input_f32);
      expect(sha(x)).toBe(c.sha256_input);
      const y = viewFunction(v)(x, c.shape[0], c.shape[1]);
      expect(sha(y)).toBe(c.views[v].sha256);
    });
  }
});

interface Encoded { n: number; labels: number[]; features: Record<string, string>; dims: Record<string, number> }
function decode(t: Encoded): FeatureTable {
  const layers: FeatureTable['layers'] = {};
  for (const [name, b64] of Object.entries(t.features)) layers[name] = { dim: t.dims[name], data: f32(b64) };
  const logits = layers.logits.data;
  const k = t.dims.logits;
  const predicted = Int32Array.from({ length: t.n }, (_, i) => {
    let best = 0;
    for (let j = 1; j < k; j++) if (logits[i * k + j] > logits[i * k + best]) best = j;
    return best;
  });
  return { n: t.n, layers, predicted, numClasses: k };
}

const train = decode(golden.train);
const calibration = decode(golden.calibration);
const test = decode(golden.test);
const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

describe('the shipped adversarial detectors equal the Python reference', () => {
  const pValues: Record<string, number[]> = {};
  const ids = Object.keys(golden.params);

  it('covers exactly the detectors the shipped policy blocks on', () => {
    expect([...golden.policy.members].sort()).toEqual([...DEFAULT_POLICY.adversarial.decideBy].sort());
    expect(golden.policy.rule.replace('_', '-')).toBe(DEFAULT_POLICY.adversarial.combine);
  });

  describe.each(ids)('%s', (id) => {
    const spec: Record<string, unknown> = golden.params[id];
    // the spec's descriptive keys are the lab's, not the detector's parameters
    const params = Object.fromEntries(Object.entries(spec).filter(([k]) => !['class', 'calibration', 'about', 'reads'].includes(k)));
    const det = DETECTORS[KIND[String(spec.class)]].create(params);
    fitAndCalibrate(det, train, calibration);
    const scores = Array.from({ length: test.n }, (_, i) => det.score(instanceOf(test, i), test.predicted[i]));
    pValues[id] = scores.map((s, i) => det.pValue(s, test.predicted[i]));

    it(`scores within ${REL} relative`, () => {
      const expected: number[] = golden.expected.scores[id];
      expect(scores).toHaveLength(expected.length);
      expect(Math.max(...scores.map((s, i) => relErr(s, expected[i])))).toBeLessThan(REL);
    });

    it('the same conformal p-values', () => {
      pValues[id].forEach((p, i) => expect(p).toBeCloseTo(golden.expected.pValues[id][i], 12));
    });
  });

  it('the same merged policy p-value', () => {
    const rule = golden.policy.rule.replace('_', '-');
    const merged = Array.from({ length: test.n }, (_, i) => combinePValues(golden.policy.members.map((m: string) => pValues[m][i]), rule));
    merged.forEach((p, i) => expect(p).toBeCloseTo(golden.expected.policyPValue[i], 12));
  });
});
