/**
 * The adaptive attacker's twins (lab/adaptive/twins.py: torch copies of the shipped adversarial detectors, read
 * from the bundle) score the committed lab fixtures as Warden does: within 1e-4 of each detector's calibration
 * spread (measured 2e-5 or better, float32 torch against ONNX Runtime). Twin scores written by
 * lab/adaptive/twin_parity.py; a change to a shipped detector or to the bundle that the twins do not follow fails here,
 * so the adaptive evaluation always attacks what ships.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compose, type ScanPipeline } from '../../src/pipeline';
import { DEFAULT_BUNDLE_PATH } from '../../src/core/defaults';
import { DEFAULT_POLICY } from '../../src/policy';

const golden = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'detectors', 'twin-scores.json'), 'utf8'));
const LAB = path.join(__dirname, '..', 'fixtures', 'lab');

describe('the adaptive attack twins equal Warden on the lab fixtures', () => {
  let pipeline: ScanPipeline;
  beforeAll(async () => {
    ({ pipeline } = await compose({ workers: 1 }));
  }, 120000);
  afterAll(async () => {
    await pipeline?.close();
  });

  it('were computed for the shipped bundle and cover the detectors the shipped policy blocks on', () => {
    expect(golden.bundleSha256).toBe(createHash('sha256').update(fs.readFileSync(DEFAULT_BUNDLE_PATH)).digest('hex'));
    expect(Object.keys(golden.calibrationSd).sort()).toEqual([...DEFAULT_POLICY.adversarial.decideBy].sort());
  });

  it('score every fixture within 1e-4 of the calibration spread', async () => {
    const files = Object.keys(golden.scores);
    expect(files.length).toBeGreaterThanOrEqual(80);
    const worst: Record<string, number> = {};
    for (const file of files) {
      const { record } = await pipeline.scan(fs.readFileSync(path.join(LAB, file)), { file });
      for (const [id, twin] of Object.entries(golden.scores[file] as Record<string, number>)) {
        const diff = Math.abs(record.scores![id].score - twin) / golden.calibrationSd[id];
        worst[id] = Math.max(worst[id] ?? 0, diff);
      }
    }
    for (const id of Object.keys(golden.calibrationSd)) expect(worst[id]).toBeLessThan(1e-4);
  }, 300000);
});
