/**
 * Preprocessing parity with the lab (issue "lab"): the committed model, run through Warden's own decode →
 * preprocess → ONNX path on the committed fixture DICOMs, predicts exactly the class the lab recorded for each
 * written file (manifest column pred_after), and keeps the probabilities the lab's torch model implies.
 */
import * as fs from 'node:fs';
import { compose, type ScanPipeline } from '../../src/pipeline';
import { DEFAULT_MODEL_PATH } from '../../src/core/defaults';
import { LAB_MANIFEST, readLabManifest } from '../helpers/lab-fixtures';

jest.setTimeout(120000);

describe('the embedded model through the scan pipeline agrees with the lab', () => {
  let pipeline: ScanPipeline;
  beforeAll(async () => {
    ({ pipeline } = await compose({ modelPath: DEFAULT_MODEL_PATH, bundlePath: null, workers: 1, threadsPerWorker: 1 }));
  });
  afterAll(async () => pipeline?.close());

  it('reads the committed fixture manifest and the embedded model', () => {
    expect(fs.existsSync(LAB_MANIFEST)).toBe(true);
    expect(pipeline.manifest.classes).toEqual(['normal', 'pneumonia']);
  });

  it('predicts the class the lab recorded for every committed fixture (clean, adversarial, benign)', async () => {
    const rows = (readLabManifest() as unknown as Array<Record<string, string> & { path: string }>);
    expect(rows.length).toBeGreaterThanOrEqual(80);
    const mismatches: string[] = [];
    for (const row of rows) {
      const { record } = await pipeline.scan(new Uint8Array(fs.readFileSync(row.path)), { file: row.file });
      expect({ file: row.file, status: record.status }).toEqual({ file: row.file, status: 'scanned' });
      if (record.prediction?.index !== Number(row.pred_after)) mismatches.push(`${row.file}: warden ${record.prediction?.index}, lab ${row.pred_after}`);
    }
    expect(mismatches).toEqual([]);
  });

  it('sees the adversarial fixtures flip the prediction the lab says they flip', async () => {
    const rows = (readLabManifest() as unknown as Array<Record<string, string> & { path: string }>)
      .filter((r) => r.kind === 'adversarial' && r.success === '1');
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      const { record } = await pipeline.scan(new Uint8Array(fs.readFileSync(row.path)));
      expect(record.prediction?.index).not.toBe(Number(row.pred_before));
    }
  });
});
