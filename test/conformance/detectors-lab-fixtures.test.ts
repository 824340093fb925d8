/**
 * Detection on the committed lab fixtures (test/fixtures/lab, written by the lab from the reference model's
 * attack suite), through the real pipeline with the embedded model and its embedded detector bundle.
 * UAD and MGM must separate successful adversarial fixtures from clean ones with an AUROC above bounds measured
 * on these fixtures (docs/evaluation.md, "CI bounds") minus a margin.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compose, type ScanPipeline } from '../../src/pipeline';
import { DEFAULT_BUNDLE_PATH } from '../../src/core/defaults';
import { readManifest, truthy } from '../../src/eval/dataset';
import { auroc } from '../../src/eval/evaluation';
import { DEFAULT_POLICY, unreachableThresholds } from '../../src/policy';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'lab', 'manifest.csv');
/** Measured on the committed fixtures with the committed bundle (same scan + auroc as below): uad 0.972, mgm 0.915 (docs/evaluation.md); bound = measured − ~0.03. */
const BOUNDS: Record<string, number> = { uad: 0.94, mgm: 0.885 };

describe('detectors on the committed lab fixtures', () => {
  let pipeline: ScanPipeline;
  const clean: Record<string, number[]> = {};
  const adv: Record<string, number[]> = {};

  beforeAll(async () => {
    if (!fs.existsSync(FIXTURES)) throw new Error(`missing ${FIXTURES}: the lab fixtures are required for this suite`);
    if (!fs.existsSync(DEFAULT_BUNDLE_PATH)) throw new Error(`missing ${DEFAULT_BUNDLE_PATH}: the embedded bundle is required`);
    ({ pipeline } = await compose({ workers: 1 }));
    for (const row of readManifest(FIXTURES)) {
      const isClean = row.kind === 'clean';
      const isAdv = row.kind === 'adversarial' && truthy(row.success);
      if (!isClean && !isAdv) continue;
      const { record: rec } = await pipeline.scan(fs.readFileSync(row.absPath), { file: row.file });
      expect(rec.status).toBe('scanned');
      for (const [d, s] of Object.entries(rec.scores ?? {})) {
        (isClean ? clean : adv)[d] ??= [];
        (isClean ? clean : adv)[d].push(s.score);
      }
    }
  }, 300000);

  afterAll(async () => {
    await pipeline?.close();
  });

  it.each(Object.entries(BOUNDS))('%s separates adversarial from clean fixtures (AUROC > %s)', (detector, bound) => {
    expect(clean[detector]?.length).toBeGreaterThanOrEqual(10);
    expect(adv[detector]?.length).toBeGreaterThanOrEqual(10);
    expect(auroc(clean[detector], adv[detector])).toBeGreaterThan(bound);
  });

  it('lets the default policy block: the deciding detectors resolve p-values below blockFpr for every predicted class', () => {
    const detectors = pipeline.bundle!.detectors!;
    const floors = Object.fromEntries(pipeline.manifest.classes.map((label, c) => [label, Object.fromEntries(Object.entries(detectors).map(([id, d]) => [id, d.pValueFloor(c)]))]));
    for (const label of pipeline.manifest.classes) for (const id of DEFAULT_POLICY.adversarial.decideBy) expect(floors[label][id]).toBeLessThanOrEqual(DEFAULT_POLICY.adversarial.blockFpr);
    expect(unreachableThresholds(DEFAULT_POLICY, floors)).toEqual([]);
    // and a stricter block rate than the calibration set resolves is reported
    expect(unreachableThresholds({ ...DEFAULT_POLICY, adversarial: { ...DEFAULT_POLICY.adversarial, blockFpr: floors.normal.uad / 2 } }, floors)).toHaveLength(1);
  });
});
