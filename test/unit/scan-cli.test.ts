import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeTestModel } from '../fixtures/onnx/build-test-model';

// Runs the built CLI (bin/warden.js → dist/), as a user would; the test command builds before jest.
const ROOT = path.resolve(__dirname, '..', '..');
const CORPUS = '../shared/corpus/dicom/pydicom'; // relative to the repo root
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-scan-'));
const model = writeTestModel(dir, 'test.onnx');
// The test model reads any greyscale image: a configuration that opens the default chest-radiograph scope (CR, DX)
// to every modality, as a site protecting such a model would write it (the same file `warden serve` would read).
const anyModality = path.join(dir, 'any-modality.yaml');
fs.writeFileSync(anyModality, 'policy:\n  applicability:\n    modalities: []\n');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function warden(...args: string[]) {
  const res = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'warden.js'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

describe('warden scan', () => {
  const folder = path.join(dir, 'study');
  const truncated = path.join(folder, 'b', 'truncated.dcm');
  beforeAll(() => {
    fs.mkdirSync(path.join(folder, 'a'), { recursive: true });
    fs.mkdirSync(path.join(folder, 'b'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, CORPUS, 'MR_small.dcm'), path.join(folder, 'a', 'mr.dcm'));
    const whole = fs.readFileSync(path.join(ROOT, CORPUS, 'MR_small.dcm'));
    fs.writeFileSync(truncated, whole.subarray(0, whole.length - 100));
  });

  test('--json prints one VerdictRecord per line; skipped for a non-image, error for a truncated file, exit 1', () => {
    const res = warden('scan', '--json', '--config', anyModality, '--model', model, '--no-detectors',
      `${CORPUS}/MR_small.dcm`, `${CORPUS}/rtplan.dcm`, `${CORPUS}/JPEG2000.dcm`, truncated);
    expect(res.code).toBe(1);
    const lines = res.stdout.trim().split('\n');
    expect(lines).toHaveLength(4);
    const recs = lines.map((l) => JSON.parse(l));
    expect(recs.map((r) => r.file)).toEqual([`${CORPUS}/MR_small.dcm`, `${CORPUS}/rtplan.dcm`, `${CORPUS}/JPEG2000.dcm`, truncated]);
    expect(recs.map((r) => r.status)).toEqual(['scanned', 'skipped', 'scanned', 'error']);
    for (const r of recs) {
      expect(typeof r.timings.total).toBe('number');
      expect(typeof r.timings.decode).toBe('number');
    }
    const [mr, plan, j2k, cut] = recs;
    expect(mr.prediction).toEqual({ index: expect.any(Number), label: expect.stringMatching(/^(normal|pneumonia)$/), probability: expect.any(Number) });
    expect(Object.keys(mr.timings)).toEqual(expect.arrayContaining(['decode', 'preprocess', 'inference', 'total']));
    expect(mr.verdict).toBeUndefined(); // --no-detectors
    expect(mr.scores).toBeUndefined();
    expect(j2k.transferSyntaxUid).toBe('1.2.840.10008.1.2.4.91');
    expect(plan.skipReason).toBeTruthy();
    expect(plan.verdict).toBe('forward');
    expect(cut.error.code).toBe('DICOM_TRUNCATED');
    expect(cut.error.message).toBeTruthy();
    expect(cut.verdict).toBe('block'); // the default policy fails closed
    // The summary goes to stderr so stdout stays pure JSONL.
    expect(res.stderr).toMatch(/4 instances .*scanned 2, skipped 1, error 1/);
  });

  test('folders are recursed; without errors the exit code is 0; the table mode prints a header and a summary', () => {
    const json = warden('scan', '--json', '--config', anyModality, '--model', model, '--no-detectors', path.join(folder, 'a'), `${CORPUS}/rtplan.dcm`);
    expect(json.code).toBe(0);
    expect(json.stdout.trim().split('\n').map((l) => JSON.parse(l).status)).toEqual(['scanned', 'skipped']);
    const table = warden('scan', '--config', anyModality, '--model', model, '--no-detectors', folder);
    expect(table.code).toBe(1);
    const out = table.stdout.split('\n');
    expect(out[0]).toMatch(/model warden-test 0\.0\.1 sha256:[0-9a-f]{12} provider cpu/);
    expect(out[1]).toMatch(/^file\s+status\s+modality/);
    expect(out.find((l) => l.includes('mr.dcm'))).toMatch(/scanned\s+MR\s+1\.2\.840\.10008\.1\.2\.1\s+(normal|pneumonia)\s+0\.\d{3}/);
    expect(out.find((l) => l.includes('truncated.dcm'))).toMatch(/error .*DICOM_TRUNCATED\s+-\s+block/);
    expect(table.stdout).toMatch(/2 instances .*scanned 1, skipped 0, error 1; verdicts: forward 0, flag 0, block 1/);
  });

  test('--providers cuda,cpu falls back to cpu; bad options and a missing model exit 2 with a typed error', () => {
    const gpu = warden('scan', '--json', '--config', anyModality, '--model', model, '--no-detectors', '--providers', 'cuda,cpu', `${CORPUS}/MR_small.dcm`);
    expect(gpu.code).toBe(0);
    expect(gpu.stderr).toMatch(/falling back to cpu/);
    expect(JSON.parse(gpu.stdout.trim()).status).toBe('scanned');
    const missing = warden('scan', '--model', path.join(dir, 'nope.onnx'), `${CORPUS}/MR_small.dcm`);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/MODEL_LOAD_FAILED/);
    const badWorkers = warden('scan', '--model', model, '--workers', 'zero', `${CORPUS}/MR_small.dcm`);
    expect(badWorkers.code).toBe(2);
    expect(badWorkers.stderr).toMatch(/USAGE/);
  });
});
