import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import type { DetectorBundle } from '../../src/detectors';
import { DEFAULT_POLICY, errorClassOf, formatReason, type Policy } from '../../src/policy';
import { compose, predictionOf, type RuntimeOptions, type ScanMeta, type ScanPipeline, type ScanRecord } from '../../src/pipeline';
import { writeTestModel } from '../fixtures/onnx/build-test-model';

const CORPUS = path.resolve(__dirname, '..', '..', '..', 'shared', 'corpus', 'dicom', 'pydicom');
const read = (name: string) => new Uint8Array(fs.readFileSync(path.join(CORPUS, name)));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-pipeline-'));
const modelPath = writeTestModel(dir, 'test.onnx');
const slowPath = writeTestModel(dir, 'slow.onnx', { slowLayers: 20 });
const quiet = pino({ level: 'silent' });
const open: ScanPipeline[] = [];
afterAll(async () => {
  await Promise.all(open.map((p) => p.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Scope open to every modality: these tests scan corpus MR/RGB files, not only chest radiographs. */
const ANY_SCOPE: Policy = { ...DEFAULT_POLICY, applicability: {} };

/** A pipeline built by the composition root, with the scan record as what a scan returns (the Decision is checked in policy tests). */
type TestPipeline = Pick<ScanPipeline, 'extract' | 'queueDepth' | 'modelSha256' | 'provider' | 'manifest'> & { scan(b: Uint8Array, m?: ScanMeta): Promise<ScanRecord> };
async function pipeline(opts: RuntimeOptions = {}): Promise<TestPipeline> {
  const { pipeline: p } = await compose({ modelPath, bundlePath: null, threadsPerWorker: 1, logger: quiet, policy: ANY_SCOPE, ...opts });
  open.push(p);
  return {
    scan: async (b, m) => (await p.scan(b, m)).record,
    extract: (b, m) => p.extract(b, m),
    queueDepth: () => p.queueDepth(),
    modelSha256: p.modelSha256,
    provider: p.provider,
    manifest: p.manifest,
  };
}

/** A stand-in bundle: one adversarial detector of the shipped policy with a fixed p-value; records what it was given. */
function fakeBundle(modelSha256: string, pValue: number, requiredLayers = ['penultimate']): DetectorBundle & { calls: { features: Record<string, Float32Array>; cls: number }[] } {
  const calls: { features: Record<string, Float32Array>; cls: number }[] = [];
  return {
    names: ['squeeze'], requiredLayers, modelSha256, calls,
    score(features, cls) {
      calls.push({ features, cls });
      return { squeeze: { score: 1 - pValue, pValue } };
    },
  };
}

describe('ScanPipeline', () => {
  let sha = '';
  beforeAll(async () => {
    sha = (await pipeline()).modelSha256;
  });

  test('scan: decode → preprocess → extract → detect → decide, with a verdict record', async () => {
    const bundle = fakeBundle(sha, 0.001);
    const p = await pipeline({ bundle });
    expect(p.provider).toBe('cpu');
    expect(p.manifest.classes).toEqual(['normal', 'pneumonia']);
    const rec = await p.scan(read('MR_small.dcm'), { file: 'MR_small.dcm' });
    expect(rec).toMatchObject({ file: 'MR_small.dcm', status: 'scanned', modality: 'MR', rows: 64, columns: 64, frames: 1, transferSyntaxUid: '1.2.840.10008.1.2.1' });
    expect(rec.sopInstanceUidHash).toMatch(/^[0-9a-f]{16}$/);
    expect(rec.prediction!.label).toBe(p.manifest.classes[rec.prediction!.index]);
    expect(rec.prediction!.probability).toBeGreaterThanOrEqual(0.5);
    expect(rec.prediction!.probability).toBeLessThanOrEqual(1);
    expect(rec.featureDims).toEqual({ logits: 2, stage1_mean: 8, penultimate: 16 }); // detectors read the logits too
    expect(rec.scores).toEqual({ squeeze: { score: 0.999, pValue: 0.001 } });
    expect(rec.verdict).toBe('block');
    expect(formatReason(rec.reasons![0])).toMatch(/^squeeze:p=/);
    expect(Object.keys(rec.timings).sort()).toEqual(['decode', 'detect', 'inference', 'preprocess', 'total']);
    expect(bundle.calls).toHaveLength(1);
    expect(bundle.calls[0].cls).toBe(rec.prediction!.index);
    expect(bundle.calls[0].features.penultimate.length).toBe(16);
    expect(Object.keys(rec)[0]).toBe('file'); // stable field order
  });

  test('a clean p-value forwards; flag between the two thresholds', async () => {
    expect((await (await pipeline({ bundle: fakeBundle(sha, 0.5) })).scan(read('MR_small.dcm'))).verdict).toBe('forward');
    expect((await (await pipeline({ bundle: fakeBundle(sha, 0.02) })).scan(read('MR_small.dcm'))).verdict).toBe('flag');
  });

  test('no bundle: predictions, no scores, no verdict for scanned instances', async () => {
    const rec = await (await pipeline()).scan(read('MR_small.dcm'));
    expect(rec.status).toBe('scanned');
    expect(rec.prediction).toBeDefined();
    expect(rec.scores).toBeUndefined();
    expect(rec.verdict).toBeUndefined();
  });

  test('non-image instances are skipped and forwarded', async () => {
    const rec = await (await pipeline()).scan(read('rtplan.dcm'), { partIndex: 3 });
    expect(rec).toMatchObject({ partIndex: 3, status: 'skipped', verdict: 'forward' });
    expect(rec.reasons!.map(formatReason)).toEqual(['not_an_image']);
    expect(rec.skipReason).toBeTruthy();
    expect(rec.prediction).toBeUndefined();
  });

  test('out-of-scope instances (applicability) are skipped with skipReason out_of_scope', async () => {
    const p = await pipeline({ bundle: fakeBundle(sha, 0.001), policy: DEFAULT_POLICY });
    const rgb = await p.scan(read('SC_rgb_rle_2frame.dcm'));
    expect(rgb).toMatchObject({ status: 'skipped', skipReason: 'out_of_scope', verdict: 'forward' });
    const ctOnly: Policy = { ...DEFAULT_POLICY, applicability: { modalities: ['CT'] } };
    const mr = await (await pipeline({ policy: ctOnly })).scan(read('MR_small.dcm'));
    expect(mr.skipReason).toBe('out_of_scope');
  });

  test('multi-frame colour instance with an open scope: first frame scanned, said in the record', async () => {
    const any: Policy = { ...DEFAULT_POLICY, applicability: {} };
    const rec = await (await pipeline({ policy: any })).scan(read('SC_rgb_rle_2frame.dcm'));
    expect(rec).toMatchObject({ status: 'scanned', frames: 2, scannedFrame: 0 });
  });

  test('broken input never throws: status error, the error code, and the policy verdict', async () => {
    const p = await pipeline({ policy: { ...ANY_SCOPE, onError: { decode: 'flag', model: 'block', timeout: 'block' } } });
    const whole = read('MR_small.dcm');
    const truncated = await p.scan(whole.subarray(0, whole.length - 100), { file: 'cut.dcm' }); // ends inside Pixel Data
    expect(truncated.status).toBe('error');
    expect(truncated.error!.code).toBe('DICOM_TRUNCATED');
    expect(errorClassOf(truncated.error!.code)).toBe('decode');
    expect(truncated.verdict).toBe('flag');
    expect(truncated.reasons!.map(formatReason)).toEqual([`error:${truncated.error!.code}`]);
    const garbage = await p.scan(new TextEncoder().encode('hello, not a DICOM file'));
    expect(garbage.status).toBe('error');
    expect(garbage.error!.code).toBe('NOT_DICOM');
    expect(garbage.verdict).toBe('flag');
  });

  test('an inference deadline gives status error MODEL_TIMEOUT and the timeout verdict', async () => {
    const p = await pipeline({ modelPath: slowPath, timeoutMs: 5, policy: { ...ANY_SCOPE, onError: { decode: 'block', model: 'block', timeout: 'flag' } } });
    const rec = await p.scan(read('MR_small.dcm'));
    expect(rec).toMatchObject({ status: 'error', error: { code: 'MODEL_TIMEOUT' }, verdict: 'flag' });
  });

  test('extract: features for fit/eval, without detectors or verdict', async () => {
    const p = await pipeline({ bundle: fakeBundle(sha, 0.001) });
    const { record, output } = await p.extract(read('MR_small.dcm'));
    expect(record.status).toBe('scanned');
    expect(record.verdict).toBeUndefined();
    expect(record.scores).toBeUndefined();
    expect(output!.logits.length).toBe(2);
    expect(output!.features.penultimate.length).toBe(16);
    expect(output!.features.stage1_mean.length).toBe(8);
    const scanned = await p.scan(read('MR_small.dcm'));
    expect(scanned.prediction).toEqual(record.prediction);
  });

  test('a bundle for another model or with unknown layers is refused at create', async () => {
    await expect(pipeline({ bundle: fakeBundle('0'.repeat(64), 0.5) })).rejects.toMatchObject({ code: 'BUNDLE_MODEL_MISMATCH' });
    await expect(pipeline({ bundle: fakeBundle(sha, 0.5, ['stage9_mean']) })).rejects.toMatchObject({ code: 'BUNDLE_INVALID' });
  });

  test('concurrent scans share the pool; queueDepth drains to 0', async () => {
    const p = await pipeline({ workers: 2 });
    const recs = await Promise.all(Array.from({ length: 6 }, () => p.scan(read('MR_small.dcm'))));
    expect(recs.every((r) => r.status === 'scanned')).toBe(true);
    expect(new Set(recs.map((r) => r.prediction!.probability)).size).toBe(1);
    expect(p.queueDepth()).toBe(0);
  });
});

test('predictionOf: softmax probability of the argmax', () => {
  const p = predictionOf(Float32Array.from([1, 3, 2]), ['a', 'b', 'c']);
  const e = [1, 3, 2].map((x) => Math.exp(x));
  expect(p.index).toBe(1);
  expect(p.label).toBe('b');
  expect(p.probability).toBeCloseTo(e[1] / (e[0] + e[1] + e[2]), 12);
});
