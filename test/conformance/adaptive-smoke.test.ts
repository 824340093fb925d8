/**
 * The adaptive attack's machinery end to end, on two clean lab fixtures and a few steps (issue 17's CI smoke test; it
 * checks the machinery, not the attack's strength): lab/adaptive/smoke.py rebuilds the reference model in torch from
 * the committed ONNX file, checks its twins against the committed twin scores, runs the orthogonal and the weighted
 * attack of lab/adaptive/full.py and writes 8-bit DICOM files with the twins' verdicts. Warden, reading those files
 * through its real decode path, must reach the same verdicts: the numbers in docs/adaptive.md rest on that.
 * Needs Debian's python3-torch, python3-onnx and python3-pydicom (scripts/setup.sh --with-lab-python).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compose, type ScanPipeline } from '../../src/pipeline';
import { DEFAULT_POLICY } from '../../src/policy';

const ROOT = path.resolve(__dirname, '..', '..');
const PYTHON = '/usr/bin/python3';

interface SmokeExample { file: string; source: string; kind: string; eps: number; label: number; flipped: boolean; adv_p: number; uad_p: number; linf: number }

describe('the adaptive attack machinery (lab/adaptive/smoke.py) agrees with Warden', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-adaptive-'));
  let smoke: { parity_rel_to_sd: Record<string, number>; examples: SmokeExample[] };
  let pipeline: ScanPipeline;
  beforeAll(async () => {
    const res = spawnSync(PYTHON, [path.join(ROOT, 'lab', 'adaptive', 'smoke.py'), '--out', out], {
      cwd: ROOT, encoding: 'utf8', timeout: 600000, env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' },
    });
    if (res.status !== 0) throw new Error(`smoke.py failed (${res.status}): ${res.error?.message ?? ''}${res.stderr?.slice(-3000) ?? ''}`);
    smoke = JSON.parse(fs.readFileSync(path.join(out, 'smoke.json'), 'utf8'));
    ({ pipeline } = await compose({ workers: 1 }));
  }, 600000);
  afterAll(async () => {
    await pipeline?.close();
    fs.rmSync(out, { recursive: true, force: true });
  });

  it('rebuilds the shipped model from its ONNX file: twins within 1e-4 of each calibration spread', () => {
    expect(Object.keys(smoke.parity_rel_to_sd).sort()).toEqual([...DEFAULT_POLICY.adversarial.decideBy].sort());
    for (const v of Object.values(smoke.parity_rel_to_sd)) expect(v).toBeLessThan(1e-4);
  });

  it('writes perturbations inside the L∞ budget, and Warden reaches the twins\' prediction and verdict on each', async () => {
    expect(smoke.examples).toHaveLength(4);
    const level = DEFAULT_POLICY.adversarial;
    for (const ex of smoke.examples) {
      expect(ex.linf).toBeGreaterThan(0);
      expect(ex.linf).toBeLessThanOrEqual(ex.eps);
      const { record } = await pipeline.scan(fs.readFileSync(path.join(out, ex.file)), { file: ex.file });
      expect(record.status).toBe('scanned');
      expect(record.prediction!.index !== ex.label).toBe(ex.flipped);
      const reasons = record.reasons ?? [];
      expect(reasons.some((r) => r.signal === 'adversarial')).toBe(ex.adv_p <= level.flagFpr);
      expect(record.verdict === 'block').toBe(ex.adv_p <= level.blockFpr);
      const merged = Math.min(1, level.decideBy.length * Math.min(...level.decideBy.map((d) => record.scores![d].pValue)));
      expect(merged).toBeCloseTo(ex.adv_p, 9);
    }
  }, 300000);
});
